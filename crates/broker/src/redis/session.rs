//! The Redis broker's connection task: connect, subscribe what the node wants (and the
//! control channel), hand received messages to the shards and other nodes' disconnects
//! to the sink, batch subscription changes, watch an idle connection with PING, and on
//! any loss report down, back off with jitter and start over.
//!
//! Backpressure: when the owner shard's inbox is full the message is held and offered
//! again every [`RETRY_FULL_INBOX`], and no further push is taken meanwhile; the pushes
//! behind it fill the bounded backlog (`push_gate`), the socket is no longer read, and
//! Redis buffers the rest up to its `client-output-buffer-limit pubsub`.

use super::backoff::{Backoff, FIRST_DELAY, MAX_DELAY};
use super::clock::unix_nanos;
use super::config::{RedisConfig, RedisMode};
use super::connect::{ConnectError, Endpoint, connect};
use super::deliver::{Deliverer, Handled, Held};
use super::events::RejectReason;
use super::history::{self, HistoryRead};
use super::inbound::InboundRules;
use super::interest::Interest;
use super::interest_queue::Pending;
use super::push_gate::{PushReceiver, push_queue};
use super::sentinel::{self, Addr};
use super::shared::Shared;
use redis::aio::MultiplexedConnection;
use redis::{PushInfo, RedisResult};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};

/// Pushes handled per wake-up before other work gets a turn.
const PUSH_BATCH: usize = 1_024;
/// Wait before resending subscription changes whose confirmation timed out while the
/// connection was busy with pushes.
const RETRY_BUSY_FLUSH: Duration = Duration::from_millis(200);
/// Most pushes handed over before a history read's answer is released.
const HAND_OVER_LIMIT: usize = 65_536;
/// Wait before offering a held message to a full shard inbox again.
const RETRY_FULL_INBOX: Duration = Duration::from_millis(1);

/// Why a connection's serving loop ended.
enum End {
    /// The connection is gone, for the reason given; reconnect.
    Lost(String),
    /// The broker handle was dropped; stop.
    Closed,
}

/// The connection task's state.
pub(crate) struct Session {
    shared: Arc<Shared>,
    deliverer: Deliverer,
    config: RedisConfig,
    endpoint: Endpoint,
    /// The URL with its password hidden, for the logs.
    shown_url: String,
    interest: Interest,
    /// History reads asked by the handle (see `history::HistoryRead`).
    reads: tokio::sync::mpsc::UnboundedReceiver<HistoryRead>,
}

impl Session {
    pub(crate) fn new(
        shared: Arc<Shared>,
        config: RedisConfig,
        endpoint: Endpoint,
        reads: tokio::sync::mpsc::UnboundedReceiver<HistoryRead>,
    ) -> Self {
        let rules = InboundRules::new(
            &config.prefix,
            config.max_message_bytes,
            config.valid_channel,
        );
        let shown_url = crate::redact_url(&config.url);
        Session {
            deliverer: Deliverer {
                shared: shared.clone(),
                rules,
            },
            shared,
            config,
            endpoint,
            shown_url,
            interest: Interest::default(),
            reads,
        }
    }

    /// Connects and serves until the broker handle is dropped.
    ///
    /// A failed attempt (no TCP connection, a failed TLS handshake, refused credentials,
    /// or a subscription Redis refused) is counted under its reason and retried after the
    /// next backoff delay; it is logged when a run of failures starts or its reason
    /// changes (each attempt at debug level). The delays start over only once a
    /// connection got subscribed, so a node whose user may not subscribe does not
    /// hammer Redis.
    pub(crate) async fn run(mut self) {
        let seed = unix_nanos() ^ u64::from(std::process::id()).rotate_left(32);
        let mut backoff = Backoff::new(FIRST_DELAY, MAX_DELAY, seed);
        let mut connected_before = false;
        let mut failing: Option<RejectReason> = None;
        loop {
            // Reads asked while no connection served them fail (their answer is dropped):
            // the owner then answers from what it has.
            while self.reads.try_recv().is_ok() {}
            let (push_tx, mut pushes, gate) = push_queue();
            let connected = match connect(
                &self.endpoint,
                self.config.max_message_bytes,
                self.config.timeout,
                push_tx,
                gate,
            )
            .await
            {
                Ok((mut connection, master)) => {
                    if connected_before {
                        self.shared.events.reconnected();
                    }
                    connected_before = true;
                    self.subscribe_all(&mut connection)
                        .await
                        .map(|()| (connection, master))
                }
                Err(err) => Err(err),
            };
            match connected {
                Ok((connection, master)) => {
                    failing = None;
                    backoff.reset();
                    let end = self.serve(connection, &master, &mut pushes).await;
                    self.shared.set_connection(None);
                    self.shared.events.subscriptions(0);
                    let End::Lost(reason) = end else { return };
                    self.shared.events.rejected(RejectReason::Disconnect);
                    tracing::warn!(
                        url = %self.shown_url,
                        %reason,
                        "Redis connection lost; serving local clients, reconnecting"
                    );
                }
                Err(err) => {
                    self.shared.events.subscriptions(0);
                    self.shared.events.rejected(err.reason);
                    if failing == Some(err.reason) {
                        tracing::debug!(
                            url = %self.shown_url,
                            reason = %err.reason.as_str(),
                            %err,
                            "Redis connection attempt failed"
                        );
                    } else {
                        tracing::warn!(
                            url = %self.shown_url,
                            reason = %err.reason.as_str(),
                            %err,
                            "cannot connect to Redis; serving local clients, retrying with backoff"
                        );
                    }
                    failing = Some(err.reason);
                }
            }
            self.interest.connection_lost();
            if !self.pause(backoff.next_delay()).await {
                return;
            }
        }
    }

    /// Subscribes the control channel and the channels with local interest (or the
    /// pattern); a refusal by Redis (an ACL user without the right to the channels)
    /// counts as `Auth`, any other failure as `Disconnect`.
    async fn subscribe_all(
        &mut self,
        connection: &mut MultiplexedConnection,
    ) -> Result<(), ConnectError> {
        let subscribed = match self.config.mode {
            // The pattern covers the control channel too.
            RedisMode::Pattern => {
                let pattern = format!("{}*", escape_glob(&self.config.prefix));
                let done = connection.psubscribe(&pattern).await;
                if done.is_ok() {
                    self.shared.events.subscriptions(1);
                }
                done
            }
            // The control channel first (not counted as a subscription: it is the node's
            // own, not a client's), then the channels with local subscribers.
            RedisMode::Interest | RedisMode::Sharded => {
                match connection.subscribe(&self.deliverer.rules.control).await {
                    Ok(()) => self.flush(connection).await,
                    Err(err) => Err(err),
                }
            }
        };
        subscribed.map_err(|err| {
            ConnectError::from_redis(&err, RejectReason::Disconnect).context("subscribing")
        })
    }

    /// Reports up, then serves the subscribed connection to `master` until it is lost.
    /// With Sentinel, a Sentinel is asked every [`sentinel::CHECK_EVERY`] (in a task of
    /// its own, so a slow Sentinel never holds the pushes up) whether the master is still
    /// `master`; when it names another, the connection is given up and the next one goes
    /// to the new master.
    async fn serve(
        &mut self,
        mut connection: MultiplexedConnection,
        master: &Addr,
        pushes: &mut PushReceiver,
    ) -> End {
        self.shared.set_connection(Some(connection.clone()));
        tracing::info!(
            url = %self.shown_url,
            %master,
            tls = self.endpoint.is_tls(),
            channels = self.interest.active_len(),
            "Redis broker connected and subscribed"
        );
        let mut ping = tokio::time::interval(self.config.ping_every);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ping.tick().await;
        let sentinels = self.endpoint.sentinels().cloned();
        let mut check = tokio::time::interval(sentinel::CHECK_EVERY);
        check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        check.tick().await;
        let mut asking: Option<tokio::task::JoinHandle<Result<(Addr, Addr), ConnectError>>> = None;
        let mut sentinels_failing = false;
        let mut flush_at: Option<Instant> = None;
        // Pushes prove the connection alive; PING only checks an idle one (a PING behind
        // a burst of pushes could time out on a busy host and cost a needless reconnect).
        let mut last_push = Instant::now();
        let mut held: Option<Held> = None;
        loop {
            let flush_due = async {
                match flush_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let pauses = pushes.take_pauses();
            if pauses > 0 {
                self.shared.events.push_backlog_full(pauses);
            }
            // Busy, not dead: pushes are waiting, or the node is behind on them.
            let busy = held.is_some() || !pushes.is_empty();
            tokio::select! {
                () = tokio::time::sleep(RETRY_FULL_INBOX), if held.is_some() => {
                    last_push = Instant::now();
                    if let Some(message) = held.take() {
                        held = self.deliverer.offer(message);
                    }
                    if held.is_none()
                        && let Err(end) = self.take_waiting(pushes, &mut held)
                    {
                        return end;
                    }
                }
                push = pushes.recv(), if held.is_none() => {
                    let Some(push) = push else { return End::Lost("push stream ended".into()) };
                    last_push = Instant::now();
                    match self.on_push(push) {
                        Handled::Done => {}
                        Handled::Held(message) => held = Some(message),
                        Handled::Lost => return End::Lost("disconnected".into()),
                    }
                    if held.is_none()
                        && let Err(end) = self.take_waiting(pushes, &mut held)
                    {
                        return end;
                    }
                }
                pending = self.shared.interest.next() => {
                    let Pending::Changes(changes) = pending else { return End::Closed };
                    for (channel, on) in changes {
                        self.interest.set(&channel, on);
                    }
                    if flush_at.is_none() && self.config.mode != RedisMode::Pattern {
                        flush_at = Some(Instant::now() + self.config.batch_window);
                    }
                }
                () = flush_due => {
                    flush_at = None;
                    for (channel, on) in self.shared.interest.take() {
                        self.interest.set(&channel, on);
                    }
                    match self.flush(&mut connection).await {
                        Ok(()) => {}
                        // Confirmations stuck behind a flood of pushes: the connection is
                        // busy, not dead; send the unconfirmed changes again shortly.
                        Err(err) if err.is_timeout() && (busy || !pushes.is_empty()) => {
                            flush_at = Some(Instant::now() + RETRY_BUSY_FLUSH);
                        }
                        Err(err) => return End::Lost(format!("subscription change: {err}")),
                    }
                }
                read = self.reads.recv() => {
                    let Some(read) = read else { return End::Closed };
                    // The subscription changes asked before the read go first.
                    for (channel, on) in self.shared.interest.take() {
                        self.interest.set(&channel, on);
                    }
                    match self.flush(&mut connection).await {
                        Ok(()) => {
                            let max = self.config.max_message_bytes;
                            let fetched =
                                history::fetch(&mut connection, &read.redis_channel, max).await;
                            // The pushes that came in before the read's reply go to the
                            // shards first, so the answer reaches the owner behind them
                            // (on the same lane) and no message of the read is delivered
                            // live again after it.
                            if let Err(end) = self.hand_over_waiting(pushes, &mut held).await {
                                return end;
                            }
                            let _ = read.reply.send(fetched);
                        }
                        // Unconfirmed: a read now could miss what is published before
                        // the subscription lands, so it fails (the owner answers from
                        // what it has) and the changes are sent again shortly.
                        Err(err) if err.is_timeout() => {
                            let _ = read.reply.send(Err(err));
                            flush_at = Some(Instant::now() + RETRY_BUSY_FLUSH);
                        }
                        Err(err) => return End::Lost(format!("subscription change: {err}")),
                    }
                }
                _ = check.tick(), if asking.is_none() && sentinels.is_some() => {
                    if let Some(sentinels) = sentinels.clone() {
                        let timeout = self.config.timeout;
                        asking = Some(tokio::spawn(async move { sentinels.master(timeout).await }));
                    }
                }
                answer = async { asking.as_mut().expect("checked").await }, if asking.is_some() => {
                    asking = None;
                    match answer {
                        Ok(Ok((named, sentinel))) => {
                            sentinels_failing = false;
                            if named != *master {
                                return End::Lost(format!(
                                    "Sentinel {sentinel} names a new master {named} (was {master})"
                                ));
                            }
                        }
                        // The master still serves; counted and logged once per run of
                        // failures, asked again at the next check.
                        Ok(Err(err)) => {
                            if !sentinels_failing {
                                self.shared.events.rejected(err.reason);
                                tracing::warn!(
                                    url = %self.shown_url,
                                    %master,
                                    reason = %err.reason.as_str(),
                                    %err,
                                    "cannot ask the Sentinels whether the master changed; staying with it"
                                );
                            }
                            sentinels_failing = true;
                        }
                        Err(err) => tracing::debug!(%err, "Sentinel check task failed"),
                    }
                }
                _ = ping.tick(), if !busy && last_push.elapsed() >= self.config.ping_every => {
                    let pong = redis::cmd("PING").query_async::<redis::Value>(&mut connection).await;
                    // A late PONG behind pushes that arrived meanwhile is a busy
                    // connection, not a dead one.
                    if let Err(err) = pong
                        && pushes.is_empty()
                    {
                        return End::Lost(format!("PING: {err}"));
                    }
                }
            }
        }
    }

    /// Hands every push waiting now to the shards, waiting for room when an inbox is
    /// full (at most [`HAND_OVER_LIMIT`] pushes, so a flood cannot hold the task).
    async fn hand_over_waiting(
        &mut self,
        pushes: &mut PushReceiver,
        held: &mut Option<Held>,
    ) -> Result<(), End> {
        let mut handed = 0;
        while handed < HAND_OVER_LIMIT {
            if let Some(message) = held.take() {
                *held = self.deliverer.offer(message);
                if held.is_some() {
                    tokio::time::sleep(RETRY_FULL_INBOX).await;
                }
                continue;
            }
            let Some(push) = pushes.try_recv() else {
                return Ok(());
            };
            handed += 1;
            match self.on_push(push) {
                Handled::Done => {}
                Handled::Held(message) => *held = Some(message),
                Handled::Lost => return Err(End::Lost("disconnected".into())),
            }
        }
        Ok(())
    }

    /// Handles up to [`PUSH_BATCH`] waiting pushes, stopping at one the shards have no
    /// room for.
    fn take_waiting(
        &mut self,
        pushes: &mut PushReceiver,
        held: &mut Option<Held>,
    ) -> Result<(), End> {
        for _ in 0..PUSH_BATCH {
            let Some(push) = pushes.try_recv() else { break };
            match self.on_push(push) {
                Handled::Done => {}
                Handled::Held(message) => {
                    *held = Some(message);
                    break;
                }
                Handled::Lost => return Err(End::Lost("disconnected".into())),
            }
        }
        Ok(())
    }

    /// Handles one push (pattern mode delivers only channels with local subscribers).
    fn on_push(&self, push: PushInfo) -> Handled {
        let only_wanted = (self.config.mode == RedisMode::Pattern).then_some(&self.interest);
        self.deliverer.on_push(push, only_wanted)
    }

    /// Sends the pending subscription changes (interest and sharded modes).
    async fn flush(&mut self, connection: &mut MultiplexedConnection) -> RedisResult<()> {
        if self.config.mode == RedisMode::Pattern || !self.interest.has_changes() {
            return Ok(());
        }
        let changes = self.interest.take_changes(self.config.batch_size);
        let sharded = self.config.mode == RedisMode::Sharded;
        for (i, batch) in changes.subscribe.iter().enumerate() {
            let keys = self.keys(batch);
            let sent = if sharded {
                one_per_command(connection, "SSUBSCRIBE", &keys).await
            } else {
                connection.subscribe(&keys).await
            };
            if let Err(err) = sent {
                // Unconfirmed: try these (and everything not sent yet) again later;
                // (un)subscribing twice is harmless.
                self.interest.retry(&changes.subscribe[i..].concat());
                self.interest.retry(&changes.unsubscribe.concat());
                return Err(err);
            }
            self.interest.subscribed(batch);
        }
        for (i, batch) in changes.unsubscribe.iter().enumerate() {
            let keys = self.keys(batch);
            let sent = if sharded {
                one_per_command(connection, "SUNSUBSCRIBE", &keys).await
            } else {
                connection.unsubscribe(&keys).await
            };
            if let Err(err) = sent {
                self.interest.retry(&changes.unsubscribe[i..].concat());
                return Err(err);
            }
            self.interest.unsubscribed(batch);
        }
        self.shared.events.subscriptions(self.interest.active_len());
        Ok(())
    }

    fn keys(&self, channels: &[Arc<str>]) -> Vec<String> {
        channels
            .iter()
            .map(|c| format!("{}{c}", self.config.prefix))
            .collect()
    }

    /// Waits `delay` before the next connect, keeping up with interest changes meanwhile;
    /// `false` when the broker handle was dropped.
    async fn pause(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return true,
                pending = self.shared.interest.next() => {
                    let Pending::Changes(changes) = pending else { return false };
                    for (channel, on) in changes {
                        self.interest.set(&channel, on);
                    }
                }
            }
        }
    }
}

/// Sends `command key` for each key, pipelined: sharded pub/sub commands must not span
/// hash slots, so each carries one channel.
pub(crate) async fn one_per_command(
    connection: &mut MultiplexedConnection,
    command: &str,
    keys: &[String],
) -> RedisResult<()> {
    let mut pipe = redis::pipe();
    for key in keys {
        pipe.cmd(command).arg(key);
    }
    pipe.query_async::<redis::Value>(connection)
        .await
        .map(|_| ())
}

/// Escapes Redis glob characters so the prefix matches only itself.
fn escape_glob(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 4);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_in_the_prefix_are_escaped() {
        assert_eq!(escape_glob("ringcast:"), "ringcast:");
        assert_eq!(escape_glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}

//! The Redis broker's connection task: connect, subscribe what the node wants, hand
//! received messages to the shards, batch subscription changes, watch an idle connection
//! with PING, and on any loss report down, back off with jitter and start over.

use super::backoff::{Backoff, FIRST_DELAY, MAX_DELAY};
use super::clock::unix_nanos;
use super::config::{RedisConfig, RedisMode};
use super::events::RejectReason;
use super::inbound::{Inbound, InboundRules};
use super::interest::Interest;
use super::shared::{InterestChange, Shared};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, PushInfo, PushKind, RedisResult};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

/// Pushes handled per wake-up before other work gets a turn.
const PUSH_BATCH: usize = 1_024;
/// Wait before resending subscription changes whose confirmation timed out while the
/// connection was busy with pushes.
const RETRY_BUSY_FLUSH: Duration = Duration::from_millis(200);

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
    config: RedisConfig,
    client: redis::Client,
    changes: mpsc::UnboundedReceiver<InterestChange>,
    interest: Interest,
    rules: InboundRules,
}

impl Session {
    pub(crate) fn new(
        shared: Arc<Shared>,
        config: RedisConfig,
        client: redis::Client,
        changes: mpsc::UnboundedReceiver<InterestChange>,
    ) -> Self {
        let rules = InboundRules {
            prefix: config.prefix.clone(),
            max_message_bytes: config.max_message_bytes,
            valid_channel: config.valid_channel,
        };
        Session {
            shared,
            config,
            client,
            changes,
            interest: Interest::default(),
            rules,
        }
    }

    /// Connects and serves until the broker handle is dropped.
    pub(crate) async fn run(mut self) {
        let seed = unix_nanos() ^ u64::from(std::process::id()).rotate_left(32);
        let mut backoff = Backoff::new(FIRST_DELAY, MAX_DELAY, seed);
        let mut connected_before = false;
        let mut failing = false;
        loop {
            let (push_tx, mut pushes) = mpsc::unbounded_channel::<PushInfo>();
            match self.connect(push_tx).await {
                Ok(connection) => {
                    if connected_before {
                        self.shared.events.reconnected();
                    }
                    connected_before = true;
                    failing = false;
                    backoff.reset();
                    let end = self.serve(connection, &mut pushes).await;
                    self.shared.set_connection(None);
                    self.shared.events.subscriptions(0);
                    let End::Lost(reason) = end else { return };
                    self.shared.events.rejected(RejectReason::Disconnect);
                    tracing::warn!(%reason, "Redis connection lost; serving local clients, reconnecting");
                }
                Err(err) if !failing => {
                    failing = true;
                    tracing::warn!(%err, "cannot reach Redis; retrying with backoff");
                }
                Err(_) => {}
            }
            self.interest.connection_lost();
            if !self.pause(backoff.next_delay()).await {
                return;
            }
        }
    }

    async fn connect(
        &self,
        pushes: mpsc::UnboundedSender<PushInfo>,
    ) -> RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.timeout))
            .set_response_timeout(Some(self.config.timeout))
            .set_push_sender(pushes);
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// Subscribes, reports up, then serves the connection until it is lost.
    async fn serve(
        &mut self,
        mut connection: MultiplexedConnection,
        pushes: &mut mpsc::UnboundedReceiver<PushInfo>,
    ) -> End {
        let subscribed = match self.config.mode {
            RedisMode::Pattern => {
                let pattern = format!("{}*", escape_glob(&self.config.prefix));
                let done = connection.psubscribe(&pattern).await;
                self.shared.events.subscriptions(1);
                done
            }
            RedisMode::Interest | RedisMode::Sharded => self.flush(&mut connection).await,
        };
        if let Err(err) = subscribed {
            return End::Lost(format!("subscribing: {err}"));
        }
        self.shared.set_connection(Some(connection.clone()));
        tracing::info!(
            channels = self.interest.active_len(),
            "Redis broker connected and subscribed"
        );
        let mut ping = tokio::time::interval(self.config.ping_every);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ping.tick().await;
        let mut flush_at: Option<Instant> = None;
        // Pushes prove the connection alive; PING only checks an idle one (a PING behind
        // a burst of pushes could time out on a busy host and cost a needless reconnect).
        let mut last_push = Instant::now();
        loop {
            let flush_due = async {
                match flush_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                push = pushes.recv() => {
                    let Some(push) = push else { return End::Lost("push stream ended".into()) };
                    last_push = Instant::now();
                    if !self.on_push(push) {
                        return End::Lost("disconnected".into());
                    }
                    for _ in 0..PUSH_BATCH {
                        let Ok(push) = pushes.try_recv() else { break };
                        if !self.on_push(push) {
                            return End::Lost("disconnected".into());
                        }
                    }
                }
                change = self.changes.recv() => {
                    let Some((channel, on)) = change else { return End::Closed };
                    self.interest.set(&channel, on);
                    if flush_at.is_none() && self.config.mode != RedisMode::Pattern {
                        flush_at = Some(Instant::now() + self.config.batch_window);
                    }
                }
                () = flush_due => {
                    flush_at = None;
                    while let Ok((channel, on)) = self.changes.try_recv() {
                        self.interest.set(&channel, on);
                    }
                    match self.flush(&mut connection).await {
                        Ok(()) => {}
                        // Confirmations stuck behind a flood of pushes: the connection is
                        // busy, not dead; send the unconfirmed changes again shortly.
                        Err(err) if err.is_timeout() && !pushes.is_empty() => {
                            flush_at = Some(Instant::now() + RETRY_BUSY_FLUSH);
                        }
                        Err(err) => return End::Lost(format!("subscription change: {err}")),
                    }
                }
                _ = ping.tick(), if last_push.elapsed() >= self.config.ping_every => {
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

    /// Handles one push; `false` when it says the connection is gone.
    fn on_push(&mut self, push: PushInfo) -> bool {
        if push.kind == PushKind::Disconnection {
            return false;
        }
        let events = &self.shared.events;
        match self.rules.classify(&push.kind, push.data) {
            Inbound::Ignore => {}
            Inbound::Reject(reason) => {
                events.received();
                events.rejected(reason);
            }
            Inbound::Deliver { channel, message } => {
                events.received();
                // Pattern mode receives everything; only channels with local subscribers
                // go on to the shards.
                if self.config.mode == RedisMode::Pattern && !self.interest.wants(&channel) {
                    return true;
                }
                if let Some(at) = message.published_at_ns {
                    let nanos = unix_nanos().saturating_sub(at);
                    events.latency(Duration::from_nanos(nanos).as_secs_f64());
                }
                let _ = self
                    .shared
                    .sink
                    .deliver(&channel, message.payload, message.binary);
            }
        }
        true
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
                change = self.changes.recv() => {
                    let Some((channel, on)) = change else { return false };
                    self.interest.set(&channel, on);
                }
            }
        }
    }
}

/// Sends `command key` for each key, pipelined: sharded pub/sub commands must not span
/// hash slots, so each carries one channel.
async fn one_per_command(
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

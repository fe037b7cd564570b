//! The Redis Cluster connection task: learn the slot map, keep one connection per master
//! (opened in tasks of their own, so a master that does not answer never holds up the
//! others' pushes), subscribe each channel at its slot's master and the control channel
//! at one of them, hand pushes to the shards, and repair what breaks: a lost connection,
//! a `sunsubscribe` for a migrated slot, a redirection, a slot without a master. Repairs
//! ask for a fresh map with capped, jittered backoff; every failure is counted and logged
//! with the node's address (once per run of failures for a node).
//!
//! All connections share one push queue (one bound for the node, see `push_gate`); each
//! connection's pushes carry its number, so a connection's end tells which master went.

use super::keyslot::key_slot;
use super::placement::Placement;
use super::routes::{ClusterLink, Routes, no_route};
use super::slot_map::SlotMap;
use crate::redis::backoff::{Backoff, FIRST_DELAY};
use crate::redis::clock::unix_nanos;
use crate::redis::config::RedisConfig;
use crate::redis::connect::{ConnectError, Endpoint, open};
use crate::redis::deliver::{Deliverer, Handled, Held};
use crate::redis::events::RejectReason;
use crate::redis::history::{self, HistoryRead};
use crate::redis::inbound::InboundRules;
use crate::redis::interest_queue::Pending;
use crate::redis::push_gate::{PushReceiver, PushSender, ReadGate, push_queue};
use crate::redis::sentinel::Addr;
use crate::redis::session::one_per_command;
use crate::redis::shared::Shared;
use redis::aio::MultiplexedConnection;
use redis::{ErrorKind, PushInfo, PushKind, RedisError, ServerErrorKind, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

/// Longest wait for one node's slot map (connect and answer).
const ASK_TIMEOUT: Duration = Duration::from_millis(500);
/// Largest delay between repairs (fresh map, reconnects): a promoted replica is found
/// within this of its promotion.
const MAX_REPAIR_DELAY: Duration = Duration::from_millis(500);
/// Shortest gap between two slot map refreshes asked by redirections.
const MIN_REFRESH_GAP: Duration = Duration::from_millis(100);
/// Pushes handled per wake-up before other work gets a turn.
const PUSH_BATCH: usize = 1_024;
/// Most pushes handed over before a history read's answer is released.
const HAND_OVER_LIMIT: usize = 65_536;
/// Wait before offering a held message to a full shard inbox again.
const RETRY_FULL_INBOX: Duration = Duration::from_millis(1);

/// A live connection to a master.
struct Node {
    /// The number its pushes carry.
    tag: u64,
    connection: MultiplexedConnection,
    /// When it last delivered a push (or opened): a node that pushed during a PING
    /// round is alive, its PONG merely queued behind the pushes.
    last_push: Instant,
}

/// A finished connection attempt: the master, the connection's number, the outcome.
type Opened = (Arc<Addr>, u64, Result<MultiplexedConnection, ConnectError>);

/// A finished PING round: the masters that did not answer, with their numbers.
type Pinged = Vec<(Arc<Addr>, u64, String)>;

/// The Redis Cluster connection task's state.
pub(crate) struct ClusterSession {
    shared: Arc<Shared>,
    deliverer: Deliverer,
    config: RedisConfig,
    endpoint: Arc<Endpoint>,
    /// The URL with its password hidden, for the logs.
    shown_url: String,
    reads: tokio::sync::mpsc::UnboundedReceiver<HistoryRead>,
    placement: Placement,
    map: Arc<SlotMap>,
    nodes: HashMap<Arc<Addr>, Node>,
    /// Which node each live connection number belongs to.
    tags: HashMap<u64, Arc<Addr>>,
    /// When the shared push queue last filled and stopped reading every connection.
    last_pause: Option<Instant>,
    /// The master whose connection carries the control channel's `SUBSCRIBE`.
    control: Option<Arc<Addr>>,
    connecting: JoinSet<Opened>,
    attempts: HashSet<Arc<Addr>>,
    next_tag: u64,
    /// The failure each node's current run of failures started with (logged once).
    failing: HashMap<Arc<Addr>, RejectReason>,
    /// No node answered with a slot map in the last refresh.
    map_failing: bool,
    /// A master connection was lost and none has been opened since.
    lost: bool,
    /// Nodes (seeds, masters) that did not answer the last slot map question.
    unanswered: HashSet<Arc<Addr>>,
    repair: Backoff,
    repair_at: Option<Instant>,
    last_refresh: Option<Instant>,
    flush_at: Option<Instant>,
    push_tx: PushSender,
    gate: ReadGate,
}

impl ClusterSession {
    pub(crate) fn new(
        shared: Arc<Shared>,
        config: RedisConfig,
        endpoint: Endpoint,
        reads: tokio::sync::mpsc::UnboundedReceiver<HistoryRead>,
    ) -> (Self, PushReceiver) {
        let rules = InboundRules::new(
            &config.prefix,
            config.max_message_bytes,
            config.valid_channel,
        );
        let seed = unix_nanos() ^ u64::from(std::process::id()).rotate_left(32);
        let (push_tx, pushes, gate) = push_queue();
        let session = ClusterSession {
            deliverer: Deliverer {
                shared: shared.clone(),
                rules,
            },
            shown_url: crate::redact_url(&config.url),
            placement: Placement::new(&config.prefix),
            shared,
            config,
            endpoint: Arc::new(endpoint),
            reads,
            map: Arc::default(),
            nodes: HashMap::new(),
            tags: HashMap::new(),
            last_pause: None,
            control: None,
            connecting: JoinSet::new(),
            attempts: HashSet::new(),
            next_tag: 1,
            failing: HashMap::new(),
            map_failing: false,
            lost: false,
            unanswered: HashSet::new(),
            repair: Backoff::new(FIRST_DELAY, MAX_REPAIR_DELAY, seed),
            repair_at: Some(Instant::now()),
            last_refresh: None,
            flush_at: None,
            push_tx,
            gate,
        };
        (session, pushes)
    }

    fn link(&self) -> &ClusterLink {
        self.shared
            .cluster
            .as_ref()
            .expect("a cluster session has a cluster link")
    }

    /// Serves until the broker handle is dropped.
    pub(crate) async fn run(mut self, mut pushes: PushReceiver) {
        let shared = self.shared.clone();
        let Some(link) = shared.cluster.as_ref() else {
            return;
        };
        let mut ping = tokio::time::interval(self.config.ping_every);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut pinging: Option<(Instant, tokio::task::JoinHandle<Pinged>)> = None;
        let mut held: Option<Held> = None;
        loop {
            let pauses = pushes.take_pauses();
            if pauses > 0 {
                self.shared.events.push_backlog_full(pauses);
                self.last_pause = Some(Instant::now());
            }
            let busy = held.is_some() || !pushes.is_empty();
            let flush_at = self.flush_at;
            let repair_at = self.repair_at;
            tokio::select! {
                () = tokio::time::sleep(RETRY_FULL_INBOX), if held.is_some() => {
                    if let Some(message) = held.take() {
                        held = self.deliverer.offer(message);
                    }
                    if held.is_none() {
                        self.take_waiting(&mut pushes, &mut held);
                    }
                }
                push = pushes.recv_tagged(), if held.is_none() => {
                    // The session keeps a sender itself: the queue never ends.
                    let Some((tag, push)) = push else { return };
                    if let Handled::Held(message) = self.on_push(tag, push) {
                        held = Some(message);
                    } else {
                        self.take_waiting(&mut pushes, &mut held);
                    }
                }
                pending = self.shared.interest.next() => {
                    let Pending::Changes(changes) = pending else { return };
                    for (channel, on) in changes {
                        self.placement.set(&channel, on);
                    }
                    if self.flush_at.is_none() {
                        self.flush_at = Some(Instant::now() + self.config.batch_window);
                    }
                }
                () = sleep_until(flush_at) => {
                    self.flush_at = None;
                    self.take_interest();
                    self.flush(busy).await;
                }
                () = sleep_until(repair_at) => {
                    self.repair_at = None;
                    self.refresh().await;
                }
                () = link.refresh_asked() => self.refresh_soon(),
                opened = self.connecting.join_next(), if !self.connecting.is_empty() => {
                    if let Some(Ok(opened)) = opened {
                        self.on_opened(opened).await;
                    }
                }
                read = self.reads.recv() => {
                    let Some(read) = read else { return };
                    self.take_interest();
                    self.flush(busy).await;
                    let answer = self.read_history(&read).await;
                    self.hand_over_waiting(&mut pushes, &mut held).await;
                    let _ = read.reply.send(answer);
                }
                _ = ping.tick(), if pinging.is_none() => {
                    pinging = Some((Instant::now(), tokio::spawn(ping_all(self.live()))));
                }
                pinged = async { (&mut pinging.as_mut().expect("checked").1).await }, if pinging.is_some() => {
                    let started = pinging.take().map(|(at, _)| at);
                    if let (Ok(failed), Some(started)) = (pinged, started) {
                        self.judge_pings(failed, started);
                    }
                }
            }
        }
    }

    /// Loses the nodes whose PING failed in the round started at `started`, unless the
    /// failure says nothing: the node delivered pushes meanwhile (its PONG is queued
    /// behind them), or the full push queue stopped reading every connection. Judged
    /// per node, so a busy master never excuses a dead one.
    fn judge_pings(&mut self, failed: Pinged, started: Instant) {
        if self.last_pause.is_some_and(|at| at >= started) {
            return;
        }
        for (node, tag, reason) in failed {
            let dead = self
                .nodes
                .get(&node)
                .is_some_and(|n| n.tag == tag && n.last_push < started);
            if dead {
                self.lose(&node, &format!("PING: {reason}"));
            }
        }
    }

    /// The live connections, for a PING round.
    fn live(&self) -> Vec<(Arc<Addr>, u64, MultiplexedConnection)> {
        self.nodes
            .iter()
            .map(|(addr, node)| (addr.clone(), node.tag, node.connection.clone()))
            .collect()
    }

    fn take_interest(&mut self) {
        for (channel, on) in self.shared.interest.take() {
            self.placement.set(&channel, on);
        }
    }

    /// Handles one push from the connection numbered `tag`.
    fn on_push(&mut self, tag: u64, push: PushInfo) -> Handled {
        if let Some(node) = self
            .tags
            .get(&tag)
            .and_then(|addr| self.nodes.get_mut(addr))
        {
            node.last_push = Instant::now();
        }
        match push.kind {
            PushKind::Disconnection => {
                if let Some(node) = self.tags.get(&tag).cloned() {
                    self.lose(&node, "connection closed");
                }
                Handled::Done
            }
            // Our own SUNSUBSCRIBE's confirmation, or Redis saying the slot left the
            // node: only the latter concerns a channel still wanted there.
            PushKind::SUnsubscribe => {
                let channel = match push.data.first() {
                    Some(Value::BulkString(name)) => {
                        name.strip_prefix(self.config.prefix.as_bytes())
                    }
                    _ => None,
                };
                let node = self.tags.get(&tag).cloned();
                if let (Some(node), Some(Ok(channel))) = (node, channel.map(std::str::from_utf8))
                    && self.placement.moved_away(&node, channel)
                {
                    self.shared.events.rejected(RejectReason::Moved);
                    tracing::debug!(%node, channel, "a channel's slot moved away; placing it again");
                    self.refresh_soon();
                }
                Handled::Done
            }
            _ => self.deliverer.on_push(push, None),
        }
    }

    /// Handles up to [`PUSH_BATCH`] waiting pushes, stopping at one the shards have no
    /// room for.
    fn take_waiting(&mut self, pushes: &mut PushReceiver, held: &mut Option<Held>) {
        for _ in 0..PUSH_BATCH {
            let Some((tag, push)) = pushes.try_recv_tagged() else {
                return;
            };
            if let Handled::Held(message) = self.on_push(tag, push) {
                *held = Some(message);
                return;
            }
        }
    }

    /// Hands every push waiting now to the shards, waiting for room when an inbox is
    /// full (at most [`HAND_OVER_LIMIT`] pushes).
    async fn hand_over_waiting(&mut self, pushes: &mut PushReceiver, held: &mut Option<Held>) {
        let mut handed = 0;
        while handed < HAND_OVER_LIMIT {
            if let Some(message) = held.take() {
                *held = self.deliverer.offer(message);
                if held.is_some() {
                    tokio::time::sleep(RETRY_FULL_INBOX).await;
                }
                continue;
            }
            let Some((tag, push)) = pushes.try_recv_tagged() else {
                return;
            };
            handed += 1;
            if let Handled::Held(message) = self.on_push(tag, push) {
                *held = Some(message);
            }
        }
    }

    /// A fresh slot map as soon as allowed (redirections come in bursts).
    fn refresh_soon(&mut self) {
        let earliest = self
            .last_refresh
            .map_or_else(Instant::now, |at| at + MIN_REFRESH_GAP);
        if self.repair_at.is_none_or(|at| at > earliest) {
            self.repair_at = Some(earliest);
        }
    }

    /// Another repair after the next backoff delay.
    fn repair_later(&mut self) {
        let at = Instant::now() + self.repair.next_delay();
        if self.repair_at.is_none_or(|due| due > at) {
            self.repair_at = Some(at);
        }
    }

    /// Asks for the slot map (the connected masters first, then the seeds and the
    /// masters of the last map), applies the first usable answer and opens the
    /// connections it lacks.
    async fn refresh(&mut self) {
        self.last_refresh = Some(Instant::now());
        let mut asked: Vec<(Arc<Addr>, Option<MultiplexedConnection>)> = self
            .nodes
            .iter()
            .map(|(addr, node)| (addr.clone(), Some(node.connection.clone())))
            .collect();
        let seeds = self.endpoint.seeds().unwrap_or_default().iter().cloned();
        for addr in seeds
            .map(Arc::new)
            .chain(self.map.masters().iter().cloned())
        {
            if !asked.iter().any(|(known, _)| *known == addr) {
                asked.push((addr, None));
            }
        }
        let mut answers = Vec::new();
        let mut found = None;
        for (addr, connection) in asked {
            match self.ask_slots(&addr, connection).await {
                Ok(map) => {
                    self.unanswered.remove(&addr);
                    found = Some(map);
                    break;
                }
                Err(err) => {
                    // Each node that did not answer is counted; logged when it starts
                    // failing (a seed that is down stays quiet after that).
                    self.shared.events.rejected(err.reason);
                    if self.unanswered.insert(addr.clone()) {
                        tracing::warn!(
                            url = %self.shown_url,
                            node = %addr,
                            reason = %err.reason.as_str(),
                            %err,
                            "a Redis Cluster node did not answer with the slot map; asking the next"
                        );
                    }
                    answers.push(format!("{addr}: {err}"));
                }
            }
        }
        let Some(map) = found else {
            self.shared.events.rejected(RejectReason::Cluster);
            if !self.map_failing {
                tracing::warn!(
                    url = %self.shown_url,
                    answers = %answers.join("; "),
                    "no Redis Cluster node answered with a slot map; serving local clients, retrying with backoff"
                );
            }
            self.map_failing = true;
            self.repair_later();
            return;
        };
        if self.map_failing {
            tracing::info!(url = %self.shown_url, "a Redis Cluster node answered with a slot map again");
        }
        self.map_failing = false;
        self.apply(map);
        self.ensure_control().await;
        self.publish_routes();
    }

    /// `CLUSTER SLOTS` of one node, over `connection` or a short-lived one.
    async fn ask_slots(
        &self,
        addr: &Addr,
        connection: Option<MultiplexedConnection>,
    ) -> Result<SlotMap, ConnectError> {
        let question = async {
            let mut connection = match connection {
                Some(connection) => connection,
                None => {
                    let (pushes, _ignored, gate) = push_queue();
                    let timeout = self.config.timeout.min(ASK_TIMEOUT);
                    let max = self.config.max_message_bytes;
                    open(&self.endpoint, addr, max, timeout, pushes, gate).await?
                }
            };
            let answer = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async::<Value>(&mut connection)
                .await
                .map_err(|e| {
                    ConnectError::from_redis(&e, RejectReason::Cluster).context("CLUSTER SLOTS")
                })?;
            SlotMap::parse(&answer, addr)
                .map_err(|e| ConnectError::new(RejectReason::Cluster, e.to_string()))
        };
        tokio::time::timeout(ASK_TIMEOUT, question)
            .await
            .unwrap_or_else(|_| {
                Err(ConnectError::new(
                    RejectReason::Connect,
                    format!("no answer within {ASK_TIMEOUT:?}"),
                ))
            })
    }

    /// Follows `map`: channels whose master changed are placed again, connections to
    /// nodes that are no longer masters are closed, missing ones opened.
    fn apply(&mut self, map: SlotMap) {
        if map != *self.map {
            self.placement.remap(&map);
            self.map = Arc::new(map);
            let masters: Vec<String> = self.map.masters().iter().map(|m| m.to_string()).collect();
            tracing::debug!(masters = %masters.join(","), "a new Redis Cluster slot map");
        }
        let map = self.map.clone();
        let masters = map.masters();
        let gone: Vec<Arc<Addr>> = self
            .nodes
            .keys()
            .filter(|addr| !masters.contains(addr))
            .cloned()
            .collect();
        for addr in gone {
            tracing::info!(node = %addr, "no longer a master in the slot map; leaving it");
            self.drop_node(&addr);
        }
        // A node that left the masters (a failed master replaced) no longer counts as
        // failing.
        self.failing.retain(|addr, _| masters.contains(addr));
        // Nor does it stay among the nodes that did not answer (addresses churn).
        let seeds = self.endpoint.seeds().unwrap_or_default();
        self.unanswered
            .retain(|addr| masters.contains(addr) || seeds.contains(&**addr));
        for master in masters.iter().cloned() {
            if !self.nodes.contains_key(&master) && self.attempts.insert(master.clone()) {
                let tag = self.next_tag;
                self.next_tag += 1;
                let endpoint = self.endpoint.clone();
                let (max, timeout) = (self.config.max_message_bytes, self.config.timeout);
                let pushes = self.push_tx.tagged(tag);
                let gate = self.gate.clone();
                self.connecting.spawn(async move {
                    let opened = open(&endpoint, &master, max, timeout, pushes, gate).await;
                    (master, tag, opened)
                });
            }
        }
        let unowned = self.map.unowned();
        if unowned > 0 {
            self.shared.events.rejected(RejectReason::Cluster);
            tracing::debug!(unowned, "slots without a master in the slot map");
            self.repair_later();
        }
        self.publish_routes();
        self.flush_at = Some(Instant::now());
    }

    /// A connection attempt finished.
    async fn on_opened(&mut self, (addr, tag, opened): Opened) {
        self.attempts.remove(&addr);
        match opened {
            Ok(connection) => {
                if !self.map.masters().contains(&addr) {
                    return;
                }
                // Counted once per repair: the first connection opened after a loss
                // (to the same master, or to the replica that replaced it).
                let was_failing = self.failing.remove(&addr).is_some();
                if std::mem::take(&mut self.lost) || was_failing {
                    self.shared.events.reconnected();
                }
                tracing::info!(url = %self.shown_url, node = %addr, "connected to a Redis Cluster master");
                self.tags.insert(tag, addr.clone());
                let last_push = Instant::now();
                let node = Node {
                    tag,
                    connection,
                    last_push,
                };
                if let Some(replaced) = self.nodes.insert(addr, node) {
                    self.tags.remove(&replaced.tag);
                }
                self.ensure_control().await;
                // The node's own channels are subscribed there before its publishes go
                // there, so none of them misses its own node.
                self.take_interest();
                self.flush(false).await;
                self.publish_routes();
            }
            Err(err) => {
                self.shared.events.rejected(err.reason);
                let before = self.failing.insert(addr.clone(), err.reason);
                if before == Some(err.reason) {
                    tracing::debug!(node = %addr, reason = %err.reason.as_str(), %err, "Redis Cluster connection attempt failed");
                } else {
                    tracing::warn!(
                        url = %self.shown_url,
                        node = %addr,
                        reason = %err.reason.as_str(),
                        %err,
                        "cannot connect to a Redis Cluster master; its channels wait, retrying with backoff"
                    );
                }
                self.repair_later();
            }
        }
    }

    /// Subscribes the control channel on one connected master if none carries it.
    async fn ensure_control(&mut self) {
        if self
            .control
            .as_ref()
            .is_some_and(|c| self.nodes.contains_key(c))
        {
            return;
        }
        self.control = None;
        let mut masters: Vec<Arc<Addr>> = self.nodes.keys().cloned().collect();
        masters.sort_unstable_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
        for addr in masters {
            let Some(node) = self.nodes.get_mut(&addr) else {
                continue;
            };
            match node
                .connection
                .subscribe(&self.deliverer.rules.control)
                .await
            {
                Ok(()) => {
                    self.control = Some(addr);
                    return;
                }
                Err(err) => self.lose(&addr, &format!("subscribing the control channel: {err}")),
            }
        }
    }

    /// The connection to `addr` is gone: its channels wait for a fresh map.
    fn lose(&mut self, addr: &Arc<Addr>, reason: &str) {
        if !self.nodes.contains_key(addr) {
            return;
        }
        self.shared.events.rejected(RejectReason::Disconnect);
        tracing::warn!(
            url = %self.shown_url,
            node = %addr,
            %reason,
            "Redis Cluster master connection lost; its channels are placed again after a fresh slot map"
        );
        self.failing.insert(addr.clone(), RejectReason::Disconnect);
        self.lost = true;
        self.drop_node(addr);
        self.refresh_soon();
    }

    /// Forgets the connection to `addr` and what was subscribed there.
    fn drop_node(&mut self, addr: &Arc<Addr>) {
        if let Some(node) = self.nodes.remove(addr) {
            self.tags.remove(&node.tag);
        }
        self.placement.node_lost(addr);
        if self.control.as_ref() == Some(addr) {
            self.control = None;
        }
        self.publish_routes();
        self.shared
            .events
            .subscriptions(self.placement.active_len());
    }

    /// Tells requests the current map and connections, and readiness whether every
    /// slot's master is connected.
    fn publish_routes(&self) {
        let connections = self
            .nodes
            .iter()
            .map(|(addr, node)| (addr.clone(), node.connection.clone()))
            .collect();
        self.link().set_routes(Routes {
            map: self.map.clone(),
            connections,
        });
        let control = self
            .control
            .as_ref()
            .and_then(|c| self.nodes.get(c))
            .map(|n| n.connection.clone());
        let masters = self.map.masters();
        let up = control.is_some()
            && self.map.unowned() == 0
            && !masters.is_empty()
            && masters.iter().all(|m| self.nodes.contains_key(m));
        self.shared.set_cluster_state(control, up);
    }

    /// Sends the placement's plan: `SUNSUBSCRIBE`/`SSUBSCRIBE` per master, one channel
    /// per command, pipelined in batches.
    async fn flush(&mut self, busy: bool) {
        if self.nodes.is_empty() || !self.placement.has_changes() {
            return;
        }
        let nodes = &self.nodes;
        let plan = self
            .placement
            .plan(&self.map, &|addr| nodes.contains_key(addr));
        let batch = self.config.batch_size.max(1);
        for (addr, work) in plan.work {
            let Some(mut connection) = self.nodes.get(&addr).map(|n| n.connection.clone()) else {
                self.placement.retry(&work.subscribe);
                self.placement.retry(&work.unsubscribe);
                continue;
            };
            let mut failed = None;
            for chunk in work.unsubscribe.chunks(batch) {
                if failed.is_some() {
                    self.placement.retry(chunk);
                    continue;
                }
                let keys = self.keys(chunk);
                match one_per_command(&mut connection, "SUNSUBSCRIBE", &keys).await {
                    Ok(()) => self.placement.unsubscribed(&addr, chunk),
                    Err(err) => {
                        self.placement.retry(chunk);
                        failed = Some(err);
                    }
                }
            }
            for chunk in work.subscribe.chunks(batch) {
                if failed.is_some() {
                    self.placement.retry(chunk);
                    continue;
                }
                let keys = self.keys(chunk);
                match one_per_command(&mut connection, "SSUBSCRIBE", &keys).await {
                    Ok(()) => self.placement.subscribed(&addr, chunk),
                    Err(err) => {
                        self.placement.retry(chunk);
                        failed = Some(err);
                    }
                }
            }
            if let Some(err) = failed {
                self.subscription_failed(&addr, &err, busy);
            }
        }
        if plan.waiting > 0 {
            self.repair_later();
        } else if self.failing.is_empty() && !self.map_failing {
            self.repair.reset();
        }
        self.shared
            .events
            .subscriptions(self.placement.active_len());
    }

    /// A subscription change at `addr` failed: a redirection or a cluster that cannot
    /// serve is counted and tried again after a fresh map; a refusal of the user's rights
    /// is counted and retried with backoff; a dead connection is lost.
    fn subscription_failed(&mut self, addr: &Arc<Addr>, err: &RedisError, busy: bool) {
        let server = match err.kind() {
            ErrorKind::Server(kind) => Some(kind),
            _ => None,
        };
        let reason = match server {
            Some(ServerErrorKind::Moved | ServerErrorKind::Ask) => Some(RejectReason::Moved),
            Some(ServerErrorKind::ClusterDown | ServerErrorKind::TryAgain) => {
                Some(RejectReason::Cluster)
            }
            Some(_) => Some(ConnectError::from_redis(err, RejectReason::Cluster).reason),
            None => None,
        };
        match reason {
            Some(reason) => {
                self.shared.events.rejected(reason);
                let before = self.failing.insert(addr.clone(), reason);
                if before != Some(reason) {
                    tracing::warn!(
                        node = %addr,
                        reason = %reason.as_str(),
                        %err,
                        "a Redis Cluster master refused subscriptions; asking for the slot map again"
                    );
                }
                self.repair_later();
            }
            // Confirmations stuck behind a flood of pushes: busy, not dead.
            None if err.is_timeout() && busy => {
                self.flush_at = Some(Instant::now() + Duration::from_millis(200));
            }
            None => self.lose(addr, &format!("subscription change: {err}")),
        }
    }

    /// A history read, on the master owning the channel's slot, after its subscription
    /// there (the flush before it) on the same connection.
    async fn read_history(&mut self, read: &HistoryRead) -> redis::RedisResult<history::Fetched> {
        let slot = key_slot(read.redis_channel.as_bytes());
        let connection = self
            .map
            .master(slot)
            .and_then(|master| self.nodes.get(master))
            .map(|node| node.connection.clone());
        let Some(mut connection) = connection else {
            return Err(no_route("no connection to the channel's master"));
        };
        let max = self.config.max_message_bytes;
        let fetched = history::fetch(&mut connection, &read.redis_channel, max).await;
        if let Err(err) = &fetched
            && matches!(
                err.kind(),
                ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask)
            )
        {
            self.shared.events.rejected(RejectReason::Moved);
            self.refresh_soon();
        }
        fetched
    }

    fn keys(&self, channels: &[Arc<str>]) -> Vec<String> {
        channels
            .iter()
            .map(|c| format!("{}{c}", self.config.prefix))
            .collect()
    }
}

/// PINGs each connection; the ones that failed.
async fn ping_all(nodes: Vec<(Arc<Addr>, u64, MultiplexedConnection)>) -> Pinged {
    let mut failed = Vec::new();
    for (addr, tag, mut connection) in nodes {
        if let Err(err) = redis::cmd("PING")
            .query_async::<Value>(&mut connection)
            .await
        {
            failed.push((addr, tag, err.to_string()));
        }
    }
    failed
}

/// Sleeps until `at`; never without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

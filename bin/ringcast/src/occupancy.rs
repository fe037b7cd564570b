//! Channel occupancy on the sidecar: the admin API's view of the shards' count
//! snapshots ([`NodeOccupancy`]; a channel's position comes from Redis with a cluster,
//! else from one question to its owner shard), and the task that turns their changes into webhook
//! events and, with Redis, into the cluster's counts ([`run`]).
//!
//! Without Redis the task reads the snapshots' changes every [`LOCAL_EVERY`] and
//! reports a channel occupied when its node count went from 0 and vacated when it went
//! to 0 over that period. With Redis it collects the changed counts and writes them
//! every [`CLUSTER_EVERY`] ([`ClusterOccupancy::flush`], which also heartbeats); the
//! transitions come from that write, so each cluster transition is reported by one
//! node only; a name in them that is no valid channel (something else wrote into the
//! keys) is counted as garbage, never sent. A failed write keeps the counts for the
//! next one.

use crate::mesh::Mesh;
use crate::webhook::{WebhookQueue, now_ms};
use crate::webhook_queue::{Event, EventKind};
use ringcast_admin::{ChannelFuture, ChannelInfo, Occupancy};
use ringcast_broker::{CHANNELS_PER_WRITE, ClusterOccupancy, Transition};
use ringcast_proto::is_valid_channel;
use ringcast_shard::{
    ChannelName, OccupancySnapshot, Position, PositionReport, ShardMsg, owner_of,
};
use ringcast_telemetry::names;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Longest a `GET /channels/<ch>` waits for the owner shard's position answer.
const POSITION_WITHIN: Duration = Duration::from_secs(1);
/// How often the snapshots' changes are read.
pub const LOCAL_EVERY: Duration = Duration::from_millis(100);
/// How often the node writes its changed counts (and its heartbeat) to Redis.
pub const CLUSTER_EVERY: Duration = Duration::from_secs(1);

/// The node's counts as the admin API reads them.
pub struct NodeOccupancy {
    /// Every shard's snapshot, by shard id.
    pub snapshots: Vec<OccupancySnapshot>,
    /// The cluster's counts, with Redis.
    pub cluster: Option<ClusterOccupancy>,
    /// Whether channels keep history (in Redis, with a cluster).
    pub history: bool,
    /// The shards, asked for a channel's position when there is no cluster.
    pub mesh: Arc<Mesh>,
}

/// Asks `channel`'s owner for its last position (one lookup on the shard), waiting at
/// most [`POSITION_WITHIN`]; None when it keeps none or did not answer in time.
async fn local_position(mesh: Arc<Mesh>, channel: ChannelName) -> Option<String> {
    let owner = owner_of(&channel, mesh.len());
    let (tx, rx) = flume::bounded(1);
    let report = PositionReport::new(move |position: Option<Position>| {
        let _ = tx.try_send(position.map(|p| p.to_string()));
    });
    let msg = ShardMsg::Position { channel, report };
    let asked = async {
        mesh.send_waiting(owner, msg).await;
        mesh.nudge(owner);
        rx.recv_async().await.ok().flatten()
    };
    tokio::time::timeout(POSITION_WITHIN, asked)
        .await
        .ok()
        .flatten()
}

impl Occupancy for NodeOccupancy {
    /// Each owner's snapshot gives its first `limit` matches (the owners' channel sets
    /// are disjoint), merged by name: O(shards × limit) whatever the node holds.
    fn list(&self, prefix: &str, limit: usize) -> Vec<(String, u64)> {
        let mut all: Vec<(ChannelName, u64)> = self
            .snapshots
            .iter()
            .flat_map(|snapshot| snapshot.list(prefix, limit))
            .collect();
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        all.truncate(limit);
        all.into_iter()
            .map(|(name, count)| (name.to_string(), count))
            .collect()
    }

    fn channel(&self, channel: &str) -> ChannelFuture {
        let owner = owner_of(channel, self.snapshots.len());
        let subscribers_node = self.snapshots.get(owner).map_or(0, |s| s.count(channel));
        let cluster = self.cluster.clone();
        let history = self.history;
        let mesh = self.mesh.clone();
        let channel = channel.to_owned();
        Box::pin(async move {
            let Some(cluster) = cluster else {
                let position = match history {
                    true => Some(local_position(mesh, channel.as_str().into()).await),
                    false => None,
                };
                return ChannelInfo {
                    subscribers_node,
                    subscribers_cluster: None,
                    position,
                };
            };
            let count = cluster.count(&channel).await.map_err(|e| e.to_string());
            let position = match history {
                true => Some(cluster.position(&channel).await.ok().flatten()),
                false => None,
            };
            ChannelInfo {
                subscribers_node,
                subscribers_cluster: Some(count),
                position,
            }
        })
    }
}

/// Reads the snapshots' changes forever: webhook events without Redis, cluster writes
/// (whose transitions become the events) with it.
pub async fn run(
    snapshots: Vec<OccupancySnapshot>,
    cluster: Option<ClusterOccupancy>,
    webhook: Option<Arc<WebhookQueue>>,
) {
    match cluster {
        None => run_local(snapshots, webhook).await,
        Some(cluster) => run_cluster(snapshots, cluster, webhook).await,
    }
}

fn event(webhook: &Option<Arc<WebhookQueue>>, kind: EventKind, channel: String) {
    if let Some(queue) = webhook {
        queue.push(Event {
            kind,
            channel,
            at_ms: now_ms(),
        });
    }
}

async fn run_local(snapshots: Vec<OccupancySnapshot>, webhook: Option<Arc<WebhookQueue>>) {
    let mut every = tokio::time::interval(LOCAL_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        for change in snapshots.iter().flat_map(OccupancySnapshot::take_changes) {
            match (change.before, change.after) {
                (0, _) => event(&webhook, EventKind::Occupied, change.channel.to_string()),
                (_, 0) => event(&webhook, EventKind::Vacated, change.channel.to_string()),
                _ => {}
            }
        }
    }
}

async fn run_cluster(
    snapshots: Vec<OccupancySnapshot>,
    cluster: ClusterOccupancy,
    webhook: Option<Arc<WebhookQueue>>,
) {
    for result in ["ok", "error"] {
        metrics::counter!(names::OCCUPANCY_FLUSHES, "result" => result).increment(0);
    }
    metrics::counter!(names::OCCUPANCY_GARBAGE).increment(0);
    metrics::counter!(names::OCCUPANCY_REAPED).increment(0);
    // Channel → this node's count not yet written.
    let mut dirty: HashMap<ChannelName, u64> = HashMap::new();
    let mut first = true;
    let mut failing = false;
    let mut every = tokio::time::interval(CLUSTER_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        for change in snapshots.iter().flat_map(OccupancySnapshot::take_changes) {
            dirty.insert(change.channel, change.after);
        }
        let mut batch: Vec<(ChannelName, u64)> = dirty.drain().collect();
        let mut resync = false;
        loop {
            let rest = batch.split_off(batch.len().min(CHANNELS_PER_WRITE));
            let counts: Vec<(&str, u64)> = batch.iter().map(|(c, n)| (&**c, *n)).collect();
            match cluster.flush(&counts).await {
                Ok(outcome) => {
                    metrics::counter!(names::OCCUPANCY_FLUSHES, "result" => "ok").increment(1);
                    metrics::counter!(names::OCCUPANCY_GARBAGE).increment(outcome.garbage);
                    metrics::counter!(names::OCCUPANCY_REAPED).increment(outcome.reaped);
                    if failing {
                        tracing::info!("occupancy counts written to Redis again");
                        failing = false;
                    }
                    resync |= outcome.resync && !first;
                    first = false;
                    for transition in outcome.transitions {
                        let (kind, channel) = match transition {
                            Transition::Occupied(channel) => (EventKind::Occupied, channel),
                            Transition::Vacated(channel) => (EventKind::Vacated, channel),
                        };
                        // Names come from Redis, where anything may have written them.
                        if is_valid_channel(&channel) {
                            event(&webhook, kind, channel);
                        } else {
                            metrics::counter!(names::OCCUPANCY_GARBAGE).increment(1);
                        }
                    }
                }
                Err(err) => {
                    metrics::counter!(names::OCCUPANCY_FLUSHES, "result" => "error").increment(1);
                    // Before the first write the broker is usually still connecting.
                    if !failing && !first {
                        tracing::warn!(
                            "writing occupancy counts to Redis failed, kept for the next write: {err}"
                        );
                        failing = true;
                    }
                    for (channel, count) in batch.into_iter().chain(rest) {
                        dirty.entry(channel).or_insert(count);
                    }
                    break;
                }
            }
            if rest.is_empty() {
                break;
            }
            batch = rest;
        }
        if resync {
            tracing::info!(
                "this node's occupancy counts were reaped in Redis; sending them all again"
            );
            for snapshot in &snapshots {
                dirty.extend(snapshot.all());
            }
        }
    }
}

//! The admin API's disconnect on this node's shards: the sidecar sends every shard a
//! `ShardMsg::Disconnect` on its mesh lane (the lane and wake-up the drain uses), each
//! from its own task that waits for room as long as the lane stays full, so a busy
//! shard still gets it; the counts the shards report back through a channel are summed
//! for at most [`ANSWER_WITHIN`]. A shard that does not answer in time still closes its
//! connections when it gets to the message; the answer then says it is incomplete. The same runs for a disconnect another node asked for through the
//! broker (see `ShardSink::disconnect`), whose count is only logged.

use crate::mesh::Mesh;
use ringcast_admin::{DisconnectFuture, DisconnectOutcome, Disconnector};
use ringcast_shard::{DisconnectReport, ShardMsg};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, timeout_at};

/// How long a disconnect waits for the shards' counts.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// Closes the connections `target` names on every shard and counts them.
pub async fn disconnect_shards(
    mesh: Arc<Mesh>,
    target: ringcast_broker::DisconnectTarget,
) -> DisconnectOutcome {
    let target = match target {
        ringcast_broker::DisconnectTarget::Sub(sub) => {
            ringcast_shard::DisconnectTarget::Sub(sub.into())
        }
        ringcast_broker::DisconnectTarget::Channel(channel) => {
            ringcast_shard::DisconnectTarget::Channel(channel.into())
        }
    };
    let deadline = Instant::now() + ANSWER_WITHIN;
    let (counts, answers) = flume::unbounded();
    let report = DisconnectReport::new(move |closed| {
        let _ = counts.send(closed);
    });
    for shard in 0..mesh.len() {
        let msg = ShardMsg::Disconnect {
            target: target.clone(),
            report: report.clone(),
        };
        let mesh = mesh.clone();
        tokio::spawn(async move {
            // Ends once queued (or the shard is gone, dropping the message and its
            // report): never abandoned, however late the count comes.
            mesh.send_waiting(shard, msg).await;
            mesh.nudge(shard);
        });
    }
    // Only the queued messages hold the sender now: once every shard handled (or
    // dropped) its message, the channel ends.
    drop(report);
    let mut disconnected = 0;
    let mut answered = 0;
    while answered < mesh.len() {
        match timeout_at(deadline, answers.recv_async()).await {
            Ok(Ok(closed)) => {
                disconnected += closed;
                answered += 1;
            }
            Ok(Err(_)) | Err(_) => break,
        }
    }
    DisconnectOutcome {
        disconnected,
        complete: answered == mesh.len(),
    }
}

/// The admin API's view of this node's shards.
pub struct ShardDisconnector {
    /// Every shard's inbox.
    pub mesh: Arc<Mesh>,
}

impl Disconnector for ShardDisconnector {
    fn disconnect(&self, target: ringcast_broker::DisconnectTarget) -> DisconnectFuture {
        Box::pin(disconnect_shards(self.mesh.clone(), target))
    }
}

// A token's `sub` always fits the disconnect API's limit.
const _: () = assert!(ringcast_shard::MAX_SUB_BYTES == ringcast_broker::MAX_SUB_BYTES);

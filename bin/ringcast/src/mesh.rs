//! The shards' mailboxes: per shard two bounded flume lanes plus its reactor's waker. A
//! sender wakes the receiving reactor only when it may be asleep (it announced so before
//! waiting), so a busy shard is never woken by a syscall per message. Nothing ever blocks
//! on a full lane (a shard thread must not wait for another shard):
//!
//! - the **publish lane** ([`PUBLISH_LANE`] messages) carries the broker's publishes to
//!   the channel's owner. Full: the publish is refused at once
//!   ([`Sent::Full`]; `POST /publish` answers 503, the Redis reader holds the message
//!   and stops reading). An owner takes from it only while everything it sent to other
//!   shards fitted, so a slow shard's backlog reaches the publishers instead of memory.
//! - the **mesh lane** ([`MESH_LANE`] messages) carries everything between shards
//!   (interest, fan-out deliveries, long-poll requests and replies) and the sidecar's
//!   drain and disconnects. Full: the sender keeps the message, in order, and offers it
//!   again on its next loop turn; the receiver takes its share of this lane in every send
//!   cycle, which ends within a bounded number of turns that wait for nothing but its
//!   own sends, so no two shards can wait on each other.

use ringcast_shard::ShardMsg;
use ringcast_uring::Waker;
use std::sync::atomic::{AtomicBool, Ordering};

/// Messages a shard's publish lane holds.
pub const PUBLISH_LANE: usize = 1_024;
/// Messages a shard's mesh lane holds.
pub const MESH_LANE: usize = 2_048;

/// A shard's receiving ends.
pub struct Inbox {
    /// Publishes from the broker.
    pub publish: flume::Receiver<ShardMsg>,
    /// Messages from the other shards and the sidecar.
    pub mesh: flume::Receiver<ShardMsg>,
}

impl Inbox {
    /// Messages waiting in both lanes.
    pub fn len(&self) -> usize {
        self.publish.len() + self.mesh.len()
    }
}

/// A shard's sending ends.
#[derive(Clone)]
pub struct InboxSenders {
    publish: flume::Sender<ShardMsg>,
    mesh: flume::Sender<ShardMsg>,
}

/// A new shard inbox: its receiving ends for the shard, its sending ends for the mesh.
pub fn inbox() -> (InboxSenders, Inbox) {
    let (publish_tx, publish) = flume::bounded(PUBLISH_LANE);
    let (mesh_tx, mesh) = flume::bounded(MESH_LANE);
    (
        InboxSenders {
            publish: publish_tx,
            mesh: mesh_tx,
        },
        Inbox { publish, mesh },
    )
}

/// What became of a message offered to a lane.
pub enum Sent {
    /// It is in the lane.
    Queued,
    /// The lane is full; here is the message back.
    Full(ShardMsg),
    /// The shard is gone (the process is ending); the message is dropped.
    Gone,
}

/// One shard's inbox.
struct Mailbox {
    tx: InboxSenders,
    waker: Waker,
    sleeping: AtomicBool,
}

/// Every shard's inbox, indexed by shard id.
pub struct Mesh {
    boxes: Vec<Mailbox>,
}

fn try_send(tx: &flume::Sender<ShardMsg>, msg: ShardMsg) -> Sent {
    match tx.try_send(msg) {
        Ok(()) => Sent::Queued,
        Err(flume::TrySendError::Full(msg)) => Sent::Full(msg),
        Err(flume::TrySendError::Disconnected(_)) => Sent::Gone,
    }
}

impl Mesh {
    /// Builds the mesh from each shard's senders and reactor waker, in shard order.
    pub fn new(parts: Vec<(InboxSenders, Waker)>) -> Self {
        Mesh {
            boxes: parts
                .into_iter()
                .map(|(tx, waker)| Mailbox {
                    tx,
                    waker,
                    sleeping: AtomicBool::new(false),
                })
                .collect(),
        }
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.boxes.len()
    }

    /// Queues a broker publish on shard `to`'s publish lane without waking it.
    pub fn publish(&self, to: usize, msg: ShardMsg) -> Sent {
        match self.boxes.get(to) {
            Some(b) => try_send(&b.tx.publish, msg),
            None => Sent::Gone,
        }
    }

    /// Queues `msg` on shard `to`'s mesh lane without waking it.
    pub fn send(&self, to: usize, msg: ShardMsg) -> Sent {
        match self.boxes.get(to) {
            Some(b) => try_send(&b.tx.mesh, msg),
            None => Sent::Gone,
        }
    }

    /// Queues `msg` on shard `to`'s mesh lane, waiting (asynchronously) for room; false
    /// if the shard is gone. For the sidecar, never for a shard thread.
    pub async fn send_waiting(&self, to: usize, msg: ShardMsg) -> bool {
        match self.boxes.get(to) {
            Some(b) => b.tx.mesh.send_async(msg).await.is_ok(),
            None => false,
        }
    }

    /// Wakes shard `to` if it announced it is about to sleep.
    pub fn nudge(&self, to: usize) {
        if let Some(b) = self.boxes.get(to)
            && b.sleeping.swap(false, Ordering::SeqCst)
        {
            b.waker.wake();
        }
    }

    /// Shard `me` is about to wait: returns whether it may (nothing it would take is
    /// waiting; `takes_publishes`: whether it would take from its publish lane now).
    pub fn prepare_sleep(&self, me: usize, inbox: &Inbox, takes_publishes: bool) -> bool {
        let Some(b) = self.boxes.get(me) else {
            return false;
        };
        b.sleeping.store(true, Ordering::SeqCst);
        if inbox.mesh.is_empty() && (!takes_publishes || inbox.publish.is_empty()) {
            return true;
        }
        b.sleeping.store(false, Ordering::SeqCst);
        false
    }

    /// Shard `me` woke up.
    pub fn awake(&self, me: usize) {
        if let Some(b) = self.boxes.get(me) {
            b.sleeping.store(false, Ordering::SeqCst);
        }
    }
}

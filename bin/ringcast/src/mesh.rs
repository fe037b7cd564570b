//! The shards' mailboxes: one flume queue per shard plus its reactor's waker. A sender
//! wakes the receiving reactor only when it may be asleep (it announced so before
//! waiting), so a busy shard is never woken by a syscall per message.

use ringcast_shard::ShardMsg;
use ringcast_uring::Waker;
use std::sync::atomic::{AtomicBool, Ordering};

/// One shard's inbox.
pub struct Mailbox {
    tx: flume::Sender<ShardMsg>,
    waker: Waker,
    sleeping: AtomicBool,
}

/// Every shard's inbox, indexed by shard id.
pub struct Mesh {
    boxes: Vec<Mailbox>,
}

impl Mesh {
    /// Builds the mesh from each shard's sender and reactor waker, in shard order.
    pub fn new(parts: Vec<(flume::Sender<ShardMsg>, Waker)>) -> Self {
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

    /// Queues `msg` for shard `to` without waking it; returns false if it is gone.
    pub fn send(&self, to: usize, msg: ShardMsg) -> bool {
        self.boxes.get(to).is_some_and(|b| b.tx.send(msg).is_ok())
    }

    /// Wakes shard `to` if it announced it is about to sleep.
    pub fn nudge(&self, to: usize) {
        if let Some(b) = self.boxes.get(to)
            && b.sleeping.swap(false, Ordering::SeqCst)
        {
            b.waker.wake();
        }
    }

    /// Shard `me` is about to wait: returns whether it may (its inbox is still empty).
    pub fn prepare_sleep(&self, me: usize, inbox: &flume::Receiver<ShardMsg>) -> bool {
        let Some(b) = self.boxes.get(me) else {
            return false;
        };
        b.sleeping.store(true, Ordering::SeqCst);
        if inbox.is_empty() {
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

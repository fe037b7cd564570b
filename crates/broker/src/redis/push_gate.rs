//! The bound on pushes from Redis waiting for the connection task: the redis crate hands
//! every push it parses to a sender that must not block, so the bound is kept one step
//! earlier, at the socket: its reader stops reading while the pushes the task has not
//! taken yet weigh [`PUSH_BACKLOG_BYTES`] or more ([`ReadGate`]); the task takes none while
//! the shards' inboxes are full. Redis then keeps the rest in its own output buffer, and
//! its `client-output-buffer-limit pubsub` applies.
//!
//! Bound: [`PUSH_BACKLOG_BYTES`] plus what one socket read yields (one read of the limited
//! stream, at most 16 KiB of RESP, plus the push it completes, at most one message) per
//! connection sharing the queue.
//!
//! In Redis Cluster mode the connections to every master share one queue (one bound for
//! the node): each connection's sender tags its pushes with the connection's number
//! ([`PushSender::tagged`]) and every connection's socket is gated by the same backlog.

use redis::PushInfo;
use redis::aio::{AsyncPushSender, SendError};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use tokio::sync::mpsc;

/// Bytes of waiting pushes at which the socket is no longer read.
pub(crate) const PUSH_BACKLOG_BYTES: usize = 8 << 20;
/// What one push costs beyond its bulk strings (the `PushInfo`, its `Vec` and values).
const PUSH_OVERHEAD: usize = 128;

/// What the sender, the receiver and the gated socket share.
#[derive(Debug, Default)]
struct Backlog {
    /// Weight of the pushes sent and not received yet.
    bytes: AtomicUsize,
    /// A reader is parked, waiting for the backlog to shrink.
    parked: AtomicBool,
    /// The parked readers (one per connection at most).
    readers: Mutex<Vec<Waker>>,
    /// Times the reader stopped because the backlog was full.
    pauses: AtomicUsize,
}

impl Backlog {
    fn is_full(&self) -> bool {
        self.bytes.load(Ordering::Acquire) >= PUSH_BACKLOG_BYTES
    }

    fn wake_reader(&self) {
        if self.parked.swap(false, Ordering::AcqRel)
            && let Ok(mut readers) = self.readers.lock()
        {
            for waker in readers.drain(..) {
                waker.wake();
            }
        }
    }
}

/// A bounded push queue: the sender for the redis crate, the receiver for the task, and
/// the gate for the socket.
pub(crate) fn push_queue() -> (PushSender, PushReceiver, ReadGate) {
    let backlog = Arc::new(Backlog::default());
    let (tx, rx) = mpsc::unbounded_channel();
    (
        PushSender {
            tx,
            backlog: backlog.clone(),
            tag: 0,
        },
        PushReceiver {
            rx,
            backlog: backlog.clone(),
        },
        ReadGate { backlog },
    )
}

/// Weight of one push in the backlog.
fn weight(push: &PushInfo) -> usize {
    let blobs: usize = push
        .data
        .iter()
        .map(|value| match value {
            redis::Value::BulkString(bytes) => bytes.len(),
            _ => 0,
        })
        .sum();
    blobs + PUSH_OVERHEAD
}

/// The redis crate's end: never blocks, never refuses (the gate keeps the bound).
pub(crate) struct PushSender {
    tx: mpsc::UnboundedSender<(u64, PushInfo)>,
    backlog: Arc<Backlog>,
    /// The connection's number its pushes carry.
    tag: u64,
}

impl PushSender {
    /// A sender into the same queue whose pushes carry `tag`.
    pub(crate) fn tagged(&self, tag: u64) -> PushSender {
        PushSender {
            tx: self.tx.clone(),
            backlog: self.backlog.clone(),
            tag,
        }
    }
}

impl AsyncPushSender for PushSender {
    fn send(&self, info: PushInfo) -> Result<(), SendError> {
        let weight = weight(&info);
        self.backlog.bytes.fetch_add(weight, Ordering::AcqRel);
        self.tx.send((self.tag, info)).map_err(|_| SendError)
    }
}

/// The connection task's end.
pub(crate) struct PushReceiver {
    rx: mpsc::UnboundedReceiver<(u64, PushInfo)>,
    backlog: Arc<Backlog>,
}

impl PushReceiver {
    /// The next push; `None` once the connection dropped its sender.
    pub(crate) async fn recv(&mut self) -> Option<PushInfo> {
        self.recv_tagged().await.map(|(_, push)| push)
    }

    /// The next push if one is waiting.
    pub(crate) fn try_recv(&mut self) -> Option<PushInfo> {
        self.try_recv_tagged().map(|(_, push)| push)
    }

    /// The next push with its sender's tag; `None` once every sender is gone.
    pub(crate) async fn recv_tagged(&mut self) -> Option<(u64, PushInfo)> {
        let push = self.rx.recv().await?;
        self.taken(&push.1);
        Some(push)
    }

    /// The next waiting push with its sender's tag.
    pub(crate) fn try_recv_tagged(&mut self) -> Option<(u64, PushInfo)> {
        let push = self.rx.try_recv().ok()?;
        self.taken(&push.1);
        Some(push)
    }

    /// Whether pushes are waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Times the socket reader stopped on a full backlog, since the last call.
    pub(crate) fn take_pauses(&self) -> usize {
        self.backlog.pauses.swap(0, Ordering::AcqRel)
    }

    fn taken(&self, push: &PushInfo) {
        let before = self.backlog.bytes.fetch_sub(weight(push), Ordering::AcqRel);
        if before.saturating_sub(weight(push)) < PUSH_BACKLOG_BYTES {
            self.backlog.wake_reader();
        }
    }
}

/// The socket's end: tells the reader ([`LimitedStream`]) when to stop reading.
///
/// [`LimitedStream`]: super::resp_limit::LimitedStream
#[derive(Debug, Clone)]
pub(crate) struct ReadGate {
    backlog: Arc<Backlog>,
}

impl ReadGate {
    /// Ready while the backlog has room; otherwise parks the reader until it has.
    pub(crate) fn poll_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        let backlog = &self.backlog;
        if !backlog.is_full() {
            return Poll::Ready(());
        }
        if let Ok(mut readers) = backlog.readers.lock()
            && !readers.iter().any(|w| w.will_wake(cx.waker()))
        {
            readers.push(cx.waker().clone());
        }
        if !backlog.parked.swap(true, Ordering::AcqRel) {
            backlog.pauses.fetch_add(1, Ordering::AcqRel);
        }
        // The receiver may have taken pushes between the check and the park.
        if backlog.is_full() {
            return Poll::Pending;
        }
        backlog.parked.store(false, Ordering::Release);
        Poll::Ready(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::PushKind;

    fn push(bytes: usize) -> PushInfo {
        PushInfo {
            kind: PushKind::Message,
            data: vec![redis::Value::BulkString(vec![0; bytes])],
        }
    }

    #[tokio::test]
    async fn the_reader_waits_while_the_backlog_is_full() {
        let (tx, mut rx, gate) = push_queue();
        tx.send(push(PUSH_BACKLOG_BYTES)).unwrap();
        let gate = Arc::new(gate);
        let waiting = {
            let gate = gate.clone();
            tokio::spawn(async move { std::future::poll_fn(|cx| gate.poll_room(cx)).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the reader waits while full");
        assert_eq!(rx.take_pauses(), 1);
        assert!(rx.recv().await.is_some());
        tokio::time::timeout(std::time::Duration::from_secs(1), waiting)
            .await
            .expect("woken once the backlog shrank")
            .unwrap();
        assert!(rx.is_empty());
    }
}

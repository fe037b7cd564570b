//! The reactor loop of one shard: thin glue that turns io_uring completions into
//! [`Shard`] events and the shard's actions into submissions, drains the shard's inbox,
//! forwards its outbox, and has the shard flush its metrics about once a second. It
//! follows the calling contract documented on [`Shard`].
//!
//! Inbox: each loop turn takes a bounded share of each lane ([`MESH_TURN`],
//! [`PUBLISH_TURN`]: together no more frames than one `sendmsg` carries, and bytes well
//! under `--max-queue-bytes`, so a burst does not make a client that reads at once look
//! slow) and then does I/O. The mesh lane is taken from on every turn; the publish lane
//! only while everything this shard sent to other shards and to the broker fitted their
//! queues. What did not fit waits here, in order, and is offered again on the next turn
//! (see `mesh` for why nothing blocks).
//!
//! Teardown order matters: the shard owns the bytes behind every in-flight `sendmsg`, so on
//! drop (normal end or unwinding panic) the reactor first cancels and reaps every operation,
//! and only then is the shard freed (see the `Drop` impl).

use crate::mesh::{Inbox, Mesh, Sent};
use ringcast_shard::{Action, BrokerCmd, ConnId, RecvEnd, Shard, ShardMsg};
use ringcast_telemetry::QueueName;
use ringcast_uring::{
    CancelOutcome, Completion, Reactor, close_fd, peer_ip, shutdown_socket, shutdown_write,
};
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

// Connection generations travel through the reactor's `user_data`: the shard must wrap
// them at exactly the width the reactor carries.
const _: () = assert!(ringcast_shard::GEN_MASK == ringcast_uring::GEN_MASK);

/// Longest sleep in one wait, so the counters flush on time even when idle.
const MAX_WAIT_MS: u64 = 250;
/// Longest sleep while messages wait for room in another shard's or the broker's queue.
const WAITING_WAIT_MS: u64 = 1;
/// Most taken from the mesh lane per loop turn.
const MESH_TURN: TurnShare = TurnShare {
    messages: 256,
    bytes: 192 << 10,
};
/// Most taken from the publish lane per loop turn. Many messages per turn is what makes
/// paced fan-out over many channels cheap: the more publishes one turn takes, the more of
/// them land on the same connection and leave in one `sendmsg` (tests/bench/RESULTS.md,
/// "Turn shares": 16 → 256 took paced fan-out to 100 channels from 1.1 to 3.1-3.4
/// deliveries per send).
const PUBLISH_TURN: TurnShare = TurnShare {
    messages: 256,
    bytes: 64 << 10,
};
/// Most deliveries (frames queued on connections) one turn's inbox share may cause: past it
/// the turn takes no further message from that lane and does its I/O (each lane's first
/// message is taken anyway, so a turn may pass it by two messages' fan-out). Bounds a
/// turn's work however many subscribers the channels have (256 publishes to 100,000
/// subscribers would otherwise queue 25.6 million frames before the first send, ~2 s of
/// work). Large enough that a burst to one channel still puts many messages into each
/// send: with 9,500 subscribers per shard, 65,536 allowed 7 publishes per turn and
/// doubled burst fan-out's CPU per delivery; 262,144 allows 28 (tests/bench/RESULTS.md,
/// "Turn shares").
const TURN_DELIVERIES: u64 = 256 << 10;
// One turn's data frames for a connection fit one send, so a client that reads at once
// never falls behind by a turn (and never looks like a slow consumer) in a burst.
const _: () = assert!(MESH_TURN.messages + PUBLISH_TURN.messages <= ringcast_shard::MAX_IOVECS);

/// How much of one lane a loop turn takes: at most `messages`, and no more once their
/// payloads reach `bytes` or the turn's deliveries reach [`TURN_DELIVERIES`] (a lane's
/// first message is always taken, so a busy mesh lane cannot starve the publish lane).
struct TurnShare {
    messages: usize,
    bytes: usize,
}

impl TurnShare {
    /// Whether a lane has had its share once `taken` payload bytes came from it and the
    /// turn has queued `deliveries`.
    fn used_up(&self, taken: usize, deliveries: u64) -> bool {
        taken >= self.bytes || deliveries >= TURN_DELIVERIES
    }
}

/// The payload bytes a message brings to queue on connections (a poll reply answers one
/// connection and is capped by the poll response limit: not counted).
fn message_bytes(msg: &ShardMsg) -> usize {
    match msg {
        ShardMsg::Publish { payload, .. } => payload.len(),
        ShardMsg::Deliver { frame, .. } => frame.len(),
        _ => 0,
    }
}
/// How long accepting pauses after the process ran out of descriptors or memory.
const ACCEPT_BACKOFF_MS: u64 = 100;
/// How often counters are pushed into the metrics registry.
const FLUSH_EVERY_MS: u64 = 1000;
/// How long teardown waits for cancelled operations' completions before leaking the shard.
const REAP_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything one shard thread owns.
pub struct ShardThread {
    /// The deterministic shard state. Dropped by `Drop` only after the reactor reaped every
    /// operation whose iovecs point into it.
    pub shard: ManuallyDrop<Shard>,
    /// This shard's io_uring.
    pub reactor: Reactor,
    /// One SO_REUSEPORT listener per listen port.
    pub listeners: Vec<OwnedFd>,
    /// This shard's inbox.
    pub inbox: Inbox,
    /// Every shard's inbox.
    pub mesh: Arc<Mesh>,
    /// Subscribe/unsubscribe commands for the sidecar's broker.
    pub broker_cmds: flume::Sender<BrokerCmd>,
    /// Messages that did not fit their destination's queue yet.
    pub waiting: Waiting,
    /// The drain deadline after a Drain message: the loop ends then, drained or not.
    pub drain_ms: u64,
    /// Listeners whose multishot accept ended, with the time to re-arm them.
    pub accept_rearm: Vec<(u64, u32)>,
    /// Test failpoint (`--panic-on-channel`): panic on a publish to this channel.
    pub panic_on_channel: Option<String>,
    /// Test failpoint (`--slow-shard-us`): sleep this long per inbox message.
    pub slow_per_message: Option<Duration>,
}

/// What this shard sent that did not fit yet, and how often a queue was full.
#[derive(Default)]
pub struct Waiting {
    /// Broker commands, in order, not yet taken by the broker's queue.
    broker_cmds: Vec<BrokerCmd>,
    /// Whether some shard's mesh lane had no room on the last turn (the rest waits in
    /// the shard's outbox).
    mesh: bool,
    /// Times a peer's mesh lane was full, since the last flush.
    mesh_full: u64,
    /// Times the broker's queue was full, since the last flush.
    broker_full: u64,
}

impl Waiting {
    /// Whether anything waits for room.
    fn any(&self) -> bool {
        self.mesh || !self.broker_cmds.is_empty()
    }
}

/// Sends `queue`'s items in order until one does not fit (`send` gives it back); that one
/// and the rest stay in `queue`. Returns whether everything went.
fn send_in_order<T>(queue: &mut Vec<T>, mut send: impl FnMut(T) -> Option<T>) -> bool {
    let mut kept = Vec::new();
    {
        let mut items = queue.drain(..);
        while let Some(item) = items.next() {
            if let Some(item) = send(item) {
                kept.push(item);
                kept.extend(items);
                break;
            }
        }
    }
    queue.append(&mut kept);
    queue.is_empty()
}

impl ShardThread {
    /// Runs until the shard is drained (or the drain deadline passes).
    pub fn run(mut self) {
        let id = usize::from(self.shard.id());
        let clock = Instant::now();
        let now = || clock.elapsed().as_millis() as u64 + 1;
        for (i, listener) in self.listeners.iter().enumerate() {
            self.reactor.arm_accept(listener.as_raw_fd(), i as u32);
        }
        let mut completions: Vec<Completion> = Vec::with_capacity(4096);
        let mut iov: Vec<libc::iovec> = Vec::with_capacity(ringcast_shard::MAX_IOVECS);
        // Exports every series (reasons at 0 included) before the first connection.
        self.flush_metrics();
        let mut last_flush = 0;
        let mut drain_deadline: Option<u64> = None;
        loop {
            let t = now();
            let delivered_before = self.shard.counters().delivered;
            let turn_deliveries =
                |shard: &Shard| shard.counters().delivered.saturating_sub(delivered_before);
            let mut taken = 0;
            for _ in 0..MESH_TURN.messages {
                let Ok(msg) = self.inbox.mesh.try_recv() else {
                    break;
                };
                if let ShardMsg::Drain { .. } = msg {
                    drain_deadline = Some(t + self.drain_ms);
                    self.close_listeners();
                }
                taken += message_bytes(&msg);
                self.handle(msg, t);
                if MESH_TURN.used_up(taken, turn_deliveries(&self.shard)) {
                    break;
                }
            }
            if !self.waiting.any() {
                let mut taken = 0;
                for _ in 0..PUBLISH_TURN.messages {
                    let Ok(msg) = self.inbox.publish.try_recv() else {
                        break;
                    };
                    if let ShardMsg::Publish { channel, .. } = &msg
                        && self.panic_on_channel.as_deref() == Some(&**channel)
                    {
                        panic!("failpoint: publish to {channel}");
                    }
                    taken += message_bytes(&msg);
                    self.handle(msg, t);
                    if PUBLISH_TURN.used_up(taken, turn_deliveries(&self.shard)) {
                        break;
                    }
                }
            }
            self.shard.on_tick(t);
            self.rearm_accepts(t);
            self.submit_outputs(&mut iov, id);
            if self.shard.drained() || drain_deadline.is_some_and(|d| t >= d) {
                break;
            }
            if t - last_flush >= FLUSH_EVERY_MS {
                last_flush = t;
                self.flush_metrics();
            }
            let longest = if self.waiting.any() {
                WAITING_WAIT_MS
            } else {
                MAX_WAIT_MS
            };
            let wait_ms = self.shard.ms_until_tick(t).clamp(1, longest);
            let wait = if self
                .mesh
                .prepare_sleep(id, &self.inbox, !self.waiting.any())
            {
                Duration::from_millis(wait_ms)
            } else {
                Duration::ZERO
            };
            let waited = self.reactor.wait(wait, &mut completions);
            self.mesh.awake(id);
            if let Err(err) = waited {
                tracing::error!(shard = id, %err, "io_uring wait failed");
                break;
            }
            let t = now();
            for completion in completions.drain(..) {
                self.complete(completion, t);
            }
        }
        self.flush_metrics();
    }

    /// One inbox message for the shard.
    fn handle(&mut self, msg: ShardMsg, t: u64) {
        if let Some(pause) = self.slow_per_message {
            std::thread::sleep(pause);
        }
        self.shard.on_message(msg, t);
    }

    fn complete(&mut self, completion: Completion, t: u64) {
        match completion {
            Completion::Accept {
                listener,
                result,
                more,
            } => {
                let backoff = match result {
                    Ok(fd) => {
                        let peer = self.shard.needs_peer_address().then(|| peer_ip(fd));
                        self.shard.on_accept(fd, peer.flatten(), t);
                        false
                    }
                    Err(errno) => {
                        self.shard.on_accept_error();
                        matches!(
                            errno,
                            libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM
                        )
                    }
                };
                if !more && !self.shard.draining() {
                    // Out of descriptors or memory: retry later instead of spinning.
                    let at = if backoff { t + ACCEPT_BACKOFF_MS } else { t };
                    self.accept_rearm.push((at, listener));
                }
            }
            Completion::Recv {
                conn,
                generation,
                result,
                more,
            } => {
                let id = ConnId {
                    idx: conn,
                    generation,
                };
                match result {
                    Ok(buf) if buf.len == 0 => self.shard.on_recv_end(id, RecvEnd::Eof),
                    Ok(buf) => {
                        let data = self.reactor.buffer(buf.bid, buf.len);
                        self.shard.on_recv(id, data, t);
                        self.reactor.recycle(buf.bid);
                        if !more {
                            self.shard.on_recv_end(id, RecvEnd::Stopped);
                        }
                    }
                    Err(errno) if errno == libc::ENOBUFS => {
                        self.shard.on_recv_enobufs();
                        self.shard.on_recv_end(id, RecvEnd::NoBuffers);
                    }
                    Err(errno) => self.shard.on_recv_end(id, RecvEnd::Error(errno)),
                }
            }
            Completion::Send {
                conn,
                generation,
                result,
            } => {
                let id = ConnId {
                    idx: conn,
                    generation,
                };
                self.shard.on_send_done(id, result.map(|n| n as usize));
            }
            Completion::Connect { .. } | Completion::Wake => {}
        }
    }

    /// Turns the shard's decisions into submissions and cross-shard messages.
    fn submit_outputs(&mut self, iov: &mut Vec<libc::iovec>, id: usize) {
        for action in self.shard.take_actions() {
            match action {
                Action::ArmRecv(conn, fd) => self.reactor.arm_recv(fd, conn.idx, conn.generation),
                Action::ShutdownWrite(fd) => shutdown_write(fd),
                Action::Abort(fd) => shutdown_socket(fd),
                Action::Close(fd) => close_fd(fd),
            }
        }
        while let Some((conn, fd)) = self.shard.next_send() {
            iov.clear();
            self.shard.begin_send(conn, &mut |chunk| {
                iov.push(libc::iovec {
                    iov_base: chunk.as_ptr() as *mut libc::c_void,
                    iov_len: chunk.len(),
                })
            });
            self.reactor
                .send_vectored(fd, conn.idx, conn.generation, iov);
        }
        self.waiting.mesh = false;
        for (to, msgs) in self.shard.outbox().iter_mut().enumerate() {
            if msgs.is_empty() || to == id {
                continue;
            }
            let mesh = &self.mesh;
            let all_sent = send_in_order(msgs, |msg| match mesh.send(to, msg) {
                Sent::Queued | Sent::Gone => None,
                Sent::Full(msg) => Some(msg),
            });
            if !all_sent {
                self.waiting.mesh = true;
                self.waiting.mesh_full += 1;
            }
            self.mesh.nudge(to);
        }
        let waiting = &mut self.waiting;
        waiting.broker_cmds.extend(self.shard.take_broker_cmds());
        if !waiting.broker_cmds.is_empty() {
            let broker = &self.broker_cmds;
            let all_sent =
                send_in_order(&mut waiting.broker_cmds, |cmd| match broker.try_send(cmd) {
                    Ok(()) | Err(flume::TrySendError::Disconnected(_)) => None,
                    Err(flume::TrySendError::Full(cmd)) => Some(cmd),
                });
            if !all_sent {
                waiting.broker_full += 1;
            }
        }
    }

    fn rearm_accepts(&mut self, t: u64) {
        let listeners = &self.listeners;
        let reactor = &mut self.reactor;
        self.accept_rearm.retain(|&(at, listener)| {
            if at > t {
                return true;
            }
            if let Some(l) = listeners.get(listener as usize) {
                reactor.arm_accept(l.as_raw_fd(), listener);
            }
            false
        });
    }

    fn close_listeners(&mut self) {
        self.accept_rearm.clear();
        for listener in self.listeners.drain(..) {
            // Ends the pending multishot accept; dropping closes the socket.
            shutdown_socket(listener.as_raw_fd());
        }
    }

    fn flush_metrics(&mut self) {
        self.shard.on_inbox_depth(self.inbox.len());
        self.shard.flush_metrics();
        let waiting = &mut self.waiting;
        if waiting.mesh_full > 0 {
            QueueName::ShardMesh.count_full(std::mem::take(&mut waiting.mesh_full));
        }
        if waiting.broker_full > 0 {
            QueueName::BrokerCommands.count_full(std::mem::take(&mut waiting.broker_full));
        }
    }
}

/// Frees the shard only once the kernel holds no pointer into it: in-flight sends reference
/// its queued bytes until their completions are reaped. (The reactor's own `Drop` also
/// reaps, but as a field it would run after the shard was freed.) If operations outlive the
/// timeout, the shard is leaked rather than freed under the kernel.
impl Drop for ShardThread {
    fn drop(&mut self) {
        match self.reactor.cancel_all_and_reap(REAP_TIMEOUT) {
            CancelOutcome::AllReaped => {
                // SAFETY: the only place the shard is dropped, and nothing uses it afterwards.
                unsafe { ManuallyDrop::drop(&mut self.shard) };
            }
            CancelOutcome::StillInFlight { in_flight } => {
                tracing::error!(
                    shard = self.shard.id(),
                    in_flight,
                    "io_uring operations outlived shutdown; leaking their buffers"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::send_in_order;

    #[test]
    fn what_does_not_fit_stays_in_order_behind_what_went() {
        let mut queue = vec![1, 2, 3, 4];
        let mut room = 2;
        let mut sent = Vec::new();
        let all = send_in_order(&mut queue, |n| {
            if room == 0 {
                return Some(n);
            }
            room -= 1;
            sent.push(n);
            None
        });
        assert!(!all);
        assert_eq!(sent, [1, 2]);
        assert_eq!(queue, [3, 4]);
        queue.push(5);
        assert!(send_in_order(&mut queue, |_| None));
        assert!(queue.is_empty());
    }
}

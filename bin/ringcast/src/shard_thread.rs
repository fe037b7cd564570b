//! The reactor loop of one shard: thin glue that turns io_uring completions into
//! [`Shard`] events and the shard's actions into submissions, drains the shard's inbox,
//! forwards its outbox, and has the shard flush its metrics about once a second. It
//! follows the calling contract documented on [`Shard`].
//!
//! Sends: each loop turn starts at most [`SENDS_PER_TURN`] sends, oldest waiting
//! connection first, so under load the connections are served round-robin and new
//! messages keep arriving between their sends ([`SendCycle`]: a pass through the
//! connections waiting when it began). Answers to requests (a 101, an event stream's
//! head, a TLS handshake flight) are not counted: each turn starts all of them, so a
//! connect ramp does not keep requests and their answers alive in memory while
//! deliveries take their turns.
//!
//! Inbox: each send cycle takes a bounded share of each lane ([`MESH_SHARE`],
//! [`PUBLISH_SHARE`]: together no more frames than one `sendmsg` carries, and bytes well
//! under `--max-queue-bytes`, so a burst does not make a client that reads at once look
//! slow), spread over the cycle's turns. The mesh lane is taken from in every cycle, whose
//! length depends only on this shard's own sends; the publish lane only while everything
//! this shard sent to other shards and to the broker fitted their queues. What did not
//! fit waits here, in order, and is offered again on the next turn (see `mesh` for why
//! nothing blocks).
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
// A connection's send must fit one `sendmsg`: the shard hands out at most as many slices
// as the reactor (and the kernel) accept.
const _: () = assert!(ringcast_shard::MAX_IOVECS <= ringcast_uring::MAX_IOVECS);

/// Longest sleep in one wait, so the counters flush on time even when idle.
const MAX_WAIT_MS: u64 = 250;
/// Longest sleep while messages wait for room in another shard's or the broker's queue.
const WAITING_WAIT_MS: u64 = 1;
/// Sends started per loop turn. Between batches the loop takes new messages from its
/// inbox, so connections are served round-robin while publishes keep arriving, and each
/// send carries everything queued for its connection since the previous one: at
/// saturation the sends are staggered rather than all connections' sends leaving in one
/// batch per publish. Paced fan-out to one channel, 2 shards: 3.0 → 6.6-7.7 deliveries
/// per `sendmsg` (tests/bench/RESULTS.md, "Send cycles"). A turn's fixed cost (one
/// `io_uring_enter`, one look at the inbox) is small next to 32 sends at ~5-9 µs each.
const SENDS_PER_TURN: usize = 32;
/// Most taken from the mesh lane per send cycle.
const MESH_SHARE: CycleShare = CycleShare {
    messages: 512,
    bytes: 96 << 10,
};
/// Most taken from the publish lane per send cycle. Many messages per cycle is what makes
/// paced fan-out over many channels cheap: the more publishes one cycle takes, the more
/// of them land on the same connection and leave in one `sendmsg` (tests/bench/RESULTS.md,
/// "Turn shares": 16 → 256 per turn took paced fan-out to 100 channels from 1.1 to
/// 3.1-3.4 deliveries per send; "Send cycles": 256 → 512 per cycle, 4.4 → 5.3-6.3).
const PUBLISH_SHARE: CycleShare = CycleShare {
    messages: 512,
    bytes: 32 << 10,
};
/// Most deliveries (frames queued on connections) one cycle's inbox shares may cause: past
/// it a lane gives no further message until the next cycle (each lane's first message of a
/// cycle is taken anyway, so a cycle may pass it by two messages' fan-out). Bounds the
/// frames waiting to be sent however many subscribers the channels have (512 publishes to
/// 100,000 subscribers would otherwise queue 51.2 million frames, ~4 s of sending).
/// Large enough that a burst to one channel still puts many messages into each send: with
/// 9,500 subscribers per shard, 65,536 allowed 7 publishes per turn and doubled burst
/// fan-out's CPU per delivery; 262,144 allows 28 (tests/bench/RESULTS.md, "Turn shares").
const CYCLE_DELIVERIES: u64 = 256 << 10;
// One cycle's data frames for a connection fit one send. Between two of its sends a
// connection gets at most the rest of one cycle's shares and the start of the next one's:
// two sends' worth of frames, so a client that reads at once is at most one send behind,
// and 2 × (96 + 32) KiB of payload, what one turn's shares allowed before send cycles, far
// under `--max-queue-bytes` (1 MiB): a burst does not make it look like a slow consumer.
const _: () = assert!(MESH_SHARE.messages + PUBLISH_SHARE.messages <= ringcast_shard::MAX_IOVECS);

/// How much of one lane a send cycle takes: at most `messages`, and no more once their
/// payloads reach `bytes` or the cycle's deliveries reach [`CYCLE_DELIVERIES`] (a lane's
/// first message is always taken, so a busy mesh lane cannot starve the publish lane).
struct CycleShare {
    messages: usize,
    bytes: usize,
}

impl CycleShare {
    /// Whether a lane may give another message, having given `taken` this cycle, whose
    /// messages have queued `deliveries`.
    fn allows(&self, taken: LaneTaken, deliveries: u64) -> bool {
        taken.messages == 0
            || (taken.messages < self.messages
                && taken.bytes < self.bytes
                && deliveries < CYCLE_DELIVERIES)
    }
}

/// What one lane gave during the current send cycle.
#[derive(Clone, Copy, Default)]
struct LaneTaken {
    messages: usize,
    bytes: usize,
}

impl LaneTaken {
    fn add(&mut self, msg: &ShardMsg) {
        self.messages += 1;
        self.bytes += message_bytes(msg);
    }
}

/// One send cycle: a pass through the connections that waited to send when its first
/// sends started, [`SENDS_PER_TURN`] per loop turn. The inbox shares are per cycle, not
/// per turn, so what a connection gets queued between two of its sends stays within two
/// cycles' shares however many turns a pass takes. A cycle with nothing to send ends with
/// its turn. The pass is counted, not tracked per connection: entries that closed
/// meanwhile count, and the last turn may run on into connections that became ready
/// during the pass, so a connection may get a second send in a cycle (harmless: it only
/// ever sends what it has).
#[derive(Default)]
struct SendCycle {
    /// Sends left in the pass; `None` until its first sends start.
    left: Option<usize>,
    mesh: LaneTaken,
    publish: LaneTaken,
    /// The shard's delivered counter when the cycle began.
    delivered_at_start: u64,
}

impl SendCycle {
    fn new(delivered: u64) -> Self {
        SendCycle {
            delivered_at_start: delivered,
            ..SendCycle::default()
        }
    }

    /// Deliveries this cycle's messages queued.
    fn deliveries(&self, shard: &Shard) -> u64 {
        shard
            .counters()
            .delivered
            .saturating_sub(self.delivered_at_start)
    }

    /// Counts `started` sends of a turn with `waiting` connections still waiting after
    /// them; returns whether the pass is over.
    fn count_sends(&mut self, started: usize, waiting: usize) -> bool {
        let left = self.left.get_or_insert(started + waiting);
        *left = left.saturating_sub(started);
        *left == 0 || waiting == 0
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
        let mut cycle = SendCycle::new(self.shard.counters().delivered);
        loop {
            let t = now();
            while MESH_SHARE.allows(cycle.mesh, cycle.deliveries(&self.shard)) {
                let Ok(msg) = self.inbox.mesh.try_recv() else {
                    break;
                };
                if let ShardMsg::Drain { .. } = msg {
                    drain_deadline = Some(t + self.drain_ms);
                    self.close_listeners();
                }
                cycle.mesh.add(&msg);
                self.handle(msg, t);
            }
            while !self.waiting.any()
                && PUBLISH_SHARE.allows(cycle.publish, cycle.deliveries(&self.shard))
            {
                let Ok(msg) = self.inbox.publish.try_recv() else {
                    break;
                };
                if let ShardMsg::Publish { channel, .. } = &msg
                    && self.panic_on_channel.as_deref() == Some(&**channel)
                {
                    panic!("failpoint: publish to {channel}");
                }
                cycle.publish.add(&msg);
                self.handle(msg, t);
            }
            self.shard.on_tick(t);
            self.rearm_accepts(t);
            if self.submit_outputs(&mut iov, id, &mut cycle) {
                cycle = SendCycle::new(self.shard.counters().delivered);
            }
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
            let wait = if self.shard.sends_waiting() == 0
                && self
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

    /// Submits one connection's send: the slices [`Shard::begin_send`] hands out.
    fn start_send(&mut self, conn: ConnId, fd: i32, iov: &mut Vec<libc::iovec>) {
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

    /// Turns the shard's decisions into submissions (every answer to a request, at most
    /// [`SENDS_PER_TURN`] other sends) and
    /// cross-shard messages; returns whether `cycle`'s pass is over.
    fn submit_outputs(
        &mut self,
        iov: &mut Vec<libc::iovec>,
        id: usize,
        cycle: &mut SendCycle,
    ) -> bool {
        for action in self.shard.take_actions() {
            match action {
                Action::ArmRecv(conn, fd) => self.reactor.arm_recv(fd, conn.idx, conn.generation),
                Action::ShutdownWrite(fd) => shutdown_write(fd),
                Action::Abort(fd) => shutdown_socket(fd),
                Action::Close(fd) => close_fd(fd),
            }
        }
        while let Some((conn, fd)) = self.shard.next_answer() {
            self.start_send(conn, fd, iov);
        }
        let mut started = 0;
        while started < SENDS_PER_TURN
            && let Some((conn, fd)) = self.shard.next_send()
        {
            started += 1;
            self.start_send(conn, fd, iov);
        }
        let pass_over = cycle.count_sends(started, self.shard.sends_waiting());
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
        pass_over
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
        self.shard
            .on_coalesced_waits(self.reactor.stats().coalesced_waits);
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
    use super::{
        CYCLE_DELIVERIES, LaneTaken, MESH_SHARE, PUBLISH_SHARE, SENDS_PER_TURN, SendCycle,
        send_in_order,
    };

    #[test]
    fn a_cycle_is_the_pass_through_the_connections_waiting_at_its_first_sends() {
        // 100 waiting: 32 now, 68 after them; connections that become ready meanwhile
        // (the waiting count grows) belong to the next pass.
        let mut cycle = SendCycle::new(0);
        assert!(!cycle.count_sends(SENDS_PER_TURN, 68));
        assert!(!cycle.count_sends(SENDS_PER_TURN, 36 + 20));
        assert!(!cycle.count_sends(SENDS_PER_TURN, 4 + 40));
        // The last 4 of the pass, then 28 of the 40 that became ready during it.
        assert!(cycle.count_sends(SENDS_PER_TURN, 12));
        // Nothing to send: the cycle ends with its turn.
        assert!(SendCycle::new(0).count_sends(0, 0));
        // Entries that closed meanwhile are skipped: an emptied list ends the pass early.
        let mut cycle = SendCycle::new(0);
        assert!(!cycle.count_sends(SENDS_PER_TURN, 68));
        assert!(cycle.count_sends(10, 0));
    }

    #[test]
    fn a_lane_gives_its_share_per_cycle_and_always_a_first_message() {
        let none = LaneTaken::default();
        let full = LaneTaken {
            messages: PUBLISH_SHARE.messages,
            bytes: 0,
        };
        let bytes = LaneTaken {
            messages: 1,
            bytes: PUBLISH_SHARE.bytes,
        };
        assert!(PUBLISH_SHARE.allows(none, 0));
        assert!(!PUBLISH_SHARE.allows(full, 0));
        assert!(!PUBLISH_SHARE.allows(bytes, 0));
        // The other lane used the cycle's deliveries: one message still comes.
        assert!(PUBLISH_SHARE.allows(none, CYCLE_DELIVERIES));
        let one = LaneTaken {
            messages: 1,
            bytes: 64,
        };
        assert!(!PUBLISH_SHARE.allows(one, CYCLE_DELIVERIES));
        assert!(MESH_SHARE.allows(one, CYCLE_DELIVERIES - 1));
    }

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

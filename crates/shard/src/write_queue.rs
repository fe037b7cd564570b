//! A connection's outgoing frames: shared `Bytes` handles queued in order, sent with one
//! vectored send at a time, and dropped once written; the queue's box goes back to a
//! per-thread spare list once empty (see [`WriteQueue`]).
//!
//! Control frames (handshake answers, pings, pongs, close) jump ahead of data frames that
//! are still waiting, so a slow reader never delays a pong or a close behind megabytes of
//! messages, and only data frames are ever dropped. Frames handed to the send in flight
//! (and a partly sent front frame) are never moved or dropped: the kernel reads them.
//!
//! Waiting control frames stay few, so placing one is O(1): at most
//! [`MAX_WAITING_PONGS`] pongs wait (past that [`WriteQueue::push_pong`] replaces the
//! newest, as RFC 6455 §5.5.3 allows answering only the latest ping), at most one
//! keep-alive (a server ping or an SSE comment, [`WriteQueue::push_keepalive`]), plus a
//! connection's one-off answers (handshake, poll reply, close). A client that floods
//! pings without reading therefore holds 16 pongs, not one per ping.
//!
//! Limits are checked against [`WriteQueue::charged_bytes`]: the frames' bytes plus
//! [`ENTRY_OVERHEAD`] per queued frame, so a flood of tiny frames is bounded by what it
//! really costs, not by its payload alone.

use bytes::Bytes;
use std::cell::RefCell;
use std::collections::VecDeque;

/// Most chunks handed to one vectored send (the kernel's `UIO_MAXIOV`). As many as one
/// send cycle of the reactor loop may queue on a connection (its lane shares add up to
/// this), so a client that reads at once is drained every cycle however many small
/// messages its channels carry; large enough that many channels' messages taken in one
/// cycle coalesce into one send per connection.
pub const MAX_IOVECS: usize = 1024;

/// What one queued frame costs beyond its bytes: its slot in the queue (a `Bytes` handle
/// and its kind, 40 bytes, in a ring that may be up to half empty) and the allocator's
/// share of a small frame's own buffer. Counted by [`WriteQueue::charged_bytes`].
pub(crate) const ENTRY_OVERHEAD: u32 = 64;

/// Pongs that may wait at once; a newer ping's pong then replaces the newest of them
/// (RFC 6455 §5.5.3 allows answering only the most recent ping).
pub(crate) const MAX_WAITING_PONGS: usize = 16;

#[derive(Debug)]
struct Entry {
    frame: Bytes,
    kind: Kind,
}

/// Where a frame may go and whether it may be replaced or dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A message: queued in order, may be dropped by the slow-consumer policy.
    Data,
    /// A control frame that jumps waiting data and is never dropped.
    Control,
    /// The answer to the latest ping: a newer ping replaces it while it waits.
    Pong,
    /// A keep-alive (server ping, SSE comment): one waiting is enough.
    Keepalive,
}

impl Kind {
    fn jumps_data(self) -> bool {
        self != Kind::Data
    }
}

/// The frames themselves, boxed behind [`WriteQueue`] while any wait.
#[derive(Debug, Default)]
struct Frames {
    entries: VecDeque<Entry>,
    /// Bytes of the front frame already sent.
    head_offset: u32,
    /// Bytes queued and not yet sent.
    bytes: u32,
    /// Frames handed to the send in flight (they sit at the front).
    inflight: u16,
}

impl Frames {
    /// Appends a data frame (a message; may be dropped by the slow-consumer policy).
    fn push_data(&mut self, frame: Bytes) {
        self.bytes = self.bytes.saturating_add(frame.len() as u32);
        self.entries.push_back(Entry {
            frame,
            kind: Kind::Data,
        });
    }

    /// Queues a control frame ahead of every waiting data frame (after frames already
    /// being sent and after earlier control frames).
    fn push_control(&mut self, frame: Bytes) {
        self.insert_control(frame, Kind::Control);
    }

    /// Queues the answer to a ping. Up to [`MAX_WAITING_PONGS`] wait (a client's short
    /// burst of pings gets every pong, as conformance suites expect); past that the
    /// newest waiting pong is replaced by this one, so a flood holds a bounded number.
    fn push_pong(&mut self, frame: Bytes) {
        let pinned = self.pinned();
        let mut pongs = self
            .entries
            .iter_mut()
            .skip(pinned)
            .take_while(|e| e.kind.jumps_data())
            .filter(|e| e.kind == Kind::Pong);
        let newest = pongs.by_ref().nth(MAX_WAITING_PONGS - 1);
        match newest.map(|full| pongs.last().unwrap_or(full)) {
            Some(newest) => {
                let old_len = newest.frame.len() as u32;
                let new_len = frame.len() as u32;
                newest.frame = frame;
                self.bytes = self.bytes - old_len + new_len;
            }
            None => self.insert_control(frame, Kind::Pong),
        }
    }

    /// Queues a keep-alive frame unless one is already waiting (it says the same).
    fn push_keepalive(&mut self, frame: Bytes) {
        if self.waiting_control(Kind::Keepalive).is_none() {
            self.insert_control(frame, Kind::Keepalive);
        }
    }

    /// Inserts a frame that jumps waiting data, behind the waiting control frames (few:
    /// see the module doc).
    fn insert_control(&mut self, frame: Bytes, kind: Kind) {
        self.bytes = self.bytes.saturating_add(frame.len() as u32);
        let mut pos = self.pinned();
        while self.entries.get(pos).is_some_and(|e| e.kind.jumps_data()) {
            pos += 1;
        }
        self.entries.insert(pos, Entry { frame, kind });
    }

    /// The waiting (not in flight) control frame of `kind`, if any.
    fn waiting_control(&mut self, kind: Kind) -> Option<&mut Entry> {
        let pinned = self.pinned();
        self.entries
            .iter_mut()
            .skip(pinned)
            .take_while(|e| e.kind.jumps_data())
            .find(|e| e.kind == kind)
    }

    /// Queues a close frame: nothing may follow it, so waiting data frames are dropped.
    /// Returns how many were dropped.
    fn push_close(&mut self, frame: Bytes) -> usize {
        let dropped = self.drop_waiting_data(usize::MAX);
        self.push_control(frame);
        dropped
    }

    /// Queues a control frame after everything already queued: a graceful close (the
    /// data the peer is owed still goes out first), or the next part of an answer queued
    /// in parts.
    fn push_final(&mut self, frame: Bytes) {
        self.bytes = self.bytes.saturating_add(frame.len() as u32);
        self.entries.push_back(Entry {
            frame,
            kind: Kind::Control,
        });
    }

    /// Drops waiting data frames, oldest first, until at least `need` bytes are freed or
    /// none is left. Returns how many frames were dropped.
    fn drop_waiting_data(&mut self, need: usize) -> usize {
        let mut freed = 0usize;
        let mut dropped = 0;
        let mut i = self.pinned();
        while i < self.entries.len() && freed < need {
            if self.entries[i].kind.jumps_data() {
                i += 1;
                continue;
            }
            if let Some(entry) = self.entries.remove(i) {
                freed += entry.frame.len();
                dropped += 1;
            }
        }
        self.bytes = self.bytes.saturating_sub(freed as u32);
        dropped
    }

    /// What the queue costs against a limit: [`WriteQueue::queued_bytes`] plus
    /// [`ENTRY_OVERHEAD`] per queued frame.
    fn charged_bytes(&self) -> u32 {
        let entries = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        self.bytes
            .saturating_add(entries.saturating_mul(ENTRY_OVERHEAD))
    }

    /// Hands the unsent slices, oldest first, at most [`MAX_IOVECS`], to `chunk` and marks
    /// them in flight. The slices stay valid until [`WriteQueue::advance`].
    fn begin_send(&mut self, mut chunk: impl FnMut(&[u8])) {
        let mut count = 0;
        for (i, entry) in self.entries.iter().take(MAX_IOVECS).enumerate() {
            let start = if i == 0 { self.head_offset as usize } else { 0 };
            chunk(&entry.frame[start..]);
            count += 1;
        }
        self.inflight = count;
    }

    /// The send in flight wrote `written` bytes: drops finished frames (an emptied queue
    /// is handed back by `WriteQueue::settle`).
    fn advance(&mut self, mut written: usize) {
        self.inflight = 0;
        self.bytes = self.bytes.saturating_sub(written as u32);
        while let Some(front) = self.entries.front() {
            let left = front.frame.len() - self.head_offset as usize;
            if written < left {
                self.head_offset += written as u32;
                return;
            }
            written -= left;
            self.head_offset = 0;
            self.entries.pop_front();
        }
    }

    /// Frames at the front that must stay where they are: in flight or partly sent.
    fn pinned(&self) -> usize {
        usize::from(self.inflight).max(usize::from(self.head_offset > 0))
    }
}

/// Emptied queues kept for reuse by this thread (one shard per thread), so that a frame
/// for an idle connection allocates nothing once the list is warm.
const SPARE_QUEUES: usize = 1024;

/// Ring capacity (entries) a spare keeps; a larger ring (after a burst) is freed.
const SPARE_ROOM: usize = 4;

thread_local! {
    #[expect(clippy::vec_box, reason = "the boxes move in and out of connections")]
    static SPARE: RefCell<Vec<Box<Frames>>> = const { RefCell::new(Vec::new()) };
}

/// Queued frames of one connection: one pointer while empty (every idle connection
/// carries one), the frames boxed while any wait. The box comes from and returns to a
/// bounded per-thread spare list ([`SPARE_QUEUES`]).
#[derive(Debug, Default)]
pub(crate) struct WriteQueue(Option<Box<Frames>>);

impl WriteQueue {
    fn frames(&mut self) -> &mut Frames {
        self.0.get_or_insert_with(|| {
            SPARE
                .try_with(|spare| spare.borrow_mut().pop())
                .ok()
                .flatten()
                .unwrap_or_default()
        })
    }

    /// Gives the box back once nothing waits.
    fn settle(&mut self) {
        if self.0.as_ref().is_some_and(|f| f.entries.is_empty())
            && let Some(mut frames) = self.0.take()
        {
            if frames.entries.capacity() > SPARE_ROOM {
                frames.entries = VecDeque::new();
            }
            frames.head_offset = 0;
            frames.bytes = 0;
            frames.inflight = 0;
            let _ = SPARE.try_with(|spare| {
                let mut spare = spare.borrow_mut();
                if spare.len() < SPARE_QUEUES {
                    spare.push(frames);
                }
            });
        }
    }

    /// Appends a data frame (a message; may be dropped by the slow-consumer policy).
    pub(crate) fn push_data(&mut self, frame: Bytes) {
        self.frames().push_data(frame);
    }

    /// Queues a control frame ahead of every waiting data frame (after frames already
    /// being sent and after earlier control frames).
    pub(crate) fn push_control(&mut self, frame: Bytes) {
        self.frames().push_control(frame);
    }

    /// Queues the answer to a ping (at most [`MAX_WAITING_PONGS`] wait; see
    /// the module doc).
    pub(crate) fn push_pong(&mut self, frame: Bytes) {
        self.frames().push_pong(frame);
    }

    /// Queues a keep-alive unless one is already waiting.
    pub(crate) fn push_keepalive(&mut self, frame: Bytes) {
        self.frames().push_keepalive(frame);
    }

    /// Drops every waiting data frame and queues the close frame; returns how many
    /// data frames were dropped.
    pub(crate) fn push_close(&mut self, frame: Bytes) -> usize {
        self.frames().push_close(frame)
    }

    /// Appends a frame behind everything queued (a close reply after the echoes and
    /// messages that came before the client's close).
    pub(crate) fn push_final(&mut self, frame: Bytes) {
        self.frames().push_final(frame);
    }

    /// Drops waiting data frames, oldest first, until at least `need` bytes are freed
    /// (or none is left); returns how many were dropped.
    pub(crate) fn drop_waiting_data(&mut self, need: usize) -> usize {
        let dropped = self.0.as_mut().map_or(0, |f| f.drop_waiting_data(need));
        self.settle();
        dropped
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|f| f.entries.is_empty())
    }

    /// Bytes queued and not yet sent (including the send in flight).
    pub(crate) fn queued_bytes(&self) -> u32 {
        self.0.as_ref().map_or(0, |f| f.bytes)
    }

    /// What the queue is charged against its limit: its bytes plus [`ENTRY_OVERHEAD`]
    /// per frame.
    pub(crate) fn charged_bytes(&self) -> u32 {
        self.0.as_ref().map_or(0, |f| f.charged_bytes())
    }

    /// Hands the slices of the next send to `chunk`, in order (at most [`MAX_IOVECS`]);
    /// they stay unmoved until [`WriteQueue::advance`].
    pub(crate) fn begin_send(&mut self, chunk: impl FnMut(&[u8])) {
        if let Some(frames) = self.0.as_mut() {
            frames.begin_send(chunk);
        }
    }

    /// The send in flight wrote `written` bytes: frees what was sent.
    pub(crate) fn advance(&mut self, written: usize) {
        if let Some(frames) = self.0.as_mut() {
            frames.advance(written);
        }
        self.settle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(queue: &mut WriteQueue) -> Vec<u8> {
        let mut out = Vec::new();
        queue.begin_send(|c| out.extend_from_slice(c));
        if let Some(frames) = queue.0.as_mut() {
            frames.inflight = 0;
        }
        out
    }

    fn data(q: &mut WriteQueue, s: &'static [u8]) {
        q.push_data(Bytes::from_static(s));
    }

    #[test]
    fn partial_and_full_advances() {
        let mut q = WriteQueue::default();
        data(&mut q, b"hello");
        data(&mut q, b" world");
        assert_eq!(q.queued_bytes(), 11);
        q.advance(3);
        assert_eq!(pending(&mut q), b"lo world");
        q.advance(4);
        assert_eq!(pending(&mut q), b"orld");
        assert_eq!(q.queued_bytes(), 4);
        q.advance(4);
        assert!(q.is_empty());
        assert_eq!(q.queued_bytes(), 0);
        assert!(q.0.is_none(), "storage handed back when empty");
    }

    #[test]
    fn an_emptied_queue_is_reused_and_a_burst_ring_is_not_kept() {
        let mut q = WriteQueue::default();
        for _ in 0..100 {
            data(&mut q, b"x");
        }
        q.begin_send(|_| {});
        q.advance(64);
        q.begin_send(|_| {});
        q.advance(36);
        assert!(q.0.is_none());
        let mut next = WriteQueue::default();
        data(&mut next, b"y");
        let room = next.0.as_ref().map(|f| f.entries.capacity());
        assert!(room.is_some_and(|r| r <= SPARE_ROOM), "{room:?}");
        assert_eq!(std::mem::size_of::<WriteQueue>(), 8);
    }

    #[test]
    fn at_most_max_iovecs_per_send() {
        let mut q = WriteQueue::default();
        for _ in 0..MAX_IOVECS + 36 {
            data(&mut q, b"x");
        }
        let mut n = 0;
        q.begin_send(|_| n += 1);
        assert_eq!(n, MAX_IOVECS);
    }

    #[test]
    fn control_frames_jump_waiting_data_but_not_the_send_in_flight() {
        let mut q = WriteQueue::default();
        data(&mut q, b"A");
        data(&mut q, b"B");
        q.begin_send(|_| {});
        data(&mut q, b"C");
        data(&mut q, b"D");
        q.push_control(Bytes::from_static(b"p"));
        q.push_control(Bytes::from_static(b"q"));
        q.advance(2);
        assert_eq!(pending(&mut q), b"pqCD");
    }

    #[test]
    fn partly_sent_front_frame_is_never_split() {
        let mut q = WriteQueue::default();
        data(&mut q, b"long frame");
        data(&mut q, b"next");
        q.begin_send(|_| {});
        q.advance(4);
        q.push_control(Bytes::from_static(b"!"));
        assert_eq!(q.drop_waiting_data(usize::MAX), 1, "only `next` may go");
        assert_eq!(pending(&mut q), b" frame!");
        assert_eq!(q.queued_bytes(), 7);
    }

    #[test]
    fn drop_oldest_data_until_enough_is_freed() {
        let mut q = WriteQueue::default();
        q.push_control(Bytes::from_static(b"101"));
        data(&mut q, b"1111");
        data(&mut q, b"2222");
        data(&mut q, b"3333");
        assert_eq!(q.drop_waiting_data(5), 2);
        assert_eq!(pending(&mut q), b"1013333");
        assert_eq!(q.queued_bytes(), 7);
    }

    #[test]
    fn final_close_goes_after_waiting_data() {
        let mut q = WriteQueue::default();
        data(&mut q, b"owed ");
        q.push_final(Bytes::from_static(b"CLOSE"));
        assert_eq!(pending(&mut q), b"owed CLOSE");
    }

    #[test]
    fn a_ping_flood_holds_a_bounded_number_of_pongs_the_last_the_latest() {
        let mut q = WriteQueue::default();
        data(&mut q, b"D");
        for i in 0..100_000u32 {
            q.push_pong(Bytes::from(i.to_be_bytes().to_vec()));
        }
        assert_eq!(
            q.0.as_ref().map(|f| f.entries.len()),
            Some(MAX_WAITING_PONGS + 1)
        );
        let mut want: Vec<u8> = (0..MAX_WAITING_PONGS as u32 - 1)
            .flat_map(u32::to_be_bytes)
            .collect();
        want.extend_from_slice(&99_999u32.to_be_bytes());
        want.push(b'D');
        assert_eq!(pending(&mut q), want);
        assert_eq!(q.queued_bytes() as usize, 4 * MAX_WAITING_PONGS + 1);
    }

    #[test]
    fn a_short_burst_of_pings_gets_every_pong_in_order() {
        let mut q = WriteQueue::default();
        for p in [b"1", b"2", b"3"] {
            q.push_pong(Bytes::from_static(p));
        }
        assert_eq!(pending(&mut q), b"123");
    }

    #[test]
    fn a_pong_in_flight_is_not_replaced() {
        let mut q = WriteQueue::default();
        q.push_pong(Bytes::from_static(b"1"));
        q.begin_send(|_| {});
        q.push_pong(Bytes::from_static(b"2"));
        q.push_pong(Bytes::from_static(b"3"));
        q.advance(1);
        assert_eq!(pending(&mut q), b"23");
    }

    #[test]
    fn one_keepalive_waits_at_a_time() {
        let mut q = WriteQueue::default();
        data(&mut q, b"D");
        q.push_keepalive(Bytes::from_static(b"k"));
        q.push_keepalive(Bytes::from_static(b"k"));
        q.push_pong(Bytes::from_static(b"p"));
        assert_eq!(pending(&mut q), b"kpD");
    }

    #[test]
    fn charged_bytes_count_each_frame_overhead() {
        let mut q = WriteQueue::default();
        assert_eq!(q.charged_bytes(), 0);
        data(&mut q, b"ab");
        q.push_control(Bytes::from_static(b"c"));
        assert_eq!(q.charged_bytes(), 3 + 2 * ENTRY_OVERHEAD);
        q.advance(3);
        assert_eq!(q.charged_bytes(), 0);
    }

    #[test]
    fn close_drops_waiting_data_and_goes_last() {
        let mut q = WriteQueue::default();
        data(&mut q, b"in flight");
        q.begin_send(|_| {});
        data(&mut q, b"waiting");
        assert_eq!(q.push_close(Bytes::from_static(b"CLOSE")), 1);
        q.advance(9);
        assert_eq!(pending(&mut q), b"CLOSE");
    }
}

//! The per-shard io_uring reactor: submission batching and completion decoding.
//!
//! Memory model: the reactor keeps **no per-connection state**. Connections are named by the
//! caller's `(conn, generation)` pair, carried in each submission's `user_data` (see `token`), and
//! reads land in the one provided buffer ring shared by all connections (see `buf_ring`). An
//! idle connection with an armed multishot recv therefore costs zero user-space bytes here.
//! The only growable state is per *in-flight operation kind*, never per connection:
//! - send scratch: fixed-capacity arrays of `msghdr`/`iovec` for sends queued since the last
//!   submit (reused, never reallocated: a full scratch forces a submit first);
//! - connect slots: one boxed socket address per *in-flight* `connect` (reused afterwards);
//! - a backlog of completions produced while a full submission queue was being flushed.
//!
//! Syscalls are batched: pushes only write SQEs; one `io_uring_enter` per [`Reactor::wait`]
//! submits them and waits. A full submission queue is flushed and the push retried, never dropped.
//!
//! Teardown: the reactor counts pushed operations whose final completion has not been reaped
//! yet. [`Reactor::cancel_all_and_reap`] (in `shutdown`, also run by `Drop`) cancels them and
//! waits for every one of those completions, so memory they reference may be freed afterwards.
//!
//! The tests run against a real kernel and cannot run under Miri (`io_uring_setup`, syscall
//! 425, is unsupported there); the buffer ring's shared-memory protocol has Miri-runnable
//! tests in `buf_ring`. They do run under AddressSanitizer (nightly, `-Zsanitizer=address`).

use std::cell::UnsafeCell;
use std::io;
use std::marker::PhantomData;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use io_uring::types::{Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};
use socket2::SockAddr;

use crate::buf_ring::{BufRing, MAX_ENTRIES};
use crate::error::ReactorError;
pub use crate::reactor::shutdown::CancelOutcome;
use crate::reactor::shutdown::DROP_REAP_TIMEOUT;
use crate::token::{OpKind, Token};
use crate::wake_coalescing::{self, WakeCoalescing};
use crate::waker::Waker;

/// The buffer group id of the reactor's provided buffer ring.
const BUF_GROUP: u16 = 0;
/// Linux's `UIO_MAXIOV`: the most iovecs one `sendmsg` accepts ([`Reactor::send_vectored`]
/// fails a longer send with `EMSGSIZE`).
pub const MAX_IOVECS: usize = 1024;
/// CQEs copied out of the completion queue per step of `reap`.
const REAP_BATCH: usize = 64;
/// The longest wait passed to the kernel (longer timeouts would overflow its timespec).
const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);
/// Consecutive failed flush attempts after which a push is failed instead of retried.
const MAX_FLUSH_RETRIES: u32 = 64;

/// `RecvBuf::bid` of a completion that carries no buffer (EOF); recycling it is a no-op.
pub const NO_BUFFER: u16 = u16::MAX;

/// The default of [`ReactorConfig::coalesce`] in microseconds: a busy reactor's wait
/// gathers completions for at most this long before it wakes.
pub const DEFAULT_COALESCE_US: u32 = 200;

/// Sizes of one reactor's rings and how it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReactorConfig {
    /// Submission queue entries (the completion queue gets four times as many, so a burst
    /// of multishot completions rarely spills into the kernel's overflow list). Default 4096.
    pub sq_entries: u32,
    /// Provided receive buffers; a power of two, at most 32768. Default 1024.
    pub buf_count: u16,
    /// Bytes per receive buffer. Default 4096.
    pub buf_size: u32,
    /// While completions arrive often, how long a wait may gather them before it wakes
    /// (see `wake_coalescing`); zero wakes on every first completion. Needs Linux 6.12
    /// (`IORING_FEAT_MIN_TIMEOUT`) and the deferred-task-running setup; ignored without.
    /// Default [`DEFAULT_COALESCE_US`] µs.
    pub coalesce: Duration,
}

impl Default for ReactorConfig {
    fn default() -> Self {
        ReactorConfig {
            sq_entries: 4096,
            buf_count: 1024,
            buf_size: 4096,
            coalesce: Duration::from_micros(DEFAULT_COALESCE_US as u64),
        }
    }
}

/// A received buffer: `len` bytes in buffer `bid`, readable with [`Reactor::buffer`] until
/// given back with [`Reactor::recycle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvBuf {
    /// Kernel buffer id, or [`NO_BUFFER`] for end of stream.
    pub bid: u16,
    /// Number of bytes received; 0 means end of stream.
    pub len: u32,
}

/// One decoded completion. Errors are positive errno values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Multishot accept produced a connection (close-on-exec) or failed.
    /// When `more` is false the accept has ended and must be re-armed.
    Accept {
        /// The caller's listener id given to [`Reactor::arm_accept`].
        listener: u32,
        /// The accepted socket or an errno.
        result: Result<RawFd, i32>,
        /// Whether the multishot accept is still armed.
        more: bool,
    },
    /// Multishot recv produced data. `Ok(len == 0)` is EOF. `Err(libc::ENOBUFS)` means the
    /// buffer ring ran dry (`more` is false then). When `more` is false the multishot recv has
    /// ended and must be re-armed by the caller if it wants more data.
    Recv {
        /// The caller's connection id.
        conn: u32,
        /// The caller's generation, reduced to [`GEN_BITS`](crate::GEN_BITS) bits.
        generation: u32,
        /// The received buffer or an errno.
        result: Result<RecvBuf, i32>,
        /// Whether the multishot recv is still armed.
        more: bool,
    },
    /// A `sendmsg` finished: bytes sent or an errno.
    Send {
        /// The caller's connection id.
        conn: u32,
        /// The caller's generation, reduced to [`GEN_BITS`](crate::GEN_BITS) bits.
        generation: u32,
        /// Bytes sent or an errno.
        result: Result<u32, i32>,
    },
    /// A `connect` finished.
    Connect {
        /// The caller's connection id.
        conn: u32,
        /// The caller's generation, reduced to [`GEN_BITS`](crate::GEN_BITS) bits.
        generation: u32,
        /// Success or an errno.
        result: Result<(), i32>,
    },
    /// The [`Waker`] was called (the internal eventfd read is re-armed automatically).
    Wake,
}

/// Plain counters of one reactor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReactorStats {
    /// SQEs consumed by the kernel.
    pub submitted: u64,
    /// CQEs reaped.
    pub completions: u64,
    /// Recv completions that failed with ENOBUFS (buffer ring empty).
    pub enobufs: u64,
    /// Submits forced by a full submission queue or send scratch.
    pub sq_full_flushes: u64,
    /// Waits that asked the kernel to gather completions (busy stretches).
    pub coalesced_waits: u64,
}

/// Address storage for `connect`; the box keeps the address stable while the vector grows.
/// Slots are reused once their connect has completed, so their count is the peak number of
/// connects in flight.
struct ConnectSlot {
    addr: Box<SockAddr>,
    conn: u32,
    generation: u32,
    in_flight: bool,
}

/// One io_uring with its provided buffer ring and wake eventfd. Not `Send`: one per thread.
pub struct Reactor {
    ring: IoUring,
    /// Dropped by `Drop` only once no request can write into it any more (leaked otherwise).
    buf_ring: ManuallyDrop<BufRing>,
    waker: Waker,
    /// Target of the eventfd read; written by the kernel while the read is in flight.
    wake_buf: Box<UnsafeCell<u64>>,
    wake_armed: bool,
    /// `msghdr`s of sends pushed since the last full submit; never grows past its capacity.
    send_msgs: Vec<libc::msghdr>,
    /// `iovec`s of those sends; never grows past its capacity.
    send_iovs: Vec<libc::iovec>,
    connects: Vec<ConnectSlot>,
    free_connects: Vec<u32>,
    /// Completions reaped while flushing a full queue, delivered by the next `wait`.
    backlog: Vec<Completion>,
    stats: ReactorStats,
    /// Pushed operations whose final completion (one without `IORING_CQE_F_MORE`) has not
    /// been reaped yet: the kernel may still access the memory they reference.
    in_flight: u64,
    /// Set by `cancel_all_and_reap`: the wake read is not re-armed any more.
    cancelling: bool,
    /// `None` when coalescing is off or the kernel lacks min-wait.
    coalescing: Option<WakeCoalescing>,
    /// Completions from outside (not of sends) reaped since the last `wait`, also those
    /// a flush parked in `backlog`: what `coalescing` counts as arrivals.
    arrivals: usize,
    _not_send: PhantomData<*const ()>,
}

impl Reactor {
    /// Creates the ring, checks the kernel features the reactor relies on
    /// (`IORING_FEAT_SUBMIT_STABLE`, `EXT_ARG`, `NODROP`), registers the buffer ring as group 0
    /// and arms the waker's eventfd read.
    pub fn new(cfg: ReactorConfig) -> Result<Reactor, ReactorError> {
        match Reactor::with_setup(cfg, RingSetup::FastPaths) {
            Err(ReactorError::Setup(err)) if err.raw_os_error() == Some(libc::EINVAL) => {
                Reactor::with_setup(cfg, RingSetup::Plain)
            }
            other => other,
        }
    }

    fn with_setup(cfg: ReactorConfig, setup: RingSetup) -> Result<Reactor, ReactorError> {
        if cfg.sq_entries == 0 || cfg.sq_entries > u32::from(MAX_ENTRIES) {
            return Err(ReactorError::Config("sq_entries must be in 1..=32768"));
        }
        if !cfg.buf_count.is_power_of_two() || cfg.buf_count > MAX_ENTRIES {
            return Err(ReactorError::Config(
                "buf_count must be a power of two <= 32768",
            ));
        }
        if cfg.buf_size == 0 {
            return Err(ReactorError::Config("buf_size must be non-zero"));
        }
        let ring = build_ring(cfg.sq_entries, setup)?;
        let params = ring.params();
        if !params.is_feature_submit_stable() {
            return Err(ReactorError::Unsupported("IORING_FEAT_SUBMIT_STABLE"));
        }
        if !params.is_feature_ext_arg() {
            return Err(ReactorError::Unsupported("IORING_FEAT_EXT_ARG"));
        }
        if !params.is_feature_nodrop() {
            return Err(ReactorError::Unsupported("IORING_FEAT_NODROP"));
        }
        let buf_ring = BufRing::new(cfg.buf_count, cfg.buf_size).map_err(ReactorError::Setup)?;
        // SAFETY: the ring memory is a page-aligned mapping of `count` entries owned by
        // `buf_ring`, which lives in the same `Reactor`; `Drop` unregisters it before unmapping.
        let registered = unsafe {
            ring.submitter().register_buf_ring_with_flags(
                buf_ring.ring_addr(),
                buf_ring.count(),
                BUF_GROUP,
                0,
            )
        };
        if let Err(err) = registered {
            return Err(match err.raw_os_error() {
                Some(libc::ENOMEM) => ReactorError::MemLock {
                    what: "the provided buffer ring",
                },
                Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => {
                    ReactorError::Unsupported("provided buffer rings (IORING_REGISTER_PBUF_RING)")
                }
                _ => ReactorError::Setup(err),
            });
        }
        let capacity = ring.params().sq_entries() as usize;
        // Only with deferred task running: it is what holds completions back from waking
        // the thread meanwhile (and 6.12's min-wait wake-up fix for other rings was not
        // backported).
        let coalescing = (setup == RingSetup::FastPaths
            && params.is_feature_min_timeout()
            && !cfg.coalesce.is_zero())
        .then(|| WakeCoalescing::new(cfg.coalesce, Instant::now()));
        let waker = Waker::new().map_err(ReactorError::Setup)?;
        let mut reactor = Reactor {
            ring,
            buf_ring: ManuallyDrop::new(buf_ring),
            waker,
            wake_buf: Box::new(UnsafeCell::new(0)),
            wake_armed: false,
            send_msgs: Vec::with_capacity(capacity),
            send_iovs: Vec::with_capacity((capacity * 4).max(MAX_IOVECS)),
            connects: Vec::new(),
            free_connects: Vec::new(),
            backlog: Vec::new(),
            stats: ReactorStats::default(),
            in_flight: 0,
            cancelling: false,
            coalescing,
            arrivals: 0,
            _not_send: PhantomData,
        };
        reactor.arm_wake();
        if !reactor.wake_armed {
            return Err(ReactorError::Setup(io::Error::other(
                "could not queue the waker's eventfd read",
            )));
        }
        Ok(reactor)
    }

    /// A handle that wakes this reactor from any thread.
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// Arms a multishot accept on `listener_fd`; accepted fds are close-on-exec.
    /// The caller re-arms when a completion has `more == false`.
    pub fn arm_accept(&mut self, listener_fd: RawFd, listener: u32) {
        let token = Token::new(OpKind::Accept, listener, 0);
        let entry = opcode::AcceptMulti::new(Fd(listener_fd))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(token.encode());
        // SAFETY: a multishot accept SQE references no user memory.
        unsafe { self.push_or_fail(&entry, token) };
    }

    /// Arms a multishot recv on `fd` that picks buffers from the shared ring.
    ///
    /// To end it, call [`shutdown_socket`](crate::shutdown_socket) and wait for the completion
    /// with `more == false` before closing: a pending request keeps the socket alive, so
    /// `close` alone neither ends the recv nor releases the connection.
    pub fn arm_recv(&mut self, fd: RawFd, conn: u32, generation: u32) {
        let token = Token::new(OpKind::Recv, conn, generation);
        let entry = opcode::RecvMulti::new(Fd(fd), BUF_GROUP)
            .build()
            .user_data(token.encode());
        // SAFETY: the recv writes only into registered ring buffers, which live as long as the ring.
        unsafe { self.push_or_fail(&entry, token) };
    }

    /// sendmsg with these iovecs. The iovec array and msghdr are copied into reactor-owned
    /// scratch kept until the SQE has been submitted (IORING_FEAT_SUBMIT_STABLE means the
    /// kernel has consumed them then); the DATA the iovecs point to must stay valid until the
    /// Send completion arrives (caller's job). Uses MSG_NOSIGNAL.
    ///
    /// More than 1024 iovecs completes with `Err(EMSGSIZE)`, like `sendmsg(2)`.
    pub fn send_vectored(&mut self, fd: RawFd, conn: u32, generation: u32, iov: &[libc::iovec]) {
        let token = Token::new(OpKind::Send, conn, generation);
        if iov.len() > MAX_IOVECS {
            self.fail(token, libc::EMSGSIZE);
            return;
        }
        if let Err(errno) = self.make_room(iov.len()) {
            self.fail(token, errno);
            return;
        }
        let iov_start = self.send_iovs.len();
        self.send_iovs.extend_from_slice(iov);
        // SAFETY: zero is a valid bit pattern for msghdr (null pointers, zero lengths).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = self.send_iovs[iov_start..].as_mut_ptr();
        msg.msg_iovlen = iov.len();
        self.send_msgs.push(msg);
        let msg_ptr: *const libc::msghdr = &raw const self.send_msgs[self.send_msgs.len() - 1];
        let entry = opcode::SendMsg::new(Fd(fd), msg_ptr)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
            .user_data(token.encode());
        // SAFETY: `make_room` guaranteed a free SQ slot and scratch capacity, so neither vector
        // reallocates nor is cleared before this SQE is submitted (scratch is only cleared when
        // the SQ is empty). The iovec data is the caller's contract, documented above.
        let pushed = unsafe { self.ring.submission().push(&entry) };
        match pushed {
            Ok(()) => self.in_flight += 1,
            Err(_) => self.fail(token, libc::EBUSY),
        }
    }

    /// Starts a `connect` of `fd` to `addr`; the address is stored until the completion.
    pub fn connect(&mut self, fd: RawFd, addr: SocketAddr, conn: u32, generation: u32) {
        let addr = SockAddr::from(addr);
        let index = match self.free_connects.pop() {
            Some(index) => index,
            None => {
                let Ok(index) = u32::try_from(self.connects.len()) else {
                    self.backlog.push(Completion::Connect {
                        conn,
                        generation: generation & crate::token::GEN_MASK,
                        result: Err(libc::ENOMEM),
                    });
                    return;
                };
                self.connects.push(ConnectSlot {
                    addr: Box::new(addr.clone()),
                    conn,
                    generation,
                    in_flight: false,
                });
                index
            }
        };
        let slot = &mut self.connects[index as usize];
        *slot.addr = addr;
        slot.conn = conn;
        slot.generation = generation;
        slot.in_flight = true;
        let addr_ptr = slot.addr.as_ptr().cast::<libc::sockaddr>();
        let addr_len = slot.addr.len();
        let token = Token::new(OpKind::Connect, index, 0);
        let entry = opcode::Connect::new(Fd(fd), addr_ptr, addr_len)
            .build()
            .user_data(token.encode());
        // SAFETY: the address lives in a box held by `connects[index]` until the completion for
        // this token is reaped (or the reactor is dropped after cancelling everything).
        unsafe { self.push_or_fail(&entry, token) };
    }

    /// Submits everything queued, waits until at least one completion or `timeout` elapsed,
    /// then appends all available completions to `out` (recycles nothing itself).
    /// `Duration::ZERO` does not wait. EINTR, ETIME and EBUSY are not errors.
    ///
    /// While completions arrive often (see `wake_coalescing`), a wait that would sleep
    /// gathers them for up to [`ReactorConfig::coalesce`] (or until 64 are pending; never
    /// past `timeout`) before it returns, the completions of sends it submitted included.
    /// "Would sleep" is judged from the completion queue before the submit.
    pub fn wait(&mut self, timeout: Duration, out: &mut Vec<Completion>) -> io::Result<()> {
        if !self.wake_armed {
            self.arm_wake();
        }
        self.buf_ring.publish();
        let ready = !self.backlog.is_empty()
            || !self.ring.completion().is_empty()
            || self.ring.submission().cq_overflow();
        let sleeps = !ready && !timeout.is_zero();
        let timespec = if sleeps {
            Timespec::from(timeout.min(MAX_WAIT))
        } else {
            Timespec::new()
        };
        let min_wait = match &mut self.coalescing {
            // Never past the caller's timeout: the kernel arms the min-wait timer first.
            Some(coalescing) if sleeps => coalescing
                .min_wait_usec(Instant::now())
                .min(u32::try_from(timeout.as_micros()).unwrap_or(u32::MAX)),
            _ => 0,
        };
        let args = SubmitArgs::new()
            .timespec(&timespec)
            .min_wait_usec(min_wait);
        let want = if min_wait == 0 {
            1
        } else {
            self.stats.coalesced_waits += 1;
            wake_coalescing::WANT
        };
        match self.ring.submitter().submit_with_args(want, &args) {
            Ok(submitted) => self.stats.submitted += submitted as u64,
            Err(err) if is_transient(&err) => {}
            Err(err) => return Err(err),
        }
        self.clear_scratch_if_submitted();
        out.append(&mut self.backlog);
        self.reap(out);
        let arrivals = std::mem::take(&mut self.arrivals);
        if let Some(coalescing) = &mut self.coalescing {
            coalescing.arrived(arrivals);
        }
        Ok(())
    }

    /// The first `len` bytes of received buffer `bid`; empty unless `bid` is currently lent to
    /// the caller (received and not yet recycled). `len` is clamped to the buffer size.
    pub fn buffer(&mut self, bid: u16, len: u32) -> &mut [u8] {
        self.buf_ring.buffer(bid, len)
    }

    /// Gives buffer `bid` back to the ring; the kernel sees it after the next submit.
    /// Ids not currently lent (including [`NO_BUFFER`]) are ignored.
    pub fn recycle(&mut self, bid: u16) {
        self.buf_ring.recycle(bid);
    }

    /// Counters since creation.
    pub fn stats(&self) -> ReactorStats {
        self.stats
    }

    /// Pushed operations whose final completion has not been reaped yet (the wake read
    /// counts as one while armed).
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    fn arm_wake(&mut self) {
        if self.cancelling {
            return;
        }
        let token = Token::new(OpKind::Wake, 0, 0);
        let entry = opcode::Read::new(
            Fd(self.waker.raw_fd()),
            self.wake_buf.get().cast::<u8>(),
            std::mem::size_of::<u64>() as u32,
        )
        .build()
        .user_data(token.encode());
        if self.make_room(0).is_err() {
            return;
        }
        // SAFETY: `wake_buf` is a heap cell owned by the reactor that Rust never reads or
        // writes; it outlives the read because `Drop` cancels all requests first. The eventfd
        // is kept open by `waker`.
        self.wake_armed = unsafe { self.ring.submission().push(&entry) }.is_ok();
        if self.wake_armed {
            self.in_flight += 1;
        }
    }

    /// Pushes an SQE, flushing a full queue first; on failure posts an error completion.
    ///
    /// # Safety
    /// Memory referenced by `entry` must stay valid until its completion is reaped.
    unsafe fn push_or_fail(&mut self, entry: &squeue::Entry, token: Token) {
        if let Err(errno) = self.make_room(0) {
            self.fail(token, errno);
            return;
        }
        // SAFETY: forwarded from the caller's contract.
        match unsafe { self.ring.submission().push(entry) } {
            Ok(()) => self.in_flight += 1,
            Err(_) => self.fail(token, libc::EBUSY),
        }
    }

    /// Ensures one free SQ slot and scratch room for `iovs` iovecs, submitting as needed.
    fn make_room(&mut self, iovs: usize) -> Result<(), i32> {
        let mut failures = 0;
        loop {
            let sq_full = self.ring.submission().is_full();
            let scratch_full = self.send_msgs.len() == self.send_msgs.capacity()
                || self.send_iovs.len() + iovs > self.send_iovs.capacity();
            if !sq_full && !scratch_full {
                return Ok(());
            }
            self.stats.sq_full_flushes += 1;
            self.buf_ring.publish();
            match self.ring.submit() {
                Ok(submitted) => self.stats.submitted += submitted as u64,
                Err(err) => {
                    failures += 1;
                    if failures >= MAX_FLUSH_RETRIES {
                        return Err(err.raw_os_error().unwrap_or(libc::EIO));
                    }
                    if matches!(err.raw_os_error(), Some(libc::EBUSY | libc::EAGAIN)) {
                        let mut backlog = std::mem::take(&mut self.backlog);
                        self.reap(&mut backlog);
                        self.backlog = backlog;
                    }
                }
            }
            self.clear_scratch_if_submitted();
        }
    }

    /// Send scratch may be reused once the kernel has consumed every queued SQE.
    fn clear_scratch_if_submitted(&mut self) {
        if self.ring.submission().is_empty() {
            self.send_msgs.clear();
            self.send_iovs.clear();
        }
    }

    /// Posts the completion an operation would have produced had it failed with `errno`.
    fn fail(&mut self, token: Token, errno: i32) {
        if let Some(completion) = self.decode(token, -errno, 0) {
            self.backlog.push(completion);
        }
    }

    /// Moves every CQE currently in the completion queue into `out`, a batch at a time.
    fn reap(&mut self, out: &mut Vec<Completion>) {
        let mut batch = [const { MaybeUninit::<cqueue::Entry>::uninit() }; REAP_BATCH];
        loop {
            let cqes = self.ring.completion().fill(&mut batch);
            if cqes.is_empty() {
                return;
            }
            self.stats.completions += cqes.len() as u64;
            for cqe in cqes.iter() {
                let Some(token) = Token::decode(cqe.user_data()) else {
                    continue;
                };
                if !cqueue::more(cqe.flags()) {
                    self.in_flight = self.in_flight.saturating_sub(1);
                }
                if let Some(completion) = self.decode(token, cqe.result(), cqe.flags()) {
                    if token.kind != OpKind::Send {
                        self.arrivals += 1;
                    }
                    out.push(completion);
                }
            }
        }
    }

    fn decode(&mut self, token: Token, res: i32, flags: u32) -> Option<Completion> {
        let more = cqueue::more(flags);
        let errno_or = |res: i32| if res < 0 { Err(-res) } else { Ok(res) };
        match token.kind {
            OpKind::Accept => Some(Completion::Accept {
                listener: token.id,
                result: errno_or(res),
                more,
            }),
            OpKind::Recv => {
                let result = match (errno_or(res), cqueue::buffer_select(flags)) {
                    (Err(errno), _) => {
                        if errno == libc::ENOBUFS {
                            self.stats.enobufs += 1;
                        }
                        Err(errno)
                    }
                    (Ok(0), bid) => {
                        if let Some(bid) = bid {
                            self.buf_ring.lend(bid);
                            self.buf_ring.recycle(bid);
                        }
                        Ok(RecvBuf {
                            bid: NO_BUFFER,
                            len: 0,
                        })
                    }
                    (Ok(len), Some(bid)) if self.buf_ring.lend(bid) => Ok(RecvBuf {
                        bid,
                        len: len as u32,
                    }),
                    (Ok(_), _) => Err(libc::EIO),
                };
                Some(Completion::Recv {
                    conn: token.id,
                    generation: token.generation,
                    result,
                    more,
                })
            }
            OpKind::Send => Some(Completion::Send {
                conn: token.id,
                generation: token.generation,
                result: errno_or(res).map(|sent| sent as u32),
            }),
            OpKind::Connect => {
                let slot = self
                    .connects
                    .get_mut(token.id as usize)
                    .filter(|slot| slot.in_flight)?;
                slot.in_flight = false;
                self.free_connects.push(token.id);
                Some(Completion::Connect {
                    conn: slot.conn,
                    generation: slot.generation & crate::token::GEN_MASK,
                    result: errno_or(res).map(drop),
                })
            }
            OpKind::Wake => {
                self.wake_armed = false;
                if res != -libc::ECANCELED {
                    self.arm_wake();
                }
                Some(Completion::Wake)
            }
        }
    }

    /// Bytes of heap the reactor owns besides the rings (for the no-per-connection test).
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.send_msgs.capacity() * std::mem::size_of::<libc::msghdr>()
            + self.send_iovs.capacity() * std::mem::size_of::<libc::iovec>()
            + self.connects.capacity() * std::mem::size_of::<ConnectSlot>()
            + self.free_connects.capacity() * std::mem::size_of::<u32>()
            + self.backlog.capacity() * std::mem::size_of::<Completion>()
            + self.buf_ring.heap_bytes()
    }

    /// Buffers currently lent to the caller.
    #[cfg(test)]
    pub(crate) fn lent_buffers(&self) -> u32 {
        self.buf_ring.lent_count()
    }
}

/// Cancels every in-flight request and reaps its completion (bounded by one second), then
/// unregisters the buffer ring and unmaps it. If requests outlive that bound, the memory they
/// may still access (receive buffers, wake cell, connect addresses) is leaked instead.
impl Drop for Reactor {
    fn drop(&mut self) {
        match self.cancel_all_and_reap(DROP_REAP_TIMEOUT) {
            CancelOutcome::AllReaped => {
                let _ = self.ring.submitter().unregister_buf_ring(BUF_GROUP);
                // SAFETY: no request is in flight, so the kernel no longer picks or writes these
                // buffers; this is the only place the ring is dropped and it is not used after.
                unsafe { ManuallyDrop::drop(&mut self.buf_ring) };
            }
            CancelOutcome::StillInFlight { .. } => {
                // `buf_ring` stays undropped (leaked) with these.
                std::mem::forget(std::mem::take(&mut self.connects));
                let wake_buf = std::mem::replace(&mut self.wake_buf, Box::new(UnsafeCell::new(0)));
                std::mem::forget(wake_buf);
            }
        }
    }
}

/// Which io_uring setup flags to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RingSetup {
    /// Single-issuer, deferred task running (kernel 6.1+).
    FastPaths,
    /// Only `SUBMIT_ALL` and the completion queue size.
    Plain,
}

/// Builds the ring with a completion queue four times the submission queue.
fn build_ring(sq_entries: u32, setup: RingSetup) -> Result<IoUring, ReactorError> {
    let mut builder = IoUring::builder();
    builder
        .setup_cqsize(sq_entries.saturating_mul(4))
        .setup_clamp()
        .setup_submit_all();
    if setup == RingSetup::FastPaths {
        builder
            .setup_coop_taskrun()
            .setup_single_issuer()
            .setup_defer_taskrun();
    }
    builder
        .build(sq_entries)
        .map_err(|err| match err.raw_os_error() {
            Some(libc::ENOMEM) => ReactorError::MemLock {
                what: "the io_uring submission and completion rings",
            },
            Some(libc::ENOSYS) => ReactorError::Unsupported("io_uring"),
            Some(libc::EPERM) => {
                ReactorError::Unsupported("io_uring (disabled by kernel.io_uring_disabled)")
            }
            _ => ReactorError::Setup(err),
        })
}

fn is_transient(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
    )
}

mod shutdown;
#[cfg(test)]
mod tests;

//! Teardown of a reactor: cancel every operation in flight and reap its completion, so the
//! memory those operations reference (the caller's send data, the receive buffers, the wake
//! cell, connect addresses) may be freed without the kernel still reading or writing it.
//!
//! Dropping the io_uring alone gives no such guarantee: closing the ring fd cancels requests
//! asynchronously, in a kernel worker, after `close` has returned.

use std::time::{Duration, Instant};

use io_uring::opcode;
use io_uring::types::{CancelBuilder, SubmitArgs, Timespec};

use super::{Completion, Reactor};
use crate::socket::close_fd;

/// How long `Drop` waits for operations the owner did not reap itself.
pub(super) const DROP_REAP_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest single wait for cancelled operations' completions before cancelling again.
const REAP_TURN: Duration = Duration::from_millis(50);
/// Upper bound on cancel-and-wait rounds, whatever the clock does.
const MAX_ROUNDS: u32 = 10_000;
/// `user_data` of the cancel requests themselves: kind 0 never decodes as a [`Token`], so
/// their completions are skipped and never counted as one of the caller's operations.
///
/// [`Token`]: crate::token::Token
const CANCEL_USER_DATA: u64 = 0;

/// What [`Reactor::cancel_all_and_reap`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// Every operation ever pushed has completed and its final completion was reaped: the
    /// kernel holds no pointer into memory they referenced, which may be freed now.
    AllReaped,
    /// The timeout passed with operations still owned by the kernel: memory they reference
    /// must be leaked, not freed.
    StillInFlight {
        /// Operations still without a final completion.
        in_flight: u64,
    },
}

impl Reactor {
    /// Cancels every operation in flight (`IORING_OP_ASYNC_CANCEL` matching any request) and
    /// reaps completions until each pushed operation has delivered its final one, or until
    /// `timeout` has passed. Submissions still queued are submitted first, in the same
    /// `io_uring_enter` as the cancel.
    ///
    /// Call this before freeing data of sends that may still be in flight: once it returns
    /// [`CancelOutcome::AllReaped`], the kernel no longer reads any iovec given to
    /// [`Reactor::send_vectored`]. Completions reaped here are not handed out: their receive
    /// buffers go back to the ring and accepted sockets are closed. The wake read is not
    /// re-armed afterwards; the reactor is meant to be dropped next (`Drop` runs this again,
    /// which then returns at once).
    pub fn cancel_all_and_reap(&mut self, timeout: Duration) -> CancelOutcome {
        self.cancelling = true;
        let start = Instant::now();
        let mut reaped = Vec::new();
        for _ in 0..MAX_ROUNDS {
            reaped.append(&mut self.backlog);
            self.reap(&mut reaped);
            for completion in reaped.drain(..) {
                self.release(completion);
            }
            if self.in_flight == 0 {
                return CancelOutcome::AllReaped;
            }
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                break;
            }
            self.push_cancel_all();
            let turn = Timespec::from(left.min(REAP_TURN));
            let args = SubmitArgs::new().timespec(&turn);
            if let Ok(submitted) = self.ring.submitter().submit_with_args(1, &args) {
                self.stats.submitted += submitted as u64;
            }
            self.clear_scratch_if_submitted();
        }
        CancelOutcome::StillInFlight {
            in_flight: self.in_flight,
        }
    }

    /// Queues one cancel matching every request the kernel holds (not counted as in flight).
    fn push_cancel_all(&mut self) {
        if self.make_room(0).is_err() {
            return;
        }
        let entry = opcode::AsyncCancel2::new(CancelBuilder::any())
            .build()
            .user_data(CANCEL_USER_DATA);
        // SAFETY: a cancel SQE references no user memory. A full queue only delays the
        // cancel to the next round.
        let _ = unsafe { self.ring.submission().push(&entry) };
    }

    /// Gives back what a completion nobody will see holds: its receive buffer or socket.
    fn release(&mut self, completion: Completion) {
        match completion {
            Completion::Accept { result: Ok(fd), .. } => close_fd(fd),
            Completion::Recv {
                result: Ok(buf), ..
            } => self.buf_ring.recycle(buf.bid),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;

//! The eventfd that lets other threads interrupt a reactor blocked in `wait`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

/// Wakes the reactor it came from; cheap to clone and usable from any thread.
#[derive(Clone, Debug)]
pub struct Waker {
    eventfd: Arc<OwnedFd>,
}

impl Waker {
    /// Creates a close-on-exec eventfd.
    ///
    /// It is deliberately blocking: io_uring then parks the reactor's read on the eventfd's
    /// poll queue on every kernel, whereas some kernels complete reads of `O_NONBLOCK` files
    /// with `EAGAIN`. A blocking `write` could only block when the counter is about to
    /// overflow (2^64 - 2 unread wakes), which cannot happen.
    pub(crate) fn new() -> io::Result<Waker> {
        // SAFETY: plain FFI call without pointers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Waker {
            eventfd: Arc::new(owned),
        })
    }

    /// The eventfd, for the reactor's read.
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }

    /// Makes the reactor's current or next `wait` return a [`Completion::Wake`](crate::Completion::Wake).
    ///
    /// Wakes coalesce; write errors are ignored.
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to an fd kept open by the Arc.
        unsafe {
            libc::write(
                self.eventfd.as_raw_fd(),
                (&raw const one).cast::<libc::c_void>(),
                std::mem::size_of::<u64>(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waker_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Waker>();
    }

    #[test]
    fn wake_increments_the_counter() {
        let waker = Waker::new().unwrap();
        waker.wake();
        waker.clone().wake();
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a live local.
        let n = unsafe {
            libc::read(
                waker.raw_fd(),
                (&raw mut value).cast::<libc::c_void>(),
                std::mem::size_of::<u64>(),
            )
        };
        assert_eq!(n, 8);
        assert_eq!(value, 2);
    }
}

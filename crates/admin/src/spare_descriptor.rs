//! One file descriptor held in reserve (`/dev/null`), so the admin port can still accept
//! a connection when the process is at its descriptor limit (the shards' sockets can use
//! every descriptor): on EMFILE the spare is closed, the waiting connection accepted in
//! its place and served, and the spare reopened as soon as a descriptor is free again.
//! Without it, `/metrics` would go dark exactly when it matters.

use std::fs::File;
use std::io;
use std::sync::Mutex;

/// The reserved descriptor, or nothing while it is lent to a connection.
pub(crate) struct SpareDescriptor {
    file: Mutex<Option<File>>,
}

impl SpareDescriptor {
    /// Opens the spare (if even that fails, the port works without one).
    pub(crate) fn open() -> Self {
        SpareDescriptor {
            file: Mutex::new(File::open("/dev/null").ok()),
        }
    }

    /// Reopens the spare if it was lent out and a descriptor is free again.
    pub(crate) fn refill(&self) {
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if file.is_none() {
            *file = File::open("/dev/null").ok();
        }
    }

    /// Closes the spare so the next accept can succeed; `false` when there was none.
    pub(crate) fn release(&self) -> bool {
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        file.take().is_some()
    }
}

/// Whether `err` from accept means the process (or system) is out of descriptors.
pub(crate) fn out_of_descriptors(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(code) if code == libc::EMFILE || code == libc::ENFILE)
}

//! Errors returned while setting up a [`Reactor`](crate::Reactor).

/// Why a reactor could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ReactorError {
    /// A system call made during setup failed.
    #[error("io_uring reactor setup failed: {0}")]
    Setup(std::io::Error),
    /// The kernel refused memory because of `RLIMIT_MEMLOCK`.
    #[error(
        "io_uring setup failed with ENOMEM: RLIMIT_MEMLOCK is too low for {what}; raise `ulimit -l` or lower ring sizes"
    )]
    MemLock {
        /// Which allocation hit the limit.
        what: &'static str,
    },
    /// The running kernel lacks a feature the reactor depends on.
    #[error("the kernel lacks a required io_uring feature: {0}")]
    Unsupported(&'static str),
    /// The [`ReactorConfig`](crate::ReactorConfig) is not usable.
    #[error("invalid reactor configuration: {0}")]
    Config(&'static str),
}

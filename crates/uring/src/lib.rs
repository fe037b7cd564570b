//! ringcast-uring: the per-shard io_uring reactor (sockets and completions only, no WebSocket).
//!
//! One [`Reactor`] per thread owns an io_uring, a provided buffer ring shared by all of its
//! connections and an eventfd [`Waker`]. Callers name connections with `(conn, generation)` pairs that
//! travel in `user_data`; the reactor keeps no per-connection state, so an idle connection with
//! an armed multishot recv costs zero user-space bytes here. Submissions are batched: one
//! `io_uring_enter` per [`Reactor::wait`], which gathers completions for a moment while
//! they arrive often (`wake_coalescing`).
//!
//! Generations keep [`GEN_BITS`] bits. The gateway's shard core (sans-IO, not a dependant of
//! this crate) wraps its own generations with an equal `GEN_MASK`, which the binary asserts.

#![warn(unreachable_pub)]

mod buf_ring;
mod error;
mod listener;
mod reactor;
mod socket;
mod token;
mod wake_coalescing;
mod waker;

pub use error::ReactorError;
pub use listener::bind_reuseport;
pub use reactor::{
    CancelOutcome, Completion, DEFAULT_COALESCE_US, MAX_IOVECS, NO_BUFFER, Reactor, ReactorConfig,
    ReactorStats, RecvBuf,
};
pub use socket::{
    close_fd, peer_ip, set_nodelay, shutdown_socket, shutdown_write, tcp_socket_bound,
};
pub use token::{GEN_BITS, GEN_MASK};
pub use waker::Waker;

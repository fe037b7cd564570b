//! The shard's basic identifiers: a connection's [`ConnId`] (slot and generation) and a
//! shared [`ChannelName`]. Every other module names connections and channels through
//! these, so this module imports nothing from the crate.
//!
//! Generations wrap at [`GEN_BITS`] bits because the reactor carries them through
//! io_uring completions in 24 bits of `user_data`. The shard is sans-IO and does not
//! depend on the reactor crate, so the constant lives here; the binary asserts at compile
//! time that `ringcast_uring::GEN_MASK` is the same mask.

use std::sync::Arc;

/// Number of generation bits a [`ConnId`] keeps (the reactor carries this many).
pub const GEN_BITS: u32 = 24;
/// Mask that wraps a slot's generation (see [`GEN_BITS`]).
pub const GEN_MASK: u32 = (1 << GEN_BITS) - 1;

/// A connection's handle: its slot and the slot's generation when it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    /// Slot index in the connection table.
    pub idx: u32,
    /// Generation of the slot (at most [`GEN_MASK`]); a stale id no longer matches.
    pub generation: u32,
}

/// A channel name shared by reference count between shards and maps.
pub type ChannelName = Arc<str>;

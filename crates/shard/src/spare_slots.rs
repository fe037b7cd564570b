//! The node-wide pool of connection slots that no shard holds as its own share.
//!
//! `--max-connections` is split into a small local share per shard plus this pool. A
//! shard counts its connections from accept against its share without touching shared
//! state; only a shard whose share is used up borrows a slot here (one atomic
//! compare-and-swap), and gives a borrowed slot back when one of its connections is
//! freed. So the node never holds more than `--max-connections` sockets, and a limit
//! admits exactly its number whatever the SO_REUSEPORT spread, as long as the other
//! shards' idle local shares are not needed (shares are kept small for that reason).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A handle on the node's spare connection slots, shared by every shard.
#[derive(Debug, Clone, Default)]
pub struct SpareSlots {
    free: Arc<AtomicUsize>,
}

impl SpareSlots {
    /// A pool of `slots` spare slots.
    pub fn new(slots: usize) -> Self {
        SpareSlots {
            free: Arc::new(AtomicUsize::new(slots)),
        }
    }

    /// Takes one slot; false when none is left.
    pub(crate) fn borrow(&self) -> bool {
        self.free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Returns a slot taken with [`SpareSlots::borrow`].
    pub(crate) fn give_back(&self) {
        self.free.fetch_add(1, Ordering::AcqRel);
    }

    /// Slots left.
    pub fn available(&self) -> usize {
        self.free.load(Ordering::Acquire)
    }
}

/// Each shard keeps this fraction (1/N) of its even split of the limit as its own share.
const SHARE_DIVISOR: usize = 4;

/// Splits `--max-connections` (`None` = unlimited) over `shards`: each shard's own share
/// (a quarter of an even split, rounded down) and the pool holding the rest. A limit
/// below four slots per shard is pooled entirely, so it is exact.
pub fn connection_shares(max: Option<usize>, shards: usize) -> (usize, SpareSlots) {
    let Some(max) = max else {
        return (usize::MAX, SpareSlots::default());
    };
    let shards = shards.max(1);
    let share = max / shards / SHARE_DIVISOR;
    (share, SpareSlots::new(max - share * shards))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_a_quarter_of_an_even_split_and_the_pool_the_rest() {
        let (share, pool) = connection_shares(Some(3), 2);
        assert_eq!((share, pool.available()), (0, 3));
        let (share, pool) = connection_shares(Some(10_000), 8);
        assert_eq!((share, pool.available()), (312, 10_000 - 312 * 8));
        let (share, _) = connection_shares(None, 8);
        assert_eq!(share, usize::MAX);
    }

    #[test]
    fn borrows_until_empty_and_takes_slots_back() {
        let pool = SpareSlots::new(2);
        let other = pool.clone();
        assert!(pool.borrow());
        assert!(other.borrow());
        assert!(!pool.borrow());
        other.give_back();
        assert_eq!(pool.available(), 1);
        assert!(pool.borrow());
    }
}

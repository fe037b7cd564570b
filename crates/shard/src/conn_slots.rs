//! A shard's count of the connection slots it holds, from accept to the freed slot
//! (`--max-connections` bounds sockets, not finished handshakes): its own share first,
//! then slots borrowed from the node-wide [`SpareSlots`] pool, given back first when a
//! connection is freed so the pool refills as soon as this shard no longer needs it.

use crate::spare_slots::SpareSlots;

/// Slots held by one shard.
#[derive(Debug)]
pub(crate) struct ConnSlots {
    share: usize,
    held: usize,
    borrowed: usize,
    pool: SpareSlots,
}

impl ConnSlots {
    /// A count with `share` slots of its own and `pool` to borrow from.
    pub(crate) fn new(share: usize, pool: SpareSlots) -> Self {
        ConnSlots {
            share,
            held: 0,
            borrowed: 0,
            pool,
        }
    }

    /// Takes a slot for a new socket; false when the share and the pool are used up.
    pub(crate) fn take(&mut self) -> bool {
        if self.held < self.share {
            self.held += 1;
            return true;
        }
        if self.pool.borrow() {
            self.held += 1;
            self.borrowed += 1;
            return true;
        }
        false
    }

    /// Frees a slot taken with [`ConnSlots::take`].
    pub(crate) fn release(&mut self) {
        self.held = self.held.saturating_sub(1);
        if self.borrowed > 0 {
            self.borrowed -= 1;
            self.pool.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_share_first_then_the_pool_which_gets_slots_back_first() {
        let pool = SpareSlots::new(1);
        let mut slots = ConnSlots::new(2, pool.clone());
        assert!(slots.take() && slots.take());
        assert_eq!(pool.available(), 1, "the share needs no pool");
        assert!(slots.take());
        assert!(!slots.take());
        slots.release();
        assert_eq!(pool.available(), 1, "a borrowed slot goes back first");
        assert!(slots.take());
        assert_eq!(pool.available(), 0);
    }
}

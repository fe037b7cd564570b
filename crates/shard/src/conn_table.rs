//! The shard's connection slab: stable `u32` slots reused through a free list, each with
//! a generation so a late completion for a closed connection is recognised and dropped.
//! Generations wrap at `GEN_MASK` (see `ids`), the width the reactor carries.

use crate::conn::Conn;
use crate::ids::{ConnId, GEN_MASK};

struct Slot {
    generation: u32,
    conn: Option<Conn>,
}

/// Slab of live connections.
#[derive(Default)]
pub(crate) struct ConnTable {
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
}

impl ConnTable {
    /// Stores `conn` in a free slot and returns its id.
    pub(crate) fn insert(&mut self, conn: Conn) -> ConnId {
        self.live += 1;
        if let Some(idx) = self.free.pop() {
            let slot = &mut self.slots[idx as usize];
            slot.conn = Some(conn);
            return ConnId {
                idx,
                generation: slot.generation,
            };
        }
        let idx = self.slots.len() as u32;
        self.slots.push(Slot {
            generation: 0,
            conn: Some(conn),
        });
        ConnId { idx, generation: 0 }
    }

    /// The connection `id` names, if it is still open.
    pub(crate) fn get(&self, id: ConnId) -> Option<&Conn> {
        match self.slots.get(id.idx as usize) {
            Some(slot) if slot.generation == id.generation => slot.conn.as_ref(),
            _ => None,
        }
    }

    /// The connection `id` names, if it is still open (mutable).
    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        match self.slots.get_mut(id.idx as usize) {
            Some(slot) if slot.generation == id.generation => slot.conn.as_mut(),
            _ => None,
        }
    }

    /// The connection in slot `idx`, whatever its generation.
    pub(crate) fn get_by_idx(&self, idx: u32) -> Option<(ConnId, &Conn)> {
        let slot = self.slots.get(idx as usize)?;
        let generation = slot.generation;
        slot.conn
            .as_ref()
            .map(|conn| (ConnId { idx, generation }, conn))
    }

    /// Every live connection with its id, in slot order (O(slots ever used)).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (ConnId, &Conn)> {
        self.slots.iter().zip(0u32..).filter_map(|(slot, idx)| {
            slot.conn.as_ref().map(|conn| {
                let id = ConnId {
                    idx,
                    generation: slot.generation,
                };
                (id, conn)
            })
        })
    }

    /// The connection in slot `idx`, whatever its generation.
    pub(crate) fn get_by_idx_mut(&mut self, idx: u32) -> Option<(ConnId, &mut Conn)> {
        let slot = self.slots.get_mut(idx as usize)?;
        let generation = slot.generation;
        slot.conn
            .as_mut()
            .map(|conn| (ConnId { idx, generation }, conn))
    }

    /// Removes the connection and bumps the slot's generation.
    pub(crate) fn remove(&mut self, id: ConnId) -> Option<Conn> {
        let slot = self.slots.get_mut(id.idx as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        let conn = slot.conn.take()?;
        slot.generation = (slot.generation + 1) & GEN_MASK;
        self.free.push(id.idx);
        self.live -= 1;
        Some(conn)
    }

    /// Number of open connections.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Whether no connection is open.
    pub(crate) fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// One past the highest slot index ever used.
    pub(crate) fn capacity(&self) -> u32 {
        self.slots.len() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_slots_with_new_generation() {
        let mut table = ConnTable::default();
        let a = table.insert(Conn::new(10, None, 1024));
        let b = table.insert(Conn::new(11, None, 1024));
        assert_eq!(table.len(), 2);
        assert!(table.remove(a).is_some());
        assert!(table.remove(a).is_none(), "stale id");
        let c = table.insert(Conn::new(12, None, 1024));
        assert_eq!(c.idx, a.idx);
        assert_ne!(c.generation, a.generation);
        assert!(table.get_mut(a).is_none());
        assert_eq!(table.get_mut(c).map(|conn| conn.fd), Some(12));
        assert_eq!(table.get_mut(b).map(|conn| conn.fd), Some(11));
        assert_eq!(table.len(), 2);
    }
}

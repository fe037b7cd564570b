//! The shard's connection slab: stable `u32` slots reused through a free list, each with
//! a generation so a late completion for a closed connection is recognised and dropped.
//! Generations wrap at `GEN_MASK` (see `ids`), the width the reactor carries.
//!
//! Slots live in fixed chunks of [`CHUNK`] that are allocated once and never moved: a
//! growing table never copies its connections nor leaves a freed old array behind in
//! the heap (which a doubling vector does at every growth), so memory grows by one
//! slot per connection and one chunk at a time.

use crate::conn::Conn;
use crate::ids::{ConnId, GEN_MASK};

/// Slots per chunk.
const CHUNK: usize = 1024;

/// A slot: free (with the generation its next connection gets) or holding a connection
/// (which carries its generation, so an occupied slot is exactly a `Conn`'s size).
enum Slot {
    Vacant { generation: u32 },
    Occupied(Conn),
}

/// Slab of live connections.
#[derive(Default)]
pub(crate) struct ConnTable {
    /// Chunks of exactly `CHUNK` slots' capacity; only the last may be partly filled.
    chunks: Vec<Vec<Slot>>,
    /// Slots ever used.
    used: u32,
    free: Vec<u32>,
    live: usize,
}

impl ConnTable {
    /// Stores `conn` in a free slot and returns its id.
    pub(crate) fn insert(&mut self, mut conn: Conn) -> ConnId {
        self.live += 1;
        if let Some(idx) = self.free.pop()
            && let Some(slot) = self.slot_mut(idx)
            && let Slot::Vacant { generation } = *slot
        {
            conn.generation = generation;
            *slot = Slot::Occupied(conn);
            return ConnId { idx, generation };
        }
        let idx = self.used;
        self.used += 1;
        if self.chunks.last().is_none_or(|chunk| chunk.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        conn.generation = 0;
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.push(Slot::Occupied(conn));
        }
        ConnId { idx, generation: 0 }
    }

    fn slot(&self, idx: u32) -> Option<&Slot> {
        let idx = idx as usize;
        self.chunks.get(idx / CHUNK)?.get(idx % CHUNK)
    }

    fn slot_mut(&mut self, idx: u32) -> Option<&mut Slot> {
        let idx = idx as usize;
        self.chunks.get_mut(idx / CHUNK)?.get_mut(idx % CHUNK)
    }

    /// The connection `id` names, if it is still open.
    pub(crate) fn get(&self, id: ConnId) -> Option<&Conn> {
        match self.slot(id.idx) {
            Some(Slot::Occupied(conn)) if conn.generation == id.generation => Some(conn),
            _ => None,
        }
    }

    /// The connection `id` names, if it is still open (mutable).
    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        match self.slot_mut(id.idx) {
            Some(Slot::Occupied(conn)) if conn.generation == id.generation => Some(conn),
            _ => None,
        }
    }

    /// The connection in slot `idx`, whatever its generation.
    pub(crate) fn get_by_idx(&self, idx: u32) -> Option<(ConnId, &Conn)> {
        match self.slot(idx)? {
            Slot::Occupied(conn) => Some((conn.id_at(idx), conn)),
            Slot::Vacant { .. } => None,
        }
    }

    /// Every live connection with its id, in slot order (O(slots ever used)).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (ConnId, &Conn)> {
        self.chunks
            .iter()
            .flatten()
            .zip(0u32..)
            .filter_map(|(slot, idx)| match slot {
                Slot::Occupied(conn) => Some((conn.id_at(idx), conn)),
                Slot::Vacant { .. } => None,
            })
    }

    /// The connection in slot `idx`, whatever its generation.
    pub(crate) fn get_by_idx_mut(&mut self, idx: u32) -> Option<(ConnId, &mut Conn)> {
        match self.slot_mut(idx)? {
            Slot::Occupied(conn) => Some((conn.id_at(idx), conn)),
            Slot::Vacant { .. } => None,
        }
    }

    /// Removes the connection and bumps the slot's generation.
    pub(crate) fn remove(&mut self, id: ConnId) -> Option<Conn> {
        let slot = self.slot_mut(id.idx)?;
        if !matches!(slot, Slot::Occupied(conn) if conn.generation == id.generation) {
            return None;
        }
        let next = Slot::Vacant {
            generation: (id.generation + 1) & GEN_MASK,
        };
        let Slot::Occupied(conn) = std::mem::replace(slot, next) else {
            return None;
        };
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
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_slots_with_new_generation() {
        let mut table = ConnTable::default();
        let a = table.insert(Conn::new(10, None));
        let b = table.insert(Conn::new(11, None));
        assert_eq!(table.len(), 2);
        assert!(table.remove(a).is_some());
        assert!(table.remove(a).is_none(), "stale id");
        let c = table.insert(Conn::new(12, None));
        assert_eq!(c.idx, a.idx);
        assert_ne!(c.generation, a.generation);
        assert!(table.get_mut(a).is_none());
        assert_eq!(table.get_mut(c).map(|conn| conn.fd), Some(12));
        assert_eq!(table.get_mut(b).map(|conn| conn.fd), Some(11));
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn grows_by_chunks_without_moving_connections() {
        let mut table = ConnTable::default();
        let first = table.insert(Conn::new(0, None));
        let before = table.get(first).map(|c| c as *const Conn);
        let ids: Vec<ConnId> = (1..=2 * CHUNK as i32 + 1)
            .map(|fd| table.insert(Conn::new(fd, None)))
            .collect();
        assert_eq!(
            table.get(first).map(|c| c as *const Conn),
            before,
            "never moved"
        );
        assert_eq!(table.chunks.len(), 3);
        assert!(table.chunks.iter().all(|c| c.capacity() == CHUNK));
        assert_eq!(std::mem::size_of::<Slot>(), std::mem::size_of::<Conn>());
        assert_eq!(table.capacity() as usize, 2 * CHUNK + 2);
        for (fd, id) in (1..).zip(&ids) {
            assert_eq!(table.get(*id).map(|c| c.fd), Some(fd));
        }
        assert_eq!(table.iter().count(), 2 * CHUNK + 2);
        assert_eq!(
            table.get_by_idx(CHUNK as u32).map(|(_, c)| c.fd),
            Some(CHUNK as i32)
        );
    }
}

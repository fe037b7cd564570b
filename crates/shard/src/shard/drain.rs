//! The drain at shutdown: close every connection with 1001, spread evenly over the
//! drain window so clients do not all reconnect at once; connections still handshaking
//! are dropped, and new ones are refused from the start of the drain.

use super::{Drain, Shard};
use crate::close_reason::CloseReason;
use crate::conn::Phase;
use ringcast_proto::{close_payload, code};

impl Shard {
    /// Whether a drain was started and every connection is gone.
    pub fn drained(&self) -> bool {
        self.drain.is_some() && self.conns.is_empty()
    }

    /// Whether a drain was started.
    pub fn draining(&self) -> bool {
        self.drain.is_some()
    }

    pub(super) fn start_drain(&mut self, spread_ms: u64, now_ms: u64) {
        if self.drain.is_some() {
            return;
        }
        self.drain = Some(Drain {
            start_ms: now_ms,
            spread_ms: spread_ms.max(1),
            total: self.conns.len(),
            issued: 0,
            cursor: 0,
        });
        self.drain_step(now_ms);
    }

    /// Closes connections with 1001 so that by `start + spread` all are closed, evenly.
    pub(super) fn drain_step(&mut self, now_ms: u64) {
        let Some(drain) = &self.drain else {
            return;
        };
        let elapsed = now_ms.saturating_sub(drain.start_ms).min(drain.spread_ms);
        let due = (drain.total as u128 * u128::from(elapsed)).div_ceil(u128::from(drain.spread_ms))
            as usize;
        let mut budget = due.saturating_sub(drain.issued);
        let mut issued = 0;
        let mut cursor = drain.cursor;
        let end = self.conns.capacity();
        let going_away = close_payload(code::GOING_AWAY, "server shutting down");
        while budget > 0 && cursor < end {
            if let Some((id, conn)) = self.conns.get_by_idx_mut(cursor) {
                match conn.phase {
                    Phase::Open => {
                        budget -= 1;
                        issued += 1;
                        self.close_with(id, CloseReason::Shutdown, &going_away, now_ms);
                    }
                    Phase::Handshake => {
                        budget -= 1;
                        issued += 1;
                        self.abort(id, CloseReason::Shutdown);
                        self.progress(id);
                    }
                    Phase::Closing { .. } => {}
                }
            }
            cursor += 1;
        }
        if let Some(drain) = &mut self.drain {
            drain.cursor = cursor;
            drain.issued += issued;
        }
    }
}

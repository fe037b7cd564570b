//! One timer wheel per shard: pings, pong deadlines, handshake deadlines, close lingers,
//! poll deadlines and token expiries for every connection, advanced once per loop turn. A timer is 12 bytes in a
//! slot vector, never a kernel timer; stale entries (closed connections, answered pings)
//! are recognised by the shard when they fire.

use crate::ids::ConnId;

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerKind {
    /// Time to ping the connection.
    Ping,
    /// The pong for the last ping is due.
    PongDeadline,
    /// The handshake must be complete.
    HandshakeDeadline,
    /// A closing connection must be gone.
    Linger,
    /// A long poll got no message in time: answer 204.
    PollDeadline,
    /// The connection's token expires (or, beyond the wheel's span, a step towards it).
    TokenExpiry,
}

/// Timers' room a slot keeps after it fired; a larger slot's storage is freed.
const KEPT_PER_SLOT: usize = 16;

#[derive(Debug, Clone, Copy)]
struct Entry {
    idx: u32,
    generation: u32,
    kind: TimerKind,
}

/// A hashed wheel whose span covers the longest delay, so no entry needs rounds.
pub(crate) struct TimerWheel {
    slots: Vec<Vec<Entry>>,
    tick_ms: u64,
    /// The next tick to fire.
    next_tick: u64,
}

impl TimerWheel {
    /// A wheel with `tick_ms` resolution able to hold delays up to `max_delay_ms`.
    pub(crate) fn new(tick_ms: u64, max_delay_ms: u64) -> Self {
        let tick_ms = tick_ms.max(1);
        let slots = (max_delay_ms / tick_ms + 2) as usize;
        TimerWheel {
            slots: (0..slots).map(|_| Vec::new()).collect(),
            tick_ms,
            next_tick: 0,
        }
    }

    /// Fires `kind` for `id` at `at_ms` (rounded up to the next tick; clamped to the span,
    /// so a caller with a later deadline checks it when the timer fires and re-arms).
    /// Returns when it will fire: it fires at an `advance` to that time or later.
    pub(crate) fn schedule(&mut self, at_ms: u64, id: ConnId, kind: TimerKind) -> u64 {
        let span = self.slots.len() as u64 - 1;
        let tick = at_ms.div_ceil(self.tick_ms).max(self.next_tick);
        let tick = tick.min(self.next_tick + span - 1);
        let slot = (tick % self.slots.len() as u64) as usize;
        self.slots[slot].push(Entry {
            idx: id.idx,
            generation: id.generation,
            kind,
        });
        tick * self.tick_ms
    }

    /// Moves every timer due at or before `now_ms` into `fired`.
    pub(crate) fn advance(&mut self, now_ms: u64, fired: &mut Vec<(ConnId, TimerKind)>) {
        let now_tick = now_ms / self.tick_ms;
        let fire = |e: Entry| {
            let id = ConnId {
                idx: e.idx,
                generation: e.generation,
            };
            (id, e.kind)
        };
        let len = self.slots.len() as u64;
        while self.next_tick <= now_tick {
            let slot = &mut self.slots[(self.next_tick % len) as usize];
            if slot.capacity() > KEPT_PER_SLOT {
                // A slot that held a crowd (a ramp's handshake deadlines, a mass close's
                // lingers) gives its storage back: kept, every slot would hold its peak
                // forever, and memory would follow the busiest second, not the timers.
                fired.extend(std::mem::take(slot).into_iter().map(fire));
            } else {
                fired.extend(slot.drain(..).map(fire));
            }
            self.next_tick += 1;
        }
    }

    /// Milliseconds from `now_ms` until the next tick is due.
    pub(crate) fn ms_until_next(&self, now_ms: u64) -> u64 {
        (self.next_tick * self.tick_ms).saturating_sub(now_ms)
    }

    /// Timers scheduled and not yet fired.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.slots.iter().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(idx: u32) -> ConnId {
        ConnId { idx, generation: 7 }
    }

    #[test]
    fn fires_in_time_order() {
        let mut wheel = TimerWheel::new(10, 1000);
        wheel.schedule(250, id(1), TimerKind::Ping);
        wheel.schedule(30, id(2), TimerKind::HandshakeDeadline);
        wheel.schedule(995, id(3), TimerKind::Linger);
        let mut fired = Vec::new();
        wheel.advance(29, &mut fired);
        assert!(fired.is_empty());
        wheel.advance(30, &mut fired);
        assert_eq!(fired, vec![(id(2), TimerKind::HandshakeDeadline)]);
        fired.clear();
        wheel.advance(500, &mut fired);
        assert_eq!(fired, vec![(id(1), TimerKind::Ping)]);
        fired.clear();
        wheel.advance(1000, &mut fired);
        assert_eq!(fired, vec![(id(3), TimerKind::Linger)]);
        assert_eq!(wheel.pending(), 0);
    }

    #[test]
    fn past_and_far_timers_are_clamped() {
        let mut wheel = TimerWheel::new(10, 100);
        let mut fired = Vec::new();
        wheel.advance(1000, &mut fired);
        wheel.schedule(5, id(1), TimerKind::Ping);
        wheel.schedule(1_000_000, id(2), TimerKind::Ping);
        wheel.advance(1010, &mut fired);
        assert_eq!(fired, vec![(id(1), TimerKind::Ping)]);
        fired.clear();
        wheel.advance(1200, &mut fired);
        assert_eq!(fired, vec![(id(2), TimerKind::Ping)]);
    }

    #[test]
    fn wraps_around_many_times() {
        let mut wheel = TimerWheel::new(10, 100);
        let mut fired = Vec::new();
        let mut now = 0;
        for round in 0..50u32 {
            wheel.schedule(now + 90, id(round), TimerKind::Ping);
            wheel.advance(now + 80, &mut fired);
            assert!(fired.is_empty(), "round {round} fired early");
            now += 90;
            wheel.advance(now, &mut fired);
            assert_eq!(fired.len(), 1);
            fired.clear();
        }
    }

    #[test]
    fn a_crowded_slot_gives_its_storage_back() {
        let mut wheel = TimerWheel::new(10, 1000);
        for i in 0..100 {
            wheel.schedule(50, id(i), TimerKind::HandshakeDeadline);
        }
        wheel.schedule(60, id(100), TimerKind::Ping);
        let mut fired = Vec::new();
        wheel.advance(60, &mut fired);
        assert_eq!(fired.len(), 101);
        let kept: usize = wheel.slots.iter().map(Vec::capacity).sum();
        assert!(kept <= KEPT_PER_SLOT, "{kept} entries' room kept");
    }
}

//! The phases of a worker's connections beyond each one's own lifecycle: what the scenario
//! makes open connections do during the measured phase (echo sends on a per-connection
//! schedule, churn rounds that close a share of them to reopen), the end of the ramp, and
//! the final close (1000 for open connections, an end for attempts, then an abort of what
//! is left).

use std::time::{Duration, Instant};

use ringcast_proto::OpCode;

use super::deadlines::Deadline;
use super::{ClientCore, slot_ref};
use crate::conn::{State, flag};
use crate::payload::write_body;
use crate::scenario::Scenario;
use crate::stats::ConnectFailure;

impl ClientCore {
    /// The measured phase begins at `now` and nominally ends at `measure_end`: echo
    /// connections get their first send at a random point of one period, churn its first
    /// round one interval from now.
    pub(crate) fn start_scenario(&mut self, now: Instant, measure_end: Instant) {
        self.measure_end = Some(measure_end);
        match self.config.scenario {
            Scenario::Echo { msg_rate, .. } if msg_rate > 0.0 => {
                let period = Duration::from_secs_f64(1.0 / msg_rate);
                let mut first = Vec::new();
                for (id, slot) in self.slots.iter().enumerate() {
                    if slot.link.state == State::Open {
                        first.push(Deadline {
                            at: now + period.mul_f64(self.rng.unit()),
                            slot: slot_ref(id, slot.link.r#gen),
                        });
                    }
                }
                self.echo_due.extend_unsorted(first);
            }
            Scenario::Churn { interval, .. } => self.next_churn = Some(now + interval),
            _ => {}
        }
    }

    /// Sends the echo messages due at `now` (bodies stamped `now_ns`, the wall clock) and
    /// runs a due churn round; returns when the scenario next has something to do.
    pub(crate) fn scenario_step(&mut self, now: Instant, now_ns: u64) -> Option<Instant> {
        match self.config.scenario {
            Scenario::Echo { msg_rate, size } if msg_rate > 0.0 => {
                let period = Duration::from_secs_f64(1.0 / msg_rate);
                while let Some(due) = self.echo_due.pop_expired(now) {
                    if let Some(id) = self.current(due.slot)
                        && self.slots[id].link.state == State::Open
                    {
                        self.send_echo(id, size, now_ns);
                        let next = due.at + period;
                        self.echo_due
                            .push(if next < now { now + period } else { next }, due.slot);
                    }
                }
                self.echo_due.next_at()
            }
            Scenario::Churn { interval, fraction } => {
                let due = self.next_churn?;
                // A round at the very end would close connections the stop then keeps
                // closed: rounds run only inside the measured phase.
                if self.measure_end.is_none_or(|end| due >= end) {
                    self.next_churn = None;
                } else if due <= now {
                    self.churn_round(fraction, now);
                    self.next_churn = Some(due + interval);
                }
                self.next_churn
            }
            _ => None,
        }
    }

    fn send_echo(&mut self, id: usize, size: usize, now_ns: u64) {
        let link = &mut self.slots[id].link;
        self.body.clear();
        write_body(&mut self.body, u64::from(link.echo_seq), now_ns, size);
        link.echo_seq = link.echo_seq.wrapping_add(1);
        link.queue_frame(&mut self.pool, &mut self.rng, OpCode::Text, &self.body);
        self.figures.counters.echo_sent += 1;
        self.dirty.push(id as u32);
    }

    /// Closes `fraction` of the open connections, picked at random, to reopen them.
    fn churn_round(&mut self, fraction: f64, now: Instant) {
        let open = self.figures.counters.open;
        let wanted = (open as f64 * fraction).round() as u64;
        let slots = self.slots.len() as u64;
        let mut attempts = wanted * 8 + 64;
        let mut chosen = 0;
        while chosen < wanted && attempts > 0 && slots > 0 {
            attempts -= 1;
            let id = self.rng.below(slots) as usize;
            let link = &mut self.slots[id].link;
            if link.state != State::Open || link.has(flag::REOPEN) {
                continue;
            }
            link.flags |= flag::REOPEN;
            self.figures.counters.churn_closed += 1;
            self.graceful_close(id, now);
            chosen += 1;
        }
    }

    /// The ramp is over: `unstarted` connections were never attempted, and attempts still
    /// in progress time out.
    pub(crate) fn end_ramp(&mut self, unstarted: u64, now: Instant) {
        self.figures
            .counters
            .connect_errors
            .count(ConnectFailure::Timeout, unstarted);
        for id in 0..self.slots.len() {
            if matches!(
                self.slots[id].link.state,
                State::Connecting | State::Handshaking
            ) {
                self.fail_setup(id, ConnectFailure::Timeout, now);
                self.release_if_done(id, now);
            }
        }
    }

    /// Stops everything: open connections close with 1000, attempts in progress end.
    pub(crate) fn begin_stop(&mut self, now: Instant) {
        self.stopping = true;
        self.echo_due.clear();
        self.next_churn = None;
        // Deferred connections that never came back: a first connect never got in (a
        // failure), a reopening was interrupted.
        for std::cmp::Reverse((_, _, reconnect)) in std::mem::take(&mut self.retries) {
            if reconnect {
                self.figures.counters.churn_interrupted += 1;
            } else {
                self.figures
                    .counters
                    .connect_errors
                    .count(ConnectFailure::Timeout, 1);
            }
        }
        for id in 0..self.slots.len() {
            let link = &self.slots[id].link;
            let churning = matches!(link.state, State::Closing | State::Done)
                && link.has(flag::REOPEN)
                || matches!(link.state, State::Connecting | State::Handshaking)
                    && link.has(flag::RECONNECT);
            if churning {
                self.figures.counters.churn_interrupted += 1;
            }
            match self.slots[id].link.state {
                State::Open => self.graceful_close(id, now),
                State::Connecting | State::Handshaking => {
                    self.in_flight -= 1;
                    let link = &mut self.slots[id].link;
                    link.state = State::Done;
                    link.handshake = None;
                    self.abort(id);
                    self.release_if_done(id, now);
                }
                _ => {}
            }
        }
    }

    /// The close took too long: every connection still closing ends, and every socket with
    /// something pending is shut down.
    pub(crate) fn abort_all(&mut self) {
        for id in 0..self.slots.len() {
            if self.slots[id].link.state == State::Closing {
                self.end_open(id);
            }
            self.abort(id);
        }
    }
}

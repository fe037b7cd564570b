//! The scenarios and the parameters one worker runs with, derived from the command line.

use std::time::{Duration, Instant};

use crate::cli::WorkerSlot;
use crate::delivery_window::PACED_PROGRESS_EVERY;

/// Progress snapshot period of a worker, unless the run is paced.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// What the connections do once the ramp is over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scenario {
    /// Stay idle, answer pings, count what arrives.
    Hold {
        /// End early once every connection received this many messages.
        expect_messages: Option<u64>,
    },
    /// Subscribers of channels the coordinator publishes timestamped messages to.
    Push {
        /// The publisher keeps a bounded number of deliveries outstanding
        /// (`--max-outstanding`), so workers report progress often.
        paced: bool,
    },
    /// Subscribers of one channel the coordinator publishes the time to once a second.
    Tick,
    /// Each connection sends `msg_rate` messages per second to `/echo`.
    Echo {
        /// Messages per second per connection.
        msg_rate: f64,
        /// Body bytes.
        size: usize,
    },
    /// Every `interval`, close and reopen `fraction` of the open connections.
    Churn {
        /// Time between churn rounds.
        interval: Duration,
        /// Share of the open connections reopened per round.
        fraction: f64,
    },
}

impl Scenario {
    /// The subcommand name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Hold { .. } => "hold",
            Self::Push { .. } => "push",
            Self::Tick => "tick",
            Self::Echo { .. } => "echo",
            Self::Churn { .. } => "churn",
        }
    }

    /// Whether the worker ends its measured phase by itself (after `--duration`); the other
    /// scenarios are ended by the coordinator.
    pub fn ends_itself(&self) -> bool {
        matches!(self, Self::Hold { .. })
    }

    /// How often a worker sends its progress: often enough in a paced push for the
    /// publisher's delivery window to follow the deliveries.
    pub fn progress_every(&self) -> Duration {
        match self {
            Self::Push { paced: true } => PACED_PROGRESS_EVERY,
            _ => PROGRESS_EVERY,
        }
    }
}

/// Everything one worker needs.
#[derive(Debug, Clone)]
pub struct WorkerParams {
    /// Scenario.
    pub scenario: Scenario,
    /// `--url`.
    pub url: String,
    /// `--source-ips`.
    pub source_ips: String,
    /// `--channels`.
    pub channels: usize,
    /// Connections over all workers.
    pub connections: usize,
    /// This worker's share.
    pub slot: WorkerSlot,
    /// Connects per second over all workers (0 = unpaced).
    pub rate: f64,
    /// Connect + handshake deadline.
    pub connect_timeout: Duration,
    /// Connects in flight at once.
    pub max_in_flight: usize,
    /// Length of the measured phase.
    pub duration: Duration,
    /// Start of the whole run (shared by all workers).
    pub epoch: Instant,
    /// Provided receive buffers of the reactor.
    pub recv_buffers: u16,
    /// Bytes per receive buffer.
    pub recv_buffer_size: u32,
    /// Offer permessage-deflate.
    pub deflate: bool,
    /// `--resume`.
    pub resume: bool,
    /// How `wss://` URLs check the server (None: no TLS trust given).
    pub tls_trust: Option<crate::tls_client::Trust>,
    /// `wss://`: resume TLS sessions.
    pub tls_resume: bool,
}

impl WorkerParams {
    /// Connection numbers this worker opens: `i % count == index`.
    pub fn indices(&self) -> impl ExactSizeIterator<Item = usize> + use<> {
        (self.slot.index..self.connections).step_by(self.slot.count.max(1))
    }

    /// How many connections this worker opens.
    pub fn target(&self) -> u64 {
        self.indices().len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(connections: usize, slot: WorkerSlot) -> WorkerParams {
        WorkerParams {
            scenario: Scenario::Push { paced: false },
            url: "ws://127.0.0.1:1/x".to_owned(),
            source_ips: "127.0.0.1".to_owned(),
            channels: 1,
            connections,
            slot,
            rate: 0.0,
            connect_timeout: Duration::from_secs(1),
            max_in_flight: 1,
            duration: Duration::from_secs(1),
            epoch: Instant::now(),
            recv_buffers: 64,
            recv_buffer_size: 1024,
            deflate: false,
            resume: false,
            tls_trust: None,
            tls_resume: true,
        }
    }

    #[test]
    fn workers_split_connections() {
        let p = params(10, WorkerSlot { index: 1, count: 3 });
        assert_eq!(p.indices().collect::<Vec<_>>(), vec![1, 4, 7]);
        assert_eq!(p.target(), 3);
        assert_eq!(params(2, WorkerSlot { index: 2, count: 3 }).target(), 0);
        assert_eq!(params(5, WorkerSlot { index: 0, count: 1 }).target(), 5);
    }

    #[test]
    fn names_and_self_ending() {
        assert_eq!(Scenario::Tick.name(), "tick");
        assert!(
            Scenario::Hold {
                expect_messages: None
            }
            .ends_itself()
        );
        assert!(!Scenario::Push { paced: false }.ends_itself());
    }
}

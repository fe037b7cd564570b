//! The final report of a scenario: derived from the workers' merged [`Figures`] (rates,
//! latency percentiles, lost messages, tick spread, reconnects, wsload's own cost) and
//! written as one JSON line to stdout and `--json FILE`. [`Report`] is that line's schema:
//! the flat fields of the original `hold` report keep their names (README, bench scripts
//! and e2e tests read them); each scenario adds its own section.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::figures::Figures;
use crate::latency::{Latency, LatencySummary};
use crate::publisher::PublishStats;
use crate::self_usage::{Usage, UsagePoint};
use crate::stats::ConnectErrors;

/// Fewer connections than this between the mid-ramp and end-of-ramp measurements make the
/// per-connection memory a whole-ramp average instead of a marginal one.
const MIN_MARGINAL_CONNS: u64 = 1000;

fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// Figures of `push`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PushFigures {
    /// Channels published to.
    pub channels: usize,
    /// Publishes answered 202.
    pub published: u64,
    /// Publishes that failed.
    pub publish_errors: u64,
    /// Achieved publish rate.
    pub publish_rate_per_s: f64,
    /// Σ over channels of published × subscribers open at the end.
    pub expected_deliveries: u64,
    /// Messages received minus duplicates.
    pub delivered_unique: u64,
    /// `expected_deliveries - delivered_unique` (never negative).
    pub lost: u64,
    /// Messages whose sequence number was not larger than the last one.
    pub duplicated: u64,
    /// Of those, the ones that arrived after a later one.
    pub out_of_order: u64,
}

/// Figures of `tick`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TickFigures {
    /// Ticks published (answered 202).
    pub ticks_published: u64,
    /// Ticks that reached at least one connection.
    pub ticks_received: u64,
    /// Ticks that reached every connection open at the end.
    pub ticks_complete: u64,
    /// Spread per tick (last arrival − first arrival) over the ticks.
    pub spread: Option<LatencySummary>,
    /// Publish → last arrival per tick.
    pub to_last_arrival: Option<LatencySummary>,
}

/// Figures of `echo`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EchoFigures {
    /// Messages sent.
    pub sent: u64,
    /// Echoes received.
    pub received: u64,
    /// `sent - received` (never negative).
    pub lost: u64,
    /// Echoes received per second of the measured phase.
    pub echoes_per_s: f64,
}

/// Figures of `churn`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChurnFigures {
    /// Connections wsload closed to reopen them.
    pub closed: u64,
    /// Reopened connections that succeeded.
    pub reconnects: u64,
    /// Reopened connections that failed.
    pub reconnect_failures: u64,
    /// Closed or reopening when the run stopped (neither reconnected nor failed).
    pub interrupted: u64,
    /// Connect + handshake time of the reopenings.
    pub reconnect_latency: Option<LatencySummary>,
}

/// Figures of `--resume`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResumeFigures {
    /// Connections the server ended (each reopened at the next URL).
    pub server_closes: u64,
    /// Reconnects that failed and moved on to the next URL after a backoff.
    pub retries: u64,
    /// Resumed subscriptions answered `recovered:true`.
    pub recovered: u64,
    /// Resumed subscriptions answered `recovered:false` (or a history that changed
    /// epoch while connected): what was missed is gone.
    pub not_recovered: u64,
    /// Losses after which the client had everything it missed again.
    pub caught_up: u64,
    /// Connect + handshake time of the reconnections.
    pub reconnect_latency: Option<LatencySummary>,
    /// From the loss of a connection to having every message it missed.
    pub recovery_latency: Option<LatencySummary>,
}

/// wsload's own cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientCost {
    /// CPU seconds of the worker threads from the first connect to the end of the measured
    /// phase.
    pub cpu_s: f64,
    /// CPU seconds of the worker threads during the ramp.
    pub ramp_cpu_s: f64,
    /// CPU seconds of the worker threads during the measured phase.
    pub hold_cpu_s: f64,
    /// `hold_cpu_s` per million messages received (0 without messages).
    pub cpu_s_per_million_messages: f64,
    /// Resident memory of the worker processes after the ramp.
    pub rss_bytes: u64,
    /// Resident memory per open connection.
    pub rss_per_conn_bytes: f64,
    /// `marginal` (growth from half to all connections) or `average` (growth over the
    /// whole ramp, for small runs).
    pub rss_per_conn_basis: String,
}

impl ClientCost {
    /// Derives the cost from the workers' usage points.
    pub fn from_usage(usage: &[Usage], messages: u64) -> Self {
        let sum = |f: &dyn Fn(&Usage) -> f64| usage.iter().map(f).sum::<f64>();
        let cpu_s = sum(&|u| u.hold_end.cpu_s - u.start.cpu_s);
        let ramp_cpu_s = sum(&|u| u.ramp_end.cpu_s - u.start.cpu_s);
        let hold_cpu_s = sum(&|u| u.hold_end.cpu_s - u.ramp_end.cpu_s);
        let growth = |from: &UsagePoint, to: &UsagePoint| {
            (
                to.rss.saturating_sub(from.rss),
                to.open.saturating_sub(from.open),
            )
        };
        let marginal: Option<(u64, u64)> = usage.iter().try_fold((0, 0), |acc, u| {
            let mid = u.mid.as_ref()?;
            let (bytes, conns) = growth(mid, &u.ramp_end);
            Some((acc.0 + bytes, acc.1 + conns))
        });
        let (basis, (bytes, conns)) = match marginal {
            Some(m) if m.1 >= MIN_MARGINAL_CONNS => ("marginal", m),
            _ => (
                "average",
                usage.iter().fold((0, 0), |acc, u| {
                    let (b, c) = growth(&u.start, &u.ramp_end);
                    (acc.0 + b, acc.1 + c)
                }),
            ),
        };
        Self {
            cpu_s,
            ramp_cpu_s,
            hold_cpu_s,
            cpu_s_per_million_messages: if messages > 0 {
                hold_cpu_s / (messages as f64 / 1e6)
            } else {
                0.0
            },
            rss_bytes: usage.iter().map(|u| u.ramp_end.rss).sum(),
            rss_per_conn_bytes: if conns > 0 {
                bytes as f64 / conns as f64
            } else {
                0.0
            },
            rss_per_conn_basis: basis.to_owned(),
        }
    }
}

/// The report of one scenario run. Times ending in `_at_s` are seconds since the run started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `hold`, `push`, `tick`, `echo` or `churn`.
    pub scenario: String,
    /// The exact command line.
    pub command: String,
    /// Worker processes.
    pub procs: usize,
    /// Connections attempted.
    pub target: u64,
    /// Handshakes that succeeded (reconnects included).
    pub connected: u64,
    /// Attempts that failed.
    pub failed: u64,
    /// Failures by cause.
    pub connect_errors: ConnectErrors,
    /// From the first connect to the last connect resolved (longest worker).
    pub ramp_seconds: f64,
    /// Connections per second of the ramp.
    pub connect_rate_per_s: f64,
    /// Connections the server closed before wsload did.
    pub closed_by_server: u64,
    /// Connections dropped because the server broke the protocol.
    pub protocol_errors: u64,
    /// Text and binary messages received.
    pub messages: u64,
    /// Payload bytes of those messages.
    pub bytes: u64,
    /// Pings received.
    pub pings: u64,
    /// Sequence numbers skipped.
    pub seq_gaps: u64,
    /// Sequence numbers not larger than the last one seen on their connection.
    pub seq_dups: u64,
    /// Of those, the ones smaller than the last one.
    pub seq_out_of_order: u64,
    /// With `--expect-messages M`: connections that got exactly M messages in order.
    pub conns_complete: u64,
    /// First message received.
    pub first_message_at_s: Option<f64>,
    /// Last message received.
    pub last_message_at_s: Option<f64>,
    /// `messages / (last_message_at_s - first_message_at_s)`.
    pub deliveries_per_s: f64,
    /// Length of the measured phase.
    pub hold_seconds: f64,
    /// Whole run.
    pub elapsed_s: f64,
    /// Receives that found wsload's buffer ring empty.
    pub recv_enobufs: u64,
    /// Handshakes the server deferred with `503` + `Retry-After` (each tried again).
    #[serde(default)]
    pub deferred: u64,
    /// Publish→receive latency (push, tick, timestamped bodies) or echo round trip.
    pub latency: Option<LatencySummary>,
    /// Connect + handshake time of first connects.
    pub connect_latency: Option<LatencySummary>,
    /// `push` figures.
    pub push: Option<PushFigures>,
    /// `tick` figures.
    pub tick: Option<TickFigures>,
    /// `echo` figures.
    pub echo: Option<EchoFigures>,
    /// `churn` figures.
    pub churn: Option<ChurnFigures>,
    /// `--resume` figures.
    #[serde(default)]
    pub resume: Option<ResumeFigures>,
    /// wsload's own CPU and memory.
    pub client: ClientCost,
    /// Workers that ended without a report.
    pub missing_workers: Vec<usize>,
}

impl Report {
    /// The scenario-independent part of the report, from the merged figures.
    pub fn from_figures(scenario: &str, command: String, procs: usize, m: &Figures) -> Self {
        let c = &m.counters;
        Self {
            scenario: scenario.to_owned(),
            command,
            procs,
            target: c.target,
            connected: c.connected,
            failed: c.failed(),
            connect_errors: c.connect_errors,
            ramp_seconds: m.ramp_seconds,
            connect_rate_per_s: per_second(c.connected - c.reconnects, m.ramp_seconds),
            closed_by_server: c.closed_by_server,
            protocol_errors: c.protocol_errors,
            messages: c.messages,
            bytes: c.bytes,
            pings: c.pings,
            seq_gaps: c.seq_gaps,
            seq_dups: c.seq_dups,
            seq_out_of_order: c.seq_out_of_order,
            conns_complete: c.conns_complete,
            first_message_at_s: m.first_message_at_s,
            last_message_at_s: m.last_message_at_s,
            deliveries_per_s: match (m.first_message_at_s, m.last_message_at_s) {
                (Some(first), Some(last)) => per_second(c.messages, last - first),
                _ => 0.0,
            },
            hold_seconds: m.hold_seconds,
            elapsed_s: m.elapsed_s,
            recv_enobufs: c.recv_enobufs,
            deferred: c.deferred,
            latency: m.latency.summary(),
            connect_latency: m.connect_latency.summary(),
            client: ClientCost::from_usage(&m.usage, c.messages),
            ..Self::default()
        }
    }

    /// Adds the `push` section.
    pub fn add_push(&mut self, m: &Figures, published: &PublishStats) {
        let expected: u64 = published
            .per_channel
            .iter()
            .zip(&m.channel_subscribers)
            .map(|(p, s)| p * s)
            .sum();
        let unique = m.counters.messages.saturating_sub(m.counters.seq_dups);
        self.push = Some(PushFigures {
            channels: published.per_channel.len(),
            published: published.published,
            publish_errors: published.errors,
            publish_rate_per_s: published.rate_per_s,
            expected_deliveries: expected,
            delivered_unique: unique,
            lost: expected.saturating_sub(unique),
            duplicated: m.counters.seq_dups,
            out_of_order: m.counters.seq_out_of_order,
        });
    }

    /// Adds the `tick` section.
    pub fn add_tick(&mut self, m: &Figures, published: &PublishStats) {
        let receivers: u64 = m.channel_subscribers.iter().sum();
        let mut spread = Latency::new();
        let mut to_last = Latency::new();
        let mut received = 0;
        let mut complete = 0;
        for tick in m.ticks.arrivals().iter().filter(|t| t.count > 0) {
            received += 1;
            if tick.count >= receivers {
                complete += 1;
            }
            spread.record_ns(tick.last_ns - tick.first_ns);
            if tick.stamp_ns > 0 {
                to_last.record_ns(tick.last_ns.saturating_sub(tick.stamp_ns));
            }
        }
        self.tick = Some(TickFigures {
            ticks_published: published.published,
            ticks_received: received,
            ticks_complete: complete,
            spread: spread.summary(),
            to_last_arrival: to_last.summary(),
        });
    }

    /// Adds the `echo` section.
    pub fn add_echo(&mut self, m: &Figures) {
        let c = &m.counters;
        self.echo = Some(EchoFigures {
            sent: c.echo_sent,
            received: c.messages,
            lost: c.echo_sent.saturating_sub(c.messages),
            echoes_per_s: per_second(c.messages, m.hold_seconds),
        });
    }

    /// Adds the `churn` section.
    pub fn add_churn(&mut self, m: &Figures) {
        let c = &m.counters;
        self.churn = Some(ChurnFigures {
            closed: c.churn_closed,
            reconnects: c.reconnects,
            reconnect_failures: c.reconnect_failures,
            interrupted: c.churn_interrupted,
            reconnect_latency: m.reconnect_latency.summary(),
        });
    }
}

impl Report {
    /// Adds the `--resume` section.
    pub fn add_resume(&mut self, m: &Figures) {
        let c = &m.counters;
        self.resume = Some(ResumeFigures {
            server_closes: c.resume_server_closes,
            retries: c.resume_retries,
            recovered: c.resume_recovered,
            not_recovered: c.resume_not_recovered,
            caught_up: c.resume_caught_up,
            reconnect_latency: m.reconnect_latency.summary(),
            recovery_latency: m.recovery_latency.summary(),
        });
    }
}

/// Prints `report` as one JSON line on stdout and, when `file` is given, writes the same line
/// there.
pub fn emit(report: &impl Serialize, file: Option<&Path>) -> anyhow::Result<()> {
    let line = serde_json::to_string(report)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    if let Some(file) = file {
        std::fs::write(file, format!("{line}\n"))
            .with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Counters;
    use crate::ticks::{TickArrival, Ticks};

    fn worker(connected: u64, messages: u64, first: f64, last: f64) -> Figures {
        let mut latency = Latency::new();
        latency.record_ns(1_000_000 * connected);
        Figures {
            counters: Counters {
                target: connected + 1,
                connected,
                messages,
                connect_errors: ConnectErrors {
                    refused: 1,
                    ..ConnectErrors::default()
                },
                ..Counters::default()
            },
            ramp_seconds: connected as f64 / 100.0,
            first_message_at_s: Some(first),
            last_message_at_s: Some(last),
            elapsed_s: last + 1.0,
            latency,
            channel_subscribers: vec![connected / 2, connected - connected / 2],
            ..Figures::default()
        }
    }

    #[test]
    fn merges_sums_and_derives_rates() {
        let m = Figures::merged(&[worker(100, 1000, 1.0, 3.0), worker(300, 3000, 2.0, 5.0)]);
        let r = Report::from_figures("hold", "wsload hold".into(), 2, &m);
        assert_eq!(r.target, 402);
        assert_eq!(r.connected, 400);
        assert_eq!(r.failed, 2);
        assert_eq!(r.connect_errors.refused, 2);
        assert_eq!(r.ramp_seconds, 3.0);
        assert_eq!(r.first_message_at_s, Some(1.0));
        assert_eq!(r.last_message_at_s, Some(5.0));
        assert_eq!(r.deliveries_per_s, 1000.0);
        assert_eq!(r.elapsed_s, 6.0);
        assert_eq!(r.latency.unwrap().count, 2);
        assert_eq!(m.channel_subscribers, vec![200, 200]);
    }

    #[test]
    fn push_counts_lost_from_published_times_subscribers() {
        let mut w = worker(4, 0, 0.0, 1.0);
        w.counters.messages = 17;
        w.counters.seq_dups = 1;
        w.channel_subscribers = vec![3, 1];
        let m = Figures::merged([&w]);
        let mut r = Report::from_figures("push", String::new(), 1, &m);
        let published = PublishStats {
            published: 10,
            per_channel: vec![5, 5],
            ..PublishStats::default()
        };
        r.add_push(&m, &published);
        let push = r.push.unwrap();
        assert_eq!(push.expected_deliveries, 20);
        assert_eq!(push.delivered_unique, 16);
        assert_eq!(push.lost, 4);
        assert_eq!(push.duplicated, 1);
    }

    #[test]
    fn tick_spread_and_completeness() {
        let mut w = worker(2, 4, 0.0, 1.0);
        w.channel_subscribers = vec![2];
        w.ticks = Ticks::from(vec![
            TickArrival {
                stamp_ns: 1_000_000,
                first_ns: 2_000_000,
                last_ns: 5_000_000,
                count: 2,
            },
            TickArrival {
                stamp_ns: 0,
                first_ns: 9_000_000,
                last_ns: 9_000_000,
                count: 1,
            },
        ]);
        let m = Figures::merged([&w]);
        let mut r = Report::from_figures("tick", String::new(), 1, &m);
        r.add_tick(
            &m,
            &PublishStats {
                published: 2,
                ..PublishStats::default()
            },
        );
        let tick = r.tick.unwrap();
        assert_eq!(tick.ticks_received, 2);
        assert_eq!(tick.ticks_complete, 1);
        assert!((tick.spread.unwrap().max_ms - 3.0).abs() < 0.01);
        assert_eq!(tick.to_last_arrival.unwrap().count, 1);
    }

    #[test]
    fn client_cost_prefers_marginal_memory() {
        let point = |cpu_s, rss, open| UsagePoint { cpu_s, rss, open };
        let usage = Usage {
            start: point(0.0, 10_000_000, 0),
            mid: Some(point(0.5, 11_000_000, 5000)),
            ramp_end: point(1.0, 12_000_000, 10_000),
            hold_end: point(3.0, 12_100_000, 10_000),
        };
        let cost = ClientCost::from_usage(&[usage, usage], 4_000_000);
        assert_eq!(cost.rss_per_conn_basis, "marginal");
        assert_eq!(cost.rss_per_conn_bytes, 200.0);
        assert_eq!(cost.cpu_s, 6.0);
        assert_eq!(cost.hold_cpu_s, 4.0);
        assert_eq!(cost.cpu_s_per_million_messages, 1.0);
        let small = Usage { mid: None, ..usage };
        let cost = ClientCost::from_usage(&[small], 0);
        assert_eq!(cost.rss_per_conn_basis, "average");
        assert_eq!(cost.rss_per_conn_bytes, 200.0);
        assert_eq!(cost.cpu_s_per_million_messages, 0.0);
    }

    #[test]
    fn json_keeps_the_fields_scripts_read() {
        let m = Figures::merged(&[worker(1, 0, 0.0, 0.0)]);
        let value = serde_json::to_value(Report::from_figures("hold", "x".into(), 1, &m)).unwrap();
        for key in [
            "scenario",
            "command",
            "target",
            "connected",
            "failed",
            "connect_errors",
            "ramp_seconds",
            "connect_rate_per_s",
            "closed_by_server",
            "messages",
            "bytes",
            "pings",
            "seq_gaps",
            "seq_dups",
            "conns_complete",
            "first_message_at_s",
            "last_message_at_s",
            "deliveries_per_s",
            "elapsed_s",
            "client",
        ] {
            assert!(value.get(key).is_some(), "{key}");
        }
        for key in ["refused", "timeout", "handshake", "reset", "other"] {
            assert!(value["connect_errors"].get(key).is_some(), "{key}");
        }
    }
}

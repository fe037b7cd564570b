//! Command line of `wsload` (clap derive): the `hold` and `publish` subcommands and the hidden
//! worker-process arguments.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, ensure};
use clap::{Args, Parser, Subcommand};

/// WebSocket capacity tester for ringcast (and any server with the same interface).
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Open many connections, hold them, count what they receive, close them, report JSON.
    Hold(HoldArgs),
    /// Publish numbered messages through the admin HTTP API, report JSON.
    Publish(PublishArgs),
}

/// Arguments of `wsload hold`.
#[derive(Args, Debug, Clone)]
pub struct HoldArgs {
    /// Target, `ws://IP:PORT[-LAST]/path`; connection i goes to port `ports[i % nports]`.
    /// `{ch}` in the path becomes `i % --channels` (e.g. `/ch-{ch}`).
    #[arg(long)]
    pub url: String,
    /// Connections to open (over all worker processes).
    #[arg(long)]
    pub connections: usize,
    /// Connects started per second, over all workers (0 = no pacing).
    #[arg(long, default_value_t = 5000)]
    pub rate: u32,
    /// Source IPs to bind, e.g. `127.0.0.1-127.0.0.8` (comma-separated lists and ranges).
    #[arg(long, default_value = "127.0.0.1", long_help = SOURCE_IPS_HELP)]
    pub source_ips: String,
    /// Seconds to hold after the ramp (the run ends by ramp + duration + 5 s).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Channels `{ch}` cycles through.
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// End the hold as soon as every open connection received this many messages; the
    /// report counts connections that got exactly this many without gaps or duplicates.
    #[arg(long)]
    pub expect_messages: Option<u64>,
    /// Also write the JSON report line to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Worker processes (one process holds at most ~19,900 sockets here).
    #[arg(long, default_value_t = 1)]
    pub procs: usize,
    /// After the ramp, write the number of connected connections to this file.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// When the hold ends (duration over or every connection has its expected messages),
    /// before closing, write the number of messages received to this file.
    #[arg(long)]
    pub done_file: Option<PathBuf>,
    /// Seconds a TCP connect plus handshake may take.
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// Connects in flight at once, per worker.
    #[arg(long, default_value_t = 1000)]
    pub max_in_flight: usize,
    /// Internal: run as worker `I/P` of a `--procs` parent.
    #[arg(long, hide = true)]
    pub worker: Option<WorkerSlot>,
    /// Internal: the parent's start time (Unix milliseconds), so workers share one clock.
    #[arg(long, hide = true)]
    pub epoch_ms: Option<u64>,
}

const SOURCE_IPS_HELP: &str = "Source IPs to bind each connection to, e.g. \
`127.0.0.1-127.0.0.8` (comma-separated lists and ranges). Connection i uses \
`ips[(i / nports) % nips]`.\n\n\
Why: a TCP connection is identified by (source IP, source port, destination IP, destination \
port), and Linux has ~28k ephemeral source ports (32768-60999). wsload binds each socket to \
its source IP with port 0 and IP_BIND_ADDRESS_NO_PORT, so the port is chosen at connect time \
per destination: every source IP has its own ~28k ports towards every destination port. \
Many source IPs (all of 127.0.0.0/8 works on loopback without setup) times many listen ports \
gives far more than 64k connections from one host.";

/// Arguments of `wsload publish`.
#[derive(Args, Debug, Clone)]
pub struct PublishArgs {
    /// Admin base URL of the server, `http://IP:PORT`.
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    pub admin: String,
    /// Publish to `<prefix><j % channels>`.
    #[arg(long, default_value = "ch-")]
    pub channel_prefix: String,
    /// Channels to publish to round-robin.
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Publish to this one channel instead of the prefixed ones.
    #[arg(long)]
    pub channel: Option<String>,
    /// Messages to publish in total.
    #[arg(long)]
    pub count: u64,
    /// Messages per second (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Body size in bytes: `"<seq>:"` padded with `x` (never shorter than `"<seq>:"`).
    #[arg(long, default_value_t = 0)]
    pub size: usize,
    /// Seconds the whole run may take.
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
    /// Also write the JSON report line to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Which share of the connections a worker process opens: those with `i % count == index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSlot {
    /// This worker.
    pub index: usize,
    /// All workers.
    pub count: usize,
}

impl WorkerSlot {
    /// The only worker of a single-process run.
    pub const SOLE: Self = Self { index: 0, count: 1 };
}

impl FromStr for WorkerSlot {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (index, count) = s.split_once('/').context("expected I/P")?;
        let slot = Self {
            index: index.parse().context("bad worker index")?,
            count: count.parse().context("bad worker count")?,
        };
        ensure!(
            slot.index < slot.count,
            "worker index must be below the count"
        );
        Ok(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_worker_slots() {
        assert_eq!(
            "1/4".parse::<WorkerSlot>().unwrap(),
            WorkerSlot { index: 1, count: 4 }
        );
        for bad in ["", "1", "4/4", "a/2", "1/b", "-1/2"] {
            assert!(bad.parse::<WorkerSlot>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_hold_defaults() {
        let cli = Cli::try_parse_from([
            "wsload",
            "hold",
            "--url",
            "ws://127.0.0.1:1/x",
            "--connections",
            "3",
        ])
        .unwrap();
        let Command::Hold(args) = cli.command else {
            panic!("not hold");
        };
        assert_eq!(args.rate, 5000);
        assert_eq!(args.procs, 1);
        assert_eq!(args.worker, None);
    }
}

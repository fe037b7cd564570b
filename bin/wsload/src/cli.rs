//! Command line of `wsload` (clap derive): the scenarios (`hold`, `push`, `tick`, `echo`,
//! `churn`) with their shared load arguments, the `publish` helper, and the hidden
//! worker-process arguments.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, ensure};
use clap::{Args, Parser, Subcommand};

/// WebSocket capacity tester for ringcast (and any server with the same interface:
/// `ws://HOST:PORT/<channel>` subscribes, `/echo` echoes, `POST /publish/<channel>` on an
/// admin port publishes). Every scenario ramps to `--connections` at `--rate`, runs for
/// `--duration`, closes its connections and stops by itself; it prints a table on stderr
/// and one JSON line on stdout (and to `--json FILE`).
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Open N connections, hold them idle (answering pings), report how many stayed up and
    /// what they received.
    Hold(HoldArgs),
    /// N subscribers over `--channels K`; wsload publishes timestamped, numbered messages at
    /// `--publish-rate` through the admin API and reports deliveries/s, publish→receive
    /// latency (from the time each message was due, so a server that answers publishes
    /// late is not spared its delay) and lost, duplicated and out-of-order messages.
    Push(PushArgs),
    /// N subscribers of one channel; wsload publishes the time once a second and reports
    /// the spread of arrival times per tick.
    Tick(TickArgs),
    /// N connections to `/echo`, each sending `--msg-rate` messages per second; reports
    /// round-trip times.
    Echo(EchoArgs),
    /// Hold N connections; every `--interval` close and reopen `--churn` of them at random;
    /// reports reconnect latency and failures.
    Churn(ChurnArgs),
    /// Publish numbered messages through the admin HTTP API (no connections), report JSON.
    Publish(PublishArgs),
}

/// Arguments every scenario shares.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Target, `ws://IP:PORT[-LAST]/path`; connection i goes to port `ports[i % nports]`.
    /// `{ch}` in the path becomes `i % --channels` (e.g. `/ch-{ch}`).
    #[arg(long)]
    pub url: String,
    /// Connections to open (over all worker processes).
    #[arg(long)]
    pub connections: usize,
    /// Connects started per second, over all workers (0 = no pacing).
    #[arg(long, default_value_t = 5000.0)]
    pub rate: f64,
    /// Source IPs to bind, e.g. `127.0.0.1-127.0.0.8` (comma-separated lists and ranges).
    #[arg(long, default_value = "127.0.0.1", long_help = SOURCE_IPS_HELP)]
    pub source_ips: String,
    /// Seconds of the measured phase after the ramp (hold, publishing, echo, churn).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Channels `{ch}` cycles through.
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Also write the JSON report (every figure and the exact command) to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Worker processes (one process holds at most ~19,900 sockets here); they are children
    /// that die with the parent, which merges their reports.
    #[arg(long, default_value_t = 1, long_help = PROCS_HELP)]
    pub procs: usize,
    /// After the ramp (all workers), write the number of open connections to this file.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// When the measured phase ends, before closing, write the number of messages received
    /// to this file.
    #[arg(long)]
    pub done_file: Option<PathBuf>,
    /// Seconds a TCP connect plus handshake may take.
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// Connects in flight at once, per worker.
    #[arg(long, default_value_t = 1000)]
    pub max_in_flight: usize,
    /// Share of connections that may fail (connect or handshake failed, closed by the
    /// server, protocol error) and of messages that may be lost before wsload exits
    /// non-zero: `0` (default), `1%` or `0.01`.
    #[arg(long, default_value = "0")]
    pub tolerate: Fraction,
    /// Serve wsload's Prometheus metrics on `http://ADDR/metrics` while it runs.
    #[arg(long, long_help = METRICS_HELP)]
    pub metrics: Option<SocketAddr>,
    /// Provided receive buffers per worker (a power of two).
    #[arg(long, default_value_t = 2048)]
    pub recv_buffers: u16,
    /// Bytes per receive buffer.
    #[arg(long, default_value_t = 4096)]
    pub recv_buffer_size: u32,
    /// Offer permessage-deflate (RFC 7692); compressed messages are inflated per message,
    /// so a connection keeps no compression state between messages.
    #[arg(long)]
    pub deflate: bool,
    /// Resume after a server close: JSON framing, offsets checked for gaps and
    /// duplicates, and a connection the server ends reconnects to the next URL of a
    /// comma-separated `--url` list with `since=<epoch>:<offset>`.
    #[arg(long, long_help = RESUME_HELP)]
    pub resume: bool,
    /// `wss://` URLs: trust the CA certificates in this PEM file.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// `wss://` URLs: accept any server certificate (a throwaway test certificate); each
    /// connection number then sends its own SNI name (`c<i>.wsload`) so every reconnect
    /// can resume its own TLS session.
    #[arg(long, conflicts_with = "tls_ca")]
    pub tls_insecure: bool,
    /// `wss://` URLs: every connection makes a full TLS handshake (no session
    /// resumption from the tickets the server sent).
    #[arg(long)]
    pub tls_no_resume: bool,
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

const RESUME_HELP: &str = "Resume after a server close, as a ringcast client should across \
a node drain or a rolling restart. Connections ask for the JSON framing (`format=json` is \
added to the URL) and check every message's offset against the last one (gaps and \
duplicates are counted as seq_gaps and seq_dups, over all of a connection's reconnections). \
When the server ends a connection (close frame, EOF or reset), it reconnects at once to \
the next URL of `--url` (a comma-separated list: connection i starts at URL i % n) with \
`since=<epoch>:<offset>` of the last message it got; a reconnect that fails moves on to the \
next URL after a jittered backoff (50 ms doubling to 2 s). Neither counts as a failure. \
The report's `resume` section counts server closes, reconnect retries, resumptions \
`recovered:true` and `recovered:false` (the latter fail the run), and the recovery \
latency: from the loss to having every missed message. Channels need history on the \
server (`--history-size`).";

const PROCS_HELP: &str = "Worker processes. Each worker is one thread with one io_uring \
reactor and opens the connections i with i % P == its index. One process may hold at most \
~19,900 sockets here (fd limit 20,000), so 50,000 connections need --procs 3. Workers are \
children started with PR_SET_PDEATHSIG: they die with the parent, which merges their \
reports, serves --metrics and runs the publisher.";

const METRICS_HELP: &str = "Serve wsload's own Prometheus metrics on http://ADDR/metrics \
while it runs. With --procs the parent serves one endpoint for all workers: every series \
carries a `worker` label (the worker index), updated twice a second from the workers' \
progress. Names: wsload_connections_target, wsload_connections, wsload_connects_total, \
wsload_connect_errors_total{kind=refused|timeout|handshake|reset|other}, \
wsload_closed_by_server_total, wsload_messages_received_total, wsload_bytes_received_total, \
wsload_pings_received_total, wsload_latency_seconds (histogram: publish->receive or echo \
round trip), wsload_seq_gaps_total, wsload_seq_dups_total.";

/// Arguments of `wsload hold`.
#[derive(Args, Debug, Clone)]
pub struct HoldArgs {
    /// Load arguments.
    #[command(flatten)]
    pub load: LoadArgs,
    /// End the hold as soon as every open connection received this many messages; the
    /// report counts connections that got exactly this many without gaps or duplicates.
    #[arg(long)]
    pub expect_messages: Option<u64>,
}

/// Arguments of `wsload push`.
#[derive(Args, Debug, Clone)]
pub struct PushArgs {
    /// Load arguments (the URL path names the channels, e.g. `/ch-{ch}`).
    #[command(flatten)]
    pub load: LoadArgs,
    /// Admin base URL of the server, `http://IP:PORT`.
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    pub admin: String,
    /// Messages published per second, over all channels (round-robin); 0 = as fast as the
    /// admin API answers.
    #[arg(long, default_value_t = 100.0)]
    pub publish_rate: f64,
    /// Stop publishing after this many messages per channel (and at the latest after
    /// `--duration`).
    #[arg(long)]
    pub messages_per_channel: Option<u64>,
    /// Body bytes: `"<seq>:<unix-ns>:"` padded with `x`.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Keep-alive publisher connections (each publishes rate / N, channel-sharded).
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Paced publishing: keep at most N deliveries published but not yet received (over
    /// all subscribers), as a publisher that does not outrun its subscribers;
    /// `--publish-rate` then caps the rate (0 = the window alone paces).
    #[arg(long, long_help = MAX_OUTSTANDING_HELP)]
    pub max_outstanding: Option<u64>,
}

const MAX_OUTSTANDING_HELP: &str = "Paced publishing: keep at most N deliveries published \
but not yet received, over all subscribers (a publish to a channel of S subscribers counts \
S), as a publisher that does not outrun its subscribers; `--publish-rate` then caps the \
rate (0 = the window alone paces). A burst (`--publish-rate 0` without a window) lets \
queued frames coalesce into one send and hides per-message costs; a paced run does not. \
Workers report progress every 5 ms so the window follows the deliveries (it may lag by \
that much).";

/// Arguments of `wsload tick`.
#[derive(Args, Debug, Clone)]
pub struct TickArgs {
    /// Load arguments (every connection subscribes the URL path's channel).
    #[command(flatten)]
    pub load: LoadArgs,
    /// Admin base URL of the server, `http://IP:PORT`.
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    pub admin: String,
}

/// Arguments of `wsload echo`.
#[derive(Args, Debug, Clone)]
pub struct EchoArgs {
    /// Load arguments (the URL path is usually `/echo`).
    #[command(flatten)]
    pub load: LoadArgs,
    /// Messages per second each connection sends.
    #[arg(long, default_value_t = 1.0)]
    pub msg_rate: f64,
    /// Body bytes: `"<seq>:<unix-ns>:"` padded with `x`.
    #[arg(long, default_value_t = 32)]
    pub size: usize,
}

/// Arguments of `wsload churn`.
#[derive(Args, Debug, Clone)]
pub struct ChurnArgs {
    /// Load arguments.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Seconds between churn rounds.
    #[arg(long, default_value_t = 5.0)]
    pub interval: f64,
    /// Share of the open connections closed and reopened per round: `20%` or `0.2`.
    #[arg(long, default_value = "20%")]
    pub churn: Fraction,
}

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
    /// Body size in bytes: `"<seq>:<unix-ns>:"` padded with `x`.
    #[arg(long, default_value_t = 0)]
    pub size: usize,
    /// Seconds the whole run may take.
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
    /// Also write the JSON report line to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// A share in `[0, 1]`, written `20%` or `0.2`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fraction(pub f64);

impl FromStr for Fraction {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value = match s.trim().strip_suffix('%') {
            Some(percent) => percent.trim().parse::<f64>().context("bad percentage")? / 100.0,
            None => s.trim().parse::<f64>().context("expected 20% or 0.2")?,
        };
        ensure!((0.0..=1.0).contains(&value), "must be between 0% and 100%");
        Ok(Self(value))
    }
}

/// Which share of the connections a worker process opens: those with `i % count == index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSlot {
    /// This worker.
    pub index: usize,
    /// All workers.
    pub count: usize,
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
    fn parses_fractions() {
        assert_eq!("20%".parse::<Fraction>().unwrap(), Fraction(0.2));
        assert_eq!("0.5".parse::<Fraction>().unwrap(), Fraction(0.5));
        assert_eq!("100 %".parse::<Fraction>().unwrap(), Fraction(1.0));
        for bad in ["", "%", "120%", "-0.1", "x"] {
            assert!(bad.parse::<Fraction>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_hold_defaults_and_scenario_flags() {
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
        assert_eq!(args.load.rate, 5000.0);
        assert_eq!(args.load.procs, 1);
        assert_eq!(args.load.worker, None);
        let cli = Cli::try_parse_from([
            "wsload",
            "churn",
            "--url",
            "ws://127.0.0.1:1/x",
            "--connections",
            "3",
            "--churn",
            "10%",
            "--worker",
            "0/2",
        ])
        .unwrap();
        let Command::Churn(args) = cli.command else {
            panic!("not churn");
        };
        assert_eq!(args.churn, Fraction(0.1));
        assert_eq!(args.load.worker, Some(WorkerSlot { index: 0, count: 2 }));
        assert!(
            Cli::try_parse_from(["wsload", "push", "--url", "ws://127.0.0.1:1/x"]).is_err(),
            "--connections is required"
        );
    }
}

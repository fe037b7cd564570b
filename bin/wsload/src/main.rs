//! `wsload`: WebSocket capacity tester on ringcast's own io_uring reactor and sans-IO
//! protocol (client role). Scenarios `hold`, `push`, `tick`, `echo` and `churn` open many
//! connections (over many source IPs, ports and, with `--procs`, worker processes), run for
//! `--duration` and report a table on stderr plus one JSON line on stdout; `publish` feeds
//! numbered messages through an admin API. A run whose connections failed or whose
//! messages were lost beyond `--tolerate` exits non-zero (after its report).

mod addr_plan;
mod admin_client;
mod cli;
mod client_core;
mod conn;
mod coordinator;
mod delivery_window;
mod engine;
mod figures;
mod http1;
mod latency;
mod metrics;
mod payload;
mod procs;
mod progress;
mod publish;
mod publisher;
mod report;
mod resume;
mod rng;
mod scenario;
mod self_usage;
mod send_pool;
mod seq;
mod stats;
mod table;
mod ticks;
mod tls_client;
mod verdict;
mod wire;

use std::time::Duration;

use anyhow::bail;
use clap::Parser;

use crate::admin_client::parse_admin_url;
use crate::cli::{Cli, Command, LoadArgs};
use crate::coordinator::{PublishSpec, RunSpec};
use crate::publisher::PublishMode;
use crate::scenario::Scenario;

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Publish(args) => {
            let report = publish::run(&args)?;
            report::emit(&report, args.json.as_deref())
        }
        Command::Hold(args) => run(
            args.load,
            Scenario::Hold {
                expect_messages: args.expect_messages,
            },
            None,
        ),
        Command::Push(args) => {
            let publish = PublishSpec {
                admin: parse_admin_url(&args.admin)?,
                mode: PublishMode::Push {
                    rate: args.publish_rate.max(0.0),
                    size: args.size,
                    per_channel: args.messages_per_channel,
                },
                publishers: args.publishers.max(1),
                max_outstanding: args.max_outstanding,
            };
            let paced = args.max_outstanding.is_some();
            run(args.load, Scenario::Push { paced }, Some(publish))
        }
        Command::Tick(args) => {
            let publish = PublishSpec {
                admin: parse_admin_url(&args.admin)?,
                mode: PublishMode::Tick,
                publishers: 1,
                max_outstanding: None,
            };
            run(args.load, Scenario::Tick, Some(publish))
        }
        Command::Echo(args) => run(
            args.load,
            Scenario::Echo {
                msg_rate: args.msg_rate.max(0.0),
                size: args.size,
            },
            None,
        ),
        Command::Churn(args) => run(
            args.load,
            Scenario::Churn {
                interval: Duration::from_secs_f64(args.interval.max(0.001)),
                fraction: args.churn.0,
            },
            None,
        ),
    }
}

/// Runs a scenario as the coordinator, or as one worker process of a `--procs` parent.
fn run(load: LoadArgs, scenario: Scenario, publish: Option<PublishSpec>) -> anyhow::Result<()> {
    if let Some(slot) = load.worker {
        let epoch = procs::epoch_from_unix_ms(load.epoch_ms);
        return procs::run_worker(&coordinator::worker_params(&load, scenario, slot, epoch));
    }
    let json = load.json.clone();
    let tolerate = load.tolerate.0;
    let spec = RunSpec {
        load,
        scenario,
        publish,
        command: command_line(std::env::args()),
    };
    let report = coordinator::run(&spec)?;
    eprint!("{}", table::render(&report));
    report::emit(&report, json.as_deref())?;
    if !report.missing_workers.is_empty() {
        bail!(
            "workers {:?} ended without a report; the line above merges the others",
            report.missing_workers
        );
    }
    if let Err(shortfall) = verdict::check(&report, tolerate) {
        bail!("{}", shortfall.0);
    }
    Ok(())
}

/// The command line as a shell would need it typed (arguments quoted where needed).
fn command_line(args: impl Iterator<Item = String>) -> String {
    args.map(|arg| {
        let plain = !arg.is_empty()
            && arg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-./:=,@%+{}".contains(&b));
        if plain {
            arg
        } else {
            format!("'{}'", arg.replace('\'', r"'\''"))
        }
    })
    .collect::<Vec<_>>()
    .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_quotes_what_needs_it() {
        let args = [
            "wsload",
            "hold",
            "--url",
            "ws://127.0.0.1:1-2/ch-{ch}",
            "a b",
            "it's",
            "",
        ];
        assert_eq!(
            command_line(args.iter().map(|s| (*s).to_owned())),
            r"wsload hold --url ws://127.0.0.1:1-2/ch-{ch} 'a b' 'it'\''s' ''"
        );
    }
}

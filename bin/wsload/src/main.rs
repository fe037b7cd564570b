//! `wsload`: WebSocket capacity tester. `hold` opens and holds many connections (over many
//! source IPs, ports and, with `--procs`, worker processes) and counts what they receive;
//! `publish` feeds numbered messages through the admin API. Each prints one JSON line.

mod addr_plan;
mod cli;
mod conn;
mod hold;
mod http1;
mod procs;
mod publish;
mod report;
mod seq;
mod stats;

use anyhow::bail;
use clap::Parser;

use crate::cli::{Cli, Command, HoldArgs, WorkerSlot};
use crate::hold::ConsoleObserver;
use crate::procs::{WorkerEvent, WorkerObserver};

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Hold(args) => hold(&args),
        Command::Publish(args) => {
            let report = publish::run(&args)?;
            report::emit(&report, args.json.as_deref())
        }
    }
}

fn hold(args: &HoldArgs) -> anyhow::Result<()> {
    if let Some(slot) = args.worker {
        let epoch = procs::epoch_from_unix_ms(args.epoch_ms);
        let mut observer = WorkerObserver;
        let report = hold::run(args, slot, epoch, &mut observer)?;
        return observer.send(&WorkerEvent::Report(report));
    }
    if args.procs > 1 {
        let outcome = procs::run_parent(args)?;
        report::emit(&outcome.report, args.json.as_deref())?;
        if !outcome.missing_workers.is_empty() {
            bail!(
                "workers {:?} ended without a report; the line above merges the others",
                outcome.missing_workers
            );
        }
        return Ok(());
    }
    let mut observer = ConsoleObserver {
        ready_file: args.ready_file.as_deref(),
        done_file: args.done_file.as_deref(),
    };
    let report = hold::run(
        args,
        WorkerSlot::SOLE,
        std::time::Instant::now(),
        &mut observer,
    )?;
    report::emit(&report, args.json.as_deref())
}

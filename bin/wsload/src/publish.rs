//! `wsload publish`: posts `--count` numbered, timestamped messages
//! (`"<seq>:<unix-ns>:<padding>"`, seq counting per channel from 0) round-robin over the
//! channels through the admin HTTP API, on one keep-alive connection, paced by `--rate`, and
//! reports how many were answered 202.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::ensure;
use serde::{Deserialize, Serialize};

use crate::admin_client::{AdminClient, parse_admin_url};
use crate::cli::PublishArgs;
use crate::payload::{realtime_ns, write_body};
use crate::publisher::sleep_until;

/// Consecutive failed requests after which the admin API is considered gone.
const MAX_CONSECUTIVE_ERRORS: u64 = 20;

/// Result of `wsload publish`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PublishReport {
    /// Always `"publish"`.
    pub scenario: String,
    /// Requests answered 202.
    pub published: u64,
    /// Requests answered otherwise or not at all (or never made).
    pub errors: u64,
    /// Whole run.
    pub elapsed_s: f64,
    /// `published / elapsed_s`.
    pub rate_per_s: f64,
}

/// Runs the publisher.
pub fn run(args: &PublishArgs) -> anyhow::Result<PublishReport> {
    ensure!(
        args.channels > 0 || args.channel.is_some(),
        "--channels must be at least 1"
    );
    let mut client = AdminClient::new(parse_admin_url(&args.admin)?);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.timeout.max(0.0));
    let never = AtomicBool::new(false);
    let (mut published, mut errors, mut consecutive_errors) = (0u64, 0u64, 0u64);
    let mut body = Vec::new();
    for j in 0..args.count {
        if args.rate > 0.0 {
            let due = start + Duration::from_secs_f64(j as f64 / args.rate);
            sleep_until(due.min(deadline), &never);
        }
        if Instant::now() >= deadline || consecutive_errors >= MAX_CONSECUTIVE_ERRORS {
            break;
        }
        let (channel, seq) = channel_and_seq(args, j);
        body.clear();
        write_body(&mut body, seq, realtime_ns(), args.size);
        match client.post(&format!("/publish/{channel}"), &body) {
            Ok(202) => {
                published += 1;
                consecutive_errors = 0;
            }
            Ok(_) => {
                errors += 1;
                consecutive_errors = 0;
            }
            Err(_) => {
                errors += 1;
                consecutive_errors += 1;
            }
        }
    }
    let unattempted = args.count - published - errors;
    let elapsed_s = start.elapsed().as_secs_f64();
    Ok(PublishReport {
        scenario: "publish".to_owned(),
        published,
        errors: errors + unattempted,
        elapsed_s,
        rate_per_s: if elapsed_s > 0.0 {
            published as f64 / elapsed_s
        } else {
            0.0
        },
    })
}

/// Channel and per-channel sequence number of message `j`.
pub fn channel_and_seq(args: &PublishArgs, j: u64) -> (String, u64) {
    match &args.channel {
        Some(name) => (name.clone(), j),
        None => {
            let channels = args.channels.max(1) as u64;
            (
                format!("{}{}", args.channel_prefix, j % channels),
                j / channels,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(channels: usize, channel: Option<&str>) -> PublishArgs {
        PublishArgs {
            admin: "http://127.0.0.1:9".to_owned(),
            channel_prefix: "ch-".to_owned(),
            channels,
            channel: channel.map(str::to_owned),
            count: 10,
            rate: 0.0,
            size: 0,
            timeout: 1.0,
            json: None,
        }
    }

    #[test]
    fn round_robin_with_per_channel_sequence() {
        let a = args(3, None);
        assert_eq!(channel_and_seq(&a, 0), ("ch-0".to_owned(), 0));
        assert_eq!(channel_and_seq(&a, 2), ("ch-2".to_owned(), 0));
        assert_eq!(channel_and_seq(&a, 4), ("ch-1".to_owned(), 1));
        let a = args(1, Some("bench"));
        assert_eq!(channel_and_seq(&a, 12), ("bench".to_owned(), 12));
    }

    #[test]
    fn unreachable_admin_reports_errors() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut a = args(1, None);
        a.admin = format!("http://127.0.0.1:{port}");
        let report = run(&a).unwrap();
        assert_eq!(report.published, 0);
        assert_eq!(report.errors, 10);
        assert!(run(&args(0, None)).is_err());
    }
}

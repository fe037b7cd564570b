//! `wsload churn` end to end: 1,000 connections, 20% closed and reopened every second for
//! four seconds; every reopening succeeds (or was still in progress when the run stopped),
//! the gateway accepted exactly the first connects plus the reconnects, and nothing is
//! left open afterwards.

mod wsload_support;

use ringcast_tests::gateway::Gateway;
use ringcast_tests::metrics::sum;
use wsload_support::{num, run};

const CONNS: u64 = 1_000;

#[test]
fn churn_reopens_what_it_closes() {
    let gateway = Gateway::start(2, &[]);
    let report = run(
        &[
            "churn",
            "--url",
            &gateway.ws_url("/ch-{ch}"),
            "--channels",
            "5",
            "--connections",
            &CONNS.to_string(),
            "--interval",
            "1",
            "--churn",
            "20%",
            "--duration",
            "4.5",
        ],
        60,
    );
    assert_eq!(report["scenario"], "churn");
    let closed = num(&report, "churn.closed");
    let reconnects = num(&report, "churn.reconnects");
    assert!(closed >= 3 * CONNS / 5, "four rounds of 20%: {report}");
    assert_eq!(num(&report, "churn.reconnect_failures"), 0, "{report}");
    let interrupted = num(&report, "churn.interrupted");
    assert_eq!(reconnects + interrupted, closed, "{report}");
    assert!(reconnects >= 3 * CONNS / 5, "{report}");
    assert_eq!(num(&report, "churn.reconnect_latency.count"), reconnects);
    assert_eq!(num(&report, "connected"), CONNS + reconnects, "{report}");
    assert_eq!(num(&report, "failed"), 0, "{report}");
    assert_eq!(num(&report, "closed_by_server"), 0, "{report}");
    gateway.wait_metric("ringcast_connections", 10, |n| n == 0.0);
    assert_eq!(
        sum(&gateway.metrics(), "ringcast_connections_accepted_total"),
        (CONNS + reconnects) as f64
    );
}

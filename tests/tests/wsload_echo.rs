//! `wsload echo` end to end: 500 connections to `/echo`, each sending 10 numbered,
//! timestamped messages a second; every message comes back once and in order, and every
//! echo has a round-trip time.

mod wsload_support;

use ringcast_tests::gateway::Gateway;
use ringcast_tests::metrics::sum;
use wsload_support::{num, run};

const CONNS: u64 = 500;

#[test]
fn every_echo_comes_back_once_in_order() {
    let gateway = Gateway::start(2, &[]);
    let report = run(
        &[
            "echo",
            "--url",
            &gateway.ws_url("/echo"),
            "--connections",
            &CONNS.to_string(),
            "--msg-rate",
            "10",
            "--size",
            "48",
            "--duration",
            "3",
        ],
        60,
    );
    assert_eq!(report["scenario"], "echo");
    assert_eq!(num(&report, "connected"), CONNS, "{report}");
    let sent = num(&report, "echo.sent");
    assert!(
        sent >= CONNS * 20,
        "about 10/s per connection for 3 s: {report}"
    );
    assert_eq!(num(&report, "echo.received"), sent, "{report}");
    assert_eq!(num(&report, "echo.lost"), 0, "{report}");
    assert_eq!(num(&report, "messages"), sent);
    assert_eq!(num(&report, "bytes"), sent * 48);
    assert_eq!(
        num(&report, "seq_gaps") + num(&report, "seq_dups"),
        0,
        "{report}"
    );
    assert_eq!(
        num(&report, "latency.count"),
        sent,
        "every echo has a round trip"
    );
    assert_eq!(num(&report, "closed_by_server"), 0, "{report}");
    let echoed_bytes = (sent * (48 + 2)) as f64;
    gateway.wait_metric("ringcast_bytes_sent_total", 10, |n| n >= echoed_bytes);
    let text = gateway.metrics();
    assert_eq!(
        sum(&text, "ringcast_connections_accepted_total"),
        CONNS as f64
    );
    assert_eq!(
        sum(&text, "ringcast_messages_delivered_total"),
        0.0,
        "echoes are not deliveries"
    );
}

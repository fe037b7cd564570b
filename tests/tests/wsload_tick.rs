//! `wsload tick` end to end: 1,000 subscribers of one channel get the time once a second;
//! every tick reaches every connection, the spread is measured per tick, and the gateway
//! delivered exactly what wsload counted.

mod wsload_support;

use ringcast_tests::gateway::Gateway;
use wsload_support::{num, run};

const CONNS: u64 = 1_000;

#[test]
fn every_tick_reaches_every_connection() {
    let gateway = Gateway::start(2, &[]);
    let admin = format!("http://{}", gateway.admin);
    let report = run(
        &[
            "tick",
            "--url",
            &gateway.ws_url("/clock"),
            "--connections",
            &CONNS.to_string(),
            "--admin",
            &admin,
            "--duration",
            "3",
        ],
        60,
    );
    assert_eq!(report["scenario"], "tick");
    assert_eq!(num(&report, "connected"), CONNS, "{report}");
    assert_eq!(num(&report, "tick.ticks_published"), 3, "{report}");
    assert_eq!(num(&report, "tick.ticks_received"), 3, "{report}");
    assert_eq!(num(&report, "tick.ticks_complete"), 3, "{report}");
    assert_eq!(num(&report, "tick.spread.count"), 3, "{report}");
    assert_eq!(num(&report, "messages"), 3 * CONNS, "{report}");
    assert_eq!(num(&report, "seq_gaps") + num(&report, "seq_dups"), 0);
    let spread_max = report["tick"]["spread"]["max_ms"].as_f64().unwrap();
    let to_last_max = report["tick"]["to_last_arrival"]["max_ms"]
        .as_f64()
        .unwrap();
    assert!(spread_max <= to_last_max, "{report}");
    let delivered = gateway.wait_metric("ringcast_messages_delivered_total", 10, |n| {
        n >= (3 * CONNS) as f64
    });
    assert_eq!(delivered, (3 * CONNS) as f64);
}

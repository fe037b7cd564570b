//! `wsload push` end to end: 1,500 subscribers over 10 channels, wsload publishing numbered,
//! timestamped messages through the admin API; the report's deliveries, losses and latency
//! count agree with the sequence numbers and with the gateway's own counters.

mod wsload_support;

use ringcast_tests::gateway::Gateway;
use ringcast_tests::metrics::sum;
use wsload_support::{num, run};

const CONNS: u64 = 1_500;
const CHANNELS: u64 = 10;

#[test]
fn push_counts_every_delivery_once_and_in_order() {
    let gateway = Gateway::start(2, &[]);
    let admin = format!("http://{}", gateway.admin);
    let report = run(
        &[
            "push",
            "--url",
            &gateway.ws_url("/ch-{ch}"),
            "--channels",
            &CHANNELS.to_string(),
            "--connections",
            &CONNS.to_string(),
            "--admin",
            &admin,
            "--publish-rate",
            "200",
            "--publishers",
            "2",
            "--size",
            "100",
            "--duration",
            "3",
        ],
        60,
    );
    assert_eq!(report["scenario"], "push");
    assert_eq!(num(&report, "connected"), CONNS, "{report}");
    let published = num(&report, "push.published");
    assert!(published >= 300, "about 200/s for 3 s: {report}");
    assert_eq!(num(&report, "push.publish_errors"), 0, "{report}");
    let per_channel = CONNS / CHANNELS;
    assert_eq!(
        num(&report, "push.expected_deliveries"),
        published * per_channel
    );
    assert_eq!(num(&report, "push.lost"), 0, "{report}");
    assert_eq!(num(&report, "push.duplicated"), 0, "{report}");
    assert_eq!(num(&report, "push.out_of_order"), 0, "{report}");
    assert_eq!(num(&report, "seq_gaps"), 0, "{report}");
    let messages = num(&report, "messages");
    assert_eq!(messages, published * per_channel, "{report}");
    assert_eq!(num(&report, "bytes"), messages * 100);
    assert_eq!(
        num(&report, "latency.count"),
        messages,
        "every body had a timestamp"
    );
    let p50 = report["latency"]["p50_ms"].as_f64().unwrap();
    let max = report["latency"]["max_ms"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= max, "{report}");

    let delivered = gateway.wait_metric("ringcast_messages_delivered_total", 10, |n| {
        n >= messages as f64
    });
    assert_eq!(delivered, messages as f64, "gateway and wsload agree");
    assert_eq!(
        sum(&gateway.metrics(), "ringcast_messages_published_total"),
        published as f64
    );
}

//! `wsload hold` end to end: 3,000 connections from two worker processes over three source
//! addresses and four ports; while they are held, the gateway's connection gauge and
//! wsload's own `--metrics` (every name the dashboards use, one series per worker) agree
//! with the target; pings are answered; the report counts every connection once.

mod wsload_support;

use ringcast_tests::gateway::Gateway;
use ringcast_tests::http;
use ringcast_tests::metrics::{sum, sum_where};
use ringcast_tests::waits::wait_for_file;
use std::net::SocketAddr;
use wsload_support::{Run, free_port, num, temp_path};

const CONNS: u64 = 3_000;

#[test]
fn hold_over_two_processes_matches_the_gateway_and_its_own_metrics() {
    let gateway = Gateway::start(4, &["--ping-interval", "1", "--pong-timeout", "5"]);
    let ready = temp_path("hold.ready");
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let url = gateway.ws_url("/ch-{ch}");
    let conns = CONNS.to_string();
    let metrics_arg = metrics.to_string();
    let run = Run::start(&[
        "hold",
        "--url",
        &url,
        "--channels",
        "7",
        "--connections",
        &conns,
        "--procs",
        "2",
        "--source-ips",
        "127.0.0.1-127.0.0.3",
        "--rate",
        "3000",
        "--duration",
        "4",
        "--metrics",
        &metrics_arg,
        "--ready-file",
        ready.to_str().unwrap(),
    ]);
    wait_for_file(&ready, 30);
    assert_eq!(
        std::fs::read_to_string(&ready).unwrap().trim(),
        conns,
        "ready file counts open connections"
    );
    gateway.wait_metric("ringcast_connections", 10, |n| n == CONNS as f64);

    // wsload's own metrics: workers report twice a second.
    std::thread::sleep(std::time::Duration::from_millis(1_200));
    let text = http::get(metrics, "/metrics")
        .expect("GET wsload /metrics")
        .body;
    for name in [
        "wsload_connections_target",
        "wsload_connections",
        "wsload_connects_total",
        "wsload_connect_errors_total",
        "wsload_closed_by_server_total",
        "wsload_messages_received_total",
        "wsload_bytes_received_total",
        "wsload_pings_received_total",
        "wsload_latency_seconds_bucket",
        "wsload_latency_seconds_count",
        "wsload_seq_gaps_total",
        "wsload_seq_dups_total",
    ] {
        assert!(
            text.contains(&format!("{name}{{worker=\"1\"")),
            "{name} missing:\n{text}"
        );
    }
    assert_eq!(sum(&text, "wsload_connections_target"), CONNS as f64);
    assert_eq!(sum(&text, "wsload_connections"), CONNS as f64);
    assert_eq!(sum(&text, "wsload_connects_total"), CONNS as f64);
    assert_eq!(sum(&text, "wsload_connect_errors_total"), 0.0);
    let per_worker = sum_where(&text, "wsload_connections", Some(("worker", "0")));
    assert_eq!(per_worker, (CONNS / 2) as f64, "worker 0 holds i % 2 == 0");

    let report = run.report(60);
    assert_eq!(report["scenario"], "hold");
    assert_eq!(report["procs"], 2);
    assert_eq!(num(&report, "target"), CONNS, "{report}");
    assert_eq!(num(&report, "connected"), CONNS, "{report}");
    assert_eq!(num(&report, "failed"), 0, "{report}");
    assert_eq!(num(&report, "closed_by_server"), 0, "{report}");
    assert_eq!(num(&report, "protocol_errors"), 0, "{report}");
    assert!(
        num(&report, "pings") >= CONNS,
        "every connection was pinged: {report}"
    );
    assert!(report["command"].as_str().unwrap().contains("--procs 2"));
    assert!(report["client"]["rss_per_conn_bytes"].as_f64().unwrap() > 0.0);

    // Every connection was closed by wsload with 1000; the gateway saw them all go.
    gateway.wait_metric("ringcast_connections", 10, |n| n == 0.0);
    let text = gateway.metrics();
    assert_eq!(
        sum(&text, "ringcast_connections_accepted_total"),
        CONNS as f64
    );
    assert!(sum(&text, "ringcast_pongs_received_total") >= num(&report, "pings") as f64 * 0.9);
    let _ = std::fs::remove_file(&ready);
}

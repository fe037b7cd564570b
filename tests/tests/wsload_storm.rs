//! A reconnect storm measured with wsload (issue 11 A6): against a node whose handshake
//! budget is 20 per second, 200 wsload clients arrive at once, then every one of them is
//! closed and reopened every second (200 handshakes/s, ten times the budget). wsload
//! honours each `503` + `Retry-After`, so every client gets in (the ramp waits for the
//! deferred ones) and no connection counts as failed; each deferral is a refusal the
//! gateway counted. An established connection echoes throughout; its round-trip
//! percentiles are printed (a figure, not an assertion: this host is shared).

mod wsload_support;

use ringcast_tests::gateway::Gateway;
use ringcast_tests::metrics::sum_where;
use ringcast_tests::ws_client::{connect, next_message};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tungstenite::Message;
use wsload_support::{num, run};

const CONNS: u64 = 200;
const BUDGET: &str = "20";

#[test]
fn churn_at_ten_times_the_handshake_budget_gets_every_client_in() {
    let gateway = Gateway::start(1, &["--max-handshakes-per-sec", BUDGET]);
    let mut echo = connect(gateway.ws_addr(), "/echo");
    let done = Arc::new(AtomicBool::new(false));
    let prober = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut rtts = Vec::new();
            while !done.load(Ordering::SeqCst) && rtts.len() < 10_000 {
                let started = Instant::now();
                echo.send(Message::text(rtts.len().to_string()))
                    .expect("echo send");
                match next_message(&mut echo, Duration::from_secs(10)) {
                    Ok(Some(Message::Text(_))) => rtts.push(started.elapsed()),
                    other => panic!("no echo: {other:?}"),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            rtts
        })
    };
    let report = run(
        &[
            "churn",
            "--url",
            &gateway.ws_url("/storm"),
            "--connections",
            &CONNS.to_string(),
            "--interval",
            "1",
            "--churn",
            "100%",
            "--duration",
            "5",
        ],
        120,
    );
    done.store(true, Ordering::SeqCst);
    let mut rtts = prober.join().expect("echo prober");
    rtts.sort();
    let at = |q: usize| rtts[(rtts.len() * q / 100).min(rtts.len() - 1)];
    let deferred = num(&report, "deferred");
    let reconnects = num(&report, "churn.reconnects");
    eprintln!(
        "storm: {deferred} handshakes deferred, {reconnects} reopenings got in; echo p50 \
         {:?}, p99 {:?}, max {:?} over {} round trips",
        at(50),
        at(99),
        at(100),
        rtts.len()
    );
    assert_eq!(num(&report, "failed"), 0, "{report}");
    assert_eq!(num(&report, "closed_by_server"), 0, "{report}");
    assert_eq!(
        num(&report, "connected"),
        CONNS + reconnects,
        "every client got in: {report}"
    );
    assert!(deferred > CONNS / 2, "the storm was paced: {report}");
    // Shards publish their counters periodically: wait (bounded) for the last ones.
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let refused = sum_where(
            &gateway.metrics(),
            "ringcast_handshake_failures_total",
            Some(("reason", "handshake_budget")),
        );
        if refused >= deferred as f64 || Instant::now() >= deadline {
            break refused;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(refused, deferred as f64, "every deferral was a counted 503");
}

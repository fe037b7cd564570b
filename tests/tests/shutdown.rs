//! Graceful shutdown of the real gateway: on SIGTERM or SIGINT `/readyz` answers 503,
//! every client gets close 1001 within the drain, the process exits 0, and the
//! WebSocket port stops accepting.

use ringcast_tests::gateway::Gateway;
use ringcast_tests::http;
use ringcast_tests::ws_client::{Client, connect, next_message};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::Message;

const DRAIN_SECS: u64 = 2;
/// How long after the signal the process may take to exit.
const EXIT_WITHIN: Duration = Duration::from_secs(DRAIN_SECS + 3);

/// Polls /readyz as fast as it answers until it says 503. A closed admin port only
/// counts after a 503 was seen, so it cannot hide a readiness flip that never happened.
fn wait_not_ready(gateway: &Gateway, until: Instant) {
    while Instant::now() < until {
        match http::get(gateway.admin, "/readyz") {
            Ok(r) if r.status == 503 => return,
            Ok(r) => assert_eq!(r.status, 200, "/readyz while draining: {}", r.body),
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("/readyz never answered 503 after the signal");
}

/// Reads `ws` until its close frame; returns the close code.
fn close_code(ws: &mut Client, until: Instant) -> u16 {
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match next_message(ws, left) {
            Ok(Some(Message::Close(Some(frame)))) => return u16::from(frame.code),
            Ok(Some(Message::Close(None))) => return 1005,
            Ok(Some(_)) => {}
            Ok(None) => panic!("no close frame before the drain deadline"),
            Err(e) => panic!("connection ended without a close frame: {e}"),
        }
    }
}

fn drains_on(signal: i32, clients: usize) {
    let drain = DRAIN_SECS.to_string();
    let mut gateway = Gateway::start(1, &["--drain-seconds", &drain]);
    let addr = gateway.ws_addr();
    let mut conns: Vec<Client> = (0..clients)
        .map(|i| connect(addr, &format!("/chan-{}", i % 7)))
        .collect();
    gateway.wait_metric("ringcast_connections", 15, |v| v >= clients as f64);
    assert_eq!(
        http::get(gateway.admin, "/readyz").expect("readyz").status,
        200
    );

    gateway.signal(signal);
    let signalled = Instant::now();
    wait_not_ready(&gateway, signalled + EXIT_WITHIN);

    let until = signalled + EXIT_WITHIN;
    for (i, ws) in conns.iter_mut().enumerate() {
        assert_eq!(close_code(ws, until), 1001, "client {i}");
    }
    let left = until.saturating_duration_since(Instant::now());
    let status = gateway
        .wait_exit((left.as_millis() as u64).div_ceil(1000).max(1))
        .expect("gateway still running after the drain");
    assert!(status.success(), "gateway exited with {status}");
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(),
        "WebSocket port still accepts after exit"
    );
}

#[test]
fn sigterm_drains_every_client_with_1001_and_exits_zero() {
    drains_on(libc::SIGTERM, 40);
}

#[test]
fn sigint_drains_like_sigterm() {
    drains_on(libc::SIGINT, 5);
}

//! Graceful drain: SIGTERM fails readiness first, waits `--drain-grace`, then closes every
//! connection with 1001 spread evenly over `--drain-seconds`: in no second are there
//! more than twice the even rate of closes, so clients' reconnects spread too.

use ringcast_tests::gateway::Gateway;
use ringcast_tests::http;
use ringcast_tests::ws_client::raw_upgrade;
use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

const CONNS: usize = 600;
const DRAIN_SECS: u64 = 5;

/// The close code in `buf` if it holds a complete close frame after any control
/// frames (server frames are unmasked; pings may arrive before the close).
fn close_code(buf: &[u8]) -> Option<u16> {
    let mut at = 0;
    while at + 2 <= buf.len() {
        let len = usize::from(buf[at + 1] & 0x7f);
        if buf[at] == 0x88 && len >= 2 && at + 4 <= buf.len() {
            return Some(u16::from_be_bytes([buf[at + 2], buf[at + 3]]));
        }
        at += 2 + len;
    }
    None
}

/// Seconds after `start` at which each stream saw its close frame (infinite if never).
fn watch_closes(mut streams: Vec<TcpStream>, start: Instant, limit: Duration) -> Vec<f64> {
    for s in &streams {
        s.set_nonblocking(true).expect("nonblocking");
    }
    let mut seen = vec![None; streams.len()];
    let mut bufs = vec![Vec::new(); streams.len()];
    let mut chunk = [0u8; 256];
    while start.elapsed() < limit && seen.iter().any(Option::is_none) {
        for (i, s) in streams.iter_mut().enumerate() {
            if seen[i].is_some() {
                continue;
            }
            if let Ok(n) = s.read(&mut chunk) {
                bufs[i].extend_from_slice(&chunk[..n]);
                if let Some(code) = close_code(&bufs[i]) {
                    assert_eq!(code, 1001);
                    seen[i] = Some(start.elapsed().as_secs_f64());
                } else if n == 0 {
                    panic!("connection {i} closed without a close frame");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    seen.into_iter()
        .map(|t| t.unwrap_or(f64::INFINITY))
        .collect()
}

#[test]
fn closes_follow_the_grace_and_spread_evenly() {
    let mut gateway = Gateway::start(
        1,
        &[
            "--drain-seconds",
            &DRAIN_SECS.to_string(),
            "--drain-grace",
            "1",
        ],
    );
    let streams: Vec<TcpStream> = (0..CONNS)
        .map(|i| raw_upgrade(gateway.ws_addr(), &format!("/d{}", i % 7)))
        .collect();
    gateway.wait_metric("ringcast_connections", 20, |n| n == CONNS as f64);
    let start = Instant::now();
    gateway.signal(libc::SIGTERM);
    let mut saw_unready = false;
    while start.elapsed() < Duration::from_millis(800) && !saw_unready {
        saw_unready = http::get(gateway.admin, "/readyz").is_ok_and(|r| r.status == 503);
    }
    assert!(saw_unready, "/readyz fails first");
    let closes = watch_closes(streams, start, Duration::from_secs(DRAIN_SECS + 5));
    assert!(
        closes.iter().all(|t| t.is_finite()),
        "every connection got 1001"
    );
    let first = closes.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(
        first >= 0.9,
        "no close before the grace is over: first at {first:.2}s"
    );
    let even_per_sec = CONNS as f64 / DRAIN_SECS as f64;
    let mut per_second = vec![0usize; (DRAIN_SECS + 6) as usize];
    for t in &closes {
        per_second[(t - first) as usize] += 1;
    }
    assert!(
        per_second.iter().all(|&n| n as f64 <= 2.0 * even_per_sec),
        "closes per second {per_second:?} exceed twice the even rate {even_per_sec}"
    );
    let status = gateway
        .wait_exit(DRAIN_SECS + 4)
        .expect("exits after the drain");
    assert!(status.success(), "{status}");
}

//! Admission at the edge end to end (issue 11 A5, A6): `--max-connections` bounds
//! sockets from accept (half-open handshakes included), node-wide whatever the
//! SO_REUSEPORT spread; `--max-handshakes-per-sec` answers a reconnect storm with 503 and
//! a jittered `Retry-After`, every client that honours it gets in, and an established
//! connection keeps answering meanwhile.

use ringcast_tests::gateway::Gateway;
use ringcast_tests::metrics::sum_where;
use ringcast_tests::ws_client::{
    HttpHead, connect, connect_raw, next_message, read_head, send_request, try_upgrade,
    upgrade_request,
};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::Message;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

/// Waits (bounded) until `done` holds for the gateway's descriptor count; the last count.
fn wait_fds(pid: u32, secs: u64, done: impl Fn(usize) -> bool) -> usize {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let fds = open_fds(pid);
        if done(fds) || Instant::now() >= deadline {
            return fds;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether an answer is already waiting on `stream` (read without blocking).
fn answered(stream: &mut TcpStream) -> Option<String> {
    stream.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 512];
    let answer = match stream.read(&mut buf) {
        Ok(n) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Ok(_) => Some(String::new()),
        Err(err) if err.kind() == ErrorKind::WouldBlock => None,
        Err(err) => Some(err.to_string()),
    };
    stream.set_nonblocking(false).expect("blocking");
    answer
}

#[test]
fn half_open_sockets_over_max_connections_get_503_at_once_unread() {
    let gateway = Gateway::start(1, &["--max-connections", "10", "--handshake-timeout", "60"]);
    let pid = gateway.pid();
    let base = open_fds(pid);
    let addr = gateway.ws_addr();
    let mut streams: Vec<TcpStream> = (0..300).map(|_| connect_raw(addr)).collect();
    // Refused sockets are answered and closed at once (after at most the 2 s linger for
    // a peer that never closes); the held ones are half-open handshakes, far from the
    // 60 s handshake timeout.
    let fds = wait_fds(pid, 30, |fds| fds <= base + 10);
    assert!(
        fds <= base + 10,
        "{fds} descriptors, {base} before 300 half-open sockets"
    );
    let mut held = Vec::new();
    let mut refused = 0;
    for mut stream in streams.drain(..) {
        match answered(&mut stream) {
            None => held.push(stream),
            Some(answer) => {
                assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
                refused += 1;
            }
        }
    }
    assert!(!held.is_empty() && held.len() <= 10, "{} held", held.len());
    assert_eq!(refused + held.len(), 300);
    let metrics = gateway.metrics();
    let full = sum_where(
        &metrics,
        "ringcast_handshake_failures_total",
        Some(("reason", "server_full")),
    );
    assert_eq!(full as usize, refused);
    // A held socket is a handshake like any other.
    let stream = &mut held[0];
    stream
        .write_all(upgrade_request("/echo").as_bytes())
        .expect("request");
    assert_eq!(read_head(stream).expect("answer").status, 101);
}

#[test]
fn max_connections_is_node_wide_whatever_the_reuseport_spread() {
    let gateway = Gateway::start(1, &["--max-connections", "3"]);
    let addr = gateway.ws_addr();
    let mut admitted = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let (stream, status) = try_upgrade(addr, "/echo");
        statuses.push(status);
        if status == 101 {
            admitted.push(stream);
        }
    }
    assert_eq!(admitted.len(), 3, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 101 || *s == 503),
        "{statuses:?}"
    );
    // A closed connection frees its slot for the next client, on whichever shard.
    drop(admitted.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (stream, status) = try_upgrade(addr, "/echo");
        if status == 101 {
            admitted.push(stream);
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot never came back");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(try_upgrade(addr, "/echo").1, 503);
}

/// The `Retry-After` of a 503 answer (seconds).
fn retry_after(head: &HttpHead) -> u64 {
    let secs: u64 = head
        .header("Retry-After")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("503 without Retry-After: {}", head.text));
    assert!((1..=5).contains(&secs), "Retry-After {secs}");
    secs
}

/// One echo round trip on `ws`, in seconds.
fn echo_rtt(ws: &mut ringcast_tests::ws_client::Client, n: usize) -> f64 {
    let text = format!("ping {n}");
    let start = Instant::now();
    ws.send(Message::text(text.clone())).expect("echo send");
    match next_message(ws, Duration::from_secs(5)).expect("echo read") {
        Some(Message::Text(got)) => assert_eq!(got.as_str(), text),
        other => panic!("no echo: {other:?}"),
    }
    start.elapsed().as_secs_f64()
}

#[test]
fn a_reconnect_storm_is_paced_by_retry_after_and_every_client_gets_in() {
    const CLIENTS: usize = 500;
    const BUDGET: usize = 50;
    let gateway = Gateway::start(1, &["--max-handshakes-per-sec", "50"]);
    let addr = gateway.ws_addr();
    let mut echo = connect(addr, "/echo");
    std::thread::sleep(Duration::from_millis(1100));

    // The storm: every client connects and sends its request at once.
    let started = Instant::now();
    let mut storm: Vec<TcpStream> = (0..CLIENTS).map(|_| connect_raw(addr)).collect();
    for stream in &mut storm {
        let _ = stream.write_all(upgrade_request("/echo").as_bytes());
    }
    let mut waiting: Vec<Instant> = Vec::new();
    let mut admitted = 0;
    for mut stream in storm.drain(..) {
        let head = read_head(&mut stream).expect("every storm client is answered");
        match head.status {
            101 => admitted += 1,
            503 => waiting.push(Instant::now() + Duration::from_secs(retry_after(&head))),
            other => panic!("status {other}: {}", head.text),
        }
    }
    let storm_secs = started.elapsed().as_secs_f64();
    let allowed = BUDGET + (BUDGET as f64 * (storm_secs + 1.0)) as usize;
    assert!(
        admitted >= 1 && admitted <= allowed,
        "{admitted} admitted in {storm_secs:.2} s"
    );
    assert_eq!(admitted + waiting.len(), CLIENTS);
    let refused_in_storm = waiting.len();

    // Every refused client comes back after its Retry-After until it is admitted, while
    // the established connection keeps echoing.
    let mut rtts = Vec::new();
    let mut retries = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !waiting.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} clients never got in",
            waiting.len()
        );
        rtts.push(echo_rtt(&mut echo, rtts.len()));
        let now = Instant::now();
        let mut next = Vec::with_capacity(waiting.len());
        for due in waiting.drain(..) {
            if due > now {
                next.push(due);
                continue;
            }
            retries += 1;
            let (_stream, head) = send_request(addr, upgrade_request("/echo").as_bytes());
            match head.status {
                101 => {}
                503 => next.push(Instant::now() + Duration::from_secs(retry_after(&head))),
                other => panic!("retry got {other}"),
            }
        }
        waiting = next;
        std::thread::sleep(Duration::from_millis(20));
    }
    rtts.sort_by(f64::total_cmp);
    let p99 = rtts[(rtts.len() * 99 / 100).min(rtts.len() - 1)];
    eprintln!(
        "storm: {admitted} admitted at once, {refused_in_storm} refused in {storm_secs:.2} s, \
         {retries} retries; echo p99 {:.1} ms over {} round trips",
        p99 * 1000.0,
        rtts.len()
    );
    let budget_refusals = sum_where(
        &gateway.metrics(),
        "ringcast_handshake_failures_total",
        Some(("reason", "handshake_budget")),
    );
    assert!(budget_refusals as usize >= refused_in_storm);
}

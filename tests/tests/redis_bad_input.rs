//! Bad input from Redis is counted and skipped, never delivered and never fatal: payloads
//! over `--max-message-bytes`, invalid channel names, broken envelopes (real redis-server,
//! pattern mode so every channel arrives), huge payloads skipped while they stream in
//! (never buffered whole), and a server that cuts a reply short or sends bytes that are
//! not RESP (a fake Redis on a loopback socket). Foreign payloads without an envelope are
//! delivered as text or binary.

use ringcast_tests::gateway::Gateway;
use ringcast_tests::metrics::{sum, sum_where};
use ringcast_tests::redis_server::RedisServer;
use ringcast_tests::ws_client::{Client, connect, next_message};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tungstenite::Message;

/// An envelope as a node writes it: magic, version, Unix nanoseconds, flags, payload.
fn envelope(version: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0xFF, b'r', b'c', version];
    out.extend_from_slice(&1_700_000_000_000_000_000u64.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(payload);
    out
}

fn next(ws: &mut Client) -> Message {
    next_message(ws, Duration::from_secs(10))
        .expect("read")
        .expect("a message")
}

fn rejected(gateway: &Gateway, reason: &str) -> f64 {
    sum_where(
        &gateway.metrics(),
        "ringcast_broker_rejected_total",
        Some(("reason", reason)),
    )
}

#[test]
fn oversized_misnamed_and_broken_messages_are_counted_and_skipped() {
    let redis = RedisServer::start();
    let url = redis.url();
    let a = Gateway::start(
        1,
        &[
            "--redis",
            &url,
            "--redis-mode",
            "pattern",
            "--max-message-bytes",
            "1024",
        ],
    );
    a.wait_metric("ringcast_broker_up", 20, |up| up == 1.0);
    let mut ws = connect(a.ws_addr(), "/news");
    a.wait_metric("ringcast_subscriptions", 20, |n| n == 1.0);

    let bad: [(&str, Vec<u8>); 6] = [
        ("ringcast:news", vec![b'x'; 2_000]),
        ("ringcast:news", envelope(1, 0, &[b'y'; 1_025])),
        ("ringcast:bad channel!", b"x".to_vec()),
        ("ringcast:news", vec![0xFF, b'r', b'c', 1, 0]),
        ("ringcast:news", envelope(2, 0, b"v2")),
        ("ringcast:news", envelope(1, 0x80, b"unknown flag")),
    ];
    for (channel, payload) in &bad {
        assert_eq!(redis.publish(channel, payload), 1);
    }
    assert_eq!(redis.publish("ringcast:news", b"hello"), 1);
    assert_eq!(redis.publish("ringcast:news", b"\xfe\xff"), 1);
    assert_eq!(
        redis.publish("ringcast:news", &envelope(1, 1, b"\x00\x01")),
        1
    );
    assert_eq!(redis.publish("ringcast:news", &envelope(1, 0, b"done")), 1);

    assert_eq!(next(&mut ws), Message::text("hello"));
    assert_eq!(next(&mut ws), Message::binary(vec![0xFE, 0xFF]));
    assert_eq!(next(&mut ws), Message::binary(vec![0x00, 0x01]));
    assert_eq!(next(&mut ws), Message::text("done"));
    let extra = next_message(&mut ws, Duration::from_millis(300)).expect("read");
    assert!(extra.is_none(), "{extra:?}");

    assert_eq!(rejected(&a, "too_large"), 2.0);
    assert_eq!(rejected(&a, "channel"), 1.0);
    assert_eq!(rejected(&a, "envelope"), 3.0);
    let text = a.metrics();
    assert_eq!(sum(&text, "ringcast_broker_messages_received_total"), 10.0);
    assert_eq!(sum(&text, "ringcast_broker_up"), 1.0);
    assert_eq!(sum(&text, "ringcast_broker_reconnects_total"), 0.0);
}

#[test]
fn huge_payloads_are_skipped_while_read_not_buffered() {
    let redis = RedisServer::start();
    // Redis must not cut the node off for these: the test is about the node's memory.
    redis.cli(&[
        "CONFIG",
        "SET",
        "client-output-buffer-limit",
        "pubsub 512mb 512mb 60",
    ]);
    let a = Gateway::start(1, &["--redis", &redis.url()]);
    a.wait_metric("ringcast_broker_up", 20, |up| up == 1.0);
    let mut ws = connect(a.ws_addr(), "/news");
    a.wait_metric("ringcast_broker_subscriptions", 20, |n| n == 1.0);
    assert_eq!(redis.publish("ringcast:news", b"warm-up"), 1);
    assert_eq!(next(&mut ws), Message::text("warm-up"));

    let before = a.rss_bytes();
    let huge = vec![b'x'; 25 << 20];
    for _ in 0..3 {
        assert_eq!(redis.publish("ringcast:news", &huge), 1);
    }
    assert_eq!(redis.publish("ringcast:news", b"after"), 1);
    assert_eq!(next(&mut ws), Message::text("after"));
    let grown = a.rss_bytes().saturating_sub(before);
    println!("RSS before {before} B, grown by {grown} B after 3 x 25 MiB");
    assert!(grown < 10 << 20, "RSS grew by {grown} bytes");

    assert_eq!(rejected(&a, "too_large"), 3.0);
    let text = a.metrics();
    assert_eq!(sum(&text, "ringcast_broker_reconnects_total"), 0.0);
    assert_eq!(sum(&text, "ringcast_broker_up"), 1.0);
    assert_eq!(rejected(&a, "disconnect"), 0.0);
}

/// What the fake Redis does after confirming a SUBSCRIBE on its n-th connection.
fn after_subscribe(connection: usize) -> Option<&'static [u8]> {
    match connection {
        // A message push cut off in the middle of its payload, then a reset.
        0 => Some(b">3\r\n$7\r\nmessage\r\n$13\r\nringcast:news\r\n$100\r\nabc"),
        // Bytes that are not RESP at all.
        1 => Some(b"?this is not RESP\r\n"),
        // A good message.
        _ => None,
    }
}

/// Reads one command (an array of bulk strings) from a RESP client.
fn read_command(reader: &mut impl BufRead) -> Option<Vec<String>> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let n: usize = line.trim().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let len: usize = line.trim().strip_prefix('$')?.parse().ok()?;
        let mut data = vec![0u8; len + 2];
        reader.read_exact(&mut data).ok()?;
        data.truncate(len);
        args.push(String::from_utf8_lossy(&data).into_owned());
    }
    Some(args)
}

fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

/// Serves one client of the fake Redis (RESP3, just enough for the gateway).
fn serve_fake(stream: TcpStream, connection: usize, stop: &AtomicBool) {
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    while !stop.load(Ordering::SeqCst) {
        let Some(args) = read_command(&mut reader) else {
            return;
        };
        let name = args
            .first()
            .map(|a| a.to_ascii_uppercase())
            .unwrap_or_default();
        let reply = match name.as_str() {
            "HELLO" => format!(
                "%2\r\n{}{}{}:3\r\n",
                bulk("server"),
                bulk("redis"),
                bulk("proto")
            ),
            "PING" => "+PONG\r\n".to_owned(),
            "SUBSCRIBE" => args[1..]
                .iter()
                .enumerate()
                .map(|(i, ch)| format!(">3\r\n{}{}:{}\r\n", bulk("subscribe"), bulk(ch), i + 1))
                .collect(),
            _ => "+OK\r\n".to_owned(),
        };
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
        if name == "SUBSCRIBE" {
            match after_subscribe(connection) {
                Some(bad) => {
                    let _ = writer.write_all(bad);
                    let _ = writer.shutdown(std::net::Shutdown::Both);
                    return;
                }
                None => {
                    let good = format!(
                        ">3\r\n{}{}{}",
                        bulk("message"),
                        bulk("ringcast:news"),
                        bulk("ok")
                    );
                    let _ = writer.write_all(good.as_bytes());
                }
            }
        }
    }
}

#[test]
fn a_reply_cut_short_or_garbage_from_redis_costs_a_reconnect_not_the_node() {
    // Port 0: the kernel picks a port nobody holds (a probed free port can be taken by
    // another process between the probe and this bind).
    let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind fake redis");
    let port = listener.local_addr().expect("fake redis address").port();
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let stop = Arc::new(AtomicBool::new(false));
    let fake = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut connection = 0;
            let mut served = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        // Blocking reads: a connection ends when the gateway closes it.
                        stream.set_nonblocking(false).expect("blocking stream");
                        let stop = stop.clone();
                        let n = connection;
                        connection += 1;
                        served.push(std::thread::spawn(move || serve_fake(stream, n, &stop)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            for thread in served {
                let _ = thread.join();
            }
        })
    };
    let url = format!("redis://127.0.0.1:{port}/0");
    let a = Gateway::start(1, &["--redis", &url]);
    let mut ws = connect(a.ws_addr(), "/news");
    // The third connection delivers `ok`; the first two ended in bad replies.
    assert_eq!(next(&mut ws), Message::text("ok"));
    let text = a.metrics();
    assert!(
        sum(&text, "ringcast_broker_reconnects_total") >= 2.0,
        "{text}"
    );
    assert!(rejected(&a, "disconnect") >= 2.0);
    assert_eq!(sum(&text, "ringcast_broker_up"), 1.0);
    assert_eq!(a.publish("news", b"still-serving"), 202);
    stop.store(true, Ordering::SeqCst);
    drop(a);
    let _ = fake.join();
}

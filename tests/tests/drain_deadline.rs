//! Slow consumers at the drain deadline: clients that never read, and clients that read
//! only a trickle, each have megabytes of large messages queued when SIGTERM comes with a
//! short `--drain-seconds`, so sends are still in flight when the deadline ends the shards.
//! The gateway cancels and reaps them before freeing the queued messages: it exits 0, and
//! every byte any client receives, until its connection ends, belongs to a published
//! message at its place in the stream (a send reading freed memory would show as foreign
//! bytes or a broken frame).

use ringcast_tests::gateway::Gateway;
use ringcast_tests::ws_client::raw_upgrade;
use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Clients that read nothing until the gateway has exited.
const STALLED: usize = 8;
/// Clients that read 16 KiB every 5 ms throughout, so their sends keep making progress.
const TRICKLING: usize = 4;
/// Published messages, each `SIZE` bytes: 12 MiB queued per client, far more than the
/// kernel's socket buffers take for a reader that does not keep up.
const MESSAGES: usize = 48;
const SIZE: usize = 256 * 1024;
const DRAIN_SECS: u64 = 1;
/// How long after the signal the process may take to exit.
const EXIT_WITHIN_SECS: u64 = DRAIN_SECS + 5;
/// Upper bound for a client's read loop.
const READ_LIMIT: Duration = Duration::from_secs(60);
const TRICKLE_CHUNK: usize = 16 * 1024;
const TRICKLE_PAUSE: Duration = Duration::from_millis(5);

/// Message `k`: `SIZE` copies of one lowercase letter, different for neighbours.
fn body(k: usize) -> Vec<u8> {
    vec![b'a' + (k % 26) as u8; SIZE]
}

/// Everything `stream` receives until the server's FIN or reset, pausing `pause` after
/// each read of at most `chunk` bytes.
fn read_until_closed(mut stream: TcpStream, chunk: usize, pause: Duration) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let start = Instant::now();
    let mut received = Vec::new();
    let mut buf = vec![0u8; chunk];
    while start.elapsed() < READ_LIMIT {
        match stream.read(&mut buf) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return received,
            Err(e) => panic!("reading after {} bytes: {e}", received.len()),
        }
        std::thread::sleep(pause);
    }
    panic!("connection still open after {READ_LIMIT:?}");
}

/// A frame header at the start of `bytes`: (first byte, header length, payload length),
/// or `None` when `bytes` ends inside the header.
fn frame_header(bytes: &[u8]) -> Option<(u8, usize, usize)> {
    let (&first, rest) = bytes.split_first()?;
    let (&second, rest) = rest.split_first()?;
    assert_eq!(second & 0x80, 0, "server frames are unmasked");
    match second & 0x7f {
        126 => {
            let ext = rest.get(..2)?;
            Some((first, 4, usize::from(u16::from_be_bytes([ext[0], ext[1]]))))
        }
        127 => {
            let ext: [u8; 8] = rest.get(..8)?.try_into().ok()?;
            let len = usize::try_from(u64::from_be_bytes(ext)).expect("frame length");
            Some((first, 10, len))
        }
        short => Some((first, 2, usize::from(short))),
    }
}

/// Checks that `bytes` is a prefix of a valid stream of the published messages in order
/// (pings and a close 1001 may come between them; only the last frame may be cut short).
/// Returns the number of complete messages.
fn check_stream(client: &str, bytes: &[u8]) -> usize {
    let mut at = 0;
    let mut messages = 0;
    while let Some((first, header, len)) = frame_header(&bytes[at..]) {
        let end = (at + header + len).min(bytes.len());
        let payload = &bytes[at + header..end];
        match first {
            0x81 => {
                assert!(
                    messages < MESSAGES,
                    "{client}: more messages than published"
                );
                assert_eq!(
                    len, SIZE,
                    "{client}: message {messages} has a foreign length"
                );
                let expected = body(messages);
                if let Some(bad) = payload.iter().zip(&expected).position(|(a, b)| a != b) {
                    panic!(
                        "{client}: byte {bad} of message {messages} (stream offset {}) is {:#04x}, \
                         not {:#04x}: memory other than the message was sent",
                        at + header + bad,
                        payload[bad],
                        expected[bad]
                    );
                }
                if payload.len() == len {
                    messages += 1;
                }
            }
            0x89 => {}
            0x88 => {
                if payload.len() >= 2 {
                    assert_eq!(
                        u16::from_be_bytes([payload[0], payload[1]]),
                        1001,
                        "{client}: close code"
                    );
                }
            }
            other => panic!("{client}: frame {other:#04x} at stream offset {at}"),
        }
        at = end;
    }
    messages
}

#[test]
fn sigterm_with_sends_in_flight_to_slow_consumers_exits_zero_without_sending_freed_memory() {
    let drain = DRAIN_SECS.to_string();
    let size = SIZE.to_string();
    let max_queue = (64 * 1024 * 1024).to_string();
    let mut gateway = Gateway::start(
        1,
        &[
            "--drain-seconds",
            &drain,
            "--max-message-bytes",
            &size,
            "--max-queue-bytes",
            &max_queue,
            "--ping-interval",
            "300",
            "--pong-timeout",
            "300",
        ],
    );
    let addr = gateway.ws_addr();
    let stalled: Vec<TcpStream> = (0..STALLED).map(|_| raw_upgrade(addr, "/bulk")).collect();
    let trickling: Vec<TcpStream> = (0..TRICKLING).map(|_| raw_upgrade(addr, "/bulk")).collect();
    gateway.wait_metric("ringcast_subscriptions", 20, |n| {
        n == (STALLED + TRICKLING) as f64
    });
    for k in 0..MESSAGES {
        assert_eq!(gateway.publish("bulk", &body(k)), 202, "publish {k}");
    }
    let readers: Vec<JoinHandle<Vec<u8>>> = trickling
        .into_iter()
        .map(|stream| {
            std::thread::spawn(move || read_until_closed(stream, TRICKLE_CHUNK, TRICKLE_PAUSE))
        })
        .collect();
    // Let the queues build up behind the slow readers before the drain starts.
    std::thread::sleep(Duration::from_millis(300));

    gateway.signal(libc::SIGTERM);
    let status = gateway
        .wait_exit(EXIT_WITHIN_SECS)
        .expect("gateway still running after the drain deadline");
    assert!(status.success(), "gateway exited with {status}");

    for (i, reader) in readers.into_iter().enumerate() {
        let received = reader.join().expect("trickling reader");
        let messages = check_stream(&format!("trickling client {i}"), &received);
        assert!(
            messages < MESSAGES,
            "trickling client {i} got all {MESSAGES} messages: nothing was in flight at the deadline"
        );
    }
    for (i, stream) in stalled.into_iter().enumerate() {
        let received = read_until_closed(stream, 1 << 16, Duration::ZERO);
        let messages = check_stream(&format!("stalled client {i}"), &received);
        assert!(
            messages < MESSAGES,
            "stalled client {i} got all {MESSAGES} messages: nothing was in flight at the deadline"
        );
    }
}

//! A webhook receiver on a free loopback port, as a backend would run one: it checks
//! every request's `X-Ringcast-Signature` (HMAC-SHA256 over `<timestamp>.<body>`) and
//! timestamp, records the events of the requests that pass, and answers as told:
//! 204, an error status, or never (a hanging receiver).

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 204 No Content.
    Ok,
    /// This status with an empty body.
    Status(u16),
    /// Reads the request and never answers (the connection stays open).
    Hang,
}

/// One event as received: (`event`, `channel`).
pub type Received = (String, String);

#[derive(Default)]
struct Seen {
    events: Mutex<Vec<Received>>,
    requests: AtomicU64,
    bad_signatures: AtomicU64,
    held: Mutex<Vec<TcpStream>>,
}

/// The running receiver; its thread stops when it is dropped.
pub struct WebhookReceiver {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
}

impl WebhookReceiver {
    /// Starts a receiver checking signatures with `secret` and answering `answer`.
    pub fn start(secret: &str, answer: Answer) -> WebhookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let addr = listener.local_addr().expect("receiver address");
        let seen = Arc::new(Seen::default());
        let stop = Arc::new(AtomicBool::new(false));
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let (thread_seen, thread_stop) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if thread_stop.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(stream) = stream {
                    serve(stream, &key, answer, &thread_seen);
                }
            }
        });
        WebhookReceiver { addr, seen, stop }
    }

    /// The URL to give `--webhook-url`.
    pub fn url(&self) -> String {
        format!("http://{}/hooks/occupancy", self.addr)
    }

    /// Every event received with a good signature, in order.
    pub fn events(&self) -> Vec<Received> {
        self.seen.events.lock().expect("events").clone()
    }

    /// Requests received (signed well or not).
    pub fn requests(&self) -> u64 {
        self.seen.requests.load(Ordering::SeqCst)
    }

    /// Requests whose signature or timestamp did not verify.
    pub fn bad_signatures(&self) -> u64 {
        self.seen.bad_signatures.load(Ordering::SeqCst)
    }

    /// Waits at most `secs` until `done(events)` holds; whether it did.
    pub fn wait_for(&self, secs: u64, done: impl Fn(&[Received]) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if done(&self.events()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        done(&self.events())
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Reads one request (head, then `Content-Length` bytes), checks and records it, and
/// answers.
fn serve(mut stream: TcpStream, key: &ring::hmac::Key, answer: Answer, seen: &Seen) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
        if raw.len() > 1 << 20 {
            return;
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let header = |name: &str| {
        head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while raw.len() < head_end + length {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let body = &raw[head_end..head_end + length];
    seen.requests.fetch_add(1, Ordering::SeqCst);
    let timestamp = header("x-ringcast-timestamp").unwrap_or_default();
    let signature = header("x-ringcast-signature").unwrap_or_default();
    if verify(key, &timestamp, body, &signature) {
        if let Ok(value) = serde_json::from_slice::<Value>(body) {
            let mut events = seen.events.lock().expect("events");
            for event in value["events"].as_array().into_iter().flatten() {
                events.push((
                    event["event"].as_str().unwrap_or_default().to_owned(),
                    event["channel"].as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
    } else {
        seen.bad_signatures.fetch_add(1, Ordering::SeqCst);
    }
    let status = match answer {
        Answer::Ok => "204 No Content".to_owned(),
        Answer::Status(code) => format!("{code} Test"),
        Answer::Hang => {
            seen.held.lock().expect("held").push(stream);
            return;
        }
    };
    let response = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = stream.write_all(response.as_bytes());
}

/// What a receiver must check: `sha256=<hex>` is HMAC-SHA256 over `<timestamp>.<body>`
/// (compared in constant time by `ring::hmac::verify`), and the timestamp is within
/// five minutes of now.
pub fn verify(key: &ring::hmac::Key, timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Ok(sent_at) = timestamp.parse::<u64>() else {
        return false;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if now.abs_diff(sent_at) > 300 {
        return false;
    }
    let Some(hex) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Some(tag) = decode_hex(hex) else {
        return false;
    };
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    ring::hmac::verify(key, &message, &tag).is_ok()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

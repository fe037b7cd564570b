//! WebSocket clients for end-to-end tests: a raw socket client that speaks exact bytes
//! (hand-made handshakes, hand-built frames, parsing the server's frames and close codes)
//! and helpers around tungstenite's blocking client (connect, read the next message
//! within a bound, make sure a subscription is live before publishing).

use crate::gateway::Gateway;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// A `Sec-WebSocket-Key` that is valid base64 of 16 bytes (RFC 6455's example).
pub const TEST_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Largest HTTP answer head read before giving up.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// A tungstenite client over a plain TCP stream.
pub type Client = WebSocket<TcpStream>;

/// The upgrade request a well-behaved client sends for `path`.
pub fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {TEST_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// A TCP connection to `addr` with 5 s read and write timeouts.
pub fn connect_raw(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .expect("write timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Status line and headers of an HTTP answer.
#[derive(Debug, Clone)]
pub struct HttpHead {
    /// Status code.
    pub status: u16,
    /// The whole head as text, CRLFs included.
    pub text: String,
}

impl HttpHead {
    /// Value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.text.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then_some(value.trim())
        })
    }
}

/// Reads an HTTP answer head byte by byte (so no frame bytes after it are consumed).
pub fn read_head(stream: &mut TcpStream) -> std::io::Result<HttpHead> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        if raw.len() >= MAX_HEAD_BYTES || stream.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                format!("no complete HTTP head: {:?}", String::from_utf8_lossy(&raw)),
            ));
        }
        raw.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {text:?}")))?;
    Ok(HttpHead { status, text })
}

/// Sends `request` (any bytes) on a new connection and reads the answer head. Write
/// errors are ignored: the server may answer and stop reading before the request ends.
pub fn send_request(addr: SocketAddr, request: &[u8]) -> (TcpStream, HttpHead) {
    let mut stream = connect_raw(addr);
    let _ = stream.write_all(request);
    let head = read_head(&mut stream).expect("HTTP answer head");
    (stream, head)
}

/// Sends a good upgrade request for `path`; returns the stream and the answer status.
pub fn try_upgrade(addr: SocketAddr, path: &str) -> (TcpStream, u16) {
    let (stream, head) = send_request(addr, upgrade_request(path).as_bytes());
    (stream, head.status)
}

/// Completes a handshake for `path` by hand; the stream is left right after the 101 head.
pub fn raw_upgrade(addr: SocketAddr, path: &str) -> TcpStream {
    let (stream, status) = try_upgrade(addr, path);
    assert_eq!(status, 101, "upgrade of {path} refused");
    stream
}

/// Whether the server closes `stream` (EOF or reset) within `within`; data is discarded.
pub fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut sink = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("read timeout");
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

/// Frame bytes with first byte `first` (FIN, RSV bits, opcode), `payload`, and the mask
/// key `mask` when given.
fn frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut out = vec![first];
    match payload.len() {
        len @ 0..=125 => out.push(mask_bit | len as u8),
        len @ 126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A masked client frame: `first` is FIN | RSV | opcode (e.g. `0x81` = final text frame).
pub fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    frame(first, payload, Some([0x37, 0xfa, 0x21, 0x3d]))
}

/// An unmasked frame (what a server sends; a protocol error from a client).
pub fn unmasked_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    frame(first, payload, None)
}

/// One frame as the server sent it.
#[derive(Debug, Clone)]
pub struct ServerFrame {
    /// FIN | RSV | opcode byte.
    pub first: u8,
    /// Whether the mask bit was set (servers must not set it).
    pub masked: bool,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

impl ServerFrame {
    /// The opcode (low 4 bits of the first byte).
    pub fn opcode(&self) -> u8 {
        self.first & 0x0F
    }
}

/// Reads one frame from `stream` (within the stream's read timeout).
pub fn read_frame(stream: &mut TcpStream) -> std::io::Result<ServerFrame> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head)?;
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7F {
        126 => {
            let mut ext = [0u8; 2];
            stream.read_exact(&mut ext)?;
            u64::from(u16::from_be_bytes(ext))
        }
        127 => {
            let mut ext = [0u8; 8];
            stream.read_exact(&mut ext)?;
            u64::from_be_bytes(ext)
        }
        short => u64::from(short),
    };
    let mut key = [0u8; 4];
    if masked {
        stream.read_exact(&mut key)?;
    }
    let len = usize::try_from(len).map_err(std::io::Error::other)?;
    if len > 16 * 1024 * 1024 {
        return Err(std::io::Error::other(format!("frame of {len} bytes")));
    }
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload)?;
    if masked {
        payload
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b ^= key[i % 4]);
    }
    Ok(ServerFrame {
        first: head[0],
        masked,
        payload,
    })
}

/// Reads frames until a close frame and returns its code (1005 when it has none).
/// Other frames (pings, messages) are skipped. `None` when the connection ends or
/// `within` passes first.
pub fn read_close_code(stream: &mut TcpStream, within: Duration) -> Option<u16> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        stream.set_read_timeout(Some(left)).ok()?;
        let frame = read_frame(stream).ok()?;
        assert!(!frame.masked, "server sent a masked frame");
        if frame.opcode() == 0x8 {
            return Some(match frame.payload.get(..2) {
                Some(code) => u16::from_be_bytes([code[0], code[1]]),
                None => 1005,
            });
        }
    }
}

/// A tungstenite client for `path` at `addr` (5 s read timeout).
pub fn connect(addr: SocketAddr, path: &str) -> Client {
    let stream = connect_raw(addr);
    let url = format!("ws://{addr}{path}");
    let (ws, _) = tungstenite::client::client(url.as_str(), stream)
        .unwrap_or_else(|e| panic!("handshake for {path}: {e}"));
    ws
}

/// The next text, binary or close message within `within` (pings are answered and
/// skipped on the way). `Ok(None)` when none came in time.
pub fn next_message(ws: &mut Client, within: Duration) -> tungstenite::Result<Option<Message>> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        ws.get_mut().set_read_timeout(Some(left))?;
        match ws.read() {
            Ok(msg @ (Message::Text(_) | Message::Binary(_) | Message::Close(_))) => {
                return Ok(Some(msg));
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Makes sure `ws`, the only subscriber of `channel`, is live end to end: publishes
/// `sync-K` markers until the last one published arrives. Nothing is left in flight.
pub fn sync_subscriber(gateway: &Gateway, channel: &str, ws: &mut Client) {
    for k in 0..100 {
        let marker = format!("sync-{k}");
        assert_eq!(gateway.publish(channel, marker.as_bytes()), 202);
        while let Some(msg) = next_message(ws, Duration::from_millis(300)).expect("read") {
            match msg {
                Message::Text(text) if text.as_str() == marker => return,
                Message::Text(text) if text.starts_with("sync-") => {}
                other => panic!("unexpected message while syncing {channel}: {other:?}"),
            }
        }
    }
    panic!("subscriber of {channel} never received a publish");
}

/// Polls the sum of `name`'s series labelled `label` until `done` holds, or panics
/// after `secs`.
pub fn wait_labelled(
    gateway: &Gateway,
    name: &str,
    label: (&str, &str),
    secs: u64,
    done: impl Fn(f64) -> bool,
) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = 0.0;
    while Instant::now() < deadline {
        last = crate::metrics::sum_where(&gateway.metrics(), name, Some(label));
        if done(last) {
            return last;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{name}{{{}=\"{}\"}} stuck at {last}", label.0, label.1);
}

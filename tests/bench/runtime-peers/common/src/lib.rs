//! What the runtime peers share, so that they differ only in their runtime: the command
//! line, the hub that carries admin publishes to every runtime thread, SO_REUSEPORT
//! listeners, a blocking admin HTTP server (`POST /publish/<channel>`, `GET /metrics`), and
//! the per-connection WebSocket logic on `ringcast-proto` (handshake, frames, pongs, close,
//! echo).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use ringcast_proto::{
    Decoder, HandshakeStatus, Message, OpCode, Role, close_payload, code, encode_frame,
    parse_upgrade,
};
use socket2::{Domain, Protocol, Socket, Type};

/// Largest message accepted from a client.
const MAX_MESSAGE: usize = 1 << 20;
/// Listen backlog (the default 128 stalls ramps on SYN retransmits).
const BACKLOG: i32 = 4096;

/// `--listen IP:FIRST[-LAST] --admin IP:PORT --threads N`.
#[derive(Debug, Clone)]
pub struct Args {
    /// One address per listen port.
    pub listen: Vec<SocketAddr>,
    /// Admin HTTP address.
    pub admin: SocketAddr,
    /// Runtime threads (each binds every listen port with SO_REUSEPORT).
    pub threads: usize,
}

/// Parses the command line.
pub fn parse_args() -> Result<Args, String> {
    let argv: Vec<String> = std::env::args().collect();
    let value = |name: &str, default: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_owned())
    };
    let listen = value("--listen", "127.0.0.1:13000");
    let (ip, ports) = listen.rsplit_once(':').ok_or("--listen IP:FIRST[-LAST]")?;
    let ip: IpAddr = ip.parse().map_err(|_| "bad --listen IP")?;
    let (first, last) = match ports.split_once('-') {
        Some((a, b)) => (a.parse::<u16>(), b.parse::<u16>()),
        None => (ports.parse::<u16>(), ports.parse::<u16>()),
    };
    let (first, last) = (
        first.map_err(|_| "bad port")?,
        last.map_err(|_| "bad port")?,
    );
    Ok(Args {
        listen: (first..=last).map(|p| SocketAddr::new(ip, p)).collect(),
        admin: value("--admin", "127.0.0.1:9390")
            .parse()
            .map_err(|_| "bad --admin")?,
        threads: value("--threads", "2")
            .parse()
            .map_err(|_| "bad --threads")?,
    })
}

/// A published message: its channel and the frame, encoded once.
#[derive(Debug, Clone)]
pub struct Publish {
    /// Channel name.
    pub channel: Arc<str>,
    /// The unmasked frame.
    pub frame: Arc<Vec<u8>>,
}

/// Counters and the inboxes of the runtime threads.
#[derive(Debug)]
pub struct Hub {
    /// Open WebSocket connections.
    pub connections: AtomicI64,
    /// Frames handed to subscribers.
    pub delivered: AtomicU64,
    inboxes: Vec<flume::Sender<Publish>>,
}

impl Hub {
    /// A hub for `threads` runtime threads and their inboxes.
    pub fn new(threads: usize) -> (Arc<Hub>, Vec<flume::Receiver<Publish>>) {
        let (senders, receivers) = (0..threads.max(1)).map(|_| flume::unbounded()).unzip();
        let hub = Hub {
            connections: AtomicI64::new(0),
            delivered: AtomicU64::new(0),
            inboxes: senders,
        };
        (Arc::new(hub), receivers)
    }

    /// Encodes `body` once and sends it to every runtime thread.
    pub fn publish(&self, channel: &str, body: &[u8]) {
        let opcode = if std::str::from_utf8(body).is_ok() {
            OpCode::Text
        } else {
            OpCode::Binary
        };
        let mut frame = Vec::with_capacity(body.len() + 10);
        encode_frame(&mut frame, opcode, body, None);
        let publish = Publish {
            channel: Arc::from(channel),
            frame: Arc::new(frame),
        };
        for inbox in &self.inboxes {
            let _ = inbox.send(publish.clone());
        }
    }
}

/// A listener on `addr` with SO_REUSEPORT (one per thread and port) and a 4096 backlog.
pub fn reuseport_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Starts the blocking admin HTTP server on its own thread.
pub fn serve_admin(addr: SocketAddr, hub: Arc<Hub>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let hub = Arc::clone(&hub);
            std::thread::spawn(move || admin_connection(stream, &hub));
        }
    });
    Ok(())
}

fn admin_connection(mut stream: TcpStream, hub: &Hub) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let length: usize = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + length {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[end + 4..end + 4 + length].to_vec();
        buf.drain(..end + 4 + length);
        let mut parts = head.split(' ');
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let answer = match (method, path.strip_prefix("/publish/")) {
            ("POST", Some(channel)) => {
                hub.publish(channel, &body);
                "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n".to_owned()
            }
            ("GET", None) if path == "/metrics" => {
                let text = format!(
                    "# TYPE runtimepeer_connections gauge\nruntimepeer_connections {}\n\
                     # TYPE runtimepeer_messages_delivered_total counter\n\
                     runtimepeer_messages_delivered_total {}\n",
                    hub.connections.load(Ordering::Relaxed),
                    hub.delivered.load(Ordering::Relaxed)
                );
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                    text.len()
                )
            }
            _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_owned(),
        };
        if stream.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// Where an upgraded connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Subscriber of a channel.
    Channel(String),
    /// Echo.
    Echo,
}

/// Progress of a server handshake.
#[derive(Debug)]
pub enum Handshake {
    /// Need more bytes.
    Partial,
    /// Upgrade: send `response`; `consumed` bytes of the input were the request.
    Done {
        /// Route.
        route: Route,
        /// The 101 response.
        response: Vec<u8>,
        /// Request bytes.
        consumed: usize,
    },
    /// Not an upgrade we serve: send this answer and close.
    Failed(&'static [u8]),
}

/// Parses an upgrade request.
pub fn handshake(buf: &[u8]) -> Handshake {
    match parse_upgrade(buf) {
        Ok(HandshakeStatus::Partial) => Handshake::Partial,
        Ok(HandshakeStatus::Done(upgrade)) => {
            let route = match upgrade.route {
                ringcast_proto::Route::Echo => Route::Echo,
                ringcast_proto::Route::Channel(name) => Route::Channel(name),
                ringcast_proto::Route::Root => {
                    return Handshake::Failed(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                    );
                }
            };
            Handshake::Done {
                route,
                response: upgrade.response,
                consumed: upgrade.consumed,
            }
        }
        Err(_) => Handshake::Failed(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"),
    }
}

/// The frame side of one connection.
#[derive(Debug)]
pub struct Session {
    decoder: Decoder,
    echo: bool,
    /// A close was received (and answered) or the protocol was broken.
    pub closed: bool,
}

impl Session {
    /// A session; `echo` sends data messages back.
    pub fn new(echo: bool) -> Self {
        Self {
            decoder: Decoder::new(Role::Server, MAX_MESSAGE),
            echo,
            closed: false,
        }
    }

    /// Decodes client bytes; frames to send go to `out`.
    pub fn on_bytes(&mut self, input: &mut [u8], out: &mut Vec<u8>) {
        let echo = self.echo;
        let mut closed = false;
        let result = self.decoder.feed(input, &mut |message| match message {
            Message::Text(p) if echo => encode_frame(out, OpCode::Text, p, None),
            Message::Binary(p) if echo => encode_frame(out, OpCode::Binary, p, None),
            Message::Ping(p) => encode_frame(out, OpCode::Pong, p, None),
            Message::Close(frame) => {
                let reply = close_payload(frame.map_or(code::NORMAL, |f| f.code), "");
                encode_frame(out, OpCode::Close, &reply, None);
                closed = true;
            }
            _ => {}
        });
        if let Err(err) = result {
            encode_frame(
                out,
                OpCode::Close,
                &close_payload(err.close_code(), ""),
                None,
            );
            closed = true;
        }
        self.closed |= closed;
    }
}

/// Subscribers of one runtime thread, by channel: `(connection id, handle)`.
pub type Registry<C> = HashMap<String, Vec<(u64, C)>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_answers_pings_echoes_and_closes() {
        let mut client_frames = Vec::new();
        encode_frame(&mut client_frames, OpCode::Ping, b"p", Some([1, 2, 3, 4]));
        encode_frame(&mut client_frames, OpCode::Text, b"hi", Some([1, 2, 3, 4]));
        encode_frame(
            &mut client_frames,
            OpCode::Close,
            &close_payload(1000, ""),
            Some([9; 4]),
        );
        let mut out = Vec::new();
        let mut session = Session::new(true);
        session.on_bytes(&mut client_frames, &mut out);
        assert!(session.closed);
        let mut decoder = Decoder::new(Role::Client, 1024);
        let mut seen = Vec::new();
        decoder
            .feed(&mut out, &mut |m| seen.push(format!("{m:?}")))
            .unwrap();
        assert_eq!(seen.len(), 3, "{seen:?}");
    }

    #[test]
    fn handshake_routes() {
        let request = b"GET /news HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        match handshake(request) {
            Handshake::Done {
                route, consumed, ..
            } => {
                assert_eq!(route, Route::Channel("news".into()));
                assert_eq!(consumed, request.len());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            handshake(b"GET /x HTTP/1.1\r\n"),
            Handshake::Partial
        ));
        assert!(matches!(
            handshake(b"POST / HTTP/1.1\r\n\r\n"),
            Handshake::Failed(_)
        ));
    }
}

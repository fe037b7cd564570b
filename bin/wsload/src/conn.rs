//! One client connection of `wsload hold`: bind to its source IP, connect, do the WebSocket
//! handshake with `ringcast-proto`, then read frames (answering pings with masked pongs,
//! counting messages and checking sequence numbers) until the run stops it with a close 1000
//! or the server ends it. Reads land in one scratch buffer shared by all connections of the
//! worker, so an idle connection holds no read buffer.

use std::cell::RefCell;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringcast_proto::{
    ClientHandshakeStatus, Decoder, Message, OpCode, Role, client_request, close_payload, code,
    encode_frame, generate_key, parse_response,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::{sleep_until, timeout};

use crate::addr_plan::Assignment;
use crate::seq::{SeqEvent, SeqTracker, parse_seq};
use crate::stats::{ConnectFailure, HoldStats};

/// Largest message a connection accepts.
const MAX_MESSAGE_BYTES: usize = 16 << 20;
/// Size of the worker's shared read buffer.
const SCRATCH_BYTES: usize = 64 << 10;
/// Handshake read step.
const HANDSHAKE_READ_BYTES: usize = 1024;
/// How long a connection waits for the server's close answer after sending close 1000.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// What every connection task of one worker shares.
#[derive(Debug)]
pub struct Shared {
    /// The worker's counters.
    pub stats: HoldStats,
    scratch: RefCell<Box<[u8]>>,
    connect_timeout: Duration,
    expect_messages: Option<u64>,
}

impl Shared {
    /// Shared state for connections that must connect within `connect_timeout` and, when
    /// `expect_messages` is set, are complete after exactly that many messages.
    pub fn new(connect_timeout: Duration, expect_messages: Option<u64>) -> Self {
        Self {
            stats: HoldStats::default(),
            scratch: RefCell::new(vec![0; SCRATCH_BYTES].into_boxed_slice()),
            connect_timeout,
            expect_messages,
        }
    }
}

/// Runs one connection to its end. `permit` bounds connects in flight and is released once
/// the handshake is done or failed; `stop` turning `true` closes the connection.
pub async fn run(
    assignment: Assignment,
    seed: u64,
    shared: Rc<Shared>,
    permit: OwnedSemaphorePermit,
    stop: watch::Receiver<bool>,
) {
    let established = timeout(shared.connect_timeout, establish(assignment, seed)).await;
    drop(permit);
    let (stream, leftover) = match established {
        Ok(Ok(connection)) => connection,
        Ok(Err(failure)) => return shared.stats.failed(failure, 1),
        Err(_) => return shared.stats.failed(ConnectFailure::Timeout, 1),
    };
    let session = Session::new(&shared, seed);
    shared.stats.connected(session.state.awaiting);
    let (closed_by_server, awaiting) = session.hold(stream, leftover, stop).await;
    shared.stats.closed(closed_by_server, awaiting);
}

/// TCP connect from the assigned source IP, then the opening handshake. Returns the stream
/// and any bytes the server sent after its 101 response.
async fn establish(
    assignment: Assignment,
    seed: u64,
) -> Result<(TcpStream, Vec<u8>), ConnectFailure> {
    let mut stream = connect_from(assignment.source, assignment.dest)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::ConnectionRefused => ConnectFailure::Refused,
            ErrorKind::TimedOut => ConnectFailure::Timeout,
            _ => ConnectFailure::Other,
        })?;
    let _ = stream.set_nodelay(true);
    let key = generate_key(seed);
    let request = client_request(&assignment.host_header, &assignment.path, &key);
    drop(assignment);
    stream
        .write_all(&request)
        .await
        .map_err(|_| ConnectFailure::Handshake)?;
    let mut response = Vec::new();
    loop {
        response.reserve(HANDSHAKE_READ_BYTES);
        match stream.read_buf(&mut response).await {
            Ok(0) | Err(_) => return Err(ConnectFailure::Handshake),
            Ok(_) => {}
        }
        match parse_response(&response, &key) {
            Ok(ClientHandshakeStatus::Partial) => {}
            Ok(ClientHandshakeStatus::Done { consumed }) => {
                let leftover = response.split_off(consumed);
                return Ok((stream, leftover));
            }
            Err(_) => return Err(ConnectFailure::Handshake),
        }
    }
}

/// A non-blocking TCP connect bound to `source` (port chosen at connect time, see
/// [`defer_port_choice`]).
async fn connect_from(source: Ipv4Addr, dest: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    defer_port_choice(&socket)?;
    socket.bind(&SocketAddr::new(source.into(), 0).into())?;
    TcpSocket::from_std_stream(socket.into())
        .connect(dest)
        .await
}

/// Sets `IP_BIND_ADDRESS_NO_PORT`: without it, `bind(ip, 0)` picks the ephemeral port at bind
/// time, unique per source IP across all destinations (~28k per IP); with it the kernel picks
/// the port at connect time, unique per (source IP, destination), so each destination port
/// gets its own ~28k ports per source IP.
fn defer_port_choice(socket: &Socket) -> std::io::Result<()> {
    let enable: libc::c_int = 1;
    // SAFETY: the fd is a live socket owned by `socket`; the option value is a c_int that
    // outlives the call and its size is passed exactly.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const enable).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// One established connection: its decoder and everything the decoded frames change.
struct Session<'a> {
    decoder: Decoder,
    state: SessionState<'a>,
}

/// Per-connection counters and flags the frame handler updates.
struct SessionState<'a> {
    shared: &'a Shared,
    seq: SeqTracker,
    messages: u64,
    /// Frames to send (pongs, close), written after each read.
    out: Vec<u8>,
    mask_state: u64,
    /// Still waiting for `--expect-messages`.
    awaiting: bool,
    /// Counted in `conns_complete`.
    complete: bool,
    /// A gap or duplicate was seen.
    out_of_order: bool,
    /// The server sent close (or the socket ended) before wsload closed.
    closed_by_server: bool,
    /// wsload sent its close frame.
    close_sent: bool,
    /// A close frame arrived.
    close_received: bool,
}

/// What one read did.
enum ReadOutcome {
    /// Bytes decoded (or a spurious wake-up).
    Data,
    /// The socket ended (EOF or error).
    Ended,
    /// The server broke the protocol.
    ProtocolError,
}

impl<'a> Session<'a> {
    fn new(shared: &'a Shared, seed: u64) -> Self {
        let awaiting = shared.expect_messages.is_some_and(|m| m > 0);
        let complete = shared.expect_messages == Some(0);
        if complete {
            shared.stats.set_complete(true);
        }
        Self {
            decoder: Decoder::new(Role::Client, MAX_MESSAGE_BYTES),
            state: SessionState {
                shared,
                seq: SeqTracker::default(),
                messages: 0,
                out: Vec::new(),
                mask_state: seed | 1,
                awaiting,
                complete,
                out_of_order: false,
                closed_by_server: false,
                close_sent: false,
                close_received: false,
            },
        }
    }

    /// Runs the connection until it is closed; returns `(closed_by_server, still_awaiting)`.
    async fn hold(
        mut self,
        mut stream: TcpStream,
        mut leftover: Vec<u8>,
        mut stop: watch::Receiver<bool>,
    ) -> (bool, bool) {
        let outcome = if leftover.is_empty() {
            ReadOutcome::Data
        } else {
            self.decode(&mut leftover)
        };
        drop(leftover);
        if !matches!(outcome, ReadOutcome::ProtocolError) {
            self.exchange(&mut stream, &mut stop).await;
        }
        let state = self.state;
        (state.closed_by_server, state.awaiting)
    }

    async fn exchange(&mut self, stream: &mut TcpStream, stop: &mut watch::Receiver<bool>) {
        let mut stop_requested = *stop.borrow_and_update();
        let mut close_deadline = None;
        loop {
            let state = &mut self.state;
            if stop_requested && !state.close_sent && !state.close_received {
                state.queue_close(code::NORMAL);
                state.close_sent = true;
                close_deadline = Some(tokio::time::Instant::now() + CLOSE_GRACE);
            }
            if !state.out.is_empty() {
                if stream.write_all(&state.out).await.is_err() {
                    state.closed_by_server |= !state.close_sent;
                    return;
                }
                state.out.clear();
            }
            if state.close_received {
                return;
            }
            let outcome = tokio::select! {
                ready = stream.readable() => match ready {
                    Ok(()) => self.read(stream),
                    Err(_) => ReadOutcome::Ended,
                },
                changed = stop.changed(), if !stop_requested => {
                    stop_requested = changed.is_err() || *stop.borrow_and_update();
                    ReadOutcome::Data
                }
                () = sleep_until(close_deadline.unwrap_or_else(tokio::time::Instant::now)),
                    if close_deadline.is_some() => return,
            };
            match outcome {
                ReadOutcome::Data => {}
                ReadOutcome::Ended => {
                    self.state.closed_by_server |= !self.state.close_sent;
                    return;
                }
                ReadOutcome::ProtocolError => return,
            }
        }
    }

    /// Reads what the socket has into the shared scratch buffer and decodes it.
    fn read(&mut self, stream: &TcpStream) -> ReadOutcome {
        let shared = self.state.shared;
        let mut scratch = shared.scratch.borrow_mut();
        match stream.try_read(&mut scratch) {
            Ok(0) => ReadOutcome::Ended,
            Ok(n) => self.decode(&mut scratch[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => ReadOutcome::Data,
            Err(_) => ReadOutcome::Ended,
        }
    }

    fn decode(&mut self, input: &mut [u8]) -> ReadOutcome {
        let now = Instant::now();
        let state = &mut self.state;
        match self
            .decoder
            .feed(input, &mut |message| state.on_message(message, now))
        {
            Ok(()) => ReadOutcome::Data,
            Err(_) => {
                state.shared.stats.protocol_error();
                ReadOutcome::ProtocolError
            }
        }
    }
}

impl SessionState<'_> {
    fn on_message(&mut self, message: Message<'_>, now: Instant) {
        match message {
            Message::Text(payload) | Message::Binary(payload) => self.on_data(payload, now),
            Message::Ping(payload) => {
                self.shared.stats.ping();
                let mask = self.next_mask();
                encode_frame(&mut self.out, OpCode::Pong, payload, Some(mask));
            }
            Message::Pong(_) => {}
            Message::Close(frame) => {
                self.close_received = true;
                if !self.close_sent {
                    self.closed_by_server = true;
                    self.queue_close(frame.map_or(code::NORMAL, |f| f.code));
                }
            }
        }
    }

    fn on_data(&mut self, payload: &[u8], now: Instant) {
        let stats = &self.shared.stats;
        stats.message(payload.len(), now);
        self.messages += 1;
        if let Some(seq) = parse_seq(payload) {
            match self.seq.observe(seq) {
                SeqEvent::InOrder => {}
                SeqEvent::Gap(missing) => {
                    stats.seq_gap(missing);
                    self.out_of_order = true;
                }
                SeqEvent::Dup => {
                    stats.seq_dup();
                    self.out_of_order = true;
                }
            }
        }
        let Some(expected) = self.shared.expect_messages else {
            return;
        };
        if self.awaiting && self.messages >= expected {
            self.awaiting = false;
            stats.reached_expected();
        }
        let complete = self.messages == expected && !self.out_of_order;
        if complete != self.complete {
            self.complete = complete;
            stats.set_complete(complete);
        }
    }

    fn queue_close(&mut self, close_code: u16) {
        let mask = self.next_mask();
        encode_frame(
            &mut self.out,
            OpCode::Close,
            &close_payload(close_code, ""),
            Some(mask),
        );
    }

    /// xorshift64: masks need not be secret for a load tester, only non-constant.
    fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.mask_state = x;
        (x as u32).to_le_bytes()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ringcast_proto::{HandshakeStatus, parse_upgrade};
    use tokio::net::TcpListener;
    use tokio::sync::Semaphore;

    use super::*;

    /// Accepts one connection, completes the handshake and sends `first` right after the 101.
    async fn accept_and_upgrade(listener: &TcpListener, first: &[u8]) -> TcpStream {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let response = loop {
            request.reserve(1024);
            assert!(stream.read_buf(&mut request).await.unwrap() > 0);
            if let HandshakeStatus::Done(upgrade) = parse_upgrade(&request).unwrap() {
                break upgrade.response;
            }
        };
        let mut out = response;
        out.extend_from_slice(first);
        stream.write_all(&out).await.unwrap();
        stream
    }

    /// Reads frames from the client until `want` arrives; returns (opcode, payload) pairs.
    async fn read_client_frames(stream: &mut TcpStream, until: OpCode) -> Vec<(OpCode, Vec<u8>)> {
        let mut decoder = Decoder::new(Role::Server, 1 << 20);
        let mut frames = Vec::new();
        let mut buf = vec![0u8; 4096];
        while !frames.iter().any(|(op, _)| *op == until) {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "client closed early");
            decoder
                .feed(&mut buf[..n], &mut |m| {
                    frames.push(match m {
                        Message::Pong(p) => (OpCode::Pong, p.to_vec()),
                        Message::Close(c) => (
                            OpCode::Close,
                            c.map(|c| c.code.to_be_bytes().to_vec()).unwrap_or_default(),
                        ),
                        other => panic!("unexpected {other:?}"),
                    })
                })
                .unwrap();
        }
        frames
    }

    fn frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, opcode, payload, None);
        out
    }

    async fn start_client(
        listener: &TcpListener,
        shared: &Rc<Shared>,
        stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let dest = listener.local_addr().unwrap();
        let assignment = Assignment {
            dest,
            source: Ipv4Addr::LOCALHOST,
            host_header: dest.to_string(),
            path: "/news".to_owned(),
        };
        let permit = Arc::new(Semaphore::new(1)).acquire_owned().await.unwrap();
        tokio::task::spawn_local(run(assignment, 7, Rc::clone(shared), permit, stop))
    }

    fn local_test(test: impl Future<Output = ()>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&runtime, test);
    }

    #[test]
    fn counts_messages_answers_pings_and_closes_on_stop() {
        local_test(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let shared = Rc::new(Shared::new(Duration::from_secs(5), Some(3)));
            let (stop_tx, stop_rx) = watch::channel(false);
            let client = start_client(&listener, &shared, stop_rx).await;
            let mut first = frame(OpCode::Text, b"0:a");
            first.extend(frame(OpCode::Ping, b"hi"));
            first.extend(frame(OpCode::Binary, b"1:b"));
            let mut server = accept_and_upgrade(&listener, &first).await;
            server
                .write_all(&frame(OpCode::Text, b"3:c"))
                .await
                .unwrap();
            let frames = read_client_frames(&mut server, OpCode::Pong).await;
            assert_eq!(frames, vec![(OpCode::Pong, b"hi".to_vec())]);
            stop_tx.send_replace(true);
            let frames = read_client_frames(&mut server, OpCode::Close).await;
            assert_eq!(
                frames,
                vec![(OpCode::Close, 1000u16.to_be_bytes().to_vec())]
            );
            server
                .write_all(&frame(OpCode::Close, &close_payload(1000, "")))
                .await
                .unwrap();
            client.await.unwrap();
            let counts = shared.stats.counts();
            assert_eq!(counts.connected, 1);
            assert_eq!(counts.messages, 3);
            assert_eq!(counts.bytes, 9);
            assert_eq!(counts.pings, 1);
            assert_eq!(counts.seq_gaps, 1);
            assert_eq!(counts.seq_dups, 0);
            assert_eq!(counts.conns_complete, 0);
            assert_eq!(counts.closed_by_server, 0);
            assert_eq!(shared.stats.open(), 0);
            assert_eq!(shared.stats.awaiting(), 0);
        });
    }

    #[test]
    fn complete_connection_and_server_close() {
        local_test(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let shared = Rc::new(Shared::new(Duration::from_secs(5), Some(2)));
            let (_stop_tx, stop_rx) = watch::channel(false);
            let client = start_client(&listener, &shared, stop_rx).await;
            let mut server = accept_and_upgrade(&listener, &[]).await;
            let mut frames = frame(OpCode::Text, b"5:x");
            frames.extend(frame(OpCode::Text, b"6:y"));
            frames.extend(frame(OpCode::Close, &close_payload(1001, "bye")));
            server.write_all(&frames).await.unwrap();
            let echoed = read_client_frames(&mut server, OpCode::Close).await;
            assert_eq!(
                echoed,
                vec![(OpCode::Close, 1001u16.to_be_bytes().to_vec())]
            );
            client.await.unwrap();
            let counts = shared.stats.counts();
            assert_eq!(counts.messages, 2);
            assert_eq!(counts.conns_complete, 1);
            assert_eq!(counts.closed_by_server, 1);
        });
    }

    #[test]
    fn classifies_refused_and_bad_handshakes() {
        local_test(async {
            let shared = Rc::new(Shared::new(Duration::from_secs(5), None));
            let (_stop_tx, stop_rx) = watch::channel(false);
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let client = start_client(&listener, &shared, stop_rx.clone()).await;
            let (mut stream, _) = listener.accept().await.unwrap();
            stream
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            client.await.unwrap();
            drop(listener);
            let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let client = start_client(&closed, &shared, stop_rx).await;
            drop(closed);
            client.await.unwrap();
            let errors = shared.stats.connect_errors();
            assert_eq!(errors.handshake, 1);
            assert_eq!(errors.refused, 1);
            assert_eq!(shared.stats.counts().connected, 0);
        });
    }
}

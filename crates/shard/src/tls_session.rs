//! TLS on one connection, inside the shard: a rustls unbuffered server connection for
//! the handshake, then (when the configuration allows taking the keys over, as the
//! gateway's does) the shard's own record protection ([`record_layer`]), plus the
//! ciphertext that is waiting to be read or sent. No thread, no proxy, no task: the
//! shard feeds it the bytes its recv completions bring and takes the ciphertext its
//! sends hand to the kernel.
//!
//! An idle open session keeps only its traffic keys (and, for TLS 1.3, rustls's small
//! key-update state). `rx` is allocated only while a record is partial, `staged` and
//! `sending` only while ciphertext waits.
//!
//! Calling contract:
//! - [`TlsSession::receive`] with every received buffer (the buffer may be decrypted in
//!   place); application data is appended to `plain`, in order. Handshake records and
//!   alerts it produces are staged for sending. After an error nothing more may be fed:
//!   the shard drops the connection.
//! - While [`TlsSession::is_open`], [`TlsSession::encrypt`] turns plaintext into staged
//!   records; [`TlsSession::close_notify`] stages the closing alert once.
//! - To send: when [`TlsSession::has_unsent`], call [`TlsSession::begin_send`] and send
//!   exactly the slice it returns; it stays unchanged until [`TlsSession::sent`] reports
//!   how much the kernel took. Staging never touches the buffer in flight.

mod record_layer;

use record_layer::{Opened, RecordLayer};
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use std::sync::Arc;

/// The largest TLS record on the wire (16 KiB of data, 2 KiB of expansion, the header).
/// Undecodable bytes past this are an oversized record, or a handshake message far
/// larger than any real client sends.
const MAX_PENDING_CIPHERTEXT: usize = 16_384 + 2_048 + 5;
/// Steps one call may take beyond one per 5 bytes of input (the smallest record): each
/// step consumes a record or produces output.
const EXTRA_STEPS: usize = 64;
/// Ciphertext bytes a record adds to its plaintext at most (TLS 1.2 AES-GCM: header,
/// explicit nonce, tag).
const RECORD_OVERHEAD: usize = 29;
/// Plaintext bytes per record.
const MAX_FRAGMENT: usize = 16_384;

/// Why a session failed; each is a `reason` of `ringcast_handshake_failures_total` while
/// handshaking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsFailure {
    /// The first bytes were a plain HTTP request, not a TLS record.
    PlainHttp,
    /// The bytes were not TLS (or a record was malformed).
    NotTls,
    /// A record or handshake message larger than any client needs.
    Oversized,
    /// The client offers nothing this server accepts (versions, ciphers, ALPN).
    Incompatible,
    /// Any other TLS error (bad MAC, unexpected message, a certificate problem).
    Error,
}

impl TlsFailure {
    /// Every failure, for exporting each label at 0 from startup.
    pub(crate) const ALL: [TlsFailure; 5] = [
        TlsFailure::PlainHttp,
        TlsFailure::NotTls,
        TlsFailure::Oversized,
        TlsFailure::Incompatible,
        TlsFailure::Error,
    ];

    /// The `reason` label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            TlsFailure::PlainHttp => "tls_plain_http",
            TlsFailure::NotTls => "tls_not_tls",
            TlsFailure::Oversized => "tls_oversized",
            TlsFailure::Incompatible => "tls_incompatible",
            TlsFailure::Error => "tls_error",
        }
    }

    fn of(err: &rustls::Error) -> Self {
        match err {
            rustls::Error::InvalidMessage(_) => TlsFailure::NotTls,
            rustls::Error::PeerIncompatible(_) | rustls::Error::NoApplicationProtocol => {
                TlsFailure::Incompatible
            }
            _ => TlsFailure::Error,
        }
    }
}

/// How a handshake authenticated the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandshakeKind {
    /// With the certificate and a signature.
    Full,
    /// From a session ticket the client kept.
    Resumed,
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Handshake records flow; no application data yet.
    Handshaking,
    /// Application data flows both ways.
    Open,
    /// The closing alert is staged: nothing more is encrypted.
    CloseNotified,
    /// Failed (any alert for it is staged); nothing more is processed.
    Failed,
}

/// Who protects the records.
enum Engine {
    /// rustls: through the handshake, and after it when the configuration does not allow
    /// taking the keys over (`enable_secret_extraction` off).
    Rustls(Box<UnbufferedServerConnection>),
    /// The shard's own record layer, after the handshake.
    Records(RecordLayer),
    /// Taking the keys over failed; the session has failed.
    Spent,
}

/// One connection's TLS state (see the module doc).
pub(crate) struct TlsSession {
    engine: Engine,
    /// Whether the keys are taken over once the handshake is done.
    take_over: bool,
    stage: Stage,
    /// Received ciphertext not consumed yet (a partial record).
    rx: Vec<u8>,
    /// Ciphertext waiting for the next send.
    staged: Vec<u8>,
    /// The ciphertext of the send in flight (or partly sent); never changed while the
    /// kernel may read it.
    sending: Vec<u8>,
    /// How much of `sending` the kernel has taken.
    sent: usize,
    /// The peer's close_notify arrived (it may still read what we send).
    peer_closed: bool,
}

impl TlsSession {
    /// A session that will handshake with `config`.
    pub(crate) fn new(config: &Arc<rustls::ServerConfig>) -> Result<Self, TlsFailure> {
        let conn =
            UnbufferedServerConnection::new(Arc::clone(config)).map_err(|e| TlsFailure::of(&e))?;
        Ok(TlsSession {
            engine: Engine::Rustls(Box::new(conn)),
            take_over: config.enable_secret_extraction,
            stage: Stage::Handshaking,
            rx: Vec::new(),
            staged: Vec::new(),
            sending: Vec::new(),
            sent: 0,
            peer_closed: false,
        })
    }

    /// Whether application data may be encrypted.
    pub(crate) fn is_open(&self) -> bool {
        self.stage == Stage::Open
    }

    /// Whether ciphertext waits to be sent (staged or the rest of a partial send).
    pub(crate) fn has_unsent(&self) -> bool {
        self.sent < self.sending.len() || !self.staged.is_empty()
    }

    /// Feeds received ciphertext (see the module doc). `Ok(Some(kind))` when the
    /// handshake completed during this call. Once the session failed, said
    /// close_notify, or heard the peer's, input is dropped: nothing after it matters,
    /// and rustls must not process a record after an alert it sent.
    pub(crate) fn receive(
        &mut self,
        data: &mut [u8],
        plain: &mut Vec<u8>,
    ) -> Result<Option<HandshakeKind>, TlsFailure> {
        if matches!(self.stage, Stage::Failed | Stage::CloseNotified) || self.peer_closed {
            self.rx = Vec::new();
            return Ok(None);
        }
        if self.stage == Stage::Handshaking && self.rx.is_empty() && looks_like_http(data) {
            self.stage = Stage::Failed;
            self.staged.extend_from_slice(PLAIN_HTTP_ANSWER);
            return Err(TlsFailure::PlainHttp);
        }
        let was_handshaking = self.stage == Stage::Handshaking;
        let mut result = self.feed(data, plain);
        let mut opened = None;
        if result.is_ok() && was_handshaking && self.stage == Stage::Open {
            let Engine::Rustls(conn) = &self.engine else {
                return Err(TlsFailure::Error);
            };
            opened = Some(match conn.handshake_kind() {
                Some(rustls::HandshakeKind::Resumed) => HandshakeKind::Resumed,
                _ => HandshakeKind::Full,
            });
            if self.take_over {
                // rustls was given nothing past the record that finished the handshake:
                // what follows in this receive is the record layer's.
                result = self
                    .take_over_records()
                    .and_then(|()| self.feed(&mut [], plain));
            }
        }
        if let Err(failure) = result {
            // No alert: asking rustls for it after an error indexes into the buffer
            // the error came from (a panic with an empty one, a debug assertion with
            // the same one). The FIN tells the client enough.
            self.stage = Stage::Failed;
            self.rx = Vec::new();
            return Err(failure);
        }
        if self.rx.len() > MAX_PENDING_CIPHERTEXT {
            self.stage = Stage::Failed;
            self.rx = Vec::new();
            return Err(TlsFailure::Oversized);
        }
        Ok(opened)
    }

    /// Processes `data` after what `rx` holds; keeps only a partial record's bytes.
    fn feed(&mut self, data: &mut [u8], plain: &mut Vec<u8>) -> Result<(), TlsFailure> {
        if self.rx.is_empty() {
            // The common case: whole records in this buffer, decrypted where they are.
            let consumed = self.process(data, plain)?;
            self.rx.extend_from_slice(&data[consumed..]);
        } else {
            self.rx.extend_from_slice(data);
            let mut rx = std::mem::take(&mut self.rx);
            let consumed = self.process(&mut rx, plain)?;
            rx.drain(..consumed);
            self.rx = if rx.is_empty() { Vec::new() } else { rx };
        }
        Ok(())
    }

    /// Hands the record protection from rustls to the shard's record layer (the
    /// handshake is done and everything rustls had to send is staged).
    fn take_over_records(&mut self) -> Result<(), TlsFailure> {
        let Engine::Rustls(conn) = std::mem::replace(&mut self.engine, Engine::Spent) else {
            return Err(TlsFailure::Error);
        };
        let records = (*conn)
            .dangerous_into_kernel_connection()
            .map_err(|_| TlsFailure::Error)
            .and_then(|(secrets, kernel)| RecordLayer::new(secrets, kernel));
        match records {
            Ok(records) => {
                self.engine = Engine::Records(records);
                Ok(())
            }
            Err(failure) => {
                self.stage = Stage::Failed;
                Err(failure)
            }
        }
    }

    /// Encrypts `plain` into staged records. Fails once a TLS 1.2 connection's sequence
    /// numbers are spent (2^24 records with AES-GCM): the connection is then closed and
    /// the client reconnects.
    pub(crate) fn encrypt(&mut self, plain: &[u8]) -> Result<(), TlsFailure> {
        if self.stage != Stage::Open || plain.is_empty() {
            return Ok(());
        }
        if let Engine::Records(records) = &mut self.engine {
            return records.seal(plain, &mut self.staged);
        }
        let reserve = plain.len() + plain.len().div_ceil(MAX_FRAGMENT) * RECORD_OVERHEAD + 64;
        self.write_traffic(reserve, |w, out| w.encrypt(plain, out))
    }

    /// Stages the closing alert (once; nothing is encrypted after it). False when
    /// nothing was staged (not open, or rustls refused).
    pub(crate) fn close_notify(&mut self) -> bool {
        if self.stage != Stage::Open {
            return false;
        }
        self.stage = Stage::CloseNotified;
        if let Engine::Records(records) = &mut self.engine {
            return records.seal_close_notify(&mut self.staged).is_ok();
        }
        self.write_traffic(64, |w, out| w.queue_close_notify(out))
            .is_ok()
    }

    /// The ciphertext to send now: the rest of a partly sent buffer, or everything
    /// staged. Valid and unchanged until [`TlsSession::sent`].
    pub(crate) fn begin_send(&mut self) -> &[u8] {
        if self.sent >= self.sending.len() {
            self.sending.clear();
            self.sent = 0;
            std::mem::swap(&mut self.sending, &mut self.staged);
        }
        &self.sending[self.sent..]
    }

    /// The kernel took `written` bytes of the send in flight; buffers that emptied are
    /// freed, so an idle session holds none.
    pub(crate) fn sent(&mut self, written: usize) {
        self.sent += written;
        if self.sent >= self.sending.len() {
            self.sending = Vec::new();
            self.sent = 0;
        }
    }

    /// Runs rustls over `buf` (received ciphertext, possibly with a partial record at
    /// its end); returns how many bytes it consumed. Application data goes to `plain`,
    /// handshake output to `staged`.
    fn process(&mut self, buf: &mut [u8], plain: &mut Vec<u8>) -> Result<usize, TlsFailure> {
        let conn = match &mut self.engine {
            Engine::Rustls(conn) => conn,
            Engine::Records(records) => {
                return match records.open(buf, plain)? {
                    Opened::Partial(rest) => Ok(buf.len() - rest),
                    Opened::PeerClosed => {
                        self.peer_closed = true;
                        Ok(buf.len())
                    }
                };
            }
            Engine::Spent => return Err(TlsFailure::Error),
        };
        // While a handshake that hands the records over runs, rustls sees one more whole
        // record at a time, so it stops at the record that finishes the handshake: a
        // post-handshake message right behind it (a KeyUpdate) must reach the record
        // layer, not rustls, whose answer to it would be lost in the handover.
        let windowed = self.take_over && self.stage == Stage::Handshaking;
        let mut window = match windowed {
            true => record_end(buf, 0).unwrap_or(buf.len()),
            false => buf.len(),
        };
        let total = buf.len();
        let mut consumed = 0;
        for _ in 0..buf.len() / 5 + EXTRA_STEPS {
            let UnbufferedStatus { discard, state } =
                conn.process_tls_records(&mut buf[consumed..window]);
            let mut done = false;
            let mut widen = false;
            match state.map_err(|e| TlsFailure::of(&e))? {
                ConnectionState::ReadTraffic(mut records) => {
                    let mut records_discard = 0;
                    while let Some(record) = records.next_record() {
                        let record = record.map_err(|e| TlsFailure::of(&e))?;
                        records_discard += record.discard;
                        plain.extend_from_slice(record.payload);
                    }
                    consumed += records_discard;
                }
                ConnectionState::EncodeTlsData(mut encoder) => {
                    append(&mut self.staged, 512, |out| {
                        encoder.encode(out).map_err(|e| match e {
                            EncodeError::InsufficientSize(s) => Grow(s.required_size),
                            EncodeError::AlreadyEncoded => Grow(0),
                        })
                    })?;
                }
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                ConnectionState::BlockedHandshake if window < total => widen = true,
                ConnectionState::BlockedHandshake => done = true,
                ConnectionState::WriteTraffic(_) => {
                    if self.stage == Stage::Handshaking {
                        self.stage = Stage::Open;
                    }
                    done = true;
                }
                ConnectionState::Closed => done = true,
                ConnectionState::PeerClosed => {
                    // rustls keeps whatever follows the peer's close_notify without
                    // consuming it: stop here and drop the rest.
                    self.peer_closed = true;
                    return Ok(buf.len());
                }
                // Early data is off.
                _ => {}
            }
            consumed += discard;
            if widen {
                window = record_end(buf, window).unwrap_or(total);
            }
            if done {
                return Ok(consumed);
            }
        }
        Err(TlsFailure::Error)
    }

    /// Reaches the `WriteTraffic` state (with the partial record kept, if any) and
    /// appends what `write` produces to `staged`.
    fn write_traffic(
        &mut self,
        reserve: usize,
        mut write: impl FnMut(
            &mut rustls::unbuffered::WriteTraffic<'_, rustls::server::ServerConnectionData>,
            &mut [u8],
        ) -> Result<usize, EncryptError>,
    ) -> Result<(), TlsFailure> {
        let Engine::Rustls(conn) = &mut self.engine else {
            return Err(TlsFailure::Error);
        };
        // `rx` holds at most a partial record (receive consumed every whole one), so
        // this consumes nothing.
        let UnbufferedStatus { discard, state } = conn.process_tls_records(&mut self.rx);
        debug_assert_eq!(discard, 0);
        let Ok(ConnectionState::WriteTraffic(mut traffic)) = state else {
            return Err(TlsFailure::Error);
        };
        append(&mut self.staged, reserve, |out| {
            write(&mut traffic, out).map_err(|e| match e {
                EncryptError::InsufficientSize(s) => Grow(s.required_size),
                _ => Grow(0),
            })
        })
    }
}

/// "Make room for this many bytes and call again" (0: give up).
struct Grow(usize);

/// Appends what `write` puts into a slice of spare room at the end of `buf`, growing
/// the room when it asks for more (once).
fn append(
    buf: &mut Vec<u8>,
    reserve: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, Grow>,
) -> Result<(), TlsFailure> {
    let start = buf.len();
    let mut room = reserve;
    for _ in 0..2 {
        buf.resize(start + room, 0);
        match write(&mut buf[start..]) {
            Ok(written) => {
                buf.truncate(start + written);
                return Ok(());
            }
            Err(Grow(needed)) if needed > room => room = needed,
            Err(_) => break,
        }
    }
    buf.truncate(start);
    Err(TlsFailure::Error)
}

/// The end of the whole record that starts at `from`, if it is all in `buf`.
fn record_end(buf: &[u8], from: usize) -> Option<usize> {
    let header = buf.get(from..from + 5)?;
    let end = from + 5 + usize::from(u16::from_be_bytes([header[3], header[4]]));
    (end <= buf.len()).then_some(end)
}

/// What a client that speaks plain HTTP to a TLS port is told, in clear.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
Content-Length: 45\r\nConnection: close\r\n\r\nThis port speaks TLS: use https:// or wss://\n";

/// Whether the first bytes of a connection are an HTTP request line (a method in
/// capitals) rather than a TLS record (whose first byte, the content type, is 20-24).
fn looks_like_http(data: &[u8]) -> bool {
    data.len() >= 3 && data[..3].iter().all(u8::is_ascii_uppercase)
}

#[cfg(test)]
mod tests;

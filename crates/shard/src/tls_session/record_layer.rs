//! Record protection after the handshake, done by the shard itself so that an idle TLS
//! connection keeps only its traffic keys (two keys and IVs, about 100 bytes) instead of
//! rustls's connection (about 3.5 KB with its AEAD key schedules and deframer). rustls
//! runs the handshake, then hands over the traffic keys and sequence numbers
//! (`dangerous_into_kernel_connection`, the step kTLS would take too) and keeps, for TLS
//! 1.3 only, the small `KernelConnection` that derives the next keys on a key update.
//!
//! The AEAD key schedule is built on the stack for each call (a batch of frames to seal,
//! a receive to open): a few hundred nanoseconds, against keeping 560 bytes per key per
//! connection.
//!
//! Formats (the AEADs are ring's, the ones rustls negotiated):
//! - TLS 1.3 (RFC 8446 §5.2): outer type 23, version 0x0303, the record header as AAD,
//!   nonce = IV xor sequence number, inner plaintext = content ‖ real type (no padding
//!   sent; any received is stripped).
//! - TLS 1.2 AES-GCM (RFC 5288): 8-byte explicit nonce (the low 8 bytes of IV xor
//!   sequence number) before the ciphertext, nonce = IV[..4] ‖ explicit; TLS 1.2
//!   ChaCha20-Poly1305 (RFC 7905): nonce = IV xor sequence number, nothing explicit.
//!   AAD = sequence number ‖ type ‖ version ‖ plaintext length.
//!
//! What may arrive after the handshake: application data, `close_notify` (the peer is
//! done), `user_canceled` and TLS 1.2 warning alerts (ignored), and in TLS 1.3 a
//! `KeyUpdate` (new receive keys; when the peer asks, our own `KeyUpdate` goes out
//! before our next record). Anything else — another alert, a handshake message, a
//! ChangeCipherSpec, a record that does not authenticate, an oversized record — fails
//! the connection, and so do more than [`MAX_RECORDS_WITHOUT_DATA`] key updates,
//! ignored alerts or empty records in a row (rustls's limits: each costs a key
//! schedule or a record's work for no data). Sending stops at the AES-GCM
//! confidentiality limit: TLS 1.3 updates its keys first, TLS 1.2 fails (the client
//! reconnects) but still says close_notify.

use super::TlsFailure;
use ring::aead::{self, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;
use rustls::{ConnectionTrafficSecrets, ExtractedSecrets, ProtocolVersion};

/// Record header bytes.
const HEADER: usize = 5;
/// AEAD tag bytes (all three ciphers).
const TAG: usize = 16;
/// TLS 1.2 AES-GCM explicit nonce bytes.
const EXPLICIT: usize = 8;
/// Plaintext bytes per record.
const MAX_FRAGMENT: usize = 16_384;
/// Records sealed under one AES-GCM key before it is replaced (TLS 1.3) or the
/// connection ends (TLS 1.2): below RFC 8446 §5.5's 2^24.5.
const AES_GCM_RECORD_LIMIT: u64 = 1 << 23;

/// Records in a row that carry no application data (key updates, ignored alerts, empty
/// records) before the connection is failed.
const MAX_RECORDS_WITHOUT_DATA: u8 = 32;

const APPLICATION_DATA: u8 = 23;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const KEY_UPDATE: u8 = 24;
const CLOSE_NOTIFY: u8 = 0;
const USER_CANCELED: u8 = 90;

/// What [`RecordLayer::open`] found besides application data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opened {
    /// Every whole record was read; this many bytes (a partial record) remain.
    Partial(usize),
    /// The peer's close_notify: nothing after it is read.
    PeerClosed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cipher {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

impl Cipher {
    fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Cipher::Aes128Gcm => &aead::AES_128_GCM,
            Cipher::Aes256Gcm => &aead::AES_256_GCM,
            Cipher::Chacha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }

    fn record_limit(self) -> u64 {
        match self {
            Cipher::Aes128Gcm | Cipher::Aes256Gcm => AES_GCM_RECORD_LIMIT,
            Cipher::Chacha20Poly1305 => u64::MAX,
        }
    }
}

/// One direction's key, IV and next sequence number.
struct Keys {
    cipher: Cipher,
    key: [u8; 32],
    key_len: u8,
    iv: [u8; NONCE_LEN],
    seq: u64,
}

impl Keys {
    fn new((seq, secrets): (u64, ConnectionTrafficSecrets)) -> Result<Keys, TlsFailure> {
        let (cipher, key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (Cipher::Aes128Gcm, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (Cipher::Aes256Gcm, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (Cipher::Chacha20Poly1305, key, iv)
            }
            _ => return Err(TlsFailure::Incompatible),
        };
        let bytes = key.as_ref();
        let mut keys = Keys {
            cipher,
            key: [0; 32],
            key_len: bytes.len() as u8,
            iv: [0; NONCE_LEN],
            seq,
        };
        keys.key[..bytes.len()].copy_from_slice(bytes);
        keys.iv.copy_from_slice(iv.as_ref());
        Ok(keys)
    }

    /// The expanded key, built for this call.
    fn aead(&self) -> Result<LessSafeKey, TlsFailure> {
        UnboundKey::new(
            self.cipher.algorithm(),
            &self.key[..usize::from(self.key_len)],
        )
        .map(LessSafeKey::new)
        .map_err(|_| TlsFailure::Error)
    }

    /// IV xor the sequence number (left-padded to the nonce's length).
    fn nonce_bytes(&self, seq: u64) -> [u8; NONCE_LEN] {
        let mut nonce = self.iv;
        for (n, s) in nonce[NONCE_LEN - 8..].iter_mut().zip(seq.to_be_bytes()) {
            *n ^= s;
        }
        nonce
    }

    /// Takes the next sequence number.
    fn next_seq(&mut self) -> Result<u64, TlsFailure> {
        let seq = self.seq;
        self.seq = seq.checked_add(1).ok_or(TlsFailure::Error)?;
        Ok(seq)
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        // Best effort, so the key does not outlive the connection in freed memory;
        // `black_box` keeps the compiler from dropping the dead store.
        self.key = [0; 32];
        std::hint::black_box(&self.key);
    }
}

/// The protocol version and what it needs for key updates.
enum Version {
    Tls12,
    /// Boxed: derives the next traffic keys on a key update.
    Tls13(Box<KernelConnection<ServerConnectionData>>),
}

/// Record protection for one open connection (see the module doc).
pub(crate) struct RecordLayer {
    version: Version,
    tx: Keys,
    rx: Keys,
    /// The peer asked for a key update: ours goes out before our next record.
    tx_update_due: bool,
    /// Records received in a row without application data.
    without_data: u8,
}

impl RecordLayer {
    /// Takes over from a finished handshake.
    pub(crate) fn new(
        secrets: ExtractedSecrets,
        kernel: KernelConnection<ServerConnectionData>,
    ) -> Result<Self, TlsFailure> {
        let version = match kernel.protocol_version() {
            ProtocolVersion::TLSv1_3 => Version::Tls13(Box::new(kernel)),
            ProtocolVersion::TLSv1_2 => Version::Tls12,
            _ => return Err(TlsFailure::Incompatible),
        };
        Ok(RecordLayer {
            version,
            tx: Keys::new(secrets.tx)?,
            rx: Keys::new(secrets.rx)?,
            tx_update_due: false,
            without_data: 0,
        })
    }

    /// Seals `plain` as application data records (at most 16 KiB each) appended to `out`.
    pub(crate) fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), TlsFailure> {
        let mut key = self.tx.aead()?;
        out.reserve(
            plain.len() + plain.len().div_ceil(MAX_FRAGMENT) * (HEADER + EXPLICIT + TAG + 1),
        );
        for chunk in plain.chunks(MAX_FRAGMENT) {
            self.update_tx_if_due(&mut key, out)?;
            self.seal_record(&key, APPLICATION_DATA, chunk, out)?;
        }
        Ok(())
    }

    /// Seals the close_notify alert (under a TLS 1.2 key at its limit too: one record
    /// past a limit set well below the real one, so the client sees a clean end).
    pub(crate) fn seal_close_notify(&mut self, out: &mut Vec<u8>) -> Result<(), TlsFailure> {
        let mut key = self.tx.aead()?;
        if matches!(self.version, Version::Tls13(_)) {
            self.update_tx_if_due(&mut key, out)?;
        }
        self.seal_record(&key, ALERT, &[1, CLOSE_NOTIFY], out)
    }

    /// A TLS 1.3 key update, when the peer asked for one or the key is worn out: our
    /// `KeyUpdate` under the old key, then the new key. A TLS 1.2 key past its limit
    /// fails the connection.
    fn update_tx_if_due(
        &mut self,
        key: &mut LessSafeKey,
        out: &mut Vec<u8>,
    ) -> Result<(), TlsFailure> {
        let worn_out = self.tx.seq >= self.tx.cipher.record_limit();
        if !self.tx_update_due && !worn_out {
            return Ok(());
        }
        let Version::Tls13(kernel) = &mut self.version else {
            return Err(TlsFailure::Error);
        };
        // KeyUpdate(update_not_requested): type, 24-bit length 1, the flag.
        let message = [KEY_UPDATE, 0, 0, 1, 0];
        let (seq, secrets) = kernel.update_tx_secret().map_err(|_| TlsFailure::Error)?;
        self.seal_record(key, HANDSHAKE, &message, out)?;
        self.tx = Keys::new((seq, secrets))?;
        *key = self.tx.aead()?;
        self.tx_update_due = false;
        Ok(())
    }

    fn seal_record(
        &mut self,
        key: &LessSafeKey,
        typ: u8,
        content: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), TlsFailure> {
        let seq = self.tx.next_seq()?;
        let nonce = self.tx.nonce_bytes(seq);
        let start = out.len();
        match self.version {
            Version::Tls13(_) => {
                let len = content.len() + 1 + TAG;
                let header = [APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
                out.extend_from_slice(&header);
                out.extend_from_slice(content);
                out.push(typ);
                let tag = key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(header),
                        &mut out[start + HEADER..],
                    )
                    .map_err(|_| TlsFailure::Error)?;
                out.extend_from_slice(tag.as_ref());
            }
            Version::Tls12 => {
                let explicit = if self.tx.cipher == Cipher::Chacha20Poly1305 {
                    0
                } else {
                    EXPLICIT
                };
                let len = explicit + content.len() + TAG;
                out.extend_from_slice(&[typ, 3, 3, (len >> 8) as u8, len as u8]);
                out.extend_from_slice(&nonce[NONCE_LEN - explicit..]);
                out.extend_from_slice(content);
                let aad = tls12_aad(seq, typ, content.len());
                let tag = key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad),
                        &mut out[start + HEADER + explicit..],
                    )
                    .map_err(|_| TlsFailure::Error)?;
                out.extend_from_slice(tag.as_ref());
            }
        }
        Ok(())
    }

    /// Opens every whole record at the front of `buf` in place, appending application
    /// data to `plain`.
    pub(crate) fn open(
        &mut self,
        buf: &mut [u8],
        plain: &mut Vec<u8>,
    ) -> Result<Opened, TlsFailure> {
        let max_len = match self.version {
            Version::Tls13(_) => MAX_FRAGMENT + 256,
            Version::Tls12 => MAX_FRAGMENT + 2_048,
        };
        let mut key = None;
        let mut pos = 0;
        while buf.len() - pos >= HEADER {
            let header: [u8; HEADER] = buf[pos..pos + HEADER]
                .try_into()
                .map_err(|_| TlsFailure::Error)?;
            let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
            if header[1] != 3 {
                return Err(TlsFailure::Error);
            }
            if len > max_len {
                return Err(TlsFailure::Oversized);
            }
            if buf.len() - pos - HEADER < len {
                break;
            }
            let record = &mut buf[pos + HEADER..pos + HEADER + len];
            pos += HEADER + len;
            let aead = match &key {
                Some(aead) => aead,
                None => key.insert(self.rx.aead()?),
            };
            let (typ, content) = self.open_record(aead, header, record)?;
            if typ == APPLICATION_DATA && !content.is_empty() {
                self.without_data = 0;
            } else {
                self.without_data += 1;
                if self.without_data > MAX_RECORDS_WITHOUT_DATA {
                    return Err(TlsFailure::Error);
                }
            }
            match typ {
                APPLICATION_DATA => plain.extend_from_slice(content),
                ALERT => match (content, &self.version) {
                    ([_, CLOSE_NOTIFY], _) => return Ok(Opened::PeerClosed),
                    ([_, USER_CANCELED], _) | ([1, _], Version::Tls12) => {}
                    _ => return Err(TlsFailure::Error),
                },
                HANDSHAKE => {
                    if self.key_update(content)? {
                        key = None;
                    }
                }
                _ => return Err(TlsFailure::Error),
            }
        }
        Ok(Opened::Partial(buf.len() - pos))
    }

    /// Decrypts one record; returns its real content type and content.
    fn open_record<'a>(
        &mut self,
        key: &LessSafeKey,
        header: [u8; HEADER],
        record: &'a mut [u8],
    ) -> Result<(u8, &'a [u8]), TlsFailure> {
        let seq = self.rx.next_seq()?;
        match self.version {
            Version::Tls13(_) => {
                if header[0] != APPLICATION_DATA {
                    return Err(TlsFailure::Error);
                }
                let nonce = self.rx.nonce_bytes(seq);
                let inner = key
                    .open_in_place(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(header),
                        record,
                    )
                    .map_err(|_| TlsFailure::Error)?;
                let end = inner
                    .iter()
                    .rposition(|&b| b != 0)
                    .ok_or(TlsFailure::Error)?;
                Ok((inner[end], &inner[..end]))
            }
            Version::Tls12 => {
                let typ = header[0];
                let nonce = if self.rx.cipher == Cipher::Chacha20Poly1305 {
                    self.rx.nonce_bytes(seq)
                } else {
                    let explicit = record.get(..EXPLICIT).ok_or(TlsFailure::Error)?;
                    let mut nonce = self.rx.iv;
                    nonce[NONCE_LEN - EXPLICIT..].copy_from_slice(explicit);
                    nonce
                };
                let explicit = if self.rx.cipher == Cipher::Chacha20Poly1305 {
                    0
                } else {
                    EXPLICIT
                };
                let sealed = &mut record[explicit..];
                let plain_len = sealed.len().checked_sub(TAG).ok_or(TlsFailure::Error)?;
                let aad = tls12_aad(seq, typ, plain_len);
                let content = key
                    .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), sealed)
                    .map_err(|_| TlsFailure::Error)?;
                Ok((typ, content))
            }
        }
    }

    /// A handshake record after the handshake: only a TLS 1.3 `KeyUpdate` is accepted
    /// (the receive keys change at once). True when the keys changed.
    fn key_update(&mut self, content: &[u8]) -> Result<bool, TlsFailure> {
        let Version::Tls13(kernel) = &mut self.version else {
            return Err(TlsFailure::Error);
        };
        let requested = match content {
            [KEY_UPDATE, 0, 0, 1, flag @ (0 | 1)] => *flag == 1,
            _ => return Err(TlsFailure::Error),
        };
        let next = kernel.update_rx_secret().map_err(|_| TlsFailure::Error)?;
        self.rx = Keys::new(next)?;
        self.tx_update_due |= requested;
        Ok(true)
    }
}

/// TLS 1.2 additional data: sequence number, type, version, plaintext length.
fn tls12_aad(seq: u64, typ: u8, len: usize) -> [u8; 13] {
    let mut aad = [0; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8] = typ;
    aad[9] = 3;
    aad[10] = 3;
    aad[11..].copy_from_slice(&(len as u16).to_be_bytes());
    aad
}

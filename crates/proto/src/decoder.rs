//! Incremental frame and message decoder (RFC 6455 5): validates frame headers, unmasks
//! payloads in place, reassembles fragmented messages, validates text and close frames,
//! and inflates permessage-deflate messages (RFC 7692) once that extension is enabled.
//!
//! The decoder is small and holds no heap memory between messages: a trailing partial
//! frame and a fragmented message are buffered only while they are incomplete, and a
//! compressed message is inflated by an inflater that lives only while it is inflated.

use std::mem;

use crate::close::is_valid_received_code;
use crate::deflate::{inflate_message, max_compressed_len};
use crate::error::ProtocolError;
use crate::frame::{MAX_CONTROL_PAYLOAD, MAX_SHORT_LEN, OpCode, RSV1, apply_mask};
use crate::utf8::Utf8Validator;

/// Which side of the connection the decoder is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Server: incoming frames must be masked.
    Server,
    /// Client: incoming frames must not be masked.
    Client,
}

/// A received close frame with a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseFrame<'a> {
    /// Close status code (already validated).
    pub code: u16,
    /// Close reason (valid UTF-8, possibly empty).
    pub reason: &'a str,
}

/// A complete message or control frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// Complete text message, valid UTF-8.
    Text(&'a [u8]),
    /// Complete binary message.
    Binary(&'a [u8]),
    /// Ping with its payload.
    Ping(&'a [u8]),
    /// Pong with its payload.
    Pong(&'a [u8]),
    /// Close; `None` for an empty close payload.
    Close(Option<CloseFrame<'a>>),
}

/// RSV2 bit of the first header byte (no extension uses it).
const RSV2: u8 = 0x20;

/// RSV3 bit of the first header byte (no extension uses it).
const RSV3: u8 = 0x10;

/// A parsed, validated frame header.
#[derive(Debug, Clone, Copy)]
struct FrameHeader {
    fin: bool,
    /// RSV1: first frame of a compressed message.
    compressed: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    header_len: usize,
    payload_len: usize,
}

impl FrameHeader {
    fn frame_len(&self) -> usize {
        self.header_len.saturating_add(self.payload_len)
    }
}

/// Result of looking for a header at the start of a buffer.
enum HeaderParse {
    /// At least this many bytes are needed for the header.
    Need(usize),
    /// A complete header.
    Complete(FrameHeader),
}

/// Kind of fragmented data message in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fragmented {
    None,
    Text,
    Binary,
    /// Compressed text: fragments are collected compressed and inflated at the end.
    DeflatedText,
    /// Compressed binary.
    DeflatedBinary,
}

impl Fragmented {
    /// The kind of message a non-final Text or Binary frame starts.
    fn start(opcode: OpCode, compressed: bool) -> Self {
        match (opcode == OpCode::Text, compressed) {
            (true, false) => Self::Text,
            (false, false) => Self::Binary,
            (true, true) => Self::DeflatedText,
            (false, true) => Self::DeflatedBinary,
        }
    }

    fn is_deflated(self) -> bool {
        matches!(self, Self::DeflatedText | Self::DeflatedBinary)
    }
}

/// Lifecycle of the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// A close frame was delivered; further input is ignored.
    Closed,
    /// A protocol error occurred; further input is ignored.
    Failed,
}

/// Sans-IO WebSocket frame decoder for one connection.
#[derive(Debug)]
pub struct Decoder {
    /// Bytes of a frame that is not complete yet (payload already unmasked).
    partial: Vec<u8>,
    /// Reassembly buffer of a fragmented data message.
    message: Vec<u8>,
    max_message: usize,
    utf8: Utf8Validator,
    role: Role,
    fragmented: Fragmented,
    state: State,
    /// Whether permessage-deflate was negotiated (RSV1 data messages allowed).
    deflate: bool,
}

impl Decoder {
    /// A decoder for `role` accepting messages of at most `max_message` bytes.
    pub fn new(role: Role, max_message: usize) -> Self {
        Self {
            partial: Vec::new(),
            message: Vec::new(),
            max_message,
            utf8: Utf8Validator::new(),
            role,
            fragmented: Fragmented::None,
            state: State::Open,
            deflate: false,
        }
    }

    /// Allows compressed (RSV1) data messages from now on, after a handshake that
    /// negotiated permessage-deflate without client context takeover. Each compressed
    /// message is inflated by a transient inflater when its last frame arrives (the
    /// compressed fragments are collected until then), limited to the maximum message
    /// size while inflating; text is UTF-8 checked after inflating. RSV1 on control or
    /// continuation frames stays a protocol error.
    pub fn enable_deflate(&mut self) {
        self.deflate = true;
    }

    /// Whether compressed messages are allowed.
    pub fn deflate_enabled(&self) -> bool {
        self.deflate
    }

    /// Decodes as much of `input` as possible, calling `on_message` for each complete
    /// message or control frame. Masked payloads are unmasked in place. After a close frame
    /// is delivered or an error is returned, further input is ignored (returns `Ok(())`).
    pub fn feed(
        &mut self,
        input: &mut [u8],
        on_message: &mut dyn FnMut(Message<'_>),
    ) -> Result<(), ProtocolError> {
        if self.state != State::Open {
            return Ok(());
        }
        let result = self.decode(input, on_message);
        if result.is_err() {
            self.state = State::Failed;
        }
        if self.state != State::Open {
            self.partial = Vec::new();
            self.message = Vec::new();
            self.fragmented = Fragmented::None;
        }
        result
    }

    /// Whether there is no partial frame and no partial message.
    pub fn is_idle(&self) -> bool {
        self.partial.is_empty() && self.fragmented == Fragmented::None
    }

    /// Heap capacity held by the decoder, in bytes.
    pub fn buffered_bytes(&self) -> usize {
        self.partial.capacity() + self.message.capacity()
    }

    /// Whether a close frame has been delivered.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether it still decodes: no close frame delivered and no protocol error.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    fn decode(
        &mut self,
        mut input: &mut [u8],
        on_message: &mut dyn FnMut(Message<'_>),
    ) -> Result<(), ProtocolError> {
        if !self.partial.is_empty() {
            let used = self.fill_partial(input)?;
            input = &mut input[used..];
            let header = match self.parse_and_check(&self.partial)? {
                HeaderParse::Complete(h) if self.partial.len() == h.frame_len() => h,
                _ => return Ok(()),
            };
            let mut frame = mem::take(&mut self.partial);
            self.finish_frame(header, &mut frame[header.header_len..], on_message)?;
        }
        while !input.is_empty() && self.state == State::Open {
            let header = match self.parse_and_check(input)? {
                HeaderParse::Complete(h) if input.len() >= h.frame_len() => h,
                _ => {
                    self.fill_partial(input)?;
                    return Ok(());
                }
            };
            let (frame, rest) = mem::take(&mut input).split_at_mut(header.frame_len());
            input = rest;
            let payload = &mut frame[header.header_len..];
            if let Some(mask) = header.mask {
                apply_mask(payload, mask, 0);
            }
            self.check_text_piece(&header, payload)?;
            self.finish_frame(header, payload, on_message)?;
        }
        Ok(())
    }

    /// Moves bytes of the current incomplete frame from `input` into `partial`, unmasking
    /// and validating text as it goes (so errors surface before the frame completes).
    /// Stops at the end of the frame; returns the number of bytes taken from `input`.
    fn fill_partial(&mut self, input: &[u8]) -> Result<usize, ProtocolError> {
        let mut used = 0;
        let header = loop {
            match self.parse_and_check(&self.partial)? {
                HeaderParse::Complete(h) => break h,
                HeaderParse::Need(n) => {
                    let take = (n - self.partial.len()).min(input.len() - used);
                    if take == 0 {
                        return Ok(used);
                    }
                    self.partial.extend_from_slice(&input[used..used + take]);
                    used += take;
                }
            }
        };
        let start = self.partial.len();
        let take = (header.frame_len() - start).min(input.len() - used);
        self.partial.extend_from_slice(&input[used..used + take]);
        used += take;
        let mut new_bytes = mem::take(&mut self.partial);
        let piece = &mut new_bytes[start..];
        if let Some(mask) = header.mask {
            apply_mask(piece, mask, start - header.header_len);
        }
        let checked = self.check_text_piece(&header, piece);
        self.partial = new_bytes;
        checked.map(|()| used)
    }

    /// Feeds a piece of a data frame's (unmasked) payload to the UTF-8 validator if the
    /// frame belongs to a text message.
    fn check_text_piece(
        &mut self,
        header: &FrameHeader,
        piece: &[u8],
    ) -> Result<(), ProtocolError> {
        let is_text = match header.opcode {
            OpCode::Text => !header.compressed,
            OpCode::Continuation => self.fragmented == Fragmented::Text,
            _ => false,
        };
        if is_text {
            self.utf8
                .feed(piece)
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        Ok(())
    }

    /// Parses the header at the start of `buf` and checks it against the role, limits and
    /// the message in progress. Checking is idempotent until a frame completes.
    fn parse_and_check(&self, buf: &[u8]) -> Result<HeaderParse, ProtocolError> {
        let header = match parse_header(buf, self.deflate)? {
            HeaderParse::Complete(h) => h,
            need => return Ok(need),
        };
        match (self.role, header.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::Unmasked),
            (Role::Client, true) => return Err(ProtocolError::Masked),
            _ => {}
        }
        if header.opcode.is_control() {
            if !header.fin {
                return Err(ProtocolError::FragmentedControl);
            }
            if header.payload_len > MAX_CONTROL_PAYLOAD {
                return Err(ProtocolError::ControlTooLong);
            }
            return Ok(HeaderParse::Complete(header));
        }
        let (already, compressed) = match (header.opcode, self.fragmented) {
            (OpCode::Continuation, Fragmented::None) => {
                return Err(ProtocolError::UnexpectedContinuation);
            }
            (OpCode::Continuation, kind) => (self.message.len(), kind.is_deflated()),
            (_, Fragmented::None) => (0, header.compressed),
            _ => return Err(ProtocolError::ExpectedContinuation),
        };
        let limit = if compressed {
            max_compressed_len(self.max_message)
        } else {
            self.max_message
        };
        if header.payload_len > limit.saturating_sub(already) {
            return Err(ProtocolError::TooBig);
        }
        Ok(HeaderParse::Complete(header))
    }

    /// Handles a complete frame whose payload is unmasked and, for text, already fed to
    /// the UTF-8 validator.
    fn finish_frame(
        &mut self,
        header: FrameHeader,
        payload: &mut [u8],
        on_message: &mut dyn FnMut(Message<'_>),
    ) -> Result<(), ProtocolError> {
        match header.opcode {
            OpCode::Ping => on_message(Message::Ping(payload)),
            OpCode::Pong => on_message(Message::Pong(payload)),
            OpCode::Close => {
                let close = parse_close(payload)?;
                self.state = State::Closed;
                on_message(Message::Close(close));
            }
            OpCode::Text | OpCode::Binary if header.fin => {
                let is_text = header.opcode == OpCode::Text;
                if header.compressed {
                    let inflated = inflate_message(payload, self.max_message)?;
                    deliver_inflated(is_text, &inflated, on_message)?;
                } else if is_text {
                    self.finish_text()?;
                    on_message(Message::Text(payload));
                } else {
                    on_message(Message::Binary(payload));
                }
            }
            OpCode::Text | OpCode::Binary => {
                self.fragmented = Fragmented::start(header.opcode, header.compressed);
                self.message.extend_from_slice(payload);
            }
            OpCode::Continuation => {
                self.message.extend_from_slice(payload);
                if header.fin {
                    let kind = mem::replace(&mut self.fragmented, Fragmented::None);
                    let message = mem::take(&mut self.message);
                    match kind {
                        Fragmented::Text => {
                            self.finish_text()?;
                            on_message(Message::Text(&message));
                        }
                        Fragmented::DeflatedText | Fragmented::DeflatedBinary => {
                            let inflated = inflate_message(&message, self.max_message)?;
                            drop(message);
                            deliver_inflated(
                                kind == Fragmented::DeflatedText,
                                &inflated,
                                on_message,
                            )?;
                        }
                        Fragmented::Binary | Fragmented::None => {
                            on_message(Message::Binary(&message));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn finish_text(&mut self) -> Result<(), ProtocolError> {
        self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)
    }
}

/// Delivers an inflated message, checking that text is valid UTF-8.
fn deliver_inflated(
    is_text: bool,
    message: &[u8],
    on_message: &mut dyn FnMut(Message<'_>),
) -> Result<(), ProtocolError> {
    if is_text {
        simdutf8::basic::from_utf8(message).map_err(|_| ProtocolError::InvalidUtf8)?;
        on_message(Message::Text(message));
    } else {
        on_message(Message::Binary(message));
    }
    Ok(())
}

/// Validates a close payload.
fn parse_close(payload: &[u8]) -> Result<Option<CloseFrame<'_>>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::BadCloseLength),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_received_code(code) {
                return Err(ProtocolError::BadCloseCode);
            }
            let reason =
                simdutf8::basic::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

/// Parses the frame header at the start of `buf` (RFC 6455 5.2). Checks only what the
/// header alone determines: reserved bits (RSV1 is allowed only with `deflate`, and only
/// on the first frame of a data message, RFC 7692 6), reserved opcodes and the length
/// encoding.
fn parse_header(buf: &[u8], deflate: bool) -> Result<HeaderParse, ProtocolError> {
    let [b0, b1, rest @ ..] = buf else {
        return Ok(HeaderParse::Need(2));
    };
    let data_opcode = matches!(
        OpCode::from_u8(b0 & 0x0f),
        Some(OpCode::Text | OpCode::Binary)
    );
    let rsv1_allowed = deflate && data_opcode;
    if b0 & (RSV2 | RSV3) != 0 || (b0 & RSV1 != 0 && !rsv1_allowed) {
        return Err(ProtocolError::ReservedBits);
    }
    let opcode = OpCode::from_u8(b0 & 0x0f).ok_or(ProtocolError::ReservedOpcode)?;
    let masked = b1 & 0x80 != 0;
    let length_field = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let header_len = 2 + length_field + if masked { 4 } else { 0 };
    if buf.len() < header_len {
        return Ok(HeaderParse::Need(header_len));
    }
    let payload_len = match length_field {
        0 => u64::from(b1 & 0x7f),
        2 => {
            let len = u64::from(u16::from_be_bytes([rest[0], rest[1]]));
            if len <= MAX_SHORT_LEN as u64 {
                return Err(ProtocolError::NonMinimalLength);
            }
            len
        }
        _ => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&rest[..8]);
            let len = u64::from_be_bytes(bytes);
            if len >> 63 != 0 {
                return Err(ProtocolError::LengthOverflow);
            }
            if len <= 0xffff {
                return Err(ProtocolError::NonMinimalLength);
            }
            len
        }
    };
    let mask = masked.then(|| {
        let at = 2 + length_field;
        [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]
    });
    Ok(HeaderParse::Complete(FrameHeader {
        fin: b0 & 0x80 != 0,
        compressed: b0 & RSV1 != 0,
        opcode,
        mask,
        header_len,
        payload_len: usize::try_from(payload_len).unwrap_or(usize::MAX),
    }))
}

//! A connection's WebSocket frame decoder, kept out of line: between messages (nearly
//! always, for a push client) the connection holds one null pointer, and a [`Decoder`]
//! with its buffers is boxed only while a frame or a fragmented message spans
//! receives, or once decoding has ended. A receive that holds whole frames decodes
//! them with a decoder on the stack, which allocates nothing for uncompressed messages
//! (a compressed one is inflated into a buffer of its own, as before).
//!
//! # Calling contract
//! Call [`ConnDecoder::feed`] with each receive's bytes in order, always with the same
//! `max_message` and `inflate` (whether permessage-deflate was negotiated). After a
//! close frame or a protocol error, further input is ignored, as with [`Decoder::feed`].

use ringcast_proto::{Decoder, Message, ProtocolError, Role};

/// The decoding state of one connection: `None` between messages.
#[derive(Debug, Default)]
pub(crate) struct ConnDecoder(Option<Box<Decoder>>);

impl ConnDecoder {
    /// Decodes one receive's bytes (see [`Decoder::feed`]); `inflate` allows compressed
    /// (RSV1) messages.
    pub(crate) fn feed(
        &mut self,
        input: &mut [u8],
        max_message: usize,
        inflate: bool,
        on_message: &mut dyn FnMut(Message<'_>),
    ) -> Result<(), ProtocolError> {
        if let Some(decoder) = self.0.as_mut() {
            let result = decoder.feed(input, on_message);
            if decoder.is_open() && decoder.is_idle() {
                self.0 = None;
            }
            return result;
        }
        let mut decoder = Decoder::new(Role::Server, max_message);
        if inflate {
            decoder.enable_deflate();
        }
        let result = decoder.feed(input, on_message);
        if !decoder.is_open() || !decoder.is_idle() {
            self.0 = Some(Box::new(decoder));
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringcast_proto::{OpCode, encode_frame};

    fn masked(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, opcode, payload, Some([1, 2, 3, 4]));
        out
    }

    fn texts(decoder: &mut ConnDecoder, mut bytes: Vec<u8>) -> Result<Vec<String>, ProtocolError> {
        let mut out = Vec::new();
        decoder.feed(&mut bytes, 1024, true, &mut |msg| {
            if let Message::Text(t) = msg {
                out.push(String::from_utf8_lossy(t).into_owned());
            }
        })?;
        Ok(out)
    }

    #[test]
    fn whole_frames_leave_nothing_boxed() {
        let mut d = ConnDecoder::default();
        let mut bytes = masked(OpCode::Text, b"one");
        bytes.extend(masked(OpCode::Text, b"two"));
        assert_eq!(
            texts(&mut d, bytes).ok(),
            Some(vec!["one".into(), "two".into()])
        );
        assert!(d.0.is_none());
        assert_eq!(std::mem::size_of::<ConnDecoder>(), 8);
    }

    #[test]
    fn a_split_frame_is_boxed_until_it_completes() {
        let mut d = ConnDecoder::default();
        let frame = masked(OpCode::Text, b"hello");
        assert_eq!(texts(&mut d, frame[..4].to_vec()).ok(), Some(vec![]));
        assert!(d.0.as_ref().is_some_and(|d| d.deflate_enabled()));
        assert_eq!(
            texts(&mut d, frame[4..].to_vec()).ok(),
            Some(vec!["hello".into()])
        );
        assert!(d.0.is_none());
    }

    #[test]
    fn input_after_a_close_or_an_error_is_ignored() {
        let mut d = ConnDecoder::default();
        assert!(texts(&mut d, masked(OpCode::Close, &[])).is_ok());
        assert_eq!(texts(&mut d, masked(OpCode::Text, b"x")).ok(), Some(vec![]));

        let mut d = ConnDecoder::default();
        let mut unmasked = Vec::new();
        encode_frame(&mut unmasked, OpCode::Text, b"x", None);
        assert!(texts(&mut d, unmasked).is_err());
        assert_eq!(texts(&mut d, masked(OpCode::Text, b"y")).ok(), Some(vec![]));
    }
}

//! Sans-IO RFC 6455 WebSocket protocol for ringcast: bytes in, events out.
//!
//! No sockets and no clocks live here. The crate owns the HTTP upgrade handshake
//! (server side in `handshake`, [`parse_upgrade`]; client side in `client_handshake`,
//! [`client_request`] and [`parse_response`]), plain HTTP GETs (`plain_get`,
//! [`parse_plain_get`]), channel name rules (`channel`, [`is_valid_channel`]), frame
//! encoding and masking (`frame`, [`encode_frame`]), the incremental frame/message decoder
//! (`decoder`, [`Decoder`]) and the peer's protocol errors (`error`, [`ProtocolError`]),
//! close codes (`close`, [`code`]), the incremental UTF-8 validator
//! (`utf8`) and permessage-deflate ([`deflate`]). Everything is used from the
//! crate root; [`deflate`] also names the extension's constants.

#![warn(unreachable_pub)]

mod base64;
mod channel;
mod client_handshake;
mod close;
mod decoder;
pub mod deflate;
mod error;
mod frame;
mod handshake;
mod plain_get;
mod utf8;

pub use channel::{MAX_CHANNEL_LEN, is_valid_channel};
pub use client_handshake::{
    ClientHandshakeStatus, accepted_extension, client_request, client_request_with_extensions,
    generate_key, parse_response, retry_after_secs,
};
pub use close::{close_payload, code, is_valid_received_code};
pub use decoder::{CloseFrame, Decoder, Message, Role};
pub use deflate::{
    DeflateParams, MessageDeflater, client_deflate_params, deflate_message, inflate_message,
    negotiate_deflate,
};
pub use error::ProtocolError;
pub use frame::{OpCode, RSV1, encode_compressed_frame, encode_frame, header_len};
pub use handshake::{
    HandshakeError, HandshakeStatus, MAX_HANDSHAKE_BYTES, Route, Upgrade, http_error_response,
    parse_upgrade,
};
pub use plain_get::{PlainGet, PlainRoute, parse_plain_get};

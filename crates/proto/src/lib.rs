//! Sans-IO RFC 6455 WebSocket protocol for ringcast: bytes in, events out.
//!
//! No sockets and no clocks live here. The crate owns the HTTP upgrade handshake
//! (server side in [`handshake`], client side in [`client_handshake`]), channel
//! name rules ([`channel`]), frame encoding and masking ([`frame`]), the
//! incremental frame/message [`decoder`], close codes ([`close`]), the
//! incremental UTF-8 validator ([`utf8`]) and permessage-deflate ([`deflate`]).

mod base64;
pub mod channel;
pub mod client_handshake;
pub mod close;
pub mod decoder;
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod plain_get;
pub mod utf8;

pub use channel::{MAX_CHANNEL_LEN, is_valid_channel};
pub use client_handshake::{
    ClientHandshakeStatus, accepted_extension, client_request, client_request_with_extensions,
    generate_key, parse_response,
};
pub use close::{close_payload, code, is_valid_received_code};
pub use decoder::{CloseFrame, Decoder, Message, ProtocolError, Role};
pub use deflate::{
    DeflateParams, MessageDeflater, client_deflate_params, deflate_message, inflate_message,
    negotiate_deflate,
};
pub use frame::{OpCode, apply_mask, encode_compressed_frame, encode_frame, header_len};
pub use handshake::{
    HandshakeError, HandshakeStatus, MAX_HANDSHAKE_BYTES, Route, Upgrade, http_error_response,
    parse_upgrade,
};
pub use plain_get::{PlainGet, PlainRoute, parse_plain_get};
pub use utf8::Utf8Validator;

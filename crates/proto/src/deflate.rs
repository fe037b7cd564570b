//! permessage-deflate (RFC 7692): negotiation of the extension in the opening handshake
//! (`negotiation`) and compression of whole messages (`codec`).
//!
//! The server side never keeps compression state between messages: it always answers with
//! `server_no_context_takeover` (every outgoing message is compressed on its own, so one
//! compressed frame can be shared by all subscribers) and `client_no_context_takeover`
//! (every incoming message is inflated by a transient inflater).

mod codec;
mod negotiation;

pub use codec::{MessageDeflater, deflate_message, inflate_message, max_compressed_len};
pub use negotiation::{CLIENT_OFFER, DeflateParams, client_deflate_params, negotiate_deflate};

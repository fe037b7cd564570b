//! Property tests of the sans-IO protocol code (run on stable in `cargo test`): frames
//! round-trip through encode and decode, arbitrary bytes never panic the decoders or the
//! handshake parsers, splitting a stream anywhere changes nothing, and the message size
//! limit holds before anything big is buffered.

#[path = "../common/mod.rs"]
mod common;
mod deflate;
mod garbage;
mod handshake;
mod headers;
mod roundtrip;
mod splits;
mod too_big;
mod wire;

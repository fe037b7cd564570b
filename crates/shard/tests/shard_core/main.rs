//! The shard state machine driven with byte strings and a fake clock, one module per
//! subject: handshakes, channel creation rates, frames, fan-out, pings, slow consumers,
//! drain, SSE, long-poll and compression, token expiry, the admin API's disconnect;
//! `node` is the harness they share, `tokens` the token setup.

mod channel_rate;
mod compression;
mod disconnect;
mod drain;
mod fanout;
mod frames;
mod handshake;
mod node;
mod occupancy;
mod pings;
mod poll;
mod recovery;
mod slow_consumer;
mod sse;
mod tls;
mod token_commands;
mod token_expiry;
mod tokens;

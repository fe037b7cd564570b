//! ringcast-admin: the gateway's admin HTTP API, served on the sidecar's tokio thread:
//! `POST /publish/{channel}` and `POST /publish` (batch), `POST /disconnect`,
//! `GET /channels` and `GET /channels/{channel}` (occupancy, `channels`), `/healthz`,
//! `/readyz` and the Prometheus scrape `/metrics`.
//!
//! A publish takes one path: the route reads the request into a `message::Message`,
//! checks it once (size, then channel name), and hands it to the node's
//! [`ringcast_broker::Broker`], which delivers it to the channel's owner shard (in-process
//! broker) or through Redis to every node.
//!
//! A disconnect (`disconnect`) closes the connections of a token's `sub` or a channel's
//! subscribers: on this node through the [`Disconnector`] the binary implements over
//! its shards, on the others through [`ringcast_broker::Broker::disconnect_cluster`].
//!
//! Write endpoints (the publish and disconnect routes) pass `access` first: bearer
//! token, Origin and Host checks. The listener (`server`) caps connections, times out
//! slow headers, stalled bodies and blocked writes, and keeps a spare descriptor so
//! `/metrics` answers at the fd limit; given a rustls configuration it speaks HTTPS only.
//! Every refusal is counted in `ringcast_admin_refused_total{reason}`.
//!
//! Its own crate rather than a module of the binary: the routes need only the `Broker`
//! and `Disconnector` traits, so their tests run against a real loopback listener and a
//! fake broker without building the io_uring gateway; and `ringcast-telemetry` stays
//! about metrics.

#![warn(unreachable_pub)]

mod access;
mod batch;
mod channels;
mod disconnect;
mod error;
mod message;
mod publish;
mod refusal;
mod response;
mod routes;
mod server;
mod spare_descriptor;
mod stalled_body;
mod write_stall;

pub use access::{
    AccessConfigError, AdminAccess, AdminToken, MIN_TOKEN_BYTES, parse_allowed_host,
    parse_allowed_origin,
};
pub use channels::{ChannelFuture, ChannelInfo, DEFAULT_LIMIT, MAX_LIMIT, Occupancy};
pub use disconnect::{DisconnectFuture, DisconnectOutcome, Disconnector};
pub use routes::{AdminState, admin_router};
pub use server::{AdminLimits, serve_admin};

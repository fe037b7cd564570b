//! ringcast-admin: the gateway's admin HTTP API, served on the sidecar's tokio thread:
//! `POST /publish/{channel}` and `POST /publish` (batch), `/healthz`, `/readyz` and the
//! Prometheus scrape `/metrics`.
//!
//! A publish takes one path: the route reads the request into a `message::Message`,
//! checks it once (size, then channel name), and hands it to the node's
//! [`ringcast_broker::Broker`], which delivers it to the channel's owner shard (in-process
//! broker) or through Redis to every node.
//!
//! Its own crate rather than a module of the binary: the routes need only the `Broker`
//! trait, so their tests run against a real loopback listener and a fake broker without
//! building the io_uring gateway; and `ringcast-telemetry` stays about metrics.

mod batch;
mod error;
mod message;
mod publish;
mod response;
mod routes;

pub use routes::{AdminState, admin_router, serve_admin};

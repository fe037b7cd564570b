//! Redis Cluster (`--redis-cluster`): the `--redis` URL names seed nodes, the node learns
//! the slot map from the first that answers (`CLUSTER SLOTS`), and sends each channel's
//! `SSUBSCRIBE`/`SPUBLISH` and history script (whose keys carry the channel as their hash
//! tag, so they share its slot) to the master owning the channel's slot, over one
//! connection per master (replicas get none: nothing is read from them).
//!
//! Why sharded pub/sub: a classic `PUBLISH` in a cluster is carried over the cluster bus
//! to every node, so every master pays for every message whoever subscribes; `SPUBLISH`
//! stays inside the slot's shard (its master and replicas), so adding masters adds
//! publish capacity. The control channel alone stays classic (`SUBSCRIBE` on one master,
//! `PUBLISH` through any): its rare requests must reach every gateway, which the bus
//! broadcast gives for free, and a classic subscription never moves with a slot.
//!
//! Topology changes are followed: a request answered `MOVED` or `ASK` is followed once
//! and makes the task ask for a fresh map; Redis 7 unsubscribes a slot's channels
//! (`sunsubscribe` push) when the slot migrates away, and the task places them again
//! after a fresh map; a lost connection (a master killed) makes the task ask the other
//! masters and the seeds for the map again, with backoff, until it names the master's
//! promoted replica, then subscribes there what was lost. A master is PINGed every
//! `ping_every` and lost when its PING fails, unless it delivered pushes during the round
//! (its PONG queued behind them) or the full push queue had stopped reading every
//! connection: judged per master, so a busy master never hides a dead one.
//!
//! Its parts: the hash slot of a key (`keyslot`), the slot map (`slot_map`), where each
//! channel is subscribed (`placement`, pure), what requests see and how they are routed
//! (`routes`), and the connection task (`session`).

mod keyslot;
mod placement;
mod routes;
mod session;
mod slot_map;

pub(crate) use routes::{ClusterLink, Request, is_no_route, no_route};
pub(crate) use session::ClusterSession;

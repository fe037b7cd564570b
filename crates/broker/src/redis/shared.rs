//! What the broker handle and its connection task share: the live connection (or none while
//! down), the up flag readiness reads, where received messages and events go, the
//! subscription changes the handle passes to the task, the node's id on the control
//! channel, and in Redis Cluster mode the routes to the masters ([`ClusterLink`]).

use super::cluster::{ClusterLink, Request, no_route};
use super::config::RedisMode;
use super::control::NodeId;
use super::events::BrokerEvents;
use super::history::{HistoryRead, RedisHistory};
use super::interest_queue::InterestQueue;
use crate::DeliverySink;
use redis::aio::MultiplexedConnection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// State shared by the broker handle and its connection task.
pub(crate) struct Shared {
    /// This node's id on the control channel.
    pub(crate) node: NodeId,
    pub(crate) prefix: String,
    pub(crate) mode: RedisMode,
    pub(crate) sink: Arc<dyn DeliverySink>,
    pub(crate) events: Arc<dyn BrokerEvents>,
    pub(crate) up: Arc<AtomicBool>,
    /// Channel history kept in Redis, if any.
    pub(crate) history: Option<RedisHistory>,
    /// History reads for the connection task.
    pub(crate) reads: tokio::sync::mpsc::UnboundedSender<HistoryRead>,
    /// The live, fully subscribed connection; `None` while down. In Redis Cluster mode,
    /// the connection to the master that carries the control channel.
    pub(crate) connection: Mutex<Option<MultiplexedConnection>>,
    /// Redis Cluster mode: the slot map and the connections to the masters.
    pub(crate) cluster: Option<ClusterLink>,
    /// Subscription changes for the connection task, latest state per channel.
    pub(crate) interest: InterestQueue,
}

impl Shared {
    /// Publishes go through `connection` from now on (`None`: the broker is down).
    pub(crate) fn set_connection(&self, connection: Option<MultiplexedConnection>) {
        let up = connection.is_some();
        if let Ok(mut slot) = self.connection.lock() {
            *slot = connection;
        }
        self.up.store(up, Ordering::Release);
        self.events.up(up);
    }

    /// Redis Cluster mode: `control` carries the control channel (`None`: no master is
    /// connected); `up` when every slot's master is connected and subscribed.
    pub(crate) fn set_cluster_state(&self, control: Option<MultiplexedConnection>, up: bool) {
        if let Ok(mut slot) = self.connection.lock() {
            *slot = control;
        }
        if self.up.swap(up, Ordering::AcqRel) != up {
            self.events.up(up);
        }
    }

    /// The live connection to publish through, if the broker is up.
    pub(crate) fn connection(&self) -> Option<MultiplexedConnection> {
        self.connection.lock().ok().and_then(|slot| slot.clone())
    }

    /// Runs `request` where `key` lives: in Redis Cluster mode on the master owning the
    /// key's slot, following one `MOVED`/`ASK` (see [`ClusterLink::query`]); otherwise on
    /// the one connection. Keys a request names together must share a hash tag (e.g.
    /// `{ringcast:occupancy}:...`), so they share `key`'s slot. Without a connection
    /// (Redis down, or the slot's master not connected) it fails at once with an error
    /// `cluster::is_no_route` recognises; nothing was sent then.
    pub(crate) async fn query_routed<T: redis::FromRedisValue>(
        &self,
        key: &[u8],
        request: &Request<'_>,
    ) -> redis::RedisResult<T> {
        match &self.cluster {
            Some(cluster) => cluster.query(&*self.events, key, request).await,
            None => {
                let mut connection = self
                    .connection()
                    .ok_or_else(|| no_route("Redis is unreachable"))?;
                request.run(&mut connection, false).await
            }
        }
    }
}

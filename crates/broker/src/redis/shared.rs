//! What the broker handle and its connection task share: the live connection (or none while
//! down), the up flag readiness reads, where received messages and events go, the
//! subscription changes the handle passes to the task, and the node's id on the control
//! channel.

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
    /// The live, fully subscribed connection; `None` while down.
    pub(crate) connection: Mutex<Option<MultiplexedConnection>>,
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

    /// The live connection to publish through, if the broker is up.
    pub(crate) fn connection(&self) -> Option<MultiplexedConnection> {
        self.connection.lock().ok().and_then(|slot| slot.clone())
    }
}

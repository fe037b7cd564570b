//! What requests see of the cluster: the slot map and the live connection to each master
//! (replaced whole by the connection task whenever either changes), and the one way to
//! run a request on the master owning a key's slot ([`ClusterLink::query`]), following
//! one redirection.

use super::keyslot::key_slot;
use super::slot_map::SlotMap;
use crate::redis::events::{BrokerEvents, RejectReason};
use crate::redis::sentinel::Addr;
use redis::aio::MultiplexedConnection;
use redis::{ErrorKind, FromRedisValue, RedisError, RedisResult, ServerErrorKind};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// Longest wait, after a `MOVED` to a master without a connection yet, for the task's
/// fresh slot map.
const MOVED_WAIT: Duration = Duration::from_secs(1);

/// The slot map and the masters the node is connected to.
#[derive(Default)]
pub(crate) struct Routes {
    pub(crate) map: Arc<SlotMap>,
    pub(crate) connections: HashMap<Arc<Addr>, MultiplexedConnection>,
}

impl Routes {
    /// The connection to the master owning `slot`, if there is one.
    fn for_slot(&self, slot: u16) -> Option<MultiplexedConnection> {
        self.connections.get(&**self.map.master(slot)?).cloned()
    }

    /// The connection to the node a redirection names (`host:port`).
    fn for_node(&self, node: &str) -> Option<MultiplexedConnection> {
        let (host, port) = node.rsplit_once(':')?;
        let addr = Addr {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: port.parse().ok()?,
        };
        self.connections.get(&addr).cloned()
    }
}

/// One request routed by key.
pub(crate) enum Request<'a> {
    /// A command.
    Cmd(&'a redis::Cmd),
    /// A Lua script (`EVALSHA`, loaded on `NOSCRIPT`; `EVAL` after `ASKING`).
    Script {
        code: &'a str,
        keys: &'a [&'a [u8]],
        args: &'a [&'a [u8]],
    },
}

impl Request<'_> {
    /// Runs the request on `connection`, after `ASKING` (in the same pipeline, so no other
    /// request on the shared connection comes between) when `asking`.
    pub(crate) async fn run<T: FromRedisValue>(
        &self,
        connection: &mut MultiplexedConnection,
        asking: bool,
    ) -> RedisResult<T> {
        match (self, asking) {
            (Request::Cmd(cmd), false) => cmd.query_async(connection).await,
            (Request::Cmd(cmd), true) => {
                let (value,): (T,) = redis::pipe()
                    .cmd("ASKING")
                    .ignore()
                    .add_command((*cmd).clone())
                    .query_async(connection)
                    .await?;
                Ok(value)
            }
            (Request::Script { code, keys, args }, false) => {
                let script = redis::Script::new(code);
                let mut invocation = script.prepare_invoke();
                for key in *keys {
                    invocation.key(*key);
                }
                for arg in *args {
                    invocation.arg(*arg);
                }
                invocation.invoke_async(connection).await
            }
            (Request::Script { code, keys, args }, true) => {
                let mut eval = redis::cmd("EVAL");
                eval.arg(*code).arg(keys.len());
                for key in *keys {
                    eval.arg(*key);
                }
                for arg in *args {
                    eval.arg(*arg);
                }
                let (value,): (T,) = redis::pipe()
                    .cmd("ASKING")
                    .ignore()
                    .add_command(eval)
                    .query_async(connection)
                    .await?;
                Ok(value)
            }
        }
    }
}

/// The error of a request that has no connection to run on.
pub(crate) fn no_route(what: &str) -> RedisError {
    RedisError::from((
        ErrorKind::ClusterConnectionNotFound,
        "no route",
        what.to_owned(),
    ))
}

/// Whether `err` says the request found no connection (nothing was sent).
pub(crate) fn is_no_route(err: &RedisError) -> bool {
    err.kind() == ErrorKind::ClusterConnectionNotFound
}

/// The routes the connection task keeps up to date, shared with the broker handle.
pub(crate) struct ClusterLink {
    routes: watch::Sender<Arc<Routes>>,
    /// A request met a redirection: the task should ask for a fresh slot map.
    refresh: Notify,
}

impl Default for ClusterLink {
    fn default() -> Self {
        ClusterLink {
            routes: watch::Sender::new(Arc::new(Routes::default())),
            refresh: Notify::new(),
        }
    }
}

impl ClusterLink {
    /// The task's new routes.
    pub(crate) fn set_routes(&self, routes: Routes) {
        self.routes.send_replace(Arc::new(routes));
    }

    /// The current routes.
    pub(crate) fn routes(&self) -> Arc<Routes> {
        self.routes.borrow().clone()
    }

    /// Resolves when a request asked for a fresh slot map.
    pub(crate) async fn refresh_asked(&self) {
        self.refresh.notified().await;
    }

    /// Runs `request` on the master owning `key`'s slot. A `MOVED` or `ASK` answer is
    /// counted (`moved`), makes the task ask for a fresh slot map, and is followed once:
    /// `ASK` with `ASKING` to the node named, `MOVED` to the node named if the node is
    /// connected to it, else by the fresh map (waited for up to [`MOVED_WAIT`]).
    /// `CLUSTERDOWN` and `TRYAGAIN` are counted (`cluster`) and returned. No connection
    /// to the slot's master: [`is_no_route`].
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        events: &dyn BrokerEvents,
        key: &[u8],
        request: &Request<'_>,
    ) -> RedisResult<T> {
        let slot = key_slot(key);
        let mut changes = self.routes.subscribe();
        let routes = changes.borrow_and_update().clone();
        let mut connection = routes
            .for_slot(slot)
            .ok_or_else(|| no_route("no connection to the master of the key's slot"))?;
        let err = match request.run(&mut connection, false).await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        match err.kind() {
            ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask) => {}
            ErrorKind::Server(ServerErrorKind::ClusterDown | ServerErrorKind::TryAgain) => {
                events.rejected(RejectReason::Cluster);
                return Err(err);
            }
            _ => return Err(err),
        }
        events.rejected(RejectReason::Moved);
        let asking = err.kind() == ErrorKind::Server(ServerErrorKind::Ask);
        // ASK redirects one request during a migration and says nothing of the map
        // (asking for a fresh one on every ASK would ask all through a long migration).
        if !asking {
            self.refresh.notify_one();
        }
        let named = err
            .redirect_node()
            .and_then(|(node, _)| self.routes().for_node(node));
        let mut connection = match (named, asking) {
            (Some(connection), _) => connection,
            (None, true) => return Err(err),
            (None, false) => {
                let _ = tokio::time::timeout(MOVED_WAIT, changes.changed()).await;
                let fresh = self.routes().for_slot(slot);
                fresh.ok_or_else(|| no_route("no connection to the master MOVED names"))?
            }
        };
        request.run(&mut connection, asking).await
    }
}

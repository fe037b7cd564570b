//! The Redis broker: many gateway nodes behind one Redis act as one cluster.
//!
//! A publish on any node is `PUBLISH <prefix><channel> <envelope>` (`SPUBLISH` in sharded
//! mode; the envelope is described in [`crate::envelope`]), and only that: the publishing
//! node receives its own message back through its subscription like every other node, so
//! each node delivers it exactly once. Messages received from Redis go to the node's
//! [`DeliverySink`] (the owner shards), never back to Redis.
//!
//! Modes ([`RedisMode`]):
//! - `interest`: `SUBSCRIBE` only the channels with local subscribers, batched (changes
//!   collected for a few milliseconds, up to 1,000 channels per command). Redis sends a
//!   node only what it has subscribers for.
//! - `pattern`: one `PSUBSCRIBE <prefix>*`. No subscription traffic, but every node
//!   receives every message and drops what it has no subscribers for, and Redis matches
//!   the pattern for every publish.
//! - `sharded`: `SSUBSCRIBE`/`SPUBLISH` (Redis 7 sharded pub/sub), one channel per command
//!   so no command spans two hash slots. The node talks to the one endpoint it was given
//!   (a standalone Redis 7, or a cluster node owning the channels' slots); it does not
//!   follow cluster redirections.
//!
//! It runs on the sidecar's tokio runtime over one RESP3 connection (Redis 6 or later),
//! which carries both the publishes and the subscription's pushes. When the connection is
//! lost the broker reports down, reconnects with capped, jittered backoff
//! ([`crate::backoff`]), resubscribes every channel with local interest, and reports up
//! again. While it is down a publish is delivered to this node's subscribers and answered
//! with [`BrokerError::RemoteUnavailable`]. A publish Redis took but did not confirm in
//! time is answered [`BrokerError::Unavailable`] and not delivered locally (Redis may
//! still deliver it, and twice would break exactly-once).

use crate::events::BrokerEvents;
use crate::redis_session::Session;
use crate::{Broker, BrokerError, DeliverySink, PublishFuture, envelope};
use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// How the node subscribes at Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisMode {
    /// `SUBSCRIBE` the channels with local subscribers (default).
    Interest,
    /// One `PSUBSCRIBE <prefix>*`: every node receives every message.
    Pattern,
    /// `SSUBSCRIBE`/`SPUBLISH` for Redis Cluster's sharded pub/sub.
    Sharded,
}

/// Settings of the Redis broker (its `Debug` hides the URL's password).
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// Prefix of every Redis channel (`ringcast:`).
    pub prefix: String,
    /// Subscription mode.
    pub mode: RedisMode,
    /// Largest payload delivered; larger messages from Redis are refused.
    pub max_message_bytes: usize,
    /// Whether a channel name (after the prefix) is valid.
    pub valid_channel: fn(&str) -> bool,
    /// How long subscription changes are collected before one batch is sent.
    pub batch_window: Duration,
    /// Most channels in one SUBSCRIBE or UNSUBSCRIBE.
    pub batch_size: usize,
    /// How often an idle connection is checked with PING.
    pub ping_every: Duration,
    /// How long a connect or a reply may take before the connection counts as lost.
    pub timeout: Duration,
}

impl RedisConfig {
    /// Settings with the default batching (5 ms, 1,000 channels), a PING every second and
    /// a 2 s timeout.
    pub fn new(
        url: &str,
        prefix: &str,
        mode: RedisMode,
        max_message_bytes: usize,
        valid_channel: fn(&str) -> bool,
    ) -> Self {
        RedisConfig {
            url: url.to_owned(),
            prefix: prefix.to_owned(),
            mode,
            max_message_bytes,
            valid_channel,
            batch_window: Duration::from_millis(5),
            batch_size: 1_000,
            ping_every: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
        }
    }
}

/// The broker could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RedisStartError {
    /// The URL is not a usable Redis URL (TLS `rediss://` is not built in).
    #[error("invalid Redis URL `{url}`: {reason}")]
    Url {
        /// The URL, its password replaced by `***`.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Not called inside a tokio runtime.
    #[error("the Redis broker must start inside a tokio runtime")]
    NoRuntime,
}

/// State shared by the broker handle and its connection task.
pub(crate) struct Shared {
    pub(crate) prefix: String,
    pub(crate) mode: RedisMode,
    pub(crate) sink: Arc<dyn DeliverySink>,
    pub(crate) events: Arc<dyn BrokerEvents>,
    pub(crate) up: Arc<AtomicBool>,
    /// The live, fully subscribed connection; `None` while down.
    pub(crate) connection: Mutex<Option<MultiplexedConnection>>,
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

    fn connection(&self) -> Option<MultiplexedConnection> {
        self.connection.lock().ok().and_then(|slot| slot.clone())
    }
}

/// A subscription change for the connection task.
pub(crate) type InterestChange = (Box<str>, bool);

/// The Redis broker handle. Cheap to share; the connection lives in a task on the tokio
/// runtime it was started on, and ends when the handle is dropped.
pub struct RedisBroker {
    shared: Arc<Shared>,
    interest: mpsc::UnboundedSender<InterestChange>,
    runtime: tokio::runtime::Handle,
}

impl RedisBroker {
    /// Validates `config` and starts connecting in the background on the current tokio
    /// runtime. Received messages go to `sink`; state changes and counts to `events`.
    pub fn start(
        config: RedisConfig,
        sink: Arc<dyn DeliverySink>,
        events: Arc<dyn BrokerEvents>,
    ) -> Result<Self, RedisStartError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| RedisStartError::NoRuntime)?;
        let client = redis_client(&config.url)?;
        let shared = Arc::new(Shared {
            prefix: config.prefix.clone(),
            mode: config.mode,
            sink,
            events,
            up: Arc::new(AtomicBool::new(false)),
            connection: Mutex::new(None),
        });
        shared.events.up(false);
        shared.events.subscriptions(0);
        let (interest, changes) = mpsc::unbounded_channel();
        runtime.spawn(Session::new(shared.clone(), config, client, changes).run());
        Ok(RedisBroker {
            shared,
            interest,
            runtime,
        })
    }

    /// `true` while connected and subscribed; shared, so readiness can report it.
    pub fn up_flag(&self) -> Arc<AtomicBool> {
        self.shared.up.clone()
    }

    /// Whether the broker is connected and subscribed.
    pub fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::Acquire)
    }
}

/// A RESP3 client for `url` (RESP3 lets one connection publish while subscribed).
fn redis_client(url: &str) -> Result<redis::Client, RedisStartError> {
    let bad = |reason: String| RedisStartError::Url {
        url: crate::redact_url(url),
        reason,
    };
    let info =
        redis::IntoConnectionInfo::into_connection_info(url).map_err(|e| bad(e.to_string()))?;
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    redis::Client::open(info.set_redis_settings(settings)).map_err(|e| bad(e.to_string()))
}

/// Nanoseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Publishes through Redis, or, when that fails, delivers locally and says so.
async fn publish_via_redis(
    shared: Arc<Shared>,
    channel: String,
    payload: Bytes,
    binary: bool,
) -> Result<(), BrokerError> {
    let failure = match shared.connection() {
        Some(mut connection) => {
            let command = match shared.mode {
                RedisMode::Sharded => "SPUBLISH",
                RedisMode::Interest | RedisMode::Pattern => "PUBLISH",
            };
            let sealed = envelope::seal(&payload, binary, unix_nanos());
            let sent = redis::cmd(command)
                .arg(format!("{}{channel}", shared.prefix))
                .arg(&sealed[..])
                .query_async::<redis::Value>(&mut connection)
                .await;
            match sent {
                Ok(_) => return Ok(()),
                // Redis may still carry it (it answered late): delivering it here too
                // could deliver it twice, so only report the unknown outcome.
                Err(err) if err.is_timeout() => {
                    shared.events.publish_failed();
                    return Err(BrokerError::Unavailable(format!(
                        "Redis did not confirm the publish in time; it may still be delivered: {err}"
                    )));
                }
                Err(err) => format!("Redis publish failed: {err}"),
            }
        }
        None => "Redis is unreachable".to_owned(),
    };
    shared.events.publish_failed();
    shared.sink.deliver(&channel, payload, binary)?;
    Err(BrokerError::RemoteUnavailable(failure))
}

impl Broker for RedisBroker {
    /// Without waiting: when down, delivers locally and answers `RemoteUnavailable`;
    /// when up, sends the publish in the background (a failure then is only counted).
    /// Prefer [`Broker::publish_async`], which reports the outcome.
    fn publish(&self, channel: &str, payload: Bytes, binary: bool) -> Result<(), BrokerError> {
        if !self.is_up() {
            self.shared.events.publish_failed();
            self.shared.sink.deliver(channel, payload, binary)?;
            return Err(BrokerError::RemoteUnavailable(
                "Redis is unreachable".to_owned(),
            ));
        }
        let publish = publish_via_redis(self.shared.clone(), channel.to_owned(), payload, binary);
        self.runtime.spawn(async move {
            let _ = publish.await;
        });
        Ok(())
    }

    fn publish_async(&self, channel: &str, payload: Bytes, binary: bool) -> PublishFuture {
        Box::pin(publish_via_redis(
            self.shared.clone(),
            channel.to_owned(),
            payload,
            binary,
        ))
    }

    fn subscribe(&self, channel: &str) {
        let _ = self.interest.send((channel.into(), true));
    }

    fn unsubscribe(&self, channel: &str) {
        let _ = self.interest.send((channel.into(), false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::RejectReason;
    use std::sync::atomic::AtomicUsize;

    #[derive(Default)]
    struct Recorder {
        delivered: Mutex<Vec<(String, Bytes, bool)>>,
        publish_failures: AtomicUsize,
    }

    impl DeliverySink for Recorder {
        fn deliver(&self, channel: &str, payload: Bytes, binary: bool) -> Result<(), BrokerError> {
            if let Ok(mut list) = self.delivered.lock() {
                list.push((channel.to_owned(), payload, binary));
            }
            Ok(())
        }
    }

    impl BrokerEvents for Recorder {
        fn up(&self, _up: bool) {}
        fn reconnected(&self) {}
        fn received(&self) {}
        fn rejected(&self, _reason: RejectReason) {}
        fn subscriptions(&self, _count: usize) {}
        fn publish_failed(&self) {
            self.publish_failures.fetch_add(1, Ordering::SeqCst);
        }
        fn latency(&self, _seconds: f64) {}
    }

    fn config(url: &str) -> RedisConfig {
        RedisConfig::new(url, "rc:", RedisMode::Interest, 1024, |c| !c.is_empty())
    }

    /// A loopback port nothing listens on.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn without_redis_a_publish_is_delivered_locally_and_reported() {
        let recorder = Arc::new(Recorder::default());
        let url = format!("redis://127.0.0.1:{}/0", closed_port());
        let broker = RedisBroker::start(config(&url), recorder.clone(), recorder.clone()).unwrap();
        assert!(!broker.is_up());
        let result = broker
            .publish_async("news", Bytes::from_static(b"hi"), false)
            .await;
        assert!(
            matches!(result, Err(BrokerError::RemoteUnavailable(_))),
            "{result:?}"
        );
        let sync = broker.publish("news", Bytes::from_static(b"\xff"), true);
        assert!(
            matches!(sync, Err(BrokerError::RemoteUnavailable(_))),
            "{sync:?}"
        );
        let delivered = recorder.delivered.lock().unwrap().clone();
        assert_eq!(
            delivered,
            vec![
                ("news".to_owned(), Bytes::from_static(b"hi"), false),
                ("news".to_owned(), Bytes::from_static(b"\xff"), true),
            ]
        );
        assert_eq!(recorder.publish_failures.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn unusable_urls_are_refused_at_start() {
        for url in [
            "http://127.0.0.1:6379",
            "not a url",
            "rediss://127.0.0.1:6379",
        ] {
            let recorder = Arc::new(Recorder::default());
            let started = RedisBroker::start(config(url), recorder.clone(), recorder);
            assert!(
                matches!(started, Err(RedisStartError::Url { .. })),
                "{url} accepted"
            );
        }
    }

    #[test]
    fn starting_outside_a_runtime_is_an_error() {
        let recorder = Arc::new(Recorder::default());
        let started = RedisBroker::start(
            config("redis://127.0.0.1:6379/0"),
            recorder.clone(),
            recorder,
        );
        assert!(matches!(started, Err(RedisStartError::NoRuntime)));
    }
}

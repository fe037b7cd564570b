//! The Redis broker handle the node holds: it validates the settings, starts the
//! connection task, publishes through Redis (or, while Redis is away, delivers locally and
//! says so), passes the node's subscription changes on to the task, and sends the admin
//! API's disconnects to the other nodes on the control channel.

use super::clock::unix_nanos;
use super::cluster::{ClusterLink, ClusterSession, Request, is_no_route};
use super::config::{RedisConfig, RedisMode};
use super::connect::{Endpoint, EndpointError};
use super::control::{self, NodeId};
use super::envelope;
use super::events::BrokerEvents;
use super::history;
use super::interest_queue::InterestQueue;
use super::occupancy::ClusterOccupancy;
use super::session::Session;
use super::shared::Shared;
use crate::{Broker, BrokerError, DeliverySink, DisconnectTarget, FetchFuture, PublishFuture};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The broker could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RedisStartError {
    /// The URL is not a usable `redis://` or `rediss://` URL.
    #[error("invalid Redis URL `{url}`: {reason}")]
    Url {
        /// The URL, its password replaced by `***`.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS settings for a `rediss://` URL are unusable (the CA file).
    #[error("Redis TLS settings: {0}")]
    Tls(String),
    /// The settings do not fit together (Redis Cluster needs sharded mode and a prefix
    /// without hash tag braces).
    #[error("Redis settings: {0}")]
    Settings(String),
    /// Not called inside a tokio runtime.
    #[error("the Redis broker must start inside a tokio runtime")]
    NoRuntime,
}

/// The Redis broker handle. Cheap to share; the connection lives in a task on the tokio
/// runtime it was started on, and ends when the handle is dropped.
pub struct RedisBroker {
    shared: Arc<Shared>,
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
        if config.cluster && config.mode != RedisMode::Sharded {
            return Err(RedisStartError::Settings(
                "Redis Cluster takes sharded pub/sub (--redis-mode sharded)".into(),
            ));
        }
        if config.cluster && config.prefix.contains(['{', '}']) {
            return Err(RedisStartError::Settings(
                "in Redis Cluster mode the prefix must not contain `{` or `}`: the history keys' hash tag is the channel".into(),
            ));
        }
        let endpoint = Endpoint::parse(&config.url, config.tls_ca.as_deref(), config.cluster)
            .map_err(|err| match err {
                EndpointError::Url(reason) => RedisStartError::Url {
                    url: crate::redact_url(&config.url),
                    reason,
                },
                EndpointError::Tls(reason) => RedisStartError::Tls(reason),
            })?;
        let (reads, read_queue) = tokio::sync::mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            node: NodeId::random(),
            reads,
            prefix: config.prefix.clone(),
            mode: config.mode,
            sink,
            events,
            up: Arc::new(AtomicBool::new(false)),
            history: config.history.clone(),
            connection: Mutex::new(None),
            cluster: config.cluster.then(ClusterLink::default),
            interest: InterestQueue::default(),
        });
        shared.events.up(false);
        shared.events.subscriptions(0);
        if config.cluster {
            let (session, pushes) =
                ClusterSession::new(shared.clone(), config, endpoint, read_queue);
            runtime.spawn(session.run(pushes));
        } else {
            runtime.spawn(Session::new(shared.clone(), config, endpoint, read_queue).run());
        }
        Ok(RedisBroker { shared, runtime })
    }

    /// `true` while connected and subscribed; shared, so readiness can report it.
    pub fn up_flag(&self) -> Arc<AtomicBool> {
        self.shared.up.clone()
    }

    /// The cluster's channel occupancy counts in Redis, written and read over this
    /// broker's connection.
    pub fn occupancy(&self) -> ClusterOccupancy {
        ClusterOccupancy::new(self.shared.clone())
    }

    /// Whether the broker is connected and subscribed.
    pub(crate) fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::Acquire)
    }
}

/// Publishes through Redis, or, when that fails, delivers locally and says so.
async fn publish_via_redis(
    shared: Arc<Shared>,
    channel: String,
    payload: Bytes,
    binary: bool,
) -> Result<(), BrokerError> {
    let command = match shared.mode {
        RedisMode::Sharded => "SPUBLISH",
        RedisMode::Interest | RedisMode::Pattern => "PUBLISH",
    };
    let redis_channel = format!("{}{channel}", shared.prefix);
    let now = unix_nanos();
    let sent = match shared.history.as_ref().filter(|h| (h.keeps)(&channel)) {
        Some(history) => history::append_and_publish(
            &shared,
            history,
            &redis_channel,
            command,
            &payload,
            binary,
            now,
        )
        .await
        .map(drop),
        None => {
            let mut publish = redis::cmd(command);
            publish
                .arg(&redis_channel)
                .arg(&envelope::seal(&payload, binary, now)[..]);
            shared
                .query_routed::<redis::Value>(redis_channel.as_bytes(), &Request::Cmd(&publish))
                .await
                .map(drop)
        }
    };
    let failure = match sent {
        Ok(()) => return Ok(()),
        Err(err) if is_no_route(&err) => match err.detail() {
            Some(detail) if shared.cluster.is_some() => format!("Redis is unreachable: {detail}"),
            _ => "Redis is unreachable".to_owned(),
        },
        // Redis may still carry it (it answered late): delivering it here too could
        // deliver it twice, so only report the unknown outcome.
        Err(err) if err.is_timeout() => {
            shared.events.publish_failed();
            return Err(BrokerError::Unavailable(format!(
                "Redis did not confirm the publish in time; it may still be delivered: {err}"
            )));
        }
        Err(err) => format!("Redis publish failed: {err}"),
    };
    shared.events.publish_failed();
    shared.sink.deliver(&channel, payload, binary, None)?;
    Err(BrokerError::RemoteUnavailable(failure))
}

impl Broker for RedisBroker {
    /// Without waiting: when down, delivers locally and answers `RemoteUnavailable`;
    /// when up, sends the publish in the background (a failure then is only counted).
    /// Prefer [`Broker::publish_async`], which reports the outcome.
    fn publish(&self, channel: &str, payload: Bytes, binary: bool) -> Result<(), BrokerError> {
        // A cluster with one master down still takes the other masters' channels.
        if !self.is_up() && self.shared.cluster.is_none() {
            self.shared.events.publish_failed();
            self.shared.sink.deliver(channel, payload, binary, None)?;
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
        self.shared.interest.set(channel, true);
    }

    fn unsubscribe(&self, channel: &str) {
        self.shared.interest.set(channel, false);
    }

    /// `PUBLISH <prefix>#control` (classic, in every mode: every node listens there; a
    /// Redis Cluster carries a classic publish to every node);
    /// `Unavailable` while Redis is away or when it did not take the request (counted as
    /// a failed publish).
    fn disconnect_cluster(&self, target: &DisconnectTarget) -> PublishFuture {
        let shared = self.shared.clone();
        let request = control::disconnect_request(shared.node, target);
        Box::pin(async move {
            let Some(mut connection) = shared.connection() else {
                shared.events.publish_failed();
                return Err(BrokerError::Unavailable("Redis is unreachable".into()));
            };
            let sent = redis::cmd("PUBLISH")
                .arg(control::control_channel(&shared.prefix))
                .arg(request)
                .query_async::<redis::Value>(&mut connection)
                .await;
            sent.map(drop).map_err(|err| {
                shared.events.publish_failed();
                BrokerError::Unavailable(format!("Redis did not take the disconnect: {err}"))
            })
        })
    }

    fn fetch_history(&self, channel: &str) -> FetchFuture {
        let shared = self.shared.clone();
        let redis_channel = format!("{}{channel}", shared.prefix);
        Box::pin(async move {
            if shared.connection().is_none() {
                return Err(BrokerError::Unavailable("Redis is unreachable".into()));
            }
            let (reply, answer) = tokio::sync::oneshot::channel();
            let read = history::HistoryRead {
                redis_channel,
                reply,
            };
            let lost = || BrokerError::Unavailable("the Redis connection was lost".into());
            shared.reads.send(read).map_err(|_| lost())?;
            answer
                .await
                .map_err(|_| lost())?
                .map_err(|err| BrokerError::Unavailable(format!("reading history: {err}")))
        })
    }
}

/// The connection task ends with the handle.
impl Drop for RedisBroker {
    fn drop(&mut self) {
        self.shared.interest.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::events::RejectReason;
    use std::sync::atomic::AtomicUsize;

    #[derive(Default)]
    struct Recorder {
        delivered: Mutex<Vec<(String, Bytes, bool)>>,
        publish_failures: AtomicUsize,
    }

    impl DeliverySink for Recorder {
        fn deliver(
            &self,
            channel: &str,
            payload: Bytes,
            binary: bool,
            _position: Option<crate::Position>,
        ) -> Result<(), BrokerError> {
            if let Ok(mut list) = self.delivered.lock() {
                list.push((channel.to_owned(), payload, binary));
            }
            Ok(())
        }

        fn disconnect(&self, _target: DisconnectTarget) {}
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
        fn push_backlog_full(&self, _times: usize) {}
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
        let target = DisconnectTarget::Channel("news".into());
        let result = broker.disconnect_cluster(&target).await;
        assert!(
            matches!(result, Err(BrokerError::Unavailable(_))),
            "{result:?}"
        );
        assert_eq!(recorder.publish_failures.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn unusable_urls_are_refused_at_start() {
        for url in [
            "http://127.0.0.1:6379",
            "not a url",
            "rediss://user:s3cret@127.0.0.1:6379/#insecure",
        ] {
            let recorder = Arc::new(Recorder::default());
            let started = RedisBroker::start(config(url), recorder.clone(), recorder);
            let Err(err @ RedisStartError::Url { .. }) = started else {
                panic!("{url} accepted");
            };
            assert!(!err.to_string().contains("s3cret"), "{err}");
        }
    }

    #[tokio::test]
    async fn tls_urls_start_and_an_unreadable_ca_file_is_refused() {
        let recorder = Arc::new(Recorder::default());
        let url = format!("rediss://user:s3cret@127.0.0.1:{}/0", closed_port());
        let started = RedisBroker::start(config(&url), recorder.clone(), recorder.clone());
        assert!(started.is_ok());
        let mut with_ca = config(&url);
        with_ca.tls_ca = Some("/nonexistent/ringcast-ca.pem".into());
        let started = RedisBroker::start(with_ca, recorder.clone(), recorder);
        assert!(
            matches!(&started, Err(RedisStartError::Tls(reason)) if reason.contains("/nonexistent/ringcast-ca.pem")),
            "{:?}",
            started.err()
        );
    }

    #[tokio::test]
    async fn cluster_settings_that_do_not_fit_are_refused() {
        let recorder = Arc::new(Recorder::default());
        let url = "redis://127.0.0.1:7000,127.0.0.1:7001";
        let mut interest = config(url);
        interest.cluster = true;
        let started = RedisBroker::start(interest, recorder.clone(), recorder.clone());
        assert!(matches!(started, Err(RedisStartError::Settings(_))));
        let mut braces =
            RedisConfig::new(url, "{rc}:", RedisMode::Sharded, 1024, |c| !c.is_empty());
        braces.cluster = true;
        let started = RedisBroker::start(braces, recorder.clone(), recorder.clone());
        assert!(matches!(started, Err(RedisStartError::Settings(_))));
        let mut sharded = RedisConfig::new(url, "rc:", RedisMode::Sharded, 1024, |c| !c.is_empty());
        sharded.cluster = true;
        let broker = RedisBroker::start(sharded, recorder.clone(), recorder.clone()).unwrap();
        // No seed answers: a publish is delivered here and reported.
        let result = broker
            .publish_async("news", Bytes::from_static(b"hi"), false)
            .await;
        assert!(
            matches!(result, Err(BrokerError::RemoteUnavailable(_))),
            "{result:?}"
        );
        assert_eq!(recorder.delivered.lock().unwrap().len(), 1);
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

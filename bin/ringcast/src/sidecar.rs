//! The sidecar: one tokio thread beside the shards for everything async: the admin HTTP
//! server (`ringcast-admin`: publish, disconnect, occupancy, metrics, health), the broker
//! and its subscription commands, the occupancy task and webhook, signal handling and
//! the drain. It never touches a connection.

use crate::broker_metrics::BrokerMetrics;
use crate::disconnect::ShardDisconnector;
use crate::jwks::JwksFetch;
use crate::mesh::{Mesh, Sent};
use crate::occupancy::NodeOccupancy;
use crate::shard_sink::ShardSink;
use crate::tls_certs::ServedCert;
use crate::webhook::Webhook;
use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use ringcast_admin::{AdminAccess, AdminLimits, AdminState, admin_router, serve_admin};
use ringcast_broker::{Broker, LocalBroker, RedisBroker, RedisConfig};
use ringcast_shard::{
    BrokerCmd, ChannelName, Epoch, FetchedHistory, OccupancySnapshot, ShardMsg, owner_of,
};
use ringcast_telemetry::run_upkeep_every;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

/// Reads `channel`'s history from the broker and hands it to the channel's owner shard
/// (None when it could not be read: the owner then answers from what it has).
async fn fetch_history(broker: Arc<dyn Broker>, mesh: Arc<Mesh>, channel: ChannelName) {
    let fetched = match broker.fetch_history(&channel).await {
        Ok(fetched) => Some(FetchedHistory {
            epoch: fetched.epoch.and_then(Epoch::from_ascii),
            messages: fetched
                .messages
                .into_iter()
                .filter_map(|m| Some((m.position?.offset, m.payload, m.binary)))
                .collect(),
        }),
        Err(err) => {
            tracing::warn!(%channel, "reading the channel's history failed: {err}");
            None
        }
    };
    // On the publish lane, behind the channel's messages the broker handed over before
    // this answer (the connection task releases it only after them).
    let owner = owner_of(&channel, mesh.len());
    let mut msg = ShardMsg::HistoryFetched { channel, fetched };
    loop {
        match mesh.publish(owner, msg) {
            Sent::Queued | Sent::Gone => break,
            Sent::Full(back) => {
                msg = back;
                mesh.nudge(owner);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    mesh.nudge(owner);
}

/// Exit code when a shard panicked or ended on its own (EX_SOFTWARE), also mid-drain.
const SHARD_FAILED: u8 = 70;

/// A shard thread ended; `panicked` when it unwound.
#[derive(Debug, Clone, Copy)]
pub struct ShardExit {
    /// Which shard.
    pub shard: usize,
    /// Whether it ended by panicking.
    pub panicked: bool,
}

/// What the sidecar needs from the start-up code.
pub struct Sidecar {
    /// Admin HTTP address.
    pub admin: SocketAddr,
    /// Every shard's inbox.
    pub mesh: Arc<Mesh>,
    /// Renders /metrics.
    pub prometheus: PrometheusHandle,
    /// Owner shards' subscribe/unsubscribe commands.
    pub broker_cmds: flume::Receiver<BrokerCmd>,
    /// Shard threads report here when they end.
    pub exits: flume::Receiver<ShardExit>,
    /// Drain window.
    pub drain: Duration,
    /// Time between failing readiness and starting to close connections.
    pub drain_grace: Duration,
    /// Largest publish body.
    pub max_message_bytes: usize,
    /// The Redis broker's settings; `None` = in-process broker (this node only).
    pub redis: Option<RedisConfig>,
    /// Who may publish through the admin API.
    pub admin_access: AdminAccess,
    /// The admin listener's timeouts and connection cap.
    pub admin_limits: AdminLimits,
    /// The TLS certificate of the listen ports, reloaded on SIGHUP and file changes.
    pub served_cert: Option<Arc<ServedCert>>,
    /// The admin port's TLS configuration (`--admin-tls`: the listen ports' one, so the
    /// same certificate and reloads); `None` = plain HTTP.
    pub admin_tls: Option<Arc<rustls::ServerConfig>>,
    /// The JWKS fetcher (`--jwks-url`).
    pub jwks: Option<JwksFetch>,
    /// Every shard's channel counts, by shard id.
    pub occupancy: Vec<OccupancySnapshot>,
    /// The occupancy webhook (`--webhook-url`).
    pub webhook: Option<Webhook>,
    /// Whether channels keep history (`--history-size` > 0).
    pub history: bool,
}

enum Stop {
    Signal(&'static str),
    ShardEnded(ShardExit),
}

impl Sidecar {
    /// Serves until SIGTERM/SIGINT (then drains and returns success) or until a shard
    /// ends on its own (returns failure so a supervisor restarts the node).
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the sidecar runtime")?;
        runtime.block_on(self.serve())
    }

    async fn serve(mut self) -> anyhow::Result<ExitCode> {
        let ready = Arc::new(AtomicBool::new(true));
        let sink = ShardSink {
            mesh: self.mesh.clone(),
        };
        let (broker, broker_up, cluster): (Arc<dyn Broker>, _, _) = match self.redis.clone() {
            Some(redis) => {
                BrokerMetrics::register_all();
                let redis = RedisBroker::start(redis, Arc::new(sink), Arc::new(BrokerMetrics))
                    .context("starting the Redis broker")?;
                let up = redis.up_flag();
                let cluster = redis.occupancy();
                (Arc::new(redis), Some(up), Some(cluster))
            }
            None => (Arc::new(LocalBroker::new(sink)), None, None),
        };
        let webhook_queue = self.webhook.as_ref().map(Webhook::queue);
        if let Some(webhook) = self.webhook.take() {
            tokio::spawn(webhook.run());
        }
        tokio::spawn(crate::occupancy::run(
            self.occupancy.clone(),
            cluster.clone(),
            webhook_queue,
        ));
        let state = AdminState {
            broker: broker.clone(),
            ready: ready.clone(),
            prometheus: self.prometheus.clone(),
            max_message_bytes: self.max_message_bytes,
            broker_up,
            access: self.admin_access.clone(),
            disconnector: Arc::new(ShardDisconnector {
                mesh: self.mesh.clone(),
            }),
            occupancy: Arc::new(NodeOccupancy {
                snapshots: self.occupancy.clone(),
                cluster,
                history: self.history,
                mesh: self.mesh.clone(),
            }),
        };
        let listener = tokio::net::TcpListener::bind(self.admin)
            .await
            .with_context(|| format!("binding the admin port {}", self.admin))?;
        let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin = tokio::spawn(serve_admin(
            listener,
            admin_router(state),
            self.admin_limits,
            self.admin_tls.clone(),
            async move {
                let _ = admin_stopped.await;
            },
        ));
        tokio::spawn(run_upkeep_every(
            self.prometheus.clone(),
            Duration::from_secs(5),
        ));
        if let Some(jwks) = self.jwks.take() {
            tokio::spawn(jwks.run());
        }
        if let Some(cert) = self.served_cert.clone() {
            let hangups = signal(SignalKind::hangup()).context("installing SIGHUP")?;
            tokio::spawn(reload_certificates(cert, hangups));
        }
        let cmds = self.broker_cmds.clone();
        let mesh = self.mesh.clone();
        tokio::spawn(async move {
            while let Ok(cmd) = cmds.recv_async().await {
                match cmd {
                    BrokerCmd::Subscribe(channel) => broker.subscribe(&channel),
                    BrokerCmd::Unsubscribe(channel) => broker.unsubscribe(&channel),
                    BrokerCmd::FetchHistory(channel) => {
                        tokio::spawn(fetch_history(broker.clone(), mesh.clone(), channel));
                    }
                }
            }
        });
        tracing::info!(admin = %self.admin, shards = self.mesh.len(), "ringcast is serving");

        let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM")?;
        let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT")?;
        let stop = tokio::select! {
            _ = sigterm.recv() => Stop::Signal("SIGTERM"),
            _ = sigint.recv() => Stop::Signal("SIGINT"),
            exit = self.exits.recv_async() => match exit {
                Ok(exit) => Stop::ShardEnded(exit),
                Err(_) => Stop::Signal("all shards gone"),
            },
        };
        let code = match stop {
            Stop::ShardEnded(exit) => {
                tracing::error!(
                    shard = exit.shard,
                    panicked = exit.panicked,
                    "a shard stopped unexpectedly; exiting so the supervisor restarts the node"
                );
                ExitCode::from(SHARD_FAILED)
            }
            Stop::Signal(name) => {
                tracing::info!(signal = name, drain = ?self.drain, "draining");
                ready.store(false, Ordering::SeqCst);
                // Load balancers see /readyz fail before any connection is closed.
                tokio::time::sleep(self.drain_grace).await;
                if self.drain_shards().await {
                    ExitCode::from(SHARD_FAILED)
                } else {
                    ExitCode::SUCCESS
                }
            }
        };
        let _ = stop_admin.send(());
        let _ = tokio::time::timeout(Duration::from_millis(500), admin).await;
        Ok(code)
    }

    /// Tells every shard to close its listeners and its connections with 1001, spread
    /// evenly over four fifths of the drain window (the rest is for the clients' close
    /// replies), then waits for all of them to end, at most the drain window. Returns
    /// whether a shard panicked meanwhile (or during the grace before).
    async fn drain_shards(&self) -> bool {
        let spread_ms = (self.drain.as_millis() as u64 * 4 / 5).max(1);
        for shard in 0..self.mesh.len() {
            self.mesh
                .send_waiting(shard, ShardMsg::Drain { spread_ms })
                .await;
            self.mesh.nudge(shard);
        }
        let mut panicked = false;
        let wait_all = async {
            for _ in 0..self.mesh.len() {
                match self.exits.recv_async().await {
                    Ok(exit) if exit.panicked => {
                        tracing::error!(shard = exit.shard, "a shard panicked while draining");
                        panicked = true;
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        };
        if tokio::time::timeout(self.drain + Duration::from_millis(200), wait_all)
            .await
            .is_err()
        {
            tracing::warn!("drain window over with shards still closing; exiting anyway");
        }
        panicked
    }
}

/// How often the certificate files are checked for a change.
const CERT_CHECK_EVERY: Duration = Duration::from_secs(5);

/// Reloads the TLS certificate on SIGHUP and whenever its files change.
async fn reload_certificates(cert: Arc<ServedCert>, mut hangups: tokio::signal::unix::Signal) {
    metrics::counter!(ringcast_telemetry::names::TLS_RELOADS).increment(0);
    metrics::counter!(ringcast_telemetry::names::TLS_RELOAD_ERRORS).increment(0);
    let mut every = tokio::time::interval(CERT_CHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = hangups.recv() => cert.reload(),
            _ = every.tick() => {
                if cert.changed() {
                    cert.reload();
                }
            }
        }
    }
}

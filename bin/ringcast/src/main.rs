//! ringcast: starts one pinned io_uring shard per core and the sidecar, then waits for
//! a signal to drain. Glue only: the logic lives in the crates.

mod address_check;
mod broker_metrics;
mod config;
mod disconnect;
mod http_client;
mod jwks;
mod logging;
mod mesh;
mod occupancy;
mod shard_sink;
mod shard_thread;
mod sidecar;
mod tls_certs;
mod webhook;
mod webhook_queue;

use address_check::{Purpose, ensure_unserved};
use anyhow::{Context, bail};
use clap::Parser;
use config::{Command, Config, RedisModeArg, SlowConsumerPolicy, TokenArgs};
use jwks::JwksFetch;
use mesh::{Mesh, inbox};
use ringcast_admin::{AdminAccess, AdminLimits};
use ringcast_broker::{RedisConfig, RedisHistory, RedisMode};
use ringcast_shard::{
    AuthPolicy, ChannelPatterns, HistoryConfig, JwksKeys, JwtRules, JwtSettings, OccupancySnapshot,
    Shard, ShardConfig, SlowConsumer, connection_shares, mint_token,
};
use ringcast_uring::{Reactor, ReactorConfig, Waker, bind_reuseport};
use shard_thread::ShardThread;
use sidecar::{ShardExit, Sidecar};
use std::hash::BuildHasher;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tls_certs::ServedCert;
use webhook::Webhook;

/// Subscription changes the broker's queue holds (the shards keep what does not fit).
const BROKER_CMD_QUEUE: usize = 4_096;

fn main() -> ExitCode {
    let config = Config::parse();
    logging::init(config.log_format);
    match run(config) {
        Ok(code) => code,
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reports a shard thread's end to the sidecar, also when it unwinds.
struct ExitGuard {
    shard: usize,
    exits: flume::Sender<ShardExit>,
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let _ = self.exits.send(ShardExit {
            shard: self.shard,
            panicked: std::thread::panicking(),
        });
    }
}

/// `ringcast token`: prints a token signed with the configured secret.
fn print_token(secret: Option<&[u8]>, args: &TokenArgs) -> anyhow::Result<ExitCode> {
    let secret = secret.context("--auth-secret (or RINGCAST_AUTH_SECRET) is required")?;
    let expires = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("system clock before 1970")?
        .saturating_add(args.ttl)
        .as_secs();
    let token = mint_token(secret, &args.channels, expires).context("--channel")?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

/// The JWT rules, when any JWT setting is given.
fn jwt_rules(config: &Config, jwks: Option<Arc<JwksKeys>>) -> anyhow::Result<Option<JwtRules>> {
    if config.jwt_secret.is_none() && config.jwt_public_key.is_none() && jwks.is_none() {
        return Ok(None);
    }
    let public_key_pem = config
        .jwt_public_key
        .as_ref()
        .map(|path| {
            std::fs::read(path).with_context(|| format!("--jwt-public-key {}", path.display()))
        })
        .transpose()?;
    let rules = JwtRules::new(JwtSettings {
        secret: config.jwt_secret.as_ref().map(|s| s.as_bytes().to_vec()),
        public_key_pem,
        jwks,
        audience: config.jwt_audience.clone(),
        issuer: config.jwt_issuer.clone(),
        channels_claim: Some(config.jwt_channels_claim.clone()),
    })
    .context("JWT settings")?;
    if config.jwt_audience.is_none()
        && (config.jwt_public_key.is_some() || config.jwks_url.is_some())
    {
        tracing::warn!(
            "JWTs signed by a public key are accepted for any audience: set --jwt-audience so a \
             token the identity provider issued for another service is refused"
        );
    }
    Ok(Some(rules))
}

fn run(config: Config) -> anyhow::Result<ExitCode> {
    let secret = config.auth_secret_bytes()?;
    if let Some(Command::Token(args)) = &config.command {
        return print_token(secret, args);
    }
    let auth = AuthPolicy::new(config.allowed_origins.clone(), secret.map(<[u8]>::to_vec));
    let jwks = config
        .jwks_url
        .as_deref()
        .map(|url| JwksFetch::new(url, config.jwks_refresh, config.jwks_ca.as_deref()))
        .transpose()?;
    let auth = match jwt_rules(&config, jwks.as_ref().map(|j| Arc::clone(&j.keys)))? {
        Some(rules) => auth.with_jwt(rules),
        None => auth,
    };
    let prometheus = ringcast_telemetry::install_recorder().context("installing metrics")?;
    let served_cert = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(ServedCert::load(cert, key)?)),
        _ => None,
    };
    let tls = served_cert
        .as_ref()
        .map(ServedCert::server_config)
        .transpose()?;
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let shards = usize::from(config.shards.unwrap_or(cores.len().max(1) as u16));
    let addrs: Vec<_> = config.listen.iter().flat_map(|r| r.addrs.clone()).collect();
    for addr in &addrs {
        ensure_unserved(*addr, Purpose::Listen)?;
    }
    ensure_unserved(config.admin, Purpose::Admin)?;
    let max_message_bytes = config.max_message_bytes as usize;
    let (connection_share, spare_connections) = connection_shares(config.max_connections, shards);

    for queue in ringcast_telemetry::QueueName::ALL {
        queue.count_full(0);
    }
    let (broker_tx, broker_rx) = flume::bounded(BROKER_CMD_QUEUE);
    let (exit_tx, exit_rx) = flume::unbounded();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<(usize, Result<Waker, String>)>();
    let mut inbox_txs = Vec::with_capacity(shards);
    let mut mesh_txs = Vec::with_capacity(shards);
    let history_channels = ChannelPatterns::parse(&config.history_channels);
    let mut occupancy: Vec<OccupancySnapshot> = Vec::with_capacity(shards);
    let webhook = match (&config.webhook_url, &config.webhook_secret) {
        (Some(url), Some(secret)) => Some(Webhook::new(url, secret)?),
        _ => None,
    };
    for id in 0..shards {
        let mut listeners = Vec::with_capacity(addrs.len());
        for addr in &addrs {
            listeners.push(
                bind_reuseport(*addr, config.backlog)
                    .with_context(|| format!("listening on {addr}"))?,
            );
        }
        let (inbox_tx, inbox) = inbox();
        inbox_txs.push(inbox_tx);
        let (mesh_tx, mesh_rx) = std::sync::mpsc::channel::<Arc<Mesh>>();
        mesh_txs.push(mesh_tx);
        // Random bits of this process (std seeds each RandomState from the OS), so a
        // restarted node never draws an epoch it drew before.
        let epoch_seed = std::collections::hash_map::RandomState::new().hash_one(id);
        let shard_cfg = ShardConfig {
            id: id as u16,
            shards: shards as u16,
            ping_interval_ms: config.ping_interval.as_millis() as u64,
            pong_timeout_ms: config.pong_timeout.as_millis() as u64,
            handshake_timeout_ms: config.handshake_timeout.as_millis() as u64,
            linger_ms: 2_000,
            max_message_bytes,
            max_connections: connection_share,
            spare_connections: spare_connections.clone(),
            handshakes_per_sec: config.max_handshakes_per_sec.div_ceil(shards as u32),
            max_queue_bytes: config.max_queue_bytes,
            slow_consumer: match config.slow_consumer {
                SlowConsumerPolicy::Close => SlowConsumer::Close,
                SlowConsumerPolicy::DropOldest => SlowConsumer::DropOldest,
            },
            connect_rate_per_ip: config.connect_rate_per_ip.div_ceil(shards as u32),
            max_channels_per_conn: config.max_channels_per_conn as usize,
            client_commands: config.client_commands,
            tick_channel: config.tick_channel.clone(),
            compression: config.compression,
            compression_min_bytes: config.compression_min_bytes,
            poll_timeout_ms: config.poll_timeout.as_millis() as u64,
            poll_ring: config.poll_ring as usize,
            history: HistoryConfig {
                size: config.history_size as usize,
                ttl_ms: config.history_ttl.as_millis() as u64,
                max_bytes: config.history_max_bytes as usize,
                channels: history_channels.clone(),
                epoch_seed,
            },
            sees_every_publish: config.redis.is_none(),
            poll_max_bytes: config.poll_max_bytes,
            channel_create_rate_per_ip: config.channel_create_rate_per_ip.div_ceil(shards as u32),
            auth: auth.clone(),
            tls: tls.clone(),
            unix_ms_at_zero: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            tick_ms: 50,
            occupancy: OccupancySnapshot::default(),
        };
        occupancy.push(shard_cfg.occupancy.clone());
        let reactor_cfg = ReactorConfig {
            sq_entries: 4096,
            buf_count: config.recv_buffers,
            buf_size: config.recv_buffer_size,
            coalesce: Duration::from_micros(u64::from(config.coalesce_us)),
        };
        let core = if config.no_pin {
            None
        } else {
            cores.get(id % cores.len().max(1)).copied()
        };
        let ready_tx = ready_tx.clone();
        let exits = exit_tx.clone();
        let broker_cmds = broker_tx.clone();
        let drain_ms = config.drain_seconds.as_millis() as u64;
        let panic_on_channel = config.panic_on_channel.clone();
        let slow_per_message = config
            .slow_shard_us
            .filter(|_| id == 0)
            .map(Duration::from_micros);
        std::thread::Builder::new()
            .name(format!("ringcast-shard-{id}"))
            .spawn(move || {
                let _guard = ExitGuard { shard: id, exits };
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                let reactor = match Reactor::new(reactor_cfg) {
                    Ok(reactor) => reactor,
                    Err(err) => {
                        let _ = ready_tx.send((id, Err(err.to_string())));
                        return;
                    }
                };
                let _ = ready_tx.send((id, Ok(reactor.waker())));
                let Ok(mesh) = mesh_rx.recv() else {
                    return;
                };
                ShardThread {
                    shard: std::mem::ManuallyDrop::new(Shard::new(shard_cfg)),
                    reactor,
                    listeners,
                    inbox,
                    mesh,
                    broker_cmds,
                    waiting: Default::default(),
                    drain_ms,
                    accept_rearm: Vec::new(),
                    panic_on_channel,
                    slow_per_message,
                }
                .run();
            })
            .context("spawning a shard thread")?;
    }
    drop(ready_tx);
    drop(exit_tx);

    let mut wakers: Vec<Option<Waker>> = (0..shards).map(|_| None).collect();
    for _ in 0..shards {
        let (id, result) = ready_rx
            .recv()
            .context("a shard thread died during start-up")?;
        match result {
            Ok(waker) => wakers[id] = Some(waker),
            Err(err) => bail!("shard {id}: {err}"),
        }
    }
    let parts = inbox_txs
        .into_iter()
        .zip(wakers)
        .map(|(tx, waker)| waker.map(|w| (tx, w)))
        .collect::<Option<Vec<_>>>()
        .context("a shard did not report its waker")?;
    let mesh = Arc::new(Mesh::new(parts));
    for tx in mesh_txs {
        tx.send(mesh.clone())
            .context("a shard thread died during start-up")?;
    }
    tracing::info!(
        shards,
        listen = ?addrs,
        tls = tls.is_some(),
        "shards started"
    );
    Sidecar {
        admin: config.admin,
        mesh,
        prometheus,
        broker_cmds: broker_rx,
        exits: exit_rx,
        drain: config.drain_seconds,
        drain_grace: config.drain_grace,
        max_message_bytes,
        redis: config.redis.as_deref().map(|url| {
            let mode = match config.redis_mode {
                RedisModeArg::Interest => RedisMode::Interest,
                RedisModeArg::Pattern => RedisMode::Pattern,
                RedisModeArg::Sharded => RedisMode::Sharded,
            };
            let mut redis = RedisConfig::new(
                url,
                &config.redis_prefix,
                mode,
                max_message_bytes,
                ringcast_proto::is_valid_channel,
            );
            redis.tls_ca = config.redis_ca.clone();
            redis.cluster = config.redis_cluster;
            if config.history_size > 0 {
                let channels = history_channels.clone();
                redis.history = Some(RedisHistory {
                    size: config.history_size as usize,
                    ttl: config.history_ttl,
                    keeps: Arc::new(move |channel: &str| channels.matches(channel)),
                });
            }
            redis
        }),
        admin_access: AdminAccess {
            token: config.admin_token.clone(),
            allowed_origins: config.admin_allowed_origins.clone(),
            allowed_hosts: config.admin_allowed_hosts.clone(),
        },
        admin_limits: AdminLimits {
            header_timeout: config.admin_header_timeout,
            idle_timeout: config.admin_idle_timeout,
            max_connections: config.admin_max_connections as usize,
        },
        served_cert,
        jwks,
        occupancy,
        webhook,
        history: config.history_size > 0,
        admin_tls: if config.admin_tls { tls } else { None },
    }
    .run()
}

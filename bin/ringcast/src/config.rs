//! Command line and environment configuration (every flag `--x-y` is also `RINGCAST_X_Y`).

use clap::Parser;
use ringcast_uring::DEFAULT_COALESCE_US;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print a signed token for `--auth-secret` (or RINGCAST_AUTH_SECRET).
    Token(TokenArgs),
}

/// `ringcast token` arguments.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// A channel the token allows (repeatable; `*` = every channel).
    #[arg(long = "channel", required = true)]
    pub channels: Vec<String>,
    /// How long the token is valid: `90s`, `30m`, `1h`, `7d` or seconds; 1 s to 3650 d.
    #[arg(long, value_parser = parse_ttl, default_value = "1h")]
    pub ttl: Duration,
}

/// Longest `ringcast token --ttl`: ten years. Longer is a token that never expires.
const MAX_TOKEN_TTL_SECS: u64 = 3650 * 86_400;

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}`: expected e.g. 90s, 30m, 1h, 7d"))?;
    let unit_secs: u64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{text}`: unit must be s, m, h or d")),
    };
    match n.checked_mul(unit_secs) {
        Some(secs @ 1..=MAX_TOKEN_TTL_SECS) => Ok(Duration::from_secs(secs)),
        _ => Err(format!("`{text}`: a token lives from 1s to 3650d")),
    }
}

/// Shortest accepted `--auth-secret`: the 32 bytes of an HMAC-SHA256 output. A shorter
/// (or empty) key makes every token guessable offline.
pub const MIN_AUTH_SECRET_BYTES: usize = 32;

/// Why `--auth-secret` is refused; never shows the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortSecret {
    /// Its length in bytes.
    pub len: usize,
}

impl std::fmt::Display for ShortSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--auth-secret (RINGCAST_AUTH_SECRET) must be at least {MIN_AUTH_SECRET_BYTES} bytes, \
             got {}; generate one with `openssl rand -hex 32`",
            self.len
        )
    }
}

impl std::error::Error for ShortSecret {}

/// The `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human readable lines (colours only when stderr is a terminal).
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The `--slow-consumer` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SlowConsumerPolicy {
    /// Close the connection with 1008.
    Close,
    /// Drop the connection's oldest waiting messages.
    DropOldest,
}

/// The `--redis-mode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RedisModeArg {
    /// SUBSCRIBE only channels with local subscribers (batched).
    Interest,
    /// One PSUBSCRIBE <prefix>*: every node receives every message.
    Pattern,
    /// SSUBSCRIBE/SPUBLISH (Redis 7 sharded pub/sub).
    Sharded,
}

/// A listen address with a port range: `ADDR:PORT` or `ADDR:FIRST-LAST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenRange {
    /// Addresses, one per port in the range.
    pub addrs: Vec<SocketAddr>,
}

/// Parses `127.0.0.1:10000` or `127.0.0.1:10000-10999` (IPv6 as `[::1]:10000-10003`).
pub fn parse_listen(text: &str) -> Result<ListenRange, String> {
    let (host, ports) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("`{text}`: expected ADDR:PORT or ADDR:FIRST-LAST"))?;
    let (first, last) = ports.split_once('-').unwrap_or((ports, ports));
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("`{text}`: `{p}` is not a port"))
    };
    let (first, last) = (port(first)?, port(last)?);
    if first == 0 || last < first {
        return Err(format!(
            "`{text}`: port range must be 1..=65535 and ascending"
        ));
    }
    let ip = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .map_err(|_| format!("`{text}`: `{host}` is not an IP address"))?;
    Ok(ListenRange {
        addrs: (first..=last).map(|p| SocketAddr::new(ip, p)).collect(),
    })
}

fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(0.001..=86_400.0).contains(&secs) {
        return Err(format!("`{text}`: seconds must be between 0.001 and 86400"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_origin(text: &str) -> Result<String, String> {
    ringcast_shard::check_origin_pattern(text)
        .map(|()| text.to_owned())
        .map_err(|err| err.to_string())
}

fn parse_channel(text: &str) -> Result<String, String> {
    if ringcast_proto::is_valid_channel(text) {
        Ok(text.to_owned())
    } else {
        Err(format!("`{text}`: 1-255 bytes of [A-Za-z0-9_.:-]"))
    }
}

fn parse_secs_or_zero(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    parse_secs(text)
}

/// Parses `--admin-token` without echoing the refused value in the error (clap's
/// `invalid value '<value>'` would print a secret to the logs).
#[derive(Debug, Clone, Copy)]
struct AdminTokenParser;

impl clap::builder::TypedValueParser for AdminTokenParser {
    type Value = ringcast_admin::AdminToken;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        let refused = |reason: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("--admin-token (RINGCAST_ADMIN_TOKEN): {reason}\n"),
            )
        };
        let text = value
            .to_str()
            .ok_or_else(|| refused("not valid UTF-8".to_owned()))?;
        ringcast_admin::AdminToken::parse(text).map_err(|err| refused(err.to_string()))
    }
}

/// ringcast: a WebSocket push gateway. Clients connect to ws://HOST:PORT/<channel> and
/// receive every message published to <channel> with POST /publish/<channel> on the
/// admin port. /echo echoes. Prometheus metrics are at /metrics on the admin port.
#[derive(Debug, Parser)]
#[command(name = "ringcast", version, about, long_about)]
pub struct Config {
    /// Without a subcommand, run the gateway.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// WebSocket listen address, `ADDR:PORT` or a range `ADDR:FIRST-LAST` (one
    /// SO_REUSEPORT listener per port per shard; a range lets one client host open
    /// far more than 64k connections). Repeatable, or comma separated in the env var.
    #[arg(long, env = "RINGCAST_LISTEN", value_parser = parse_listen, value_delimiter = ',',
          default_value = "0.0.0.0:8080")]
    pub listen: Vec<ListenRange>,

    /// Admin HTTP address: POST /publish/<channel>, /metrics, /healthz, /readyz.
    #[arg(long, env = "RINGCAST_ADMIN", default_value = "127.0.0.1:9090")]
    pub admin: SocketAddr,

    /// PEM certificate chain (leaf first): every --listen port then speaks TLS only
    /// (wss://, and https:// for SSE and long polls). Needs --tls-key. Reloaded for new
    /// connections on SIGHUP and when the file changes (checked every 5 s).
    #[arg(long, env = "RINGCAST_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1; ECDSA, Ed25519 or RSA) of --tls-cert.
    #[arg(long, env = "RINGCAST_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// The admin port speaks TLS only too (https://), with the --tls-cert certificate
    /// and its reloads. Needs --tls-cert.
    #[arg(long, env = "RINGCAST_ADMIN_TLS", requires = "tls_cert")]
    pub admin_tls: bool,

    /// Number of shards (reactor threads, each pinned to a core). Default: usable cores.
    #[arg(long, env = "RINGCAST_SHARDS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub shards: Option<u16>,

    /// Seconds between server pings on each connection (spread over the interval).
    #[arg(long, env = "RINGCAST_PING_INTERVAL", value_parser = parse_secs, default_value = "30")]
    pub ping_interval: Duration,

    /// Seconds to wait for a pong before closing the connection.
    #[arg(long, env = "RINGCAST_PONG_TIMEOUT", value_parser = parse_secs, default_value = "10")]
    pub pong_timeout: Duration,

    /// Largest message a client may send, and largest publish body (bytes).
    #[arg(long, env = "RINGCAST_MAX_MESSAGE_BYTES", default_value_t = 65_536,
          value_parser = clap::value_parser!(u64).range(1..=(1 << 30)))]
    pub max_message_bytes: u64,

    /// Most client sockets on this node in any phase, counted from accept (a half-open
    /// handshake counts); one more gets HTTP 503 at once, unread. Node-wide: each shard
    /// owns a small share and borrows the rest from a node-wide pool. At least 1.
    /// Default: unlimited.
    #[arg(long, env = "RINGCAST_MAX_CONNECTIONS",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_connections: Option<usize>,

    /// Seconds a client has to complete its HTTP upgrade before it is closed.
    #[arg(long, env = "RINGCAST_HANDSHAKE_TIMEOUT", value_parser = parse_secs, default_value = "10")]
    pub handshake_timeout: Duration,

    /// On SIGTERM/SIGINT, after the grace: seconds over which connections are closed
    /// with 1001 (spread evenly over the first four fifths, so clients do not reconnect
    /// in one storm); the process exits within grace + drain.
    #[arg(long, env = "RINGCAST_DRAIN_SECONDS", value_parser = parse_secs, default_value = "10")]
    pub drain_seconds: Duration,

    /// Browser origins allowed to connect, comma separated, each `scheme://host[:port]`;
    /// a `*` stands for one or more characters within one DNS label or the port
    /// (`https://*.example.com` admits `https://a.example.com`, not `https://a.b.example.com`);
    /// others get 403. Requests without an Origin header (non-browser clients) are not
    /// affected. Default: any origin.
    #[arg(long, env = "RINGCAST_ALLOWED_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub allowed_origins: Vec<String>,

    /// HMAC-SHA256 secret, at least 32 bytes. When set, every connection needs a token
    /// naming its channel (`?token=` or subprotocol `token.<token>`); missing, forged or
    /// expired tokens get 401. Mint one with `ringcast token --channel NAME --ttl 1h`.
    #[arg(
        long,
        env = "RINGCAST_AUTH_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub auth_secret: Option<String>,

    /// New connections per second per source IP (enforced per shard as its share);
    /// more get HTTP 429. 0 = unlimited.
    #[arg(long, env = "RINGCAST_CONNECT_RATE_PER_IP", default_value_t = 0)]
    pub connect_rate_per_ip: u32,

    /// Most channels one connection may subscribe to (`/?channels=a,b,c` or commands).
    #[arg(long, env = "RINGCAST_MAX_CHANNELS_PER_CONN", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_channels_per_conn: u64,

    /// Accept client text messages `{"subscribe":"x"}` / `{"unsubscribe":"x"}` on
    /// channel connections (answered with an ack or an error message). With tokens, a
    /// connection may subscribe to the channels its token allows.
    #[arg(long, env = "RINGCAST_CLIENT_COMMANDS")]
    pub client_commands: bool,

    /// HMAC secret (at least 32 bytes) for JWTs signed HS256/384/512. Any JWT setting
    /// makes tokens required, like --auth-secret (both kinds may be on at once).
    #[arg(long, env = "RINGCAST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// PEM public key (RSA, EC P-256/P-384 or Ed25519) for JWTs signed RS*, PS*, ES* or
    /// EdDSA.
    #[arg(long, env = "RINGCAST_JWT_PUBLIC_KEY", conflicts_with = "jwks_url")]
    pub jwt_public_key: Option<PathBuf>,

    /// JWKS URL (http:// or https://) whose keys verify RS*, PS*, ES* and EdDSA JWTs by
    /// `kid`. Fetched by the sidecar at start, every --jwks-refresh, and early (at most
    /// every 5 s) when a token names an unknown `kid`; a failed fetch keeps the keys.
    #[arg(long, env = "RINGCAST_JWKS_URL")]
    pub jwks_url: Option<String>,

    /// Seconds between JWKS fetches.
    #[arg(long, env = "RINGCAST_JWKS_REFRESH", value_parser = parse_secs, default_value = "300")]
    pub jwks_refresh: Duration,

    /// Extra PEM CA certificate(s) to trust for an https --jwks-url (beside the bundled
    /// Mozilla roots), for an identity provider behind a private CA.
    #[arg(long, env = "RINGCAST_JWKS_CA", requires = "jwks_url")]
    pub jwks_ca: Option<PathBuf>,

    /// Required JWT `aud` (unchecked when not set).
    #[arg(long, env = "RINGCAST_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Required JWT `iss` (unchecked when not set).
    #[arg(long, env = "RINGCAST_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// The JWT claim listing the channels a token allows (names, `*`, `prefix.*`).
    #[arg(long, env = "RINGCAST_JWT_CHANNELS_CLAIM", default_value = "channels")]
    pub jwt_channels_claim: String,

    /// Publish the current time (RFC 3339 with milliseconds, plus a sequence number) to
    /// this channel every second, from each shard's own clock (no cross-shard traffic).
    #[arg(long, env = "RINGCAST_TICK_CHANNEL", value_parser = parse_channel)]
    pub tick_channel: Option<String>,

    /// Negotiate permessage-deflate (RFC 7692) with clients that offer it. A fan-out
    /// message is compressed once and the frame shared by every deflate subscriber; no
    /// connection keeps compression state while idle.
    #[arg(long, env = "RINGCAST_COMPRESSION")]
    pub compression: bool,

    /// Messages smaller than this are sent uncompressed even to deflate clients.
    #[arg(long, env = "RINGCAST_COMPRESSION_MIN_BYTES", default_value_t = 256)]
    pub compression_min_bytes: usize,

    /// Seconds a long-poll request (`GET /poll/<channel>?since=<epoch>:<offset>`) is
    /// held before it is answered 204.
    #[arg(long, env = "RINGCAST_POLL_TIMEOUT", value_parser = parse_secs, default_value = "30")]
    pub poll_timeout: Duration,

    /// Messages the owner shard keeps per long-poll channel that keeps no history of
    /// its own (see --history-size), so a client that re-polls quickly loses nothing.
    #[arg(long, env = "RINGCAST_POLL_RING", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub poll_ring: u64,

    /// Messages kept per channel for clients that resume (`?since=`, `Last-Event-ID`);
    /// 0 = no history (long-poll channels still keep --poll-ring).
    #[arg(long, env = "RINGCAST_HISTORY_SIZE", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub history_size: u64,

    /// Seconds a channel's history is kept after its last publish.
    #[arg(long, env = "RINGCAST_HISTORY_TTL", value_parser = parse_secs, default_value = "300")]
    pub history_ttl: Duration,

    /// Bytes of history each shard keeps (payloads plus 112 B per message and 160 B
    /// plus the name per channel); past it the least recently published channels'
    /// histories are evicted (ringcast_history_evictions_total).
    #[arg(long, env = "RINGCAST_HISTORY_MAX_BYTES", default_value_t = 64 << 20,
          value_parser = clap::value_parser!(u64).range(4096..))]
    pub history_max_bytes: u64,

    /// Which channels keep history: comma-separated names and prefix patterns
    /// (`news.*,state`); empty = every channel (when --history-size > 0).
    #[arg(long, env = "RINGCAST_HISTORY_CHANNELS", default_value = "")]
    pub history_channels: String,

    /// Bytes a connection may have queued for sending; past it the slow-consumer policy
    /// applies, so a client that stops reading never holds memory without bound.
    #[arg(long, env = "RINGCAST_MAX_QUEUE_BYTES", default_value_t = 1 << 20,
          value_parser = clap::value_parser!(u32).range(1024..))]
    pub max_queue_bytes: u32,

    /// Slow-consumer policy: `close` (close 1008, counted in
    /// ringcast_slow_consumer_closes_total) or `drop-oldest` (drop its oldest waiting
    /// messages, counted in ringcast_slow_consumer_dropped_total). Pongs and close frames
    /// are never dropped.
    #[arg(
        long,
        env = "RINGCAST_SLOW_CONSUMER",
        value_enum,
        default_value = "close"
    )]
    pub slow_consumer: SlowConsumerPolicy,

    /// On SIGTERM/SIGINT: seconds between /readyz turning 503 and the first close, so
    /// load balancers stop sending new clients first.
    #[arg(long, env = "RINGCAST_DRAIN_GRACE", value_parser = parse_secs_or_zero, default_value = "0")]
    pub drain_grace: Duration,

    /// Test failpoint: a shard panics when a message is published to this channel (to
    /// prove a dead shard stops the process). Never set it in production.
    #[arg(long, env = "RINGCAST_PANIC_ON_CHANNEL", hide = true)]
    pub panic_on_channel: Option<String>,

    /// Test failpoint: shard 0 sleeps this many microseconds per message it takes from
    /// its inbox (to prove a slow shard's backlog stays bounded). Never set it in
    /// production.
    #[arg(long, env = "RINGCAST_SLOW_SHARD_US", hide = true)]
    pub slow_shard_us: Option<u64>,

    /// Listen backlog per listener (capped by net.core.somaxconn).
    #[arg(long, env = "RINGCAST_BACKLOG", default_value_t = 4096)]
    pub backlog: i32,

    /// Do not pin shard threads to cores (for hosts shared with other busy processes,
    /// such as a load generator on the same machine).
    #[arg(long, env = "RINGCAST_NO_PIN")]
    pub no_pin: bool,

    /// Receive buffers per shard in the io_uring provided buffer ring (power of two). The
    /// ring is refilled every loop turn; when a burst empties it, the affected receives
    /// are re-armed (counted in ringcast_recv_enobufs_total) and no data is lost.
    #[arg(long, env = "RINGCAST_RECV_BUFFERS", default_value_t = 256)]
    pub recv_buffers: u16,

    /// Size of each receive buffer in bytes.
    #[arg(long, env = "RINGCAST_RECV_BUFFER_SIZE", default_value_t = 4096)]
    pub recv_buffer_size: u32,

    /// While completions from outside (client messages, pongs, wakes) arrive at a shard
    /// more than once per this many microseconds (at least 1,000 a second; until the
    /// rate halves), the longest a wait lets them gather before the shard wakes: many
    /// small wake-ups become one, for up to this much added latency per hop. 0 wakes on
    /// every completion. Linux 6.12 or later; ignored before. Counted in
    /// ringcast_coalesced_waits_total.
    #[arg(long, env = "RINGCAST_COALESCE_US", default_value_t = DEFAULT_COALESCE_US,
          value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub coalesce_us: u32,

    /// Redis URL, `redis://[user:password@]host:port[/db]`, or `rediss://...` for TLS
    /// (Redis 6 or later; `user` is an ACL user, without it the password is the default
    /// user's), or `redis+sentinel://[user:password@]host:port[,host:port...]/master[/db]`
    /// to find the master through Redis Sentinel and follow its failovers (the
    /// credentials are the master's; no TLS or auth towards the Sentinels). With it, every node behind the same Redis is one cluster: a publish on any
    /// node (or a Redis `PUBLISH <prefix><channel>` from any backend) reaches every
    /// subscriber on every node. Without it, publishes stay on this node.
    #[arg(long, env = "RINGCAST_REDIS", hide_env_values = true)]
    pub redis: Option<String>,

    /// PEM CA certificate(s) to trust for a `rediss://` --redis URL besides the bundled
    /// Mozilla roots, for a Redis behind a private CA (refused with `redis://`).
    #[arg(long, env = "RINGCAST_REDIS_CA", requires = "redis")]
    pub redis_ca: Option<PathBuf>,

    /// Prefix of the Redis channels: channel C is the Redis channel `<prefix>C`.
    #[arg(long, env = "RINGCAST_REDIS_PREFIX", default_value = "ringcast:")]
    pub redis_prefix: String,

    /// How the node subscribes at Redis: `interest` (SUBSCRIBE only channels with local
    /// subscribers, batched), `pattern` (one PSUBSCRIBE <prefix>*; every node receives
    /// every message) or `sharded` (SSUBSCRIBE/SPUBLISH, Redis 7 sharded pub/sub; the
    /// default, and the only mode, with --redis-cluster).
    #[arg(
        long,
        env = "RINGCAST_REDIS_MODE",
        value_enum,
        default_value = "interest",
        default_value_if("redis_cluster", clap::builder::ArgPredicate::IsPresent, "sharded")
    )]
    pub redis_mode: RedisModeArg,

    /// Redis Cluster: the --redis URL names seed nodes,
    /// `redis[s]://[user:password@]host:port[,host:port...]`; the node learns the slot map
    /// from the first that answers, sends each channel's SSUBSCRIBE/SPUBLISH (and history)
    /// to the master owning its slot, and follows MOVED/ASK, slot migrations and
    /// failovers. Takes sharded pub/sub (a classic PUBLISH is broadcast to every cluster
    /// node).
    #[arg(long, env = "RINGCAST_REDIS_CLUSTER", requires = "redis")]
    pub redis_cluster: bool,

    /// Log format on stderr: `text` (colours only when stderr is a terminal) or `json`
    /// (one object per line, for log shippers). The level comes from RUST_LOG (`info`).
    #[arg(
        long,
        env = "RINGCAST_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,

    // --- Admin API access and limits ---
    /// Bearer token (at least 16 bytes; better set as RINGCAST_ADMIN_TOKEN) every write
    /// request (POST /publish...) must carry as `Authorization: Bearer <token>`; others
    /// get 401. /healthz, /readyz and /metrics stay open. Without it, anyone who reaches
    /// the admin port can publish.
    #[arg(long, env = "RINGCAST_ADMIN_TOKEN", hide_env_values = true,
          value_parser = AdminTokenParser)]
    pub admin_token: Option<ringcast_admin::AdminToken>,

    /// Browser origins (`scheme://host[:port]`, exact, comma separated) whose pages may
    /// publish; a write request with any other Origin header gets 403. Default: none.
    #[arg(long, env = "RINGCAST_ADMIN_ALLOWED_ORIGINS", value_delimiter = ',',
          value_parser = ringcast_admin::parse_allowed_origin)]
    pub admin_allowed_origins: Vec<String>,

    /// Host names (comma separated, no port) write requests may name in their Host
    /// header besides IP literals and `localhost`; others get 403 (DNS rebinding guard).
    #[arg(long, env = "RINGCAST_ADMIN_ALLOWED_HOSTS", value_delimiter = ',',
          value_parser = ringcast_admin::parse_allowed_host)]
    pub admin_allowed_hosts: Vec<String>,

    /// Seconds an admin connection has to send a request's headers, from accept or from
    /// the previous response (also its keep-alive idle limit); then it is closed.
    #[arg(long, env = "RINGCAST_ADMIN_HEADER_TIMEOUT", value_parser = parse_secs, default_value = "10")]
    pub admin_header_timeout: Duration,

    /// Seconds an admin request body may go without a byte arriving; then 408 and close.
    #[arg(long, env = "RINGCAST_ADMIN_IDLE_TIMEOUT", value_parser = parse_secs, default_value = "30")]
    pub admin_idle_timeout: Duration,

    /// Most admin connections open at once; one more is answered 503 and closed at once.
    #[arg(long, env = "RINGCAST_ADMIN_MAX_CONNECTIONS", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(1..=65_535))]
    pub admin_max_connections: u64,

    /// Handshakes per second the node accepts (each shard enforces its share, burst one
    /// second's worth): sockets accepted over it get HTTP 503 with a `Retry-After` of
    /// 1-5 s (jittered), before their request is read. 0 = unlimited.
    #[arg(long, env = "RINGCAST_MAX_HANDSHAKES_PER_SEC", default_value_t = 0)]
    pub max_handshakes_per_sec: u32,

    /// Most bytes one long-poll answer may queue (also capped by --max-queue-bytes);
    /// messages past it are left in the ring for the next poll from its `last_id`.
    #[arg(long, env = "RINGCAST_POLL_MAX_BYTES", default_value_t = 1 << 20,
          value_parser = clap::value_parser!(u32).range(1024..))]
    pub poll_max_bytes: u32,

    /// Channels per second per source IP that long polls and event streams may ask for
    /// without a subscriber already on the shard (enforced per shard as its share); more
    /// get HTTP 429, counted in
    /// ringcast_handshake_failures_total{reason="channel_rate_limited"}. 0 = unlimited.
    #[arg(
        long,
        env = "RINGCAST_CHANNEL_CREATE_RATE_PER_IP",
        default_value_t = 20
    )]
    pub channel_create_rate_per_ip: u32,

    // --- Occupancy webhook ---
    /// URL (http:// or https://) that channel occupied/vacated events are POSTed to, in
    /// batches signed with --webhook-secret (see the README's Occupancy section). With
    /// Redis the events are cluster-wide and each is sent by one node only.
    #[arg(long, env = "RINGCAST_WEBHOOK_URL", requires = "webhook_secret")]
    pub webhook_url: Option<String>,

    /// HMAC-SHA256 key (at least 16 bytes; better set as RINGCAST_WEBHOOK_SECRET) that
    /// signs every webhook request: `X-Ringcast-Signature: sha256=<hex>` over
    /// `<X-Ringcast-Timestamp>.<body>`.
    #[arg(
        long,
        env = "RINGCAST_WEBHOOK_SECRET",
        hide_env_values = true,
        requires = "webhook_url"
    )]
    pub webhook_secret: Option<String>,
}

impl Config {
    /// The token secret as bytes, refused when shorter than [`MIN_AUTH_SECRET_BYTES`]
    /// (an empty `RINGCAST_AUTH_SECRET` counts as set, and is refused).
    pub fn auth_secret_bytes(&self) -> Result<Option<&[u8]>, ShortSecret> {
        match self.auth_secret.as_deref() {
            Some(secret) if secret.len() < MIN_AUTH_SECRET_BYTES => {
                Err(ShortSecret { len: secret.len() })
            }
            secret => Ok(secret.map(str::as_bytes)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_ranges() {
        let r = parse_listen("127.0.0.1:10000-10003").unwrap();
        assert_eq!(r.addrs.len(), 4);
        assert_eq!(r.addrs[3].port(), 10003);
        assert_eq!(parse_listen("[::1]:80").unwrap().addrs.len(), 1);
        for bad in [
            "x",
            "127.0.0.1",
            "127.0.0.1:0",
            "127.0.0.1:9-1",
            "host:80",
            "1.2.3.4:70000",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_flag_reads_its_env_var() {
        use clap::CommandFactory;
        let cmd = Config::command();
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "help" | "version") {
                continue;
            }
            let want = format!("RINGCAST_{}", long.to_uppercase().replace('-', "_"));
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some(want.as_str()),
                "--{long}"
            );
        }
    }

    #[test]
    fn redis_flags_default_to_interest_mode_without_redis() {
        let config = Config::try_parse_from(["ringcast"]).unwrap();
        assert_eq!(config.redis, None);
        assert_eq!(config.redis_prefix, "ringcast:");
        assert_eq!(config.redis_mode, RedisModeArg::Interest);
        let config = Config::try_parse_from([
            "ringcast",
            "--redis",
            "redis://127.0.0.1:6379/0",
            "--redis-mode",
            "sharded",
        ])
        .unwrap();
        assert_eq!(config.redis.as_deref(), Some("redis://127.0.0.1:6379/0"));
        assert_eq!(config.redis_mode, RedisModeArg::Sharded);
        assert_eq!(config.redis_ca, None);
        assert!(Config::try_parse_from(["ringcast", "--redis-mode", "gossip"]).is_err());
        let config = Config::try_parse_from([
            "ringcast",
            "--redis",
            "rediss://alice:secret@redis.example:6380",
            "--redis-ca",
            "/etc/ringcast/redis-ca.pem",
        ])
        .unwrap();
        assert_eq!(
            config.redis_ca.as_deref(),
            Some(std::path::Path::new("/etc/ringcast/redis-ca.pem"))
        );
        // A CA without a Redis URL is a mistake, not a no-op.
        assert!(Config::try_parse_from(["ringcast", "--redis-ca", "/tmp/ca.pem"]).is_err());
        let cluster = Config::try_parse_from([
            "ringcast",
            "--redis",
            "redis://127.0.0.1:7000,127.0.0.1:7001",
            "--redis-cluster",
        ])
        .unwrap();
        assert!(cluster.redis_cluster);
        assert_eq!(cluster.redis_mode, RedisModeArg::Sharded);
        assert!(Config::try_parse_from(["ringcast", "--redis-cluster"]).is_err());
    }

    #[test]
    fn admin_flags_validate_tokens_origins_and_hosts() {
        let config = Config::try_parse_from(["ringcast"]).unwrap();
        assert!(config.admin_token.is_none());
        assert_eq!(config.admin_max_connections, 256);
        assert_eq!(config.admin_header_timeout, Duration::from_secs(10));
        let config = Config::try_parse_from([
            "ringcast",
            "--admin-token",
            "0123456789abcdef",
            "--admin-allowed-origins",
            "https://ops.example.com,http://localhost:3000",
            "--admin-allowed-hosts",
            "Publisher.Internal",
        ])
        .unwrap();
        assert!(config.admin_token.is_some());
        assert_eq!(config.admin_allowed_origins.len(), 2);
        assert_eq!(config.admin_allowed_hosts, ["publisher.internal"]);
        for bad in [
            ["--admin-token", "short"],
            ["--admin-allowed-origins", "ops.example.com"],
            ["--admin-allowed-hosts", "https://x"],
            ["--admin-max-connections", "0"],
        ] {
            let args = std::iter::once("ringcast").chain(bad);
            assert!(Config::try_parse_from(args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn admin_tls_needs_the_certificate() {
        assert!(!Config::try_parse_from(["ringcast"]).unwrap().admin_tls);
        assert!(Config::try_parse_from(["ringcast", "--admin-tls"]).is_err());
        let config = Config::try_parse_from([
            "ringcast",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--admin-tls",
        ])
        .unwrap();
        assert!(config.admin_tls);
    }

    #[test]
    fn token_ttls() {
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_ttl("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_ttl("7d").unwrap(), Duration::from_secs(604_800));
        for bad in ["", "h", "1y", "-1h", "1.5h"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_ttls_that_overflow_or_never_end_are_refused() {
        assert_eq!(
            parse_ttl("3650d").unwrap(),
            Duration::from_secs(315_360_000)
        );
        for bad in [
            "213503982334602d",
            "213503982334601d",
            "5124095576030432h",
            "307445734561825861m",
            "18446744073709551615",
            "99999999999999999999",
            "3651d",
            "0",
            "0d",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn short_auth_secrets_are_refused_without_being_shown() {
        let parse = |args: &[&str]| Config::try_parse_from(args).unwrap();
        assert_eq!(parse(&["ringcast"]).auth_secret_bytes(), Ok(None));
        let good = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            parse(&["ringcast", "--auth-secret", good]).auth_secret_bytes(),
            Ok(Some(good.as_bytes()))
        );
        for short in ["", "zQ", "0123456789abcdef0123456789abcde"] {
            let config = parse(&["ringcast", "--auth-secret", short]);
            let err = config.auth_secret_bytes().unwrap_err();
            assert_eq!(err, ShortSecret { len: short.len() });
            let text = err.to_string();
            assert!(text.contains("at least 32 bytes"), "{text}");
            assert!(short.is_empty() || !text.contains(short), "{text}");
        }
    }

    #[test]
    fn max_connections_must_be_positive() {
        let parsed = Config::try_parse_from(["ringcast", "--max-connections", "3"]).unwrap();
        assert_eq!(parsed.max_connections, Some(3));
        let err = Config::try_parse_from(["ringcast", "--max-connections", "0"]).unwrap_err();
        assert!(err.to_string().contains("--max-connections"), "{err}");
    }

    #[test]
    fn handshake_budget_defaults_to_unlimited() {
        let parsed = Config::try_parse_from(["ringcast"]).unwrap();
        assert_eq!(parsed.max_handshakes_per_sec, 0);
        let parsed =
            Config::try_parse_from(["ringcast", "--max-handshakes-per-sec", "500"]).unwrap();
        assert_eq!(parsed.max_handshakes_per_sec, 500);
    }

    #[test]
    fn allowed_origins_need_a_scheme() {
        let parsed = Config::try_parse_from([
            "ringcast",
            "--allowed-origins",
            "https://app.example.com,https://*.example.com",
        ])
        .unwrap();
        assert_eq!(parsed.allowed_origins.len(), 2);
        for bad in [
            "app.example.com",
            "https://ok.example.com,*.example.com",
            "*",
        ] {
            let err = Config::try_parse_from(["ringcast", "--allowed-origins", bad]).unwrap_err();
            assert!(err.to_string().contains("needs a scheme"), "{bad}: {err}");
        }
    }

    #[test]
    fn log_format_defaults_to_text() {
        let parsed = Config::try_parse_from(["ringcast"]).unwrap();
        assert_eq!(parsed.log_format, LogFormat::Text);
        let parsed = Config::try_parse_from(["ringcast", "--log-format", "json"]).unwrap();
        assert_eq!(parsed.log_format, LogFormat::Json);
        assert!(Config::try_parse_from(["ringcast", "--log-format", "xml"]).is_err());
    }

    #[test]
    fn seconds_accept_fractions_and_reject_nonsense() {
        assert_eq!(parse_secs("0.5").unwrap(), Duration::from_millis(500));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("abc").is_err());
    }
}

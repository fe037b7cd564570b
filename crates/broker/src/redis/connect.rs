//! Opens the broker's connection: a TCP socket we own, wrapped in TLS for `rediss://`
//! (tokio-rustls with rustls's ring provider; the redis crate's own TLS is not used, so
//! the stream below stays ours), read through the size filter ([`LimitedStream`]: an
//! over-limit blob is skipped while it streams in, never buffered; the socket is not read
//! while the push backlog is full), handed to the redis crate as a RESP3 multiplexed
//! connection whose driver runs on the current tokio runtime. AUTH (user and password
//! from the URL) and SELECT are sent by the redis crate in its `HELLO 3` handshake.
//!
//! A failed attempt says which step failed ([`ConnectError::reason`]): `connect` (TCP,
//! or the Redis handshake for reasons other than credentials), `tls` (the TLS handshake:
//! untrusted or mismatched certificate, or no TLS on the other end) or `auth` (Redis
//! refused the user or password).
//!
//! With `redis+sentinel://` the master's address is asked of the Sentinels first
//! (`sentinel`), and the connection is checked with `ROLE`; a failure there counts as
//! `sentinel`.

use super::events::RejectReason;
use super::push_gate::{PushSender, ReadGate};
use super::resp_limit::LimitedStream;
use super::sentinel::{self, Addr, Sentinels};
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, RedisError,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

/// Bytes a blob may exceed the payload limit by: the envelope header plus slack for a
/// foreign publisher's framing; the inbound check applies the exact limit.
const BLOB_SLACK: usize = 1024;

/// Server error codes that mean the credentials (or the user's rights) were refused.
const AUTH_CODES: [&str; 3] = ["WRONGPASS", "NOAUTH", "NOPERM"];

/// Default Redis port.
const REDIS_PORT: u16 = 6379;

/// Where Redis is and how to talk to it, parsed once from the URL.
pub(crate) struct Endpoint {
    host: String,
    port: u16,
    /// Database, user, password; RESP3.
    settings: RedisConnectionInfo,
    /// TLS for `rediss://`: the certificate must carry the name (or IP) of the host
    /// connected to.
    tls: Option<TlsConnector>,
    /// With `redis+sentinel://`: the Sentinels that name the master (`host` and `port`
    /// are then unused).
    sentinels: Option<Sentinels>,
    /// Redis Cluster: the seed nodes the slot map is first asked of (`host` and `port`
    /// are then the first seed's).
    seeds: Option<Vec<Addr>>,
}

impl Endpoint {
    /// Parses `redis://` or `rediss://` (TLS) `[user:password@]host[:port][/db]`, or
    /// `redis+sentinel://[user:password@]host:port[,host:port...]/master[/db]`, with
    /// `extra_ca` (PEM) trusted besides the bundled Mozilla roots for TLS. The error is
    /// free of the password. With `cluster`, the URL is
    /// `redis[s]://[user:password@]host:port[,host:port...][/0]`: Redis Cluster seed nodes.
    pub(crate) fn parse(
        url: &str,
        extra_ca: Option<&Path>,
        cluster: bool,
    ) -> Result<Self, EndpointError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| EndpointError::Url("not a redis:// or rediss:// URL".into()))?;
        let mut sentinels = None;
        let mut seeds = None;
        let scheme = scheme.to_ascii_lowercase();
        let (tls, plain_url) = match scheme.as_str() {
            "redis" | "rediss" if cluster => {
                let parsed = parse_seeds(rest).map_err(EndpointError::Url)?;
                seeds = Some(parsed.0);
                (scheme == "rediss", parsed.1)
            }
            _ if cluster => {
                return Err(EndpointError::Url(
                    "a Redis Cluster URL is redis:// or rediss:// with seed nodes host:port,host:port"
                        .into(),
                ));
            }
            "redis" | "valkey" => (false, url.to_owned()),
            "redis+sentinel" => {
                let parsed = sentinel::parse(rest).map_err(EndpointError::Url)?;
                sentinels = Some(parsed.sentinels);
                (false, parsed.master_url)
            }
            "rediss+sentinel" => {
                return Err(EndpointError::Url(
                    "rediss+sentinel:// (TLS with Sentinel) is not supported".into(),
                ));
            }
            // Parsed as the plain URL (the redis crate's TLS is not built in); the TLS is
            // ours.
            "rediss" => (true, format!("redis://{rest}")),
            "valkeys" => (true, format!("valkey://{rest}")),
            _ => {
                return Err(EndpointError::Url(
                    "only redis:// and rediss:// (TLS) URLs are supported".into(),
                ));
            }
        };
        if tls && rest.contains('#') {
            // `#insecure` would turn certificate checks off: not offered; the CA of a
            // private Redis goes in the CA file instead.
            return Err(EndpointError::Url(
                concat!(
                    "a `#` fragment (such as #insecure) is not supported: trust a private CA ",
                    "with the CA file instead (a `#` in the password is written %23)"
                )
                .into(),
            ));
        }
        if !tls && extra_ca.is_some() {
            return Err(EndpointError::Url(
                "a CA file was given for a plain redis:// URL; use rediss:// for TLS".into(),
            ));
        }
        let info = plain_url
            .as_str()
            .into_connection_info()
            .map_err(|e| EndpointError::Url(e.to_string()))?;
        let ConnectionAddr::Tcp(mut host, mut port) = info.addr().clone() else {
            return Err(EndpointError::Url(
                "only redis:// and rediss:// (TCP) URLs are supported".into(),
            ));
        };
        if let Some(first) = seeds.as_ref().and_then(|s: &Vec<Addr>| s.first()) {
            (host, port) = (first.host.clone(), first.port);
        }
        // RESP3 lets one connection publish while subscribed.
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        let tls = if tls {
            for addr in seeds.iter().flatten().chain([&Addr {
                host: host.clone(),
                port,
            }]) {
                ServerName::try_from(addr.host.clone())
                    .map_err(|e| EndpointError::Url(format!("host `{}`: {e}", addr.host)))?;
            }
            let config = client_config(extra_ca).map_err(EndpointError::Tls)?;
            Some(TlsConnector::from(Arc::new(config)))
        } else {
            None
        };
        Ok(Endpoint {
            host,
            port,
            settings,
            tls,
            sentinels,
            seeds,
        })
    }

    /// The Redis Cluster seed nodes, with a cluster URL.
    pub(crate) fn seeds(&self) -> Option<&[Addr]> {
        self.seeds.as_deref()
    }

    /// Whether the connection is TLS (`rediss://`).
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The Sentinels, with `redis+sentinel://`.
    pub(crate) fn sentinels(&self) -> Option<&Sentinels> {
        self.sentinels.as_ref()
    }
}

/// The seed nodes and the URL carrying the credentials (its host a placeholder) of what
/// follows `redis[s]://` in a cluster URL. Only database 0 exists in a cluster.
fn parse_seeds(rest: &str) -> Result<(Vec<Addr>, String), String> {
    if rest.contains(['?', '#']) {
        return Err("a Redis Cluster URL takes no query or fragment".into());
    }
    let (user_info, after) = match rest.rsplit_once('@') {
        Some((user_info, after)) => (Some(user_info), after),
        None => (None, rest),
    };
    let (hosts, db) = after.split_once('/').unwrap_or((after, ""));
    if !matches!(db, "" | "0") {
        return Err("Redis Cluster has only database 0".into());
    }
    let mut seeds = Vec::new();
    for host in hosts.split(',') {
        seeds.push(sentinel::parse_addr(host, REDIS_PORT, "seed node")?);
    }
    let user_info = user_info.map(|u| format!("{u}@")).unwrap_or_default();
    Ok((seeds, format!("redis://{user_info}cluster-seed/0")))
}

/// Why an [`Endpoint`] could not be made.
#[derive(Debug)]
pub(crate) enum EndpointError {
    /// The URL is unusable.
    Url(String),
    /// The TLS settings (the CA file) are unusable.
    Tls(String),
}

/// Client TLS settings: the bundled Mozilla roots plus the certificates in `extra_ca`,
/// rustls's ring provider, TLS 1.2 and 1.3.
fn client_config(extra_ca: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        let shown = path.display();
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| format!("{shown}: {e}"))? {
            let cert = cert.map_err(|e| format!("{shown}: {e}"))?;
            roots.add(cert).map_err(|e| format!("{shown}: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("{shown}: no PEM certificate in it"));
        }
    }
    // Deprecated in rustls 0.23.48 for lacking post-quantum key exchange, which only the
    // aws-lc-rs provider (a C build) has; ring is what this project builds with.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// A failed connection attempt: which step failed, and how.
#[derive(Debug)]
pub(crate) struct ConnectError {
    /// `Connect`, `Tls` or `Auth` (the label it is counted under).
    pub(crate) reason: RejectReason,
    message: String,
}

impl ConnectError {
    pub(crate) fn new(reason: RejectReason, message: impl Into<String>) -> Self {
        ConnectError {
            reason,
            message: message.into(),
        }
    }

    /// A command on a new connection failed: `Auth` when Redis refused the credentials
    /// or the user's rights, else `otherwise`.
    pub(crate) fn from_redis(err: &RedisError, otherwise: RejectReason) -> Self {
        ConnectError::new(classify(err, otherwise), err.to_string())
    }

    /// The same error, its message starting with `step`.
    pub(crate) fn context(mut self, step: &str) -> Self {
        self.message = format!("{step}: {}", self.message);
        self
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// `Auth` for a refused user, password or right, else `otherwise`.
fn classify(err: &RedisError, otherwise: RejectReason) -> RejectReason {
    let refused = err.kind() == redis::ErrorKind::AuthenticationFailed
        || err.code().is_some_and(|code| AUTH_CODES.contains(&code));
    if refused {
        RejectReason::Auth
    } else {
        otherwise
    }
}

/// Connects to `endpoint` (with Sentinel: to the master the Sentinels name, checked
/// with `ROLE`), dropping incoming blobs longer than `max_payload` (plus the header and
/// slack), with `timeout` for the whole connect (TCP, TLS and the Redis handshake, after
/// the Sentinels answered) and for every reply. The connection and the address it is to.
pub(crate) async fn connect(
    endpoint: &Endpoint,
    max_payload: usize,
    timeout: Duration,
    pushes: PushSender,
    gate: ReadGate,
) -> Result<(MultiplexedConnection, Addr), ConnectError> {
    let (addr, named_by) = match &endpoint.sentinels {
        None => {
            let addr = Addr {
                host: endpoint.host.clone(),
                port: endpoint.port,
            };
            (addr, None)
        }
        Some(sentinels) => {
            let (master, sentinel) = sentinels.master(timeout).await?;
            (master, Some(sentinel))
        }
    };
    let opened = open(endpoint, &addr, max_payload, timeout, pushes, gate).await;
    let Some(sentinel) = named_by else {
        return opened.map(|connection| (connection, addr));
    };
    let mut connection = opened
        .map_err(|err| err.context(&format!("master {addr} (named by Sentinel {sentinel})")))?;
    sentinel::check_master(&mut connection, &addr, &sentinel).await?;
    Ok((connection, addr))
}

/// Opens a connection to `addr` (for Redis Cluster, to one node of it).
pub(crate) async fn open(
    endpoint: &Endpoint,
    addr: &Addr,
    max_payload: usize,
    timeout: Duration,
    pushes: PushSender,
    gate: ReadGate,
) -> Result<MultiplexedConnection, ConnectError> {
    let deadline = Instant::now() + timeout;
    let timed_out = |step: &str| format!("{step} timed out after {timeout:?}");
    let config = AsyncConnectionConfig::new()
        .set_response_timeout(Some(timeout))
        .set_push_sender(pushes);
    let limit = max_payload
        .saturating_add(super::envelope::POSITIONED_HEADER_LEN)
        .saturating_add(BLOB_SLACK);
    let tcp = tokio::time::timeout_at(
        deadline,
        tokio::net::TcpStream::connect((addr.host.as_str(), addr.port)),
    )
    .await
    .map_err(|_| ConnectError::new(RejectReason::Connect, timed_out("connecting")))?
    .map_err(|e| ConnectError::new(RejectReason::Connect, e.to_string()))?;
    tcp.set_nodelay(true)
        .map_err(|e| ConnectError::new(RejectReason::Connect, e.to_string()))?;
    match &endpoint.tls {
        None => {
            let stream = LimitedStream::new(tcp, limit).gated(gate);
            handshake(&endpoint.settings, stream, config, deadline, timeout).await
        }
        Some(connector) => {
            let name = ServerName::try_from(addr.host.clone()).map_err(|e| {
                ConnectError::new(RejectReason::Tls, format!("host `{}`: {e}", addr.host))
            })?;
            // A plain Redis on the other end answers the ClientHello with an error line
            // or not at all: a TLS failure either way.
            let tls = tokio::time::timeout_at(deadline, connector.connect(name, tcp))
                .await
                .map_err(|_| {
                    ConnectError::new(
                        RejectReason::Tls,
                        timed_out("TLS handshake (is the server speaking TLS?)"),
                    )
                })?
                .map_err(|e| ConnectError::new(RejectReason::Tls, format!("TLS handshake: {e}")))?;
            let stream = LimitedStream::new(tls, limit).gated(gate);
            handshake(&endpoint.settings, stream, config, deadline, timeout).await
        }
    }
}

/// The redis crate's handshake (`HELLO 3` with AUTH, `SELECT`) on `stream`; the
/// connection's driver is spawned on the current runtime.
async fn handshake<S>(
    settings: &RedisConnectionInfo,
    stream: S,
    config: AsyncConnectionConfig,
    deadline: Instant,
    timeout: Duration,
) -> Result<MultiplexedConnection, ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (connection, driver) = tokio::time::timeout_at(
        deadline,
        MultiplexedConnection::new_with_config(settings, stream, config),
    )
    .await
    .map_err(|_| {
        ConnectError::new(
            RejectReason::Connect,
            format!("the Redis handshake timed out after {timeout:?}"),
        )
    })?
    .map_err(|e| ConnectError::from_redis(&e, RejectReason::Connect))?;
    tokio::spawn(driver);
    Ok(connection)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_and_rediss_urls_are_parsed_with_their_credentials() {
        let plain = Endpoint::parse("redis://alice:s3cret@127.0.0.1:6380/2", None, false).unwrap();
        assert!(!plain.is_tls());
        assert_eq!((plain.host.as_str(), plain.port), ("127.0.0.1", 6380));
        assert_eq!(plain.settings.username(), Some("alice"));
        assert_eq!(plain.settings.password(), Some("s3cret"));
        assert_eq!(plain.settings.db(), 2);

        let tls = Endpoint::parse("rediss://alice:s3cret@redis.example:6390", None, false).unwrap();
        assert!(tls.is_tls());
        assert_eq!((tls.host.as_str(), tls.port), ("redis.example", 6390));
        assert_eq!(tls.settings.username(), Some("alice"));
        assert_eq!(tls.settings.password(), Some("s3cret"));

        let ip = Endpoint::parse("REDISS://[::1]:6390/0", None, false).unwrap();
        assert!(ip.is_tls());
        assert_eq!(ip.host, "::1");
    }

    #[test]
    fn cluster_urls_name_seed_nodes() {
        let url = "rediss://alice:s3cret@10.0.0.1:7000,10.0.0.2,[::1]:7002/0";
        let endpoint = Endpoint::parse(url, None, true).unwrap();
        assert!(endpoint.is_tls());
        let seeds: Vec<String> = endpoint
            .seeds()
            .unwrap()
            .iter()
            .map(Addr::to_string)
            .collect();
        assert_eq!(seeds, ["10.0.0.1:7000", "10.0.0.2:6379", "[::1]:7002"]);
        assert_eq!(endpoint.settings.username(), Some("alice"));
        assert_eq!(endpoint.settings.password(), Some("s3cret"));
        assert_eq!((endpoint.host.as_str(), endpoint.port), ("10.0.0.1", 7000));
        let one = Endpoint::parse("redis://127.0.0.1:7000", None, true).unwrap();
        assert_eq!(one.seeds().unwrap().len(), 1);
        assert!(
            Endpoint::parse("redis://127.0.0.1:7000", None, false)
                .unwrap()
                .seeds()
                .is_none()
        );
        for refused in [
            "redis://127.0.0.1:7000/1",
            "redis://127.0.0.1:7000,/0",
            "redis://127.0.0.1:0",
            "redis://127.0.0.1:x",
            "redis://127.0.0.1:7000?x=1",
            "redis+sentinel://127.0.0.1:26379/m",
            "http://127.0.0.1:7000",
        ] {
            assert!(
                matches!(
                    Endpoint::parse(refused, None, true),
                    Err(EndpointError::Url(_))
                ),
                "{refused} accepted"
            );
        }
    }

    #[test]
    fn sentinel_urls_carry_the_masters_credentials_and_database() {
        let url = "redis+sentinel://alice:s3cret@127.0.0.1:26379,127.0.0.1:26380/mymaster/3";
        let endpoint = Endpoint::parse(url, None, false).unwrap();
        assert!(!endpoint.is_tls());
        let sentinels = endpoint.sentinels().unwrap();
        assert_eq!(sentinels.master, "mymaster");
        assert_eq!(sentinels.addrs.len(), 2);
        assert_eq!(endpoint.settings.username(), Some("alice"));
        assert_eq!(endpoint.settings.password(), Some("s3cret"));
        assert_eq!(endpoint.settings.db(), 3);
        assert!(
            Endpoint::parse("redis://127.0.0.1:6379", None, false)
                .unwrap()
                .sentinels()
                .is_none()
        );
        for refused in [
            "rediss+sentinel://127.0.0.1:26379/mymaster",
            "redis+sentinel://127.0.0.1:26379",
            "redis+sentinel://127.0.0.1:26379/mymaster?x=1",
        ] {
            let parsed = Endpoint::parse(refused, None, false);
            assert!(
                matches!(parsed, Err(EndpointError::Url(_))),
                "{refused} accepted"
            );
        }
        let ca = std::env::temp_dir().join("ringcast-no-such-ca.pem");
        assert!(Endpoint::parse("redis+sentinel://127.0.0.1/m", Some(&ca), false).is_err());
    }

    #[test]
    fn insecure_fragments_other_schemes_and_a_ca_for_plain_redis_are_refused() {
        let ca = std::env::temp_dir().join(format!("ringcast-broker-ca-{}", std::process::id()));
        for (url, ca) in [
            ("rediss://127.0.0.1:6379/#insecure", None),
            ("rediss://127.0.0.1:6379#x", None),
            ("http://127.0.0.1:6379", None),
            ("redis+unix:///run/redis.sock", None),
            ("not a url", None),
            ("redis://127.0.0.1:6379", Some(ca.as_path())),
        ] {
            let parsed = Endpoint::parse(url, ca, false);
            assert!(
                matches!(parsed, Err(EndpointError::Url(_))),
                "{url} accepted"
            );
        }
    }

    #[test]
    fn the_ca_file_must_hold_pem_certificates() {
        let dir = std::env::temp_dir().join(format!("ringcast-broker-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        for path in [&missing, &empty, &garbage] {
            let parsed = Endpoint::parse("rediss://127.0.0.1:6379", Some(path), false);
            assert!(
                matches!(&parsed, Err(EndpointError::Tls(reason)) if reason.contains(&path.display().to_string())),
                "{}: {:?}",
                path.display(),
                parsed.err()
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Connects to `url` with a 500 ms timeout; the error.
    async fn failed_attempt(url: &str) -> ConnectError {
        let endpoint = Endpoint::parse(url, None, false).unwrap();
        let (pushes, _receiver, gate) = super::super::push_gate::push_queue();
        let attempt = connect(&endpoint, 1024, Duration::from_millis(500), pushes, gate).await;
        match attempt {
            Ok(_) => panic!("the attempt succeeded"),
            Err(err) => err,
        }
    }

    #[tokio::test]
    async fn each_failed_step_is_told_apart() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let refused = failed_attempt(&format!("rediss://127.0.0.1:{closed}")).await;
        assert_eq!(refused.reason, RejectReason::Connect, "{refused}");

        // A server that accepts and says nothing (a plain Redis waiting for a line).
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        tokio::spawn(async move {
            let _held = silent.accept().await;
            std::future::pending::<()>().await
        });
        let timed_out = failed_attempt(&format!("rediss://127.0.0.1:{port}")).await;
        assert_eq!(timed_out.reason, RejectReason::Tls, "{timed_out}");

        // A server that answers the ClientHello with a Redis error line.
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = plain.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut socket, _) = plain.accept().await.unwrap();
            let mut hello = [0u8; 512];
            let _ = socket.read(&mut hello).await;
            let _ = socket.write_all(b"-ERR unknown command\r\n").await;
            std::future::pending::<()>().await
        });
        let answered = failed_attempt(&format!("rediss://127.0.0.1:{port}")).await;
        assert_eq!(answered.reason, RejectReason::Tls, "{answered}");
        assert!(answered.to_string().contains("TLS handshake"), "{answered}");
    }

    #[test]
    fn refused_credentials_are_told_apart() {
        let wrongpass = RedisError::from((
            redis::ErrorKind::AuthenticationFailed,
            "Password authentication failed",
        ));
        assert_eq!(
            classify(&wrongpass, RejectReason::Connect),
            RejectReason::Auth
        );
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(classify(&io, RejectReason::Connect), RejectReason::Connect);
        assert_eq!(
            classify(&io, RejectReason::Disconnect),
            RejectReason::Disconnect
        );
    }
}

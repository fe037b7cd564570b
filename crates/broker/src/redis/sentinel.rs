//! Redis Sentinel: `redis+sentinel://[user:password@]host:port[,host:port...]/master[/db]`.
//!
//! The Sentinels are asked in the order given (`SENTINEL get-master-addr-by-name`, each
//! with a short timeout of its own); the first address one of them names is the master.
//! The connection to it is checked with `ROLE` (a demoted master that Sentinel has not
//! caught up with yet says `slave`). The user and password in the URL are the master's;
//! the Sentinels are asked without credentials (Sentinel auth is not supported) and over
//! plain TCP (`rediss+sentinel://` is not supported).
//!
//! Failovers are followed two ways: a lost master connection starts over with a new
//! question to the Sentinels (the session's ordinary reconnect), and while the
//! connection is up a Sentinel is asked every [`CHECK_EVERY`] whether the master is still
//! the same one (a master demoted without its connections dropping).

use super::connect::ConnectError;
use super::events::RejectReason;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisConnectionInfo};
use std::fmt;
use std::time::Duration;

/// Default Sentinel port.
const SENTINEL_PORT: u16 = 26379;
/// Longest wait for one Sentinel's answer (connect and reply).
const ASK_TIMEOUT: Duration = Duration::from_millis(500);
/// How often a connected node asks whether the master changed.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(2);

/// A `host:port` address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Addr {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The Sentinels to ask and the master name to ask them about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sentinels {
    pub(crate) addrs: Vec<Addr>,
    pub(crate) master: String,
}

/// The parts of a `redis+sentinel://` URL.
#[derive(Debug)]
pub(crate) struct SentinelUrl {
    pub(crate) sentinels: Sentinels,
    /// `redis://[user:password@]host/db` for the master's credentials and database (the
    /// host is a placeholder), parsed by the redis crate.
    pub(crate) master_url: String,
}

/// Parses what follows `redis+sentinel://`.
pub(crate) fn parse(rest: &str) -> Result<SentinelUrl, String> {
    if rest.contains(['?', '#']) {
        return Err("a redis+sentinel:// URL takes no query or fragment".into());
    }
    let (user_info, after) = match rest.rsplit_once('@') {
        Some((user_info, after)) => (Some(user_info), after),
        None => (None, rest),
    };
    let (hosts, path) = after.split_once('/').unwrap_or((after, ""));
    let mut addrs = Vec::new();
    for host in hosts.split(',') {
        addrs.push(parse_addr(host, SENTINEL_PORT, "Sentinel")?);
    }
    let mut parts = path.split('/');
    let master = parts.next().unwrap_or("");
    if master.is_empty() {
        return Err("the master name is missing: redis+sentinel://host:26379/mymaster".into());
    }
    let db = parts.next().filter(|db| !db.is_empty()).unwrap_or("0");
    if parts.next().is_some_and(|p| !p.is_empty()) {
        return Err("the path is /master-name[/db]".into());
    }
    if db.parse::<u32>().is_err() {
        return Err(format!("database `{db}` is not a number"));
    }
    let user_info = user_info.map(|u| format!("{u}@")).unwrap_or_default();
    Ok(SentinelUrl {
        sentinels: Sentinels {
            addrs,
            master: master.to_owned(),
        },
        master_url: format!("redis://{user_info}sentinel-master/{db}"),
    })
}

/// `host[:port]` or `[v6][:port]`, the port defaulting to `default_port`; `what` names
/// the server in the error.
pub(crate) fn parse_addr(text: &str, default_port: u16, what: &str) -> Result<Addr, String> {
    let bad = || format!("{what} address `{text}` is not host:port");
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(bad)?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() || host.contains([' ', '/']) {
        return Err(bad());
    }
    let port = match port {
        Some(port) => port.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?,
        None => default_port,
    };
    Ok(Addr {
        host: host.to_owned(),
        port,
    })
}

impl Sentinels {
    /// Asks the Sentinels in order for the master's address; the address and the
    /// Sentinel that named it. Fails (`Sentinel`) when none answers with an address:
    /// all down, or none knows the master name; the message says what each answered.
    pub(crate) async fn master(&self, timeout: Duration) -> Result<(Addr, Addr), ConnectError> {
        let timeout = timeout.min(ASK_TIMEOUT);
        let mut answers = Vec::new();
        for sentinel in &self.addrs {
            match ask(sentinel, &self.master, timeout).await {
                Ok(Some(master)) => return Ok((master, sentinel.clone())),
                Ok(None) => answers.push(format!(
                    "{sentinel}: no master named `{}` is monitored",
                    self.master
                )),
                Err(err) => answers.push(format!("{sentinel}: {err}")),
            }
        }
        Err(ConnectError::new(
            RejectReason::Sentinel,
            format!(
                "no Sentinel named the master `{}` ({})",
                self.master,
                answers.join("; ")
            ),
        ))
    }
}

/// One Sentinel's answer: the master's address, or `None` for an unknown master name.
async fn ask(sentinel: &Addr, master: &str, timeout: Duration) -> Result<Option<Addr>, String> {
    let question = async {
        let tcp = tokio::net::TcpStream::connect((sentinel.host.as_str(), sentinel.port))
            .await
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let config = AsyncConnectionConfig::new().set_response_timeout(Some(timeout));
        let (mut connection, driver) =
            MultiplexedConnection::new_with_config(&RedisConnectionInfo::default(), tcp, config)
                .await
                .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(driver);
        let answer = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(master)
            .query_async::<Option<(String, u16)>>(&mut connection)
            .await;
        drop(connection);
        driver.abort();
        answer
            .map(|found| found.map(|(host, port)| Addr { host, port }))
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(timeout, question)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}

/// Checks with `ROLE` that `connection` is to a master; `Sentinel` when it is not (or
/// says nothing usable).
pub(crate) async fn check_master(
    connection: &mut MultiplexedConnection,
    master: &Addr,
    sentinel: &Addr,
) -> Result<(), ConnectError> {
    let role = redis::cmd("ROLE")
        .query_async::<redis::Value>(connection)
        .await
        .map_err(|e| ConnectError::from_redis(&e, RejectReason::Connect).context("ROLE"))?;
    let first = match &role {
        redis::Value::Array(items) => items.first(),
        _ => None,
    };
    let name = match first {
        Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(redis::Value::SimpleString(s)) => s.clone(),
        _ => String::new(),
    };
    if name == "master" {
        Ok(())
    } else {
        Err(ConnectError::new(
            RejectReason::Sentinel,
            format!("Sentinel {sentinel} named {master} as the master, but its ROLE is `{name}`"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(host: &str, port: u16) -> Addr {
        Addr {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn sentinel_urls_are_parsed() {
        let url = parse("alice:s3cret@10.0.0.1:26379,sentinel-b,[::1]:26380/mymaster/2").unwrap();
        assert_eq!(
            url.sentinels.addrs,
            [
                addr("10.0.0.1", 26379),
                addr("sentinel-b", 26379),
                addr("::1", 26380)
            ]
        );
        assert_eq!(url.sentinels.master, "mymaster");
        assert_eq!(url.master_url, "redis://alice:s3cret@sentinel-master/2");

        let plain = parse("127.0.0.1:5000/mymaster").unwrap();
        assert_eq!(plain.sentinels.addrs, [addr("127.0.0.1", 5000)]);
        assert_eq!(plain.master_url, "redis://sentinel-master/0");
        assert_eq!(addr("::1", 1).to_string(), "[::1]:1");
    }

    #[test]
    fn bad_sentinel_urls_are_refused() {
        for rest in [
            "127.0.0.1:26379",
            "127.0.0.1:26379/",
            "127.0.0.1:x/m",
            ",127.0.0.1/m",
            "127.0.0.1/m/db",
            "127.0.0.1/m/0/x",
            "127.0.0.1/m?x=1",
            "[::1/m",
        ] {
            assert!(parse(rest).is_err(), "{rest} accepted");
        }
    }

    #[tokio::test]
    async fn no_sentinel_up_is_a_sentinel_failure_naming_each() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sentinels = Sentinels {
            addrs: vec![addr("127.0.0.1", closed)],
            master: "mymaster".into(),
        };
        let err = sentinels.master(Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(err.reason, RejectReason::Sentinel);
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{closed}")),
            "{err}"
        );
    }
}

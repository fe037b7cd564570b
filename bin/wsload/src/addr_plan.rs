//! Address plan of every scenario: parses the target URLs (`ws://IP:PORT[-PORT]/path`, where
//! `{ch}` in the path becomes a channel number; several comma-separated, for `--resume` to
//! move between), the source IP list (`127.0.0.1-127.0.0.8`, comma-separated parts allowed)
//! and assigns connection `i` its destination port, source IP and path. No DNS: hosts are
//! IPv4 literals or `localhost`.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use anyhow::{Context, bail, ensure};

/// Largest number of source IPs a range may expand to.
const MAX_SOURCE_IPS: usize = 65_536;
/// Placeholder in the URL path replaced by `i % channels`.
const CHANNEL_PLACEHOLDER: &str = "{ch}";

/// A parsed `ws://` URL whose port may be a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsTarget {
    /// Destination address.
    pub host: Ipv4Addr,
    /// Destination ports, in order.
    pub ports: Vec<u16>,
    /// Request path, possibly containing `{ch}`.
    pub path: String,
    /// `wss://`: TLS.
    pub tls: bool,
}

/// Everything one connection needs to know about where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Destination socket address.
    pub dest: SocketAddr,
    /// Local address to bind before connecting (port 0).
    pub source: Ipv4Addr,
    /// `Host` header value.
    pub host_header: String,
    /// Request path with `{ch}` substituted.
    pub path: String,
    /// Speak TLS (`wss://`).
    pub tls: bool,
}

impl Assignment {
    /// Appends `query` (`k=v&…`) to the path's query.
    pub fn add_query(&mut self, query: &str) {
        self.path
            .push(if self.path.contains('?') { '&' } else { '?' });
        self.path.push_str(query);
    }
}

/// Maps connection indices to destinations and sources.
#[derive(Debug, Clone)]
pub struct AddrPlan {
    /// The `--url` list, at least one.
    targets: Vec<WsTarget>,
    sources: Vec<Ipv4Addr>,
    channels: usize,
}

impl AddrPlan {
    /// Builds a plan from the `--url` (comma-separated list), `--source-ips` and
    /// `--channels` arguments.
    pub fn new(urls: &str, source_ips: &str, channels: usize) -> anyhow::Result<Self> {
        ensure!(channels > 0, "--channels must be at least 1");
        Ok(Self {
            targets: urls
                .split(',')
                .map(|url| parse_ws_url(url.trim()))
                .collect::<anyhow::Result<_>>()?,
            sources: parse_ip_list(source_ips)?,
            channels,
        })
    }

    /// Whether any URL is `wss://`.
    pub fn uses_tls(&self) -> bool {
        self.targets.iter().any(|t| t.tls)
    }

    /// How many URLs the plan has.
    pub fn urls(&self) -> usize {
        self.targets.len()
    }

    /// Connection `i` goes to URL `i % nurls`; see [`AddrPlan::assign_to`].
    pub fn assign(&self, i: usize) -> Assignment {
        self.assign_to(i, i % self.targets.len())
    }

    /// Connection `i` at URL `url` (wrapped): to `ports[i % nports]` from
    /// `ips[(i / nports) % nips]`, on path `{ch}` -> `i % channels`.
    pub fn assign_to(&self, i: usize, url: usize) -> Assignment {
        let target = &self.targets[url % self.targets.len()];
        let nports = target.ports.len();
        let port = target.ports[i % nports];
        let source = self.sources[(i / nports) % self.sources.len()];
        let path = if target.path.contains(CHANNEL_PLACEHOLDER) {
            target
                .path
                .replace(CHANNEL_PLACEHOLDER, &(i % self.channels).to_string())
        } else {
            target.path.clone()
        };
        Assignment {
            dest: SocketAddr::V4(SocketAddrV4::new(target.host, port)),
            source,
            host_header: format!("{}:{port}", target.host),
            tls: target.tls,
            path,
        }
    }

    /// The channel of channel number `ch`: the (first) URL's path without its leading `/`
    /// and any query, with `{ch}` replaced by `ch` (`/ch-{ch}` → `ch-7`).
    pub fn channel_name(&self, ch: usize) -> String {
        let path = self.targets[0].path.trim_start_matches('/');
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        path.replace(CHANNEL_PLACEHOLDER, &ch.to_string())
    }

    /// Connections per channel number (`--channels`).
    pub fn channels(&self) -> usize {
        self.channels
    }
}

/// Parses `ws://HOST:PORT[-LAST]/path` or `wss://…` (path defaults to `/`).
pub fn parse_ws_url(url: &str) -> anyhow::Result<WsTarget> {
    let (tls, rest) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
        (Some(rest), _) => (false, rest),
        (None, Some(rest)) => (true, rest),
        (None, None) => bail!("{url}: only ws:// and wss:// URLs are supported"),
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let (host, ports) = authority
        .rsplit_once(':')
        .with_context(|| format!("{url}: missing :PORT"))?;
    Ok(WsTarget {
        host: parse_host(host)?,
        ports: parse_port_range(ports)?,
        path: path.to_owned(),
        tls,
    })
}

/// Parses an IPv4 literal or `localhost`.
pub fn parse_host(host: &str) -> anyhow::Result<Ipv4Addr> {
    if host == "localhost" {
        return Ok(Ipv4Addr::LOCALHOST);
    }
    host.parse()
        .with_context(|| format!("{host}: expected an IPv4 address (wsload does no DNS)"))
}

/// Parses `PORT` or `FIRST-LAST`.
pub fn parse_port_range(spec: &str) -> anyhow::Result<Vec<u16>> {
    let (first, last) = match spec.split_once('-') {
        Some((a, b)) => (parse_port(a)?, parse_port(b)?),
        None => {
            let port = parse_port(spec)?;
            (port, port)
        }
    };
    ensure!(first <= last, "{spec}: empty port range");
    Ok((first..=last).collect())
}

fn parse_port(spec: &str) -> anyhow::Result<u16> {
    let port: u16 = spec
        .trim()
        .parse()
        .with_context(|| format!("{spec}: not a port"))?;
    ensure!(port != 0, "port 0 is not a destination");
    Ok(port)
}

/// Parses a comma-separated list of IPv4 addresses and inclusive ranges `A-B`.
pub fn parse_ip_list(spec: &str) -> anyhow::Result<Vec<Ipv4Addr>> {
    let mut ips = Vec::new();
    for part in spec.split(',').map(str::trim) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (parse_host(a.trim())?, parse_host(b.trim())?),
            None => {
                let ip = parse_host(part)?;
                (ip, ip)
            }
        };
        let (first, last) = (u32::from(first), u32::from(last));
        ensure!(first <= last, "{part}: empty IP range");
        let count = (last - first) as usize + 1;
        if ips.len() + count > MAX_SOURCE_IPS {
            bail!("{spec}: more than {MAX_SOURCE_IPS} source IPs");
        }
        ips.extend((first..=last).map(Ipv4Addr::from));
    }
    Ok(ips)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_url_with_port_range_and_path() {
        let t = parse_ws_url("ws://127.0.0.1:10000-10003/news").unwrap();
        assert_eq!(t.host, Ipv4Addr::LOCALHOST);
        assert_eq!(t.ports, vec![10000, 10001, 10002, 10003]);
        assert_eq!(t.path, "/news");
        let t = parse_ws_url("ws://localhost:9000").unwrap();
        assert_eq!(t.ports, vec![9000]);
        assert_eq!(t.path, "/");
        assert!(!t.tls);
        assert!(parse_ws_url("wss://127.0.0.1:443/x").unwrap().tls);
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "http://127.0.0.1:1/x",
            "ws://127.0.0.1/x",
            "ws://example.com:80/x",
            "ws://127.0.0.1:0/x",
            "ws://127.0.0.1:10003-10000/x",
            "ws://127.0.0.1:99999/x",
            "ws://127.0.0.1:a-b/x",
        ] {
            assert!(parse_ws_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_ip_ranges_and_lists() {
        let ips = parse_ip_list("127.0.0.1-127.0.0.3").unwrap();
        assert_eq!(ips.len(), 3);
        assert_eq!(ips[2], Ipv4Addr::new(127, 0, 0, 3));
        let ips = parse_ip_list("127.0.0.9, 127.0.0.250-127.0.1.1").unwrap();
        assert_eq!(
            ips,
            vec![
                Ipv4Addr::new(127, 0, 0, 9),
                Ipv4Addr::new(127, 0, 0, 250),
                Ipv4Addr::new(127, 0, 0, 251),
                Ipv4Addr::new(127, 0, 0, 252),
                Ipv4Addr::new(127, 0, 0, 253),
                Ipv4Addr::new(127, 0, 0, 254),
                Ipv4Addr::new(127, 0, 0, 255),
                Ipv4Addr::new(127, 0, 1, 0),
                Ipv4Addr::new(127, 0, 1, 1),
            ]
        );
    }

    #[test]
    fn rejects_bad_ip_lists() {
        assert!(parse_ip_list("").is_err());
        assert!(parse_ip_list("127.0.0.3-127.0.0.1").is_err());
        assert!(parse_ip_list("127.0.0.1-").is_err());
        assert!(parse_ip_list("10.0.0.0-10.255.255.255").is_err());
        assert!(parse_ip_list("::1").is_err());
    }

    #[test]
    fn assigns_ports_then_source_ips_then_channels() {
        let plan = AddrPlan::new(
            "ws://127.0.0.1:10000-10001/ch-{ch}",
            "127.0.0.1-127.0.0.3",
            5,
        )
        .unwrap();
        let a = plan.assign(0);
        assert_eq!(a.dest, "127.0.0.1:10000".parse().unwrap());
        assert_eq!(a.source, Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(a.path, "/ch-0");
        assert_eq!(a.host_header, "127.0.0.1:10000");
        let a = plan.assign(3);
        assert_eq!(a.dest.port(), 10001);
        assert_eq!(a.source, Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(a.path, "/ch-3");
        let a = plan.assign(7);
        assert_eq!(a.source, Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(a.path, "/ch-2");
    }

    #[test]
    fn channel_names_come_from_the_path() {
        let plan = AddrPlan::new("ws://127.0.0.1:1/ch-{ch}?token=x", "127.0.0.1", 3).unwrap();
        assert_eq!(plan.channel_name(2), "ch-2");
        assert_eq!(plan.channels(), 3);
        let plan = AddrPlan::new("ws://127.0.0.1:1/tick", "127.0.0.1", 1).unwrap();
        assert_eq!(plan.channel_name(0), "tick");
    }

    #[test]
    fn a_url_list_spreads_connections_and_each_may_move_to_the_next() {
        let plan = AddrPlan::new(
            "ws://127.0.0.1:9000/ch-{ch}?a=1, ws://127.0.0.2:9100-9101/ch-{ch}",
            "127.0.0.1",
            4,
        )
        .unwrap();
        assert_eq!(plan.urls(), 2);
        assert_eq!(plan.assign(0).dest, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(plan.assign(0).path, "/ch-0?a=1");
        assert_eq!(plan.assign(1).dest, "127.0.0.2:9101".parse().unwrap());
        assert_eq!(plan.assign(1).path, "/ch-1");
        assert_eq!(plan.assign_to(0, 3).dest, "127.0.0.2:9100".parse().unwrap());
        assert_eq!(plan.assign_to(0, 3).host_header, "127.0.0.2:9100");
        let mut a = plan.assign(0);
        a.add_query("since=E:1");
        assert_eq!(a.path, "/ch-0?a=1&since=E:1");
        let mut a = plan.assign(1);
        a.add_query("format=json");
        assert_eq!(a.path, "/ch-1?format=json");
        assert!(AddrPlan::new("ws://127.0.0.1:1/x,", "127.0.0.1", 1).is_err());
    }

    #[test]
    fn path_without_placeholder_is_shared() {
        let plan = AddrPlan::new("ws://127.0.0.1:1/news", "127.0.0.1", 3).unwrap();
        assert_eq!(plan.assign(5).path, "/news");
        assert!(AddrPlan::new("ws://127.0.0.1:1/news", "127.0.0.1", 0).is_err());
    }
}

//! `wsload publish`: posts `--count` numbered messages (`"<seq>:<padding>"`, seq counting per
//! channel from 0) round-robin over the channels through the admin HTTP API, on one
//! keep-alive connection, paced by `--rate`, and reports how many were answered 202.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout};

use crate::addr_plan::parse_host;
use crate::cli::PublishArgs;
use crate::http1::{parse_response_head, write_post};
use crate::report::PublishReport;

/// Longest wait for one answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Consecutive failed requests after which the admin API is considered gone.
const MAX_CONSECUTIVE_ERRORS: u64 = 20;
/// Read step for responses.
const READ_BYTES: usize = 4096;

/// Runs the publisher.
pub fn run(args: &PublishArgs) -> anyhow::Result<PublishReport> {
    ensure!(
        args.channels > 0 || args.channel.is_some(),
        "--channels must be at least 1"
    );
    let addr = parse_admin_url(&args.admin)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(publish(args, addr)))
}

/// Parses `http://IP:PORT` (a trailing `/` is allowed).
pub fn parse_admin_url(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: expected http://IP:PORT"))?;
    let authority = rest.trim_end_matches('/');
    let (host, port) = authority
        .rsplit_once(':')
        .with_context(|| format!("{url}: missing :PORT"))?;
    let port: u16 = port.parse().with_context(|| format!("{url}: bad port"))?;
    Ok(SocketAddr::new(parse_host(host)?.into(), port))
}

/// Channel and body of message `j`.
pub fn message(args: &PublishArgs, j: u64) -> (String, Vec<u8>) {
    let (channel, seq) = match &args.channel {
        Some(name) => (name.clone(), j),
        None => {
            let channels = args.channels.max(1) as u64;
            (
                format!("{}{}", args.channel_prefix, j % channels),
                j / channels,
            )
        }
    };
    let mut body = format!("{seq}:").into_bytes();
    if body.len() < args.size {
        body.resize(args.size, b'x');
    }
    (channel, body)
}

async fn publish(args: &PublishArgs, addr: SocketAddr) -> PublishReport {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.timeout.max(0.0));
    let mut admin = AdminConnection::new(addr);
    let (mut published, mut errors, mut consecutive_errors) = (0u64, 0u64, 0u64);
    for j in 0..args.count {
        if args.rate > 0.0 {
            let due = start + Duration::from_secs_f64(j as f64 / args.rate);
            if due > Instant::now() {
                sleep_until(due.min(deadline).into()).await;
            }
        }
        if Instant::now() >= deadline || consecutive_errors >= MAX_CONSECUTIVE_ERRORS {
            break;
        }
        let (channel, body) = message(args, j);
        let path = format!("/publish/{channel}");
        match timeout(REQUEST_TIMEOUT, admin.post(&path, &body)).await {
            Ok(Ok(202)) => {
                published += 1;
                consecutive_errors = 0;
            }
            Ok(Ok(_)) => {
                errors += 1;
                consecutive_errors = 0;
            }
            Ok(Err(_)) | Err(_) => {
                admin.disconnect();
                errors += 1;
                consecutive_errors += 1;
            }
        }
    }
    let unattempted = args.count - published - errors;
    let elapsed_s = start.elapsed().as_secs_f64();
    PublishReport {
        scenario: "publish".to_owned(),
        published,
        errors: errors + unattempted,
        elapsed_s,
        rate_per_s: if elapsed_s > 0.0 {
            published as f64 / elapsed_s
        } else {
            0.0
        },
    }
}

/// One keep-alive HTTP/1.1 connection to the admin API, reopened after errors.
struct AdminConnection {
    addr: SocketAddr,
    host: String,
    stream: Option<TcpStream>,
    request: Vec<u8>,
    response: Vec<u8>,
}

impl AdminConnection {
    fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            host: addr.to_string(),
            stream: None,
            request: Vec::new(),
            response: Vec::new(),
        }
    }

    fn disconnect(&mut self) {
        self.stream = None;
    }

    /// Sends one POST and returns the answer's status.
    async fn post(&mut self, path: &str, body: &[u8]) -> anyhow::Result<u16> {
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => {
                let stream = TcpStream::connect(self.addr).await?;
                stream.set_nodelay(true)?;
                self.stream.insert(stream)
            }
        };
        self.request.clear();
        write_post(&mut self.request, &self.host, path, body);
        stream.write_all(&self.request).await?;
        self.response.clear();
        loop {
            self.response.reserve(READ_BYTES);
            let n = stream.read_buf(&mut self.response).await?;
            ensure!(n > 0, "admin closed the connection");
            let Some(head) = parse_response_head(&self.response)? else {
                continue;
            };
            while self.response.len() < head.head_len + head.content_length {
                self.response.reserve(READ_BYTES);
                let n = stream.read_buf(&mut self.response).await?;
                ensure!(n > 0, "admin closed the connection mid-body");
            }
            if head.close {
                self.disconnect();
            }
            return Ok(head.status);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(channels: usize, channel: Option<&str>, size: usize) -> PublishArgs {
        PublishArgs {
            admin: "http://127.0.0.1:9090".to_owned(),
            channel_prefix: "ch-".to_owned(),
            channels,
            channel: channel.map(str::to_owned),
            count: 10,
            rate: 0.0,
            size,
            timeout: 1.0,
            json: None,
        }
    }

    #[test]
    fn round_robin_with_per_channel_sequence() {
        let a = args(3, None, 0);
        assert_eq!(message(&a, 0), ("ch-0".to_owned(), b"0:".to_vec()));
        assert_eq!(message(&a, 2), ("ch-2".to_owned(), b"0:".to_vec()));
        assert_eq!(message(&a, 4), ("ch-1".to_owned(), b"1:".to_vec()));
    }

    #[test]
    fn single_channel_and_padding() {
        let a = args(1, Some("bench"), 8);
        assert_eq!(message(&a, 12), ("bench".to_owned(), b"12:xxxxx".to_vec()));
        let a = args(1, Some("bench"), 1);
        assert_eq!(message(&a, 12).1, b"12:".to_vec());
    }

    #[test]
    fn parses_admin_urls() {
        assert_eq!(
            parse_admin_url("http://127.0.0.1:9090/").unwrap(),
            "127.0.0.1:9090".parse().unwrap()
        );
        assert_eq!(parse_admin_url("http://localhost:1").unwrap().port(), 1);
        for bad in [
            "127.0.0.1:9090",
            "https://127.0.0.1:9090",
            "http://127.0.0.1",
            "http://127.0.0.1:x",
            "http://example.com:80",
        ] {
            assert!(parse_admin_url(bad).is_err(), "{bad}");
        }
    }
}

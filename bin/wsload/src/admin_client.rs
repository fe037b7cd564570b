//! One blocking keep-alive HTTP/1.1 connection to a server's admin API (`POST
//! /publish/<channel>`), reopened after errors; plus parsing of the `--admin` URL. A
//! gateway started with an admin token is given the same one: `RINGCAST_ADMIN_TOKEN`
//! in wsload's environment is sent as `Authorization: Bearer`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, ensure};

use crate::addr_plan::parse_host;
use crate::http1::{parse_response_head, write_post};

/// Longest wait for one answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Read step for responses.
const READ_BYTES: usize = 4096;

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

/// A keep-alive connection to the admin API.
#[derive(Debug)]
pub struct AdminClient {
    addr: SocketAddr,
    host: String,
    /// The admin token (`RINGCAST_ADMIN_TOKEN`), if any.
    bearer: Option<String>,
    stream: Option<TcpStream>,
    request: Vec<u8>,
    response: Vec<u8>,
}

impl AdminClient {
    /// A client for `addr` (connects on first use).
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            host: addr.to_string(),
            bearer: std::env::var("RINGCAST_ADMIN_TOKEN").ok(),
            stream: None,
            request: Vec::new(),
            response: Vec::new(),
        }
    }

    /// Sends one `POST path` with `body` and returns the answer's status. On error the
    /// connection is dropped and reopened by the next call.
    pub fn post(&mut self, path: &str, body: &[u8]) -> anyhow::Result<u16> {
        let result = self.try_post(path, body);
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn try_post(&mut self, path: &str, body: &[u8]) -> anyhow::Result<u16> {
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => {
                let stream = TcpStream::connect_timeout(&self.addr, REQUEST_TIMEOUT)
                    .with_context(|| format!("connecting to {}", self.addr))?;
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
                stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
                self.stream.insert(stream)
            }
        };
        self.request.clear();
        write_post(
            &mut self.request,
            &self.host,
            self.bearer.as_deref(),
            path,
            body,
        );
        stream.write_all(&self.request)?;
        self.response.clear();
        let mut chunk = [0u8; READ_BYTES];
        loop {
            let n = stream.read(&mut chunk)?;
            ensure!(n > 0, "admin closed the connection");
            self.response.extend_from_slice(&chunk[..n]);
            let Some(head) = parse_response_head(&self.response)? else {
                continue;
            };
            while self.response.len() < head.head_len + head.content_length {
                let n = stream.read(&mut chunk)?;
                ensure!(n > 0, "admin closed the connection mid-body");
                self.response.extend_from_slice(&chunk[..n]);
            }
            if head.close {
                self.stream = None;
            }
            return Ok(head.status);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;

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

    /// Answers `answers` requests on one connection with the given raw responses.
    fn serve(answers: Vec<&'static str>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            for answer in answers {
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                writer.write_all(answer.as_bytes()).unwrap();
            }
        });
        addr
    }

    #[test]
    fn keeps_the_connection_alive() {
        let addr = serve(vec![
            "HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}",
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
        ]);
        let mut client = AdminClient::new(addr);
        assert_eq!(client.post("/publish/a", b"0:1:").unwrap(), 202);
        assert_eq!(client.post("/publish/a b", b"").unwrap(), 400);
        assert!(client.post("/publish/a", b"x").is_err(), "server is gone");
    }
}

//! A keep-alive HTTP/1.1 client that pipelines requests on one connection: a burst of
//! publishes as fast as the admin port takes them, without a TCP connection (and a
//! TIME_WAIT port) per request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Status and body of one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// Body as text (lossy).
    pub body: String,
}

/// One keep-alive connection to an HTTP server.
pub struct Pipeline {
    addr: SocketAddr,
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Pipeline {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> std::io::Result<Pipeline> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.set_nodelay(true)?;
        Ok(Pipeline {
            addr,
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    /// Sends every `(path, body)` as a `POST` in one write, then reads their answers, in
    /// order.
    pub fn post_all(&mut self, requests: &[(String, Vec<u8>)]) -> std::io::Result<Vec<Answer>> {
        let mut out = Vec::new();
        for (path, body) in requests {
            out.extend_from_slice(
                format!(
                    "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
                    self.addr,
                    body.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(body);
        }
        self.writer.write_all(&out)?;
        requests.iter().map(|_| self.read_answer()).collect()
    }

    fn read_answer(&mut self) -> std::io::Result<Answer> {
        let bad = |what: String| std::io::Error::other(what);
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
        let mut length = 0usize;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(bad("connection closed in the headers".into()));
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().map_err(|_| bad(header.to_owned()))?;
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body)?;
        Ok(Answer {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

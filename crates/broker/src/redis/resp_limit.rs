//! A filter on the bytes from Redis, before the redis crate's RESP parser sees them: a
//! blob (bulk string, bulk error or verbatim string) longer than the limit is skipped as
//! it streams in and replaced by a RESP3 null, so a huge publish costs O(1) memory
//! instead of being buffered whole and refused afterwards. A pub/sub push whose payload
//! is null was therefore over the limit (Redis itself never sends a null payload), and
//! the inbound side counts it as too large.
//!
//! [`RespLimiter`] is the sans-IO tokenizer (bytes in, bytes out, any split);
//! [`LimitedStream`] wraps a socket with it for the redis crate, and does not read the
//! socket while its [`ReadGate`] says the pushes waiting for the node are at their bound.

use super::push_gate::ReadGate;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest blob header line (`$` and a 64-bit length); longer is not RESP.
const MAX_HEADER: usize = 24;
/// What replaces an over-limit blob: RESP3 null.
const NULL: &[u8] = b"_\r\n";

/// Where the tokenizer is in the stream.
#[derive(Debug)]
enum State {
    /// At the first byte of an element.
    LineStart,
    /// Inside a line that is not a blob header (simple string, number, aggregate
    /// header...): passed through up to its `\n`.
    Line,
    /// Inside a blob header line (`$`, `!` or `=`), held back until complete.
    Header(Vec<u8>),
    /// Inside a blob's bytes (and its final `\r\n`): `left` more, passed or skipped.
    Blob { left: u64, pass: bool },
}

/// The tokenizer: finds blob headers in a RESP byte stream and drops blobs over `limit`.
#[derive(Debug)]
pub(crate) struct RespLimiter {
    limit: u64,
    state: State,
}

impl RespLimiter {
    /// Drops blobs longer than `limit` bytes.
    pub(crate) fn new(limit: usize) -> Self {
        RespLimiter {
            limit: limit as u64,
            state: State::LineStart,
        }
    }

    /// Appends to `out` what `input` becomes. Returns an error for a blob header that is
    /// not RESP (the connection is then unusable anyway).
    pub(crate) fn filter(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        while !input.is_empty() {
            match &mut self.state {
                State::LineStart => {
                    self.state = match input[0] {
                        b'$' | b'!' | b'=' => State::Header(Vec::with_capacity(MAX_HEADER)),
                        _ => State::Line,
                    };
                }
                State::Line => match memchr_nl(input) {
                    Some(end) => {
                        out.extend_from_slice(&input[..=end]);
                        input = &input[end + 1..];
                        self.state = State::LineStart;
                    }
                    None => {
                        out.extend_from_slice(input);
                        input = &[];
                    }
                },
                State::Header(line) => {
                    let take = memchr_nl(input).map_or(input.len(), |end| end + 1);
                    line.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if line.len() > MAX_HEADER {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "Redis sent an over-long blob header",
                        ));
                    }
                    if line.last() == Some(&b'\n') {
                        let line = std::mem::take(line);
                        self.state = self.after_header(&line, out);
                    }
                }
                State::Blob { left, pass } => {
                    let take = usize::try_from(*left).map_or(input.len(), |l| l.min(input.len()));
                    if *pass {
                        out.extend_from_slice(&input[..take]);
                    }
                    input = &input[take..];
                    *left -= take as u64;
                    if *left == 0 {
                        self.state = State::LineStart;
                    }
                }
            }
        }
        Ok(())
    }

    /// A complete blob header `line`: pass the blob, drop it, or (null, `$?`) go on.
    fn after_header(&self, line: &[u8], out: &mut Vec<u8>) -> State {
        let digits = line[1..].strip_suffix(b"\r\n").unwrap_or(&line[1..]);
        let len = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse::<u64>().ok());
        match len {
            Some(len) if len > self.limit => {
                out.extend_from_slice(NULL);
                State::Blob {
                    left: len + 2,
                    pass: false,
                }
            }
            Some(len) => {
                out.extend_from_slice(line);
                State::Blob {
                    left: len + 2,
                    pass: true,
                }
            }
            // `$-1` (RESP2 null) or anything the parser should judge itself.
            None => {
                out.extend_from_slice(line);
                State::LineStart
            }
        }
    }
}

fn memchr_nl(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

/// A socket whose incoming bytes pass through a [`RespLimiter`], read only while its
/// gate (if any) has room.
pub(crate) struct LimitedStream<S> {
    inner: S,
    limiter: RespLimiter,
    gate: Option<ReadGate>,
    /// Filtered bytes not yet handed to the reader (a held-back header can make one
    /// read's output longer than what the reader asked for).
    ready: Vec<u8>,
    /// Scratch for raw bytes from the socket.
    raw: Vec<u8>,
}

impl<S> LimitedStream<S> {
    /// Wraps `inner`, dropping incoming blobs over `limit` bytes.
    pub(crate) fn new(inner: S, limit: usize) -> Self {
        LimitedStream {
            inner,
            limiter: RespLimiter::new(limit),
            gate: None,
            ready: Vec::new(),
            raw: vec![0; 16 * 1024],
        }
    }

    /// Reads the socket only while `gate` has room.
    pub(crate) fn gated(mut self, gate: ReadGate) -> Self {
        self.gate = Some(gate);
        self
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LimitedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.ready.is_empty() {
            if let Some(gate) = &this.gate {
                ready!(gate.poll_room(cx));
            }
            let mut raw = ReadBuf::new(&mut this.raw);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut raw))?;
            if raw.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            let filled = raw.filled().len();
            this.limiter.filter(&this.raw[..filled], &mut this.ready)?;
        }
        let n = this.ready.len().min(buf.remaining());
        buf.put_slice(&this.ready[..n]);
        this.ready.drain(..n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LimitedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(limit: usize, input: &[u8], split: usize) -> Vec<u8> {
        let mut limiter = RespLimiter::new(limit);
        let mut out = Vec::new();
        for chunk in input.chunks(split) {
            limiter.filter(chunk, &mut out).expect("valid RESP");
        }
        out
    }

    const PUSH: &[u8] = b">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n+OK\r\n";

    #[test]
    fn blobs_within_the_limit_pass_unchanged_at_any_split() {
        for split in 1..=PUSH.len() {
            assert_eq!(run(7, PUSH, split), PUSH, "split {split}");
        }
    }

    #[test]
    fn an_over_limit_blob_becomes_null_at_any_split() {
        for split in 1..=PUSH.len() {
            assert_eq!(
                run(5, PUSH, split),
                b">3\r\n_\r\n$4\r\nnews\r\n$5\r\nhello\r\n+OK\r\n",
                "limit 5: `message` (7 bytes) is dropped, split {split}"
            );
            assert_eq!(
                run(4, PUSH, split),
                b">3\r\n_\r\n$4\r\nnews\r\n_\r\n+OK\r\n",
                "limit 4: `hello` too, split {split}"
            );
        }
    }

    #[test]
    fn a_huge_blob_is_skipped_without_being_kept() {
        let mut limiter = RespLimiter::new(1024);
        let mut out = Vec::new();
        limiter
            .filter(
                b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$100000000\r\n",
                &mut out,
            )
            .expect("valid");
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..95 {
            limiter.filter(&chunk, &mut out).expect("valid");
        }
        assert!(
            out.len() < 64,
            "nothing of the blob was kept: {}",
            out.len()
        );
        let rest = 100_000_000 - 95 * (1 << 20);
        limiter.filter(&vec![b'x'; rest], &mut out).expect("valid");
        limiter.filter(b"\r\n+OK\r\n", &mut out).expect("valid");
        assert_eq!(out, b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n_\r\n+OK\r\n");
    }

    #[test]
    fn nulls_and_errors_pass() {
        let input = b"$-1\r\n-ERR bad thing\r\n:42\r\n!3\r\nerr\r\n";
        assert_eq!(run(16, input, 1), input);
    }

    #[test]
    fn an_endless_header_is_an_error() {
        let mut limiter = RespLimiter::new(16);
        let mut out = Vec::new();
        assert!(limiter.filter(&[b'$'; 100], &mut out).is_err());
    }
}

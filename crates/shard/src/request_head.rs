//! The HTTP request head of a connection that is not admitted yet, gathered across
//! receives so that it is parsed once, when it is complete, never re-parsed from byte 0
//! on every receive (a client trickling its request one byte at a time would otherwise
//! cost O(n²)). A request that arrives in one receive is parsed straight from the
//! receive buffer, without a copy.
//!
//! The head is complete at the first empty line: `\n\n` or `\n\r\n` (httparse accepts
//! bare LF line ends too). A head that reaches [`MAX_HANDSHAKE_BYTES`] without one is
//! handed over as well, so the parser can refuse it as too large.

use ringcast_proto::MAX_HANDSHAKE_BYTES;

/// What a receive made of the request head.
pub(crate) enum Head<'a> {
    /// No empty line yet: wait for more.
    Partial,
    /// Everything received so far (the head and any bytes after it), ready to parse.
    Ready(&'a mut [u8]),
}

/// The bytes of an incomplete request head. Holds no allocation until a request spans
/// more than one receive.
#[derive(Debug, Default)]
pub(crate) struct RequestHead {
    buf: Vec<u8>,
}

impl RequestHead {
    /// Takes the bytes of one receive. Scans only the new bytes (and the last two kept).
    pub(crate) fn feed<'a>(&'a mut self, data: &'a mut [u8]) -> Head<'a> {
        if self.buf.is_empty() {
            if data.len() >= MAX_HANDSHAKE_BYTES || ends_head(data) || !plausible_start(data) {
                return Head::Ready(data);
            }
            self.buf.extend_from_slice(data);
            return Head::Partial;
        }
        let scan_from = self.buf.len().saturating_sub(2);
        self.buf.extend_from_slice(data);
        if self.buf.len() >= MAX_HANDSHAKE_BYTES || ends_head(&self.buf[scan_from..]) {
            Head::Ready(&mut self.buf)
        } else {
            Head::Partial
        }
    }

    /// Keeps `bytes` (everything received so far) when a head handed over turned out
    /// not to be complete after all (an empty line before the request line): the next
    /// feed scans only what arrives after them.
    pub(crate) fn keep(&mut self, bytes: &[u8]) {
        self.buf.clear();
        self.buf.extend_from_slice(bytes);
    }

    /// Whether nothing is kept.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Longest method this server could answer (`OPTIONS`, with room to spare).
const MAX_METHOD_BYTES: usize = 16;

/// Whether the first bytes of a request can start a request line: a method token (then
/// a space). Anything else (a TLS ClientHello, binary noise) is handed over at once so
/// the parser refuses it without waiting for more.
fn plausible_start(bytes: &[u8]) -> bool {
    let method = bytes.split(|&b| b == b' ').next().unwrap_or_default();
    let spaced = method.len() < bytes.len();
    !method.is_empty()
        && method.len() <= MAX_METHOD_BYTES
        && (spaced || bytes.len() <= MAX_METHOD_BYTES)
        && method.iter().all(|&b| is_tchar(b))
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `bytes` contain an empty line: `\n` followed by `\n` or by `\r\n`.
fn ends_head(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().any(|(i, &b)| {
        b == b'\n'
            && match bytes.get(i + 1) {
                Some(b'\n') => true,
                Some(b'\r') => bytes.get(i + 2) == Some(&b'\n'),
                _ => false,
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(head: &mut RequestHead, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut data = bytes.to_vec();
        match head.feed(&mut data) {
            Head::Partial => None,
            Head::Ready(all) => Some(all.to_vec()),
        }
    }

    #[test]
    fn a_whole_request_is_ready_without_being_kept() {
        let mut head = RequestHead::default();
        let req = b"GET /news HTTP/1.1\r\nHost: x\r\n\r\nrest";
        assert_eq!(feed(&mut head, req).as_deref(), Some(&req[..]));
        assert_eq!(head.buf.capacity(), 0, "parsed from the receive buffer");
    }

    #[test]
    fn a_trickled_request_is_ready_at_its_empty_line_whatever_the_split() {
        let req = b"GET /news HTTP/1.1\r\nHost: x\r\n\r\n";
        for split in 1..req.len() {
            let mut head = RequestHead::default();
            let mut ready = None;
            for chunk in req.chunks(split) {
                assert!(ready.is_none(), "ready before the end (split {split})");
                ready = feed(&mut head, chunk);
            }
            assert_eq!(ready.as_deref(), Some(&req[..]), "split {split}");
        }
    }

    #[test]
    fn what_cannot_start_a_request_is_handed_over_at_once() {
        for garbage in [
            &b"\x16\x03\x01\x00\xa5"[..],
            b"\r\n",
            b"GET/a/very/long/path/no/space",
        ] {
            assert!(
                feed(&mut RequestHead::default(), garbage).is_some(),
                "{garbage:?}"
            );
        }
        for start in [&b"G"[..], b"GET", b"GET /ne", b"OPTIONS * HT"] {
            assert!(
                feed(&mut RequestHead::default(), start).is_none(),
                "{start:?}"
            );
        }
    }

    #[test]
    fn bare_lf_line_ends_end_the_head_too() {
        let mut head = RequestHead::default();
        assert!(feed(&mut head, b"GET / HTTP/1.1\nHost: x\n").is_none());
        assert!(feed(&mut head, b"\n").is_some());
    }

    #[test]
    fn a_head_without_end_is_handed_over_at_the_limit() {
        let mut head = RequestHead::default();
        assert!(feed(&mut head, b"GET / HTTP/1.1\r\n").is_none());
        let line = [b'a'; 1000];
        let mut fed = 0;
        while feed(&mut head, &line).is_none() {
            fed += line.len();
            assert!(fed < MAX_HANDSHAKE_BYTES, "kept past the limit");
        }
        assert!(head.buf.len() >= MAX_HANDSHAKE_BYTES);
    }

    #[test]
    fn a_byte_at_a_time_costs_linear_work() {
        // 8 KiB fed one byte at a time scans each byte a bounded number of times: this
        // finishes at once, where re-parsing from byte 0 would do ~33 M byte visits.
        let mut head = RequestHead::default();
        let mut ready = false;
        for _ in 0..MAX_HANDSHAKE_BYTES {
            ready = feed(&mut head, b"x").is_some();
        }
        assert!(ready);
    }
}

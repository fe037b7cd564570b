//! Message bodies wsload sends and recognises: `"<seq>:<unix-ns>:<padding>"`. The sequence
//! number counts per channel (push, tick) or per connection (echo) from 0; the timestamp is
//! the sender's wall clock (`CLOCK_REALTIME`, nanoseconds), so a receiver in another process
//! of the same host (or an NTP-synced one) can compute the one-way latency. Bodies of the
//! older form `"<seq>:<padding>"` (`wsload publish` without timestamps) still carry a
//! sequence number.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time in nanoseconds since the Unix epoch (0 if the clock is before 1970).
pub fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Appends the body of message `seq` stamped `stamp_ns` (wall clock: when it was sent,
/// or when it was due at a fixed rate), padded with `x` to `size` bytes
/// (never shorter than the `"<seq>:<ns>:"` prefix).
pub fn write_body(out: &mut Vec<u8>, seq: u64, stamp_ns: u64, size: usize) {
    let start = out.len();
    push_decimal(out, seq);
    out.push(b':');
    push_decimal(out, stamp_ns);
    out.push(b':');
    let written = out.len() - start;
    if written < size {
        out.resize(start + size, b'x');
    }
}

fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut n = 0;
    loop {
        digits[n] = b'0' + (value % 10) as u8;
        n += 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend(digits[..n].iter().rev());
}

/// What a received body says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Body {
    /// The leading sequence number.
    pub seq: Option<u64>,
    /// The publisher's wall-clock stamp (ns), when the second field is a number: when
    /// the message was due (fixed rate) or sent.
    pub stamp_ns: Option<u64>,
}

/// Parses `"<seq>"`, `"<seq>:..."` and `"<seq>:<ns>:..."` / `"<seq>:<ns>"`.
pub fn parse_body(body: &[u8]) -> Body {
    let Some((seq, rest)) = leading_number(body) else {
        return Body::default();
    };
    let stamp_ns = leading_number(rest).map(|(ns, _)| ns);
    Body {
        seq: Some(seq),
        stamp_ns,
    }
}

/// A decimal number at the start of `bytes` followed by `:` or the end; returns it and what
/// follows the `:`. A plain loop: this runs once per received message.
fn leading_number(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value: u64 = 0;
    let mut i = 0;
    while i < bytes.len() && bytes[i] != b':' {
        let digit = bytes[i].wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(digit))?;
        i += 1;
    }
    if i == 0 {
        return None;
    }
    Some((value, bytes.get(i + 1..).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_parses_timestamped_bodies() {
        let mut out = Vec::new();
        write_body(&mut out, 42, 1_700_000_000_123_456_789, 40);
        assert_eq!(out.len(), 40);
        assert!(out.starts_with(b"42:1700000000123456789:xxx"));
        assert_eq!(
            parse_body(&out),
            Body {
                seq: Some(42),
                stamp_ns: Some(1_700_000_000_123_456_789)
            }
        );
        out.clear();
        write_body(&mut out, 0, 7, 0);
        assert_eq!(out, b"0:7:");
        assert_eq!(
            parse_body(b"3:9"),
            Body {
                seq: Some(3),
                stamp_ns: Some(9)
            }
        );
    }

    #[test]
    fn older_and_foreign_bodies() {
        assert_eq!(
            parse_body(b"12:xxxx"),
            Body {
                seq: Some(12),
                stamp_ns: None
            }
        );
        assert_eq!(
            parse_body(b"7"),
            Body {
                seq: Some(7),
                stamp_ns: None
            }
        );
        assert_eq!(
            parse_body(b"7:"),
            Body {
                seq: Some(7),
                stamp_ns: None
            }
        );
        assert_eq!(parse_body(b"hello"), Body::default());
        assert_eq!(parse_body(b""), Body::default());
        assert_eq!(parse_body(b":1:2"), Body::default());
        assert_eq!(parse_body(b"99999999999999999999:1"), Body::default());
        assert_eq!(
            parse_body(b"1:2x:"),
            Body {
                seq: Some(1),
                stamp_ns: None
            }
        );
    }

    #[test]
    fn clock_is_after_2020() {
        assert!(realtime_ns() > 1_577_836_800_000_000_000);
    }
}

//! The tick channel: once a second every shard publishes the time to its own local
//! subscribers of `--tick-channel`, from its own clock, so a time push to every client
//! costs no cross-shard traffic. The message is `{"time":"<RFC 3339 ms>","seq":<unix s>}`;
//! the sequence number is the Unix second, the same on every shard and node.

/// Decides when the next tick is due and renders it.
#[derive(Debug, Default)]
pub(crate) struct TickClock {
    last_second: u64,
}

impl TickClock {
    /// The tick message if a new Unix second began since the last one.
    pub(crate) fn due(&mut self, unix_ms: u64) -> Option<String> {
        let second = unix_ms / 1000;
        if second <= self.last_second {
            return None;
        }
        self.last_second = second;
        Some(format!(
            "{{\"time\":\"{}\",\"seq\":{second}}}",
            rfc3339_millis(unix_ms)
        ))
    }
}

/// `2026-11-23T12:00:00.123Z` for a Unix time in milliseconds.
pub(crate) fn rfc3339_millis(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_795_440_457_123),
            "2026-11-23T13:27:37.123Z"
        );
        assert_eq!(
            rfc3339_millis(4_102_444_799_999),
            "2099-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn one_tick_per_second() {
        let mut clock = TickClock::default();
        let first = clock.due(1_000_500).expect("first tick");
        assert_eq!(first, r#"{"time":"1970-01-01T00:16:40.500Z","seq":1000}"#);
        assert!(clock.due(1_000_900).is_none());
        assert!(clock.due(1_001_000).is_some());
        assert!(
            clock.due(1_000_000).is_none(),
            "clock going back does not repeat"
        );
    }
}

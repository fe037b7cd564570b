//! Per-shard counters: plain integers bumped by one shard thread (no atomics), pushed into
//! the `metrics` facade as deltas about once a second by `ShardCounters::flush`. The shard
//! core owns its counters privately; the reason labels it passes to `closed` and
//! `handshake_failed` come from its `CloseReason` and `HandshakeFailure` enums, which
//! also list every label for `register_reasons`, so each is exported at 0 from the first
//! flush (`increase()` and absent-alerts need the series before the first event).

use metrics::{SharedString, counter, gauge, histogram};

use crate::names;

/// Ping round-trip samples kept between two flushes; samples beyond this are dropped.
pub const RTT_SAMPLE_CAP: usize = 4096;

/// One shard's counters. Counter fields only grow; gauge fields hold the current value.
#[derive(Debug, Default, Clone)]
pub struct ShardCounters {
    /// Gauge: current open connections, handshaking ones included.
    pub connections: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// TLS handshakes completed (resumed ones included).
    pub tls_handshakes: u64,
    /// Of those, the ones that resumed a session (a ticket) instead of signing.
    pub tls_resumed: u64,
    /// Pings sent.
    pub pings_sent: u64,
    /// Pongs received.
    pub pongs_received: u64,
    /// Connections closed for a missing pong.
    pub ping_timeouts: u64,
    /// Gauge: open Server-Sent-Events connections (included in `connections`).
    pub sse_connections: u64,
    /// Gauge: held long-poll requests (included in `connections`).
    pub poll_connections: u64,
    /// Messages delivered to client connections.
    pub delivered: u64,
    /// Messages compressed (permessage-deflate), each once however many receive it.
    pub compressed: u64,
    /// Bytes written to client connections.
    pub bytes_sent: u64,
    /// Connections closed for being slow consumers.
    pub slow_consumer_closes: u64,
    /// Messages dropped from slow consumers' queues (drop-oldest policy).
    pub slow_consumer_dropped: u64,
    /// Gauge: channels this shard owns that have subscribers somewhere.
    pub channels: u64,
    /// Gauge: local subscriptions.
    pub subscriptions: u64,
    /// Gauge: messages waiting in the shard's inbound queue.
    pub queue_depth: u64,
    /// Receives that found the buffer ring empty (ENOBUFS).
    pub recv_enobufs: u64,
    /// Waits that let completions gather before waking.
    pub coalesced_waits: u64,
    /// Failed accepts.
    pub accept_errors: u64,
    /// Publishes dropped because the channel had no subscribers.
    pub publish_dropped: u64,
    /// Gauge: messages kept in this shard's channel histories.
    pub history_messages: u64,
    /// Gauge: bytes this shard's channel histories cost.
    pub history_bytes: u64,
    /// Channel histories evicted by the byte cap.
    pub history_evictions: u64,
    closes: ReasonCounts,
    recoveries: Vec<RecoveryCount>,
    handshake_failures: ReasonCounts,
    rtt_samples: Vec<f64>,
    flushed: FlushedCounters,
}

/// Counter values as of the last flush, to compute deltas.
#[derive(Debug, Default, Clone, Copy)]
struct FlushedCounters {
    accepted: u64,
    tls_full: u64,
    tls_resumed: u64,
    pings_sent: u64,
    pongs_received: u64,
    ping_timeouts: u64,
    delivered: u64,
    bytes_sent: u64,
    slow_consumer_closes: u64,
    slow_consumer_dropped: u64,
    compressed: u64,
    recv_enobufs: u64,
    coalesced_waits: u64,
    accept_errors: u64,
    publish_dropped: u64,
    history_evictions: u64,
}

/// Resume requests of one transport with one result.
#[derive(Debug, Clone, Copy)]
struct RecoveryCount {
    transport: &'static str,
    result: &'static str,
    total: u64,
    flushed: u64,
}

/// A small linear map from reason to count; reasons are few and static.
#[derive(Debug, Default, Clone)]
struct ReasonCounts {
    entries: Vec<ReasonCount>,
}

#[derive(Debug, Clone, Copy)]
struct ReasonCount {
    reason: &'static str,
    total: u64,
    flushed: u64,
}

impl ReasonCounts {
    /// Adds `reason` at 0 unless it is already counted.
    fn register(&mut self, reason: &'static str) {
        if !self.entries.iter().any(|entry| entry.reason == reason) {
            self.entries.push(ReasonCount {
                reason,
                total: 0,
                flushed: 0,
            });
        }
    }

    fn bump(&mut self, reason: &'static str) {
        match self.entries.iter_mut().find(|entry| entry.reason == reason) {
            Some(entry) => entry.total += 1,
            None => self.entries.push(ReasonCount {
                reason,
                total: 1,
                flushed: 0,
            }),
        }
    }

    fn get(&self, reason: &str) -> u64 {
        self.entries
            .iter()
            .find(|entry| entry.reason == reason)
            .map_or(0, |entry| entry.total)
    }

    fn flush(&mut self, name: &'static str, shard: &SharedString) {
        for entry in &mut self.entries {
            counter!(name, names::LABEL_SHARD => shard.clone(), names::LABEL_REASON => entry.reason)
                .increment(entry.total.saturating_sub(entry.flushed));
            entry.flushed = entry.total;
        }
    }
}

impl ShardCounters {
    /// Registers every close and handshake-failure reason label the shard can count, so
    /// each is exported (at 0 until it happens) from the next flush on.
    pub fn register_reasons(
        &mut self,
        closes: impl IntoIterator<Item = &'static str>,
        handshake_failures: impl IntoIterator<Item = &'static str>,
    ) {
        for reason in closes {
            self.closes.register(reason);
        }
        for reason in handshake_failures {
            self.handshake_failures.register(reason);
        }
    }

    /// Registers every transport × result pair of `ringcast_recoveries_total`, so each
    /// is exported at 0 from the next flush on.
    pub fn register_recoveries(&mut self, transports: &[&'static str], results: &[&'static str]) {
        for &transport in transports {
            for &result in results {
                self.recovered_entry(transport, result);
            }
        }
    }

    /// Counts one resume request (`ringcast_recoveries_total{transport,result}`).
    pub fn recovered(&mut self, transport: &'static str, result: &'static str) {
        self.recovered_entry(transport, result).total += 1;
    }

    /// Resume requests counted so far for `transport` and `result`.
    pub fn recovered_count(&self, transport: &str, result: &str) -> u64 {
        self.recoveries
            .iter()
            .find(|e| e.transport == transport && e.result == result)
            .map_or(0, |e| e.total)
    }

    fn recovered_entry(
        &mut self,
        transport: &'static str,
        result: &'static str,
    ) -> &mut RecoveryCount {
        let at = match self
            .recoveries
            .iter()
            .position(|e| e.transport == transport && e.result == result)
        {
            Some(at) => at,
            None => {
                self.recoveries.push(RecoveryCount {
                    transport,
                    result,
                    total: 0,
                    flushed: 0,
                });
                self.recoveries.len() - 1
            }
        };
        &mut self.recoveries[at]
    }

    /// Counts one closed connection under `reason` (`ringcast_connections_closed_total`).
    pub fn closed(&mut self, reason: &'static str) {
        self.closes.bump(reason);
    }

    /// Counts one failed handshake under `reason` (`ringcast_handshake_failures_total`).
    pub fn handshake_failed(&mut self, reason: &'static str) {
        self.handshake_failures.bump(reason);
    }

    /// Buffers one ping round-trip sample; beyond `RTT_SAMPLE_CAP` samples per flush the
    /// extra ones are dropped.
    pub fn ping_rtt(&mut self, seconds: f64) {
        if self.rtt_samples.len() < RTT_SAMPLE_CAP {
            self.rtt_samples.push(seconds);
        }
    }

    /// Total connections closed under `reason` so far.
    pub fn closed_count(&self, reason: &str) -> u64 {
        self.closes.get(reason)
    }

    /// Total handshakes failed under `reason` so far.
    pub fn handshake_failed_count(&self, reason: &str) -> u64 {
        self.handshake_failures.get(reason)
    }

    /// Pushes deltas since the last flush into the `metrics` facade with label
    /// `shard=<shard>`; gauges are set absolutely; buffered ping samples are recorded and
    /// cleared. Called about once a second by the shard thread.
    pub fn flush(&mut self, shard: usize) {
        let shard = SharedString::from(shard.to_string());
        let label = |shard: &SharedString| [(names::LABEL_SHARD, shard.clone())];

        let flushed = &mut self.flushed;
        let counters = [
            (
                names::CONNECTIONS_ACCEPTED,
                self.accepted,
                &mut flushed.accepted,
            ),
            (names::PINGS_SENT, self.pings_sent, &mut flushed.pings_sent),
            (
                names::PONGS_RECEIVED,
                self.pongs_received,
                &mut flushed.pongs_received,
            ),
            (
                names::PING_TIMEOUTS,
                self.ping_timeouts,
                &mut flushed.ping_timeouts,
            ),
            (
                names::MESSAGES_DELIVERED,
                self.delivered,
                &mut flushed.delivered,
            ),
            (names::BYTES_SENT, self.bytes_sent, &mut flushed.bytes_sent),
            (
                names::SLOW_CONSUMER_CLOSES,
                self.slow_consumer_closes,
                &mut flushed.slow_consumer_closes,
            ),
            (
                names::MESSAGES_COMPRESSED,
                self.compressed,
                &mut flushed.compressed,
            ),
            (
                names::SLOW_CONSUMER_DROPPED,
                self.slow_consumer_dropped,
                &mut flushed.slow_consumer_dropped,
            ),
            (
                names::RECV_ENOBUFS,
                self.recv_enobufs,
                &mut flushed.recv_enobufs,
            ),
            (
                names::COALESCED_WAITS,
                self.coalesced_waits,
                &mut flushed.coalesced_waits,
            ),
            (
                names::ACCEPT_ERRORS,
                self.accept_errors,
                &mut flushed.accept_errors,
            ),
            (
                names::PUBLISH_DROPPED,
                self.publish_dropped,
                &mut flushed.publish_dropped,
            ),
            (
                names::HISTORY_EVICTIONS,
                self.history_evictions,
                &mut flushed.history_evictions,
            ),
        ];
        for (name, current, last) in counters {
            counter!(name, &label(&shard)).increment(current.saturating_sub(*last));
            *last = current;
        }
        let full = self.tls_handshakes.saturating_sub(self.tls_resumed);
        for (kind, current, last) in [
            ("full", full, &mut flushed.tls_full),
            ("resumed", self.tls_resumed, &mut flushed.tls_resumed),
        ] {
            counter!(names::TLS_HANDSHAKES, names::LABEL_SHARD => shard.clone(), "kind" => kind)
                .increment(current.saturating_sub(*last));
            *last = current;
        }

        let websocket = self
            .connections
            .saturating_sub(self.sse_connections + self.poll_connections);
        for (transport, value) in [
            ("websocket", websocket),
            ("sse", self.sse_connections),
            ("poll", self.poll_connections),
        ] {
            gauge!(names::CONNECTIONS, "shard" => shard.clone(), "transport" => transport)
                .set(value as f64);
        }
        let gauges = [
            (names::CHANNELS, self.channels),
            (names::SUBSCRIPTIONS, self.subscriptions),
            (names::SHARD_QUEUE_DEPTH, self.queue_depth),
            (names::HISTORY_MESSAGES, self.history_messages),
            (names::HISTORY_BYTES, self.history_bytes),
        ];
        for (name, value) in gauges {
            gauge!(name, &label(&shard)).set(value as f64);
        }

        for entry in &mut self.recoveries {
            counter!(names::RECOVERIES, names::LABEL_SHARD => shard.clone(), names::LABEL_TRANSPORT => entry.transport, names::LABEL_RESULT => entry.result)
                .increment(entry.total.saturating_sub(entry.flushed));
            entry.flushed = entry.total;
        }
        self.closes.flush(names::CONNECTIONS_CLOSED, &shard);
        self.handshake_failures
            .flush(names::HANDSHAKE_FAILURES, &shard);

        if !self.rtt_samples.is_empty() {
            let rtt = histogram!(names::PING_RTT_SECONDS, &label(&shard));
            for sample in self.rtt_samples.drain(..) {
                rtt.record(sample);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::build_recorder;
    use metrics_exporter_prometheus::PrometheusRecorder;

    fn flush_into(recorder: &PrometheusRecorder, counters: &mut ShardCounters, shard: usize) {
        metrics::with_local_recorder(recorder, || counters.flush(shard));
    }

    /// The value of the series whose line starts with `series` (name plus labels).
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    }

    #[test]
    fn flush_pushes_deltas_and_sets_gauges() {
        let recorder = build_recorder().unwrap();
        let handle = recorder.handle();
        let mut counters = ShardCounters {
            accepted: 5,
            bytes_sent: 1000,
            connections: 4,
            subscriptions: 9,
            ..ShardCounters::default()
        };
        counters.closed("client_close");
        counters.closed("client_close");
        counters.handshake_failed("bad_path");
        counters.ping_rtt(0.002);
        flush_into(&recorder, &mut counters, 3);

        let text = handle.render();
        assert_eq!(
            value(&text, r#"ringcast_connections_accepted_total{shard="3"}"#),
            Some(5.0)
        );
        assert_eq!(
            value(&text, r#"ringcast_bytes_sent_total{shard="3"}"#),
            Some(1000.0)
        );
        assert_eq!(
            value(&text, r#"ringcast_pings_sent_total{shard="3"}"#),
            Some(0.0)
        );
        assert_eq!(
            value(
                &text,
                r#"ringcast_connections{shard="3",transport="websocket"}"#
            ),
            Some(4.0)
        );
        assert_eq!(
            value(&text, r#"ringcast_subscriptions{shard="3"}"#),
            Some(9.0)
        );
        assert_eq!(
            value(
                &text,
                r#"ringcast_connections_closed_total{shard="3",reason="client_close"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            value(
                &text,
                r#"ringcast_handshake_failures_total{shard="3",reason="bad_path"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&text, r#"ringcast_ping_rtt_seconds_count{shard="3"}"#),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                r#"ringcast_ping_rtt_seconds_bucket{shard="3",le="0.0025"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                r#"ringcast_ping_rtt_seconds_bucket{shard="3",le="0.001"}"#
            ),
            Some(0.0)
        );

        counters.accepted += 2;
        counters.connections = 1;
        counters.closed("client_close");
        counters.closed("ping_timeout");
        counters.ping_rtt(0.5);
        counters.ping_rtt(0.6);
        flush_into(&recorder, &mut counters, 3);

        let text = handle.render();
        assert_eq!(
            value(&text, r#"ringcast_connections_accepted_total{shard="3"}"#),
            Some(7.0)
        );
        assert_eq!(
            value(&text, r#"ringcast_bytes_sent_total{shard="3"}"#),
            Some(1000.0)
        );
        assert_eq!(
            value(
                &text,
                r#"ringcast_connections{shard="3",transport="websocket"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                r#"ringcast_connections_closed_total{shard="3",reason="client_close"}"#
            ),
            Some(3.0)
        );
        assert_eq!(
            value(
                &text,
                r#"ringcast_connections_closed_total{shard="3",reason="ping_timeout"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&text, r#"ringcast_ping_rtt_seconds_count{shard="3"}"#),
            Some(3.0)
        );

        // A flush with nothing new changes no counter.
        flush_into(&recorder, &mut counters, 3);
        let text = handle.render();
        assert_eq!(
            value(&text, r#"ringcast_connections_accepted_total{shard="3"}"#),
            Some(7.0)
        );
        assert_eq!(
            value(&text, r#"ringcast_ping_rtt_seconds_count{shard="3"}"#),
            Some(3.0)
        );
    }

    #[test]
    fn shards_are_labelled_separately() {
        let recorder = build_recorder().unwrap();
        let handle = recorder.handle();
        let mut first = ShardCounters {
            delivered: 10,
            ..ShardCounters::default()
        };
        let mut second = ShardCounters {
            delivered: 20,
            ..ShardCounters::default()
        };
        flush_into(&recorder, &mut first, 0);
        flush_into(&recorder, &mut second, 1);
        let text = handle.render();
        assert_eq!(
            value(&text, r#"ringcast_messages_delivered_total{shard="0"}"#),
            Some(10.0)
        );
        assert_eq!(
            value(&text, r#"ringcast_messages_delivered_total{shard="1"}"#),
            Some(20.0)
        );
    }

    #[test]
    fn lowered_counter_is_not_pushed_as_negative() {
        let recorder = build_recorder().unwrap();
        let handle = recorder.handle();
        let mut counters = ShardCounters {
            accepted: 10,
            ..ShardCounters::default()
        };
        flush_into(&recorder, &mut counters, 0);
        counters.accepted = 4;
        flush_into(&recorder, &mut counters, 0);
        counters.accepted = 6;
        flush_into(&recorder, &mut counters, 0);
        let text = handle.render();
        assert_eq!(
            value(&text, r#"ringcast_connections_accepted_total{shard="0"}"#),
            Some(12.0)
        );
    }

    #[test]
    fn rtt_samples_are_capped_per_flush() {
        let recorder = build_recorder().unwrap();
        let handle = recorder.handle();
        let mut counters = ShardCounters::default();
        for _ in 0..RTT_SAMPLE_CAP + 100 {
            counters.ping_rtt(0.01);
        }
        flush_into(&recorder, &mut counters, 2);
        counters.ping_rtt(0.01);
        flush_into(&recorder, &mut counters, 2);
        let text = handle.render();
        let expected = (RTT_SAMPLE_CAP + 1) as f64;
        assert_eq!(
            value(&text, r#"ringcast_ping_rtt_seconds_count{shard="2"}"#),
            Some(expected)
        );
    }

    #[test]
    fn registered_reasons_are_exported_at_zero_from_the_first_flush() {
        let recorder = build_recorder().unwrap();
        let handle = recorder.handle();
        let mut counters = ShardCounters::default();
        counters.register_reasons(["peer_gone", "token_expired"], ["not_get"]);
        counters.closed("peer_gone");
        counters.register_reasons(["peer_gone"], ["not_get"]);
        flush_into(&recorder, &mut counters, 1);
        let text = handle.render();
        let closed = |reason: &str| {
            let series =
                format!(r#"ringcast_connections_closed_total{{shard="1",reason="{reason}"}}"#);
            value(&text, &series)
        };
        assert_eq!(closed("token_expired"), Some(0.0));
        assert_eq!(
            closed("peer_gone"),
            Some(1.0),
            "registering again keeps the count"
        );
        assert_eq!(
            value(
                &text,
                r#"ringcast_handshake_failures_total{shard="1",reason="not_get"}"#
            ),
            Some(0.0)
        );
    }

    #[test]
    fn reason_counts_are_kept_per_reason() {
        let mut counters = ShardCounters::default();
        counters.closed("a");
        counters.closed("b");
        counters.closed("a");
        counters.handshake_failed("bad_key");
        assert_eq!(counters.closed_count("a"), 2);
        assert_eq!(counters.closed_count("b"), 1);
        assert_eq!(counters.closed_count("never"), 0);
        assert_eq!(counters.handshake_failed_count("bad_key"), 1);
        assert_eq!(counters.handshake_failed_count("a"), 0);
    }
}

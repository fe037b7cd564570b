//! Every metric name the gateway exports, and `describe_all`, which registers their help
//! text and units with the current recorder.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Gauge `{shard}`: open connections, handshaking ones included.
pub const CONNECTIONS: &str = "ringcast_connections";
/// Counter `{shard}`: connections accepted.
pub const CONNECTIONS_ACCEPTED: &str = "ringcast_connections_accepted_total";
/// Counter `{shard, kind}`: TLS handshakes completed (`--tls-cert`), `kind` = `full` or
/// `resumed` (a session ticket).
pub const TLS_HANDSHAKES: &str = "ringcast_tls_handshakes_total";
/// Counter: certificate reloads that failed (the old certificate stays in use).
pub const TLS_RELOAD_ERRORS: &str = "ringcast_tls_reload_errors_total";
/// Counter: certificate reloads that took effect.
pub const TLS_RELOADS: &str = "ringcast_tls_reloads_total";
/// Counter `{result}`: JWKS fetches (`--jwks-url`), `result` = `ok` or `error` (the
/// keys in use stay).
pub const JWKS_FETCHES: &str = "ringcast_jwks_fetches_total";
/// Gauge: verification keys taken from the last good JWKS fetch.
pub const JWKS_KEYS: &str = "ringcast_jwks_keys";
/// Counter `{result}`: occupancy events (`--webhook-url`): `queued`, `sent`, `dropped`
/// (the queue was full), `failed` (every retry of their batch failed).
pub const WEBHOOK_EVENTS: &str = "ringcast_webhook_events_total";
/// Counter `{result}`: webhook POSTs, `ok` (2xx) or `error` (another status, a network
/// error or no answer in time).
pub const WEBHOOK_REQUESTS: &str = "ringcast_webhook_requests_total";
/// Gauge: occupancy events waiting to be sent.
pub const WEBHOOK_QUEUE: &str = "ringcast_webhook_queue";
/// Counter `{result}`: writes of this node's channel counts to Redis, `ok` or `error`
/// (the counts are kept and written with the next one).
pub const OCCUPANCY_FLUSHES: &str = "ringcast_occupancy_flushes_total";
/// Counter: counts found in Redis that were not non-negative integers (treated as 0).
pub const OCCUPANCY_GARBAGE: &str = "ringcast_occupancy_garbage_total";
/// Counter: channel counts of dead nodes this node subtracted from the cluster's.
pub const OCCUPANCY_REAPED: &str = "ringcast_occupancy_reaped_total";
/// Counter `{shard,reason}`: connections closed, by reason.
pub const CONNECTIONS_CLOSED: &str = "ringcast_connections_closed_total";
/// Counter `{shard,reason}`: WebSocket handshakes that failed, by reason.
pub const HANDSHAKE_FAILURES: &str = "ringcast_handshake_failures_total";
/// Counter `{shard}`: pings sent.
pub const PINGS_SENT: &str = "ringcast_pings_sent_total";
/// Counter `{shard}`: pongs received.
pub const PONGS_RECEIVED: &str = "ringcast_pongs_received_total";
/// Counter `{shard}`: connections closed because no pong came back in time.
pub const PING_TIMEOUTS: &str = "ringcast_ping_timeouts_total";
/// Histogram `{shard}`: ping round-trip time in seconds.
pub const PING_RTT_SECONDS: &str = "ringcast_ping_rtt_seconds";
/// Counter: publishes accepted by the admin publish route.
pub const MESSAGES_PUBLISHED: &str = "ringcast_messages_published_total";
/// Counter `{shard}`: messages delivered to client connections.
pub const MESSAGES_DELIVERED: &str = "ringcast_messages_delivered_total";
/// Counter `{shard}`: bytes written to client connections.
pub const BYTES_SENT: &str = "ringcast_bytes_sent_total";
/// Counter `{shard}`: connections closed for being slow consumers.
pub const SLOW_CONSUMER_CLOSES: &str = "ringcast_slow_consumer_closes_total";
/// Counter `{shard}`: messages compressed with permessage-deflate (once per message,
/// however many connections receive it).
pub const MESSAGES_COMPRESSED: &str = "ringcast_messages_compressed_total";
/// Counter `{shard}`: messages dropped from slow consumers' queues (drop-oldest policy).
pub const SLOW_CONSUMER_DROPPED: &str = "ringcast_slow_consumer_dropped_total";
/// Gauge `{shard}`: channels this shard owns that have subscribers somewhere.
pub const CHANNELS: &str = "ringcast_channels";
/// Gauge `{shard}`: subscriptions held by this shard's connections.
pub const SUBSCRIPTIONS: &str = "ringcast_subscriptions";
/// Gauge `{shard}`: messages waiting in the shard's inbound queue.
pub const SHARD_QUEUE_DEPTH: &str = "ringcast_shard_queue_depth";
/// Counter `{shard}`: receive completions that found the buffer ring empty (ENOBUFS).
pub const RECV_ENOBUFS: &str = "ringcast_recv_enobufs_total";
/// Counter `{shard}`: waits that let completions gather before waking (busy stretches).
pub const COALESCED_WAITS: &str = "ringcast_coalesced_waits_total";
/// Counter `{shard}`: failed accepts.
pub const ACCEPT_ERRORS: &str = "ringcast_accept_errors_total";
/// Counter `{shard}`: publishes dropped because the channel had no subscribers.
pub const PUBLISH_DROPPED: &str = "ringcast_publish_dropped_total";
/// Gauge: 1 while the broker (Redis) connection is up, else 0.
pub const BROKER_UP: &str = "ringcast_broker_up";
/// Counter: broker (Redis) reconnects.
pub const BROKER_RECONNECTS: &str = "ringcast_broker_reconnects_total";
/// Counter: pub/sub messages received from the broker (Redis), refused ones included.
pub const BROKER_MESSAGES_RECEIVED: &str = "ringcast_broker_messages_received_total";
/// Gauge: subscriptions (channels, patterns or shard channels) held at the broker; the
/// control channel every node listens to is not counted.
pub const BROKER_SUBSCRIPTIONS: &str = "ringcast_broker_subscriptions";
/// Counter: publishes the broker (Redis) could not take (delivered locally only).
pub const BROKER_PUBLISH_ERRORS: &str = "ringcast_broker_publish_errors_total";
/// Counter `{reason}`: messages from the broker refused (too_large, channel, envelope,
/// malformed) and broker connections lost (disconnect).
pub const BROKER_REJECTED: &str = "ringcast_broker_rejected_total";
/// Histogram: seconds from a node's publish to this node handing the message to its
/// shards, from the timestamp in the broker envelope.
pub const BROKER_LATENCY_SECONDS: &str = "ringcast_broker_latency_seconds";

// --- Admin API (crates/admin) ---
/// Counter `{reason}`: admin requests or connections refused: `unauthorized` (missing or
/// wrong bearer token), `origin` (an Origin not allowed), `host` (a Host not allowed),
/// `over_capacity` (connection cap reached), `timeout` (handshake, headers or body too
/// slow, or a blocked write), `tls_handshake` (a failed TLS handshake, `--admin-tls`) and
/// `bad_disconnect` (a `POST /disconnect` body naming no valid sub or channel).
pub const ADMIN_REFUSED: &str = "ringcast_admin_refused_total";

// --- Bounded queues (bin/ringcast, crates/broker) ---
/// Counter `{queue}`: times a bounded queue was found full (see `QueueName` for the
/// queues and what each does when full).
pub const QUEUE_FULL: &str = "ringcast_queue_full_total";
/// Label naming a bounded queue.
pub const LABEL_QUEUE: &str = "queue";

/// Label carrying the shard index.
pub const LABEL_SHARD: &str = "shard";
/// Label carrying a close or handshake-failure reason.
pub const LABEL_REASON: &str = "reason";

/// Counter: resume requests (`since=`, `Last-Event-ID`), by `transport` and `result`
/// (`full`, `partial`, `none`).
pub const RECOVERIES: &str = "ringcast_recoveries_total";
/// Gauge: messages kept in channel histories (long-poll rings included).
pub const HISTORY_MESSAGES: &str = "ringcast_history_messages";
/// Gauge: bytes channel histories cost, as the `--history-max-bytes` cap counts them.
pub const HISTORY_BYTES: &str = "ringcast_history_bytes";
/// Counter: channel histories evicted by the `--history-max-bytes` cap.
pub const HISTORY_EVICTIONS: &str = "ringcast_history_evictions_total";
/// Label: a connection's transport (`websocket`, `sse`, `poll`).
pub const LABEL_TRANSPORT: &str = "transport";
/// Label: how a recovery turned out.
pub const LABEL_RESULT: &str = "result";

/// Registers help text and units for every ringcast metric with the current recorder.
pub fn describe_all() {
    describe_gauge!(
        CONNECTIONS,
        Unit::Count,
        "Open connections, handshaking ones included."
    );
    describe_counter!(CONNECTIONS_ACCEPTED, Unit::Count, "Connections accepted.");
    describe_counter!(
        TLS_HANDSHAKES,
        Unit::Count,
        "TLS handshakes completed, full or resumed from a session ticket."
    );
    describe_counter!(
        TLS_RELOAD_ERRORS,
        Unit::Count,
        "Certificate reloads that failed; the old certificate stays in use."
    );
    describe_counter!(
        TLS_RELOADS,
        Unit::Count,
        "Certificate reloads that took effect for new connections."
    );
    describe_counter!(
        JWKS_FETCHES,
        Unit::Count,
        "JWKS fetches by result; after an error the keys in use stay."
    );
    describe_gauge!(
        JWKS_KEYS,
        Unit::Count,
        "Verification keys taken from the last good JWKS fetch."
    );
    describe_counter!(
        WEBHOOK_EVENTS,
        Unit::Count,
        "Occupancy events by result: queued, sent, dropped (queue full), failed (retries spent)."
    );
    describe_counter!(
        WEBHOOK_REQUESTS,
        Unit::Count,
        "Webhook POSTs by result: ok (2xx) or error."
    );
    describe_gauge!(
        WEBHOOK_QUEUE,
        Unit::Count,
        "Occupancy events waiting to be sent."
    );
    describe_counter!(
        OCCUPANCY_FLUSHES,
        Unit::Count,
        "Writes of this node's channel counts to Redis, by result."
    );
    describe_counter!(
        OCCUPANCY_GARBAGE,
        Unit::Count,
        "Occupancy counts in Redis that were not non-negative integers (treated as 0)."
    );
    describe_counter!(
        OCCUPANCY_REAPED,
        Unit::Count,
        "Channel counts of dead nodes this node subtracted from the cluster's."
    );
    describe_counter!(
        CONNECTIONS_CLOSED,
        Unit::Count,
        "Connections closed, by reason."
    );
    describe_counter!(
        HANDSHAKE_FAILURES,
        Unit::Count,
        "WebSocket handshakes that failed, by reason."
    );
    describe_counter!(PINGS_SENT, Unit::Count, "Pings sent to clients.");
    describe_counter!(PONGS_RECEIVED, Unit::Count, "Pongs received from clients.");
    describe_counter!(
        PING_TIMEOUTS,
        Unit::Count,
        "Connections closed because no pong arrived in time."
    );
    describe_histogram!(PING_RTT_SECONDS, Unit::Seconds, "Ping round-trip time.");
    describe_counter!(
        MESSAGES_PUBLISHED,
        Unit::Count,
        "Publishes accepted by the admin publish route."
    );
    describe_counter!(
        MESSAGES_DELIVERED,
        Unit::Count,
        "Messages delivered to client connections."
    );
    describe_counter!(
        BYTES_SENT,
        Unit::Bytes,
        "Bytes written to client connections."
    );
    describe_counter!(
        SLOW_CONSUMER_CLOSES,
        Unit::Count,
        "Connections closed for being slow consumers."
    );
    describe_counter!(
        MESSAGES_COMPRESSED,
        Unit::Count,
        "Messages compressed with permessage-deflate, once per message however many receive it."
    );
    describe_counter!(
        SLOW_CONSUMER_DROPPED,
        Unit::Count,
        "Messages dropped from slow consumers' queues (drop-oldest policy)."
    );
    describe_gauge!(
        CHANNELS,
        Unit::Count,
        "Channels owned by this shard that have subscribers somewhere."
    );
    describe_gauge!(
        SUBSCRIPTIONS,
        Unit::Count,
        "Subscriptions held by this shard's connections."
    );
    describe_counter!(
        RECOVERIES,
        Unit::Count,
        "Resume requests, by transport and result (full: everything missed was delivered; partial: same epoch but some of it is no longer kept; none: unknown epoch or position)."
    );
    describe_gauge!(
        HISTORY_MESSAGES,
        Unit::Count,
        "Messages kept in channel histories (long-poll rings included)."
    );
    describe_gauge!(
        HISTORY_BYTES,
        Unit::Bytes,
        "Bytes channel histories cost, as the --history-max-bytes cap counts them."
    );
    describe_counter!(
        HISTORY_EVICTIONS,
        Unit::Count,
        "Channel histories evicted by the --history-max-bytes cap."
    );
    describe_gauge!(
        SHARD_QUEUE_DEPTH,
        Unit::Count,
        "Messages waiting in the shard's inbound queue."
    );
    describe_counter!(
        RECV_ENOBUFS,
        Unit::Count,
        "Receives that found the provided-buffer ring empty (ENOBUFS)."
    );
    describe_counter!(
        COALESCED_WAITS,
        Unit::Count,
        "Waits that let completions gather for up to --coalesce-us before waking."
    );
    describe_counter!(ACCEPT_ERRORS, Unit::Count, "Failed accepts.");
    describe_counter!(
        PUBLISH_DROPPED,
        Unit::Count,
        "Publishes dropped because the channel had no subscribers."
    );
    describe_gauge!(
        BROKER_UP,
        Unit::Count,
        "1 while the broker connection is up, else 0."
    );
    describe_counter!(BROKER_RECONNECTS, Unit::Count, "Broker reconnects.");
    describe_counter!(
        BROKER_MESSAGES_RECEIVED,
        Unit::Count,
        "Pub/sub messages received from the broker, refused ones included."
    );
    describe_gauge!(
        BROKER_SUBSCRIPTIONS,
        Unit::Count,
        "Subscriptions (channels, patterns or shard channels) held at the broker, the control channel not counted."
    );
    describe_counter!(
        BROKER_PUBLISH_ERRORS,
        Unit::Count,
        "Publishes the broker could not take; they reached this node's subscribers only."
    );
    describe_counter!(
        BROKER_REJECTED,
        Unit::Count,
        "Messages from the broker refused (too_large, channel, envelope, malformed) and broker connections lost (disconnect)."
    );
    describe_histogram!(
        BROKER_LATENCY_SECONDS,
        Unit::Seconds,
        "Seconds from a node's publish to this node handing the message to its shards."
    );
    describe_counter!(
        QUEUE_FULL,
        Unit::Count,
        "Times a bounded queue was full, by queue (shard_publish: a publish answered 503 or a Redis message held; shard_mesh: a shard-to-shard message kept in its sender; broker_commands: a subscription change kept in its shard; redis_pushes: the Redis socket not read)."
    );
    describe_counter!(
        ADMIN_REFUSED,
        Unit::Count,
        "Admin requests or connections refused, by reason (unauthorized, origin, host, over_capacity, timeout, tls_handshake, bad_disconnect)."
    );
}

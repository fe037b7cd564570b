//! Opens the broker's connection: a TCP socket we own, read through the size filter
//! ([`LimitedStream`]: an over-limit blob is skipped while it streams in, never buffered;
//! the socket is not read while the push backlog is full), handed to the redis crate as a RESP3
//! multiplexed connection whose driver runs on the current tokio runtime. AUTH and SELECT
//! from the URL are sent by the redis crate on connect.

use super::push_gate::{PushSender, ReadGate};
use super::resp_limit::LimitedStream;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, ErrorKind, RedisResult};
use std::time::Duration;

/// Bytes a blob may exceed the payload limit by: the envelope header plus slack for a
/// foreign publisher's framing; the inbound check applies the exact limit.
const BLOB_SLACK: usize = 1024;

/// Connects to `info`, dropping incoming blobs longer than `max_blob` bytes, with
/// `timeout` for the connect (handshake included) and for every reply.
pub(crate) async fn connect(
    info: &ConnectionInfo,
    max_payload: usize,
    timeout: Duration,
    pushes: PushSender,
    gate: ReadGate,
) -> RedisResult<MultiplexedConnection> {
    let ConnectionAddr::Tcp(host, port) = info.addr() else {
        return Err((
            ErrorKind::InvalidClientConfig,
            "only redis:// (TCP) is supported",
        )
            .into());
    };
    let config = AsyncConnectionConfig::new()
        .set_response_timeout(Some(timeout))
        .set_push_sender(pushes);
    let limit = max_payload
        .saturating_add(super::envelope::POSITIONED_HEADER_LEN)
        .saturating_add(BLOB_SLACK);
    let opened = tokio::time::timeout(timeout, async {
        let stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
        stream.set_nodelay(true)?;
        let stream = LimitedStream::new(stream, limit).gated(gate);
        MultiplexedConnection::new_with_config(info.redis_settings(), stream, config).await
    })
    .await;
    let (connection, driver) = opened
        .map_err(|_| redis::RedisError::from((ErrorKind::Io, "connecting to Redis timed out")))??;
    tokio::spawn(driver);
    Ok(connection)
}

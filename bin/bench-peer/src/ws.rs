//! WebSocket side: accept loop per listener and one task per connection, either a channel
//! subscriber (forwards the channel's broadcast, batching what is already queued into one
//! flush), a send-floor subscriber (`--floor`) or an echo connection. tungstenite answers
//! pings and close frames itself.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::floor::FloorTable;
use crate::registry::Registry;

/// Per-connection buffer sizes (tungstenite's 128 KiB default read buffer is absurd here).
const BUFFER_BYTES: usize = 4096;

/// Accepts connections forever, one task each.
pub async fn accept_loop(listener: TcpListener, registry: Arc<Registry>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream, Arc::clone(&registry)));
            }
            Err(_) => tokio::task::yield_now().await,
        }
    }
}

/// `true` for 1-255 bytes of `[A-Za-z0-9_.:-]`.
fn valid_channel(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

async fn serve_connection(stream: TcpStream, registry: Arc<Registry>) {
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .read_buffer_size(BUFFER_BYTES)
        .write_buffer_size(BUFFER_BYTES);
    let mut path = String::new();
    #[expect(
        clippy::result_large_err,
        reason = "tungstenite's Callback trait fixes the error type"
    )]
    let check_path = |request: &Request, response: Response| {
        let requested = request.uri().path().trim_start_matches('/');
        if requested == "echo" || valid_channel(requested) {
            path = requested.to_owned();
            Ok(response)
        } else {
            let mut error = ErrorResponse::new(Some("unknown path".to_owned()));
            *error.status_mut() = StatusCode::NOT_FOUND;
            Err(error)
        }
    };
    let Ok(ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, check_path, Some(config)).await
    else {
        return;
    };
    registry.connections.fetch_add(1, Ordering::Relaxed);
    if path == "echo" {
        echo(ws).await;
    } else if let Some(floor) = &registry.floor {
        floor_subscriber(ws, floor, &path).await;
    } else {
        subscriber(ws, &registry, &path).await;
        registry.release(&path);
    }
    registry.connections.fetch_sub(1, Ordering::Relaxed);
}

async fn echo(mut ws: WebSocketStream<TcpStream>) {
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            return;
        }
    }
}

/// A subscriber in `--floor` mode: listed for the publish loop, read only to see it close.
async fn floor_subscriber(mut ws: WebSocketStream<TcpStream>, floor: &FloorTable, channel: &str) {
    // Declared after `ws`, so dropped first: unlisted before the socket closes, also when
    // the task is cancelled.
    let _listed = floor.add(channel, ws.get_ref().as_raw_fd());
    while let Some(Ok(_)) = ws.next().await {}
}

async fn subscriber(mut ws: WebSocketStream<TcpStream>, registry: &Registry, channel: &str) {
    let mut messages = registry.subscribe(channel);
    loop {
        tokio::select! {
            incoming = ws.next() => match incoming {
                Some(Ok(_)) => {}
                _ => return,
            },
            published = messages.recv() => {
                let message = match published {
                    Ok(message) => message,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                };
                if ws.feed(message).await.is_err() {
                    return;
                }
                loop {
                    match messages.try_recv() {
                        Ok(message) => {
                            if ws.feed(message).await.is_err() {
                                return;
                            }
                        }
                        Err(TryRecvError::Lagged(_)) => {}
                        Err(_) => break,
                    }
                }
                if ws.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::valid_channel;

    #[test]
    fn channel_names() {
        assert!(valid_channel("news"));
        assert!(valid_channel("a.b:c-d_9"));
        assert!(valid_channel(&"x".repeat(255)));
        assert!(!valid_channel(""));
        assert!(!valid_channel(&"x".repeat(256)));
        assert!(!valid_channel("a/b"));
        assert!(!valid_channel("é"));
    }
}

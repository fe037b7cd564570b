//! The admin listener's accept loop and connections: at most `max_connections` at once
//! (one more is answered 503 and closed at once), request headers within the header
//! timeout (also the keep-alive idle limit), request bodies and response writes never
//! stalled past the idle timeout, a spare descriptor for accepting at the fd limit, and a graceful shutdown
//! that lets in-flight requests finish.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower_service::Service;

use crate::refusal::Refusal;
use crate::spare_descriptor::{SpareDescriptor, out_of_descriptors};
use crate::stalled_body::StallGuardedBody;
use crate::write_stall::WriteStallGuard;

/// What one response to a connection over the cap says before it is closed.
const OVER_CAPACITY_RESPONSE: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// Pause after an accept error that may repeat at once (out of descriptors with the
/// spare already lent out, out of memory), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Longest wait for the connection that made accept fail with EMFILE, once the spare is
/// closed (it is already in the backlog, so this is a guard, not a wait).
const RESCUE_ACCEPT_WAIT: Duration = Duration::from_millis(100);

/// Largest usable `max_connections` (more is taken as this).
const MAX_CONNECTIONS_CEILING: usize = 1 << 20;

/// The admin listener's limits.
#[derive(Debug, Clone, Copy)]
pub struct AdminLimits {
    /// Time for a request's line and headers to arrive, from the accept or from the end
    /// of the previous response (so also how long a kept-alive connection may sit idle).
    pub header_timeout: Duration,
    /// Longest a request body may go without a byte arriving, and a response write may
    /// stay blocked on a client that does not read.
    pub idle_timeout: Duration,
    /// Most connections open at once (at least 1).
    pub max_connections: usize,
}

impl Default for AdminLimits {
    fn default() -> Self {
        AdminLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_connections: 256,
        }
    }
}

/// Serves `router` on an already-bound listener within `limits` until `shutdown`
/// resolves, then lets in-flight requests finish (idle connections close at once).
pub async fn serve_admin(
    listener: TcpListener,
    router: Router,
    limits: AdminLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    Refusal::register_all();
    crate::publish::register_published();
    let max = limits.max_connections.clamp(1, MAX_CONNECTIONS_CEILING) as u32;
    let slots = Arc::new(Semaphore::new(max as usize));
    let spare = Arc::new(SpareDescriptor::open());
    let (closing_tx, closing) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) if out_of_descriptors(&err) => match rescue(&listener, &spare).await {
                Some(stream) => stream,
                None => {
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            Err(err) => {
                // Aborted handshakes are one-offs; anything else (ENOBUFS, ENOMEM) may
                // repeat at once, so pause either way rather than spin.
                tracing::debug!(error = %err, "admin accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            Refusal::OverCapacity.count();
            let _ = stream.try_write(OVER_CAPACITY_RESPONSE);
            drop(stream);
            spare.refill();
            continue;
        };
        let connection = AdminConnection {
            router: router.clone(),
            limits,
            spare: spare.clone(),
            _slot: slot,
        };
        tokio::spawn(connection.serve(stream, closing.clone()));
    }
    let _ = closing_tx.send(true);
    // Every connection holds a slot until it ends: all slots back = all connections done.
    let _ = slots.acquire_many(max).await;
    Ok(())
}

/// Out of descriptors: closes the spare and accepts the waiting connection in its place.
/// `None` when there was no spare (still lent out) or no connection came.
async fn rescue(listener: &TcpListener, spare: &SpareDescriptor) -> Option<TcpStream> {
    spare.refill();
    if !spare.release() {
        return None;
    }
    match tokio::time::timeout(RESCUE_ACCEPT_WAIT, listener.accept()).await {
        Ok(Ok((stream, _))) => Some(stream),
        _ => {
            spare.refill();
            None
        }
    }
}

/// One accepted connection and what serving it needs.
struct AdminConnection {
    router: Router,
    limits: AdminLimits,
    spare: Arc<SpareDescriptor>,
    /// Its place under the connection cap, given back when it ends.
    _slot: OwnedSemaphorePermit,
}

impl AdminConnection {
    /// Serves requests until the client closes, a timeout fires or the server shuts
    /// down; then closes the socket and reopens the spare descriptor if it was lent.
    async fn serve(self, stream: TcpStream, mut closing: watch::Receiver<bool>) {
        let idle = self.limits.idle_timeout;
        let router = self.router.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let request =
                request.map(|body| Body::new(StallGuardedBody::new(Body::new(body), idle)));
            router.clone().call(request)
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout);
        let result = {
            let connection =
                builder.serve_connection(TokioIo::new(WriteStallGuard::new(stream, idle)), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => result,
                () = shutting_down(&mut closing) => {
                    connection.as_mut().graceful_shutdown();
                    connection.as_mut().await
                }
            }
        };
        // The socket is closed now: take its descriptor back as the spare if it was lent.
        self.spare.refill();
        if let Err(err) = result {
            if err.is_timeout() {
                Refusal::Timeout.count();
            }
            tracing::debug!(error = %err, "admin connection ended");
        }
    }
}

/// Resolves once the server starts shutting down (or the server is gone).
async fn shutting_down(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|closing| *closing).await;
}

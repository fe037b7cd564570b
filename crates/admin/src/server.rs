//! The admin listener's accept loop and connections: at most `max_connections` at once
//! (one more is answered 503 and closed at once), request headers within the header
//! timeout (also the keep-alive idle limit), request bodies and response writes never
//! stalled past the idle timeout, a spare descriptor for accepting at the fd limit, and a graceful shutdown
//! that lets in-flight requests finish.
//!
//! With a TLS configuration (`--admin-tls`) the port speaks HTTPS only: the handshake
//! runs on the connection's task, within the header timeout counted from the accept
//! (the handshake and the first request's headers share it, as on the listen ports); a
//! handshake that fails closes that connection, counted as `tls_handshake`. The
//! configuration's certificate resolver is asked on each handshake, so a reloaded
//! certificate serves the next connection.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
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
/// With `tls` every connection must speak TLS (https://) with that configuration.
pub async fn serve_admin(
    listener: TcpListener,
    router: Router,
    limits: AdminLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let tls = tls.map(TlsAcceptor::from);
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
            // A TLS client could not read an answer in clear: it just sees the close.
            if tls.is_none() {
                let _ = stream.try_write(OVER_CAPACITY_RESPONSE);
            }
            drop(stream);
            spare.refill();
            continue;
        };
        let connection = AdminConnection {
            router: router.clone(),
            limits,
            tls: tls.clone(),
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
    /// The handshake to run first (`--admin-tls`), or none for plain HTTP.
    tls: Option<TlsAcceptor>,
    spare: Arc<SpareDescriptor>,
    /// Its place under the connection cap, given back when it ends.
    _slot: OwnedSemaphorePermit,
}

impl AdminConnection {
    /// Serves requests until the client closes, a timeout fires or the server shuts
    /// down; then closes the socket and reopens the spare descriptor if it was lent.
    async fn serve(self, stream: TcpStream, mut closing: watch::Receiver<bool>) {
        // The first request's headers (and before them the TLS handshake) are due a
        // header timeout after the accept.
        let first_request_by = Instant::now() + self.limits.header_timeout;
        let stream = WriteStallGuard::new(stream, self.limits.idle_timeout);
        match self.tls.clone() {
            None => self.serve_http(stream, None, &mut closing).await,
            Some(acceptor) => {
                let handshake = tokio::select! {
                    done = tokio::time::timeout_at(first_request_by, acceptor.accept(stream)) => {
                        Some(done)
                    }
                    () = shutting_down(&mut closing) => None,
                };
                match handshake {
                    Some(Ok(Ok(stream))) => {
                        self.serve_http(stream, Some(first_request_by), &mut closing)
                            .await;
                    }
                    Some(Ok(Err(err))) => {
                        Refusal::TlsHandshake.count();
                        tracing::debug!(error = %err, "admin TLS handshake failed");
                    }
                    Some(Err(_)) => {
                        Refusal::Timeout.count();
                        tracing::debug!("admin TLS handshake timed out");
                    }
                    None => {}
                }
            }
        }
        // The socket is closed now: take its descriptor back as the spare if it was lent.
        self.spare.refill();
    }

    /// Runs HTTP/1.1 on `io` until it ends; with `first_request_by`, the first request's
    /// headers must have arrived by then (hyper's own header timer starts only now,
    /// after the TLS handshake). `io` is closed when this returns.
    async fn serve_http<I>(
        &self,
        io: I,
        first_request_by: Option<Instant>,
        closing: &mut watch::Receiver<bool>,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let idle = self.limits.idle_timeout;
        let router = self.router.clone();
        let started = Arc::new(AtomicBool::new(false));
        let service = hyper::service::service_fn({
            let started = started.clone();
            move |request: Request<Incoming>| {
                started.store(true, Ordering::Relaxed);
                let request =
                    request.map(|body| Body::new(StallGuardedBody::new(Body::new(body), idle)));
                router.clone().call(request)
            }
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout);
        let connection = builder.serve_connection(TokioIo::new(io), service);
        let mut connection = std::pin::pin!(connection);
        let result = tokio::select! {
            result = connection.as_mut() => result,
            () = shutting_down(closing) => {
                connection.as_mut().graceful_shutdown();
                connection.as_mut().await
            }
            () = no_request_by(first_request_by, &started) => {
                Refusal::Timeout.count();
                tracing::debug!("admin connection sent no request headers in time");
                return;
            }
        };
        if let Err(err) = result {
            if err.is_timeout() {
                Refusal::Timeout.count();
            }
            tracing::debug!(error = %err, "admin connection ended");
        }
    }
}

/// Resolves at `deadline` if no request has `started` by then; otherwise never.
async fn no_request_by(deadline: Option<Instant>, started: &AtomicBool) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline).await;
        if !started.load(Ordering::Relaxed) {
            return;
        }
    }
    std::future::pending().await
}

/// Resolves once the server starts shutting down (or the server is gone).
async fn shutting_down(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|closing| *closing).await;
}

//! The occupancy webhook (`--webhook-url`, `--webhook-secret`): a task on the sidecar
//! that POSTs the channel occupied/vacated events in batches (see `webhook_queue`),
//! signed with HMAC-SHA256, retried with backoff, one request at a time.
//!
//! Body: `{"events":[{"event":"channel_occupied"|"channel_vacated","channel":"news",
//! "time_ms":<unix ms>}, ...]}`. Headers: `X-Ringcast-Timestamp: <unix seconds>` and
//! `X-Ringcast-Signature: sha256=<hex>`, the hex being HMAC-SHA256 with the secret over
//! the bytes `<timestamp>.<body>`; a receiver recomputes it, compares in constant time,
//! and refuses timestamps far from its clock (replays). A retry is signed anew.
//!
//! Nothing here can block a shard: events come from the sidecar's occupancy task
//! through [`WebhookQueue::push`] (a short lock, never waiting on the network); a
//! receiver that hangs costs one request per [`REQUEST_TIMEOUT`]; a full queue drops
//! and counts new events.

use crate::http_client;
use crate::webhook_queue::{ATTEMPTS, Event, EventQueue, QUEUE_CAPACITY, retry_delay_ms};
use anyhow::{Context, bail};
use hyper::Uri;
use ringcast_telemetry::names;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

/// Longest one POST may take (connect, TLS, request, status line).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Shortest accepted `--webhook-secret`, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// `sha256=<hex>`: HMAC-SHA256 with `secret` over `<timestamp>.<body>`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    let tag = context.sign();
    let mut out = String::from("sha256=");
    for byte in tag.as_ref() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// The JSON body of a batch.
pub fn body(events: &[Event]) -> String {
    let events: Vec<serde_json::Value> = events
        .iter()
        .map(|e| {
            serde_json::json!({
                "event": e.kind.label(),
                "channel": e.channel,
                "time_ms": e.at_ms,
            })
        })
        .collect();
    serde_json::json!({ "events": events }).to_string()
}

/// Where events wait for the sender: pushed by the occupancy task, taken by [`run`].
pub struct WebhookQueue {
    queue: Mutex<EventQueue>,
    wake: Notify,
}

impl WebhookQueue {
    fn new() -> Self {
        WebhookQueue {
            queue: Mutex::new(EventQueue::new(QUEUE_CAPACITY)),
            wake: Notify::new(),
        }
    }

    /// Queues `event`, or drops it (counted) when the queue is full.
    pub fn push(&self, event: Event) {
        let queued = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            let queued = queue.push(event, now_ms());
            metrics::gauge!(names::WEBHOOK_QUEUE).set(queue.len() as f64);
            queued
        };
        let result = if queued { "queued" } else { "dropped" };
        metrics::counter!(names::WEBHOOK_EVENTS, "result" => result).increment(1);
        self.wake.notify_one();
    }
}

/// The webhook's settings.
pub struct Webhook {
    url: Uri,
    secret: Vec<u8>,
    tls: Option<Arc<rustls::ClientConfig>>,
    queue: Arc<WebhookQueue>,
}

impl Webhook {
    /// Checks the URL (`http://` or `https://`, the bundled Mozilla roots trusted, no
    /// `user:password@`: it would be sent as the Host header, not as credentials) and
    /// the secret.
    pub fn new(url: &str, secret: &str) -> anyhow::Result<Self> {
        let url: Uri = url.parse().context("--webhook-url")?;
        if url.host().is_none() {
            bail!("--webhook-url names no host");
        }
        if url.authority().is_some_and(|a| a.as_str().contains('@')) {
            bail!(
                "--webhook-url must not carry user:password@ (requests are signed with \
                 --webhook-secret; put any token for your receiver in the path)"
            );
        }
        let tls = match url.scheme_str() {
            Some("https") => Some(Arc::new(http_client::client_config(None)?)),
            Some("http") => None,
            _ => bail!("--webhook-url must start with http:// or https://"),
        };
        if secret.len() < MIN_SECRET_BYTES {
            bail!("--webhook-secret must be at least {MIN_SECRET_BYTES} bytes");
        }
        Ok(Webhook {
            url,
            secret: secret.as_bytes().to_vec(),
            tls,
            queue: Arc::new(WebhookQueue::new()),
        })
    }

    /// Where the occupancy task puts events.
    pub fn queue(&self) -> Arc<WebhookQueue> {
        Arc::clone(&self.queue)
    }

    /// Sends batches forever (until the sidecar's runtime ends).
    pub async fn run(self) {
        for result in ["queued", "sent", "dropped", "failed"] {
            metrics::counter!(names::WEBHOOK_EVENTS, "result" => result).increment(0);
        }
        for result in ["ok", "error"] {
            metrics::counter!(names::WEBHOOK_REQUESTS, "result" => result).increment(0);
        }
        metrics::gauge!(names::WEBHOOK_QUEUE).set(0.0);
        loop {
            let due = self
                .queue
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .due_in(now_ms());
            match due {
                None => {
                    self.queue.wake.notified().await;
                    continue;
                }
                Some(0) => {}
                Some(wait) => {
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    continue;
                }
            }
            let batch = {
                let mut queue = self
                    .queue
                    .queue
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let batch = queue.take_batch();
                metrics::gauge!(names::WEBHOOK_QUEUE).set(queue.len() as f64);
                batch
            };
            self.deliver(&batch).await;
        }
    }

    /// Tries one batch up to [`ATTEMPTS`] times; counts its events sent or failed.
    async fn deliver(&self, batch: &[Event]) {
        let body = body(batch);
        let events = batch.len() as u64;
        for attempt in 1..=ATTEMPTS {
            let outcome = tokio::time::timeout(REQUEST_TIMEOUT, self.post(&body)).await;
            let error = match outcome {
                Ok(Ok(())) => {
                    metrics::counter!(names::WEBHOOK_REQUESTS, "result" => "ok").increment(1);
                    metrics::counter!(names::WEBHOOK_EVENTS, "result" => "sent").increment(events);
                    return;
                }
                Ok(Err(err)) => format!("{err:#}"),
                Err(_) => format!("no answer within {REQUEST_TIMEOUT:?}"),
            };
            metrics::counter!(names::WEBHOOK_REQUESTS, "result" => "error").increment(1);
            if attempt == ATTEMPTS {
                tracing::warn!(url = %self.url, events, "occupancy webhook failed {ATTEMPTS} times, events dropped: {error}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(retry_delay_ms(attempt))).await;
        }
        metrics::counter!(names::WEBHOOK_EVENTS, "result" => "failed").increment(events);
    }

    async fn post(&self, body: &str) -> anyhow::Result<()> {
        let timestamp = now_ms() / 1000;
        let request = http_client::request(hyper::Method::POST, &self.url)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header("x-ringcast-timestamp", timestamp.to_string())
            .header(
                "x-ringcast-signature",
                signature(&self.secret, timestamp, body.as_bytes()),
            )
            .body(body.to_owned())?;
        let response = http_client::send(&self.url, self.tls.as_ref(), request).await?;
        if !response.status().is_success() {
            bail!("answered {}", response.status());
        }
        Ok(())
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook_queue::EventKind;

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // Computed independently: printf '1700000000.{"events":[]}' |
        //   openssl dgst -sha256 -hmac '0123456789abcdef'
        assert_eq!(
            signature(b"0123456789abcdef", 1_700_000_000, br#"{"events":[]}"#),
            "sha256=1f1c43683e76ee83b09613ab56fa5bdd3ce55f3ee41db00a92e22eea0376899e"
        );
    }

    #[test]
    fn the_body_lists_the_events() {
        let events = [Event {
            kind: EventKind::Vacated,
            channel: "news".into(),
            at_ms: 7,
        }];
        let body: serde_json::Value = serde_json::from_str(&body(&events)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"events": [
                {"event": "channel_vacated", "channel": "news", "time_ms": 7}
            ]})
        );
    }

    #[test]
    fn urls_and_secrets_are_checked() {
        let secret = "0123456789abcdef";
        assert!(Webhook::new("http://127.0.0.1:9/hook", secret).is_ok());
        assert!(Webhook::new("https://hooks.example.com/occupancy", secret).is_ok());
        assert!(Webhook::new("ftp://x/hook", secret).is_err());
        assert!(Webhook::new("/relative", secret).is_err());
        assert!(Webhook::new("http://127.0.0.1:9/hook", "short").is_err());
        for userinfo in [
            "http://user:pw@127.0.0.1:9/hook",
            "https://user@hooks.example.com/occupancy",
        ] {
            let err = Webhook::new(userinfo, secret).err().map(|e| e.to_string());
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.contains("user:password@") && !e.contains("pw")),
                "{userinfo}: {err:?}"
            );
        }
    }
}

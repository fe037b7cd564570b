//! The JWKS fetcher (`--jwks-url`), a task on the sidecar: fetches the key set at start,
//! every `--jwks-refresh`, and early when a shard meets a token whose `kid` the set does
//! not hold (at most once per [`EARLY_FETCH_GAP`], so unknown `kid`s sent by an attacker
//! cost the identity provider at most one request per gap). A fetch that fails (network,
//! status, size, not a JWKS, no usable key) is logged and counted, the keys in use stay,
//! and the next try follows after a backoff (1 s doubling, at most the refresh period).
//!
//! One HTTP/1.1 GET over TLS (the bundled Mozilla roots plus `--jwks-ca`; plain TCP only
//! to a loopback address),
//! whole fetch within [`FETCH_TIMEOUT`], body at most [`MAX_JWKS_BYTES`]; redirects are
//! not followed.

use crate::http_client;
use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body::Body;
use hyper::Uri;
use hyper::body::Incoming;
use ringcast_shard::{JwksKeys, KeySet};
use ringcast_telemetry::names;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Shortest time between two fetches asked for by unknown `kid`s.
pub const EARLY_FETCH_GAP: Duration = Duration::from_secs(5);
/// Longest a whole fetch (connect, TLS, request, body) may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1 << 20;
/// First wait after a failed fetch.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// Where the keys come from and how often.
pub struct JwksFetch {
    /// The JWKS URL (`http://` or `https://`).
    pub url: Uri,
    /// Time between fetches.
    pub refresh: Duration,
    /// TLS settings for an `https://` URL.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The keys the shards verify with.
    pub keys: Arc<JwksKeys>,
    /// Woken by a shard that met an unknown `kid`.
    pub wake: Arc<Notify>,
}

impl JwksFetch {
    /// Checks the URL and builds the TLS settings (bundled roots plus `extra_ca`); the
    /// keys start empty and the shards wake the fetcher through the returned keys.
    pub fn new(url: &str, refresh: Duration, extra_ca: Option<&Path>) -> anyhow::Result<Self> {
        let url: Uri = url.parse().context("--jwks-url")?;
        let Some(host) = url.host() else {
            bail!("--jwks-url names no host");
        };
        let tls = match url.scheme_str() {
            Some("https") => Some(Arc::new(
                http_client::client_config(extra_ca).context("--jwks-ca")?,
            )),
            Some("http") if is_loopback(host) => None,
            Some("http") => bail!(
                "--jwks-url over http:// only to a loopback address (a key server on this \
                 host): anyone on the path could swap in their own keys; use https://"
            ),
            _ => bail!("--jwks-url must start with https:// (or http:// to loopback)"),
        };
        let wake = Arc::new(Notify::new());
        let waker = Arc::clone(&wake);
        let keys = Arc::new(JwksKeys::new(move || waker.notify_one()));
        Ok(JwksFetch {
            url,
            refresh,
            tls,
            keys,
            wake,
        })
    }

    /// Fetches forever (until the sidecar's runtime ends).
    pub async fn run(self) {
        metrics::counter!(names::JWKS_FETCHES, "result" => "ok").increment(0);
        metrics::counter!(names::JWKS_FETCHES, "result" => "error").increment(0);
        metrics::gauge!(names::JWKS_KEYS).set(0.0);
        let mut backoff = FIRST_BACKOFF;
        loop {
            let started = Instant::now();
            let wait = match self.fetch_once().await {
                Ok(set) => {
                    metrics::counter!(names::JWKS_FETCHES, "result" => "ok").increment(1);
                    metrics::gauge!(names::JWKS_KEYS).set(set.len() as f64);
                    self.keys.replace(set);
                    backoff = FIRST_BACKOFF;
                    self.refresh
                }
                Err(err) => {
                    metrics::counter!(names::JWKS_FETCHES, "result" => "error").increment(1);
                    tracing::warn!(url = %self.url, "fetching the JWKS failed, keeping the keys in use: {err:#}");
                    let wait = backoff.min(self.refresh);
                    backoff = (backoff * 2).min(self.refresh);
                    wait
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.wake.notified() => {
                    tokio::time::sleep_until(started + EARLY_FETCH_GAP).await;
                }
            }
        }
    }

    async fn fetch_once(&self) -> anyhow::Result<KeySet> {
        let body = tokio::time::timeout(FETCH_TIMEOUT, self.get())
            .await
            .map_err(|_| anyhow!("no answer within {FETCH_TIMEOUT:?}"))??;
        let (set, skipped) = KeySet::from_jwks(&body)?;
        if skipped > 0 {
            tracing::info!(url = %self.url, kept = set.len(), skipped, "JWKS keys skipped (not signature keys, unsupported or beyond the limit)");
        }
        Ok(set)
    }

    async fn get(&self) -> anyhow::Result<Vec<u8>> {
        let request = http_client::request(hyper::Method::GET, &self.url)
            .header(hyper::header::ACCEPT, "application/json")
            .body(String::new())?;
        let response = http_client::send(&self.url, self.tls.as_ref(), request).await?;
        if response.status() != hyper::StatusCode::OK {
            bail!("answered {}", response.status());
        }
        read_body(response.into_body()).await
    }
}

/// The body, refused past [`MAX_JWKS_BYTES`].
async fn read_body(mut body: Incoming) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        if let Ok(data) = frame?.into_data() {
            let data: Bytes = data;
            if out.len() + data.len() > MAX_JWKS_BYTES {
                bail!("the JWKS is larger than {MAX_JWKS_BYTES} bytes");
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// Whether `host` (a URL's host, IPv6 in brackets) is this machine.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::JwksFetch;
    use std::time::Duration;

    #[test]
    fn plain_http_is_only_for_loopback() {
        let refresh = Duration::from_secs(300);
        for ok in [
            "http://127.0.0.1:8080/jwks",
            "http://[::1]/jwks",
            "http://localhost/jwks",
            "https://auth.example.com/.well-known/jwks.json",
        ] {
            assert!(JwksFetch::new(ok, refresh, None).is_ok(), "{ok}");
        }
        for bad in [
            "http://auth.example.com/jwks",
            "http://10.0.0.1/jwks",
            "ftp://x/jwks",
        ] {
            assert!(JwksFetch::new(bad, refresh, None).is_err(), "{bad}");
        }
    }
}

//! TLS for the listen ports (`--tls-cert`, `--tls-key`): the rustls server
//! configuration every shard shares, and the certificate it serves, which can be
//! replaced while the node runs. The configuration's certificate resolver
//! ([`ServedCert`]) hands each new handshake the certificate loaded last; the sidecar
//! calls [`ServedCert::reload`] on SIGHUP and when either file changed (checked every
//! few seconds). A file that does not load, or a key that does not match its
//! certificate, is logged and counted and the old certificate stays in use; connections
//! already open are never touched.
//!
//! Every SNI name (and none) gets this one certificate. TLS 1.3 and 1.2, ALPN
//! `http/1.1`, stateless session tickets whose key rotates every 6 hours (rustls's
//! ticketer; tickets stay valid 12 hours), shared by all shards so a client resumes on
//! any of them. Key exchange prefers X25519, then P-256, then P-384 (rustls's ring
//! provider lists P-384 first, whose generic arithmetic made a handshake cost 1.4 ms
//! of CPU against 0.2 ms; browsers offer X25519 anyway).

use anyhow::{Context, ensure};
use ringcast_telemetry::names;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// The certificate and key files, and what was loaded from them last.
#[derive(Debug)]
pub struct ServedCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Loaded>,
}

/// A certificate in use and what the files it came from looked like.
#[derive(Debug, Clone)]
struct Loaded {
    key: Arc<CertifiedKey>,
    stamps: Stamps,
}

/// What the certificate file and the key file look like.
type Stamps = (Option<Stamp>, Option<Stamp>);

/// Modification time, size and inode: a file rewritten within one timestamp tick (or
/// replaced by a rename) still looks changed.
type Stamp = (SystemTime, u64, u64);

impl ServedCert {
    /// Loads the certificate chain and key, or says why they cannot be served.
    pub fn load(cert_path: &Path, key_path: &Path) -> anyhow::Result<Self> {
        let loaded = load_pair(cert_path, key_path)?;
        Ok(ServedCert {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: RwLock::new(loaded),
        })
    }

    /// The shared server configuration that serves this certificate.
    pub fn server_config(self: &Arc<Self>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.ticketer = rustls::crypto::ring::Ticketer::new().context("TLS ticket keys")?;
        // The shards take the traffic keys over after the handshake and protect the
        // records themselves, so an idle connection keeps only its keys.
        config.enable_secret_extraction = true;
        Ok(Arc::new(config))
    }

    /// Whether either file changed since it was loaded.
    pub fn changed(&self) -> bool {
        let stamps = stamps(&self.cert_path, &self.key_path);
        self.current
            .read()
            .is_ok_and(|current| current.stamps != stamps)
    }

    /// Loads the files again and serves them to new connections; on failure the old
    /// certificate stays. Logged and counted either way.
    pub fn reload(&self) {
        match load_pair(&self.cert_path, &self.key_path) {
            Ok(loaded) => {
                if let Ok(mut current) = self.current.write() {
                    *current = loaded;
                }
                metrics::counter!(names::TLS_RELOADS).increment(1);
                tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
            }
            Err(err) => {
                // Remember the failed files' times so a broken file is reported once,
                // not every few seconds; the next change is tried again.
                if let Ok(mut current) = self.current.write() {
                    current.stamps = stamps(&self.cert_path, &self.key_path);
                }
                metrics::counter!(names::TLS_RELOAD_ERRORS).increment(1);
                tracing::warn!(
                    cert = %self.cert_path.display(),
                    "TLS certificate not reloaded, the previous one stays in use: {err:#}"
                );
            }
        }
    }
}

impl ResolvesServerCert for ServedCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|current| current.key.clone())
    }
}

/// rustls's ring provider with the key exchange groups in the order of their speed.
pub fn provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
    // Deprecated in 0.23.48 for lacking post-quantum key exchange, which only the
    // aws-lc-rs provider (a C build) has; ring is what this project builds with.
    #[allow(deprecated)]
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups = vec![X25519, SECP256R1, SECP384R1];
    provider
}

fn stamps(cert_path: &Path, key_path: &Path) -> Stamps {
    (stamp(cert_path), stamp(key_path))
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

/// Reads a PEM certificate chain (leaf first) and its private key (PKCS#8, PKCS#1 or
/// SEC1), and checks that they belong together.
fn load_pair(cert_path: &Path, key_path: &Path) -> anyhow::Result<Loaded> {
    let stamps = stamps(cert_path, key_path);
    // The PEM parser's own errors quote raw bytes; say what is wrong in words.
    let chain = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|_| {
            anyhow::anyhow!(
                "{}: not a readable PEM certificate chain",
                cert_path.display()
            )
        })?;
    ensure!(
        !chain.is_empty(),
        "{}: no certificate in the file",
        cert_path.display()
    );
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|_| anyhow::anyhow!("{}: not a readable PEM private key", key_path.display()))?;
    let signer = any_supported_type(&key)
        .with_context(|| format!("{}: unsupported private key", key_path.display()))?;
    let key = CertifiedKey::new(chain, signer);
    key.keys_match().with_context(|| {
        format!(
            "{} does not belong to the certificate in {}",
            key_path.display(),
            cert_path.display()
        )
    })?;
    Ok(Loaded {
        key: Arc::new(key),
        stamps,
    })
}

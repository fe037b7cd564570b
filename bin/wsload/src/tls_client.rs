//! `wss://` targets: the rustls client configuration of a run (`--tls-ca FILE` trusts
//! that CA; `--tls-insecure` accepts any certificate, for capacity tests of a gateway
//! with a throwaway one) and the two places a connection's bytes pass through TLS in
//! the client core: received ciphertext becomes plaintext for the handshake and frame
//! code ([`decrypt`]), and plaintext queued for sending becomes ciphertext ([`encrypt`]).
//! Sessions are resumed from rustls's in-memory cache unless `--tls-no-resume`. rustls
//! keeps a few tickets per server name, so with `--tls-insecure` every connection
//! number names its own server (`c<i>.wsload`, the gateway serves its certificate to any
//! name) and can resume its own session each time it reconnects. Key exchange prefers
//! X25519, as browsers do (rustls's ring provider lists P-384 first).

use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, ensure};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConnection, Resumption};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How `wss://` connections check the server.
#[derive(Debug, Clone)]
pub(crate) enum Trust {
    /// Certificates signed by the CAs in this PEM file.
    Ca(std::path::PathBuf),
    /// Any certificate (capacity tests against a throwaway certificate).
    Any,
}

/// The client configuration shared by a worker's connections.
pub(crate) fn client_config(
    trust: &Trust,
    resume: bool,
    connections: usize,
) -> anyhow::Result<Arc<ClientConfig>> {
    use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
    #[allow(deprecated)] // for lacking post-quantum groups, which ring does not have
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups = vec![X25519, SECP256R1, SECP384R1];
    let builder = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .context("TLS versions")?;
    let mut config = match trust {
        Trust::Ca(path) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("reading {}", path.display()))?
            {
                roots
                    .add(cert.with_context(|| format!("a certificate in {}", path.display()))?)
                    .context("a CA certificate rustls refuses")?;
            }
            ensure!(!roots.is_empty(), "{}: no certificate", path.display());
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Any => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = if resume {
        // The cache's size counts tickets, eight per server name (one name per
        // connection number with --tls-insecure).
        Resumption::in_memory_sessions(connections.max(32).saturating_mul(8))
    } else {
        Resumption::disabled()
    };
    Ok(Arc::new(config))
}

/// Whether `path` names a readable PEM file (checked before any connection starts).
pub(crate) fn check_ca(path: &Path) -> anyhow::Result<()> {
    client_config(&Trust::Ca(path.to_owned()), true, 0).map(|_| ())
}

/// A new client session for connection number `index` to a server at `host`: named by
/// its address, or (`own_name`, with `--tls-insecure`) by a name of its own.
pub(crate) fn connect(
    config: &Arc<ClientConfig>,
    host: IpAddr,
    index: usize,
    own_name: bool,
) -> Option<ClientConnection> {
    let name = if own_name {
        ServerName::try_from(format!("c{index}.wsload")).ok()?
    } else {
        ServerName::IpAddress(host.into())
    };
    let mut tls = ClientConnection::new(Arc::clone(config), name).ok()?;
    // Every queued frame must reach the session: rustls would stop taking plaintext at
    // 64 KiB, and `encrypt` hands it all over at once.
    tls.set_buffer_limit(None);
    Some(tls)
}

/// Feeds received ciphertext; appends the plaintext it carried to `plain`. Err when the
/// server broke TLS.
pub(crate) fn decrypt(
    tls: &mut ClientConnection,
    mut data: &[u8],
    plain: &mut Vec<u8>,
) -> Result<(), rustls::Error> {
    while !data.is_empty() {
        match tls.read_tls(&mut data) {
            // After the server's close_notify nothing more is read: drop the rest.
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => return Err(rustls::Error::General("unreadable TLS input".into())),
        }
        tls.process_new_packets()?;
        // A clean close (close_notify) reads as 0: the TCP end follows.
        let _ = tls.reader().read_to_end(plain);
    }
    Ok(())
}

/// Encrypts `plain` (buffered by rustls until the handshake is done) and appends every
/// record ready to go to `out`.
pub(crate) fn encrypt(tls: &mut ClientConnection, plain: &[u8], out: &mut Vec<u8>) {
    if !plain.is_empty() {
        let _ = tls.writer().write_all(plain);
    }
    while tls.wants_write() {
        if tls.write_tls(out).is_err() {
            break;
        }
    }
}

/// Accepts every certificate (`--tls-insecure`).
#[derive(Debug)]
struct AnyCertificate;

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        #[allow(deprecated)]
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

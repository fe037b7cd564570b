//! `wss://` targets: the rustls client configuration of a run (`--tls-ca FILE` trusts
//! that CA; `--tls-insecure` accepts any certificate, for capacity tests of a gateway
//! with a throwaway one) and the two places a connection's bytes pass through TLS in
//! the client core: received ciphertext becomes plaintext for the handshake and frame
//! code ([`decrypt`]), and plaintext queued for sending becomes ciphertext ([`encrypt`]).
//! Sessions are resumed from rustls's in-memory cache unless `--tls-no-resume`.

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
pub(crate) fn client_config(trust: &Trust, resume: bool) -> anyhow::Result<Arc<ClientConfig>> {
    let builder = ClientConfig::builder();
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
    if !resume {
        config.resumption = Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// Whether `path` names a readable PEM file (checked before any connection starts).
pub(crate) fn check_ca(path: &Path) -> anyhow::Result<()> {
    client_config(&Trust::Ca(path.to_owned()), true).map(|_| ())
}

/// A new client session for a server at `host`.
pub(crate) fn connect(config: &Arc<ClientConfig>, host: IpAddr) -> Option<ClientConnection> {
    ClientConnection::new(Arc::clone(config), ServerName::IpAddress(host.into())).ok()
}

/// Feeds received ciphertext; appends the plaintext it carried to `plain`. Err when the
/// server broke TLS.
pub(crate) fn decrypt(
    tls: &mut ClientConnection,
    mut data: &[u8],
    plain: &mut Vec<u8>,
) -> Result<(), rustls::Error> {
    while !data.is_empty() {
        if tls.read_tls(&mut data).is_err() {
            return Err(rustls::Error::General("unreadable TLS input".into()));
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
        rustls::crypto::CryptoProvider::get_default()
            .map(|p| p.signature_verification_algorithms.supported_schemes())
            .unwrap_or_default()
    }
}

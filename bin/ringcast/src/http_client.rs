//! The sidecar's outgoing HTTP/1.1 requests (the JWKS fetch, the occupancy webhook): one
//! request per connection, over TCP or TLS (rustls with the ring provider, the bundled
//! Mozilla roots plus an optional CA file). Callers build the request and bound the whole
//! exchange with their own timeout; dropping the future drops the connection.

use anyhow::Context;
use hyper::Uri;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Connects to `url`'s host (TLS when `tls` is given; port 443 or 80 unless the URL
/// names one) and sends `request` on the new connection.
pub(crate) async fn send(
    url: &Uri,
    tls: Option<&Arc<rustls::ClientConfig>>,
    request: hyper::Request<String>,
) -> anyhow::Result<hyper::Response<Incoming>> {
    let host = url.host().unwrap_or_default();
    let port = url
        .port_u16()
        .unwrap_or(if tls.is_some() { 443 } else { 80 });
    let host = host.trim_matches(['[', ']']);
    let tcp = TcpStream::connect((host, port)).await?;
    match tls {
        None => send_on(tcp, request).await,
        Some(config) => {
            let name = ServerName::try_from(host.to_owned())?;
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                .connect(name, tcp)
                .await?;
            send_on(tls, request).await
        }
    }
}

async fn send_on<S>(
    stream: S,
    request: hyper::Request<String>,
) -> anyhow::Result<hyper::Response<Incoming>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends with the response (or the caller's timeout, which drops the sender).
        let _ = connection.await;
    });
    Ok(sender.send_request(request).await?)
}

/// A request to `url` by `method`, with its Host (the URL's authority) and User-Agent.
pub(crate) fn request(method: hyper::Method, url: &Uri) -> hyper::http::request::Builder {
    let authority = url.authority().map(|a| a.as_str()).unwrap_or_default();
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "ringcast")
}

/// Client TLS settings: the bundled Mozilla roots plus the certificates in `extra_ca`.
pub(crate) fn client_config(extra_ca: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        let in_file = || format!("CA file {}", path.display());
        for cert in CertificateDer::pem_file_iter(path).with_context(in_file)? {
            roots
                .add(cert.with_context(in_file)?)
                .with_context(in_file)?;
        }
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(crate::tls_certs::provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(config)
}

//! The admin port with TLS (`--admin-tls`): a rustls client gets its answers; plain
//! HTTP and bytes that are not TLS are closed without an answer and counted as
//! `tls_handshake`; a client that stalls mid-handshake is dropped at the header timeout
//! (its slot comes back); and the handshake's time counts against the first request's
//! header timeout, as on a plain port the time from the accept does.

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringcast_admin::AdminLimits;
use ringcast_telemetry::build_recorder;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use support::{Server, parse_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A server configuration with a fresh self-signed certificate for `localhost`, and a
/// client configuration that trusts it.
fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let mut server = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .expect("server config");
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut roots = RootCertStore::empty();
    roots.add(der).expect("root");
    let client = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

fn limits(header_ms: u64, max_connections: usize) -> AdminLimits {
    AdminLimits {
        header_timeout: Duration::from_millis(header_ms),
        idle_timeout: Duration::from_secs(5),
        max_connections,
    }
}

/// `GET path` over TLS with `client`: the status and body.
async fn get_tls(addr: SocketAddr, client: &Arc<ClientConfig>, path: &str) -> (u16, String) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(client.clone());
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    let response = parse_response(&raw);
    (response.status, response.text())
}

/// Writes `bytes` (when any), then reads until the server closes: what it sent, and
/// when it closed; `None` when it was still open after `within`.
async fn send_and_wait_close(
    addr: SocketAddr,
    bytes: &[u8],
    within: Duration,
) -> Option<(Vec<u8>, Duration)> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut raw = Vec::new();
    loop {
        let mut buf = [0u8; 4096];
        let left = within.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some((raw, started.elapsed())),
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

/// The value of `ringcast_admin_refused_total{reason}` in a scrape.
fn refused(text: &str, reason: &str) -> Option<u64> {
    let series = format!("ringcast_admin_refused_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .and_then(|value| value.trim().parse().ok())
}

/// A handshake record header promising 512 bytes, and only a few of them.
static PARTIAL_HELLO: [u8; 11] = [
    0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
];

/// Handlers and connection tasks run on this test's single thread, so a thread-local
/// recorder sees their counters.
#[tokio::test]
async fn https_is_answered_and_plain_http_or_garbage_is_closed_and_counted() {
    let recorder = build_recorder().unwrap();
    let handle = recorder.handle();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (server_tls, client) = configs();
    let server = Server::start_tls(handle, limits(5_000, 16), server_tls).await;
    let (status, _) = get_tls(server.addr, &client, "/healthz").await;
    assert_eq!(status, 200);
    let (status, text) = get_tls(server.addr, &client, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(refused(&text, "tls_handshake"), Some(0), "{text}");
    let plain = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    for (what, bytes) in [
        ("plain HTTP", plain.as_bytes()),
        ("garbage", &[0u8; 64][..]),
    ] {
        let (raw, _) = send_and_wait_close(server.addr, bytes, Duration::from_secs(3))
            .await
            .unwrap_or_else(|| panic!("{what}: still open after 3 s"));
        assert!(!raw.starts_with(b"HTTP/"), "{what} got an answer in clear");
    }
    let (status, text) = get_tls(server.addr, &client, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(refused(&text, "tls_handshake"), Some(2), "{text}");
    assert_eq!(refused(&text, "timeout"), Some(0), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn a_client_stalled_mid_handshake_is_dropped_at_the_header_timeout() {
    let recorder = build_recorder().unwrap();
    let handle = recorder.handle();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (server_tls, client) = configs();
    // Two slots: both taken by stalled handshakes until the header timeout frees them.
    let server = Server::start_tls(handle, limits(500, 2), server_tls).await;
    let stalled = [
        tokio::spawn(send_and_wait_close(
            server.addr,
            &PARTIAL_HELLO,
            Duration::from_secs(5),
        )),
        tokio::spawn(send_and_wait_close(
            server.addr,
            &PARTIAL_HELLO,
            Duration::from_secs(5),
        )),
    ];
    for stalled in stalled {
        let (_, after) = stalled
            .await
            .unwrap()
            .expect("a stalled handshake still open after 5 s");
        assert!(
            after >= Duration::from_millis(400) && after < Duration::from_millis(2_000),
            "closed after {after:?}"
        );
    }
    // Their slots are back.
    let (status, text) = get_tls(server.addr, &client, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(refused(&text, "timeout"), Some(2), "{text}");
    assert_eq!(refused(&text, "tls_handshake"), Some(0), "{text}");
    server.stop().await;
}

/// A client that takes most of the header timeout over its handshake and then sends
/// nothing is closed at the header timeout from the accept, not a header timeout after
/// its handshake.
#[tokio::test]
async fn the_handshake_counts_against_the_first_requests_header_timeout() {
    let (server_tls, client) = configs();
    let server = Server::start_tls(
        build_recorder().unwrap().handle(),
        limits(1_000, 16),
        server_tls,
    )
    .await;
    let addr = server.addr;
    let client = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = rustls::ClientConnection::new(client, name).unwrap();
        let mut hello = Vec::new();
        tls.write_tls(&mut hello).unwrap();
        tcp.write_all(&hello[..20]).unwrap();
        std::thread::sleep(Duration::from_millis(700));
        tcp.write_all(&hello[20..]).unwrap();
        while tls.is_handshaking() {
            tls.complete_io(&mut tcp).expect("handshake");
        }
        let handshaken = started.elapsed();
        // Send no request; read (session tickets, then the close) until it is closed.
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(err) => {
                    let timed_out = matches!(
                        err.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    );
                    assert!(!timed_out, "still open after the handshake and 5 s");
                    break;
                }
            }
        }
        (handshaken, started.elapsed())
    });
    let (handshaken, closed) = client.await.unwrap();
    assert!(handshaken >= Duration::from_millis(700), "{handshaken:?}");
    // A header timeout after the handshake would be 1.7 s or more.
    assert!(
        closed >= Duration::from_millis(900) && closed < Duration::from_millis(1_600),
        "closed after {closed:?} (handshake done after {handshaken:?})"
    );
    server.stop().await;
}

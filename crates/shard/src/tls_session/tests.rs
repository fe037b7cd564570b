//! The session against a real rustls client, in memory: the handshake, application data
//! both ways (fed whole, and one byte at a time), and the hostile first bytes; the
//! shard's own record layer with every version and cipher suite, key updates, a
//! tampered record, and rustls's record path when the keys may not be taken over.

use super::*;
use rustls::crypto::ring::cipher_suite;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, ServerConfig, SupportedCipherSuite,
    SupportedProtocolVersion,
};
use std::io::{Read, Write};

struct Pair {
    client: ClientConnection,
    server: TlsSession,
    /// Plaintext the server received.
    got: Vec<u8>,
    /// Plaintext the client received.
    read: Vec<u8>,
}

fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    configs_with(true, None)
}

/// A server that takes the keys over (`take_over`) or leaves them to rustls, and a
/// client limited to `suite` (with its protocol version) when given.
fn configs_with(
    take_over: bool,
    suite: Option<SupportedCipherSuite>,
) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let mut server = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .expect("server config");
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    server.enable_secret_extraction = take_over;
    let mut roots = RootCertStore::empty();
    roots.add(der).expect("root");
    // Deprecated in rustls 0.23.48 for lacking post-quantum key exchange (only the
    // aws-lc-rs provider has it); ring is what this project builds with.
    #[allow(deprecated)]
    let mut provider = rustls::crypto::ring::default_provider();
    let mut versions: Vec<&'static SupportedProtocolVersion> = vec![&rustls::version::TLS13];
    versions.push(&rustls::version::TLS12);
    if let Some(suite) = suite {
        provider.cipher_suites = vec![suite];
        versions = vec![suite.version()];
    }
    let mut client = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    (Arc::new(server), Arc::new(client))
}

impl Pair {
    fn new() -> Pair {
        let (server, client) = configs();
        Pair::with(server, client)
    }

    fn with(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> Pair {
        let name = ServerName::try_from("localhost").expect("name");
        Pair {
            client: ClientConnection::new(client, name).expect("client"),
            server: TlsSession::new(&server).expect("session"),
            got: Vec::new(),
            read: Vec::new(),
        }
    }

    /// Client → server, `chunk` bytes per receive; the server's result per receive.
    fn client_flight(&mut self, chunk: usize) -> Vec<Result<Option<HandshakeKind>, TlsFailure>> {
        let mut wire = Vec::new();
        while self.client.wants_write() {
            self.client.write_tls(&mut wire).expect("client writes");
        }
        wire.chunks_mut(chunk.max(1))
            .map(|part| self.server.receive(part, &mut self.got))
            .collect()
    }

    /// Server → client: everything the server has to send, in one or more sends.
    fn server_flight(&mut self) {
        while self.server.has_unsent() {
            let bytes = self.server.begin_send().to_vec();
            // The kernel takes it in two writes when it can.
            let half = bytes.len() / 2;
            self.server.sent(half);
            self.server.sent(bytes.len() - half);
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                self.client.read_tls(&mut rest).expect("client reads");
                self.client.process_new_packets().expect("client accepts");
                let _ = self.client.reader().read_to_end(&mut self.read);
            }
        }
    }

    fn handshake(&mut self, chunk: usize) {
        let mut opened = false;
        for _ in 0..4 {
            opened |= self
                .client_flight(chunk)
                .into_iter()
                .any(|r| r.expect("server handshake").is_some());
            self.server_flight();
        }
        assert!(opened, "the handshake completed once");
        assert!(self.server.is_open() && !self.client.is_handshaking());
    }

    fn client_reads(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.read)
    }
}

#[test]
fn handshake_and_application_data_both_ways() {
    let mut p = Pair::new();
    p.handshake(1 << 16);
    assert_eq!(p.client.alpn_protocol(), Some(&b"http/1.1"[..]));
    p.client
        .writer()
        .write_all(b"GET /news HTTP/1.1\r\n\r\n")
        .unwrap();
    p.client_flight(1 << 16);
    assert_eq!(p.got, b"GET /news HTTP/1.1\r\n\r\n");
    p.server
        .encrypt(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        .unwrap();
    p.server.encrypt(&[0x81, 0x02, b'h', b'i']).unwrap();
    p.server_flight();
    let read = p.client_reads();
    assert!(read.starts_with(b"HTTP/1.1 101"));
    assert!(read.ends_with(&[0x81, 0x02, b'h', b'i']));
    // Idle: nothing buffered.
    assert!(p.server.rx.capacity() == 0 && p.server.staged.capacity() == 0);
    assert_eq!(p.server.sending.capacity(), 0);
}

#[test]
fn records_split_into_single_bytes_are_reassembled() {
    let mut p = Pair::new();
    p.handshake(1);
    let message = vec![b'x'; 40_000];
    p.client.writer().write_all(&message).unwrap();
    let results = p.client_flight(1);
    assert!(results.iter().all(Result::is_ok));
    assert!(p.got == message, "{} bytes", p.got.len());
    assert!(p.server.rx.is_empty());
}

#[test]
fn a_large_plaintext_becomes_several_records_the_client_reads_whole() {
    let mut p = Pair::new();
    p.handshake(1 << 16);
    let body: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    p.server.encrypt(&body).unwrap();
    p.server_flight();
    let read = p.client_reads();
    assert!(read == body, "{} of {} bytes", read.len(), body.len());
}

#[test]
fn close_notify_is_sent_once_and_ends_encryption() {
    let mut p = Pair::new();
    p.handshake(1 << 16);
    assert!(p.server.close_notify());
    assert!(!p.server.is_open());
    assert!(!p.server.close_notify(), "once");
    p.server.encrypt(b"late").unwrap();
    p.server_flight();
    assert!(p.client_reads().is_empty());
    let mut buf = [0u8; 8];
    assert_eq!(p.client.reader().read(&mut buf).unwrap(), 0, "clean EOF");
}

#[test]
fn plain_http_is_told_in_clear_and_fails() {
    let (server, _) = configs();
    let mut s = TlsSession::new(&server).unwrap();
    let mut plain = Vec::new();
    let mut request = b"GET /news HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    assert_eq!(
        s.receive(&mut request, &mut plain),
        Err(TlsFailure::PlainHttp)
    );
    let answer = s.begin_send().to_vec();
    let text = String::from_utf8(answer).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 400"));
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{head}"
    );
    assert!(plain.is_empty());
}

#[test]
fn garbage_fails_with_an_alert_and_then_stays_failed() {
    let (server, _) = configs();
    let mut s = TlsSession::new(&server).unwrap();
    let mut plain = Vec::new();
    let mut garbage = vec![0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5];
    assert!(s.receive(&mut garbage, &mut plain).is_err());
    assert_eq!(
        s.receive(&mut [0x16, 0x03, 0x01], &mut plain),
        Ok(None),
        "nothing more is processed (and the shard is not told again)"
    );
    let mut s = TlsSession::new(&server).unwrap();
    let mut not_tls = vec![0xff; 64];
    assert_eq!(s.receive(&mut not_tls, &mut plain), Err(TlsFailure::NotTls));
}

#[test]
fn an_endless_handshake_message_is_cut_off_with_a_bounded_buffer() {
    let (server, _) = configs();
    let mut s = TlsSession::new(&server).unwrap();
    let mut plain = Vec::new();
    // A ClientHello header announcing 16 MiB, then handshake records that never end it.
    let mut first = vec![0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0xff, 0xff, 0xff];
    let mut result = s.receive(&mut first, &mut plain);
    let mut fed = first.len();
    while result.is_ok() && fed < 1 << 20 {
        let mut record = vec![0x16, 0x03, 0x01, 0x40, 0x00];
        record.extend(std::iter::repeat_n(0u8, 0x4000));
        fed += record.len();
        result = s.receive(&mut record, &mut plain);
        assert!(s.rx.len() <= MAX_PENDING_CIPHERTEXT + 0x4005);
    }
    assert!(result.is_err(), "refused after {fed} bytes");
    assert!(fed < 200_000, "refused early: {fed} bytes");
}

#[test]
fn idle_session_state_is_small() {
    let size = std::mem::size_of::<TlsSession>();
    assert!(size <= 256, "TlsSession is {size} bytes");
}

/// Data both ways (small, large, byte by byte), then the client's close_notify and the
/// server's: the session `p` after a handshake.
fn exchange_and_close(p: &mut Pair, what: &str) {
    p.client
        .writer()
        .write_all(b"GET /news HTTP/1.1\r\n\r\n")
        .unwrap();
    p.client_flight(1 << 16);
    assert_eq!(p.got, b"GET /news HTTP/1.1\r\n\r\n", "{what}");
    let upload = vec![b'u'; 40_000];
    p.client.writer().write_all(&upload).unwrap();
    p.got.clear();
    assert!(p.client_flight(1).iter().all(Result::is_ok), "{what}");
    assert!(p.got == upload, "{what}: {} bytes", p.got.len());
    let body: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    p.server.encrypt(b"hi").unwrap();
    p.server.encrypt(&body).unwrap();
    p.server_flight();
    let read = p.client_reads();
    assert!(
        read.len() == body.len() + 2 && read[2..] == body[..],
        "{what}"
    );
    p.client.send_close_notify();
    p.client_flight(1 << 16);
    assert!(p.server.peer_closed, "{what}");
    assert!(p.server.close_notify(), "{what}");
    p.server_flight();
    let mut buf = [0u8; 8];
    assert_eq!(
        p.client.reader().read(&mut buf).unwrap(),
        0,
        "{what}: clean EOF"
    );
}

#[test]
fn the_shards_record_layer_speaks_every_version_and_cipher() {
    for suite in [
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS13_AES_256_GCM_SHA384,
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ] {
        let what = format!("{:?}", suite.suite());
        let (server, client) = configs_with(true, Some(suite));
        let mut p = Pair::with(server, client);
        p.handshake(1 << 16);
        assert!(matches!(p.server.engine, Engine::Records(_)), "{what}");
        assert_eq!(p.client.negotiated_cipher_suite(), Some(suite));
        exchange_and_close(&mut p, &what);
    }
}

#[test]
fn rustls_keeps_the_records_when_the_keys_may_not_be_taken_over() {
    let (server, client) = configs_with(false, None);
    let mut p = Pair::with(server, client);
    p.handshake(1 << 16);
    assert!(matches!(p.server.engine, Engine::Rustls(_)));
    exchange_and_close(&mut p, "rustls records");
}

#[test]
fn key_updates_from_the_client_are_followed_both_ways() {
    let mut p = Pair::new();
    p.handshake(1 << 16);
    for round in 0..3 {
        p.client.refresh_traffic_keys().unwrap();
        let message = format!("after update {round}");
        p.client.writer().write_all(message.as_bytes()).unwrap();
        p.got.clear();
        assert!(p.client_flight(7).iter().all(Result::is_ok));
        assert_eq!(p.got, message.as_bytes());
        p.server.encrypt(message.as_bytes()).unwrap();
        p.server_flight();
        assert_eq!(p.client_reads(), message.as_bytes());
    }
}

#[test]
fn a_tampered_record_fails_the_session() {
    for suite in [
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ] {
        let (server, client) = configs_with(true, Some(suite));
        let mut p = Pair::with(server, client);
        p.handshake(1 << 16);
        p.client.writer().write_all(b"hello").unwrap();
        let mut wire = Vec::new();
        while p.client.wants_write() {
            p.client.write_tls(&mut wire).unwrap();
        }
        let last = wire.len() - 1;
        wire[last] ^= 1;
        assert_eq!(
            p.server.receive(&mut wire, &mut p.got),
            Err(TlsFailure::Error)
        );
        assert!(p.got.is_empty());
    }
}

#[test]
fn records_after_the_handshake_that_are_not_data_fail_the_session() {
    let mut p = Pair::new();
    p.handshake(1 << 16);
    // A ChangeCipherSpec record, a plaintext handshake record, an oversized record.
    for bad in [
        vec![0x14, 3, 3, 0, 1, 1],
        vec![0x16, 3, 3, 0, 4, 1, 0, 0, 0],
        vec![0x17, 3, 3, 0xff, 0xff],
    ] {
        let mut q = Pair::new();
        q.handshake(1 << 16);
        let mut bytes = bad.clone();
        assert!(q.server.receive(&mut bytes, &mut q.got).is_err(), "{bad:?}");
    }
    assert!(p.server.is_open());
}

#[test]
fn a_key_update_right_behind_the_clients_finished_is_answered() {
    let mut p = Pair::new();
    p.client_flight(1 << 16);
    p.server_flight();
    // The client's Finished, a KeyUpdate asking for ours, and data: one flight, one
    // receive; the handover happens in the middle of it.
    p.client.refresh_traffic_keys().unwrap();
    p.client.writer().write_all(b"after the update").unwrap();
    let results = p.client_flight(1 << 16);
    assert_eq!(results, [Ok(Some(HandshakeKind::Full))]);
    assert!(matches!(p.server.engine, Engine::Records(_)));
    assert_eq!(p.got, b"after the update");
    p.server.encrypt(b"hello").unwrap();
    p.server_flight();
    assert_eq!(p.client_reads(), b"hello");
}

#[test]
fn a_flood_of_key_updates_without_data_fails_the_session() {
    let mut p = Pair::new();
    p.handshake(1 << 16);
    let mut wire = Vec::new();
    for _ in 0..40 {
        p.client.refresh_traffic_keys().unwrap();
        while p.client.wants_write() {
            p.client.write_tls(&mut wire).unwrap();
        }
    }
    assert_eq!(
        p.server.receive(&mut wire, &mut p.got),
        Err(TlsFailure::Error)
    );
}

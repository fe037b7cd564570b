//! TLS connections (`ShardConfig::tls`) against a real rustls client over the node
//! harness: the handshake and a subscription in one flow, published frames arriving
//! encrypted, close_notify before our FIN, and the hostile openings (plain HTTP, bytes
//! that are not TLS, a client that stalls mid-handshake, a refusal before TLS).

use super::node::{Node, decode_frames};
use ringcast_proto::{OpCode, client_request, encode_frame, generate_key};
use ringcast_shard::{Action, ConnId};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig};
use std::io::{Read, Write};
use std::sync::Arc;

fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let mut server = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .expect("server config");
    // As the gateway configures it: the shard takes the keys over after the handshake.
    server.enable_secret_extraction = true;
    let mut roots = RootCertStore::empty();
    roots.add(der).expect("root");
    let client = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// A TLS node of one shard and a client config that trusts it.
fn tls_node(tweak: impl Fn(&mut ringcast_shard::ShardConfig)) -> (Node, Arc<ClientConfig>) {
    let (server, client) = configs();
    let node = Node::new(1, |cfg| {
        cfg.tls = Some(Arc::clone(&server));
        tweak(cfg);
    });
    (node, client)
}

/// One client connection speaking TLS to the node.
struct Client {
    tls: ClientConnection,
    id: ConnId,
    /// Decrypted bytes from the server.
    read: Vec<u8>,
}

impl Client {
    fn connect(node: &mut Node, config: &Arc<ClientConfig>) -> Client {
        let name = ServerName::try_from("localhost").expect("name");
        let mut client = Client {
            tls: ClientConnection::new(Arc::clone(config), name).expect("client"),
            id: node.accept(0),
            read: Vec::new(),
        };
        for _ in 0..4 {
            client.exchange(node);
        }
        assert!(!client.tls.is_handshaking(), "handshake done");
        client
    }

    /// Sends what the client has to send, reads what the server sent.
    fn exchange(&mut self, node: &mut Node) {
        let mut out = Vec::new();
        while self.tls.wants_write() {
            self.tls.write_tls(&mut out).expect("client writes");
        }
        if !out.is_empty() {
            node.send_bytes(0, self.id, &out);
        }
        let wire = node.take_wire(0, self.id);
        let mut rest = &wire[..];
        while !rest.is_empty() {
            self.tls.read_tls(&mut rest).expect("client reads");
            self.tls.process_new_packets().expect("client accepts");
            let _ = self.tls.reader().read_to_end(&mut self.read);
        }
    }

    fn send_plain(&mut self, node: &mut Node, bytes: &[u8]) {
        self.tls
            .writer()
            .write_all(bytes)
            .expect("client plaintext");
        self.exchange(node);
    }

    /// Upgrades to a WebSocket on `path`; what followed the 101 stays in `read`.
    fn upgrade(&mut self, node: &mut Node, path: &str) {
        let key = generate_key(7);
        self.send_plain(node, &client_request("localhost", path, &key));
        let end = self
            .read
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a response head");
        assert!(self.read.starts_with(b"HTTP/1.1 101"));
        self.read.drain(..end + 4);
    }

    fn messages(&mut self) -> Vec<(OpCode, Vec<u8>)> {
        decode_frames(std::mem::take(&mut self.read))
    }
}

#[test]
fn a_tls_subscriber_gets_published_frames_encrypted() {
    let (mut node, client) = tls_node(|_| {});
    let mut c = Client::connect(&mut node, &client);
    assert_eq!(node.shards[0].counters().tls_handshakes, 1);
    c.upgrade(&mut node, "/news");
    for i in 0..100 {
        node.publish("news", &format!("m{i}"));
    }
    c.exchange(&mut node);
    let texts: Vec<Vec<u8>> = c.messages().into_iter().map(|(_, p)| p).collect();
    assert_eq!(texts.len(), 100);
    assert_eq!(texts[99], b"m99");
    // Echo of a ping, through TLS both ways.
    let mut ping = Vec::new();
    encode_frame(&mut ping, OpCode::Ping, b"hi", Some([1, 2, 3, 4]));
    c.send_plain(&mut node, &ping);
    assert_eq!(c.messages(), vec![(OpCode::Pong, b"hi".to_vec())]);
}

#[test]
fn a_close_ends_with_close_notify_before_our_fin() {
    let (mut node, client) = tls_node(|_| {});
    let mut c = Client::connect(&mut node, &client);
    c.upgrade(&mut node, "/news");
    let mut close = Vec::new();
    encode_frame(
        &mut close,
        OpCode::Close,
        &1000u16.to_be_bytes(),
        Some([1, 2, 3, 4]),
    );
    c.send_plain(&mut node, &close);
    let msgs = c.messages();
    assert_eq!(msgs[0].0, OpCode::Close);
    let mut buf = [0u8; 1];
    assert_eq!(
        c.tls.reader().read(&mut buf).unwrap(),
        0,
        "close_notify arrived"
    );
    assert!(node.has_action(0, |a| matches!(a, Action::ShutdownWrite(_))));
    // A bad record while we wait for the client's FIN is ignored: rustls must not see
    // input after the alert it sent (a debug assertion in rustls, a shard panic).
    let mut junk = vec![0x17, 0x03, 0x03, 0x00, 0x20];
    junk.extend([0xAB; 32]);
    node.send_bytes(0, c.id, &junk);
    assert!(node.take_wire(0, c.id).is_empty(), "nothing after our FIN");
}

#[test]
fn plain_http_to_a_tls_port_is_told_in_clear_and_counted() {
    let (mut node, _) = tls_node(|_| {});
    let id = node.accept(0);
    node.send_bytes(0, id, b"GET /news HTTP/1.1\r\nHost: x\r\n\r\n");
    let wire = String::from_utf8(node.take_wire(0, id)).expect("clear text");
    assert!(wire.starts_with("HTTP/1.1 400"), "{wire}");
    assert!(wire.contains("wss://"));
    let counters = node.shards[0].counters();
    assert_eq!(counters.handshake_failed_count("tls_plain_http"), 1);
    assert!(node.has_action(0, |a| matches!(a, Action::ShutdownWrite(_))));
}

#[test]
fn bytes_that_are_not_tls_close_only_that_connection() {
    let (mut node, client) = tls_node(|_| {});
    let mut good = Client::connect(&mut node, &client);
    good.upgrade(&mut node, "/news");
    let bad = node.accept(0);
    node.send_bytes(0, bad, &[0xff; 300]);
    assert!(node.take_wire(0, bad).is_empty());
    assert_eq!(
        node.shards[0]
            .counters()
            .handshake_failed_count("tls_not_tls"),
        1
    );
    // A ClientHello whose record says 16 KiB + 1 of garbage follows.
    let huge = node.accept(0);
    let mut record = vec![0x16, 0x03, 0x01, 0x48, 0x06];
    record.extend(std::iter::repeat_n(0u8, 0x4806));
    node.send_bytes(0, huge, &record);
    let counters = node.shards[0].counters();
    assert_eq!(
        counters.handshake_failed_count("tls_not_tls")
            + counters.handshake_failed_count("tls_oversized"),
        2
    );
    node.publish("news", "still here");
    good.exchange(&mut node);
    assert_eq!(good.messages().len(), 1);
}

#[test]
fn a_client_stalled_mid_handshake_is_dropped_at_the_handshake_timeout() {
    let (mut node, client) = tls_node(|cfg| cfg.handshake_timeout_ms = 1_000);
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = ClientConnection::new(client, name).expect("client");
    let id = node.accept(0);
    let mut hello = Vec::new();
    tls.write_tls(&mut hello).expect("hello");
    node.send_bytes(0, id, &hello[..hello.len() / 2]);
    node.advance(1_100);
    assert_eq!(
        node.shards[0].counters().closed_count("handshake_timeout"),
        1
    );
    assert!(node.has_action(0, |a| matches!(a, Action::Close(_))));
}

#[test]
fn a_refusal_before_tls_drops_the_socket_unanswered() {
    let (mut node, _) = tls_node(|cfg| cfg.max_connections = 0);
    let id = node.accept(0);
    assert!(node.take_wire(0, id).is_empty(), "no HTTP in clear");
    assert_eq!(
        node.shards[0]
            .counters()
            .handshake_failed_count("server_full"),
        1
    );
    assert!(node.has_action(0, |a| matches!(a, Action::Close(_))));
}

//! Server and client handshake tests over byte strings.

use ringcast_proto::{
    ClientHandshakeStatus, HandshakeError, HandshakeStatus, MAX_HANDSHAKE_BYTES, Route,
    client_request, generate_key, http_error_response, parse_response, parse_upgrade,
};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn request(path: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

fn done(buf: &[u8]) -> ringcast_proto::Upgrade {
    match parse_upgrade(buf) {
        Ok(HandshakeStatus::Done(upgrade)) => upgrade,
        other => panic!("expected Done, got {other:?}"),
    }
}

fn error(buf: &[u8]) -> HandshakeError {
    match parse_upgrade(buf) {
        Err(e) => e,
        other => panic!("expected error, got {other:?}"),
    }
}

fn without_header(name: &str) -> Vec<u8> {
    let text = String::from_utf8(request("/echo", "")).unwrap();
    text.split("\r\n")
        .filter(|line| !line.starts_with(name))
        .collect::<Vec<_>>()
        .join("\r\n")
        .into_bytes()
}

fn with_header_replaced(name: &str, line: &str) -> Vec<u8> {
    let text = String::from_utf8(request("/echo", "")).unwrap();
    text.split("\r\n")
        .map(|l| if l.starts_with(name) { line } else { l })
        .collect::<Vec<_>>()
        .join("\r\n")
        .into_bytes()
}

#[test]
fn happy_path_uses_rfc_accept_key() {
    let mut buf = request("/echo", "");
    let len = buf.len();
    buf.extend_from_slice(b"\x81\x80trailing frame");
    let upgrade = done(&buf);
    assert_eq!(upgrade.route, Route::Echo);
    assert_eq!(upgrade.consumed, len);
    let response = String::from_utf8(upgrade.response).unwrap();
    assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(response.contains(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n")));
    assert!(response.contains("Upgrade: websocket\r\n"));
    assert!(response.contains("Connection: Upgrade\r\n"));
    assert!(response.ends_with("\r\n\r\n"));
}

#[test]
fn header_names_and_tokens_are_case_insensitive() {
    let buf = format!(
        "GET /news HTTP/1.1\r\nhost: h\r\nupgrade: WebSocket\r\nconnection: keep-alive, UPGRADE\r\nsec-websocket-key: {KEY}\r\nsec-websocket-version: 13\r\n\r\n"
    );
    assert_eq!(done(buf.as_bytes()).route, Route::Channel("news".into()));
}

#[test]
fn routes() {
    assert_eq!(done(&request("/echo", "")).route, Route::Echo);
    assert_eq!(done(&request("/echo?x=1", "")).route, Route::Echo);
    assert_eq!(
        done(&request("/news", "")).route,
        Route::Channel("news".into())
    );
    assert_eq!(
        done(&request("/news?x=1", "")).route,
        Route::Channel("news".into())
    );
    assert_eq!(
        done(&request("/a.b:c-d_9", "")).route,
        Route::Channel("a.b:c-d_9".into())
    );
    let long = format!("/{}", "c".repeat(255));
    assert_eq!(
        done(&request(&long, "")).route,
        Route::Channel("c".repeat(255))
    );
    assert_eq!(
        error(&request(&format!("/{}", "c".repeat(256)), "")),
        HandshakeError::BadChannel
    );
    for bad in ["/a/b", "/a%20b", "/a*b", "/news/"] {
        assert_eq!(
            error(&request(bad, "")),
            HandshakeError::BadChannel,
            "{bad}"
        );
    }
    assert_eq!(done(&request("/", "")).route, Route::Root);
    assert_eq!(done(&request("/?channels=a,b", "")).route, Route::Root);
    for missing in ["*", "http://h/news"] {
        assert_eq!(
            error(&request(missing, "")),
            HandshakeError::NotFound,
            "{missing}"
        );
    }
}

#[test]
fn partial_request_byte_by_byte() {
    let buf = request("/news", "");
    for end in 0..buf.len() {
        assert!(
            matches!(parse_upgrade(&buf[..end]), Ok(HandshakeStatus::Partial)),
            "at {end}"
        );
    }
    assert_eq!(done(&buf).consumed, buf.len());
}

#[test]
fn error_cases() {
    let post = String::from_utf8(request("/echo", ""))
        .unwrap()
        .replacen("GET", "POST", 1);
    assert_eq!(error(post.as_bytes()), HandshakeError::NotGet);
    let http10 = String::from_utf8(request("/echo", ""))
        .unwrap()
        .replacen("HTTP/1.1", "HTTP/1.0", 1);
    assert_eq!(error(http10.as_bytes()), HandshakeError::NotHttp11);
    assert_eq!(
        error(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
        HandshakeError::Malformed
    );
    assert_eq!(
        error(b"GET /echo HTTP/1.1\r\nBad Header\r\n\r\n"),
        HandshakeError::Malformed
    );
    assert_eq!(
        error(&without_header("Upgrade")),
        HandshakeError::NotUpgrade
    );
    assert_eq!(
        error(&without_header("Connection")),
        HandshakeError::NotUpgrade
    );
    assert_eq!(
        error(&with_header_replaced("Upgrade", "Upgrade: h2c")),
        HandshakeError::NotUpgrade
    );
    assert_eq!(
        error(&with_header_replaced(
            "Connection",
            "Connection: keep-alive"
        )),
        HandshakeError::NotUpgrade
    );
    assert_eq!(
        error(&without_header("Sec-WebSocket-Version")),
        HandshakeError::BadVersion
    );
    assert_eq!(
        error(&with_header_replaced(
            "Sec-WebSocket-Version",
            "Sec-WebSocket-Version: 8"
        )),
        HandshakeError::BadVersion
    );
    assert_eq!(
        error(&without_header("Sec-WebSocket-Key")),
        HandshakeError::MissingKey
    );
    for bad_key in [
        "short",
        "dGhlIHNhbXBsZSBub25jZQ",
        "dGhlIHNhbXBsZSBub25jZQ==x",
        "dGhlIHNhbXBsZSBub25j*Q==",
    ] {
        assert_eq!(
            error(&with_header_replaced(
                "Sec-WebSocket-Key",
                &format!("Sec-WebSocket-Key: {bad_key}")
            )),
            HandshakeError::InvalidKey,
            "{bad_key}"
        );
    }
    assert_eq!(error(&without_header("Host")), HandshakeError::MissingHost);
}

#[test]
fn oversized_headers_are_rejected() {
    let big = format!("X-Filler: {}\r\n", "a".repeat(MAX_HANDSHAKE_BYTES));
    assert_eq!(error(&request("/echo", &big)), HandshakeError::TooLarge);
    let endless = vec![b'a'; MAX_HANDSHAKE_BYTES];
    let mut start = b"GET /echo HTTP/1.1\r\nX: ".to_vec();
    start.extend_from_slice(&endless);
    assert_eq!(error(&start), HandshakeError::TooLarge);
    let many: String = (0..70).map(|i| format!("X-{i}: v\r\n")).collect();
    assert_eq!(error(&request("/echo", &many)), HandshakeError::TooLarge);
}

#[test]
fn error_responses() {
    let all = [
        HandshakeError::NotGet,
        HandshakeError::NotHttp11,
        HandshakeError::Malformed,
        HandshakeError::TooLarge,
        HandshakeError::NotUpgrade,
        HandshakeError::BadVersion,
        HandshakeError::MissingKey,
        HandshakeError::InvalidKey,
        HandshakeError::MissingHost,
        HandshakeError::BadChannel,
        HandshakeError::NotFound,
    ];
    let statuses = [405, 400, 400, 431, 400, 426, 400, 400, 400, 400, 404];
    for (e, status) in all.iter().zip(statuses) {
        assert_eq!(e.status(), status, "{e:?}");
        let text = String::from_utf8(e.response()).unwrap();
        assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
        assert!(text.contains("Content-Type: text/plain\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert_eq!(head.contains("Sec-WebSocket-Version: 13"), status == 426);
        assert!(
            e.label()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
        );
    }
    assert_eq!(HandshakeError::NotGet.label(), "not_get");
    assert_eq!(HandshakeError::BadVersion.label(), "bad_version");
    assert_eq!(HandshakeError::TooLarge.label(), "too_large");
    assert_eq!(HandshakeError::BadChannel.label(), "bad_channel");
    let full =
        String::from_utf8(http_error_response(503, "Service Unavailable", "full\n")).unwrap();
    assert_eq!(
        full,
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\nfull\n"
    );
}

#[test]
fn client_roundtrip() {
    let key = generate_key(42);
    assert_eq!(key.len(), 24);
    assert_ne!(key, generate_key(43));
    assert_eq!(key, generate_key(42));
    let req = client_request("127.0.0.1:8080", "/news?x=1", &key);
    let upgrade = done(&req);
    assert_eq!(upgrade.route, Route::Channel("news".into()));
    let mut response = upgrade.response.clone();
    let len = response.len();
    for end in 0..len {
        assert_eq!(
            parse_response(&response[..end], &key),
            Ok(ClientHandshakeStatus::Partial)
        );
    }
    response.extend_from_slice(b"\x81\x00");
    assert_eq!(
        parse_response(&response, &key),
        Ok(ClientHandshakeStatus::Done { consumed: len })
    );
    assert_eq!(
        parse_response(&upgrade.response, &generate_key(7)),
        Err(HandshakeError::BadAccept)
    );
}

#[test]
fn client_sees_rejection() {
    let key = generate_key(1);
    assert_eq!(
        parse_response(&HandshakeError::NotFound.response(), &key),
        Err(HandshakeError::Rejected(404))
    );
    assert_eq!(
        parse_response(&http_error_response(503, "Service Unavailable", ""), &key),
        Err(HandshakeError::Rejected(503))
    );
    assert_eq!(
        parse_response(b"\x00\x01garbage\r\n\r\n", &key),
        Err(HandshakeError::Malformed)
    );
    let no_upgrade = format!(
        "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        "x"
    );
    assert_eq!(
        parse_response(no_upgrade.as_bytes(), &key),
        Err(HandshakeError::NotUpgrade)
    );
}

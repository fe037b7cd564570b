//! JWT connection tokens end to end: tokens minted by the `jsonwebtoken` crate (as a
//! backend would), a JWKS served by a local HTTP server the test controls (key rotation,
//! an outage), tungstenite and curl as clients. Covers the attacks issue 14 lists (each
//! a 401 counted under its reason), subscribe commands within the token's channels, and
//! token refresh keeping a connection past its first token's `exp`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use ringcast_tests::gateway::Gateway;
use ringcast_tests::metrics::sum_where;
use ringcast_tests::ws_client::{
    connect, next_message, sync_subscriber, try_upgrade, wait_labelled,
};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tungstenite::Message;

const SECRET: &str = "a JWT secret of at least thirty-two bytes";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/shard/tests/fixtures/jwt")
        .join(name)
}

fn hs256(claims: &Value) -> String {
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    encode(&Header::default(), claims, &key).expect("encode")
}

fn signed(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).expect("encode")
}

/// The handshake status for `path`.
fn status(gateway: &Gateway, path: &str) -> u16 {
    try_upgrade(gateway.ws_addr(), path).1
}

/// Waits (shards publish their counters every few hundred ms) until `reason` has been
/// counted `count` times.
fn wait_refused(gateway: &Gateway, reason: &str, count: f64) {
    let failures = "ringcast_handshake_failures_total";
    wait_labelled(gateway, failures, ("reason", reason), 10, |n| n >= count);
    assert_eq!(
        sum_where(&gateway.metrics(), failures, Some(("reason", reason))),
        count,
        "{reason}"
    );
}

/// Sends `command` and returns the JSON answer.
fn command(ws: &mut ringcast_tests::ws_client::Client, command: &Value) -> Value {
    ws.send(Message::text(command.to_string())).expect("send");
    match next_message(ws, Duration::from_secs(5)).expect("read") {
        Some(Message::Text(text)) => serde_json::from_str(&text).expect("JSON answer"),
        other => panic!("no answer to {command}: {other:?}"),
    }
}

#[test]
fn subscribe_commands_within_the_token_and_a_refresh_past_its_expiry() {
    let gateway = Gateway::start(1, &["--jwt-secret", SECRET, "--client-commands"]);
    let first = hs256(&json!({"sub": "alice", "channels": ["news", "chat.*"], "exp": now() + 3}));
    let mut ws = connect(gateway.ws_addr(), &format!("/news?token={first}"));
    let ok = command(&mut ws, &json!({"subscribe": "chat.room1"}));
    assert_eq!(ok, json!({"ok": "subscribe", "channel": "chat.room1"}));
    let denied = command(&mut ws, &json!({"subscribe": "sport"}));
    assert_eq!(denied["error"], "the token does not allow this channel");

    let exp = now() + 60;
    let second = hs256(&json!({"sub": "alice", "channels": ["news"], "exp": exp}));
    let answer = command(&mut ws, &json!({"type": "refresh", "token": second}));
    assert_eq!(
        answer,
        json!({"type": "refreshed", "exp": exp, "unsubscribed": ["chat.room1"]})
    );
    // Past the first token's exp the connection is still up and receiving.
    std::thread::sleep(Duration::from_secs(4));
    sync_subscriber(&gateway, "news", &mut ws);

    let mallory = hs256(&json!({"sub": "mallory", "channels": ["*"], "exp": now() + 60}));
    let other = command(&mut ws, &json!({"type": "refresh", "token": mallory}));
    assert_eq!(other["error"], "the new token names another sub");
}

#[test]
fn an_expired_token_ends_a_websocket_with_4001_and_an_event_stream_with_an_event() {
    let gateway = Gateway::start(1, &["--jwt-secret", SECRET]);
    let token = hs256(&json!({"sub": "bob", "channels": ["news"], "exp": now() + 2}));
    let mut ws = connect(gateway.ws_addr(), &format!("/news?token={token}"));
    let sse = std::process::Command::new("curl")
        .args(["-sS", "-N", "--max-time", "10"])
        .arg(format!(
            "http://{}/sse/news?token={token}",
            gateway.ws_addr()
        ))
        .output()
        .expect("curl");
    let events = String::from_utf8_lossy(&sse.stdout);
    assert!(
        events.ends_with("event: token_expired\ndata: token expired\n\n"),
        "{events:?}"
    );
    match next_message(&mut ws, Duration::from_secs(5)).expect("read") {
        Some(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 4001),
        other => panic!("expected close 4001, got {other:?}"),
    }
}

#[test]
fn attacks_on_public_key_tokens_are_401_and_counted() {
    let public = fixture("rsa-public.pem");
    let gateway = Gateway::start(
        1,
        &[
            "--jwt-public-key",
            public.to_str().expect("path"),
            "--jwt-audience",
            "ringcast",
            "--jwt-issuer",
            "https://auth.example",
        ],
    );
    let private = std::fs::read(fixture("rsa-private.pem")).expect("fixture");
    let rsa = EncodingKey::from_rsa_pem(&private).expect("rsa key");
    let good = json!({"sub": "u", "channels": ["news"], "exp": now() + 60,
                      "aud": "ringcast", "iss": "https://auth.example"});
    let rs256 = |claims: &Value| signed(Algorithm::RS256, None, &rsa, claims);
    assert_eq!(
        status(&gateway, &format!("/news?token={}", rs256(&good))),
        101
    );

    let with = |key: &str, value: Value| {
        let mut claims = good.clone();
        claims[key] = value;
        claims
    };
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(good.to_string())
    );
    let public_pem = std::fs::read(&public).expect("fixture");
    let confused = signed(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(&public_pem),
        &good,
    );
    let tampered = {
        let token = rs256(&good);
        let parts: Vec<&str> = token.split('.').collect();
        let widened = URL_SAFE_NO_PAD.encode(with("channels", json!(["*"])).to_string());
        format!("{}.{widened}.{}", parts[0], parts[2])
    };
    let cases = [
        ("alg none", none, "bad_token"),
        ("HS256 with the public key as secret", confused, "bad_token"),
        ("tampered payload", tampered, "bad_token"),
        (
            "expired",
            rs256(&with("exp", json!(now() - 1))),
            "token_expired",
        ),
        (
            "nbf ahead",
            rs256(&with("nbf", json!(now() + 600))),
            "token_not_yet_valid",
        ),
        (
            "wrong audience",
            rs256(&with("aud", json!("other"))),
            "token_claims",
        ),
        (
            "wrong issuer",
            rs256(&with("iss", json!("https://evil.example"))),
            "token_claims",
        ),
    ];
    let mut counted = std::collections::HashMap::new();
    for (what, token, reason) in cases {
        assert_eq!(
            status(&gateway, &format!("/news?token={token}")),
            401,
            "{what}"
        );
        let count = counted.entry(reason).or_insert(0.0);
        *count += 1.0;
        wait_refused(&gateway, reason, *count);
    }
    // A channel outside the token is 403.
    assert_eq!(
        status(&gateway, &format!("/sport?token={}", rs256(&good))),
        403
    );
}

/// A JWKS endpoint whose document (or a 500) the test sets; counts requests.
struct JwksServer {
    addr: SocketAddr,
    answer: Arc<Mutex<(u16, String)>>,
    requests: Arc<AtomicUsize>,
}

impl JwksServer {
    fn start(document: &Value) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let answer = Arc::new(Mutex::new((200, document.to_string())));
        let requests = Arc::new(AtomicUsize::new(0));
        let (shared, count) = (Arc::clone(&answer), Arc::clone(&requests));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                count.fetch_add(1, Ordering::SeqCst);
                let (code, body) = shared.lock().expect("lock").clone();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        JwksServer {
            addr,
            answer,
            requests,
        }
    }

    fn set(&self, code: u16, document: &Value) {
        *self.answer.lock().expect("lock") = (code, document.to_string());
    }
}

/// A fresh P-256 key: its signing key and its JWK named `kid`.
fn ec_key(kid: &str) -> (EncodingKey, Value) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("keygen");
    let point = pair.public_key_raw();
    let jwk = json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
                     "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                     "y": URL_SAFE_NO_PAD.encode(&point[33..65])});
    (EncodingKey::from_ec_der(&pair.serialize_der()), jwk)
}

fn fetches(gateway: &Gateway, result: &str) -> f64 {
    sum_where(
        &gateway.metrics(),
        "ringcast_jwks_fetches_total",
        Some(("result", result)),
    )
}

#[test]
fn jwks_keys_rotate_and_an_outage_keeps_the_keys_in_use() {
    let (key_a, jwk_a) = ec_key("a");
    let (key_b, jwk_b) = ec_key("b");
    let rsa_jwks: Value =
        serde_json::from_slice(&std::fs::read(fixture("rsa-jwks.json")).expect("fixture"))
            .expect("json");
    let server = JwksServer::start(&json!({"keys": [jwk_a, rsa_jwks["keys"][0]]}));
    let url = format!("http://{}/.well-known/jwks.json", server.addr);
    let gateway = Gateway::start(1, &["--jwks-url", &url, "--jwks-refresh", "3600"]);
    gateway.wait_metric("ringcast_jwks_keys", 10, |keys| keys == 2.0);
    let claims = json!({"sub": "carol", "channels": ["news"], "exp": now() + 60});
    let token_a = signed(Algorithm::ES256, Some("a"), &key_a, &claims);
    let token_b = signed(Algorithm::ES256, Some("b"), &key_b, &claims);
    let mut held = connect(gateway.ws_addr(), &format!("/news?token={token_a}"));

    // A token naming the RSA key but signed ES256 (a key of the wrong type).
    let wrong_type = signed(Algorithm::ES256, Some("rsa-1"), &key_a, &claims);
    assert_eq!(status(&gateway, &format!("/news?token={wrong_type}")), 401);
    wait_refused(&gateway, "bad_token", 1.0);

    // Rotation: the provider now publishes only key b.
    server.set(200, &json!({"keys": [jwk_b]}));
    assert_eq!(status(&gateway, &format!("/news?token={token_b}")), 401);
    wait_refused(&gateway, "unknown_key", 1.0);
    // The unknown kid asked for an early fetch (within the 5 s gap, not the hour).
    gateway.wait_metric("ringcast_jwks_fetches_total", 10, |n| n >= 2.0);
    gateway.wait_metric("ringcast_jwks_keys", 10, |keys| keys == 1.0);
    assert_eq!(status(&gateway, &format!("/news?token={token_b}")), 101);
    assert_eq!(status(&gateway, &format!("/news?token={token_a}")), 401);
    // The connection admitted with key a stays up.
    sync_subscriber(&gateway, "news", &mut held);

    // Outage: the provider fails; another unknown kid asks for a fetch, which fails,
    // and key b keeps working.
    server.set(500, &json!({}));
    let (key_c, _) = ec_key("c");
    let token_c = signed(Algorithm::ES256, Some("c"), &key_c, &claims);
    assert_eq!(status(&gateway, &format!("/news?token={token_c}")), 401);
    gateway.wait_metric("ringcast_jwks_fetches_total", 15, |n| n >= 3.0);
    assert!(fetches(&gateway, "error") >= 1.0);
    assert_eq!(status(&gateway, &format!("/news?token={token_b}")), 101);
    assert!(server.requests.load(Ordering::SeqCst) >= 3);
}

#[test]
fn the_jwks_is_fetched_again_every_refresh_period() {
    let (_, jwk) = ec_key("k");
    let server = JwksServer::start(&json!({"keys": [jwk]}));
    let url = format!("http://{}/jwks", server.addr);
    let gateway = Gateway::start(1, &["--jwks-url", &url, "--jwks-refresh", "1"]);
    gateway.wait_metric("ringcast_jwks_fetches_total", 15, |n| n >= 3.0);
    assert_eq!(fetches(&gateway, "error"), 0.0);
}

#[test]
fn the_readme_minting_snippet_makes_a_token_the_gateway_accepts() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README");
    let after = readme
        .split_once("Minting an HS256 JWT")
        .expect("the minting section")
        .1;
    let snippet = after
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a sh block")
        .0;
    let out = std::process::Command::new("bash")
        .arg("-euc")
        .arg(format!("{snippet}\nprintf %s \"$TOKEN\""))
        .env("SECRET", SECRET)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).expect("token");
    let gateway = Gateway::start(1, &["--jwt-secret", SECRET]);
    assert_eq!(status(&gateway, &format!("/news?token={token}")), 101);
    assert_eq!(status(&gateway, &format!("/chat.room9?token={token}")), 101);
    assert_eq!(status(&gateway, &format!("/sport?token={token}")), 403);
}

//! What checking a connection's token costs the shard (a handshake, or a refresh): the
//! admission of one token for one channel, per token kind, in CPU microseconds (this
//! thread's CPU time, best of three rounds).
//!
//! Usage: `cargo run --release -p ringcast-shard --example token_bench [rounds]`
//! (default 2,000 admissions per kind per round). Prints a Markdown table. The keys are
//! the test-only fixtures in `crates/shard/tests/fixtures/jwt`.

mod common;

use common::thread_cpu_ns;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use ringcast_shard::{AuthPolicy, Credentials, JwtRules, JwtSettings, mint_token};

const SECRET: &[u8] = b"a secret of at least thirty-two bytes, for the bench";
const NOW: u64 = 1_800_000_000;
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt/");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{name}")).expect("fixture")
}

/// Best per-admission CPU time (µs) over three rounds of `rounds` admissions.
fn cost(policy: &AuthPolicy, token: &str, rounds: usize) -> f64 {
    let creds = Credentials {
        origin: None,
        query_token: Some(token),
        protocols: &[],
    };
    assert!(
        policy.admit(&creds, &["news"], NOW).is_ok(),
        "the token is good"
    );
    (0..3)
        .map(|_| {
            let started = thread_cpu_ns();
            for _ in 0..rounds {
                std::hint::black_box(policy.admit(&creds, &["news"], NOW).is_ok());
            }
            (thread_cpu_ns() - started) as f64 / rounds as f64 / 1_000.0
        })
        .fold(f64::INFINITY, f64::min)
}

fn jwt_policy(settings: JwtSettings) -> AuthPolicy {
    AuthPolicy::new(vec![], None).with_jwt(JwtRules::new(settings).expect("rules"))
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000);
    let claims =
        serde_json::json!({"sub": "user42", "channels": ["news", "chat.*"], "exp": NOW + 3600});
    let sign = |alg, key: &EncodingKey| encode(&Header::new(alg), &claims, key).expect("jwt");
    let v1 = mint_token(SECRET, &["news".into()], NOW + 3600).expect("v1");
    let hs256 = sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET));
    let rs256 = sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(&fixture("rsa-private.pem")).expect("rsa"),
    );
    let es256 = sign(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(&fixture("ec-private.pem")).expect("ec"),
    );
    let secret = jwt_policy(JwtSettings {
        secret: Some(SECRET.to_vec()),
        ..Default::default()
    });
    let rows = [
        (
            "v1 (HMAC-SHA256)",
            AuthPolicy::new(vec![], Some(SECRET.to_vec())),
            v1,
        ),
        ("JWT HS256", secret, hs256),
        (
            "JWT RS256 (RSA 2048)",
            jwt_policy(JwtSettings {
                public_key_pem: Some(fixture("rsa-public.pem")),
                ..Default::default()
            }),
            rs256,
        ),
        (
            "JWT ES256 (P-256)",
            jwt_policy(JwtSettings {
                public_key_pem: Some(fixture("ec-public.pem")),
                ..Default::default()
            }),
            es256,
        ),
    ];
    println!("| token | CPU µs per admission | admissions/s per shard |");
    println!("|---|---:|---:|");
    for (name, policy, token) in rows {
        let us = cost(&policy, &token, rounds);
        println!("| {name} | {us:.2} | {:.0} |", 1e6 / us);
    }
}

//! The verification rules and the attacks issue 14 lists, with test-only keys made by
//! `openssl genpkey` (`crates/shard/tests/fixtures/jwt`; never use them elsewhere).

use super::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test";
const RSA_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/jwt/rsa-private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/jwt/rsa-public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/jwt/ec-private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/jwt/ec-public.pem");
const RSA_JWKS: &[u8] = include_bytes!("../../tests/fixtures/jwt/rsa-jwks.json");
const EC_JWKS: &[u8] = include_bytes!("../../tests/fixtures/jwt/ec-jwks.json");
const NOW: u64 = 1_800_000_000;

fn claims() -> Value {
    json!({"exp": NOW + 60, "sub": "user42", "channels": ["news", "chat.*"]})
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).expect("encode")
}

fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(SECRET),
        claims,
    )
}

fn rs256(kid: Option<&str>, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("rsa key");
    sign(Algorithm::RS256, kid, &key, claims)
}

fn es256(kid: Option<&str>, claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(EC_PRIVATE).expect("ec key");
    sign(Algorithm::ES256, kid, &key, claims)
}

fn with_secret() -> JwtRules {
    JwtRules::new(JwtSettings {
        secret: Some(SECRET.to_vec()),
        ..Default::default()
    })
    .expect("rules")
}

fn with_public_key(pem: &[u8]) -> JwtRules {
    JwtRules::new(JwtSettings {
        public_key_pem: Some(pem.to_vec()),
        ..Default::default()
    })
    .expect("rules")
}

/// Rules over a JWKS holding both fixture documents' keys, and a count of early-fetch
/// requests.
fn with_jwks() -> (JwtRules, Arc<AtomicUsize>) {
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&asked);
    let keys = JwksKeys::new(move || {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let (mut set, _) = KeySet::from_jwks(RSA_JWKS).expect("rsa jwks");
    let (ec, _) = KeySet::from_jwks(EC_JWKS).expect("ec jwks");
    set.keys.extend(ec.keys);
    keys.replace(set);
    let rules = JwtRules::new(JwtSettings {
        jwks: Some(Arc::new(keys)),
        ..Default::default()
    })
    .expect("rules");
    (rules, asked)
}

#[test]
fn a_valid_token_grants_its_channels_and_names_its_user() {
    let grant = with_secret().verify(&hs256(&claims()), NOW).expect("valid");
    assert_eq!(grant.expires, NOW + 60);
    assert_eq!(grant.sub.as_deref(), Some("user42"));
    assert!(grant.channels.allows("news"));
    assert!(grant.channels.allows("chat.room7"));
    assert!(!grant.channels.allows("sport"));
}

#[test]
fn every_hmac_size_and_both_public_key_types_verify() {
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let token = sign(alg, None, &EncodingKey::from_secret(SECRET), &claims());
        assert!(with_secret().verify(&token, NOW).is_ok(), "{alg:?}");
    }
    assert!(
        with_public_key(RSA_PUBLIC)
            .verify(&rs256(None, &claims()), NOW)
            .is_ok()
    );
    assert!(
        with_public_key(EC_PUBLIC)
            .verify(&es256(None, &claims()), NOW)
            .is_ok()
    );
}

#[test]
fn jwks_keys_are_found_by_kid_or_as_the_only_key_of_the_type() {
    let (rules, asked) = with_jwks();
    assert!(rules.verify(&rs256(Some("rsa-1"), &claims()), NOW).is_ok());
    assert!(rules.verify(&es256(Some("ec-1"), &claims()), NOW).is_ok());
    assert!(rules.verify(&es256(None, &claims()), NOW).is_ok());
    assert_eq!(asked.load(Ordering::Relaxed), 0);
}

#[test]
fn alg_none_is_refused() {
    let head = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims().to_string());
    for token in [format!("{head}.{body}."), format!("{head}.{body}")] {
        assert_eq!(with_secret().verify(&token, NOW), Err(AuthError::BadToken));
        assert_eq!(
            with_public_key(RSA_PUBLIC).verify(&token, NOW),
            Err(AuthError::BadToken)
        );
    }
}

#[test]
fn hs256_signed_with_the_public_key_as_secret_is_refused() {
    let confused = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(RSA_PUBLIC),
        &claims(),
    );
    assert_eq!(
        with_public_key(RSA_PUBLIC).verify(&confused, NOW),
        Err(AuthError::BadToken)
    );
    let both = JwtRules::new(JwtSettings {
        secret: Some(SECRET.to_vec()),
        public_key_pem: Some(RSA_PUBLIC.to_vec()),
        ..Default::default()
    })
    .expect("rules");
    assert_eq!(both.verify(&confused, NOW), Err(AuthError::BadToken));
    let (jwks, _) = with_jwks();
    assert_eq!(jwks.verify(&confused, NOW), Err(AuthError::BadToken));
}

#[test]
fn an_unknown_kid_is_refused_and_asks_for_an_early_fetch() {
    let (rules, asked) = with_jwks();
    assert_eq!(
        rules.verify(&rs256(Some("rsa-2"), &claims()), NOW),
        Err(AuthError::UnknownKey)
    );
    assert_eq!(asked.load(Ordering::Relaxed), 1);
}

#[test]
fn a_jwks_key_of_the_wrong_type_is_refused() {
    let (rules, _) = with_jwks();
    // An RS256 token naming the EC key, and an ES256 token naming the RSA key.
    assert_eq!(
        rules.verify(&rs256(Some("ec-1"), &claims()), NOW),
        Err(AuthError::BadToken)
    );
    assert_eq!(
        rules.verify(&es256(Some("rsa-1"), &claims()), NOW),
        Err(AuthError::BadToken)
    );
    // A key restricted to RS256 does not check PS256.
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("rsa key");
    let ps = sign(Algorithm::PS256, Some("rsa-1"), &key, &claims());
    assert_eq!(rules.verify(&ps, NOW), Err(AuthError::BadToken));
    // A static EC key does not check RS256.
    assert_eq!(
        with_public_key(EC_PUBLIC).verify(&rs256(None, &claims()), NOW),
        Err(AuthError::BadToken)
    );
}

#[test]
fn a_tampered_payload_is_refused() {
    let token = hs256(&claims());
    let mut parts: Vec<&str> = token.split('.').collect();
    let widened = json!({"exp": NOW + 60, "sub": "user42", "channels": ["*"]});
    let forged = URL_SAFE_NO_PAD.encode(widened.to_string());
    parts[1] = &forged;
    assert_eq!(
        with_secret().verify(&parts.join("."), NOW),
        Err(AuthError::BadToken)
    );
    let rsa = rs256(None, &claims());
    let mut parts: Vec<&str> = rsa.split('.').collect();
    parts[1] = &forged;
    assert_eq!(
        with_public_key(RSA_PUBLIC).verify(&parts.join("."), NOW),
        Err(AuthError::BadToken)
    );
}

#[test]
fn times_are_checked_on_the_given_clock() {
    let rules = with_secret();
    let token = hs256(&claims());
    assert_eq!(rules.verify(&token, NOW + 60), Err(AuthError::Expired));
    let later = json!({"exp": NOW + 60, "nbf": NOW + 10});
    assert_eq!(
        rules.verify(&hs256(&later), NOW),
        Err(AuthError::NotYetValid)
    );
    assert!(rules.verify(&hs256(&later), NOW + 10).is_ok());
    let fractional = json!({"exp": (NOW + 60) as f64 + 0.5});
    assert_eq!(
        rules.verify(&hs256(&fractional), NOW).map(|g| g.expires),
        Ok(NOW + 60)
    );
    for bad in [
        json!({"sub": "x"}),
        json!({"exp": "soon"}),
        json!({"exp": -1}),
    ] {
        assert_eq!(
            rules.verify(&hs256(&bad), NOW),
            Err(AuthError::BadToken),
            "{bad}"
        );
    }
}

#[test]
fn audience_and_issuer_are_checked_when_configured() {
    let rules = JwtRules::new(JwtSettings {
        secret: Some(SECRET.to_vec()),
        audience: Some("ringcast".into()),
        issuer: Some("https://auth.example".into()),
        ..Default::default()
    })
    .expect("rules");
    let good = json!({"exp": NOW + 60, "aud": "ringcast", "iss": "https://auth.example"});
    assert!(rules.verify(&hs256(&good), NOW).is_ok());
    let listed =
        json!({"exp": NOW + 60, "aud": ["other", "ringcast"], "iss": "https://auth.example"});
    assert!(rules.verify(&hs256(&listed), NOW).is_ok());
    for bad in [
        json!({"exp": NOW + 60, "aud": "other", "iss": "https://auth.example"}),
        json!({"exp": NOW + 60, "aud": "ringcast", "iss": "https://evil.example"}),
        json!({"exp": NOW + 60, "iss": "https://auth.example"}),
        json!({"exp": NOW + 60, "aud": "ringcast"}),
    ] {
        assert_eq!(
            rules.verify(&hs256(&bad), NOW),
            Err(AuthError::WrongClaims),
            "{bad}"
        );
    }
    // Not configured: not checked.
    assert!(with_secret().verify(&hs256(&good), NOW).is_ok());
}

#[test]
fn the_channels_claim_is_strict_and_its_name_configurable() {
    let rules = with_secret();
    for bad in [
        json!({"exp": NOW + 60, "channels": ["ok", "a*b"]}),
        json!({"exp": NOW + 60, "channels": [1]}),
        json!({"exp": NOW + 60, "channels": {"news": true}}),
        json!({"exp": NOW + 60, "sub": 42}),
        json!({"exp": NOW + 60, "sub": ""}),
        json!({"exp": NOW + 60, "sub": "x".repeat(MAX_SUB_BYTES + 1)}),
    ] {
        assert_eq!(
            rules.verify(&hs256(&bad), NOW),
            Err(AuthError::BadToken),
            "{bad}"
        );
    }
    let none = rules
        .verify(&hs256(&json!({"exp": NOW + 60})), NOW)
        .expect("no channels claim");
    assert!(!none.channels.allows("news"));
    let one = rules
        .verify(&hs256(&json!({"exp": NOW + 60, "channels": "news"})), NOW)
        .expect("one channel as a string");
    assert!(one.channels.allows("news"));
    let renamed = JwtRules::new(JwtSettings {
        secret: Some(SECRET.to_vec()),
        channels_claim: Some("rc_ch".into()),
        ..Default::default()
    })
    .expect("rules");
    let grant = renamed
        .verify(&hs256(&json!({"exp": NOW + 60, "rc_ch": ["a"]})), NOW)
        .expect("renamed claim");
    assert!(grant.channels.allows("a"));
}

#[test]
fn garbage_is_refused_without_panicking() {
    let rules = with_secret();
    let (jwks, _) = with_jwks();
    for junk in [
        "",
        ".",
        "..",
        "a.b.c",
        "v1.abc.def",
        "eyJhbGciOiJIUzI1NiJ9..",
        "eyJhbGciOiJIUzI1NiJ9.e30.",
        "\u{0}\u{ff}.x.y",
    ] {
        assert!(rules.verify(junk, NOW).is_err(), "{junk:?}");
        assert!(jwks.verify(junk, NOW).is_err(), "{junk:?}");
    }
}

#[test]
fn settings_are_checked_at_startup() {
    let short = JwtRules::new(JwtSettings {
        secret: Some(vec![7; 31]),
        ..Default::default()
    });
    assert!(matches!(short, Err(JwtConfigError::ShortSecret(31))));
    let bad_pem = JwtRules::new(JwtSettings {
        public_key_pem: Some(
            b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n".to_vec(),
        ),
        ..Default::default()
    });
    assert!(matches!(bad_pem, Err(JwtConfigError::BadPublicKey)));
    assert!(matches!(
        JwtRules::new(JwtSettings::default()),
        Err(JwtConfigError::NoKey)
    ));
}

#[test]
fn a_jwks_skips_keys_that_cannot_verify_and_caps_the_count() {
    let doc = json!({"keys": [
        {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
        {"kty": "RSA", "kid": "oaep", "alg": "RSA-OAEP", "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "kid": "mismatch", "alg": "RS256", "crv": "P-256", "x": "AA", "y": "AA"},
        {"kty": "XYZ", "kid": "unknown"},
        "not an object",
    ]});
    assert_eq!(
        KeySet::from_jwks(doc.to_string().as_bytes()).map(|(s, _)| s.len()),
        Err(JwksError::NoUsableKey)
    );
    assert_eq!(
        KeySet::from_jwks(b"[]").map(|(s, _)| s.len()),
        Err(JwksError::NotJwks)
    );
    assert_eq!(
        KeySet::from_jwks(b"{\"keys\": 5}").map(|(s, _)| s.len()),
        Err(JwksError::NotJwks)
    );
    let rsa: Value = serde_json::from_slice(RSA_JWKS).expect("fixture");
    let many: Vec<Value> = (0..MAX_JWKS_KEYS + 10)
        .map(|i| {
            let mut key = rsa["keys"][0].clone();
            key["kid"] = json!(format!("k{i}"));
            key
        })
        .collect();
    let (set, skipped) =
        KeySet::from_jwks(json!({"keys": many}).to_string().as_bytes()).expect("capped");
    assert_eq!((set.len(), skipped), (MAX_JWKS_KEYS, 10));
}

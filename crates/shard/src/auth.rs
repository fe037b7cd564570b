//! Who may open a connection: the `Origin` allow-list and HMAC-SHA256 signed tokens that
//! name the channels a client may subscribe to and when the permission ends.
//!
//! Token format (all parts URL-safe, so it fits a query string and a subprotocol name):
//!
//! ```text
//! v1.<base64url(claims)>.<base64url(HMAC-SHA256(secret, "v1." + base64url(claims)))>
//! claims = "exp=<unix seconds>&ch=<channel>,<channel>,..."   (`*` = every channel)
//! ```
//!
//! A client passes it as `?token=<token>` or offers the subprotocol `token.<token>`
//! (browsers cannot set headers), which the server then selects in its 101 answer.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Prefix of a subprotocol that carries a token.
pub(crate) const TOKEN_PROTOCOL_PREFIX: &str = "token.";

/// Why a handshake is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// The `Origin` is not allowed (403).
    Origin,
    /// No token although one is required (401).
    MissingToken,
    /// The token is malformed or its signature is wrong (401).
    BadToken,
    /// The token has expired (401).
    Expired,
    /// The token does not allow this channel (403).
    Channel,
}

impl AuthError {
    /// HTTP status for the refusal.
    pub fn status(self) -> u16 {
        match self {
            AuthError::Origin | AuthError::Channel => 403,
            AuthError::MissingToken | AuthError::BadToken | AuthError::Expired => 401,
        }
    }

    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            AuthError::Origin => "origin",
            AuthError::MissingToken => "missing_token",
            AuthError::BadToken => "bad_token",
            AuthError::Expired => "token_expired",
            AuthError::Channel => "channel_not_allowed",
        }
    }
}

/// A request's credentials, taken from the handshake.
#[derive(Debug, Default, Clone, Copy)]
pub struct Credentials<'a> {
    /// The `Origin` header.
    pub origin: Option<&'a str>,
    /// The `token` query parameter.
    pub query_token: Option<&'a str>,
    /// The offered subprotocols.
    pub protocols: &'a [String],
}

/// The node's admission rules.
#[derive(Clone, Default)]
pub struct AuthPolicy {
    origins: Vec<String>,
    secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for AuthPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthPolicy")
            .field("origins", &self.origins)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl AuthPolicy {
    /// `origins`: allowed `Origin` values, each may contain `*` wildcards (empty = any);
    /// `secret`: tokens are required and checked with it when set.
    pub fn new(origins: Vec<String>, secret: Option<Vec<u8>>) -> Self {
        AuthPolicy {
            origins: origins
                .into_iter()
                .map(|o| o.to_ascii_lowercase())
                .collect(),
            secret,
        }
    }

    /// Whether connections need a token.
    pub fn requires_token(&self) -> bool {
        self.secret.is_some()
    }

    /// Whether any rule is configured.
    pub fn is_open(&self) -> bool {
        self.origins.is_empty() && self.secret.is_none()
    }

    /// Checks a request for `channel` at `unix_now`. Ok carries the subprotocol to
    /// select when the token came as one.
    pub fn admit<'a>(
        &self,
        creds: &Credentials<'a>,
        channel: &str,
        unix_now: u64,
    ) -> Result<Option<&'a str>, AuthError> {
        if !self.origins.is_empty()
            && let Some(origin) = creds.origin
            && !self
                .origins
                .iter()
                .any(|p| wildcard_match(p, &origin.to_ascii_lowercase()))
        {
            return Err(AuthError::Origin);
        }
        let Some(secret) = &self.secret else {
            return Ok(None);
        };
        let from_protocol = creds
            .protocols
            .iter()
            .find(|p| p.starts_with(TOKEN_PROTOCOL_PREFIX));
        let (token, selected) = match (creds.query_token, from_protocol) {
            (Some(token), _) => (token, None),
            (None, Some(protocol)) => (
                &protocol[TOKEN_PROTOCOL_PREFIX.len()..],
                Some(protocol.as_str()),
            ),
            (None, None) => return Err(AuthError::MissingToken),
        };
        let claims = verify(secret, token)?;
        if claims.expires <= unix_now {
            return Err(AuthError::Expired);
        }
        if !claims.channels.iter().any(|c| c == "*" || c == channel) {
            return Err(AuthError::Channel);
        }
        Ok(selected)
    }
}

/// What a valid token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claims {
    /// Unix seconds after which the token is refused.
    pub expires: u64,
    /// Channels it may subscribe to (`*` = all).
    pub channels: Vec<String>,
}

fn signature(secret: &[u8], signed: &str) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(signed.as_bytes());
    mac
}

/// Creates a token for `channels` that expires at `expires` (unix seconds).
pub fn mint_token(secret: &[u8], channels: &[String], expires: u64) -> String {
    let claims = format!("exp={expires}&ch={}", channels.join(","));
    let signed = format!("v1.{}", URL_SAFE_NO_PAD.encode(claims));
    let sig = signature(secret, &signed).finalize().into_bytes();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// Checks a token's signature (in constant time) and reads its claims.
pub(crate) fn verify(secret: &[u8], token: &str) -> Result<Claims, AuthError> {
    let (signed, sig) = token.rsplit_once('.').ok_or(AuthError::BadToken)?;
    let claims_b64 = signed.strip_prefix("v1.").ok_or(AuthError::BadToken)?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| AuthError::BadToken)?;
    signature(secret, signed)
        .verify_slice(&sig)
        .map_err(|_| AuthError::BadToken)?;
    let claims = URL_SAFE_NO_PAD
        .decode(claims_b64)
        .map_err(|_| AuthError::BadToken)?;
    let claims = std::str::from_utf8(&claims).map_err(|_| AuthError::BadToken)?;
    let mut expires = None;
    let mut channels = Vec::new();
    for pair in claims.split('&') {
        match pair.split_once('=') {
            Some(("exp", v)) => expires = v.parse().ok(),
            Some(("ch", v)) => channels = v.split(',').map(str::to_owned).collect(),
            _ => return Err(AuthError::BadToken),
        }
    }
    Ok(Claims {
        expires: expires.ok_or(AuthError::BadToken)?,
        channels,
    })
}

/// `*` matches any run of characters; everything else literally.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return pattern == text;
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"correct horse battery staple";

    fn creds<'a>(origin: Option<&'a str>, token: Option<&'a str>) -> Credentials<'a> {
        Credentials {
            origin,
            query_token: token,
            protocols: &[],
        }
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match(
            "https://*.example.com",
            "https://a.example.com"
        ));
        assert!(wildcard_match(
            "https://*.example.com",
            "https://a.b.example.com"
        ));
        assert!(!wildcard_match(
            "https://*.example.com",
            "https://example.com"
        ));
        assert!(!wildcard_match(
            "https://*.example.com",
            "https://evil.com/.example.com.x"
        ));
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match(
            "http://localhost:*",
            "http://localhost:3000"
        ));
        assert!(!wildcard_match("https://a.com", "https://a.com.evil"));
    }

    #[test]
    fn origins_are_checked_case_insensitively() {
        let policy = AuthPolicy::new(vec!["https://*.Example.com".into()], None);
        let ok = creds(Some("https://App.example.com"), None);
        assert_eq!(policy.admit(&ok, "news", 0), Ok(None));
        let bad = creds(Some("https://evil.com"), None);
        assert_eq!(policy.admit(&bad, "news", 0), Err(AuthError::Origin));
        assert_eq!(policy.admit(&creds(None, None), "news", 0), Ok(None));
    }

    #[test]
    fn tokens_allow_their_channels_until_they_expire() {
        let policy = AuthPolicy::new(vec![], Some(SECRET.to_vec()));
        let token = mint_token(SECRET, &["news".into(), "sport".into()], 1000);
        assert_eq!(
            policy.admit(&creds(None, Some(&token)), "news", 999),
            Ok(None)
        );
        assert_eq!(
            policy.admit(&creds(None, Some(&token)), "weather", 999),
            Err(AuthError::Channel)
        );
        assert_eq!(
            policy.admit(&creds(None, Some(&token)), "news", 1000),
            Err(AuthError::Expired)
        );
        assert_eq!(
            policy.admit(&creds(None, None), "news", 0),
            Err(AuthError::MissingToken)
        );
        let all = mint_token(SECRET, &["*".into()], 1000);
        assert_eq!(policy.admit(&creds(None, Some(&all)), "x", 1), Ok(None));
    }

    #[test]
    fn forged_and_garbled_tokens_are_refused() {
        let policy = AuthPolicy::new(vec![], Some(SECRET.to_vec()));
        let other = mint_token(b"other secret", &["news".into()], u64::MAX);
        let good = mint_token(SECRET, &["news".into()], u64::MAX);
        let tampered = good.replacen("v1.", "v1.A", 1);
        for bad in [
            other.as_str(),
            &tampered,
            "",
            "v1.",
            "v1..",
            "garbage",
            "v2.a.b",
        ] {
            assert_eq!(
                policy.admit(&creds(None, Some(bad)), "news", 0),
                Err(AuthError::BadToken),
                "{bad}"
            );
        }
    }

    #[test]
    fn token_in_a_subprotocol_is_selected() {
        let policy = AuthPolicy::new(vec![], Some(SECRET.to_vec()));
        let token = mint_token(SECRET, &["news".into()], 50);
        let protocols = vec!["chat".to_owned(), format!("{TOKEN_PROTOCOL_PREFIX}{token}")];
        let c = Credentials {
            origin: None,
            query_token: None,
            protocols: &protocols,
        };
        assert_eq!(
            policy.admit(&c, "news", 10),
            Ok(Some(protocols[1].as_str()))
        );
    }
}

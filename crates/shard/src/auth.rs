//! Who may open a connection: the `Origin` allow-list and signed tokens that name the
//! channels a client may subscribe to and when the permission ends: this module's own
//! `v1` HMAC-SHA256 tokens and JWTs ([`crate::jwt`]). Either kind becomes a [`Grant`].
//!
//! `v1` token format (all parts URL-safe, so it fits a query string and a subprotocol name):
//!
//! ```text
//! v1.<base64url(claims)>.<base64url(HMAC-SHA256(secret, "v1." + base64url(claims)))>
//! claims = "exp=<unix seconds>&ch=<channel>,<channel>,..."   (`*` = every channel)
//! ```
//!
//! Both keys appear exactly once, no other key is allowed, `exp` is decimal digits and
//! every channel is a valid name or `*`; anything else is a bad token even when signed.
//! A token starting `v1.` is checked as one (with `--auth-secret`); any other as a JWT
//! (with the JWT settings).
//!
//! An allowed origin is `scheme://host[:port]` ([`check_origin_pattern`]); a `*` in it
//! stands for one or more characters inside one DNS label (never `.`, `/` or `:`).
//!
//! A client passes it as `?token=<token>` or offers the subprotocol `token.<token>`
//! (browsers cannot set headers), which the server then selects in its 101 answer.
//! The permission ends at `exp` also for an open connection: admission hands the expiry
//! on, and the shard closes the connection then (WebSocket close 4001).

use crate::jwt::JwtRules;
use crate::token_grant::{Grant, GrantedChannels};
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
    /// A JWT names a key (`kid`) the key set does not hold (401).
    UnknownKey,
    /// A JWT's `nbf` is still in the future (401).
    NotYetValid,
    /// A JWT's `aud` or `iss` is missing or not the configured one (401).
    WrongClaims,
}

impl AuthError {
    /// Every refusal, for exporting each label at 0 from startup.
    pub(crate) const ALL: [AuthError; 8] = [
        AuthError::Origin,
        AuthError::MissingToken,
        AuthError::BadToken,
        AuthError::Expired,
        AuthError::Channel,
        AuthError::UnknownKey,
        AuthError::NotYetValid,
        AuthError::WrongClaims,
    ];

    /// HTTP status for the refusal.
    pub fn status(self) -> u16 {
        match self {
            AuthError::Origin | AuthError::Channel => 403,
            AuthError::MissingToken
            | AuthError::BadToken
            | AuthError::Expired
            | AuthError::UnknownKey
            | AuthError::NotYetValid
            | AuthError::WrongClaims => 401,
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
            AuthError::UnknownKey => "unknown_key",
            AuthError::NotYetValid => "token_not_yet_valid",
            AuthError::WrongClaims => "token_claims",
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

/// What an admitted request's credentials allow beyond the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Admission<'a> {
    /// The subprotocol to select, when the token came as one.
    pub protocol: Option<&'a str>,
    /// The token's grant (None when no token is required): the connection is closed at
    /// its expiry, and subscribe commands are checked against its channels.
    pub grant: Option<Grant>,
}

/// Why [`mint_token`] refuses to sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No channel at all: the token would allow nothing.
    #[error("a token needs at least one channel")]
    NoChannels,
    /// A name that is neither a channel name nor `*` (such as `x,*`, which would widen
    /// the token to every channel).
    #[error("`{0}` is neither a channel name (1-255 bytes of [A-Za-z0-9_.:-]) nor `*`")]
    InvalidChannel(String),
}

/// Why an `--allowed-origins` entry is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginPatternError {
    /// No `scheme://` (such as `app.example.com`): it could never match a browser's
    /// `Origin`, which always has one.
    #[error(
        "`{0}`: an allowed origin needs a scheme, e.g. `https://app.example.com` \
         (leave the list empty to allow any origin)"
    )]
    NoScheme(String),
    /// Nothing after `scheme://`, or a path, query, fragment, user or space in it.
    #[error("`{0}`: an allowed origin is `scheme://host[:port]`, without a path or a trailing `/`")]
    NotAnOrigin(String),
}

/// Checks one allowed-origin pattern: `scheme://host[:port]`, `*` wildcards only in the
/// host and port.
pub fn check_origin_pattern(pattern: &str) -> Result<(), OriginPatternError> {
    let Some((scheme, host)) = pattern.split_once("://") else {
        return Err(OriginPatternError::NoScheme(pattern.to_owned()));
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return Err(OriginPatternError::NoScheme(pattern.to_owned()));
    }
    let host_ok = !host.is_empty()
        && !host
            .bytes()
            .any(|b| matches!(b, b'/' | b'?' | b'#' | b'@') || b.is_ascii_whitespace());
    if host_ok {
        Ok(())
    } else {
        Err(OriginPatternError::NotAnOrigin(pattern.to_owned()))
    }
}

/// The node's admission rules.
#[derive(Clone, Default)]
pub struct AuthPolicy {
    origins: Vec<String>,
    secret: Option<Vec<u8>>,
    jwt: Option<JwtRules>,
}

impl std::fmt::Debug for AuthPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthPolicy")
            .field("origins", &self.origins)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("jwt", &self.jwt)
            .finish()
    }
}

impl AuthPolicy {
    /// `origins`: allowed `Origin` values, each may contain `*` wildcards (empty = any;
    /// check each with [`check_origin_pattern`] first); `secret`: tokens are required
    /// and checked with it when set.
    pub fn new(origins: Vec<String>, secret: Option<Vec<u8>>) -> Self {
        AuthPolicy {
            origins: origins
                .into_iter()
                .map(|o| o.to_ascii_lowercase())
                .collect(),
            secret,
            jwt: None,
        }
    }

    /// Also accepts JWTs verified by `jwt` (tokens are then required).
    pub fn with_jwt(mut self, jwt: JwtRules) -> Self {
        self.jwt = Some(jwt);
        self
    }

    /// Whether connections need a token.
    pub fn requires_token(&self) -> bool {
        self.secret.is_some() || self.jwt.is_some()
    }

    /// Whether any rule is configured.
    pub fn is_open(&self) -> bool {
        self.origins.is_empty() && !self.requires_token()
    }

    /// Checks a request for `channels` (none: a connection that subscribes by command
    /// later) at `unix_now`, verifying its token once. Ok carries the subprotocol to
    /// select when the token came as one, and the token's grant.
    pub fn admit<'a>(
        &self,
        creds: &Credentials<'a>,
        channels: &[&str],
        unix_now: u64,
    ) -> Result<Admission<'a>, AuthError> {
        if !self.origins.is_empty()
            && let Some(origin) = creds.origin
            && !self
                .origins
                .iter()
                .any(|p| wildcard_match(p, &origin.to_ascii_lowercase()))
        {
            return Err(AuthError::Origin);
        }
        if !self.requires_token() {
            return Ok(Admission::default());
        }
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
        let grant = self.verify_token(token, unix_now)?;
        if !channels.iter().all(|c| grant.channels.allows(c)) {
            return Err(AuthError::Channel);
        }
        Ok(Admission {
            protocol: selected,
            grant: Some(grant),
        })
    }

    /// Verifies a token of either kind at `unix_now` (admission and refresh).
    pub(crate) fn verify_token(&self, token: &str, unix_now: u64) -> Result<Grant, AuthError> {
        match (&self.secret, &self.jwt) {
            (Some(secret), _) if token.starts_with("v1.") => {
                let grant = verify(secret, token)?.into_grant();
                if grant.expires <= unix_now {
                    return Err(AuthError::Expired);
                }
                Ok(grant)
            }
            // Checks `exp` (and `nbf`) itself.
            (_, Some(jwt)) => jwt.verify(token, unix_now),
            _ => Err(AuthError::BadToken),
        }
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

impl Claims {
    fn into_grant(self) -> Grant {
        let mut channels = GrantedChannels::default();
        for name in &self.channels {
            // Parsing admitted only names and `*`, both of which a grant takes.
            channels.add(name);
        }
        Grant {
            expires: self.expires,
            sub: None,
            channels,
        }
    }
}

fn signature(secret: &[u8], signed: &str) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(signed.as_bytes());
    mac
}

/// Whether `name` may appear in a token's channel list.
fn is_token_channel(name: &str) -> bool {
    name == "*" || ringcast_proto::is_valid_channel(name)
}

/// Creates a token for `channels` (each a channel name or `*`) that expires at
/// `expires` (unix seconds).
pub fn mint_token(secret: &[u8], channels: &[String], expires: u64) -> Result<String, TokenError> {
    if channels.is_empty() {
        return Err(TokenError::NoChannels);
    }
    if let Some(bad) = channels.iter().find(|c| !is_token_channel(c)) {
        return Err(TokenError::InvalidChannel(bad.clone()));
    }
    let claims = format!("exp={expires}&ch={}", channels.join(","));
    let signed = format!("v1.{}", URL_SAFE_NO_PAD.encode(claims));
    let sig = signature(secret, &signed).finalize().into_bytes();
    Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig)))
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
    parse_claims(claims).ok_or(AuthError::BadToken)
}

/// Reads `exp=<digits>&ch=<names>`: each key exactly once, in any order, nothing else.
fn parse_claims(text: &str) -> Option<Claims> {
    let mut expires = None;
    let mut channels = None;
    for pair in text.split('&') {
        let (key, value) = pair.split_once('=')?;
        let repeated = match key {
            "exp" => expires.replace(parse_unix_secs(value)?).is_some(),
            "ch" => channels.replace(parse_channels(value)?).is_some(),
            _ => return None,
        };
        if repeated {
            return None;
        }
    }
    Some(Claims {
        expires: expires?,
        channels: channels?,
    })
}

/// Decimal digits only (no sign, no spaces), within u64.
fn parse_unix_secs(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A comma separated, non-empty list of channel names or `*`.
fn parse_channels(text: &str) -> Option<Vec<String>> {
    let channels: Vec<String> = text.split(',').map(str::to_owned).collect();
    channels
        .iter()
        .all(|c| is_token_channel(c))
        .then_some(channels)
}

/// Characters a `*` never stands for: an origin's label, scheme and port separators.
fn is_origin_separator(c: char) -> bool {
    matches!(c, '.' | '/' | ':')
}

/// Matches an origin against a pattern piece by piece: both are cut after every `.`,
/// `/` and `:`, the separators must be the same, and inside one piece `*` stands for one
/// or more characters.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let mut patterns = pattern.split_inclusive(is_origin_separator);
    let mut texts = text.split_inclusive(is_origin_separator);
    loop {
        match (patterns.next(), texts.next()) {
            (None, None) => return true,
            (Some(p), Some(t)) if piece_match(p, t) => {}
            _ => return false,
        }
    }
}

/// One piece: the same trailing separator (or none) and a matching label.
fn piece_match(pattern: &str, text: &str) -> bool {
    let (p_label, p_sep) = split_separator(pattern);
    let (t_label, t_sep) = split_separator(text);
    p_sep == t_sep && label_match(p_label.as_bytes(), t_label.as_bytes())
}

/// A piece's label and its trailing separator (empty for the last piece).
fn split_separator(piece: &str) -> (&str, &str) {
    match piece.strip_suffix(is_origin_separator) {
        Some(label) => (label, &piece[label.len()..]),
        None => (piece, ""),
    }
}

/// `*` is one or more bytes, everything else literal. Greedy with a retry from the last
/// `*` only, so a long label costs O(pattern × label) at worst, never exponential.
fn label_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // After the last `*`: where the pattern resumes and where in the text it next may.
    let mut retry: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                retry = Some((p + 1, t + 1));
                p += 1;
                t += 1;
            }
            Some(&b) if b == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match retry {
                Some((resume, from)) => {
                    p = resume;
                    t = from + 1;
                    retry = Some((resume, from + 1));
                }
                None => return false,
            },
        }
    }
    p == pattern.len()
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
            "https://app-*.example.com",
            "https://app-42.example.com"
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
    fn a_wildcard_stays_inside_one_dns_label() {
        for (pattern, origin) in [
            ("https://*.example.com", "https://a.b.example.com"),
            ("https://*.example.com", "https://evil.net/.example.com"),
            ("https://*.example.com", "https://evil.net:1.example.com"),
            (
                "https://app.example.com*",
                "https://app.example.com.evil.net",
            ),
            ("https://app.example.com*", "https://app.example.com:8443"),
            ("http://localhost:*", "http://localhost:3000.evil.net"),
            ("http://localhost:*", "http://localhost:"),
            ("https://*", "https://evil.net"),
            ("*", "https://a.example.com"),
        ] {
            assert!(!wildcard_match(pattern, origin), "{pattern} {origin}");
        }
        assert!(wildcard_match(
            "https://*.*.example.com",
            "https://a.b.example.com"
        ));
        assert!(wildcard_match("https://*", "https://localhost"));
    }

    #[test]
    fn a_long_origin_is_matched_in_linear_time() {
        let origin = format!("https://{}.example.com", "a".repeat(100_000));
        let pattern = "https://*a*a*a*a*a*a*a*a*b.example.com";
        let started = std::time::Instant::now();
        assert!(!wildcard_match(pattern, &origin));
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
    }

    #[test]
    fn origin_patterns_need_a_scheme_and_no_path() {
        for good in [
            "https://app.example.com",
            "https://*.example.com",
            "http://localhost:*",
            "http://127.0.0.1:3000",
            "chrome-extension://abcdef",
        ] {
            assert_eq!(check_origin_pattern(good), Ok(()), "{good}");
        }
        for bad in [
            "app.example.com",
            "*.example.com",
            "*",
            "",
            "://x",
            "*://x",
            "1http://x",
        ] {
            assert_eq!(
                check_origin_pattern(bad),
                Err(OriginPatternError::NoScheme(bad.into())),
                "{bad}"
            );
        }
        for bad in [
            "https://",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://app.example.com?x",
            "https://user@app.example.com",
            "https://app example.com",
        ] {
            assert_eq!(
                check_origin_pattern(bad),
                Err(OriginPatternError::NotAnOrigin(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn origins_are_checked_case_insensitively() {
        let policy = AuthPolicy::new(vec!["https://*.Example.com".into()], None);
        let ok = creds(Some("https://App.example.com"), None);
        assert_eq!(policy.admit(&ok, &["news"], 0), Ok(Admission::default()));
        let bad = creds(Some("https://evil.com"), None);
        assert_eq!(policy.admit(&bad, &["news"], 0), Err(AuthError::Origin));
        assert_eq!(
            policy.admit(&creds(None, None), &["news"], 0),
            Ok(Admission::default())
        );
    }

    #[test]
    fn tokens_allow_their_channels_until_they_expire() {
        let policy = AuthPolicy::new(vec![], Some(SECRET.to_vec()));
        let token =
            mint_token(SECRET, &["news".into(), "sport".into()], 1000).expect("valid names");
        assert_eq!(
            policy
                .admit(&creds(None, Some(&token)), &["news", "sport"], 999)
                .map(|a| (a.protocol, a.grant.map(|g| (g.expires, g.sub)))),
            Ok((None, Some((1000, None))))
        );
        assert_eq!(
            policy.admit(&creds(None, Some(&token)), &["news", "weather"], 999),
            Err(AuthError::Channel)
        );
        assert_eq!(
            policy.admit(&creds(None, Some(&token)), &["news"], 1000),
            Err(AuthError::Expired)
        );
        assert_eq!(
            policy.admit(&creds(None, None), &["news"], 0),
            Err(AuthError::MissingToken)
        );
        let all = mint_token(SECRET, &["*".into()], 1000).expect("valid names");
        assert_eq!(
            policy
                .admit(&creds(None, Some(&all)), &["x"], 1)
                .map(|a| a.grant.map(|g| g.expires)),
            Ok(Some(1000))
        );
    }

    #[test]
    fn forged_and_garbled_tokens_are_refused() {
        let policy = AuthPolicy::new(vec![], Some(SECRET.to_vec()));
        let other = mint_token(b"other secret", &["news".into()], u64::MAX).expect("valid names");
        let good = mint_token(SECRET, &["news".into()], u64::MAX).expect("valid names");
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
                policy.admit(&creds(None, Some(bad)), &["news"], 0),
                Err(AuthError::BadToken),
                "{bad}"
            );
        }
    }

    /// A token over raw `claims` text, signed with [`SECRET`].
    fn signed(claims: &str) -> String {
        let signed = format!("v1.{}", URL_SAFE_NO_PAD.encode(claims));
        let sig = signature(SECRET, &signed).finalize().into_bytes();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    #[test]
    fn well_formed_claims_are_read() {
        assert_eq!(
            verify(SECRET, &signed("exp=7&ch=news,sport")),
            Ok(Claims {
                expires: 7,
                channels: vec!["news".into(), "sport".into()],
            })
        );
        assert_eq!(
            verify(SECRET, &signed("ch=*&exp=7")).map(|c| c.channels),
            Ok(vec!["*".to_owned()])
        );
    }

    #[test]
    fn claims_with_duplicate_or_unknown_keys_are_refused() {
        for claims in [
            "exp=1&exp=99999&ch=news",
            "exp=99999&ch=news&ch=*",
            "exp=99999&ch=news&admin=1",
            "exp=99999&ch=news&",
            "exp=99999&ch=news&exp",
            "ch=news",
            "exp=99999",
            "exp=+99999&ch=news",
            "exp=99999999999999999999&ch=news",
        ] {
            assert_eq!(
                verify(SECRET, &signed(claims)),
                Err(AuthError::BadToken),
                "{claims}"
            );
        }
    }

    #[test]
    fn claims_with_invalid_or_no_channels_are_refused() {
        for claims in [
            "exp=99999&ch=",
            "exp=99999&ch=,",
            "exp=99999&ch=news,",
            "exp=99999&ch=news,,sport",
            "exp=99999&ch=news sport",
            "exp=99999&ch=new*",
            "exp=99999&ch=**",
        ] {
            assert_eq!(
                verify(SECRET, &signed(claims)),
                Err(AuthError::BadToken),
                "{claims}"
            );
        }
    }

    #[test]
    fn mint_token_refuses_names_that_would_widen_the_token() {
        assert_eq!(
            mint_token(SECRET, &["x,*".into()], 1),
            Err(TokenError::InvalidChannel("x,*".into()))
        );
        for bad in ["", "news&exp=99999", "a b", "new*", "x=y"] {
            assert_eq!(
                mint_token(SECRET, &["news".into(), bad.into()], 1),
                Err(TokenError::InvalidChannel(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(mint_token(SECRET, &[], 1), Err(TokenError::NoChannels));
        let token = mint_token(SECRET, &["news".into(), "*".into()], 9).expect("valid names");
        assert_eq!(
            verify(SECRET, &token).map(|c| c.channels),
            Ok(vec!["news".to_owned(), "*".to_owned()])
        );
    }

    #[test]
    fn token_in_a_subprotocol_is_selected() {
        let policy = AuthPolicy::new(vec![], Some(SECRET.to_vec()));
        let token = mint_token(SECRET, &["news".into()], 50).expect("valid names");
        let protocols = vec!["chat".to_owned(), format!("{TOKEN_PROTOCOL_PREFIX}{token}")];
        let c = Credentials {
            origin: None,
            query_token: None,
            protocols: &protocols,
        };
        assert_eq!(
            policy
                .admit(&c, &["news"], 10)
                .map(|a| (a.protocol, a.grant.map(|g| g.expires))),
            Ok((Some(protocols[1].as_str()), Some(50)))
        );
    }
}

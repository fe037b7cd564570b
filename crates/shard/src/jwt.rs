//! JSON Web Tokens (RFC 7519) as connection tokens, verified with `jsonwebtoken`:
//! HS256/384/512 with a shared secret, RS256/384/512, PS256/384/512, ES256/384 and
//! EdDSA with a public key given as PEM or taken from a JWKS document.
//!
//! What a token must be to be admitted:
//! - its header's `alg` is one the configured keys can check: an HMAC algorithm only with
//!   the secret, any other only with a public key of that type (so a token "signed" with
//!   the public key as an HMAC secret — algorithm confusion — and `alg: none` are
//!   refused); a JWKS key is found by the header's `kid` (a token without `kid` is
//!   checked against the only key of its type, if there is exactly one), and a key whose
//!   own `alg` differs from the header's is refused;
//! - `exp` (required) is after now, `nbf` (optional) not after now, both on the shard's
//!   clock without leeway;
//! - with an audience or issuer configured, `aud` / `iss` are present and match;
//!   without one, `aud` / `iss` are not checked;
//! - `sub`, when present, is a string of 1 to [`MAX_SUB_BYTES`] bytes (it becomes the
//!   connection's user id, which the disconnect API names);
//! - the channels claim (`channels` unless configured otherwise), when present, is a
//!   list of channel names, `*`, or prefix patterns such as `news.*` (one string is taken
//!   as a list of one); a missing claim grants no channel.
//!
//! The shard verifies on its own thread (one signature check per handshake or refresh);
//! the JWKS is fetched by the sidecar, which swaps a new [`KeySet`] into the shared
//! [`JwksKeys`] and is asked to fetch early when a token names an unknown `kid`.

use crate::auth::AuthError;
use crate::token_grant::{Grant, GrantedChannels};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};
use std::sync::{Arc, RwLock};

/// Shortest HMAC secret accepted (RFC 7518 §3.2: at least the hash size of HS256).
pub const MIN_JWT_SECRET_BYTES: usize = 32;
/// Most keys taken from one JWKS document (the rest are skipped).
pub const MAX_JWKS_KEYS: usize = 64;
/// Longest `sub` a token may name (the disconnect API's limit too).
pub const MAX_SUB_BYTES: usize = 256;
/// The default name of the claim that lists a token's channels.
pub const DEFAULT_CHANNELS_CLAIM: &str = "channels";

/// Why the JWT settings are refused at startup.
#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    /// The HMAC secret is shorter than [`MIN_JWT_SECRET_BYTES`].
    #[error("the JWT secret has {0} bytes; at least {MIN_JWT_SECRET_BYTES} are needed")]
    ShortSecret(usize),
    /// The public key PEM is neither an RSA, an EC nor an Ed25519 public key.
    #[error("the JWT public key is not an RSA, EC or Ed25519 public key in PEM")]
    BadPublicKey,
    /// No key at all: no token could ever be verified.
    #[error("JWT needs a secret, a public key or a JWKS URL")]
    NoKey,
}

/// Why a JWKS document is refused as a whole (single unusable keys are skipped).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwksError {
    /// Not a JSON object with a `keys` array.
    #[error("not a JWKS document (a JSON object with a `keys` array)")]
    NotJwks,
    /// Not a single key usable for verifying signatures.
    #[error("the JWKS has no usable signature key")]
    NoUsableKey,
}

/// Which algorithms a public key can check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    /// An EC key from PEM, curve not inspected (a wrong curve fails the signature check).
    Ec,
    Ed,
}

impl KeyKind {
    fn accepts(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::EcP256 => alg == ES256,
            KeyKind::EcP384 => alg == ES384,
            KeyKind::Ec => matches!(alg, ES256 | ES384),
            KeyKind::Ed => alg == EdDSA,
        }
    }
}

/// One public key.
#[derive(Clone)]
struct PublicKey {
    kid: Option<String>,
    kind: KeyKind,
    /// The algorithm the key is restricted to (a JWK's `alg`), if any.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

impl PublicKey {
    fn accepts(&self, alg: Algorithm) -> bool {
        self.kind.accepts(alg) && self.alg.is_none_or(|own| own == alg)
    }
}

/// The verification keys of one JWKS document.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<PublicKey>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<_> = self.keys.iter().map(|k| k.kid.as_deref()).collect();
        f.debug_struct("KeySet").field("kids", &kids).finish()
    }
}

impl KeySet {
    /// Reads a JWKS document. Keys that cannot verify signatures (symmetric `oct` keys,
    /// `use: enc`, encryption algorithms, unsupported curves, malformed entries) and keys
    /// past the first [`MAX_JWKS_KEYS`] are skipped; Ok carries the set and how many were
    /// skipped.
    pub fn from_jwks(json: &[u8]) -> Result<(KeySet, usize), JwksError> {
        let Ok(Value::Object(mut doc)) = serde_json::from_slice::<Value>(json) else {
            return Err(JwksError::NotJwks);
        };
        let Some(Value::Array(entries)) = doc.remove("keys") else {
            return Err(JwksError::NotJwks);
        };
        let total = entries.len();
        let keys: Vec<PublicKey> = entries
            .into_iter()
            .filter_map(|entry| serde_json::from_value::<Jwk>(entry).ok())
            .filter_map(|jwk| public_key_of(&jwk))
            .take(MAX_JWKS_KEYS)
            .collect();
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        let skipped = total - keys.len();
        Ok((KeySet { keys }, skipped))
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key for a token with header `kid` and `alg`: by `kid`, or (without one) the
    /// only key that accepts `alg`.
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Result<&PublicKey, AuthError> {
        match kid {
            Some(kid) => {
                let key = self
                    .keys
                    .iter()
                    .find(|k| k.kid.as_deref() == Some(kid))
                    .ok_or(AuthError::UnknownKey)?;
                if key.accepts(alg) {
                    Ok(key)
                } else {
                    Err(AuthError::BadToken)
                }
            }
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.accepts(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => Ok(key),
                    _ => Err(AuthError::UnknownKey),
                }
            }
        }
    }
}

/// A JWK's verification key, or None when it cannot verify signatures.
fn public_key_of(jwk: &Jwk) -> Option<PublicKey> {
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyKind::Rsa,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => KeyKind::EcP256,
            EllipticCurve::P384 => KeyKind::EcP384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            KeyKind::Ed
        }
        // Symmetric keys never verify tokens from a key set: that would make a public
        // document a signing secret.
        AlgorithmParameters::OctetKeyPair(_) | AlgorithmParameters::OctetKey(_) => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(key_alg) => Some(signature_algorithm(key_alg)?),
    };
    if alg.is_some_and(|alg| !kind.accepts(alg)) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(PublicKey {
        kid: jwk.common.key_id.clone(),
        kind,
        alg,
        key,
    })
}

/// The signature algorithm a JWK's `alg` names (None for encryption algorithms).
fn signature_algorithm(key_alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match key_alg {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        KeyAlgorithm::RSA1_5 | KeyAlgorithm::RSA_OAEP | KeyAlgorithm::RSA_OAEP_256 => {
            return None;
        }
    })
}

/// The JWKS keys the shards verify with, replaced whole by the sidecar's fetcher.
///
/// Calling contract: shards call [`JwksKeys::current`] per verification (a read lock and
/// one `Arc` clone); the fetcher calls [`JwksKeys::replace`] after each successful fetch
/// and waits for the callback given to [`JwksKeys::new`], which a shard calls (from its
/// own thread, so it must not block) when a token names a `kid` the set does not hold.
pub struct JwksKeys {
    current: RwLock<Arc<KeySet>>,
    on_unknown_kid: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for JwksKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksKeys")
            .field("current", &self.current())
            .finish()
    }
}

impl JwksKeys {
    /// An empty key set (every token is refused until the first fetch);
    /// `on_unknown_kid` asks the fetcher for an early fetch.
    pub fn new(on_unknown_kid: impl Fn() + Send + Sync + 'static) -> Self {
        JwksKeys {
            current: RwLock::new(Arc::new(KeySet::default())),
            on_unknown_kid: Box::new(on_unknown_kid),
        }
    }

    /// Puts a freshly fetched set in place for every later verification.
    pub fn replace(&self, set: KeySet) {
        let set = Arc::new(set);
        match self.current.write() {
            Ok(mut current) => *current = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
    }

    /// The set in use.
    pub fn current(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(current) => Arc::clone(&current),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

/// The JWT settings, as given on the command line.
#[derive(Default)]
pub struct JwtSettings {
    /// HMAC secret for HS256/384/512 (at least [`MIN_JWT_SECRET_BYTES`]).
    pub secret: Option<Vec<u8>>,
    /// A public key in PEM (RSA, EC or Ed25519).
    pub public_key_pem: Option<Vec<u8>>,
    /// Keys from a JWKS URL, kept current by the sidecar.
    pub jwks: Option<Arc<JwksKeys>>,
    /// Required `aud`, if any.
    pub audience: Option<String>,
    /// Required `iss`, if any.
    pub issuer: Option<String>,
    /// The claim listing the channels (default [`DEFAULT_CHANNELS_CLAIM`]).
    pub channels_claim: Option<String>,
}

/// Verifies JWTs (see the module doc for the rules).
#[derive(Clone)]
pub struct JwtRules {
    secret: Option<DecodingKey>,
    public_key: Option<PublicKey>,
    jwks: Option<Arc<JwksKeys>>,
    audience: Option<String>,
    issuer: Option<String>,
    channels_claim: String,
}

impl std::fmt::Debug for JwtRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtRules")
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("public_key", &self.public_key.as_ref().map(|k| k.kind))
            .field("jwks", &self.jwks)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("channels_claim", &self.channels_claim)
            .finish()
    }
}

impl JwtRules {
    /// Checks the settings: the secret's length, the public key's format, at least one key.
    pub fn new(settings: JwtSettings) -> Result<Self, JwtConfigError> {
        let secret = match settings.secret {
            Some(s) if s.len() < MIN_JWT_SECRET_BYTES => {
                return Err(JwtConfigError::ShortSecret(s.len()));
            }
            Some(s) => Some(DecodingKey::from_secret(&s)),
            None => None,
        };
        let public_key = match settings.public_key_pem {
            Some(pem) => Some(public_key_from_pem(&pem).ok_or(JwtConfigError::BadPublicKey)?),
            None => None,
        };
        if secret.is_none() && public_key.is_none() && settings.jwks.is_none() {
            return Err(JwtConfigError::NoKey);
        }
        Ok(JwtRules {
            secret,
            public_key,
            jwks: settings.jwks,
            audience: settings.audience,
            issuer: settings.issuer,
            channels_claim: settings
                .channels_claim
                .unwrap_or_else(|| DEFAULT_CHANNELS_CLAIM.to_owned()),
        })
    }

    /// Verifies `token` at `unix_now` and returns what it grants.
    pub(crate) fn verify(&self, token: &str, unix_now: u64) -> Result<Grant, AuthError> {
        let header = decode_header(token).map_err(|_| AuthError::BadToken)?;
        let alg = header.alg;
        let jwks_set;
        let key = if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            self.secret.as_ref().ok_or(AuthError::BadToken)?
        } else if let Some(public) = &self.public_key {
            if !public.accepts(alg) {
                return Err(AuthError::BadToken);
            }
            &public.key
        } else if let Some(jwks) = &self.jwks {
            jwks_set = jwks.current();
            match jwks_set.find(header.kid.as_deref(), alg) {
                Ok(key) => &key.key,
                Err(err) => {
                    if err == AuthError::UnknownKey {
                        (jwks.on_unknown_kid)();
                    }
                    return Err(err);
                }
            }
        } else {
            return Err(AuthError::BadToken);
        };
        let claims = decode::<Map<String, Value>>(token, key, &self.validation(alg))
            .map_err(|err| match err.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidAudience
                | jsonwebtoken::errors::ErrorKind::InvalidIssuer => AuthError::WrongClaims,
                jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(claim) if claim != "exp" => {
                    AuthError::WrongClaims
                }
                _ => AuthError::BadToken,
            })?
            .claims;
        self.grant_of(&claims, unix_now)
    }

    /// Signature, `alg`, `exp` present, and `aud`/`iss` when configured; times are
    /// checked by [`JwtRules::grant_of`] on the shard's clock.
    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        let mut required = vec!["exp"];
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        validation
    }

    /// The grant of verified claims at `unix_now`.
    fn grant_of(&self, claims: &Map<String, Value>, unix_now: u64) -> Result<Grant, AuthError> {
        let expires = claims
            .get("exp")
            .and_then(numeric_date)
            .ok_or(AuthError::BadToken)?;
        if expires <= unix_now {
            return Err(AuthError::Expired);
        }
        match claims.get("nbf") {
            None => {}
            Some(nbf) => match numeric_date(nbf) {
                Some(nbf) if nbf <= unix_now => {}
                Some(_) => return Err(AuthError::NotYetValid),
                None => return Err(AuthError::BadToken),
            },
        }
        let sub = match claims.get("sub") {
            None => None,
            Some(Value::String(sub)) if (1..=MAX_SUB_BYTES).contains(&sub.len()) => {
                Some(sub.as_str().into())
            }
            Some(_) => return Err(AuthError::BadToken),
        };
        let mut channels = GrantedChannels::default();
        let listed_ok = match claims.get(&self.channels_claim) {
            None => true,
            Some(Value::String(one)) => channels.add(one),
            Some(Value::Array(items)) => items
                .iter()
                .all(|item| item.as_str().is_some_and(|c| channels.add(c))),
            Some(_) => false,
        };
        if !listed_ok {
            return Err(AuthError::BadToken);
        }
        Ok(Grant {
            expires,
            sub,
            channels,
        })
    }
}

/// A NumericDate (seconds since the epoch, possibly fractional) as whole seconds.
fn numeric_date(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
                .map(|f| f as u64)
        }),
        _ => None,
    }
}

/// An RSA, EC or Ed25519 public key from PEM.
fn public_key_from_pem(pem: &[u8]) -> Option<PublicKey> {
    let (kind, key) = if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        (KeyKind::Rsa, key)
    } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        (KeyKind::Ec, key)
    } else {
        (KeyKind::Ed, DecodingKey::from_ed_pem(pem).ok()?)
    };
    Some(PublicKey {
        kid: None,
        kind,
        alg: None,
        key,
    })
}

#[cfg(test)]
mod tests;

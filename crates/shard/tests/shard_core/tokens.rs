//! Token support the token-using modules share: one secret for `v1` tokens and HS256
//! JWTs, the fake clock's unix time, and a JWT minter.

use jsonwebtoken::{EncodingKey, Header, encode};
use ringcast_shard::{AuthPolicy, JwtRules, JwtSettings, ShardConfig};
use serde_json::json;

pub(crate) const SECRET: &[u8] = b"a secret of at least thirty-two bytes";
/// Unix time (ms) when the fake clock reads 0.
pub(crate) const UNIX_MS_AT_ZERO: u64 = 1_700_000_000_000;
/// Unix seconds when the fake clock reads 0.
pub(crate) const T0: u64 = UNIX_MS_AT_ZERO / 1000;

/// Requires tokens: `v1` tokens and HS256 JWTs signed with [`SECRET`].
pub(crate) fn require_tokens(c: &mut ShardConfig) {
    let jwt = JwtRules::new(JwtSettings {
        secret: Some(SECRET.to_vec()),
        ..Default::default()
    })
    .expect("jwt rules");
    c.auth = AuthPolicy::new(vec![], Some(SECRET.to_vec())).with_jwt(jwt);
    c.unix_ms_at_zero = UNIX_MS_AT_ZERO;
}

/// A JWT for `sub` and `channels` that expires `secs` after the fake clock's start.
pub(crate) fn jwt(sub: &str, channels: &[&str], secs: u64) -> String {
    let claims = json!({"sub": sub, "channels": channels, "exp": T0 + secs});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .expect("jwt")
}

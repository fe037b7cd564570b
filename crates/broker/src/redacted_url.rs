//! A Redis URL fit for logs and errors: the password never appears.
//!
//! `redis://user:secret@host:6379/0` shows as `redis://user:***@host:6379/0`; a user
//! part without `:` (which a reader may have meant as the password) shows as `***`, and
//! `pass=` in the query (`redis+unix:///run/redis.sock?pass=secret`) as `pass=***`. The
//! user part ends at the last `@`, so a password with a raw `/`, `?` or `@` in it is
//! hidden whole even though the URL does not parse.

use crate::RedisConfig;
use std::fmt;

/// Shown instead of a password.
const HIDDEN: &str = "***";

/// `url` with its password (and any `pass=` query value) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let rest = match rest.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:{HIDDEN}@{host}"),
            None => format!("{HIDDEN}@{host}"),
        },
        None => rest.to_owned(),
    };
    let rest = redact_query_password(&rest);
    match scheme {
        Some(scheme) => format!("{scheme}://{rest}"),
        None => rest,
    }
}

/// Replaces the value of every `pass=` query parameter.
fn redact_query_password(text: &str) -> String {
    let Some((before, query)) = text.split_once('?') else {
        return text.to_owned();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((key @ ("pass" | "password"), _)) => format!("{key}={HIDDEN}"),
            _ => param.to_owned(),
        })
        .collect();
    format!("{before}?{}", params.join("&"))
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("tls_ca", &self.tls_ca)
            .field("prefix", &self.prefix)
            .field("mode", &self.mode)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("batch_window", &self.batch_window)
            .field("batch_size", &self.batch_size)
            .field("ping_every", &self.ping_every)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RedisMode;

    #[test]
    fn passwords_are_hidden() {
        for (url, shown) in [
            (
                "redis://user:s3cret@10.0.0.1:6379/0",
                "redis://user:***@10.0.0.1:6379/0",
            ),
            ("redis://:s3cret@redis:6379", "redis://:***@redis:6379"),
            ("redis://s3cret@redis:6379", "redis://***@redis:6379"),
            (
                "rediss://user:s3/c?r@t@host:6380/1",
                "rediss://user:***@host:6380/1",
            ),
            ("user:s3cret@host:6379", "user:***@host:6379"),
            // TLS and ACL users (`rediss://user:password@host:port`).
            (
                "rediss://alice:s3cret@redis.example:6380/0",
                "rediss://alice:***@redis.example:6380/0",
            ),
            (
                "rediss://:s3cret@10.0.0.1:6380",
                "rediss://:***@10.0.0.1:6380",
            ),
            (
                "REDISS://alice:s3cret@[::1]:6380",
                "REDISS://alice:***@[::1]:6380",
            ),
            (
                "valkeys://alice:s3cret@host:6380",
                "valkeys://alice:***@host:6380",
            ),
            // A password with `:`, `#` or percent-escapes is hidden whole.
            (
                "rediss://alice:s3:c#r%40t@host:6380",
                "rediss://alice:***@host:6380",
            ),
            (
                "rediss://alice:s3cret@host:6380/#insecure",
                "rediss://alice:***@host:6380/#insecure",
            ),
            (
                "redis+unix:///run/redis.sock?db=1&pass=s3cret",
                "redis+unix:///run/redis.sock?db=1&pass=***",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn urls_without_a_password_stay_as_they_are() {
        for url in [
            "redis://127.0.0.1:6379/0",
            "rediss://redis.example:6380/0",
            "redis://redis:6379",
            "not a url",
            "",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn the_config_debug_output_hides_the_password() {
        let config = RedisConfig::new(
            "redis://user:s3cret@host:6379/0",
            "rc:",
            RedisMode::Interest,
            1024,
            |c| !c.is_empty(),
        );
        let shown = format!("{config:?}");
        assert!(shown.contains("redis://user:***@host:6379/0"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
        let mut tls = RedisConfig::new(
            "rediss://alice:s3cret@host:6380",
            "rc:",
            RedisMode::Interest,
            1024,
            |c| !c.is_empty(),
        );
        tls.tls_ca = Some("/etc/ringcast/redis-ca.pem".into());
        let shown = format!("{tls:?}");
        assert!(shown.contains("rediss://alice:***@host:6380"), "{shown}");
        assert!(shown.contains("redis-ca.pem"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}

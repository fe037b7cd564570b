//! What a verified token grants a connection: the channels it may subscribe to, until
//! when, and for whom (`sub`). Both token formats (`v1` HMAC tokens and JWTs) end up as
//! a [`Grant`]; an open connection keeps its grant (boxed, so connections admitted
//! without a token pay one pointer) for subscribe commands, refreshes and disconnects.

/// Channel names, prefix patterns (`news.*`: every channel starting with `news.`) and
/// `*` (every channel). Unlike a configuration pattern list, an empty grant allows
/// nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantedChannels {
    all: bool,
    exact: Vec<Box<str>>,
    prefixes: Vec<Box<str>>,
}

impl GrantedChannels {
    /// Adds one item: `*`, a channel name, or a channel-name prefix followed by `*`.
    /// False (and nothing added) for anything else, such as `a*b` or `**`.
    pub(crate) fn add(&mut self, item: &str) -> bool {
        if item == "*" {
            self.all = true;
            return true;
        }
        match item.strip_suffix('*') {
            Some(prefix) if ringcast_proto::is_valid_channel(prefix) => {
                self.prefixes.push(prefix.into());
                true
            }
            Some(_) => false,
            None if ringcast_proto::is_valid_channel(item) => {
                self.exact.push(item.into());
                true
            }
            None => false,
        }
    }

    /// Whether `channel` is granted.
    pub fn allows(&self, channel: &str) -> bool {
        self.all
            || self.exact.iter().any(|e| &**e == channel)
            || self.prefixes.iter().any(|p| channel.starts_with(&**p))
    }
}

/// A verified token's permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Unix seconds at which it ends.
    pub expires: u64,
    /// The user it names (a JWT's `sub`; `v1` tokens name none).
    pub sub: Option<Box<str>>,
    /// The channels it allows.
    pub channels: GrantedChannels,
}

/// An open connection's grant and where its expiry sits on the shard clock.
#[derive(Debug)]
pub(crate) struct ConnGrant {
    /// Shard clock (ms) at which the grant ends and the connection is closed.
    pub(crate) deadline_ms: u64,
    /// When the expiry timer that counts fires (the earliest armed); an earlier-firing
    /// entry left from a refresh is stale and ignored.
    pub(crate) armed_ms: u64,
    /// Shard clock (ms) of the last refresh attempt.
    pub(crate) refreshed_ms: Option<u64>,
    /// The grant.
    pub(crate) grant: Grant,
}

#[cfg(test)]
mod tests {
    use super::GrantedChannels;

    fn granted(items: &[&str]) -> GrantedChannels {
        let mut g = GrantedChannels::default();
        for item in items {
            assert!(g.add(item), "{item}");
        }
        g
    }

    #[test]
    fn an_empty_grant_allows_nothing() {
        assert!(!GrantedChannels::default().allows("news"));
    }

    #[test]
    fn names_prefixes_and_star() {
        let g = granted(&["news", "chat.*"]);
        assert!(g.allows("news"));
        assert!(!g.allows("news2"));
        assert!(g.allows("chat.room1"));
        assert!(!g.allows("chat"));
        assert!(granted(&["*"]).allows("anything"));
    }

    #[test]
    fn malformed_items_are_refused() {
        let mut g = GrantedChannels::default();
        for bad in ["", "a*b", "**", "a b*", "sp ace", "*x"] {
            assert!(!g.add(bad), "{bad:?}");
        }
        assert_eq!(g, GrantedChannels::default());
    }
}

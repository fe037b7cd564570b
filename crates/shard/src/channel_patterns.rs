//! A list of channel names and prefix patterns (`news.*`, `prefix*`): which channels a
//! setting applies to, matched in O(patterns × name) with no allocation.

/// Channel names and prefix patterns; an empty list matches every channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelPatterns {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl ChannelPatterns {
    /// Patterns from a comma-separated list: a name matches itself, `p*` every
    /// channel starting with `p` (a lone `*` every channel). Empty items are ignored.
    pub fn parse(list: &str) -> Self {
        let mut patterns = ChannelPatterns::default();
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item.strip_suffix('*') {
                Some(prefix) => patterns.prefixes.push(prefix.to_owned()),
                None => patterns.exact.push(item.to_owned()),
            }
        }
        patterns
    }

    /// Whether `channel` is matched (always, for an empty list).
    pub fn matches(&self, channel: &str) -> bool {
        (self.exact.is_empty() && self.prefixes.is_empty())
            || self.exact.iter().any(|e| e == channel)
            || self
                .prefixes
                .iter()
                .any(|p| channel.starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::ChannelPatterns;

    #[test]
    fn names_and_prefixes_match_and_an_empty_list_matches_all() {
        let p = ChannelPatterns::parse("news.*, state ,,orders*");
        for yes in ["news.eu", "news.", "state", "orders", "orders-1"] {
            assert!(p.matches(yes), "{yes}");
        }
        for no in ["news", "states", "stat", "x"] {
            assert!(!p.matches(no), "{no}");
        }
        assert!(ChannelPatterns::parse("").matches("anything"));
        assert!(ChannelPatterns::parse("*").matches("anything"));
    }
}

//! A set of shard ids (a bitset that grows with the highest id).

/// Which shards have local subscribers of a channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ShardSet {
    words: Vec<u64>,
}

impl ShardSet {
    /// Adds `shard`; returns whether it was absent.
    pub(crate) fn insert(&mut self, shard: u16) -> bool {
        let (word, bit) = (usize::from(shard) / 64, 1u64 << (shard % 64));
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        let absent = self.words[word] & bit == 0;
        self.words[word] |= bit;
        absent
    }

    /// Removes `shard`; returns whether it was present.
    pub(crate) fn remove(&mut self, shard: u16) -> bool {
        let (word, bit) = (usize::from(shard) / 64, 1u64 << (shard % 64));
        match self.words.get_mut(word) {
            Some(w) if *w & bit != 0 => {
                *w &= !bit;
                true
            }
            _ => false,
        }
    }

    /// Whether no shard is in the set.
    pub(crate) fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// The shards in the set, in increasing order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros();
                rest &= rest - 1;
                Some((i * 64) as u16 + bit as u16)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ShardSet;

    #[test]
    fn insert_remove_iterate() {
        let mut set = ShardSet::default();
        assert!(set.is_empty());
        assert!(set.insert(3));
        assert!(!set.insert(3));
        assert!(set.insert(130));
        assert!(set.insert(0));
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![0, 3, 130]);
        assert!(set.remove(3));
        assert!(!set.remove(3));
        assert!(!set.remove(999));
        assert!(set.remove(0));
        assert!(set.remove(130));
        assert!(set.is_empty());
    }
}

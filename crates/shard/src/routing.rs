//! Which shard owns a channel: a stable hash of the name modulo the shard count, the
//! same on every thread and every run.

/// FNV-1a 64 of the channel name, modulo `shards` (which must be at least 1).
pub fn owner_of(channel: &str, shards: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in channel.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % shards.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::owner_of;

    #[test]
    fn stable_and_in_range() {
        assert_eq!(owner_of("news", 4), owner_of("news", 4));
        for shards in 1..9 {
            for i in 0..100 {
                assert!(owner_of(&format!("ch-{i}"), shards) < shards);
            }
        }
    }

    #[test]
    fn spreads_channels_over_shards() {
        let mut seen = [0usize; 4];
        for i in 0..1000 {
            seen[owner_of(&format!("ch-{i}"), 4)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 150), "{seen:?}");
    }
}

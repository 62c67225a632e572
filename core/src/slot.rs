//! Cluster hash slots. redis-rs computes them internally but does not export
//! the function, so this applies the same rule with the same `crc16` crate:
//! CRC16-XMODEM of the key's hash tag (the part inside the first `{...}`,
//! when non-empty) or of the whole key, modulo 16384.

/// The hash slot of a key. Keys sharing a hash tag share a slot, so their
/// order lines form one atomic group.
///
/// ```
/// use redis_inventory_client::slot;
/// assert_eq!(slot(b"{cart7}:tee"), slot(b"{cart7}:mug"));
/// ```
pub fn slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .map(|close| &rest[..close])
        })
        .filter(|tag| !tag.is_empty())
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(tagged) % 16384
}

#[cfg(test)]
mod tests {
    use super::slot;

    #[test]
    fn matches_redis_cluster_keyslot() {
        // Values from CLUSTER KEYSLOT on a real server.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_eq!(slot(b"{}foo"), slot(b"{}foo"));
        assert_ne!(slot(b"{}foo"), slot(b"foo"));
    }
}

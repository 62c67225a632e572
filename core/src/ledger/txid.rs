//! Transaction ids: client-chosen, binary safe, 1 to 128 bytes, stored inline
//! when short so that a typical open reservation needs no extra allocation.

use super::error::{Error, Result};
use std::fmt;
use std::hash::{Hash, Hasher};

/// Longest accepted txid, in bytes.
pub const MAX_TXID_LEN: usize = 128;
const INLINE: usize = 22;

/// A validated transaction id (24 bytes; ids up to 22 bytes live inline).
#[derive(Clone)]
pub struct TxId(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl TxId {
    /// Validates the length and copies the bytes.
    pub fn new(bytes: &[u8]) -> Result<TxId> {
        if bytes.is_empty() || bytes.len() > MAX_TXID_LEN {
            return Err(Error::invalid(format!(
                "txid must be 1 to {MAX_TXID_LEN} bytes, got {}",
                bytes.len()
            )));
        }
        Ok(Self::from_valid(bytes))
    }

    /// For bytes already validated (read back from a record).
    pub(crate) fn from_valid(bytes: &[u8]) -> TxId {
        if bytes.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..bytes.len()].copy_from_slice(bytes);
            // Length is at most INLINE (22), so it fits a u8.
            TxId(Repr::Inline {
                len: bytes.len() as u8,
                buf,
            })
        } else {
            TxId(Repr::Heap(bytes.into()))
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, buf } => &buf[..usize::from(*len).min(INLINE)],
            Repr::Heap(b) => b,
        }
    }

    /// Bytes allocated outside the record for this id.
    pub fn heap_bytes(&self) -> usize {
        match &self.0 {
            Repr::Inline { .. } => 0,
            Repr::Heap(b) => b.len(),
        }
    }
}

/// Lets maps keyed by txid be searched by bytes (`Hash` hashes the bytes).
impl std::borrow::Borrow<[u8]> for TxId {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for TxId {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl Eq for TxId {}

impl Hash for TxId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl PartialOrd for TxId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TxId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

/// As quoted in error messages and logs (see `quote`).
impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&super::error::quote(self.as_bytes()))
    }
}

impl fmt::Debug for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TxId({:?})", String::from_utf8_lossy(self.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_24_bytes() {
        assert_eq!(std::mem::size_of::<TxId>(), 24);
    }

    #[test]
    fn rejects_empty_and_long() {
        assert!(TxId::new(b"").is_err());
        assert!(TxId::new(&[7u8; 129]).is_err());
        assert_eq!(TxId::new(&[7u8; 128]).unwrap().as_bytes(), &[7u8; 128][..]);
    }

    #[test]
    fn inline_and_heap_compare_by_bytes() {
        let short = TxId::new(b"order-1").unwrap();
        assert_eq!(short.heap_bytes(), 0);
        let long = TxId::new(&[b'x'; 40]).unwrap();
        assert_eq!(long.heap_bytes(), 40);
        assert_eq!(long, TxId::new(&[b'x'; 40]).unwrap());
        assert_ne!(short, long);
    }
}

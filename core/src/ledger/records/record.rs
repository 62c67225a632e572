//! One record in 32 bytes, and the record states.

use super::chunked::Chunked;
use crate::ledger::txid::TxId;

/// The life of one transaction on one SKU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    Reserved,
    Confirmed,
    Cancelled,
    Expired,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Reserved => "RESERVED",
            State::Confirmed => "CONFIRMED",
            State::Cancelled => "CANCELLED",
            State::Expired => "EXPIRED",
        }
    }

    pub fn code(self) -> u8 {
        match self {
            State::Reserved => 0,
            State::Confirmed => 1,
            State::Cancelled => 2,
            State::Expired => 3,
        }
    }

    pub fn from_code(code: u8) -> Option<State> {
        Some(match code {
            0 => State::Reserved,
            1 => State::Confirmed,
            2 => State::Cancelled,
            3 => State::Expired,
            _ => return None,
        })
    }

    pub fn parse(word: &[u8]) -> Option<State> {
        [
            State::Reserved,
            State::Confirmed,
            State::Cancelled,
            State::Expired,
        ]
        .into_iter()
        .find(|s| s.as_str().as_bytes().eq_ignore_ascii_case(word))
    }
}

const FREE: u8 = 7;
const INLINE: usize = 16;
const QTY_BITS: u32 = 53;
const QTY_MASK: u64 = (1 << QTY_BITS) - 1;
const STATE_SHIFT: u32 = 53;
const LEN_SHIFT: u32 = 56;

/// One record in 32 bytes: the txid (inline up to 16 bytes, else the index of
/// its bytes in the side table), one word packing qty (53 bits), state
/// (3 bits) and txid length (8 bits), and a time (the deadline while
/// RESERVED; kept as the retention reference afterwards).
#[derive(Clone)]
pub(crate) struct Record {
    id: [u8; INLINE],
    packed: u64,
    pub(super) time: u64,
}

impl Record {
    /// A record of `txid`, whose bytes live at `long` in the side table when
    /// they do not fit inline.
    pub(super) fn new(txid: &[u8], long: Option<u32>, state: State, qty: u64, time: u64) -> Record {
        let mut id = [0u8; INLINE];
        match long {
            Some(i) => id[..4].copy_from_slice(&i.to_le_bytes()),
            None => {
                let n = txid.len().min(INLINE);
                id[..n].copy_from_slice(&txid[..n]);
            }
        }
        let packed = (qty & QTY_MASK)
            | (u64::from(state.code()) << STATE_SHIFT)
            | ((txid.len() as u64) << LEN_SHIFT);
        Record { id, packed, time }
    }

    /// Whether a txid this long lives in the side table.
    pub(super) fn is_long(len: usize) -> bool {
        len > INLINE
    }

    pub(super) fn free() -> Record {
        Record {
            id: [0; INLINE],
            packed: u64::from(FREE) << STATE_SHIFT,
            time: 0,
        }
    }

    fn state_code(&self) -> u8 {
        ((self.packed >> STATE_SHIFT) & 0x7) as u8
    }

    pub(super) fn is_free(&self) -> bool {
        self.state_code() == FREE
    }

    pub(super) fn state(&self) -> State {
        State::from_code(self.state_code()).unwrap_or(State::Cancelled)
    }

    pub(super) fn qty(&self) -> u64 {
        self.packed & QTY_MASK
    }

    fn len(&self) -> usize {
        (self.packed >> LEN_SHIFT) as usize
    }

    pub(super) fn set_state(&mut self, state: State) {
        self.packed =
            (self.packed & !(0x7 << STATE_SHIFT)) | (u64::from(state.code()) << STATE_SHIFT);
    }

    pub(super) fn set_qty(&mut self, qty: u64) {
        self.packed = (self.packed & !QTY_MASK) | (qty & QTY_MASK);
    }

    pub(super) fn long_index(&self) -> Option<usize> {
        (self.len() > INLINE)
            .then(|| u32::from_le_bytes([self.id[0], self.id[1], self.id[2], self.id[3]]) as usize)
    }
}

/// A record's txid bytes, resolving long ones through the side table.
pub(super) fn id_bytes<'a>(r: &'a Record, long: &'a Chunked<Box<[u8]>>) -> &'a [u8] {
    match r.long_index() {
        None => &r.id[..r.len().min(INLINE)],
        Some(i) => long.get(i).map_or(&[][..], |b| &b[..]),
    }
}

/// True when `slot` holds a record of `txid`.
pub(super) fn holds(
    slab: &Chunked<Record>,
    long: &Chunked<Box<[u8]>>,
    slot: u32,
    txid: &[u8],
) -> bool {
    slab.get(slot as usize)
        .is_some_and(|r| id_bytes(r, long) == txid)
}

/// (hash of the txid, slot) of the live records in slots `from..to`, in slab
/// order: what an index is built from.
pub(super) fn live_hashes<'a>(
    slab: &'a Chunked<Record>,
    long: &'a Chunked<Box<[u8]>>,
    hasher: &'a ahash::RandomState,
    from: usize,
    to: usize,
) -> impl Iterator<Item = (u64, u32)> + 'a {
    slab.range(from, to)
        .enumerate()
        .filter(|(_, r)| !r.is_free())
        .map(move |(i, r)| (hasher.hash_one(id_bytes(r, long)), (from + i) as u32))
}

/// A live record, readable with its txid.
#[derive(Clone, Copy)]
pub(crate) struct Rec<'a> {
    pub(super) r: &'a Record,
    pub(super) long: &'a Chunked<Box<[u8]>>,
}

impl<'a> Rec<'a> {
    pub fn state(&self) -> State {
        self.r.state()
    }

    pub fn qty(&self) -> u64 {
        self.r.qty()
    }

    pub fn time(&self) -> u64 {
        self.r.time
    }

    pub fn txid_bytes(&self) -> &'a [u8] {
        id_bytes(self.r, self.long)
    }

    pub fn txid(&self) -> TxId {
        TxId::from_valid(self.txid_bytes())
    }
}

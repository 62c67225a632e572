//! The persisted encoding of a key (RDB, DUMP/RESTORE, MIGRATE), versioned by
//! `ENCODING_VERSION` (the data type's encver). A key is saved as a header
//! buffer followed by record chunks, each a bincode buffer, so a large key
//! never needs one huge buffer. Decoding checks every field and never trusts
//! a length from the payload with a large allocation.

use super::buyers::BuyerId;
use super::effect::RecordParts;
use super::error::{Error, Result};
use super::records::State;
use super::sale::Rules;
use super::sku::{Header, Sku};
use super::txid::TxId;
use bincode::{Decode, Encode};

/// Encoding version written with every key (the data type's encver).
/// `decode` dispatches on the version a payload carries to one decoder per
/// version, so a new format adds a decoder and keeps reading the old ones.
/// Version 2 (flash-sale rules) adds the rules and the buyer count to the
/// header, a buyer and a second quantity to each record, and chunks of
/// buyers' bought units after the records. Version 3 (the change feed)
/// adds the feed switch and the `lowstock` threshold to the header.
pub const ENCODING_VERSION: i32 = 3;
/// Buyers per chunk.
const BUYER_CHUNK: usize = 4096;
/// Records per chunk.
pub const CHUNK: usize = 1024;
/// Largest buffer decode accepts: a full chunk of 128-byte txids fits easily.
const LIMIT: usize = 1 << 20;

#[derive(Encode, Decode)]
struct WireHeader {
    stock: i64,
    sold: i64,
    version: u64,
    records: u64,
}

#[derive(Encode, Decode)]
struct WireRecord {
    txid: Vec<u8>,
    state: u8,
    qty: i64,
    time: u64,
}

#[derive(Encode, Decode)]
struct WireHeaderV2 {
    stock: i64,
    sold: i64,
    version: u64,
    records: u64,
    limit: u64,
    start: u64,
    end: u64,
    buyers: u64,
}

#[derive(Encode, Decode)]
struct WireHeaderV3 {
    v2: WireHeaderV2,
    feed: bool,
    low: u64,
}

#[derive(Encode, Decode)]
struct WireRecordV2 {
    txid: Vec<u8>,
    state: u8,
    qty: i64,
    time: u64,
    /// Empty: no buyer.
    buyer: Vec<u8>,
    alt: i64,
}

#[derive(Encode, Decode)]
struct WireBuyer {
    id: Vec<u8>,
    bought: i64,
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<LIMIT>()
}

fn malformed(what: impl std::fmt::Display) -> Error {
    Error::invalid(format!("malformed inventory payload: {what}"))
}

fn encode_header(sku: &Sku, buyers: u64) -> Vec<u8> {
    let h = sku.header();
    let r = sku.rules();
    let wire = WireHeaderV3 {
        v2: WireHeaderV2 {
            stock: h.stock,
            sold: h.sold,
            version: h.version,
            records: h.records,
            limit: r.limit,
            start: r.start,
            end: r.end,
            buyers,
        },
        feed: r.feed,
        low: r.low,
    };
    bincode::encode_to_vec(wire, config()).unwrap_or_default()
}

fn encode_chunk(records: &[RecordParts]) -> Vec<u8> {
    let wire: Vec<WireRecordV2> = records
        .iter()
        .map(|r| WireRecordV2 {
            txid: r.txid.as_bytes().to_vec(),
            state: r.state.code(),
            qty: r.qty,
            time: r.time,
            buyer: r
                .buyer
                .as_ref()
                .map_or(Vec::new(), |b| b.as_bytes().to_vec()),
            alt: r.alt,
        })
        .collect();
    bincode::encode_to_vec(wire, config()).unwrap_or_default()
}

fn encode_buyers(buyers: &[(BuyerId, i64)]) -> Vec<u8> {
    let wire: Vec<WireBuyer> = buyers
        .iter()
        .map(|(b, bought)| WireBuyer {
            id: b.as_bytes().to_vec(),
            bought: *bought,
        })
        .collect();
    bincode::encode_to_vec(wire, config()).unwrap_or_default()
}

fn decode_exact<T: Decode<()>>(buf: &[u8]) -> Result<T> {
    let (value, used) = bincode::decode_from_slice(buf, config()).map_err(malformed)?;
    if used != buf.len() {
        return Err(malformed("trailing bytes"));
    }
    Ok(value)
}

fn decode_header(buf: &[u8]) -> Result<Header> {
    let w: WireHeader = decode_exact(buf)?;
    Ok(Header {
        stock: w.stock,
        sold: w.sold,
        version: w.version,
        records: w.records,
    })
}

/// A record's four fields as every version stores them, checked.
fn record(txid: &[u8], state: u8, qty: i64, time: u64) -> Result<RecordParts> {
    Ok(RecordParts {
        txid: TxId::new(txid).map_err(malformed)?,
        state: State::from_code(state).ok_or_else(|| malformed("unknown state"))?,
        qty,
        time,
        buyer: None,
        alt: 0,
    })
}

fn decode_chunk(buf: &[u8]) -> Result<Vec<RecordParts>> {
    let wire: Vec<WireRecord> = decode_exact(buf)?;
    wire.into_iter()
        .map(|w| record(&w.txid, w.state, w.qty, w.time))
        .collect()
}

fn decode_chunk_v2(buf: &[u8]) -> Result<Vec<RecordParts>> {
    let wire: Vec<WireRecordV2> = decode_exact(buf)?;
    wire.into_iter()
        .map(|w| {
            Ok(RecordParts {
                buyer: match w.buyer.as_slice() {
                    [] => None,
                    b => Some(BuyerId::new(b).map_err(malformed)?),
                },
                alt: w.alt,
                ..record(&w.txid, w.state, w.qty, w.time)?
            })
        })
        .collect()
}

fn decode_buyers(buf: &[u8]) -> Result<Vec<(BuyerId, i64)>> {
    let wire: Vec<WireBuyer> = decode_exact(buf)?;
    wire.into_iter()
        .map(|w| Ok((BuyerId::new(&w.id).map_err(malformed)?, w.bought)))
        .collect()
}

/// Rebuilds a key saved with encoding `version`, pulling each of its
/// buffers from `next`. Any inconsistency is an error, never a partial key;
/// an unknown version is refused before anything is read.
pub fn decode(version: i32, next: impl FnMut() -> Result<Vec<u8>>) -> Result<Sku> {
    match version {
        1 => decode_v1(next),
        2 => decode_v2(next, |b| Ok((decode_exact(b)?, Rules::default()))),
        3 => decode_v2(next, |b| {
            let w: WireHeaderV3 = decode_exact(b)?;
            let extra = Rules {
                feed: w.feed,
                low: w.low,
                ..Rules::default()
            };
            Ok((w.v2, extra))
        }),
        _ => Err(Error::invalid(format!(
            "cannot load encoding version {version}; this module reads versions 1 to {ENCODING_VERSION}"
        ))),
    }
}

/// Version 1: a header buffer, then chunks of at most `CHUNK` records.
fn decode_v1(mut next_chunk: impl FnMut() -> Result<Vec<u8>>) -> Result<Sku> {
    let h = decode_header(&next_chunk()?)?;
    let mut sku = Sku::from_header(h).map_err(malformed)?;
    let mut loaded = 0u64;
    while loaded < h.records {
        let chunk = decode_chunk(&next_chunk()?)?;
        if chunk.is_empty() {
            return Err(malformed("empty record chunk"));
        }
        for r in chunk {
            sku.restore_record(r).map_err(malformed)?;
            loaded += 1;
        }
    }
    if loaded != h.records {
        return Err(malformed("record count does not match header"));
    }
    Ok(sku)
}

/// Versions 2 and 3: a header buffer with the rules and the buyer count
/// (`header` reads it: version 3 adds the feed's rules), chunks of at most
/// `CHUNK` records, then chunks of at most `BUYER_CHUNK` buyers.
fn decode_v2(
    mut next_chunk: impl FnMut() -> Result<Vec<u8>>,
    header: impl FnOnce(&[u8]) -> Result<(WireHeaderV2, Rules)>,
) -> Result<Sku> {
    let (w, extra) = header(&next_chunk()?)?;
    let h = Header {
        stock: w.stock,
        sold: w.sold,
        version: w.version,
        records: w.records,
    };
    let rules = Rules {
        limit: w.limit,
        start: w.start,
        end: w.end,
        ..extra
    };
    rules.check().map_err(malformed)?;
    let mut sku = Sku::from_header(h).map_err(malformed)?;
    sku.rules = rules;
    let mut loaded = 0u64;
    while loaded < h.records {
        let chunk = decode_chunk_v2(&next_chunk()?)?;
        if chunk.is_empty() || chunk.len() as u64 > h.records - loaded {
            return Err(malformed("record chunk does not match header"));
        }
        for r in chunk {
            sku.restore_record(r).map_err(malformed)?;
            loaded += 1;
        }
    }
    let mut buyers = 0u64;
    while buyers < w.buyers {
        let chunk = decode_buyers(&next_chunk()?)?;
        if chunk.is_empty() || chunk.len() as u64 > w.buyers - buyers {
            return Err(malformed("buyer chunk does not match header"));
        }
        buyers += chunk.len() as u64;
        sku.restore_buyers(&chunk).map_err(malformed)?;
    }
    Ok(sku)
}

/// Writes the buffers `decode` reads back: header first, then chunks of
/// `CHUNK` records, one at a time so a large key never builds them all,
/// then the buyers' bought units.
pub fn encode(sku: &Sku, mut sink: impl FnMut(&[u8])) {
    let buyers = sku.buyer_parts().count() as u64;
    sink(&encode_header(sku, buyers));
    let mut chunk = Vec::with_capacity(CHUNK.min(sku.records_len()));
    for r in sku.record_parts() {
        chunk.push(r);
        if chunk.len() == CHUNK {
            sink(&encode_chunk(&chunk));
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        sink(&encode_chunk(&chunk));
    }
    let mut list = Vec::with_capacity(BUYER_CHUNK.min(buyers as usize));
    for b in sku.buyer_parts() {
        list.push(b);
        if list.len() == BUYER_CHUNK {
            sink(&encode_buyers(&list));
            list.clear();
        }
    }
    if !list.is_empty() {
        sink(&encode_buyers(&list));
    }
}

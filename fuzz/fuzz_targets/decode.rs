//! Any RDB payload the module's loader can be handed (a corrupted file, a
//! DUMP resealed with a valid checksum): decoding answers, never panics, and
//! whatever it accepts passes the key's audit and survives a round trip.
//! Input: byte 0 is the encoding version; then buffers, each a
//! little-endian u16 length and that many bytes (cut short at the end).
#![no_main]

use inventory_core::ledger::{decode, encode, Error, ENCODING_VERSION};
use libfuzzer_sys::fuzz_target;

/// The buffers `data` holds, in the input format above.
fn buffers(mut rest: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while rest.len() >= 2 {
        let n = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        out.push(rest[2..2 + n].to_vec());
        rest = &rest[2 + n..];
    }
    out
}

fn from(bufs: Vec<Vec<u8>>) -> impl FnMut() -> Result<Vec<u8>, Error> {
    let mut it = bufs.into_iter();
    move || it.next().ok_or_else(|| Error::invalid("truncated"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&version, rest)) = data.split_first() else {
        return;
    };
    let Ok(sku) = decode(i32::from(version as i8), from(buffers(rest))) else {
        return;
    };
    sku.audit().expect("a key that loads passes its audit");
    let mut saved = Vec::new();
    encode(&sku, |b| saved.push(b.to_vec()));
    let again = decode(ENCODING_VERSION, from(saved.clone())).expect("a saved key loads");
    let mut resaved = Vec::new();
    encode(&again, |b| resaved.push(b.to_vec()));
    assert_eq!(saved, resaved, "a loaded key saves to the same bytes");
});

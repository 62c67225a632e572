//! The inventory ledger: plain Rust, no Redis types. Everything the module
//! decides lives here and is tested without a server.

mod chunked;
mod codec;
mod effect;
mod error;
mod index;
mod records;
mod sku;
mod stats;
mod txid;

pub use codec::{decode, encode, ENCODING_VERSION};
pub use effect::{Effect, RecordParts};
pub use error::{Error, Result};
pub use records::State;
pub use sku::{Effects, Event, Header, Plan, Policy, Sku, Status, Ttl, TxView, View, MAX_AMOUNT};
pub use stats::Stats;
pub use txid::{TxId, MAX_TXID_LEN};

#[cfg(test)]
mod model_tests;

//! The inventory ledger: plain Rust, no Redis types. Everything the module
//! decides lives here and is tested without a server.

mod apply;
mod buyers;
mod codec;
mod effect;
mod error;
mod feed;
mod multi;
mod plan;
mod records;
mod restore;
mod sale;
mod sku;
mod stats;
mod status;
mod txid;
mod validate;
mod waiting;

pub use buyers::{BuyerId, BuyerView, MAX_BUYER_LEN, MAX_BUYER_UNITS};
pub use codec::{decode, encode, ENCODING_VERSION};
pub(crate) use effect::std_int;
pub use effect::{Effect, RecordParts};
pub use error::{code, quote, Error, Result, QUOTE_MAX};
pub use feed::{
    age_floor, decimal, stream_name, warm_stream_names, FeedEntries, FeedEntry, FeedStamp, Field,
    FieldValue, StreamId, FEED_EVENTS, FEED_FIELDS,
};
pub use multi::MultiPlan;
pub use plan::{Effects, Event, Grant, Plan, Policy, Ttl};
pub use records::{release_big_buffers_with, State};
pub use sale::{Rules, RulesChange};
pub use sku::{Header, Pending, Sku, TxView, View, MAX_AMOUNT};
pub use stats::Stats;
pub use status::Status;
pub use txid::{TxId, MAX_TXID_LEN};
pub use validate::{MAX_TIME, MAX_VERSION};
pub use waiting::{Ahead, WaitQueue, Waiter};

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod multi_tests;
#[cfg(test)]
mod sale_tests;
#[cfg(test)]
mod waiting_tests;

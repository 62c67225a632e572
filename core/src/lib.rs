//! The pure core of redis-inventory, with no Redis types (Cargo, not a
//! convention, keeps it so: this crate does not depend on redis-module).
//!
//! - `ledger`: one SKU's stock, reservations, fences and versions; plans
//!   that decide, effects that apply, the persisted encoding, INFO counters.
//! - `parse`: typed parsing of every command's arguments.
//! - `schedule`: when each key next has housekeeping work.
//!
//! Everything here is unit- and property-tested without a server.

pub mod ledger;
pub mod parse;
pub mod schedule;

//! The Redis shell around the ledger: configs, key access, the data type's
//! callbacks, housekeeping (expiry and purge), command handlers and INFO.

pub mod alloc;
pub mod arg;
pub mod commands;
pub mod config;
pub mod datatype;
pub mod feed;
pub mod gate;
pub mod housekeeping;
pub mod info;
pub mod key;
pub mod propagation;
pub mod release;
pub mod reply;
pub mod schedule;
pub mod server;
pub mod slot_migration;
pub mod stats;
pub mod waiting;

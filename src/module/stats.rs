//! The INFO counters of this process: a leaf every layer may count into.

use inventory_core::ledger::Stats;
use once_cell::sync::Lazy;

/// The INFO counters of this process.
pub static STATS: Lazy<Stats> = Lazy::new(Stats::default);

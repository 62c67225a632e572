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
pub mod shardmap;
pub mod slot;

/// The tests' deterministic random numbers (xorshift64, fixed seed).
#[cfg(test)]
pub(crate) struct TestRng(u64);

#[cfg(test)]
impl TestRng {
    pub(crate) fn new() -> TestRng {
        TestRng(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

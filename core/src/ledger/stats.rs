//! Process-wide counters, shown in the `inventory` INFO section.

use super::effect::Effect;
use super::plan::{Event, Plan};
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

macro_rules! stats {
    ($($name:ident),* $(,)?) => {
        /// Gauges and event counters. Every field is written by the main
        /// thread only (a plain load and store, no locked instruction); what
        /// `free` gives back, possibly from a lazy-free thread, goes to
        /// `released` with atomic adds and is folded in when read.
        #[derive(Default)]
        pub struct Stats {
            $(pub $name: AtomicI64,)*
            released: Released,
        }

        impl Stats {
            /// (name, value) pairs in INFO order.
            pub fn fields(&self) -> Vec<(&'static str, i64)> {
                let r = &self.released;
                vec![$((stringify!($name), self.$name.load(Relaxed) + r.get(stringify!($name))),)*]
            }
        }
    };
}

/// Gauge decrements from `free`, which may run on a lazy-free thread.
#[derive(Default)]
struct Released {
    keys: AtomicI64,
    open: AtomicI64,
    reserved: AtomicI64,
}

impl Released {
    fn get(&self, field: &str) -> i64 {
        match field {
            "keys" => self.keys.load(Relaxed),
            "open_reservations" => self.open.load(Relaxed),
            "reserved_units" => self.reserved.load(Relaxed),
            _ => 0,
        }
    }
}

stats!(
    keys,
    open_reservations,
    reserved_units,
    reserves,
    reserves_nostock,
    reserves_limited,
    reserves_notyet,
    reserves_closed,
    replays,
    fenced,
    confirms,
    confirms_late,
    cancels,
    empty_rollbacks,
    expired,
    purged,
    tx_conflicts,
    audits_failed,
    waiters,
    grants,
    wait_timeouts,
    waiters_dropped,
    feed_entries,
    feed_trimmed,
    feed_errors,
);

/// Main-thread update: a plain load and store (a locked add costs more
/// on every command).
fn add(c: &AtomicI64, n: i64) {
    if n != 0 {
        c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
    }
}

impl Stats {
    /// A reserve starts waiting (`+1`) or stops (`-1`).
    pub fn waiting(&self, n: i64) {
        add(&self.waiters, n);
    }

    /// A change wrote `entries` feed entries, and trimming dropped `trimmed`.
    pub fn fed(&self, entries: i64, trimmed: i64) {
        add(&self.feed_entries, entries);
        add(&self.feed_trimmed, trimmed);
    }

    /// A change was made but its feed entries could not all be written.
    pub fn feed_error(&self) {
        add(&self.feed_errors, 1);
    }

    /// A waiting reserve got its units.
    pub fn granted(&self) {
        add(&self.grants, 1);
    }

    /// A waiting reserve's BLOCK ran out (it answered NOSTOCK).
    pub fn wait_timed_out(&self) {
        add(&self.wait_timeouts, 1);
    }

    /// A waiting reserve left without an answer of ours (its connection
    /// closed) or was answered because its key went away.
    pub fn waiter_dropped(&self) {
        add(&self.waiters_dropped, 1);
    }

    /// Counts what a planned command did (on the node that planned it).
    #[inline]
    pub fn count_plan(&self, plan: &Plan) {
        let counter = match plan.event {
            Event::Reserve => Some(&self.reserves),
            Event::NoStock => Some(&self.reserves_nostock),
            Event::Replay => Some(&self.replays),
            Event::Fenced => Some(&self.fenced),
            Event::Confirm => Some(&self.confirms),
            Event::ConfirmLate => Some(&self.confirms_late),
            Event::Cancel => Some(&self.cancels),
            Event::EmptyRollback => Some(&self.empty_rollbacks),
            Event::Limited => Some(&self.reserves_limited),
            Event::NotYet => Some(&self.reserves_notyet),
            Event::Closed => Some(&self.reserves_closed),
            Event::Other => None,
        };
        if let Some(c) = counter {
            add(c, 1);
        }
        self.count_effects(&plan.effects);
    }

    /// Counts expirations and purges among planned effects.
    pub fn count_effects(&self, effects: &[Effect]) {
        for e in effects {
            match e {
                Effect::Expire(ids) | Effect::ExpireFirst(ids) => {
                    add(&self.expired, ids.len() as i64)
                }
                Effect::Purge(ids) => add(&self.purged, ids.len() as i64),
                _ => {}
            }
        }
    }

    /// Takes a freed value's share off the gauges; safe from any thread.
    pub fn release(&self, keys: i64, open: i64, reserved: i64) {
        self.released.keys.fetch_sub(keys, Relaxed);
        self.released.open.fetch_sub(open, Relaxed);
        self.released.reserved.fetch_sub(reserved, Relaxed);
    }

    /// Adjusts the gauges by a change in one key's (keys, open, reserved).
    /// Main thread only.
    pub fn adjust(&self, keys: i64, open: i64, reserved: i64) {
        add(&self.keys, keys);
        add(&self.open_reservations, open);
        add(&self.reserved_units, reserved);
    }

    pub fn conflict(&self) {
        add(&self.tx_conflicts, 1);
    }

    pub fn audit_failed(&self) {
        add(&self.audits_failed, 1);
    }
}

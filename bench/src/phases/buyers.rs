//! Memory per buyer (phase 1f): one key with `n` buyers (16-byte ids, one
//! unit each, reserved then confirmed: what stays once a sale is paid)
//! against the same key without buyers, built in turn on one server. Read
//! two ways: the module's own MEMORY USAGE of each key, and the server's
//! `used_memory` (jemalloc's count) before and after each key is built.
//! Also the extra cost of an open hold with a buyer (its txid noted against
//! the buyer until it ends), from the same two keys before the confirms.

use crate::common::{bench_server, run, tagged_txid};
use crate::goals::{self, at_most, Goal};
use redis::Connection;

/// Bytes, as the two views read them.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub(crate) struct Bytes {
    pub memory_usage: f64,
    pub used_memory: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct BuyerMemory {
    pub buyers: usize,
    /// Per buyer, all its holds confirmed.
    pub per_buyer: Bytes,
    /// Per open hold, extra for its buyer (while it is open).
    pub per_open_hold: Bytes,
}

fn used_memory(c: &mut Connection) -> f64 {
    testkit::used_memory(c) as f64
}

fn memory_usage(c: &mut Connection, key: &str) -> f64 {
    let n: i64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .arg("SAMPLES")
        .arg(0)
        .query(c)
        .unwrap();
    n as f64
}

/// Builds one key of `n` one-unit reservations (with a buyer each when
/// `buyers`), then confirms them all: (MEMORY USAGE, used_memory growth)
/// with every hold open, then with every hold confirmed. The key is
/// deleted afterwards.
fn build(c: &mut Connection, key: &str, n: usize, buyers: bool) -> (Bytes, Bytes) {
    let _: () = redis::cmd("INV.SET")
        .arg(key)
        .arg(crate::common::BIG)
        .query(c)
        .unwrap();
    let base = used_memory(c);
    run(c, n, 1000, |p, i| {
        p.cmd("INV.RESERVE")
            .arg(key)
            .arg(tagged_txid("m-", i))
            .arg(1)
            .arg("TTL")
            .arg(crate::common::TTL);
        if buyers {
            p.arg("BUYER").arg(format!("buyer-{i:010}"));
        }
        p.ignore();
    });
    let open = Bytes {
        memory_usage: memory_usage(c, key),
        used_memory: used_memory(c) - base,
    };
    run(c, n, 1000, |p, i| {
        p.cmd("INV.CONFIRM")
            .arg(key)
            .arg(tagged_txid("m-", i))
            .ignore();
    });
    let done = Bytes {
        memory_usage: memory_usage(c, key),
        used_memory: used_memory(c) - base,
    };
    // Freed on this thread, not by a lazy-free thread the next key's
    // baseline would race with (Valkey 9 frees DEL in the background).
    let _: () = redis::cmd("FLUSHALL").arg("SYNC").query(c).unwrap();
    (open, done)
}

fn per(a: Bytes, b: Bytes, n: usize) -> Bytes {
    Bytes {
        memory_usage: (a.memory_usage - b.memory_usage) / n as f64,
        used_memory: (a.used_memory - b.used_memory) / n as f64,
    }
}

pub(crate) fn phase(server: &str, n: usize) -> BuyerMemory {
    let s = bench_server(server);
    let c = &mut s.conn();
    let (plain_open, plain_done) = build(c, "mem:plain", n, false);
    let (buyers_open, buyers_done) = build(c, "mem:buyers", n, true);
    let per_buyer = per(buyers_done, plain_done, n);
    let with_buyer_open = per(buyers_open, plain_open, n);
    BuyerMemory {
        buyers: n,
        per_buyer,
        per_open_hold: Bytes {
            memory_usage: with_buyer_open.memory_usage - per_buyer.memory_usage,
            used_memory: with_buyer_open.used_memory - per_buyer.used_memory,
        },
    }
}

pub(crate) fn table(m: &BuyerMemory) -> String {
    format!(
        "| {} buyers (16-byte ids) on one key | MEMORY USAGE | used_memory |\n|---|---|---|\n\
         | bytes per buyer, its holds confirmed | {:.1} | {:.1} |\n\
         | extra bytes per open hold with a buyer | {:.1} | {:.1} |\n",
        m.buyers,
        m.per_buyer.memory_usage,
        m.per_buyer.used_memory,
        m.per_open_hold.memory_usage,
        m.per_open_hold.used_memory,
    )
}

/// Judged on `used_memory` (what the server's allocator holds); the goal is
/// stated for 10^6 buyers.
pub(crate) fn goals(m: &BuyerMemory) -> Vec<Goal> {
    vec![at_most(
        format!(
            "<= {} bytes per buyer at {} buyers (used_memory): {:.1}",
            goals::BYTES_PER_BUYER,
            m.buyers,
            m.per_buyer.used_memory
        ),
        m.per_buyer.used_memory,
        goals::BYTES_PER_BUYER,
    )]
}

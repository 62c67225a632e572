//! What every phase uses: servers with the release module, the Lua
//! baselines, pipelined load, a PING probe, and small statistics.

use redis::Connection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use testkit::{Build, Server};

pub(crate) const BIG: i64 = 1 << 50;
pub(crate) const TTL: u64 = 3_600_000;
/// A txid prefix that makes `fill`'s txids as long as a UUID's 36 bytes
/// (with 7-digit numbers): long txids, kept in the records' side table.
pub(crate) const UUID_TAG: &str = "018f2c3e-7b1a-7c4d-9e2f-a0000";
pub(crate) const SEED: &str = include_str!("../lua/seed_reserve.lua");
pub(crate) const TCC_RESERVE: &str = include_str!("../lua/tcc_reserve.lua");
pub(crate) const TCC_CONFIRM: &str = include_str!("../lua/tcc_confirm.lua");
pub(crate) const TCC_CANCEL: &str = include_str!("../lua/tcc_cancel.lua");

/// The options every measured server starts with (no client limit in the
/// way, no per-command latency histograms).
pub(crate) const MEASURING: [&str; 4] = ["--maxclients", "10000", "--latency-tracking", "no"];

/// A server of the given binary with the release module, for measuring.
pub(crate) fn bench_server(bin: &str) -> Server {
    std::env::set_var("INVENTORY_SERVER", bin);
    let mut args = MEASURING.to_vec();
    args.extend(["--appendonly", "no"]);
    Server::start_build(Build::Release, &args)
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

pub(crate) struct Scripts {
    pub seed: String,
    pub reserve: String,
    pub confirm: String,
    pub cancel: String,
}

pub(crate) fn load(c: &mut Connection, src: &str) -> String {
    redis::cmd("SCRIPT").arg("LOAD").arg(src).query(c).unwrap()
}

pub(crate) fn scripts(c: &mut Connection) -> Scripts {
    Scripts {
        seed: load(c, SEED),
        reserve: load(c, TCC_RESERVE),
        confirm: load(c, TCC_CONFIRM),
        cancel: load(c, TCC_CANCEL),
    }
}

/// The three keys of one SKU in the full Lua layout (one hash slot).
pub(crate) fn lua_keys(sku: &str) -> [String; 3] {
    [
        format!("{{{sku}}}"),
        format!("{{{sku}}}:tx"),
        format!("{{{sku}}}:dl"),
    ]
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Impl {
    Module,
    Tcc,
    Seed,
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Op {
    Reserve,
    Confirm,
    Cancel,
}

/// Adds one call of `op` on `sku` for `txid` to a pipeline.
pub(crate) fn add(p: &mut redis::Pipeline, s: &Scripts, imp: Impl, op: Op, sku: &str, txid: &str) {
    let now = now_ms();
    match (imp, op) {
        (Impl::Module, Op::Reserve) => p
            .cmd("INV.RESERVE")
            .arg(sku)
            .arg(txid)
            .arg(1)
            .arg("TTL")
            .arg(TTL),
        (Impl::Module, Op::Confirm) => p.cmd("INV.CONFIRM").arg(sku).arg(txid),
        (Impl::Module, Op::Cancel) => p.cmd("INV.CANCEL").arg(sku).arg(txid),
        (Impl::Seed, _) => p
            .cmd("EVALSHA")
            .arg(&s.seed)
            .arg(1)
            .arg(format!("seed:{sku}"))
            .arg(txid)
            .arg(1),
        (Impl::Tcc, Op::Reserve) => p
            .cmd("EVALSHA")
            .arg(&s.reserve)
            .arg(3)
            .arg(&lua_keys(sku)[..])
            .arg(txid)
            .arg(1)
            .arg(TTL)
            .arg(now),
        (Impl::Tcc, Op::Confirm) => p
            .cmd("EVALSHA")
            .arg(&s.confirm)
            .arg(3)
            .arg(&lua_keys(sku)[..])
            .arg(txid)
            .arg(now),
        (Impl::Tcc, Op::Cancel) => p
            .cmd("EVALSHA")
            .arg(&s.cancel)
            .arg(3)
            .arg(&lua_keys(sku)[..])
            .arg(txid)
            .arg(now),
    };
    p.ignore();
}

/// Runs `n` calls in pipelines of `depth`; returns ops/s.
pub(crate) fn run(
    c: &mut Connection,
    n: usize,
    depth: usize,
    mut make: impl FnMut(&mut redis::Pipeline, usize),
) -> f64 {
    let t = Instant::now();
    let mut i = 0;
    while i < n {
        let mut p = redis::pipe();
        for j in i..(i + depth).min(n) {
            make(&mut p, j);
        }
        let _: () = p.query(c).unwrap();
        i += depth;
    }
    n as f64 / t.elapsed().as_secs_f64()
}

pub(crate) fn setup_keys(c: &mut Connection, keys: usize) {
    run(c, keys, 1000, |p, i| {
        let sku = format!("sku:{i}");
        p.cmd("INV.SET").arg(&sku).arg(BIG).ignore();
        p.cmd("HSET")
            .arg(format!("seed:{sku}"))
            .arg("stock")
            .arg(BIG)
            .arg("reserved")
            .arg(0)
            .ignore();
        p.cmd("HSET")
            .arg(&lua_keys(&sku)[0])
            .arg("stock")
            .arg(BIG)
            .arg("reserved")
            .arg(0)
            .arg("sold")
            .arg(0)
            .ignore();
    });
}

/// Creates one SKU in all three layouts (module, seed hash, TCC hash).
pub(crate) fn fresh_hot(c: &mut Connection, sku: &str) {
    let mut p = redis::pipe();
    p.cmd("INV.SET").arg(sku).arg(BIG).ignore();
    p.cmd("HSET")
        .arg(format!("seed:{sku}"))
        .arg("stock")
        .arg(BIG)
        .arg("reserved")
        .arg(0)
        .ignore();
    p.cmd("HSET")
        .arg(&lua_keys(sku)[0])
        .arg("stock")
        .arg(BIG)
        .arg("reserved")
        .arg(0)
        .arg("sold")
        .arg(0)
        .ignore();
    let _: () = p.query(c).unwrap();
}

pub(crate) fn implementation_name(imp: Impl) -> &'static str {
    match imp {
        Impl::Module => "inventory",
        Impl::Tcc => "Lua TCC set",
        Impl::Seed => "seed Lua reserve",
    }
}

/// Stocks the key `hot` and fills it with `n` one-unit reservations that
/// share one deadline (PXAT), leaving enough time to fill before it;
/// returns the deadline.
pub(crate) fn fill_sharing_one_deadline(c: &mut redis::Connection, n: usize) -> u64 {
    let _: () = redis::cmd("INV.SET").arg("hot").arg(BIG).query(c).unwrap();
    let deadline = now_ms() + 2_000 + (n as u64 / 50);
    run(c, n, 1000, |p, i| {
        p.cmd("INV.RESERVE")
            .arg("hot")
            .arg(tagged_txid("", i))
            .arg(1)
            .arg("PXAT")
            .arg(deadline)
            .ignore();
    });
    assert!(
        now_ms() + 200 < deadline,
        "filling took longer than planned"
    );
    deadline
}

/// The bench's txid number `i`: `tag` then `i`, zero-padded to 16 bytes
/// together (an untagged one is `i` in 16 digits).
pub(crate) fn tagged_txid(tag: &str, i: usize) -> String {
    let width = 16usize.saturating_sub(tag.len());
    format!("{tag}{i:0width$}")
}

/// Reserves one unit each for `n` fresh txids on `key` (pipelines of 1000):
/// `tagged_txid(tag, from + i)`.
pub(crate) fn fill(c: &mut Connection, key: &str, from: usize, n: usize, tag: &str) {
    run(c, n, 1000, |p, i| {
        p.cmd("INV.RESERVE")
            .arg(key)
            .arg(tagged_txid(tag, from + i))
            .arg(1)
            .arg("TTL")
            .arg(TTL)
            .ignore();
    });
}

/// PINGs the server about every millisecond on its own connection, keeping
/// the latencies seen while `armed()` holds.
pub(crate) struct PingProbe {
    pub stop: Arc<AtomicBool>,
    pub handle: std::thread::JoinHandle<Vec<Duration>>,
}

impl PingProbe {
    pub(crate) fn start(url: String, armed: impl Fn() -> bool + Send + 'static) -> PingProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
            let mut seen = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let t = Instant::now();
                let _: String = redis::cmd("PING").query(&mut c).unwrap();
                if armed() {
                    seen.push(t.elapsed());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            seen
        });
        PingProbe { stop, handle }
    }

    /// Stops the probe; the latencies it kept, sorted.
    pub(crate) fn finish(self) -> Vec<Duration> {
        self.stop.store(true, Ordering::Relaxed);
        let mut seen = self.handle.join().unwrap();
        seen.sort();
        seen
    }
}

pub(crate) fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted
        .get(((sorted.len().max(1) as f64 - 1.0) * p).round() as usize)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

pub(crate) fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0);
    // Ratios against a C module or a Lua script move with the CPU (a
    // figure measured on one host is not one measured on another), so the
    // model is part of the setup.
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    format!("{cpus} cores ({model}), {} GiB", mem / 1024 / 1024)
}

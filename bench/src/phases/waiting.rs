//! The waiting room (phase 6): a sold-out SKU with `n` buyers waiting
//! (`INV.RESERVE ... BLOCK`, one connection each), its units coming back by
//! expiry (holds with staggered PXATs) and by cancel (a seller cancelling at
//! a steady pace), one unit at a time. Measured:
//! - grants in arrival order (each grant's version against its arrival);
//! - the time from a unit's return to its grant: the return is the cancel's
//!   reply arriving (or the expired hold's deadline), the grant is the
//!   waiter's reply arriving, both read by this process (loopback and this
//!   process's scheduling included: an upper bound);
//! - whole-server CPU per unit handed out (the returns included);
//! - memory per waiter: `used_memory` with `n` connections blocked, against
//!   the same connections idle, beside `BLPOP` on the same connections (the
//!   server's own blocked-client state);
//! - the same sale run by polling clients (`INV.RESERVE` every 10 ms, no
//!   BLOCK): the server CPU per unit, the NOSTOCK replies spent, and how
//!   grant order follows arrival order (Spearman's rank correlation).
//!
//! The server runs with `--maxclients` raised to `n` plus some, and this
//! process needs as many file descriptors (its soft limit is raised to its
//! hard limit).

use crate::common::{median, now_ms, MEASURING};
use crate::goals::{self, at_least, at_most, Goal};
use crate::phases::server_cpu::cpu_ns;
use std::time::{Duration, Instant};
use testkit::{Build, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct WaitingResult {
    pub waiters: usize,
    /// Share of grants that went to waiters in arrival order (%).
    pub in_order_pct: f64,
    pub return_to_grant_p50_ms: f64,
    pub return_to_grant_p99_ms: f64,
    /// Whole-server CPU per unit handed out through the queue, the
    /// returns (cancels, expiries) included (µs).
    pub cpu_per_grant_us: f64,
    /// `used_memory` per blocked waiter beyond an idle connection (bytes):
    /// the server's state for a blocked client and the module's.
    pub memory_per_waiter: f64,
    /// The module's own structures per waiter (bytes).
    pub module_memory_per_waiter: f64,
    /// The same for `BLPOP` on the same number of connections (bytes).
    pub blpop_memory_per_waiter: f64,
    /// Polling: whole-server CPU per unit sold (µs).
    pub polling_cpu_per_grant_us: f64,
    /// Polling: NOSTOCK replies per unit sold.
    pub polling_nostock_per_grant: f64,
    /// Polling: rank correlation of grant order with arrival order.
    pub polling_rank_correlation: f64,
}

pub(crate) fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend(format!("${}\r\n{a}\r\n", a.len()).into_bytes());
    }
    out
}

/// `INV.RESERVE sku txid 1 TTL 600000 BLOCK block`, as sent on the wire.
pub(crate) fn blocking_reserve(txid: &str, block: &str) -> Vec<u8> {
    resp(&[
        "INV.RESERVE",
        "sku",
        txid,
        "1",
        "TTL",
        "600000",
        "BLOCK",
        block,
    ])
}

/// Reads one whole reply (an array of three, a simple string or an
/// error) and returns its text; the version for `[state, available,
/// version]`.
pub(crate) async fn read_reply(s: &mut TcpStream) -> (String, Option<i64>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        let n = s.read(&mut chunk).await.expect("read a reply");
        assert!(n > 0, "the server closed a connection");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if text.starts_with("*3\r\n") {
            let lines: Vec<&str> = text.split("\r\n").collect();
            // *3, $len, word, :available, :version, ""
            if lines.len() >= 6 {
                let version = lines[4].trim_start_matches(':').parse().ok();
                return (lines[2].to_string(), version);
            }
        } else if text.ends_with("\r\n") {
            return (text, None);
        }
    }
}

fn used_memory(c: &mut redis::Connection) -> f64 {
    testkit::used_memory(c) as f64
}

pub(crate) fn waiters(c: &mut redis::Connection) -> usize {
    testkit::info_value(c, "inventory", "inventory_waiters")
        .parse()
        .unwrap_or(0)
}

/// Opens `n` connections to the server, 10,000 from each loopback source
/// address (127.0.0.1, .2, ...): one source address has about 28,000
/// ephemeral ports to one server port.
pub(crate) async fn connect_all(port: u16, n: usize) -> Vec<TcpStream> {
    let server = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let source = u8::try_from(1 + i / 10_000).expect("at most 2,540,000 connections");
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(std::net::SocketAddr::from(([127, 0, 0, source], 0)))
            .expect("bind a loopback source address");
        let s = socket.connect(server).await.expect("connect");
        s.set_nodelay(true).ok();
        out.push(s);
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

/// Spearman's rank correlation of two rankings of the same items.
fn rank_correlation(order: &[usize]) -> f64 {
    let n = order.len() as f64;
    if n < 2.0 {
        return f64::NAN;
    }
    let d2: f64 = order
        .iter()
        .enumerate()
        .map(|(rank, &arrival)| (rank as f64 - arrival as f64).powi(2))
        .sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

/// Holders of every unit: half expire one by one (PXAT every `gap`), half
/// are cancelled by the seller at the same pace in between. Returns the
/// PXATs of the expiring holds and the txids to cancel.
fn hold_everything(
    c: &mut redis::Connection,
    n: usize,
    start: u64,
    gap_ms: f64,
) -> (Vec<u64>, Vec<String>) {
    let _: () = redis::cmd("INV.SET").arg("sku").arg(n).query(c).unwrap();
    let mut expiring = Vec::new();
    let mut cancel = Vec::new();
    let mut p = redis::pipe();
    for i in 0..n {
        let txid = format!("h{i:06}");
        if i % 2 == 0 {
            let at = start + (i as f64 * gap_ms) as u64;
            p.cmd("INV.RESERVE")
                .arg("sku")
                .arg(&txid)
                .arg(1)
                .arg("PXAT")
                .arg(at)
                .ignore();
            expiring.push(at);
        } else {
            p.cmd("INV.RESERVE")
                .arg("sku")
                .arg(&txid)
                .arg(1)
                .arg("TTL")
                .arg(3_600_000)
                .ignore();
            cancel.push(txid);
        }
    }
    let _: () = p.query(c).unwrap();
    (expiring, cancel)
}

/// A server of `bin` with the release module, taking `n` clients and more.
pub(crate) fn server_for(bin: &str, n: usize) -> Server {
    std::env::set_var("INVENTORY_SERVER", bin);
    let max = (n + 200).to_string();
    let mut args = MEASURING.to_vec();
    // Clients come from 127.0.0.2 and on past 10,000 (`connect_all`):
    // protected mode would refuse every source but 127.0.0.1 (the server
    // listens on loopback only).
    args.extend([
        "--appendonly",
        "no",
        "--maxclients",
        &max,
        "--protected-mode",
        "no",
    ]);
    Server::start_build(Build::Release, &args)
}

async fn queue_run(bin: &str, n: usize) -> WaitingResult {
    let server = server_for(bin, n);
    let admin = &mut server.conn();
    // Memory: the connections open, then the same connections waiting.
    let mut conns = connect_all(server.port, n).await;
    // Arrival order: each waiter is counted by the server before the next
    // is sent. The holds go on first, expiring from `start` on.
    let gap_ms = 0.4;
    let start = now_ms() + 1_000 + n as u64 / 4;
    let (expiring, to_cancel) = hold_everything(admin, n, start + 2 * n as u64 / 10, gap_ms * 2.0);
    let before_waiters = used_memory(admin);
    for (i, s) in conns.iter_mut().enumerate() {
        let txid = format!("w{i:06}");
        s.write_all(&blocking_reserve(&txid, "120000"))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while waiters(admin) < i + 1 {
            assert!(Instant::now() < deadline, "waiter {i} never waited");
            tokio::task::yield_now().await;
        }
    }
    let blocked = used_memory(admin);
    let memory_per_waiter = (blocked - before_waiters) / n as f64;
    // Every waiter reads its reply on its own task.
    let mut tasks = Vec::with_capacity(n);
    for (i, mut s) in conns.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let (word, version) = read_reply(&mut s).await;
            (i, now_ms_f(), word, version, s)
        }));
    }
    // The seller cancels at the pace of the expiries, in between them.
    let pid = server.pid();
    let cpu0 = cpu_ns(pid);
    let first_cancel = start + 2 * n as u64 / 10;
    let mut returns: Vec<f64> = expiring.iter().map(|&t| t as f64).collect();
    returns.extend(cancel_in_turn(&server, &to_cancel, first_cancel, gap_ms).await);
    let mut replies = Vec::with_capacity(n);
    for t in tasks {
        replies.push(t.await.unwrap());
    }
    let cpu = cpu_ns(pid).saturating_sub(cpu0) as f64;
    returns.sort_by(|a, b| a.total_cmp(b));
    replies.sort_by_key(|r| r.3.unwrap_or(i64::MAX));
    // (arrival, reply time) of each grant, in the server's order.
    let granted: Vec<(usize, f64)> = replies
        .iter()
        .filter(|r| r.2 == "RESERVED")
        .map(|r| (r.0, r.1))
        .collect();
    let in_order = granted
        .iter()
        .enumerate()
        .filter(|(rank, r)| r.0 == *rank)
        .count();
    let mut latency: Vec<f64> = granted
        .iter()
        .zip(&returns)
        .map(|(r, ret)| (r.1 - ret).max(0.0))
        .collect();
    latency.sort_by(|a, b| a.total_cmp(b));
    // BLPOP on the same connections, for the server's own cost of a
    // blocked client.
    let mut conns: Vec<TcpStream> = replies.into_iter().map(|r| r.4).collect();
    let seller = &mut server.conn();
    let idle = used_memory(seller);
    for s in conns.iter_mut() {
        s.write_all(&resp(&["BLPOP", "nothing", "120"]))
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let blocked: usize = testkit::info_value(seller, "clients", "blocked_clients")
            .parse()
            .unwrap_or(0);
        if blocked >= n || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let blpop = (used_memory(seller) - idle) / n as f64;
    WaitingResult {
        waiters: n,
        in_order_pct: 100.0 * in_order as f64 / granted.len().max(1) as f64,
        return_to_grant_p50_ms: percentile(&latency, 0.50),
        return_to_grant_p99_ms: percentile(&latency, 0.99),
        cpu_per_grant_us: cpu / 1000.0 / granted.len().max(1) as f64,
        memory_per_waiter,
        blpop_memory_per_waiter: blpop,
        ..Default::default()
    }
}

fn now_ms_f() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// The seller: cancels `txids` in turn, the k-th sent at
/// `first + (2k + 1) * gap_ms` (between the expiries) whatever the replies
/// before it, so a busy server does not slow the schedule; on one
/// multiplexed connection. Returns when each cancel's reply arrived (ms).
async fn cancel_in_turn(server: &Server, txids: &[String], first: u64, gap_ms: f64) -> Vec<f64> {
    let client = redis::Client::open(server.url()).unwrap();
    let seller = client.get_multiplexed_async_connection().await.unwrap();
    let mut sent = Vec::with_capacity(txids.len());
    for (k, txid) in txids.iter().enumerate() {
        let at = first as f64 + (2 * k + 1) as f64 * gap_ms;
        let wait = at - now_ms_f();
        if wait > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(wait / 1000.0)).await;
        }
        let mut conn = seller.clone();
        let txid = txid.clone();
        sent.push(tokio::spawn(async move {
            let _: redis::Value = redis::cmd("INV.CANCEL")
                .arg("sku")
                .arg(&txid)
                .query_async(&mut conn)
                .await
                .unwrap();
            now_ms_f()
        }));
    }
    let mut returned = Vec::with_capacity(sent.len());
    for t in sent {
        returned.push(t.await.unwrap());
    }
    returned
}

/// The same sale by polling: `n` clients in arrival order, each sending
/// `INV.RESERVE` without BLOCK until it is RESERVED.
async fn polling_run(bin: &str, n: usize) -> (f64, f64, f64) {
    let server = server_for(bin, n);
    let admin = &mut server.conn();
    let gap_ms = 0.4;
    let start = now_ms() + 1_000 + n as u64 / 4;
    let (_, to_cancel) = hold_everything(admin, n, start, gap_ms * 2.0);
    let conns = connect_all(server.port, n).await;
    let pid = server.pid();
    let cpu0 = cpu_ns(pid);
    let mut tasks = Vec::with_capacity(n);
    for (i, mut s) in conns.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let cmd = resp(&[
                "INV.RESERVE",
                "sku",
                &format!("p{i:06}"),
                "1",
                "TTL",
                "600000",
            ]);
            let mut nostock = 0u64;
            loop {
                s.write_all(&cmd).await.unwrap();
                let (word, version) = read_reply(&mut s).await;
                if word == "RESERVED" {
                    return (i, version.unwrap_or(i64::MAX), nostock);
                }
                nostock += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
        tokio::task::yield_now().await;
    }
    cancel_in_turn(&server, &to_cancel, start, gap_ms).await;
    let mut done = Vec::with_capacity(n);
    for t in tasks {
        done.push(t.await.unwrap());
    }
    let cpu = cpu_ns(pid).saturating_sub(cpu0) as f64;
    let nostock: u64 = done.iter().map(|d| d.2).sum();
    done.sort_by_key(|d| d.1);
    let order: Vec<usize> = done.iter().map(|d| d.0).collect();
    (
        cpu / 1000.0 / n as f64,
        nostock as f64 / n as f64,
        rank_correlation(&order),
    )
}

/// Bytes the module's own structures take per waiter, counted by this
/// process's allocator: the core's queue (`WaitQueue`: its slot, its txid
/// index, its end of wait) with `n` waiters of 7-byte txids, each with a
/// BLOCK, plus the shell's entry per
/// blocked client (src/module/waiting/mod.rs `WAITING`: the client's handle,
/// its shared room, its arrival number; the same shape here).
fn module_bytes_per_waiter(n: usize) -> f64 {
    use inventory_core::ledger::{Ttl, TxId, WaitQueue, Waiter};
    type Room = (i32, Box<[u8]>);
    let before = crate::alloc::allocated();
    let room = std::rc::Rc::new((0, b"sku".to_vec().into_boxed_slice()) as Room);
    let mut q: WaitQueue<usize> = WaitQueue::default();
    let mut entries: inventory_core::shardmap::ShardedMap<usize, (std::rc::Rc<Room>, u64)> =
        Default::default();
    for i in 0..n {
        let txid = TxId::new(format!("w{i:06}").as_bytes()).unwrap();
        let seq = q
            .push(
                Waiter::new(i, txid, 1, Ttl::Millis(600_000), None),
                1_800_000_000_000 + i as u64,
            )
            .unwrap();
        entries.insert(i, (std::rc::Rc::clone(&room), seq));
    }
    let bytes = crate::alloc::allocated() - before;
    drop((q, entries));
    bytes as f64 / n as f64
}

/// Phase 6: `runs` queue runs and polling runs, interleaved; medians.
pub(crate) async fn phase_waiting(bin: &str, n: usize, runs: usize) -> WaitingResult {
    let mut queue = Vec::new();
    let mut polling = Vec::new();
    for _ in 0..runs {
        queue.push(queue_run(bin, n).await);
        polling.push(polling_run(bin, n).await);
    }
    let m = |f: fn(&WaitingResult) -> f64| median(queue.iter().map(f).collect());
    let p = |i: usize| median(polling.iter().map(|r| [r.0, r.1, r.2][i]).collect());
    WaitingResult {
        waiters: n,
        module_memory_per_waiter: module_bytes_per_waiter(n),
        in_order_pct: m(|r| r.in_order_pct),
        return_to_grant_p50_ms: m(|r| r.return_to_grant_p50_ms),
        return_to_grant_p99_ms: m(|r| r.return_to_grant_p99_ms),
        cpu_per_grant_us: m(|r| r.cpu_per_grant_us),
        memory_per_waiter: m(|r| r.memory_per_waiter),
        blpop_memory_per_waiter: m(|r| r.blpop_memory_per_waiter),
        polling_cpu_per_grant_us: p(0),
        polling_nostock_per_grant: p(1),
        polling_rank_correlation: p(2),
    }
}

/// The phase's lines.
pub(crate) fn table(r: &WaitingResult) -> String {
    format!(
        "waiting room, {} waiters on one sold-out key, units returned one at a time by expiry and cancel (medians of the runs):\n\
         - grants in arrival order: {:.1}%\n\
         - return to grant: p50 {:.2} ms, p99 {:.2} ms\n\
         - whole-server CPU per unit handed out (returns included): {:.2} us\n\
         - memory per waiter: the module's own structures {:.0} bytes; used_memory per blocked client {:.0} bytes (BLPOP on the same connections: {:.0} bytes)\n\
         - the same sale by polling clients (10 ms between polls): {:.2} us of server CPU per unit sold, {:.1} NOSTOCK replies per unit, grant order against arrival order: rank correlation {:.2}",
        r.waiters,
        r.in_order_pct,
        r.return_to_grant_p50_ms,
        r.return_to_grant_p99_ms,
        r.cpu_per_grant_us,
        r.module_memory_per_waiter,
        r.memory_per_waiter,
        r.blpop_memory_per_waiter,
        r.polling_cpu_per_grant_us,
        r.polling_nostock_per_grant,
        r.polling_rank_correlation,
    )
}

pub(crate) fn goals(r: &WaitingResult) -> Vec<Goal> {
    vec![
        at_least(
            format!("100% of grants in arrival order: {:.1}%", r.in_order_pct),
            r.in_order_pct,
            100.0,
        ),
        at_most(
            format!(
                "return to grant p99 < {} ms: {:.2} ms",
                goals::RETURN_TO_GRANT_P99_MS,
                r.return_to_grant_p99_ms
            ),
            r.return_to_grant_p99_ms,
            goals::RETURN_TO_GRANT_P99_MS,
        ),
        at_most(
            format!(
                "< {} bytes of the module's own per waiter: {:.0}",
                goals::BYTES_PER_WAITER,
                r.module_memory_per_waiter
            ),
            r.module_memory_per_waiter,
            goals::BYTES_PER_WAITER,
        ),
    ]
}

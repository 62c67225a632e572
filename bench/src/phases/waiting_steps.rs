//! The waiting room's longest step (phase 6, second part): no event-loop
//! turn may run long however many wait on one key. Two measures:
//!
//! - **The module's own structures**, in this process, at 100,000 and
//!   1,000,000 waiters on one key: each waiter joining (the core queue's
//!   push and the shell's blocked-client entry), leaving from anywhere
//!   (a cancel, a timeout, a disconnect) and being served, timed one by
//!   one; the longest and the 99.99th percentile. Beside them, in the same
//!   run, one `std` HashMap filled to the same size (what the queue's txid
//!   index was before `ShardedMap`): its longest insert is a whole-table
//!   rehash.
//! - **A real server** with `n` waiters on one key (one connection each:
//!   `n` is bounded by this machine's open-file limit, 20,000 a process
//!   here, so 19,000 unless `--step-waiters` says otherwise), in six stages: nothing happening (this machine's
//!   floor), the queue filling (64 reserves a millisecond: a burst of
//!   thousands would be read in one turn, the server's batching and not a
//!   step of the module), `n` units coming back at once (grants, a bounded
//!   number a turn), `n` waits ending at once (the server frozen past their
//!   end with SIGSTOP, the stage starting at the thaw), the key deleted
//!   under `n` waiters, and `n` waiters disconnecting (64 a millisecond).
//!   The waiters' replies are read after each stage, so this process is
//!   quiet while the server works. Two readings a stage: the server's
//!   event-loop turns, from `perf trace -T -e epoll_wait` on its main
//!   thread (a turn: from one `epoll_wait` returning to the next one's
//!   call; wall time, so a turn the machine preempted counts whole), and a
//!   PING every 0.2 ms from a thread of its own (what a client sees). Without
//!   `perf` the turns are not read (said in the table). SLOWLOG counts the
//!   commands over 1 ms.

use super::waiting::{blocking_reserve, connect_all, read_reply, resp, server_for, waiters};
use crate::common::median;
use crate::goals::{self, at_most, Goal};
use inventory_core::ledger::{BuyerId, Ttl, TxId, WaitQueue, Waiter};
use inventory_core::shardmap::ShardedMap;
use std::io::{Read, Write};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct CoreSteps {
    pub waiters: usize,
    /// Longest and 99.99th percentile of one step (µs).
    pub join_max_us: f64,
    pub join_p9999_us: f64,
    pub leave_max_us: f64,
    pub serve_max_us: f64,
    /// One std HashMap<TxId, u64> filled to `waiters`: its longest insert.
    pub std_map_insert_max_us: f64,
}

/// One stage of `server_steps`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct Stage {
    pub name: &'static str,
    /// How long the stage ran (s).
    pub secs: f64,
    /// The longest event-loop turn the machine did not preempt (`None`: no
    /// `perf` here), how many turns ran, how many took over 1 ms, and of
    /// those how many the machine preempted.
    pub turn_max_ms: Option<f64>,
    /// The 99th percentile of every turn of the stage (ms).
    pub turn_p99_ms: f64,
    pub turns: usize,
    pub turns_over_1ms: usize,
    pub preempted_over_1ms: usize,
    /// The longest PING round trip (ms).
    pub ping_max_ms: f64,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct ServerSteps {
    pub waiters: usize,
    pub stages: Vec<Stage>,
    /// Commands SLOWLOG logged over 1 ms, and the longest (µs).
    pub slow_commands: usize,
    pub slowest_command_us: f64,
    /// Each as "its first two arguments: µs".
    pub slow: Vec<String>,
}

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[(((v.len() - 1) as f64) * p).round() as usize]
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

fn us(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e6
}

/// One fill, leave and serve of `n` waiters on the shell's structures.
fn core_once(n: usize) -> CoreSteps {
    type Room = (i32, Box<[u8]>);
    let room = Rc::new((0, b"sku".to_vec().into_boxed_slice()) as Room);
    let mut q: WaitQueue<usize> = WaitQueue::default();
    let mut entries: ShardedMap<usize, (Rc<Room>, u64)> = ShardedMap::default();
    let ids: Vec<(TxId, BuyerId)> = (0..n)
        .map(|i| {
            (
                TxId::new(format!("w{i:07}").as_bytes()).unwrap(),
                BuyerId::new(format!("buyer-{i:010}").as_bytes()).unwrap(),
            )
        })
        .collect();
    let mut join = Vec::with_capacity(n);
    for (i, (txid, buyer)) in ids.iter().enumerate() {
        let w = Waiter::new(
            i,
            txid.clone(),
            1,
            Ttl::Millis(600_000),
            Some(buyer.clone()),
        );
        let t = Instant::now();
        let seq = q.push(w, 1_800_000_000_000 + i as u64).unwrap();
        entries.insert(i, (Rc::clone(&room), seq));
        join.push(us(t));
    }
    // Every third waiter leaves from where it stands.
    let mut leave = Vec::with_capacity(n / 3);
    for i in (0..n).step_by(3) {
        let t = Instant::now();
        let (_, seq) = entries.remove(&i).unwrap();
        q.remove_arrival(seq).unwrap();
        leave.push(us(t));
    }
    let mut serve = Vec::with_capacity(n);
    loop {
        let t = Instant::now();
        let Some(w) = q.pop_front() else { break };
        entries.remove(&w.handle);
        serve.push(us(t));
    }
    let mut std_map = std::collections::HashMap::new();
    let mut std_insert = Vec::with_capacity(n);
    for (i, (txid, _)) in ids.into_iter().enumerate() {
        let t = Instant::now();
        std_map.insert(txid, i as u64);
        std_insert.push(us(t));
    }
    CoreSteps {
        waiters: n,
        join_max_us: max(&join),
        join_p9999_us: pct(join, 0.9999),
        leave_max_us: max(&leave),
        serve_max_us: max(&serve),
        std_map_insert_max_us: max(&std_insert),
    }
}

/// `core_once` `runs` times; medians.
pub(crate) fn core_steps(n: usize, runs: usize) -> CoreSteps {
    let all: Vec<CoreSteps> = (0..runs).map(|_| core_once(n)).collect();
    let m = |f: fn(&CoreSteps) -> f64| median(all.iter().map(f).collect());
    CoreSteps {
        waiters: n,
        join_max_us: m(|r| r.join_max_us),
        join_p9999_us: m(|r| r.join_p9999_us),
        leave_max_us: m(|r| r.leave_max_us),
        serve_max_us: m(|r| r.serve_max_us),
        std_map_insert_max_us: m(|r| r.std_map_insert_max_us),
    }
}

/// CLOCK_MONOTONIC in ms (what `perf trace -T` prints).
fn mono_ms() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
}

/// PINGs on a thread of their own until stopped: (sent at `mono_ms`, round
/// trip ms).
fn probe(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<(f64, f64)>> {
    std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_nodelay(true).ok();
        let mut out = Vec::new();
        let mut buf = [0u8; 7];
        while !stop.load(Ordering::Relaxed) {
            let at = mono_ms();
            let sent = Instant::now();
            s.write_all(b"PING\r\n").unwrap();
            s.read_exact(&mut buf).unwrap();
            out.push((at, sent.elapsed().as_secs_f64() * 1e3));
            std::thread::sleep(Duration::from_micros(200));
        }
        out
    })
}

/// `perf trace` of the server's `epoll_wait` calls, into `out`; `None`
/// when perf cannot trace here.
fn trace_turns(pid: u32, out: &std::path::Path) -> Option<std::process::Child> {
    let mut child = std::process::Command::new("perf")
        .args([
            "trace",
            "-T",
            "-e",
            "epoll_wait",
            "-e",
            "sched:sched_switch",
            "-p",
            &pid.to_string(),
            "-o",
        ])
        .arg(out)
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(500));
    match child.try_wait() {
        Ok(None) => Some(child),
        _ => None,
    }
}

/// One event-loop turn: when it began (ms, CLOCK_MONOTONIC), how long it
/// ran, and whether the server was switched out during it (preempted by
/// this machine: its wall time is not all the server's work).
#[derive(Clone, Copy, Debug)]
struct Turn {
    at: f64,
    ms: f64,
    preempted: bool,
}

/// The main thread's turns from a `perf trace -T` file: a turn runs from
/// one `epoll_wait` returning to the next one's call.
fn turns(trace: &str, pid: u32) -> Vec<Turn> {
    let me = format!("/{pid} ");
    let mut calls: Vec<(f64, f64)> = Vec::new();
    let mut switches: Vec<f64> = Vec::new();
    for l in trace.lines().filter(|l| l.contains(&me)) {
        let Some((start, rest)) = l.trim_start().split_once(" (") else {
            continue;
        };
        let Ok(start) = start.parse::<f64>() else {
            continue;
        };
        if l.contains("sched:sched_switch(") && l.contains(&format!("prev_pid: {pid} ")) {
            switches.push(start);
        } else if l.contains("epoll_wait(") {
            // A call that returned at once prints its length on its line;
            // one that slept prints it on a `[continued]` line.
            if let Some((dur, _)) = rest.trim_start().split_once(" ms)") {
                if let Ok(d) = dur.trim().parse::<f64>() {
                    calls.push((start, d));
                }
            }
        }
    }
    calls.sort_by(|a, b| a.0.total_cmp(&b.0));
    calls.dedup_by(|a, b| a.0 == b.0);
    switches.sort_by(f64::total_cmp);
    calls
        .windows(2)
        .map(|w| {
            let woke = w[0].0 + w[0].1;
            let next = w[1].0;
            let from = switches.partition_point(|&t| t <= woke);
            Turn {
                at: woke,
                ms: (next - woke).max(0.0),
                preempted: switches.get(from).is_some_and(|&t| t < next),
            }
        })
        .collect()
}

/// Sends a blocking reserve on every connection, `PACE` a millisecond (a
/// steady 64,000 a second: a burst of thousands would be read in one turn,
/// which is the server's batching, not a step of the module), then waits
/// until all wait.
async fn fill(
    conns: &mut [tokio::net::TcpStream],
    admin: &mut redis::Connection,
    round: &str,
    block: &str,
) {
    for (i, s) in conns.iter_mut().enumerate() {
        let txid = format!("{round}{i:06}");
        let cmd = blocking_reserve(&txid, block);
        s.write_all(&cmd).await.unwrap();
        if i % PACE == PACE - 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while waiters(admin) < conns.len() {
        assert!(Instant::now() < deadline, "the waiters never all waited");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waiters sent (or disconnected) a millisecond.
const PACE: usize = 64;

/// Waits until nobody waits (the answers are read after, so that this
/// process is quiet while the server answers).
async fn until_answered(admin: &mut redis::Connection) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while waiters(admin) > 0 {
        assert!(Instant::now() < deadline, "waiters were never answered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Reads one reply on every connection (on tasks of their own) and hands
/// the connections back.
async fn answers(conns: Vec<tokio::net::TcpStream>) -> Vec<tokio::net::TcpStream> {
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                read_reply(&mut s).await;
                s
            })
        })
        .collect();
    let mut back = Vec::with_capacity(tasks.len());
    for t in tasks {
        back.push(t.await.unwrap());
    }
    back
}

/// `sku` anew, sold out.
fn fresh_key(admin: &mut redis::Connection) {
    let _: redis::Value = redis::cmd("DEL").arg("sku").query(admin).unwrap();
    let _: redis::Value = redis::cmd("INV.SET")
        .arg("sku")
        .arg(0)
        .query(admin)
        .unwrap();
}

/// The stages whose turns the module's answers fill.
const MODULE_STAGES: [&str; 3] = [
    "every unit comes back at once",
    "every wait ends at once",
    "the key is deleted",
];

/// One server run of the six stages with `n` waiters.
pub(crate) async fn server_steps(bin: &str, n: usize) -> ServerSteps {
    let server = server_for(bin, n);
    let admin = &mut server.conn();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(1000)
        .query(admin)
        .unwrap();
    fresh_key(admin);
    let mut conns = connect_all(server.port, n).await;
    let trace_file = std::env::temp_dir().join(format!("inventory-turns-{}.txt", server.pid()));
    let tracer = trace_turns(server.pid(), &trace_file);
    let stop = Arc::new(AtomicBool::new(false));
    let pings = probe(server.port, Arc::clone(&stop));
    let mut stages: Vec<(&'static str, f64, f64)> = Vec::new();
    let t = mono_ms();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stages.push(("nothing happens", t, mono_ms()));
    let t = mono_ms();
    fill(&mut conns, admin, "a", "120000").await;
    stages.push(("the queue fills", t, mono_ms()));
    let t = mono_ms();
    let _: redis::Value = redis::cmd("INV.ADD")
        .arg("sku")
        .arg(n)
        .query(admin)
        .unwrap();
    until_answered(admin).await;
    stages.push(("every unit comes back at once", t, mono_ms()));
    conns = answers(conns).await;
    fresh_key(admin);
    fill(&mut conns, admin, "b", "5000").await;
    testkit::signal("STOP", server.pid());
    std::thread::sleep(Duration::from_millis(5_300));
    testkit::signal("CONT", server.pid());
    let t = mono_ms();
    until_answered(admin).await;
    stages.push(("every wait ends at once", t, mono_ms()));
    conns = answers(conns).await;
    fresh_key(admin);
    fill(&mut conns, admin, "c", "0").await;
    let t = mono_ms();
    let _: redis::Value = redis::cmd("DEL").arg("sku").query(admin).unwrap();
    until_answered(admin).await;
    stages.push(("the key is deleted", t, mono_ms()));
    conns = answers(conns).await;
    fresh_key(admin);
    fill(&mut conns, admin, "d", "0").await;
    let t = mono_ms();
    let mut conns = conns.into_iter();
    while conns.len() > 0 {
        conns.by_ref().take(PACE).for_each(drop);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    until_answered(admin).await;
    stages.push(("every waiter disconnects", t, mono_ms()));
    // The server's own blocking (BLPOP), for its cost of a blocked client.
    let mut conns = connect_all(server.port, n).await;
    let t = mono_ms();
    for (i, s) in conns.iter_mut().enumerate() {
        s.write_all(&resp(&["BLPOP", "nothing", "0"]))
            .await
            .unwrap();
        if i % PACE == PACE - 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let blocked = |c: &mut redis::Connection| -> usize {
        testkit::info_value(c, "clients", "blocked_clients")
            .parse()
            .unwrap_or(0)
    };
    while blocked(admin) < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stages.push(("BLPOP clients block, for comparison", t, mono_ms()));
    let t = mono_ms();
    let mut conns = conns.into_iter();
    while conns.len() > 0 {
        conns.by_ref().take(PACE).for_each(drop);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    while blocked(admin) > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stages.push(("BLPOP clients disconnect, for comparison", t, mono_ms()));
    stop.store(true, Ordering::Relaxed);
    let pings = pings.join().unwrap();
    let turns = tracer.map(|mut child| {
        testkit::signal("INT", child.id());
        let _ = child.wait();
        let text = std::fs::read_to_string(&trace_file).unwrap_or_default();
        let _ = std::fs::remove_file(&trace_file);
        turns(&text, server.pid())
    });
    let within = |at: f64, from: f64, to: f64| at >= from && at <= to;
    let stages = stages
        .into_iter()
        .map(|(name, from, to)| {
            let mine: Option<Vec<Turn>> = turns.as_ref().map(|t| {
                t.iter()
                    .filter(|t| within(t.at, from, to))
                    .copied()
                    .collect()
            });
            let over = |m: &Vec<Turn>| m.iter().filter(|t| t.ms > 1.0).count();
            Stage {
                name,
                secs: (to - from) / 1e3,
                turn_max_ms: mine.as_ref().map(|m| {
                    max(&m
                        .iter()
                        .filter(|t| !t.preempted)
                        .map(|t| t.ms)
                        .collect::<Vec<_>>())
                }),
                turn_p99_ms: mine
                    .as_ref()
                    .map_or(f64::NAN, |m| pct(m.iter().map(|t| t.ms).collect(), 0.99)),
                turns: mine.as_ref().map_or(0, Vec::len),
                turns_over_1ms: mine.as_ref().map_or(0, over),
                preempted_over_1ms: mine.as_ref().map_or(0, |m| {
                    m.iter().filter(|t| t.ms > 1.0 && t.preempted).count()
                }),
                ping_max_ms: max(&pings
                    .iter()
                    .filter(|(at, _)| within(*at, from, to))
                    .map(|p| p.1)
                    .collect::<Vec<_>>()),
            }
        })
        .collect();
    let slow: Vec<redis::Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(-1)
        .query(admin)
        .unwrap();
    for e in &slow {
        if let redis::Value::Array(f) = e {
            eprintln!("slowlog: {:?}", f.get(3));
        }
    }
    let slowest = slow
        .iter()
        .filter_map(|e| match e {
            redis::Value::Array(f) => f
                .get(2)
                .and_then(|d| redis::from_redis_value::<i64>(d).ok()),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let named = slow
        .iter()
        .filter_map(|e| match e {
            redis::Value::Array(f) => {
                let us = f
                    .get(2)
                    .and_then(|d| redis::from_redis_value::<i64>(d).ok())?;
                let args: Vec<String> = redis::from_redis_value(f.get(3)?).ok()?;
                Some(format!(
                    "{}: {us} us",
                    args.iter().take(2).cloned().collect::<Vec<_>>().join(" ")
                ))
            }
            _ => None,
        })
        .collect();
    ServerSteps {
        waiters: n,
        stages,
        slow: named,
        slow_commands: slow.len(),
        slowest_command_us: slowest as f64,
    }
}

/// The part's lines.
pub(crate) fn table(core: &[CoreSteps], server: &ServerSteps) -> String {
    let mut out = String::from(
        "waiting room, the longest step (the module's structures in this process, medians of 3 runs of each step timed one by one):\n",
    );
    for c in core {
        out.push_str(&format!(
            "- {} waiters on one key: join longest {:.1} us (p99.99 {:.2} us), leave longest {:.1} us, served longest {:.1} us; one std HashMap of as many txids, longest insert {:.1} us\n",
            c.waiters, c.join_max_us, c.join_p9999_us, c.leave_max_us, c.serve_max_us, c.std_map_insert_max_us
        ));
    }
    out.push_str(&format!(
        "waiting room on a server, {} waiters on one key (the open-file limit bounds n); event-loop turns from perf trace, PING round trips from a client:\n",
        server.waiters
    ));
    for st in &server.stages {
        let turns = match st.turn_max_ms {
            Some(m) => format!(
                "turns p99 {:.2} ms, longest not preempted {m:.2} ms; {} of {} turns over 1 ms ({} of them preempted by the machine)",
                st.turn_p99_ms, st.turns_over_1ms, st.turns, st.preempted_over_1ms
            ),
            None => "turns not read (no perf trace here)".to_string(),
        };
        out.push_str(&format!(
            "- {} ({:.2} s): {turns}; longest PING {:.2} ms\n",
            st.name, st.secs, st.ping_max_ms
        ));
    }
    out.push_str(&format!(
        "- SLOWLOG over 1 ms, the whole run (setup included): {} (longest {:.0} us){}",
        server.slow_commands,
        server.slowest_command_us,
        if server.slow.is_empty() {
            String::new()
        } else {
            format!(": {}", server.slow.join(", "))
        }
    ));
    out
}

/// No command over 1 ms in SLOWLOG, and no event-loop turn over 1 ms (or
/// the machine's own floor, the stage where nothing happens, if higher) in
/// the stages the module's answers fill, when perf can read the turns.
pub(crate) fn goals(s: &ServerSteps) -> Vec<Goal> {
    let mut out = vec![at_most(
        format!(
            "no command over 1 ms with {} waiters: {}",
            s.waiters, s.slow_commands
        ),
        s.slow_commands as f64,
        0.0,
    )];
    let floor = s
        .stages
        .first()
        .and_then(|st| st.turn_max_ms)
        .unwrap_or(0.0);
    // The stages whose turns the module's work fills: grants, ended
    // waits, a deleted key. Filling and disconnecting are the server's
    // batching of arriving commands and closes (the same with BLPOP).
    let worst = s
        .stages
        .iter()
        .filter(|st| MODULE_STAGES.contains(&st.name))
        .filter_map(|st| st.turn_max_ms)
        .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
    if let Some(worst) = worst {
        out.push(at_most(
            format!(
                "no event-loop turn over {} ms with {} waiters (this machine's floor, nothing happening: {floor:.2} ms): {worst:.2} ms",
                goals::TURN_MS,
                s.waiters
            ),
            worst,
            goals::TURN_MS.max(floor),
        ));
    }
    out
}

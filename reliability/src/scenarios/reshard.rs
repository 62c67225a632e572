//! Resharding under load: the slot holding every load key moves between
//! masters of a 3+3 cluster, in turn by hand (SETSLOT IMPORTING and
//! MIGRATING, MIGRATE in batches, SETSLOT NODE everywhere), with
//! `redis-cli --cluster reshard` and, on Valkey 9, by atomic slot
//! migration (`CLUSTER MIGRATESLOTS`). After each move the new owner holds
//! everything acknowledged, its expiry runs, its fences hold, and the old
//! owner holds nothing of the slot.

use super::Finding;
use crate::load::{Durability, Load, Target, SLOT};
use crate::Setup;
use redis::Connection;
use std::process::Command;
use std::time::{Duration, Instant};
use testkit::cluster::Cluster;
use testkit::eventually;
use testkit::hostile::Rng;

fn run_cmd(c: &mut Connection, args: &[&str]) -> Result<redis::Value, String> {
    redis::cmd(args[0])
        .arg(&args[1..])
        .query(c)
        .map_err(|e| format!("{args:?}: {e}"))
}

/// SETSLOT and MIGRATE, as a cluster manager does it.
fn by_hand(cluster: &Cluster, from: usize, to: usize) -> Result<usize, String> {
    let (from_id, to_id) = (cluster.node_id(from), cluster.node_id(to));
    let slot = SLOT.to_string();
    let (src, dst) = (
        &mut cluster.nodes[from].conn(),
        &mut cluster.nodes[to].conn(),
    );
    run_cmd(dst, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id])?;
    run_cmd(src, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id])?;
    let mut moved = 0;
    loop {
        let keys: Vec<String> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(SLOT)
            .arg(2)
            .query(src)
            .map_err(|e| e.to_string())?;
        if keys.is_empty() {
            break;
        }
        moved += keys.len();
        let port = cluster.nodes[to].port.to_string();
        let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
        args.extend(keys.iter().map(String::as_str));
        run_cmd(src, &args)?;
    }
    for i in [to, from] {
        run_cmd(
            &mut cluster.nodes[i].conn(),
            &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id],
        )?;
    }
    for i in cluster.masters() {
        if i != to && i != from {
            run_cmd(
                &mut cluster.nodes[i].conn(),
                &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id],
            )?;
        }
    }
    Ok(moved)
}

/// `redis-cli --cluster reshard` of one slot: the lowest slot of `from`,
/// which is the load's.
fn with_redis_cli(cluster: &Cluster, from: usize, to: usize) -> Result<(), String> {
    let out = Command::new("redis-cli")
        .args(["--cluster", "reshard"])
        .arg(format!("127.0.0.1:{}", cluster.nodes[from].port))
        .args(["--cluster-from", &cluster.node_id(from)])
        .args(["--cluster-to", &cluster.node_id(to)])
        .args(["--cluster-slots", "1", "--cluster-yes"])
        .output()
        .map_err(|e| format!("redis-cli: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "redis-cli --cluster reshard failed: {}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    Ok(())
}

/// Valkey 9's atomic slot migration, run by the source; None where the
/// server has no such command.
fn atomic(cluster: &Cluster, from: usize, to: usize) -> Option<Result<(), String>> {
    let slot = SLOT.to_string();
    let reply = run_cmd(
        &mut cluster.nodes[from].conn(),
        &[
            "CLUSTER",
            "MIGRATESLOTS",
            "SLOTSRANGE",
            &slot,
            &slot,
            "NODE",
            &cluster.node_id(to),
        ],
    );
    match reply {
        Err(e) if e.contains("nknown subcommand") => None,
        Err(e) => Some(Err(e)),
        Ok(_) => Some(wait_migration(&mut cluster.nodes[from].conn())),
    }
}

/// Waits for the source's last migration job to end; its message if it failed.
fn wait_migration(c: &mut Connection) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let jobs: Vec<Vec<(String, redis::Value)>> = redis::cmd("CLUSTER")
            .arg("GETSLOTMIGRATIONS")
            .query(c)
            .map_err(|e| e.to_string())?;
        let last = jobs.last().cloned().unwrap_or_default();
        let field = |name: &str| {
            last.iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| redis::from_redis_value::<String>(v).ok())
                .unwrap_or_default()
        };
        match field("state").as_str() {
            "success" => return Ok(()),
            "failed" | "cancelled" => {
                return Err(format!(
                    "MIGRATESLOTS {}: {}",
                    field("state"),
                    field("message")
                ))
            }
            _ if Instant::now() > deadline => {
                return Err(format!(
                    "MIGRATESLOTS still {:?} after 30 s",
                    field("state")
                ))
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Whether the server runs `CLUSTER MIGRATESLOTS` (Valkey 9).
fn has_atomic(cluster: &Cluster) -> bool {
    let help: Vec<String> = redis::cmd("CLUSTER")
        .arg("HELP")
        .query(&mut cluster.nodes[0].conn())
        .unwrap_or_default();
    help.iter().any(|l| l.starts_with("MIGRATESLOTS"))
}

pub fn run(setup: &Setup, moves: usize) -> Finding {
    let started = Instant::now();
    let mut f = Finding::new(
        "resharding under load",
        "3 masters + 3 replicas, appendonly yes; the load through a cluster client (MOVED and ASK)",
    );
    let cluster = Cluster::start_with(&setup.server, setup.build, &["--appendonly", "yes"]);
    let load = Load::start(
        Target::Cluster {
            urls: cluster.urls(),
            retry: true,
        },
        4,
        Durability::Reply,
        0,
        setup.seed,
    );
    let mut rng = Rng::new(setup.seed ^ 0x5107);
    let (mut manual, mut cli, mut asm, mut keys_moved) = (0, 0, 0, 0);
    let methods = if has_atomic(&cluster) { 3 } else { 2 };
    for i in 0..moves {
        std::thread::sleep(Duration::from_millis(400 + rng.below(600) as u64));
        let from = cluster.owner(SLOT);
        let masters = cluster.masters();
        let to =
            masters[(masters.iter().position(|&m| m == from).unwrap_or(0) + 1) % masters.len()];
        let moved = match i % methods {
            0 => {
                manual += 1;
                by_hand(&cluster, from, to).map(|n| keys_moved += n)
            }
            1 => {
                cli += 1;
                with_redis_cli(&cluster, from, to)
            }
            _ => {
                asm += 1;
                atomic(&cluster, from, to).unwrap_or_else(|| Err("no MIGRATESLOTS".into()))
            }
        };
        if let Err(e) = moved {
            f.broken.insert(format!("move {}: {e}", i + 1));
            break;
        }
        eventually(
            "every node sees the new owner",
            Duration::from_secs(20),
            || cluster.owner(SLOT) == to,
        );
        std::thread::sleep(Duration::from_millis(200));
        load.pause();
        f.check(&load.ledger(), &mut cluster.nodes[to].conn());
        let left: i64 = redis::cmd("CLUSTER")
            .arg("COUNTKEYSINSLOT")
            .arg(SLOT)
            .query(&mut cluster.nodes[from].conn())
            .unwrap_or(-1);
        if left != 0 {
            f.broken
                .insert(format!("move {}: {left} keys left on the old owner", i + 1));
        }
        load.resume();
    }
    let ledger = load.finish();
    f.check(&ledger, &mut cluster.nodes[cluster.owner(SLOT)].conn());
    for n in &cluster.nodes {
        f.scan_log(&format!("node {}", n.port), &n.log());
    }
    f.counts = ledger.counts;
    f.faults = format!(
        "{moves} moves of the load's slot ({manual} by SETSLOT + MIGRATE, moving {keys_moved} keys; {cli} by redis-cli --cluster reshard; {asm} by CLUSTER MIGRATESLOTS)"
    );
    f.secs = started.elapsed().as_secs_f64();
    f
}

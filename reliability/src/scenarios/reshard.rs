//! Resharding under load: the slot holding every load key moves between
//! masters, in turn by hand (SETSLOT IMPORTING and MIGRATING, MIGRATE in
//! batches, SETSLOT NODE everywhere), with `redis-cli --cluster reshard`
//! and, on Valkey 9, by atomic slot migration (`CLUSTER MIGRATESLOTS`).
//! After each move the new owner holds everything acknowledged, its expiry
//! runs, its fences hold, the old owner holds nothing of the slot and, where
//! masters have replicas, the new owner's replica has what it has of the
//! slot (each key's DEBUG DIGEST-VALUE, counters and version, each feed
//! stream's summary).
//!
//! Two shapes: as deployed (3 masters + 3 replicas, appendonly yes) and
//! bare (3 masters, no replica, appendonly no), where the module's
//! propagation gate acts: an atomic slot migration's target is fed from
//! propagation like a replica, so a change the gate kept back is lost.

use super::Finding;
use crate::load::{key, Durability, Load, Target, KEYS, SLOT};
use crate::Setup;
use redis::Connection;
use std::process::Command;
use std::time::{Duration, Instant};
use testkit::cluster::{info, Cluster};
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

/// The deployment the slot moves in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// 3 masters + 3 replicas, appendonly yes.
    Deployed,
    /// 3 masters, no replica, appendonly no.
    Bare,
}

/// The replica of master `owner`, if it has one.
fn replica_of(cluster: &Cluster, owner: usize) -> Option<usize> {
    let port = format!("master_port:{}", cluster.nodes[owner].port);
    (0..cluster.nodes.len()).find(|&i| {
        i != owner
            && cluster.nodes[i].alive()
            && info(&mut cluster.nodes[i].conn(), "replication")
                .lines()
                .any(|l| l.trim() == port)
    })
}

/// What the replica must have of its master's slot: each load key's
/// `DEBUG DIGEST-VALUE` (every record, deadline and fence, through the
/// type's digest) and INV.GET (counters and version), and each feed
/// stream's length, last ID, entries added and first and last entries
/// (`XINFO STREAM`), read as a replica serves reads (`READONLY`). A
/// whole-server `DEBUG DIGEST` walks every stream entry: on a long run's
/// streams, read again every 20 ms until master and replica agreed, it held
/// nodes past their cluster node timeout, and the cluster failed them over.
fn digest(c: &mut Connection) -> Result<String, String> {
    let mut p = redis::pipe();
    p.cmd("READONLY").ignore();
    for i in 0..KEYS {
        let k = key(i);
        p.cmd("DEBUG").arg("DIGEST-VALUE").arg(&k);
        p.cmd("INV.GET").arg(&k);
        p.cmd("XINFO")
            .arg("STREAM")
            .arg(inventory_core::ledger::stream_name(k.as_bytes()));
    }
    let replies: Vec<redis::Value> = p
        .query(c)
        .map_err(|e| format!("the slot's digest could not be read: {e}"))?;
    let mut out = String::new();
    for per_key in replies.chunks(3) {
        out.push_str(&format!("{:?};{:?};", per_key[0], per_key[1]));
        let fields: Vec<redis::Value> = match &per_key[2] {
            redis::Value::Array(v) => v.clone(),
            redis::Value::Map(m) => m.iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect(),
            other => return Err(format!("XINFO STREAM: {other:?}")),
        };
        for kv in fields.chunks(2) {
            let name: String = redis::from_redis_value(&kv[0]).unwrap_or_default();
            if [
                "length",
                "last-generated-id",
                "entries-added",
                "first-entry",
                "last-entry",
            ]
            .contains(&name.as_str())
            {
                out.push_str(&format!("{name}={:?};", kv.get(1)));
            }
        }
    }
    Ok(out)
}

/// The first part (`;`-separated) where the replica's reading differs from
/// the owner's, with its place.
fn first_difference(replica: &str, owner: &str) -> String {
    let (r, o): (Vec<&str>, Vec<&str>) = (replica.split(';').collect(), owner.split(';').collect());
    match (0..r.len().max(o.len())).find(|&i| r.get(i) != o.get(i)) {
        Some(i) => format!(
            "part {i} of {}: the replica has {}, the owner {}",
            o.len(),
            r.get(i).unwrap_or(&"nothing"),
            o.get(i).unwrap_or(&"nothing")
        ),
        None => "nothing (a reading changed between tries)".to_string(),
    }
}

/// Waits (up to 20 s, the load paused) until the replica has the master's
/// slot (`digest`); what differed, or what could not be read, otherwise.
fn same_digest(cluster: &Cluster, master: usize, replica: usize) -> Result<(), String> {
    let (mc, rc) = (
        &mut cluster.nodes[master].conn(),
        &mut cluster.nodes[replica].conn(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // With the load paused the master still expires reservations as
        // they fall due, so its digest moves: the replica, once WAIT says it
        // has what was sent, must equal the master as it was just before or
        // just after the replica's read.
        let before = digest(mc)?;
        redis::cmd("WAIT")
            .arg(1)
            .arg(1000)
            .query::<i64>(mc)
            .map_err(|e| format!("WAIT: {e}"))?;
        let r = digest(rc)?;
        let after = digest(mc)?;
        if r == before || r == after {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "20 s after the move the owner's replica still differs: {}",
                first_difference(&r, &after)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn run(setup: &Setup, moves: usize, shape: Shape) -> Finding {
    let started = Instant::now();
    let (name, words, replicas, aof) = match shape {
        Shape::Deployed => (
            "resharding under load",
            "3 masters + 3 replicas, appendonly yes; the load through a cluster client (MOVED and ASK)",
            1,
            "yes",
        ),
        Shape::Bare => (
            "resharding under load, bare",
            "3 masters, no replica, appendonly no; the load through a cluster client (MOVED and ASK)",
            0,
            "no",
        ),
    };
    let mut f = Finding::new(name, words);
    let cluster =
        Cluster::start_shaped(&setup.server, setup.build, &["--appendonly", aof], replicas);
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
    // As deployed the slot goes round the three masters and the methods
    // take turns. Bare, it goes back and forth between two masters and,
    // where the server has it, every other move is atomic: the moves the
    // propagation gate could spoil.
    let atomic_too = cluster.has_atomic_migration();
    let first = cluster.owner(SLOT);
    let mut other = None;
    for i in 0..moves {
        std::thread::sleep(Duration::from_millis(400 + rng.below(600) as u64));
        let from = cluster.owner(SLOT);
        let masters = cluster.masters();
        let next =
            masters[(masters.iter().position(|&m| m == from).unwrap_or(0) + 1) % masters.len()];
        let to = match shape {
            Shape::Deployed => next,
            Shape::Bare if from == first => *other.get_or_insert(next),
            Shape::Bare => first,
        };
        let method = match (shape, atomic_too) {
            (Shape::Deployed, true) => i % 3,
            (Shape::Deployed, false) | (Shape::Bare, false) => i % 2,
            (Shape::Bare, true) if i % 2 == 0 => 2,
            (Shape::Bare, true) => i / 2 % 2,
        };
        let moved = match method {
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
                cluster.migrate_atomically(SLOT, from, to)
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
        if shape == Shape::Deployed {
            match replica_of(&cluster, to) {
                Some(r) => {
                    if let Err(e) = same_digest(&cluster, to, r) {
                        f.broken.insert(format!("move {}: {e}", i + 1));
                    }
                }
                None => {
                    f.broken
                        .insert(format!("move {}: the new owner has no replica", i + 1));
                }
            }
        }
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

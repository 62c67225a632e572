//! Cluster failover: the master owning the load's slot is killed (-9)
//! under load; the cluster promotes its replica by itself; the killed node
//! restarts from its files and rejoins as the new master's replica. With
//! WAIT the load talks straight to the slot's master and a write is a
//! promise once `WAIT 1` confirms it: none may be lost. Without WAIT (through
//! a cluster client) the report counts what was acknowledged and lost;
//! every other check must hold, expiry included, on each promoted master.

use super::{distinct, same_digest, Finding};
use crate::load::{Durability, Load, Target, SLOT};
use crate::Setup;
use std::time::{Duration, Instant};
use testkit::cluster::Cluster;
use testkit::eventually;
use testkit::hostile::Rng;

pub fn run(setup: &Setup, kills: usize, wait: bool) -> Finding {
    let started = Instant::now();
    let mut f = Finding::new(
        "cluster failover (kill -9 the slot's master; the cluster promotes its replica)",
        if wait {
            "3 masters + 3 replicas, appendonly yes (everysec), straight to the slot's master, every write followed by WAIT 1 200; cluster-node-timeout 1500 ms"
        } else {
            "3 masters + 3 replicas, appendonly yes (everysec), through a cluster client, no WAIT; cluster-node-timeout 1500 ms"
        },
    );
    let mut cluster = Cluster::start_with(&setup.server, setup.build, &["--appendonly", "yes"]);
    let load = if wait {
        Load::start(
            Target::SlotOwner(cluster.urls()),
            4,
            Durability::Wait,
            1,
            setup.seed,
        )
    } else {
        let target = Target::Cluster {
            urls: cluster.urls(),
            retry: false,
        };
        // The setup waits for the replica even here: it is a promise in
        // every view, and a replica whose link is up may not have been sent
        // anything yet (Valkey 8.1, seen: a first failover 0.5 s after the
        // full sync promoted a replica at offset 0, without the keys).
        Load::start(target, 4, Durability::Unconfirmed, 1, setup.seed)
    };
    let mut rng = Rng::new(setup.seed ^ 0xc1f0);
    let mut promoted = 0;
    for i in 0..kills {
        std::thread::sleep(Duration::from_millis(400 + rng.below(600) as u64));
        let old = cluster.owner(SLOT);
        cluster.nodes[old].kill();
        let took = Instant::now();
        eventually("the replica promoted", Duration::from_secs(30), || {
            cluster.owner(SLOT) != old
        });
        let new = cluster.owner(SLOT);
        let secs = took.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_millis(200));
        // The load waits while the killed node rejoins (a full sync): the
        // fault is over, and records would only pile up.
        load.pause();
        let before = f.broken.len();
        f.check(&load.ledger(), &mut cluster.nodes[new].conn());
        if f.broken.len() > before {
            f.notes.push(format!(
                "failover {}: the check after it found {} new broken promises",
                i + 1,
                f.broken.len() - before
            ));
        }
        cluster.nodes[old].restart();
        eventually(
            "the old master back as a replica",
            Duration::from_secs(30),
            || {
                let info = testkit::cluster::info(&mut cluster.nodes[old].conn(), "replication");
                info.contains("role:slave") && info.contains("master_link_status:up")
            },
        );
        cluster.wait_healthy();
        load.resume();
        promoted += 1;
        f.notes.push(format!(
            "failover {}: slot {SLOT} served again after {secs:.1} s",
            i + 1
        ));
    }
    let ledger = load.finish();
    let master = cluster.owner(SLOT);
    let mc = &mut cluster.nodes[master].conn();
    f.check(&ledger, mc);
    // Once quiet, the shard's replica holds what its master holds.
    let quiet = (0..300).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        testkit::info_value(mc, "inventory", "inventory_open_reservations") == "0"
    });
    let replica = (0..cluster.nodes.len()).find(|&i| {
        i != master && cluster.nodes[i].alive() && {
            let info = testkit::cluster::info(&mut cluster.nodes[i].conn(), "replication");
            info.contains(&format!("master_port:{}", cluster.nodes[master].port))
        }
    });
    let n: i64 = redis::cmd("WAIT").arg(1).arg(5_000).query(mc).unwrap_or(0);
    let same = replica.map(|r| same_digest(mc, &mut cluster.nodes[r].conn()));
    match same {
        Some(Ok(true)) if quiet && n == 1 => {
            f.notes
                .push("once quiet, the slot's replica has its master's DEBUG DIGEST".into());
        }
        Some(Err(e)) => {
            f.broken
                .insert(format!("once quiet ({quiet}), WAIT {n}: {e}"));
        }
        other => {
            f.broken.insert(format!(
                "once quiet ({quiet}), WAIT {n}, replica {replica:?} ({other:?}): digests differ"
            ));
        }
    }
    for n in &cluster.nodes {
        f.scan_log(&format!("node {}", n.port), &n.log());
    }
    f.counts = ledger.counts;
    f.faults = format!("{promoted} kill -9 of the slot's master, each followed by its restart");
    f.notes.push(if wait {
        format!(
            "acknowledged keys/txids lost: {} ({} not confirmed by WAIT)",
            distinct(&f.lost_acked),
            ledger.counts.not_durable
        )
    } else {
        format!(
            "acknowledged keys/txids lost: {} (no WAIT)",
            distinct(&f.lost_acked)
        )
    });
    f.secs = started.elapsed().as_secs_f64();
    f
}

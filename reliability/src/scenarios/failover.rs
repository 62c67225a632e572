//! Failover: a master with AOF and one replica under the mixed load; the
//! master is killed (-9), the replica promoted, a fresh replica attached.
//! With `Durability::Wait` a write is a promise once WAIT 1 confirms it;
//! every other kill first pauses the replica (SIGSTOP) so it lags, which
//! shows what WAIT buys.

use super::{distinct, same_digest, signal, Finding};
use crate::load::{Durability, Load, Target};
use crate::Setup;
use std::time::{Duration, Instant};
use testkit::hostile::Rng;
use testkit::{eventually, Server};

/// Every server of the scenario: AOF on, and a full sync starts at once
/// (Redis waits 5 s for more replicas by default).
const ARGS: &[&str] = &["--appendonly", "yes", "--repl-diskless-sync-delay", "0"];

fn replica_of(setup: &Setup, master: &Server) -> Server {
    let r = Server::start_with(&setup.server, setup.build, ARGS);
    let c = &mut r.conn();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(master.port)
        .query(c)
        .expect("REPLICAOF");
    eventually("replica link up", Duration::from_secs(20), || {
        testkit::info_value(c, "replication", "master_link_status") == "up"
    });
    r
}

/// The keys whose value digests differ, with both sides' INV.GET.
fn differing_keys(mc: &mut redis::Connection, rc: &mut redis::Connection) -> String {
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(mc).unwrap_or_default();
    let mut out = Vec::new();
    for k in keys {
        let d = |c: &mut redis::Connection| -> Vec<String> {
            redis::cmd("DEBUG")
                .arg("DIGEST-VALUE")
                .arg(&k)
                .query(c)
                .unwrap_or_default()
        };
        if d(mc) != d(rc) {
            let g = |c: &mut redis::Connection| -> std::collections::BTreeSet<String> {
                let (_, recs): (String, Vec<Vec<redis::Value>>) = redis::cmd("INV.SCAN")
                    .arg(&k)
                    .arg(0)
                    .arg("COUNT")
                    .arg(100_000)
                    .query(c)
                    .unwrap_or_default();
                recs.iter().map(|r| format!("{r:?}")).collect()
            };
            let (m, r) = (g(mc), g(rc));
            out.push(format!(
                "{k}: only on the master {:?}, only on the replica {:?}",
                m.difference(&r).take(3).collect::<Vec<_>>(),
                r.difference(&m).take(3).collect::<Vec<_>>()
            ));
        }
    }
    out.join("; ")
}

pub fn run(setup: &Setup, wait: bool, kills: usize) -> Finding {
    let started = Instant::now();
    let (durability, with) = if wait {
        (Durability::Wait, "every write followed by WAIT 1 200")
    } else {
        (Durability::Unconfirmed, "no WAIT")
    };
    let mut f = Finding::new(
        "failover (kill -9 the master, promote the replica)",
        &format!("master + 1 replica, appendonly yes (everysec), {with}"),
    );
    let mut rng = Rng::new(setup.seed ^ 0xfa11);
    let mut master = Server::start_with(&setup.server, setup.build, ARGS);
    let mut replica = replica_of(setup, &master);
    let load = Load::start(Target::Server(master.url()), 4, durability, 1, setup.seed);
    let mut lagged = 0;
    for i in 0..kills {
        std::thread::sleep(Duration::from_millis(400 + rng.below(600) as u64));
        let lag = i % 2 == 1;
        if lag {
            // The replica stops and its link is cut, so what the master
            // acknowledges next reaches no replica (stopping it alone is not
            // enough: its kernel keeps receiving the stream).
            signal(replica.pid(), "STOP");
            let _: redis::RedisResult<i64> = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("replica")
                .query(&mut master.conn());
            std::thread::sleep(Duration::from_millis(300));
            lagged += 1;
        }
        f.scan_log("old master", &master.log());
        drop(master);
        if lag {
            signal(replica.pid(), "CONT");
        }
        let c = &mut replica.conn();
        let _: () = redis::cmd("REPLICAOF")
            .arg("NO")
            .arg("ONE")
            .query(c)
            .expect("promote");
        load.follow(&replica.url());
        master = replica;
        replica = replica_of(setup, &master);
        std::thread::sleep(Duration::from_millis(200));
        load.pause();
        let mc = &mut master.conn();
        f.check(&load.ledger(), mc);
        load.resume();
    }
    let ledger = load.finish();
    let mc = &mut master.conn();
    f.check(&ledger, mc);
    // Once quiet (every reservation finished, so nothing changes with
    // time), the replica holds exactly what the master holds.
    let quiet = (0..300).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        testkit::info_value(mc, "inventory", "inventory_open_reservations") == "0"
    });
    let n: i64 = redis::cmd("WAIT").arg(1).arg(5_000).query(mc).unwrap_or(0);
    let rc = &mut replica.conn();
    match same_digest(mc, rc) {
        Ok(true) if quiet && n == 1 => f
            .notes
            .push("once quiet, the last replica's DEBUG DIGEST equals its master's".into()),
        Ok(_) => {
            f.broken.insert(format!(
                "once quiet ({quiet}), WAIT {n}: the replica's digest differs: {}",
                differing_keys(mc, rc)
            ));
        }
        Err(e) => {
            f.broken
                .insert(format!("once quiet ({quiet}), WAIT {n}: {e}"));
        }
    }
    f.scan_log("last master", &master.log());
    f.scan_log("last replica", &replica.log());
    f.counts = ledger.counts;
    f.faults = format!(
        "{kills} kill -9 of the master with promotion ({lagged} with the replica stopped and cut off 300 ms before)"
    );
    f.notes.push(format!(
        "acknowledged keys/txids lost: {} ({} not confirmed by WAIT)",
        distinct(&f.lost_acked),
        ledger.counts.not_durable
    ));
    f.secs = started.elapsed().as_secs_f64();
    f
}

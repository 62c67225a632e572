//! Master and replica reach the same state, expiry included; a promoted
//! replica takes over expiry.

use crate::harness::*;
use std::time::Duration;

fn replica_of(master: &Server, extra: &[&str]) -> Server {
    let r = Server::start(extra);
    let c = &mut r.conn();
    ok(c, &["REPLICAOF", "127.0.0.1", &master.port.to_string()]);
    eventually("replica link up", Duration::from_secs(10), || {
        let info: String = redis::cmd("INFO").arg("replication").query(c).unwrap();
        info.contains("master_link_status:up")
    });
    r
}

fn wait_replicated(master: &mut redis::Connection) {
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(master).unwrap();
    assert_eq!(acked, 1);
}

#[test]
fn replica_digest_equals_master_after_mixed_workload_with_expiry() {
    let m = Server::start(&[]);
    let mc = &mut m.conn();
    // Data that reaches the replica by full sync...
    crate::persistence::workload(mc, "before-sync");
    let r = replica_of(&m, &[]);
    let rc = &mut r.conn();
    // ...and by the command stream, with expiry and purges along the way.
    ok(mc, &["CONFIG", "SET", "inventory.retention-ms", "300"]);
    crate::persistence::workload(mc, "streamed");
    ok(mc, &["INV.SET", "{c}a", "5"]);
    ok(mc, &["INV.SET", "{c}b", "5"]);
    ok(
        mc,
        &["INV.MRESERVE", "cart", "100", "{c}a", "2", "{c}b", "3"],
    );
    ok(mc, &["INV.RESERVE", "{c}a", "x", "1", "TTL", "5000"]);
    ok(mc, &["INV.EXTEND", "{c}a", "x", "200"]);
    eventually(
        "expiry and purge on the master",
        Duration::from_secs(3),
        || {
            // Each workload leaves 21 open reservations; the cart and "x" expire.
            info_field(mc, "open_reservations") == 2 * 21 && info_field(mc, "purged") > 0
        },
    );
    wait_replicated(mc);
    assert_eq!(digest(rc), digest(mc));
    for k in ["before-sync", "streamed", "{c}a", "{c}b"] {
        assert_eq!(ok(rc, &["INV.GET", k]), ok(mc, &["INV.GET", k]), "{k}");
    }
    // Replicas never expire on their own: their INFO counts no expiry.
    assert_eq!(info_field(rc, "expired"), 0);
    assert!(info_field(mc, "expired") > 0);
}

#[test]
fn promoted_replica_takes_over_expiry() {
    let m = Server::start(&[]);
    let r = replica_of(&m, &[]);
    let mc = &mut m.conn();
    ok(mc, &["INV.SET", "sku", "5"]);
    ok(mc, &["INV.RESERVE", "sku", "o", "5", "TTL", "800"]);
    wait_replicated(mc);
    drop(m);
    let rc = &mut r.conn();
    ok(rc, &["REPLICAOF", "NO", "ONE"]);
    eventually(
        "the new master expires the reservation",
        Duration::from_secs(3),
        || info_field(rc, "expired") == 1,
    );
    assert_eq!(
        (get(rc, "sku", "available"), get(rc, "sku", "version")),
        (5, 3)
    );
}

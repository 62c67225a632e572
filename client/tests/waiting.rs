//! The waiting room through the client, against real servers (standalone
//! and a 3-master cluster): a reserve that waits gets returned units in
//! arrival order, does not hold up the client's other requests, and leaves
//! no grant behind when its caller gives up.

use redis_inventory_client::{Client, Outcome};
use std::time::{Duration, Instant};
use testkit::cluster::Cluster;
use testkit::Server;

fn info_field(c: &mut redis::Connection, name: &str) -> i64 {
    let info: String = redis::cmd("INFO").arg("inventory").query(c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("inventory_{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no inventory_{name}"))
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Two waiters in order, a unit returned at a time; the shared connection
/// keeps answering while they wait.
async fn walk_through(c: &Client, sku: &str, admin: &mut redis::Connection) {
    c.set(sku, 1, None).await.unwrap();
    c.reserve(sku, "holder", 1, None).await.unwrap();
    let wait = Duration::from_secs(20);
    let (c1, s1) = (c.clone(), sku.to_string());
    let first =
        tokio::spawn(async move { c1.reserve_waiting(&s1, "w1", 1, None, None, wait).await });
    until("w1 waits", || info_field(admin, "waiters") == 1).await;
    let (c2, s2) = (c.clone(), sku.to_string());
    let second = tokio::spawn(async move {
        c2.reserve_waiting(&s2, "w2", 1, None, Some("bob"), wait)
            .await
    });
    until("w2 waits", || info_field(admin, "waiters") == 2).await;
    // The client's other requests go on while both wait.
    let started = Instant::now();
    assert_eq!(c.get(sku).await.unwrap().unwrap().counts.available, 0);
    assert!(started.elapsed() < Duration::from_secs(1));
    c.cancel(sku, "holder").await.unwrap();
    let r1 = first.await.unwrap().unwrap();
    assert_eq!((r1.outcome, r1.available), (Outcome::Reserved, 0));
    assert_eq!(info_field(admin, "waiters"), 1);
    c.add(sku, 1, None).await.unwrap();
    let r2 = second.await.unwrap().unwrap();
    assert_eq!(r2.outcome, Outcome::Reserved);
    assert!(r1.version < r2.version);
    // A wait that runs out answers NOSTOCK and records nothing.
    let r = c
        .reserve_waiting(sku, "late", 1, None, None, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(r.outcome, Outcome::NoStock);
    assert!(c.tx(sku, "late").await.unwrap().is_none());
}

#[tokio::test]
async fn a_waiting_reserve_standalone() {
    let s = Server::start(&[]);
    let c = Client::standalone(&s.url()).await.unwrap();
    walk_through(&c, "sku", &mut s.conn()).await;
}

#[tokio::test]
async fn a_waiting_reserve_on_a_cluster() {
    let cluster = Cluster::start();
    let urls = cluster.urls();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let c = Client::cluster(&urls).await.unwrap();
    let sku = "sku:{w}";
    let owner = cluster.owner(cluster.slot_of(sku));
    walk_through(&c, sku, &mut cluster.nodes[owner].conn()).await;
}

/// A caller that gives up (drops the future under its own timeout) leaves
/// its txid fenced: the units that come back later are not granted to it.
#[tokio::test]
async fn a_caller_that_gives_up_leaves_its_txid_fenced() {
    let s = Server::start(&[]);
    let admin = &mut s.conn();
    let c = Client::standalone(&s.url()).await.unwrap();
    c.set("sku", 1, None).await.unwrap();
    c.reserve("sku", "holder", 1, None).await.unwrap();
    let gave_up = tokio::time::timeout(
        Duration::from_millis(300),
        c.reserve_waiting("sku", "impatient", 1, None, None, Duration::from_secs(30)),
    )
    .await;
    assert!(
        gave_up.is_err(),
        "the wait ended before the caller's timeout"
    );
    until("the txid is fenced", || info_field(admin, "waiters") == 0).await;
    let t = c.tx("sku", "impatient").await.unwrap().expect("a fence");
    assert_eq!(t.outcome, Outcome::Cancelled);
    // The unit that comes back stays available: nobody waits for it.
    c.cancel("sku", "holder").await.unwrap();
    assert_eq!(c.get("sku").await.unwrap().unwrap().counts.available, 1);
}

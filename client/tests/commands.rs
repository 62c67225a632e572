//! `InventoryCommands` on the redis-rs connections a service already has
//! (multiplexed, connection manager, cluster; RESP2 and RESP3), and the
//! client's scan and audit, against real servers.

use redis::aio::ConnectionLike;
use redis_inventory_client::{Client, InventoryCommands, Outcome};
use std::time::Duration;
use testkit::cluster::Cluster;
use testkit::Server;

/// Every single-key command once, through `con`, on `sku`.
async fn walk_through<C: ConnectionLike + Send>(con: &mut C, sku: &str) {
    con.inv_set(sku, 10, None).await.unwrap();
    assert_eq!(con.inv_add(sku, 2, Some(1)).await.unwrap(), 12);
    let r = con
        .inv_reserve(sku, "o1", 3, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(
        (r.outcome, r.available, r.version),
        (Outcome::Reserved, 9, 3)
    );
    assert_eq!(
        con.inv_reserve(sku, "o1", 3, None).await.unwrap().outcome,
        Outcome::Reserved
    );
    let r = con
        .inv_extend(sku, "o1", Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(r.outcome, Outcome::Reserved);
    let t = con.inv_tx(sku, "o1").await.unwrap().expect("o1 is known");
    assert_eq!((t.outcome, t.qty), (Outcome::Reserved, 3));
    assert!(t.deadline > 0);
    assert_eq!(
        con.inv_confirm(sku, "o1").await.unwrap().outcome,
        Outcome::Confirmed
    );
    assert_eq!(
        con.inv_cancel(sku, "o2").await.unwrap().outcome,
        Outcome::Cancelled
    );
    let s = con.inv_get(sku).await.unwrap().expect("the key exists");
    assert_eq!(
        (
            s.counts.stock,
            s.counts.reserved,
            s.counts.available,
            s.counts.sold,
            s.counts.open,
            s.counts.records
        ),
        (9, 0, 9, 3, 0, 2)
    );
    assert!(con.inv_get("missing").await.unwrap().is_none());
    assert!(con.inv_tx(sku, "never").await.unwrap().is_none());
    let page = con.inv_scan(sku, 0, Some(10)).await.unwrap();
    assert_eq!(page.cursor, 0);
    let mut txids: Vec<Vec<u8>> = page.records.iter().map(|(t, _)| t.clone()).collect();
    txids.sort();
    assert_eq!(txids, [b"o1".to_vec(), b"o2".to_vec()]);
    assert_eq!(con.inv_audit(sku).await.unwrap(), None);
    // Server errors stay redis-rs errors with their code.
    let e = con.inv_reserve(sku, "o3", 0, None).await.unwrap_err();
    assert_eq!(e.code(), Some("ERR"));
    let e = con.inv_set(sku, 1, Some(999)).await.unwrap_err();
    assert_eq!(e.code(), Some("VERSION"));
}

#[tokio::test]
async fn the_extension_trait_works_on_a_multiplexed_connection_and_a_manager() {
    let s = Server::start(&[]);
    for protocol in ["resp2", "resp3"] {
        let client = redis::Client::open(format!("{}?protocol={protocol}", s.url())).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        walk_through(&mut con, &format!("sku:{protocol}:multiplexed")).await;
        let mut manager = client.get_connection_manager().await.unwrap();
        walk_through(&mut manager, &format!("sku:{protocol}:manager")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extension_trait_works_on_a_cluster_connection() {
    let cluster = Cluster::start();
    let client = redis::cluster::ClusterClient::new(cluster.urls()).unwrap();
    let mut con = client.get_async_connection().await.unwrap();
    // Keys on every shard: redis-rs routes these by their key argument.
    for i in 0..6 {
        walk_through(&mut con, &format!("sku:{i}")).await;
    }
}

#[tokio::test]
async fn the_client_scans_and_audits() {
    let s = Server::start(&[]);
    let c = Client::standalone(&s.url()).await.unwrap();
    c.set("sku", 100, None).await.unwrap();
    for i in 0..25 {
        c.reserve("sku", &format!("o{i:02}"), 1, None)
            .await
            .unwrap();
    }
    let (mut cursor, mut seen) = (0, Vec::new());
    loop {
        let page = c.scan("sku", cursor, Some(10)).await.unwrap();
        seen.extend(page.records.into_iter().map(|(t, r)| (t, r.outcome)));
        cursor = page.cursor;
        if cursor == 0 {
            break;
        }
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let expected: Vec<(Vec<u8>, Outcome)> = (0..25)
        .map(|i| (format!("o{i:02}").into_bytes(), Outcome::Reserved))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(c.audit("sku").await.unwrap(), None);
    assert_eq!(c.get("sku").await.unwrap().unwrap().counts.records, 25);
}

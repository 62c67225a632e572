//! Flash-sale rules through the client and the extension trait, against
//! real servers (standalone and a 3-master cluster).

use redis_inventory_client::{
    BuyerTotals, Client, InventoryCommands, OrderLine, Outcome, SaleRules,
};
use testkit::cluster::Cluster;
use testkit::Server;

async fn walk_through(c: &Client, sku: &str) {
    c.set(sku, 10, None).await.unwrap();
    c.rules(sku, &SaleRules::new().limit(3)).await.unwrap();
    let s = c.get(sku).await.unwrap().unwrap();
    assert_eq!((s.limit, s.start, s.end), (Some(3), None, None));
    let r = c.reserve_for(sku, "o1", 2, None, "alice").await.unwrap();
    assert_eq!((r.outcome, r.available), (Outcome::Reserved, 8));
    let r = c.reserve_for(sku, "o2", 2, None, "alice").await.unwrap();
    assert_eq!(r.outcome, Outcome::Limited);
    assert_eq!(
        c.adjust(sku, "o1", 3).await.unwrap().outcome,
        Outcome::Reserved
    );
    let r = c.confirm_qty(sku, "o1", 1).await.unwrap();
    assert_eq!((r.outcome, r.available), (Outcome::Confirmed, 9));
    let t = c.tx(sku, "o1").await.unwrap().unwrap();
    assert_eq!((t.outcome, t.qty, t.sold), (Outcome::Confirmed, 3, 1));
    assert_eq!(
        c.buyer(sku, "alice").await.unwrap(),
        BuyerTotals { held: 0, bought: 1 }
    );
    let e = c.confirm_qty(sku, "o1", 2).await.unwrap_err();
    assert!(e.to_string().contains("TXCONFLICT"), "{e}");
    c.rules(sku, &SaleRules::new().window(1, 2)).await.unwrap();
    let r = c.reserve_for(sku, "o3", 1, None, "bob").await.unwrap();
    assert_eq!(r.outcome, Outcome::Closed);
    c.rules(sku, &SaleRules::new().window(0, 0).new_sale())
        .await
        .unwrap();
    assert_eq!(c.buyer(sku, "alice").await.unwrap(), BuyerTotals::default());
    assert_eq!(c.audit(sku).await.unwrap(), None);
}

#[tokio::test]
async fn the_client_drives_the_rules_standalone() {
    let s = Server::start(&[]);
    let c = Client::standalone(&s.url()).await.unwrap();
    walk_through(&c, "sku").await;
    // The change feed.
    c.rules("sku", &SaleRules::new().feed(true).low(2))
        .await
        .unwrap();
    let st = c.get("sku").await.unwrap().unwrap();
    assert_eq!((st.feed, st.low), (true, Some(2)));
    c.reserve_for("sku", "o9", 1, None, "carol").await.unwrap();
    let stream = c.feed_name("sku").await.unwrap();
    assert!(
        stream.starts_with("inv:feed:{") && stream.ends_with("}:sku"),
        "{stream}"
    );
    let mut raw = redis::Client::open(s.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let entries: Vec<(String, std::collections::HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(&stream)
        .arg("-")
        .arg("+")
        .query(&mut raw)
        .unwrap();
    let events: Vec<&str> = entries.iter().map(|(_, f)| f["event"].as_str()).collect();
    assert_eq!(events, ["rules", "reserved"]);
    assert_eq!(entries[1].1["buyer"], "carol");
    c.rules("sku", &SaleRules::new().feed(false).low(0))
        .await
        .unwrap();
    let st = c.get("sku").await.unwrap().unwrap();
    assert_eq!((st.feed, st.low), (false, None));
    // An order for a buyer: every line counts, or none.
    c.set("{o}a", 5, None).await.unwrap();
    c.set("{o}b", 5, None).await.unwrap();
    c.rules("{o}b", &SaleRules::new().limit(1)).await.unwrap();
    let lines = [OrderLine::new("{o}a", 1), OrderLine::new("{o}b", 2)];
    let r = c
        .reserve_order_for("t", &lines, None, Some("al"))
        .await
        .unwrap();
    assert_eq!(r.outcome, Outcome::Limited);
    let lines = [OrderLine::new("{o}a", 1), OrderLine::new("{o}b", 1)];
    let r = c
        .reserve_order_for("t2", &lines, None, Some("al"))
        .await
        .unwrap();
    assert_eq!(r.outcome, Outcome::Reserved);
    assert_eq!(c.buyer("{o}b", "al").await.unwrap().held, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_drives_the_rules_on_a_cluster() {
    let cluster = Cluster::start();
    let c = Client::cluster(
        &cluster
            .urls()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    for i in 0..4 {
        walk_through(&c, &format!("sku:{i}")).await;
    }
}

#[tokio::test]
async fn the_extension_trait_has_the_rules() {
    let s = Server::start(&[]);
    for protocol in ["resp2", "resp3"] {
        let client = redis::Client::open(format!("{}?protocol={protocol}", s.url())).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let sku = format!("sku:{protocol}");
        con.inv_set(&sku, 5, None).await.unwrap();
        con.inv_rules(&sku, &SaleRules::new().limit(2))
            .await
            .unwrap();
        let r = con.inv_reserve_for(&sku, "o", 2, None, "b").await.unwrap();
        assert_eq!(r.outcome, Outcome::Reserved);
        assert_eq!(
            con.inv_adjust(&sku, "o", 1).await.unwrap().outcome,
            Outcome::Reserved
        );
        let r = con.inv_confirm_qty(&sku, "o", 1).await.unwrap();
        assert_eq!(r.outcome, Outcome::Confirmed);
        let t = con.inv_buyer(&sku, "b").await.unwrap();
        assert_eq!((t.held, t.bought), (0, 1));
        let s = con.inv_get(&sku).await.unwrap().unwrap();
        assert_eq!(s.limit, Some(2));
    }
}

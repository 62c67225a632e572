//! The client against a real 3-master, 3-replica Redis Cluster.

use redis_inventory_client::{slot, Client, Durability, OrderLine, Outcome, ReserveRequest};
use std::collections::BTreeSet;
use std::time::Duration;
use testkit::cluster::Cluster;
use testkit::eventually;

async fn client(cluster: &Cluster) -> Client {
    let urls = cluster.urls();
    let refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    Client::cluster(&refs)
        .await
        .expect("connect to the cluster")
}

/// SKU names whose slots are served by `n` distinct masters, one each.
fn spread(cluster: &Cluster, prefix: &str, n: usize) -> Vec<String> {
    let mut owners = BTreeSet::new();
    let mut skus = Vec::new();
    for i in 0.. {
        let sku = format!("{prefix}:{i}");
        if owners.insert(cluster.owner(slot(sku.as_bytes()))) {
            skus.push(sku);
        }
        if skus.len() == n {
            return skus;
        }
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_1000_skus_across_3_shards_in_input_order() {
    let cluster = Cluster::start();
    // Through a redis-rs ClusterClient the service configured itself.
    let c = Client::builder()
        .cluster_from(redis::cluster::ClusterClient::new(cluster.urls()).unwrap())
        .await
        .expect("connect to the cluster");
    let sets = (0..1000).map(|i| {
        let c = c.clone();
        async move { c.set(&format!("sku:{i}"), 10, None).await }
    });
    for r in futures::future::join_all(sets).await {
        r.unwrap();
    }
    let reqs: Vec<ReserveRequest> = (0..1000)
        .map(|i| ReserveRequest {
            sku: format!("sku:{i}"),
            txid: format!("o{i}"),
            qty: 1 + i % 3,
            ttl: None,
        })
        .collect();
    let results = c.reserve_many(&reqs).await;
    for (i, r) in results.into_iter().enumerate() {
        let r = r.unwrap();
        assert_eq!(
            (r.outcome, r.available),
            (Outcome::Reserved, 10 - (1 + i as i64 % 3)),
            "sku:{i}"
        );
    }
    // Every master holds a share, and together exactly the 1000 keys.
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    let sizes: Vec<i64> = masters
        .iter()
        .map(|&m| {
            redis::cmd("DBSIZE")
                .query(&mut cluster.nodes[m].conn())
                .unwrap()
        })
        .collect();
    assert_eq!(sizes.iter().sum::<i64>(), 1000, "{sizes:?}");
    assert!(sizes.iter().all(|&s| s > 200), "{sizes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_span_shards_and_compensate() {
    let cluster = Cluster::start();
    let c = client(&cluster).await;
    let skus = spread(&cluster, "item", 3);
    // Two more SKUs sharing a slot with the first (hash tag): an atomic group.
    let tagged = [format!("{{{}}}:a", skus[0]), format!("{{{}}}:b", skus[0])];
    let all: Vec<&str> = skus
        .iter()
        .chain(tagged.iter())
        .map(String::as_str)
        .collect();
    for s in &all {
        c.set(s, 5, None).await.unwrap();
    }
    let lines: Vec<OrderLine> = vec![
        OrderLine::new(all[0], 1),
        OrderLine::new(all[1], 2),
        OrderLine::new(all[2], 1),
        OrderLine::new(all[3], 1),
        OrderLine::new(all[4], 1),
        OrderLine::new(all[0], 1), // repeated: summed to 2
    ];
    let r = c.reserve_order("o1", &lines, None).await.unwrap();
    assert_eq!(
        (r.outcome, r.blocked.clone(), r.compensated),
        (Outcome::Reserved, None, false)
    );
    let reserved =
        |c: Client, s: String| async move { c.get(&s).await.unwrap().unwrap().counts.reserved };
    assert_eq!(reserved(c.clone(), all[0].into()).await, 2);
    // Retrying the whole order changes nothing.
    let again = c.reserve_order("o1", &lines, None).await.unwrap();
    assert_eq!(again.outcome, Outcome::Reserved);
    assert_eq!(reserved(c.clone(), all[0].into()).await, 2);
    assert_eq!(reserved(c.clone(), all[1].into()).await, 2);

    // A blocked line releases every other line.
    let before: Vec<i64> = futures::future::join_all(all.iter().map(|s| {
        let c = c.clone();
        let s = s.to_string();
        async move { c.get(&s).await.unwrap().unwrap().counts.available }
    }))
    .await;
    let greedy = vec![
        OrderLine::new(all[0], 1),
        OrderLine::new(all[1], 1),
        OrderLine::new(all[2], 99),
        OrderLine::new(all[3], 1),
    ];
    let r = c.reserve_order("o2", &greedy, None).await.unwrap();
    assert_eq!(r.outcome, Outcome::NoStock);
    let blocked = r.blocked.unwrap();
    assert_eq!(
        (blocked.line, blocked.sku.as_str(), blocked.outcome),
        (2, all[2], Some(Outcome::NoStock))
    );
    assert!(r.compensated);
    let after: Vec<i64> = futures::future::join_all(all.iter().map(|s| {
        let c = c.clone();
        let s = s.to_string();
        async move { c.get(&s).await.unwrap().unwrap().counts.available }
    }))
    .await;
    assert_eq!(
        after, before,
        "every line of the blocked order was released"
    );
    // Its txid is fenced everywhere: a late retry of the same order takes nothing.
    let late = c.reserve_order("o2", &greedy[..2], None).await.unwrap();
    assert_eq!(late.outcome, Outcome::Cancelled);

    // Confirm, then cancel reports the confirmed order.
    let confirmed = c.confirm_order("o1", &all).await.unwrap();
    assert_eq!(confirmed.outcome, Outcome::Confirmed);
    assert_eq!(c.get(all[0]).await.unwrap().unwrap().counts.sold, 2);
    let cancel = c.cancel_order("o1", &all).await.unwrap();
    assert_eq!(cancel.outcome, Outcome::Confirmed);
    // Confirming an order that was never reserved is blocked as UNKNOWN.
    let unknown = c.confirm_order("nope", &all).await.unwrap();
    assert_eq!(unknown.outcome, Outcome::Unknown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_replaced_and_the_client_recovers() {
    let mut cluster = Cluster::start();
    // Failover under load can take longer than the default 10 s deadline.
    let plain = client(&cluster)
        .await
        .with_retry(redis_inventory_client::RetryPolicy {
            deadline: Duration::from_secs(30),
            ..Default::default()
        });
    let durable = plain.clone().with_durability(Durability {
        replicas: 1,
        timeout: Duration::from_secs(2),
    });
    let sku = "{failover}sku";
    plain.set(sku, 1_000, None).await.unwrap();
    let mut acked = Vec::new();
    for i in 0..50 {
        let r = durable
            .reserve(sku, &format!("w{i}"), 1, None)
            .await
            .unwrap();
        assert_eq!(r.outcome, Outcome::Reserved);
        if r.acked_replicas == Some(1) {
            acked.push(format!("w{i}"));
        }
    }
    for i in 0..50 {
        plain.reserve(sku, &format!("n{i}"), 1, None).await.unwrap();
    }
    let master = cluster.owner(slot(sku.as_bytes()));
    cluster.nodes[master].kill();
    // The replica takes over (cluster-node-timeout 1.5 s); the client retries.
    let r = plain
        .reserve(sku, "after-failover", 1, None)
        .await
        .expect("client recovers");
    assert_eq!(r.outcome, Outcome::Reserved);
    eventually(
        "a new master serves the slot",
        Duration::from_secs(20),
        || cluster.owner(slot(sku.as_bytes())) != master,
    );
    let mut survived_acked = 0;
    for t in &acked {
        if plain.tx(sku, t).await.unwrap().is_some() {
            survived_acked += 1;
        }
    }
    let mut survived_plain = 0;
    for i in 0..50 {
        if plain.tx(sku, &format!("n{i}")).await.unwrap().is_some() {
            survived_plain += 1;
        }
    }
    println!(
        "failover: {} of {} WAIT-acknowledged reservations survived; {survived_plain} of 50 without WAIT",
        survived_acked,
        acked.len()
    );
    assert_eq!(acked.len(), 50, "every write acknowledged by a replica");
    assert_eq!(
        survived_acked,
        acked.len(),
        "an acknowledged write was lost"
    );
    let stock = plain.get(sku).await.unwrap().unwrap();
    assert_eq!(stock.counts.reserved, 50 + survived_plain + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migrated_while_orders_stream_loses_and_doubles_nothing() {
    let cluster = Cluster::start();
    let c = client(&cluster).await;
    let skus: Vec<String> = (0..4).map(|i| format!("{{mig}}:{i}")).collect();
    for s in &skus {
        c.set(s, 100_000, None).await.unwrap();
    }
    let s = slot(b"{mig}");
    let from = cluster.owner(s);
    let to = *cluster.masters().iter().find(|&&m| m != from).unwrap();
    let orders = 300;
    let stream = {
        let c = c.clone();
        let skus = skus.clone();
        tokio::spawn(async move {
            let mut reserved = 0;
            for i in 0..orders {
                let lines = [
                    OrderLine::new(skus[i % 4].clone(), 1),
                    OrderLine::new(skus[(i + 1) % 4].clone(), 2),
                ];
                let r = c
                    .reserve_order(&format!("order-{i}"), &lines, None)
                    .await
                    .expect("order");
                assert_eq!(r.outcome, Outcome::Reserved, "order-{i}: {r:?}");
                reserved += 3;
            }
            reserved
        })
    };
    // Move the slot by hand, as redis-cli --cluster reshard does.
    let (from_id, to_id) = (cluster.node_id(from), cluster.node_id(to));
    let mut fc = cluster.nodes[from].conn();
    let mut tc = cluster.nodes[to].conn();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _: () = redis::cmd("CLUSTER")
        .arg(&["SETSLOT", &s.to_string(), "IMPORTING", &from_id])
        .query(&mut tc)
        .unwrap();
    let _: () = redis::cmd("CLUSTER")
        .arg(&["SETSLOT", &s.to_string(), "MIGRATING", &to_id])
        .query(&mut fc)
        .unwrap();
    loop {
        let keys: Vec<String> = redis::cmd("CLUSTER")
            .arg(&["GETKEYSINSLOT", &s.to_string(), "1"])
            .query(&mut fc)
            .unwrap();
        if keys.is_empty() {
            break;
        }
        let _: redis::Value = redis::cmd("MIGRATE")
            .arg(&[
                "127.0.0.1",
                &cluster.nodes[to].port.to_string(),
                "",
                "0",
                "5000",
                "KEYS",
                &keys[0],
            ])
            .query(&mut fc)
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in cluster.nodes.iter().filter(|n| n.alive()) {
        let _: redis::RedisResult<()> = redis::cmd("CLUSTER")
            .arg(&["SETSLOT", &s.to_string(), "NODE", &to_id])
            .query(&mut n.conn());
    }
    let expected: i64 = stream.await.unwrap();
    let mut total = 0;
    for sku in &skus {
        let st = c.get(sku).await.unwrap().unwrap();
        total += st.counts.reserved;
        let ok: String = redis::cmd("INV.AUDIT")
            .arg(sku)
            .query(&mut cluster.nodes[to].conn())
            .unwrap();
        assert_eq!(ok, "OK");
    }
    assert_eq!(cluster.owner(s), to);
    assert_eq!(
        total, expected,
        "reserved units equal the orders' units: nothing lost or doubled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carts_racing_across_shards_hold_all_or_nothing_and_never_oversell() {
    const STOCK: i64 = 50;
    const ORDERS: usize = 120;
    let cluster = Cluster::start();
    let c = client(&cluster).await;
    let skus = spread(&cluster, "cart", 3);
    for s in &skus {
        c.set(s, STOCK, None).await.unwrap();
    }
    // Each cart takes 1 or 2 units of every SKU (one per shard): about
    // 180 units of each are asked for 50, so most carts are blocked and
    // compensated while others race them.
    let qty = |order: usize, line: usize| 1 + ((order * 7 + line * 3) % 2) as i64;
    let orders = (0..ORDERS).map(|o| {
        let (c, skus) = (c.clone(), skus.clone());
        tokio::spawn(async move {
            let lines: Vec<OrderLine> = skus
                .iter()
                .enumerate()
                .map(|(l, s)| OrderLine::new(s, qty(o, l)))
                .collect();
            let r = c
                .reserve_order(&format!("cart-{o}"), &lines, None)
                .await
                .unwrap();
            (o, r.outcome)
        })
    });
    let results: Vec<(usize, Outcome)> = futures::future::join_all(orders)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let won: Vec<usize> = results
        .iter()
        .filter(|(_, out)| *out == Outcome::Reserved)
        .map(|(o, _)| *o)
        .collect();
    assert!(
        !won.is_empty() && won.len() < ORDERS,
        "{} carts won",
        won.len()
    );
    for (l, s) in skus.iter().enumerate() {
        let stock = c.get(s).await.unwrap().unwrap();
        let held: i64 = won.iter().map(|&o| qty(o, l)).sum();
        assert_eq!(
            stock.counts.reserved, held,
            "{s}: exactly the winning carts hold units"
        );
        assert!(
            stock.counts.reserved + stock.counts.sold <= STOCK,
            "{s} oversold: {stock:?}"
        );
        for (o, outcome) in &results {
            let tx = c.tx(s, &format!("cart-{o}")).await.unwrap();
            let holds = tx.is_some_and(|t| t.outcome == Outcome::Reserved);
            assert_eq!(
                holds,
                *outcome == Outcome::Reserved,
                "cart-{o} ({outcome:?}) on {s}: all lines or none"
            );
        }
    }
}

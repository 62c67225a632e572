//! The change feed's typed consumer against real servers: every change
//! handed out in order with its fields, acked entries gone for good,
//! unacked ones back after a restart, a dead consumer's entries claimed,
//! waiting that wakes with a change (on one connection kept for the
//! waits), entries trimmed while pending counted,
//! and SKUs on every shard of a cluster each delivered once.

use redis_inventory_client::{
    Client, FeedConsumer, FeedEvent, FeedEventKind as K, FeedStart, Outcome, SaleRules,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use testkit::cluster::Cluster;
use testkit::Server;

async fn fed(c: &Client, sku: &str, stock: i64) {
    c.set(sku, stock, None).await.unwrap();
    c.rules(sku, &SaleRules::new().feed(true)).await.unwrap();
}

/// `event[:txid]` of each.
fn words(events: &[FeedEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let kind = format!("{:?}", e.event).to_lowercase();
            match &e.txid {
                Some(t) => format!("{kind}:{t}"),
                None => kind,
            }
        })
        .collect()
}

/// Reads until `n` events came (or 10 s passed).
async fn take(consumer: &mut FeedConsumer, n: usize) -> Vec<FeedEvent> {
    let started = Instant::now();
    let mut all = Vec::new();
    while all.len() < n && started.elapsed() < Duration::from_secs(10) {
        all.extend(consumer.next(Duration::from_millis(500)).await.unwrap());
    }
    all
}

fn pending(s: &Server, stream: &str, group: &str) -> i64 {
    let reply: (i64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query(&mut s.conn())
        .unwrap();
    reply.0
}

#[tokio::test]
async fn a_consumer_gets_every_change_once_acked_and_again_if_not() {
    let s = Server::start(&[]);
    let c = Client::standalone(&s.url()).await.unwrap();
    fed(&c, "sku", 3).await;
    let mut a = c
        .feed_consumer(&["sku"], "ship", "a", FeedStart::Beginning)
        .await
        .unwrap();
    c.reserve_for("sku", "o1", 2, Some(Duration::from_secs(60)), "al")
        .await
        .unwrap();
    c.reserve("sku", "o2", 1, Some(Duration::from_millis(50)))
        .await
        .unwrap();
    c.confirm("sku", "o1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // o2 expires
    let events = take(&mut a, 7).await;
    assert_eq!(
        words(&events),
        [
            "rules",
            "reserved:o1",
            "reserved:o2",
            "soldout",
            "confirmed:o1",
            "expired:o2",
            "backinstock",
        ]
    );
    let o1 = &events[1];
    assert_eq!((o1.sku.as_str(), o1.qty), ("sku", 2));
    assert_eq!(o1.buyer.as_deref(), Some("al"));
    assert!(o1.deadline.is_some_and(|d| d > 1_700_000_000_000));
    assert!(events.windows(2).all(|w| w[0].version <= w[1].version));
    assert_eq!(
        events.last().unwrap().version,
        c.get("sku").await.unwrap().unwrap().counts.version
    );

    // Acked: gone for good. Not acked: back for the same name after a
    // restart, before anything new.
    a.ack(&events[..4]).await.unwrap();
    drop(a);
    let mut a = c
        .feed_consumer(&["sku"], "ship", "a", FeedStart::Beginning)
        .await
        .unwrap();
    let again = a.next(Duration::ZERO).await.unwrap();
    assert_eq!(again, events[4..]);
    a.ack(&again).await.unwrap();
    assert!(a.next(Duration::from_millis(100)).await.unwrap().is_empty());
    let stream = c.feed_name("sku").await.unwrap();
    assert_eq!(pending(&s, &stream, "ship"), 0);

    // A group made later with FeedStart::New sees only what follows.
    let mut late = c
        .feed_consumer(&["sku"], "late", "x", FeedStart::New)
        .await
        .unwrap();
    c.add("sku", 1, None).await.unwrap();
    assert_eq!(words(&take(&mut late, 1).await), ["stock"]);
}

#[tokio::test]
async fn a_dead_consumers_entries_are_claimed_by_another() {
    let s = Server::start(&[]);
    let c = Client::standalone(&s.url()).await.unwrap();
    fed(&c, "sku", 10).await;
    let mut dead = c
        .feed_consumer(&["sku"], "ship", "dead", FeedStart::New)
        .await
        .unwrap();
    for i in 0..3 {
        c.reserve("sku", &format!("o{i}"), 1, None).await.unwrap();
    }
    let taken = take(&mut dead, 3).await;
    assert_eq!(taken.len(), 3);
    drop(dead); // never acks
    let mut alive = c
        .feed_consumer(&["sku"], "ship", "alive", FeedStart::New)
        .await
        .unwrap()
        .with_claim_idle(Duration::from_millis(200));
    // Not idle long enough yet: nothing to claim, nothing new.
    assert!(alive.next(Duration::ZERO).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let claimed = take(&mut alive, 3).await;
    assert_eq!(claimed, taken);
    alive.ack(&claimed).await.unwrap();
    let stream = c.feed_name("sku").await.unwrap();
    assert_eq!(pending(&s, &stream, "ship"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_wakes_with_the_change() {
    let s = Server::start(&[]);
    let c = Client::standalone(&s.url()).await.unwrap();
    fed(&c, "a", 1).await;
    fed(&c, "b", 1).await;
    let mut consumer = c
        .feed_consumer(&["a", "b"], "ship", "w", FeedStart::New)
        .await
        .unwrap();
    assert!(consumer.next(Duration::ZERO).await.unwrap().is_empty());
    let waiter = tokio::spawn(async move {
        let started = Instant::now();
        let got = consumer.next(Duration::from_secs(20)).await.unwrap();
        (got, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.cancel("b", "never-reserved").await.unwrap();
    let (got, waited) = waiter.await.unwrap();
    assert_eq!(words(&got), ["fenced:never-reserved"]);
    assert_eq!(got[0].sku, "b");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    // The same client keeps serving other calls meanwhile.
    assert_eq!(c.get("a").await.unwrap().unwrap().counts.available, 1);
}

/// Connections the server has accepted so far (this reading's own
/// included).
fn connections(s: &Server) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut s.conn())
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("INFO stats has total_connections_received")
}

/// A consumer that waits again and again keeps one connection for its
/// waits (one each would leave a closed socket per wait behind), and the
/// kept connection still wakes with a change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_waits_keep_one_connection() {
    let s = Server::start(&[]);
    let c = Client::standalone(&s.url()).await.unwrap();
    fed(&c, "a", 1).await;
    let mut consumer = c
        .feed_consumer(&["a"], "ship", "w", FeedStart::New)
        .await
        .unwrap();
    let before = connections(&s);
    for _ in 0..5 {
        assert!(consumer
            .next(Duration::from_millis(50))
            .await
            .unwrap()
            .is_empty());
    }
    // One for the waits, one for this reading.
    assert_eq!(connections(&s) - before, 2);
    let waiter = tokio::spawn(async move {
        let got = consumer.next(Duration::from_secs(20)).await.unwrap();
        (got, consumer)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.cancel("a", "never-reserved").await.unwrap();
    let (got, _consumer) = waiter.await.unwrap();
    assert_eq!(words(&got), ["fenced:never-reserved"]);
    // A longer wait than the kept connection was made for opens a new one.
    assert_eq!(connections(&s) - before, 4);
}

#[tokio::test]
async fn entries_trimmed_while_pending_are_counted_and_cleared() {
    let s = Server::start(&["--inventory.feed-maxlen", "2"]);
    let c = Client::standalone(&s.url()).await.unwrap();
    fed(&c, "sku", 100).await;
    let mut slow = c
        .feed_consumer(&["sku"], "ship", "slow", FeedStart::New)
        .await
        .unwrap();
    c.reserve("sku", "o1", 1, None).await.unwrap();
    c.reserve("sku", "o2", 1, None).await.unwrap();
    assert_eq!(take(&mut slow, 2).await.len(), 2);
    for i in 3..6 {
        c.reserve("sku", &format!("o{i}"), 1, None).await.unwrap();
    }
    drop(slow);
    let mut slow = c
        .feed_consumer(&["sku"], "ship", "slow", FeedStart::New)
        .await
        .unwrap();
    // Its two pending entries were trimmed: counted, acked, then the two
    // the stream still holds of the three new ones (the third was trimmed
    // before anyone read it).
    let got = take(&mut slow, 2).await;
    assert_eq!(slow.trimmed(), 2);
    assert_eq!(words(&got), ["reserved:o4", "reserved:o5"]);
    slow.ack(&got).await.unwrap();
    let stream = c.feed_name("sku").await.unwrap();
    assert_eq!(pending(&s, &stream, "ship"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skus_on_every_shard_are_each_delivered_once() {
    let cluster = Cluster::start();
    let urls = cluster.urls();
    let c = Client::cluster(&urls.iter().map(String::as_str).collect::<Vec<_>>())
        .await
        .unwrap();
    // SKUs on each master.
    let mut skus = Vec::new();
    let mut owners = std::collections::BTreeSet::new();
    for i in 0.. {
        let sku = format!("sku:{i}");
        owners.insert(cluster.owner(cluster.slot_of(&sku)));
        skus.push(sku);
        if owners.len() == 3 && skus.len() >= 6 {
            break;
        }
    }
    for sku in &skus {
        fed(&c, sku, 5).await;
    }
    let names: Vec<&str> = skus.iter().map(String::as_str).collect();
    let mut consumer = c
        .feed_consumer(&names, "ship", "svc", FeedStart::New)
        .await
        .unwrap();
    for sku in &skus {
        let r = c.reserve(sku, "t", 2, None).await.unwrap();
        assert_eq!(r.outcome, Outcome::Reserved);
        c.confirm(sku, "t").await.unwrap();
    }
    let got = take(&mut consumer, 2 * skus.len()).await;
    let mut per_sku: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for e in &got {
        per_sku
            .entry(e.sku.as_str())
            .or_default()
            .extend(words(std::slice::from_ref(e)));
    }
    for sku in &skus {
        assert_eq!(
            per_sku.get(sku.as_str()).map(Vec::as_slice),
            Some(&["reserved:t".to_string(), "confirmed:t".to_string()][..]),
            "{sku}"
        );
    }
    consumer.ack(&got).await.unwrap();
    assert!(consumer
        .next(Duration::from_millis(200))
        .await
        .unwrap()
        .is_empty());
    assert!(got
        .iter()
        .all(|e| e.event == K::Reserved || e.event == K::Confirmed));
}

//! The local stock cache against a real server, with a second client
//! writing: it serves from memory only until a change is announced, and
//! never a snapshot older than a change it has been told of.

use redis_inventory_client::{Client, StockCache};
use std::time::Duration;
use testkit::Server;

fn inv_get_calls(s: &Server) -> u64 {
    testkit::command_usec(&mut s.conn(), "inv.get").map_or(0, |(calls, _)| calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_from_memory_until_another_client_changes_the_key() {
    let s = Server::start(&[]);
    let writer = Client::standalone(&s.url()).await.unwrap();
    writer.set("sku:a", 10, None).await.unwrap();
    let cache = StockCache::connect(&s.url()).await.unwrap();

    let first = cache.get("sku:a").await.unwrap().expect("sku:a exists");
    assert_eq!((first.counts.available, first.counts.version), (10, 1));
    for _ in 0..5 {
        assert_eq!(cache.get("sku:a").await.unwrap(), Some(first));
    }
    let st = cache.stats();
    assert_eq!((st.hits, st.misses, st.entries), (5, 1, 1));
    assert_eq!(
        inv_get_calls(&s),
        1,
        "the five hits never reached the server"
    );

    // Another client reserves: once the announcement has arrived (sync is
    // a round trip on the tracking connection), the old snapshot is gone.
    writer
        .reserve("sku:a", "o1", 3, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    cache.sync().await.unwrap();
    let after = cache.get("sku:a").await.unwrap().unwrap();
    assert_eq!((after.counts.available, after.counts.version), (7, 2));
    assert_eq!(cache.stats().invalidations, 1);

    // A key that does not exist is cached as absent, until it is created.
    assert_eq!(cache.get("sku:new").await.unwrap(), None);
    assert_eq!(cache.get("sku:new").await.unwrap(), None);
    writer.set("sku:new", 4, None).await.unwrap();
    cache.sync().await.unwrap();
    assert_eq!(cache.get("sku:new").await.unwrap().unwrap().counts.stock, 4);

    // Expiry on the server announces the change too.
    // (A TTL that a loaded machine does not reach before the first read;
    // then the expiry is awaited, not slept for.)
    writer
        .reserve("sku:a", "o2", 1, Some(Duration::from_millis(2000)))
        .await
        .unwrap();
    cache.sync().await.unwrap();
    assert_eq!(
        cache.get("sku:a").await.unwrap().unwrap().counts.reserved,
        4
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        cache.sync().await.unwrap();
        if cache.get("sku:a").await.unwrap().unwrap().counts.reserved == 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the expiry never reached the cache"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // FLUSHALL empties the cache.
    let _: () = redis::cmd("FLUSHALL").query(&mut s.conn()).unwrap();
    cache.sync().await.unwrap();
    assert_eq!(cache.get("sku:a").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_racing_writes_end_on_the_servers_version() {
    let s = Server::start(&[]);
    let writer = Client::standalone(&s.url()).await.unwrap();
    writer.set("hot", 1_000_000, None).await.unwrap();
    let cache = StockCache::connect(&s.url()).await.unwrap();
    for round in 0..20 {
        let w = writer.clone();
        let writes = tokio::spawn(async move {
            for _ in 0..50 {
                w.add("hot", 1, None).await.unwrap();
            }
        });
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let c = cache.clone();
                tokio::spawn(async move {
                    for _ in 0..100 {
                        c.get("hot").await.unwrap();
                    }
                })
            })
            .collect();
        writes.await.unwrap();
        for r in readers {
            r.await.unwrap();
        }
        cache.sync().await.unwrap();
        let cached = cache.get("hot").await.unwrap().unwrap().counts.version;
        let server = writer.get("hot").await.unwrap().unwrap().counts.version;
        assert_eq!(cached, server, "round {round}");
    }
    assert!(cache.stats().hits > 0, "{:?}", cache.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_empties_the_cache_and_the_next_read_reconnects() {
    let s = Server::start(&[]);
    let writer = Client::standalone(&s.url()).await.unwrap();
    writer.set("sku:b", 5, None).await.unwrap();
    let cache = StockCache::connect(&s.url()).await.unwrap();
    assert_eq!(cache.get("sku:b").await.unwrap().unwrap().counts.version, 1);

    // Kill the tracking connection, then change the key: the change's
    // announcement had nowhere to go, so once the client has noticed the
    // loss the cache must not answer the old snapshot.
    let resets = cache.stats().resets;
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut s.conn())
        .unwrap();
    let tracking = clients
        .lines()
        .find(|l| {
            l.split(' ')
                .any(|f| f.starts_with("flags=") && f.contains('t'))
        })
        .expect("the cache's connection has tracking on");
    let id = tracking
        .split(' ')
        .next()
        .unwrap()
        .trim_start_matches("id=");
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query(&mut s.conn())
        .unwrap();
    writer.set("sku:b", 6, None).await.unwrap();
    let started = std::time::Instant::now();
    while cache.stats().resets == resets {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the loss was never noticed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let now = cache.get("sku:b").await.unwrap().unwrap();
    assert_eq!((now.counts.stock, now.counts.version), (6, 2));
    // Reconnected with tracking on: it caches and is invalidated again.
    assert_eq!(cache.get("sku:b").await.unwrap(), Some(now));
    writer.set("sku:b", 7, None).await.unwrap();
    cache.sync().await.unwrap();
    assert_eq!(cache.get("sku:b").await.unwrap().unwrap().counts.version, 3);
}

//! Client benchmark on a cluster (issue #3's measurements), run by
//! `make client-bench` against a fresh local 3-shard cluster:
//! 1. Reserves on distinct SKUs across the shards from one process: batched
//!    (`reserve_many`) against the same kind of reserves issued one at a time
//!    with an await each. Throughput ratio; goal >= 3x.
//! 2. `reserve_order` latency for 5-line carts spanning shards: p50 / p99.
//!
//! 3 runs, medians; exits non-zero when the ratio goal is missed.

use redis_inventory_client::{Client, OrderLine, Outcome, ReserveRequest};
use std::time::{Duration, Instant};

const SKUS: usize = 10_000;
const BATCH: usize = 20_000;
const SEQUENTIAL: usize = 2_000;
const ORDERS: usize = 1_000;
const RUNS: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> redis_inventory_client::Result<()> {
    let node = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis://127.0.0.1:7101/".into());
    let client = Client::cluster(&[node.as_str()]).await?;
    let sku = |i: usize| format!("bench:sku:{i}");
    let sets: Vec<_> = (0..SKUS).map(|i| (sku(i), client.clone())).collect();
    for chunk in sets.chunks(500) {
        let calls = chunk.iter().map(|(s, c)| c.set(s, 1_000_000_000, None));
        for r in futures::future::join_all(calls).await {
            r?;
        }
    }
    let (mut batched, mut sequential, mut ratios, mut p50s, mut p99s) =
        (vec![], vec![], vec![], vec![], vec![]);
    for run in 0..RUNS {
        let reqs: Vec<ReserveRequest> = (0..BATCH)
            .map(|i| ReserveRequest {
                sku: sku(i % SKUS),
                txid: format!("b{run}-{i}"),
                qty: 1,
                ttl: None,
            })
            .collect();
        let t = Instant::now();
        let results = client.reserve_many(&reqs).await;
        let b = BATCH as f64 / t.elapsed().as_secs_f64();
        assert!(results
            .iter()
            .all(|r| matches!(r, Ok(r) if r.outcome == Outcome::Reserved)));

        let t = Instant::now();
        for i in 0..SEQUENTIAL {
            let r = client
                .reserve(&sku(i % SKUS), &format!("s{run}-{i}"), 1, None)
                .await?;
            assert_eq!(r.outcome, Outcome::Reserved);
        }
        let s = SEQUENTIAL as f64 / t.elapsed().as_secs_f64();

        let mut lat = Vec::with_capacity(ORDERS);
        for o in 0..ORDERS {
            let lines: Vec<OrderLine> = (0..5)
                .map(|l| OrderLine::new(sku((o * 5 + l * 1999) % SKUS), 1))
                .collect();
            let t = Instant::now();
            let r = client
                .reserve_order(&format!("cart{run}-{o}"), &lines, None)
                .await?;
            lat.push(t.elapsed());
            assert_eq!(r.outcome, Outcome::Reserved);
        }
        lat.sort();
        println!(
            "run {run}: batched {b:.0}/s, one-at-a-time {s:.0}/s, ratio {:.1}x; order p50 {:.2?} p99 {:.2?}",
            b / s,
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        );
        batched.push(b);
        sequential.push(s);
        ratios.push(b / s);
        p50s.push(pct(&lat, 0.5).as_secs_f64() * 1e3);
        p99s.push(pct(&lat, 0.99).as_secs_f64() * 1e3);
    }
    let ratio = median(ratios);
    println!("| measure (3-shard cluster, one client process, median of {RUNS}) | value |");
    println!("|---|---|");
    println!(
        "| batched reserves (reserve_many, {BATCH} per run) | {:.0} ops/s |",
        median(batched)
    );
    println!(
        "| one at a time, await each ({SEQUENTIAL} per run) | {:.0} ops/s |",
        median(sequential)
    );
    println!("| throughput ratio (goal >= 3x) | {ratio:.1}x |");
    println!(
        "| reserve_order, 5-line carts across shards: p50 | {:.2} ms |",
        median(p50s)
    );
    println!(
        "| reserve_order, 5-line carts across shards: p99 | {:.2} ms |",
        median(p99s)
    );
    if ratio < 3.0 {
        eprintln!("goal missed: batched/sequential ratio {ratio:.1} < 3");
        std::process::exit(1);
    }
    Ok(())
}

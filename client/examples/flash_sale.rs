//! A flash sale: thousands of buyers race for a few hundred units.
//!
//! Each buyer reserves one unit with its own txid; most pay (confirm), some
//! walk away (cancel). Prints sold, oversold (must be 0), throughput and
//! latency percentiles of reserve+confirm.
//!
//! ```text
//! make demo                  # starts its own redis-server with the module
//! make demo CLUSTER=1        # on a fresh local 3-shard cluster
//! cargo run --release -p redis-inventory-client --example flash_sale -- --url redis://127.0.0.1:6379/
//! ```

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use redis_inventory_client::{redact_url, Client, Outcome};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

#[derive(Parser)]
#[command(about = "Thousands of buyers race for a few hundred units")]
struct Args {
    /// Standalone server URL.
    #[arg(long, default_value = "redis://127.0.0.1:6379/")]
    url: String,
    /// Cluster node URL (overrides --url).
    #[arg(long)]
    cluster: Option<String>,
    /// Start a redis-server with the module on a free port for the run.
    #[arg(long)]
    start: bool,
    /// Buyers.
    #[arg(long, default_value_t = 5000)]
    buyers: usize,
    /// Units on sale per SKU.
    #[arg(long, default_value_t = 300)]
    units: i64,
    /// SKUs on sale (buyers spread over them).
    #[arg(long, default_value_t = 1)]
    skus: usize,
    /// Buyers in flight at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// One buyer in this many walks away instead of paying.
    #[arg(long, default_value_t = 5)]
    walk_away_every: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> redis_inventory_client::Result<()> {
    let args = Args::parse();
    let server = args
        .start
        .then(|| testkit::Server::start_build(testkit::Build::Release, &["--maxclients", "10000"]));
    let url = server.as_ref().map_or(args.url.clone(), |s| s.url());
    let (client, mode) = match &args.cluster {
        Some(node) => (
            Client::cluster(&[node.as_str()]).await?,
            format!("cluster via {}", redact_url(node)),
        ),
        None => (
            Client::standalone(&url).await?,
            format!("standalone {}", redact_url(&url)),
        ),
    };
    let run = std::process::id();
    let skus: Vec<String> = (0..args.skus)
        .map(|i| format!("{{sale{run}-{i}}}:sku"))
        .collect();
    for s in &skus {
        client.set(s, args.units, None).await?;
    }
    println!(
        "{mode}: {} buyers, {} SKU(s) x {} units",
        args.buyers, args.skus, args.units
    );

    let bar = ProgressBar::new(args.buyers as u64);
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} buyers {per_sec}").unwrap());
    let gate = Arc::new(Semaphore::new(args.concurrency));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.buyers);
    for b in 0..args.buyers {
        let (client, gate, bar) = (client.clone(), gate.clone(), bar.clone());
        let sku = skus[b % skus.len()].clone();
        let walk_away = args.walk_away_every > 0 && b % args.walk_away_every == 0;
        tasks.push(tokio::spawn(async move {
            let _slot = gate.acquire_owned().await.expect("semaphore");
            let txid = format!("buyer-{b}");
            let t = Instant::now();
            let r = client
                .reserve(&sku, &txid, 1, Some(Duration::from_secs(60)))
                .await?;
            let mut paid = false;
            if r.outcome == Outcome::Reserved {
                if walk_away {
                    client.cancel(&sku, &txid).await?;
                } else {
                    paid = client.confirm(&sku, &txid).await?.outcome == Outcome::Confirmed;
                }
            }
            bar.inc(1);
            Ok::<_, redis_inventory_client::Error>((paid, t.elapsed()))
        }));
    }
    let mut latencies = Vec::with_capacity(args.buyers);
    let mut paid = 0i64;
    for t in tasks {
        let (p, l) = t.await.expect("buyer task")?;
        paid += i64::from(p);
        latencies.push(l);
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    latencies.sort();

    let mut sold = 0;
    let mut available = 0;
    for s in &skus {
        let st = client.get(s).await?.expect("sku exists");
        sold += st.counts.sold;
        available += st.counts.available;
    }
    let offered = args.units * args.skus as i64;
    let oversold = (sold - offered).max(0) + (paid - sold).abs();
    println!("sold {sold} of {offered} units; {paid} buyers paid; {available} units left");
    println!("oversold: {oversold}");
    println!(
        "throughput: {:.0} buyers/s ({} in {:.2?})",
        args.buyers as f64 / elapsed.as_secs_f64(),
        args.buyers,
        elapsed
    );
    println!(
        "latency reserve+confirm: p50 {:.2?}  p99 {:.2?}  p999 {:.2?}  max {:.2?}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
        latencies.last().copied().unwrap_or_default()
    );
    if oversold != 0 {
        eprintln!("OVERSOLD");
        std::process::exit(1);
    }
    Ok(())
}

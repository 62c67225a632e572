//! Phase 5: the flash sale through the client against the full Lua set.

use crate::common::*;
use crate::report::*;
use crate::{Args, Sizes};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A connection for the Lua scenario: redis-rs routes each script call by its
/// first key, and `Script` falls back from EVALSHA to EVAL on a fresh node.
#[derive(Clone)]
pub(crate) enum LuaConn {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl LuaConn {
    async fn run(&self, script: &redis::Script, keys: &[String; 3], args: &[String]) -> String {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        for a in args {
            inv.arg(a);
        }
        let r: redis::RedisResult<String> = match self {
            LuaConn::Single(c) => inv.invoke_async(&mut c.clone()).await,
            LuaConn::Cluster(c) => inv.invoke_async(&mut c.clone()).await,
        };
        r.unwrap_or_else(|e| format!("error: {e}"))
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        match self {
            LuaConn::Single(c) => cmd.query_async(&mut c.clone()).await.unwrap(),
            LuaConn::Cluster(c) => cmd.query_async(&mut c.clone()).await.unwrap(),
        }
    }
}

/// Phase 5: the flash sale as deployed (AOF everysec and a replica) on a
/// standalone server and, with `--cluster`, on a local 3-shard cluster
/// whose masters each have AOF and a replica (scripts/cluster.sh).
pub(crate) async fn phase_sale(args: &Args, sz: &Sizes) -> Vec<ScenarioRow> {
    let (standalone, replica) = super::deployed::servers(args, true);
    let mut rows = phase_scenario(
        "standalone (AOF everysec + 1 replica)",
        &[standalone.url()],
        false,
        sz,
    )
    .await;
    drop((standalone, replica));
    if args.cluster {
        let up = std::process::Command::new("scripts/cluster.sh")
            .arg("start")
            .env("PORT_BASE", "7201")
            .env("APPENDONLY", "yes")
            .status();
        if up.is_ok_and(|s| s.success()) {
            rows.extend(
                phase_scenario(
                    "3-shard cluster (AOF everysec + 1 replica per master)",
                    &["redis://127.0.0.1:7201/".into()],
                    true,
                    sz,
                )
                .await,
            );
        } else {
            eprintln!(
                "flash sale: the cluster did not start (scripts/cluster.sh says why above): no cluster rows"
            );
        }
        let _ = std::process::Command::new("scripts/cluster.sh")
            .arg("stop")
            .env("PORT_BASE", "7201")
            .status();
    }
    rows
}

/// What one sale measured.
struct Sale {
    buyers_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    oversold: i64,
}

/// Phase 5 (one deployment): the flash sale through the client and through
/// the Lua TCC set. Each buyer reserves one unit, then confirms it. The sale
/// runs at least 5 times, the implementations taking turns within each
/// round (fresh keys every sale), so both meet the same moments of a
/// noisy host; a row gives the medians and the range of buyers/s.
async fn phase_scenario(
    deployment: &str,
    urls: &[String],
    cluster: bool,
    sz: &Sizes,
) -> Vec<ScenarioRow> {
    let refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    let client = if cluster {
        redis_inventory_client::Client::cluster(&refs)
            .await
            .unwrap()
    } else {
        redis_inventory_client::Client::standalone(refs[0])
            .await
            .unwrap()
    };
    let lua = if cluster {
        let c = redis::cluster::ClusterClient::new(refs.clone()).unwrap();
        LuaConn::Cluster(c.get_async_connection().await.unwrap())
    } else {
        let c = redis::Client::open(refs[0]).unwrap();
        LuaConn::Single(c.get_multiplexed_async_connection().await.unwrap())
    };
    let cases = [1usize, 100].map(|skus| [Impl::Module, Impl::Tcc].map(|imp| (skus, imp)));
    let cases: Vec<(usize, Impl)> = cases.into_iter().flatten().collect();
    let mut sales: Vec<Vec<Sale>> = cases.iter().map(|_| Vec::new()).collect();
    for _ in 0..sz.runs.max(5) {
        for (&(skus, imp), done) in cases.iter().zip(&mut sales) {
            done.push(sale(&client, &lua, skus, imp, sz.buyers).await);
        }
    }
    cases
        .iter()
        .zip(sales)
        .map(|(&(skus, imp), runs)| {
            let of = |f: fn(&Sale) -> f64| median(runs.iter().map(f).collect());
            let rates = runs.iter().map(|r| r.buyers_per_s);
            ScenarioRow {
                deployment: deployment.to_string(),
                implementation: implementation_name(imp),
                skus,
                buyers: sz.buyers,
                units: units_per_sku(sz.buyers, skus) * skus as i64,
                rounds: runs.len(),
                buyers_per_s: of(|r| r.buyers_per_s),
                buyers_per_s_min: rates.clone().fold(f64::INFINITY, f64::min),
                buyers_per_s_max: rates.fold(0.0, f64::max),
                p50_ms: of(|r| r.p50_ms),
                p99_ms: of(|r| r.p99_ms),
                p999_ms: of(|r| r.p999_ms),
                oversold: runs.iter().map(|r| r.oversold).sum(),
            }
        })
        .collect()
}

/// Units per SKU in a sale: half of what its buyers ask for, so every sale
/// sells out and the oversell check has something to refuse.
fn units_per_sku(buyers: usize, skus: usize) -> i64 {
    (buyers / skus / 2).max(1) as i64
}

/// One sale on fresh keys, demand twice the supply on every SKU. Oversold
/// counts, per SKU, units sold beyond those offered and any difference
/// between the buyers told "paid" and the units sold (a buyer told "paid"
/// whose unit was not sold, or a unit sold to nobody who was told).
async fn sale(
    client: &redis_inventory_client::Client,
    lua: &LuaConn,
    skus: usize,
    imp: Impl,
    buyers: usize,
) -> Sale {
    let reserve = redis::Script::new(TCC_RESERVE);
    let confirm = redis::Script::new(TCC_CONFIRM);
    let run_id = now_ms();
    let names: Vec<String> = (0..skus).map(|i| format!("sale{run_id}-{i}")).collect();
    let units = units_per_sku(buyers, skus);
    assert!(
        buyers as i64 > units * skus as i64,
        "a sale whose supply meets its demand cannot show an oversell"
    );
    for n in &names {
        match imp {
            Impl::Module => client.set(n, units, None).await.unwrap(),
            _ => {
                let mut hset = redis::cmd("HSET");
                hset.arg(&lua_keys(n)[0])
                    .arg("stock")
                    .arg(units)
                    .arg("reserved")
                    .arg(0)
                    .arg("sold")
                    .arg(0);
                lua.query::<i64>(&hset).await;
            }
        }
    }
    let gate = Arc::new(tokio::sync::Semaphore::new(200));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(buyers);
    for b in 0..buyers {
        let (client, lua, gate) = (client.clone(), lua.clone(), gate.clone());
        let (reserve, confirm) = (reserve.clone(), confirm.clone());
        let sku = names[b % skus].clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let txid = format!("buyer-{b:010}");
            let t = Instant::now();
            let paid = match imp {
                Impl::Module => {
                    let r = client
                        .reserve(&sku, &txid, 1, Some(Duration::from_secs(60)))
                        .await
                        .unwrap();
                    r.outcome == redis_inventory_client::Outcome::Reserved
                        && client.confirm(&sku, &txid).await.unwrap().outcome
                            == redis_inventory_client::Outcome::Confirmed
                }
                _ => {
                    let keys = lua_keys(&sku);
                    let now = now_ms().to_string();
                    let r = lua
                        .run(
                            &reserve,
                            &keys,
                            &[txid.clone(), "1".into(), "60000".into(), now.clone()],
                        )
                        .await;
                    r == "RESERVED" && lua.run(&confirm, &keys, &[txid, now]).await == "CONFIRMED"
                }
            };
            (paid, t.elapsed())
        }));
    }
    let mut lat = Vec::with_capacity(buyers);
    // Buyers told "paid", per SKU (buyer b bought SKU b % skus).
    let mut paid = vec![0i64; skus];
    for (b, t) in tasks.into_iter().enumerate() {
        let (p, l) = t.await.unwrap();
        paid[b % skus] += i64::from(p);
        lat.push(l);
    }
    let elapsed = started.elapsed();
    lat.sort();
    let mut oversold = 0i64;
    for (n, paid) in names.iter().zip(paid) {
        let sold = match imp {
            Impl::Module => client.get(n).await.unwrap().map_or(0, |s| s.counts.sold),
            _ => {
                let mut hget = redis::cmd("HGET");
                hget.arg(&lua_keys(n)[0]).arg("sold");
                lua.query::<i64>(&hget).await
            }
        };
        oversold += (sold - units).max(0) + (paid - sold).abs();
    }
    Sale {
        buyers_per_s: buyers as f64 / elapsed.as_secs_f64(),
        p50_ms: pct(&lat, 0.5),
        p99_ms: pct(&lat, 0.99),
        p999_ms: pct(&lat, 0.999),
        oversold,
    }
}

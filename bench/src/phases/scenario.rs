//! Phase 5: the flash sale through the client against the full Lua set.

use crate::common::*;
use crate::report::*;
use crate::Sizes;
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

/// Phase 5 (one deployment): the flash sale through the client and through
/// the Lua TCC set. Each buyer reserves one unit, then confirms it.
pub(crate) async fn phase_scenario(
    deployment: &str,
    urls: &[String],
    cluster: bool,
    sz: &Sizes,
) -> Vec<ScenarioRow> {
    let units = 500i64;
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
    let reserve = redis::Script::new(TCC_RESERVE);
    let confirm = redis::Script::new(TCC_CONFIRM);
    let mut rows = Vec::new();
    for skus in [1usize, 100] {
        for imp in [Impl::Module, Impl::Tcc] {
            let run_id = now_ms();
            let names: Vec<String> = (0..skus).map(|i| format!("sale{run_id}-{i}")).collect();
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
            let mut tasks = Vec::with_capacity(sz.buyers);
            for b in 0..sz.buyers {
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
                            r == "RESERVED"
                                && lua.run(&confirm, &keys, &[txid, now]).await == "CONFIRMED"
                        }
                    };
                    (paid, t.elapsed())
                }));
            }
            let mut lat = Vec::with_capacity(sz.buyers);
            let mut paid = 0i64;
            for t in tasks {
                let (p, l) = t.await.unwrap();
                paid += i64::from(p);
                lat.push(l);
            }
            let elapsed = started.elapsed();
            lat.sort();
            let mut sold = 0i64;
            for n in &names {
                sold += match imp {
                    Impl::Module => client.get(n).await.unwrap().map_or(0, |s| s.sold),
                    _ => {
                        let mut hget = redis::cmd("HGET");
                        hget.arg(&lua_keys(n)[0]).arg("sold");
                        lua.query::<i64>(&hget).await
                    }
                };
            }
            let offered = units * skus as i64;
            rows.push(ScenarioRow {
                deployment: deployment.to_string(),
                implementation: implementation_name(imp),
                skus,
                buyers: sz.buyers,
                units: offered,
                buyers_per_s: sz.buyers as f64 / elapsed.as_secs_f64(),
                p50_ms: pct(&lat, 0.5),
                p99_ms: pct(&lat, 0.99),
                p999_ms: pct(&lat, 0.999),
                oversold: (sold - offered).max(0) + (paid - sold).abs(),
            });
        }
    }
    rows
}

//! Typed INV commands on a redis-rs async connection a service already has
//! (multiplexed, connection manager, cluster), in the style of redis-rs's
//! own `AsyncCommands`: no second connection, redis-rs's errors.

use crate::sale::{adjust_cmd, confirm_qty_cmd, reserve_for_cmd};
use crate::{BuyerTotals, Outcome, Reply, SaleRules, Stock, StockCounts, TxRecord};
use redis::aio::ConnectionLike;
use redis::{cmd, Cmd, ErrorKind, FromRedisValue, RedisError, RedisFuture, RedisResult, Value};
use std::collections::HashMap;
use std::time::Duration;

/// One page of `INV.SCAN`: the cursor to pass next (0 when done) and the
/// records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanPage {
    pub cursor: u64,
    pub records: Vec<(Vec<u8>, TxRecord)>,
}

/// The single-key INV commands on any redis-rs async connection. Multi-key
/// orders go through [`crate::Client`], which routes each slot and
/// compensates across them; retries are the caller's here.
///
/// ```no_run
/// # async fn demo() -> redis::RedisResult<()> {
/// use redis_inventory_client::{InventoryCommands, Outcome};
/// let client = redis::Client::open("redis://127.0.0.1:6379/")?;
/// let mut con = client.get_multiplexed_async_connection().await?;
/// con.inv_set("sku:tee", 10, None).await?;
/// let r = con.inv_reserve("sku:tee", "order-1", 2, None).await?;
/// assert_eq!(r.outcome, Outcome::Reserved);
/// # Ok(()) }
/// ```
pub trait InventoryCommands: ConnectionLike + Send + Sized {
    /// `INV.SET key stock [IFVERSION v]`.
    fn inv_set<'a>(
        &'a mut self,
        sku: &'a str,
        stock: i64,
        if_version: Option<u64>,
    ) -> RedisFuture<'a, ()> {
        run(
            self,
            with_version(cmd("INV.SET").arg(sku).arg(stock), if_version),
        )
    }

    /// `INV.ADD key delta [IFVERSION v]`: available units afterwards.
    fn inv_add<'a>(
        &'a mut self,
        sku: &'a str,
        delta: i64,
        if_version: Option<u64>,
    ) -> RedisFuture<'a, i64> {
        run(
            self,
            with_version(cmd("INV.ADD").arg(sku).arg(delta), if_version),
        )
    }

    /// `INV.GET key`: `None` when the key does not exist.
    fn inv_get<'a>(&'a mut self, sku: &'a str) -> RedisFuture<'a, Option<Stock>> {
        run(self, cmd("INV.GET").arg(sku).clone())
    }

    /// `INV.RESERVE key txid qty [TTL ms]` (`ttl` `None`: the server's default).
    fn inv_reserve<'a>(
        &'a mut self,
        sku: &'a str,
        txid: &'a str,
        qty: i64,
        ttl: Option<Duration>,
    ) -> RedisFuture<'a, Reply> {
        run(self, crate::reserve_cmd(sku, txid, qty, ttl))
    }

    /// `INV.RESERVE key txid qty [TTL ms] BUYER buyer`.
    fn inv_reserve_for<'a>(
        &'a mut self,
        sku: &'a str,
        txid: &'a str,
        qty: i64,
        ttl: Option<Duration>,
        buyer: &'a str,
    ) -> RedisFuture<'a, Reply> {
        run(self, reserve_for_cmd(sku, txid, qty, ttl, buyer))
    }

    /// `INV.CONFIRM key txid QTY qty`: sells part of a hold.
    fn inv_confirm_qty<'a>(
        &'a mut self,
        sku: &'a str,
        txid: &'a str,
        qty: i64,
    ) -> RedisFuture<'a, Reply> {
        run(self, confirm_qty_cmd(sku, txid, qty))
    }

    /// `INV.ADJUST key txid qty`.
    fn inv_adjust<'a>(
        &'a mut self,
        sku: &'a str,
        txid: &'a str,
        qty: i64,
    ) -> RedisFuture<'a, Reply> {
        run(self, adjust_cmd(sku, txid, qty))
    }

    /// `INV.RULES key ...`.
    fn inv_rules<'a>(&'a mut self, sku: &'a str, rules: &'a SaleRules) -> RedisFuture<'a, ()> {
        run(self, rules.cmd(sku))
    }

    /// `INV.BUYER key buyer`.
    fn inv_buyer<'a>(&'a mut self, sku: &'a str, buyer: &'a str) -> RedisFuture<'a, BuyerTotals> {
        run(self, cmd("INV.BUYER").arg(sku).arg(buyer).clone())
    }

    /// `INV.CONFIRM key txid`.
    fn inv_confirm<'a>(&'a mut self, sku: &'a str, txid: &'a str) -> RedisFuture<'a, Reply> {
        run(self, cmd("INV.CONFIRM").arg(sku).arg(txid).clone())
    }

    /// `INV.CANCEL key txid`.
    fn inv_cancel<'a>(&'a mut self, sku: &'a str, txid: &'a str) -> RedisFuture<'a, Reply> {
        run(self, cmd("INV.CANCEL").arg(sku).arg(txid).clone())
    }

    /// `INV.EXTEND key txid ttl-ms`.
    fn inv_extend<'a>(
        &'a mut self,
        sku: &'a str,
        txid: &'a str,
        ttl: Duration,
    ) -> RedisFuture<'a, Reply> {
        let c = cmd("INV.EXTEND")
            .arg(sku)
            .arg(txid)
            .arg(crate::ttl_ms(ttl))
            .clone();
        run(self, c)
    }

    /// `INV.TX key txid`: `None` when the txid is unknown.
    fn inv_tx<'a>(&'a mut self, sku: &'a str, txid: &'a str) -> RedisFuture<'a, Option<TxRecord>> {
        run(self, cmd("INV.TX").arg(sku).arg(txid).clone())
    }

    /// `INV.SCAN key cursor [COUNT n]`.
    fn inv_scan<'a>(
        &'a mut self,
        sku: &'a str,
        cursor: u64,
        count: Option<u64>,
    ) -> RedisFuture<'a, ScanPage> {
        run(self, scan_cmd(sku, cursor, count))
    }

    /// `INV.AUDIT key`: `None` when the key's invariants hold, else the
    /// server's `DRIFT ...` line.
    fn inv_audit<'a>(&'a mut self, sku: &'a str) -> RedisFuture<'a, Option<String>> {
        let c = cmd("INV.AUDIT").arg(sku).clone();
        Box::pin(async move { audit_result(c.query_async(self).await?) })
    }
}

impl<C: ConnectionLike + Send + Sized> InventoryCommands for C {}

fn run<'a, C, T>(con: &'a mut C, c: Cmd) -> RedisFuture<'a, T>
where
    C: ConnectionLike + Send,
    T: FromRedisValue + Send + 'a,
{
    Box::pin(async move { c.query_async(con).await })
}

fn with_version(c: &mut Cmd, if_version: Option<u64>) -> Cmd {
    if let Some(v) = if_version {
        c.arg("IFVERSION").arg(v);
    }
    c.clone()
}

pub(crate) fn scan_cmd(sku: &str, cursor: u64, count: Option<u64>) -> Cmd {
    let mut c = cmd("INV.SCAN");
    c.arg(sku).arg(cursor);
    if let Some(n) = count {
        c.arg("COUNT").arg(n);
    }
    c
}

/// `OK` as `None`, or the `DRIFT ...` line.
pub(crate) fn audit_result(v: Value) -> RedisResult<Option<String>> {
    let text: String = redis::from_redis_value(&v)?;
    Ok((text != "OK").then_some(text))
}

fn bad(what: &'static str, detail: impl Into<String>) -> RedisError {
    RedisError::from((ErrorKind::TypeError, what, detail.into()))
}

fn outcome(state: &str) -> RedisResult<Outcome> {
    Outcome::parse(state).ok_or_else(|| bad("unknown state", state))
}

/// `[state, available, version]`.
impl FromRedisValue for Reply {
    fn from_redis_value(v: &Value) -> RedisResult<Reply> {
        let (state, available, version): (String, i64, i64) = redis::from_redis_value(v)?;
        Ok(Reply {
            outcome: outcome(&state)?,
            available,
            version: version.max(0) as u64,
            acked_replicas: None,
        })
    }
}

/// `INV.GET`'s pairs (RESP2) or map (RESP3). Fields this client does not
/// know are skipped, so a newer server's pairs do not break it.
impl FromRedisValue for Stock {
    fn from_redis_value(v: &Value) -> RedisResult<Stock> {
        let raw: HashMap<String, Value> = redis::from_redis_value(v)?;
        let fields: HashMap<&str, i64> = raw
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), redis::from_redis_value(v).ok()?)))
            .collect();
        let rule = |k: &str| fields.get(k).map(|v| (*v).max(0) as u64);
        Ok(Stock {
            counts: StockCounts::from_fields(|k| fields.get(k).copied())
                .map_err(|k| bad("INV.GET lacks", k))?,
            limit: rule("limit"),
            start: rule("start"),
            end: rule("end"),
            feed: rule("feed") == Some(1),
            low: rule("low"),
        })
    }
}

/// `INV.TX`'s pairs (RESP2) or map (RESP3).
impl FromRedisValue for TxRecord {
    fn from_redis_value(v: &Value) -> RedisResult<TxRecord> {
        let fields: HashMap<String, Value> = redis::from_redis_value(v)?;
        let get = |k: &str| fields.get(k).ok_or_else(|| bad("INV.TX lacks", k));
        let state: String = redis::from_redis_value(get("state")?)?;
        Ok(TxRecord {
            outcome: outcome(&state)?,
            qty: redis::from_redis_value(get("qty")?)?,
            deadline: redis::from_redis_value(get("deadline")?)?,
            sold: fields.get("sold").map_or(Ok(0), redis::from_redis_value)?,
        })
    }
}

/// `[next-cursor, [[txid, state, qty, deadline, sold], ...]]`.
impl FromRedisValue for ScanPage {
    fn from_redis_value(v: &Value) -> RedisResult<ScanPage> {
        type Row = (Vec<u8>, String, i64, u64, i64);
        let (cursor, rows): (u64, Vec<Row>) = redis::from_redis_value(v)?;
        let records = rows
            .into_iter()
            .map(|(txid, state, qty, deadline, sold)| {
                Ok((
                    txid,
                    TxRecord {
                        outcome: outcome(&state)?,
                        qty,
                        deadline,
                        sold,
                    },
                ))
            })
            .collect::<RedisResult<_>>()?;
        Ok(ScanPage { cursor, records })
    }
}

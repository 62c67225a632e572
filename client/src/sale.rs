//! Flash-sale rules from the client: reserves for a buyer, partial
//! confirms, adjusting a hold, the seller's rules and one buyer's totals.

use crate::{parse_reply, reserve_cmd, Client, Error, Reply, Result};
use redis::{cmd, Cmd, FromRedisValue, RedisResult, Value};
use std::collections::HashMap;
use std::time::Duration;

/// The seller's rules of a SKU, as `INV.RULES` sets them: `None` leaves a
/// rule as it is, `Some(0)` clears it.
///
/// ```
/// use redis_inventory_client::SaleRules;
/// let r = SaleRules::new().limit(2).window(1_767_225_600_000, 1_767_229_200_000);
/// assert_eq!(r.limit, Some(2));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaleRules {
    /// Units one buyer may hold plus buy on the SKU.
    pub limit: Option<u64>,
    /// New reservations from this unix time in ms.
    pub start: Option<u64>,
    /// No new reservations from this unix time in ms.
    pub end: Option<u64>,
    /// Clear every buyer's bought units (a new sale).
    pub new_sale: bool,
    /// Turn the SKU's change feed on or off (`FEED ON|OFF`).
    pub feed: Option<bool>,
    /// The feed's `lowstock` threshold (`LOW n`; 0 clears it).
    pub low: Option<u64>,
}

impl SaleRules {
    pub fn new() -> SaleRules {
        SaleRules::default()
    }

    /// Sets the per-buyer limit (0 clears it).
    pub fn limit(mut self, units: u64) -> SaleRules {
        self.limit = Some(units);
        self
    }

    /// Sets the sale window in unix ms (0 clears a bound).
    pub fn window(mut self, start: u64, end: u64) -> SaleRules {
        self.start = Some(start);
        self.end = Some(end);
        self
    }

    /// Turns the change feed on or off: every change of the SKU then
    /// appends entries to its stream (`Client::feed_name`).
    pub fn feed(mut self, on: bool) -> SaleRules {
        self.feed = Some(on);
        self
    }

    /// Sets the feed's `lowstock` threshold (0 clears it).
    pub fn low(mut self, units: u64) -> SaleRules {
        self.low = Some(units);
        self
    }

    /// Clears every buyer's bought units.
    pub fn new_sale(mut self) -> SaleRules {
        self.new_sale = true;
        self
    }

    pub(crate) fn cmd(&self, sku: &str) -> Cmd {
        let mut c = cmd("INV.RULES");
        c.arg(sku);
        for (name, v) in [
            ("LIMIT", self.limit),
            ("START", self.start),
            ("END", self.end),
            ("LOW", self.low),
        ] {
            if let Some(v) = v {
                c.arg(name).arg(v);
            }
        }
        if let Some(on) = self.feed {
            c.arg("FEED").arg(if on { "ON" } else { "OFF" });
        }
        if self.new_sale {
            c.arg("NEWSALE");
        }
        c
    }
}

/// One buyer's units on a SKU (`INV.BUYER`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BuyerTotals {
    /// Units its open reservations hold.
    pub held: i64,
    /// Units it bought in the current sale.
    pub bought: i64,
}

impl FromRedisValue for BuyerTotals {
    fn from_redis_value(v: &Value) -> RedisResult<BuyerTotals> {
        let f: HashMap<String, i64> = redis::from_redis_value(v)?;
        Ok(BuyerTotals {
            held: f.get("held").copied().unwrap_or(0),
            bought: f.get("bought").copied().unwrap_or(0),
        })
    }
}

pub(crate) fn reserve_for_cmd(
    sku: &str,
    txid: &str,
    qty: i64,
    ttl: Option<Duration>,
    buyer: &str,
) -> Cmd {
    let mut c = reserve_cmd(sku, txid, qty, ttl);
    c.arg("BUYER").arg(buyer);
    c
}

pub(crate) fn confirm_qty_cmd(sku: &str, txid: &str, qty: i64) -> Cmd {
    let mut c = cmd("INV.CONFIRM");
    c.arg(sku).arg(txid).arg("QTY").arg(qty);
    c
}

pub(crate) fn adjust_cmd(sku: &str, txid: &str, qty: i64) -> Cmd {
    let mut c = cmd("INV.ADJUST");
    c.arg(sku).arg(txid).arg(qty);
    c
}

impl Client {
    /// `INV.RESERVE ... BUYER buyer`: a reservation that counts against the
    /// buyer's limit on the SKU. Answers `Limited`, `NotYet` or `Closed`
    /// when the SKU's rules refuse it. Idempotent, like [`Client::reserve`].
    ///
    /// ```no_run
    /// # async fn demo(c: redis_inventory_client::Client) -> redis_inventory_client::Result<()> {
    /// use redis_inventory_client::Outcome;
    /// let r = c.reserve_for("sku:tee", "order-1", 1, None, "user-42").await?;
    /// if r.outcome == Outcome::Limited { println!("one per customer"); }
    /// # Ok(()) }
    /// ```
    pub async fn reserve_for(
        &self,
        sku: &str,
        txid: &str,
        qty: i64,
        ttl: Option<Duration>,
        buyer: &str,
    ) -> Result<Reply> {
        let c = reserve_for_cmd(sku, txid, qty, ttl, buyer);
        self.reserve_or_fence(sku, txid, &c).await
    }

    /// `INV.CONFIRM ... QTY qty`: sells `qty` of the held units and releases
    /// the rest. Idempotent; a retry naming another quantity is
    /// [`Error::Conflict`].
    ///
    /// ```no_run
    /// # async fn demo(c: redis_inventory_client::Client) -> redis_inventory_client::Result<()> {
    /// c.confirm_qty("sku:tee", "order-1", 1).await?;
    /// # Ok(()) }
    /// ```
    pub async fn confirm_qty(&self, sku: &str, txid: &str, qty: i64) -> Result<Reply> {
        let c = confirm_qty_cmd(sku, txid, qty);
        let reply = parse_reply(self.send_idempotent(sku.as_bytes(), &c).await?)?;
        self.settle(sku.as_bytes(), reply).await
    }

    /// `INV.ADJUST`: sets an open reservation's quantity (an absolute
    /// value, so retrying is safe).
    ///
    /// ```no_run
    /// # async fn demo(c: redis_inventory_client::Client) -> redis_inventory_client::Result<()> {
    /// c.adjust("sku:tee", "order-1", 3).await?;
    /// # Ok(()) }
    /// ```
    pub async fn adjust(&self, sku: &str, txid: &str, qty: i64) -> Result<Reply> {
        let c = adjust_cmd(sku, txid, qty);
        let reply = parse_reply(self.send_idempotent(sku.as_bytes(), &c).await?)?;
        self.settle(sku.as_bytes(), reply).await
    }

    /// `INV.RULES`: sets the SKU's rules. Retried like the idempotent
    /// commands unless it starts a new sale (never retried: read
    /// [`Client::buyer`] after a connection error).
    ///
    /// ```no_run
    /// # async fn demo(c: redis_inventory_client::Client) -> redis_inventory_client::Result<()> {
    /// use redis_inventory_client::SaleRules;
    /// c.rules("sku:tee", &SaleRules::new().limit(1)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn rules(&self, sku: &str, rules: &SaleRules) -> Result<()> {
        let c = rules.cmd(sku);
        if rules.new_sale {
            self.send(sku.as_bytes(), &c).await?;
        } else {
            self.send_idempotent(sku.as_bytes(), &c).await?;
        }
        Ok(())
    }

    /// `INV.FEED`: the name of the SKU's change-feed stream (in the SKU's
    /// hash slot), to read with `XREADGROUP`.
    pub async fn feed_name(&self, sku: &str) -> Result<String> {
        let mut c = cmd("INV.FEED");
        c.arg(sku);
        let v = self.send_idempotent(sku.as_bytes(), &c).await?;
        redis::from_redis_value(&v).map_err(|e| Error::Protocol(e.to_string()))
    }

    /// `INV.BUYER`: one buyer's held and bought units on the SKU.
    ///
    /// ```no_run
    /// # async fn demo(c: redis_inventory_client::Client) -> redis_inventory_client::Result<()> {
    /// let t = c.buyer("sku:tee", "user-42").await?;
    /// println!("{} held, {} bought", t.held, t.bought);
    /// # Ok(()) }
    /// ```
    pub async fn buyer(&self, sku: &str, buyer: &str) -> Result<BuyerTotals> {
        let mut c = cmd("INV.BUYER");
        c.arg(sku).arg(buyer);
        let v = self.send_idempotent(sku.as_bytes(), &c).await?;
        redis::from_redis_value(&v).map_err(|e| Error::Protocol(e.to_string()))
    }
}

//! Orders spanning SKUs and shards.
//!
//! What is atomic and what is compensated:
//! - Lines whose SKUs share a hash slot (use a hash tag such as `{cart}` to
//!   force it) go in one `INV.MRESERVE`: atomic, all or nothing, on one node.
//! - Lines in different slots go in one command per slot, all sent at once.
//!   Across slots nothing is atomic: if any group is blocked (no stock, a
//!   finished txid, an error), every group is cancelled with `INV.MCANCEL`,
//!   which also fences groups whose reserve is still in flight or was lost,
//!   so a late reserve can never take stock. The caller gets the first
//!   blocking line (in input order) and why.
//! - Between a group's reserve and the compensating cancel, other buyers can
//!   see those units as reserved (never sold). If the compensation itself
//!   fails after retries, the call returns the error and the caller must call
//!   [`Client::cancel_order`] again (idempotent); unpaid units also come back
//!   at the reservation deadline.
//! - Confirm is final per group: [`Client::confirm_order`] reports groups that
//!   could not confirm (expired, cancelled, unknown) and confirms the rest.

use crate::{parse_reply_multi, Client, Error, Outcome, Result};
use std::collections::BTreeMap;
use std::time::Duration;

/// One line of an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderLine {
    /// The SKU key.
    pub sku: String,
    /// Units (>= 1). Repeated SKUs are summed.
    pub qty: i64,
}

impl OrderLine {
    /// A line of `qty` units of `sku`.
    ///
    /// ```
    /// let line = redis_inventory_client::OrderLine::new("sku:tee", 2);
    /// ```
    pub fn new(sku: impl Into<String>, qty: i64) -> OrderLine {
        OrderLine {
            sku: sku.into(),
            qty,
        }
    }
}

/// What one SKU of an order answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineResult {
    /// The SKU (once per distinct SKU, in input order).
    pub sku: String,
    /// Its outcome, or `None` when its group failed with an error.
    pub outcome: Option<Outcome>,
    /// Units available on it afterwards (0 when unknown).
    pub available: i64,
}

/// The first line that stopped an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// Index of the line in the caller's input.
    pub line: usize,
    /// Its SKU.
    pub sku: String,
    /// The state that blocked it, or `None` for an error.
    pub outcome: Option<Outcome>,
    /// The error, when the group failed.
    pub error: Option<String>,
}

/// The result of an order operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderResult {
    /// `Reserved` / `Confirmed` / `Cancelled` when every line got there, else
    /// the blocking line's state (`Unknown` for an error).
    pub outcome: Outcome,
    /// The first blocking line, if any.
    pub blocked: Option<Blocked>,
    /// One entry per distinct SKU.
    pub lines: Vec<LineResult>,
    /// True when a blocked reserve was compensated by cancelling every group.
    pub compensated: bool,
}

/// Distinct SKUs with summed quantities and the first input line of each.
fn merge(lines: &[OrderLine]) -> Result<Vec<(String, i64, usize)>> {
    if lines.is_empty() {
        return Err(Error::InvalidInput(
            "an order needs at least one line".into(),
        ));
    }
    let mut merged: Vec<(String, i64, usize)> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.qty < 1 {
            return Err(Error::InvalidInput(format!("line {i}: qty must be >= 1")));
        }
        match merged.iter_mut().find(|m| m.0 == l.sku) {
            Some(m) => m.1 += l.qty,
            None => merged.push((l.sku.clone(), l.qty, i)),
        }
    }
    Ok(merged)
}

/// Indexes into `skus`, grouped by hash slot.
fn groups<'a>(skus: impl Iterator<Item = &'a str>) -> Vec<Vec<usize>> {
    let mut by_slot: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
    for (i, sku) in skus.enumerate() {
        by_slot
            .entry(crate::slot(sku.as_bytes()))
            .or_default()
            .push(i);
    }
    by_slot.into_values().collect()
}

/// Runs one multi-key command per slot group, all concurrently; returns each
/// SKU's (outcome, available) or its group's error.
async fn per_group(
    client: &Client,
    skus: &[&str],
    build: impl Fn(&[usize]) -> redis::Cmd,
) -> Vec<std::result::Result<(Outcome, i64), String>> {
    let groups = groups(skus.iter().copied());
    let calls = groups.iter().map(|g| {
        let cmd = build(g);
        let first = skus[g[0]];
        async move {
            client
                .send_multi(first.as_bytes(), &cmd)
                .await
                .and_then(parse_reply_multi)
        }
    });
    let replies = futures::future::join_all(calls).await;
    let mut out: Vec<std::result::Result<(Outcome, i64), String>> =
        vec![Err("not sent".into()); skus.len()];
    for (g, reply) in groups.iter().zip(replies) {
        match reply {
            Ok(items) => {
                for (&i, item) in g.iter().zip(items) {
                    out[i] = Ok(item);
                }
            }
            Err(e) => {
                for &i in g {
                    out[i] = Err(e.to_string());
                }
            }
        }
    }
    out
}

fn summarise(
    skus: &[(String, usize)],
    results: Vec<std::result::Result<(Outcome, i64), String>>,
    good: &[Outcome],
) -> (Vec<LineResult>, Option<Blocked>) {
    let mut lines = Vec::new();
    let mut blocked: Option<Blocked> = None;
    for ((sku, line), r) in skus.iter().zip(results) {
        let (outcome, available, error) = match r {
            Ok((o, a)) => (Some(o), a, None),
            Err(e) => (None, 0, Some(e)),
        };
        let is_good = outcome.is_some_and(|o| good.contains(&o));
        if !is_good && blocked.as_ref().is_none_or(|b| *line < b.line) {
            blocked = Some(Blocked {
                line: *line,
                sku: sku.clone(),
                outcome,
                error,
            });
        }
        lines.push(LineResult {
            sku: sku.clone(),
            outcome,
            available,
        });
    }
    (lines, blocked)
}

impl Client {
    /// Reserves every line of an order for `txid`, or none: one
    /// `INV.MRESERVE` per hash slot, all slots at once; if any is blocked,
    /// every slot is cancelled (see the module docs for what is atomic).
    /// Retrying a whole order with the same txid is safe.
    ///
    /// ```no_run
    /// # async fn demo(c: redis_inventory_client::Client) -> redis_inventory_client::Result<()> {
    /// use redis_inventory_client::{OrderLine, Outcome};
    /// let lines = [OrderLine::new("sku:tee", 1), OrderLine::new("sku:mug", 2)];
    /// let r = c.reserve_order("order-9", &lines, None).await?;
    /// if r.outcome != Outcome::Reserved {
    ///     println!("blocked by {:?}", r.blocked);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn reserve_order(
        &self,
        txid: &str,
        lines: &[OrderLine],
        ttl: Option<Duration>,
    ) -> Result<OrderResult> {
        self.reserve_order_for(txid, lines, ttl, None).await
    }

    /// [`Client::reserve_order`] for a buyer (`BUYER`): every line counts
    /// against the buyer's limit on its SKU; a line over it answers
    /// `Limited` and the order is compensated like any blocked one.
    ///
    /// ```no_run
    /// # async fn demo(c: redis_inventory_client::Client) -> redis_inventory_client::Result<()> {
    /// use redis_inventory_client::OrderLine;
    /// let lines = [OrderLine::new("sku:tee", 1), OrderLine::new("sku:mug", 1)];
    /// let r = c.reserve_order_for("order-9", &lines, None, Some("user-42")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn reserve_order_for(
        &self,
        txid: &str,
        lines: &[OrderLine],
        ttl: Option<Duration>,
        buyer: Option<&str>,
    ) -> Result<OrderResult> {
        let merged = merge(lines)?;
        let skus: Vec<&str> = merged.iter().map(|m| m.0.as_str()).collect();
        let ttl = Client::ttl_arg(ttl);
        let results = per_group(self, &skus, |g| {
            let mut c = redis::cmd("INV.MRESERVE");
            c.arg(txid);
            if let Some(b) = buyer {
                c.arg("BUYER").arg(b);
            }
            c.arg(ttl);
            for &i in g {
                c.arg(&merged[i].0).arg(merged[i].1);
            }
            c
        })
        .await;
        let named: Vec<(String, usize)> = merged.iter().map(|m| (m.0.clone(), m.2)).collect();
        let (line_results, blocked) = summarise(&named, results, &[Outcome::Reserved]);
        let Some(blocked) = blocked else {
            return Ok(OrderResult {
                outcome: Outcome::Reserved,
                blocked: None,
                lines: line_results,
                compensated: false,
            });
        };
        // Compensate: cancel (and fence) every group, whatever it answered.
        let cancel = self.cancel_order(txid, &skus).await?;
        if let Some(b) = cancel.blocked.as_ref().filter(|b| b.error.is_some()) {
            return Err(Error::CompensationFailed(format!(
                "order {txid} was blocked and its compensation failed on {}: {}; call cancel_order again",
                b.sku,
                b.error.clone().unwrap_or_default()
            )));
        }
        Ok(OrderResult {
            outcome: blocked.outcome.unwrap_or(Outcome::Unknown),
            blocked: Some(blocked),
            lines: line_results,
            compensated: true,
        })
    }

    /// Confirms every SKU of an order: one `INV.MCONFIRM` per hash slot.
    /// Within a slot all or nothing; across slots each group confirms on its
    /// own, and the first group that cannot (expired, cancelled, unknown) is
    /// reported in [`OrderResult::blocked`]. Safe to retry.
    ///
    /// ```no_run
    /// # async fn demo(c: redis_inventory_client::Client) -> redis_inventory_client::Result<()> {
    /// let r = c.confirm_order("order-9", &["sku:tee", "sku:mug"]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn confirm_order(&self, txid: &str, skus: &[&str]) -> Result<OrderResult> {
        self.multi_order("INV.MCONFIRM", txid, skus, Outcome::Confirmed)
            .await
    }

    /// Cancels every SKU of an order (fencing SKUs never reserved): one
    /// `INV.MCANCEL` per hash slot. The outcome is `Confirmed` when some line
    /// was already confirmed, else `Cancelled`. Safe to retry.
    ///
    /// ```no_run
    /// # async fn demo(c: redis_inventory_client::Client) -> redis_inventory_client::Result<()> {
    /// c.cancel_order("order-9", &["sku:tee", "sku:mug"]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn cancel_order(&self, txid: &str, skus: &[&str]) -> Result<OrderResult> {
        let mut r = self
            .multi_order("INV.MCANCEL", txid, skus, Outcome::Cancelled)
            .await?;
        // Expired lines are released too; only a confirmed line or an error blocks.
        if r.blocked
            .as_ref()
            .is_some_and(|b| b.outcome == Some(Outcome::Expired))
        {
            r.blocked = None;
            r.outcome = Outcome::Cancelled;
        }
        if r.lines
            .iter()
            .any(|l| l.outcome == Some(Outcome::Confirmed))
        {
            r.outcome = Outcome::Confirmed;
        }
        Ok(r)
    }

    async fn multi_order(
        &self,
        name: &str,
        txid: &str,
        skus: &[&str],
        good: Outcome,
    ) -> Result<OrderResult> {
        if skus.is_empty() {
            return Err(Error::InvalidInput(
                "an order needs at least one SKU".into(),
            ));
        }
        let mut distinct: Vec<(String, usize)> = Vec::new();
        for (i, s) in skus.iter().enumerate() {
            if !distinct.iter().any(|d| d.0 == *s) {
                distinct.push(((*s).to_string(), i));
            }
        }
        let names: Vec<&str> = distinct.iter().map(|d| d.0.as_str()).collect();
        let results = per_group(self, &names, |g| {
            let mut c = redis::cmd(name);
            c.arg(txid);
            for &i in g {
                c.arg(names[i]);
            }
            c
        })
        .await;
        let (lines, blocked) = summarise(&distinct, results, &[good]);
        let outcome = blocked
            .as_ref()
            .map_or(good, |b| b.outcome.unwrap_or(Outcome::Unknown));
        Ok(OrderResult {
            outcome,
            blocked,
            lines,
            compensated: false,
        })
    }
}

//! Reserves a caller may give up on: every reserve whose outcome is still
//! unknown at its deadline fences its txid (`reserve_or_fence`), and the
//! waiting room's reserve (`INV.RESERVE ... BLOCK ms`) waits on a
//! connection of its own and never leaves a grant behind for a caller who
//! gave up.

use crate::sale::reserve_for_cmd;
use crate::{parse_reply, reserve_cmd, Backend, Client, Error, Reply, Result};
use redis::{cmd, Cmd, Value};
use std::time::{Duration, Instant};

/// A connection of its own for blocking commands (a blocked command would
/// hold the shared one), which a caller that waits often keeps between its
/// waits (the feed consumer): one connection for many waits, not one each.
pub(crate) struct Waiter {
    conn: WaiterConn,
    /// The longest wait it was opened for (its replies' timeout is that
    /// plus one attempt's time).
    wait: Duration,
}

enum WaiterConn {
    Standalone(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Waiter {
    /// Whether a wait of `wait` fits its reply timeout.
    pub(crate) fn fits(&self, wait: Duration) -> bool {
        wait <= self.wait
    }

    /// Sends `c`; after an error the connection is best dropped (a reply
    /// may still be on its way).
    pub(crate) async fn send(&mut self, c: &Cmd) -> Result<Value> {
        match &mut self.conn {
            WaiterConn::Standalone(conn) => c.query_async(conn).await,
            WaiterConn::Cluster(conn) => c.query_async(conn).await,
        }
        .map_err(Error::from_redis)
    }
}

/// Fences a txid if the waiting reserve that owns it is dropped before it
/// finished (the caller's own timeout, a cancelled task): a grant the
/// server makes after that would hold units for nobody.
struct FenceOnDrop {
    client: Client,
    sku: String,
    txid: String,
    armed: bool,
}

impl Drop for FenceOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (client, sku, txid) = (self.client.clone(), self.sku.clone(), self.txid.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = client.fence(&sku, &txid).await;
            });
        }
    }
}

impl Client {
    /// Sends a reserve (retried as any idempotent command). When its
    /// outcome is still unknown at the deadline (the last attempt failed
    /// with a transient error, and an attempt may have reached the server),
    /// cancels the txid before returning, retried for
    /// `RetryPolicy::fence_deadline`: a reserve still in flight, or queued
    /// behind a slow or paused server, then finds the txid fenced and takes
    /// nothing after the caller gave up ([`Error::Abandoned`]).
    pub(crate) async fn reserve_or_fence(&self, sku: &str, txid: &str, c: &Cmd) -> Result<Reply> {
        let outcome = self.send_idempotent(sku.as_bytes(), c).await;
        self.reserve_reply_or_fence(sku, txid, outcome).await
    }

    /// A reserve's reply typed and settled; or, when its outcome is still
    /// unknown (a transient failure), its txid fenced and the failure
    /// reported as [`Error::Abandoned`].
    async fn reserve_reply_or_fence(
        &self,
        sku: &str,
        txid: &str,
        outcome: Result<Value>,
    ) -> Result<Reply> {
        match outcome {
            Ok(v) => {
                let reply = parse_reply(v)?;
                self.settle(sku.as_bytes(), reply).await
            }
            Err(e) if e.is_transient() => {
                let fenced = self.fence(sku, txid).await.ok().map(|r| r.outcome);
                Err(Error::Abandoned {
                    txid: txid.to_string(),
                    cause: Box::new(e),
                    fenced,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// `INV.RESERVE ... BLOCK`: holds `qty` units for `txid`, waiting up to
    /// `wait` for them when there are none, first come, first served (units
    /// that come back go to the earliest waiter; nothing overtakes the
    /// queue). Answers `Reserved` when they came, `NoStock` when `wait` ran
    /// out (nothing recorded), or the state a rule or a cancel gave it.
    /// `buyer` names the buyer as [`Client::reserve_for`] does; `ttl` counts
    /// from the grant.
    ///
    /// The wait runs on a connection of its own (on a cluster, a cluster
    /// connection of its own), so it does not hold up the other requests
    /// that share the client's connection. If the caller stops waiting
    /// first (drops the future, e.g. under its own `tokio::time::timeout`),
    /// or the reply is lost, the client cancels the txid, so that a grant
    /// made after that cannot take stock for nobody; a lost reply is then
    /// [`Error::Abandoned`].
    ///
    /// ```no_run
    /// # async fn demo(c: redis_inventory_client::Client) -> redis_inventory_client::Result<()> {
    /// use redis_inventory_client::Outcome;
    /// use std::time::Duration;
    /// let r = c.reserve_waiting("sku:tee", "order-7", 1, None, Some("user-42"), Duration::from_secs(30)).await?;
    /// if r.outcome == Outcome::Reserved { /* pay within the TTL */ }
    /// # Ok(()) }
    /// ```
    pub async fn reserve_waiting(
        &self,
        sku: &str,
        txid: &str,
        qty: i64,
        ttl: Option<Duration>,
        buyer: Option<&str>,
        wait: Duration,
    ) -> Result<Reply> {
        let mut c = match buyer {
            Some(b) => reserve_for_cmd(sku, txid, qty, ttl, b),
            None => reserve_cmd(sku, txid, qty, ttl),
        };
        c.arg("BLOCK")
            .arg(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1));
        let mut guard = FenceOnDrop {
            client: self.clone(),
            sku: sku.to_string(),
            txid: txid.to_string(),
            armed: true,
        };
        let started = Instant::now();
        let outcome = loop {
            match self.send_waiting(&c, wait).await {
                // The key moved to another node while the reserve waited
                // (TRYAGAIN, MOVED): nothing was recorded; wait again there.
                Err(Error::Unavailable(_)) if started.elapsed() < wait => {
                    tokio::time::sleep(self.options.retry.initial_backoff).await;
                }
                other => break other,
            }
        };
        // Answered, or fenced below: the guard's work is done either way.
        guard.armed = false;
        self.reserve_reply_or_fence(sku, txid, outcome).await
    }

    /// Sends a waiting reserve on a connection of its own, allowed to stay
    /// unanswered for `wait` plus one attempt's time.
    pub(crate) async fn send_waiting(&self, c: &Cmd, wait: Duration) -> Result<Value> {
        self.waiter(wait).await?.send(c).await
    }

    /// Opens a connection of its own for blocking commands, whose replies
    /// may take `wait` plus one attempt's time.
    pub(crate) async fn waiter(&self, wait: Duration) -> Result<Waiter> {
        let patience = wait + self.options.attempt_timeout();
        let conn = match &self.backend {
            Backend::Standalone(_, client) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(self.options.attempt_timeout())
                    .set_response_timeout(patience);
                WaiterConn::Standalone(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                        .map_err(Error::from_redis)?,
                )
            }
            Backend::Cluster(_, client) => {
                let config = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(self.options.attempt_timeout())
                    .set_response_timeout(patience);
                WaiterConn::Cluster(
                    client
                        .get_async_connection_with_config(config)
                        .await
                        .map_err(Error::from_redis)?,
                )
            }
        };
        Ok(Waiter { conn, wait })
    }

    /// Cancels `txid` on `sku`, retried for `RetryPolicy::fence_deadline`:
    /// what a reserve whose outcome is unknown, or whose caller gave up,
    /// leaves behind.
    pub(crate) async fn fence(&self, sku: &str, txid: &str) -> Result<Reply> {
        let mut cancel = cmd("INV.CANCEL");
        cancel.arg(sku).arg(txid);
        let v = self
            .send_until(sku.as_bytes(), &cancel, self.options.retry.fence_deadline)
            .await?;
        let reply = parse_reply(v)?;
        self.settle(sku.as_bytes(), reply).await
    }
}

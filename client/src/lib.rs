//! Async Rust client for the [redis-inventory] module, for a standalone server
//! or a Redis Cluster.
//!
//! - Typed replies ([`Reply`], [`Outcome`], [`Stock`]) and errors ([`Error`]).
//! - Orders spanning SKUs and shards: [`Client::reserve_order`] reserves every
//!   line or none, compensating across hash slots.
//! - Batches: [`Client::reserve_many`] sends thousands of independent reserves
//!   concurrently, multiplexed per node, results in input order.
//! - Retries with backoff under a deadline for the commands that are
//!   idempotent by txid; SET and ADD are never retried.
//! - Optional durability: wait for N replicas after writes.
//! - A reserve that waits in line for returned units
//!   ([`Client::reserve_waiting`]), on a connection of its own, that fences
//!   its txid when its caller gives up.
//! - A typed consumer of SKUs' change feeds ([`Client::feed_consumer`]):
//!   consumer groups, acks, at-least-once delivery, resuming after a crash,
//!   across a cluster's shards.
//! - An opt-in local stock cache ([`StockCache`]) kept true by the server's
//!   invalidations (`CLIENT TRACKING`).
//!
//! Built on redis-rs (`redis` crate): its async cluster connection keeps the
//! slot map, follows MOVED/ASK and multiplexes concurrent commands per node.
//! Every command is routed to its key's slot explicitly, because redis-rs
//! would otherwise route an unknown module command by its first argument.
//!
//! ```no_run
//! # async fn demo() -> redis_inventory_client::Result<()> {
//! use redis_inventory_client::{Client, Outcome};
//! use std::time::Duration;
//!
//! let client = Client::standalone("redis://127.0.0.1:6379/").await?;
//! client.set("sku:tee", 3, None).await?;
//! let r = client.reserve("sku:tee", "order-1", 2, Some(Duration::from_secs(600))).await?;
//! assert_eq!(r.outcome, Outcome::Reserved);
//! client.confirm("sku:tee", "order-1").await?;
//! # Ok(()) }
//! ```
//!
//! [redis-inventory]: ../README.md

mod builder;
mod cache;
mod commands;
mod feed;
mod order;
mod sale;
mod types;
mod waiting;

pub use builder::{ClientBuilder, Durability, RetryPolicy};
pub use cache::{CacheStats, StockCache};
pub use commands::{InventoryCommands, ScanPage};
pub use feed::{FeedConsumer, FeedEvent, FeedEventKind, FeedStart};
/// The hash slot of a key. Keys sharing a hash tag share a slot, so their
/// order lines form one atomic group.
///
/// ```
/// use redis_inventory_client::slot;
/// assert_eq!(slot(b"{cart7}:tee"), slot(b"{cart7}:mug"));
/// ```
pub use inventory_core::slot::slot;
pub use order::{Blocked, LineResult, OrderLine, OrderResult};
pub use sale::{BuyerTotals, SaleRules};
pub use types::{Error, Outcome, Reply, Result, ServerError, Stock, StockCounts, TxRecord};

use futures::StreamExt;
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Value};
use std::time::{Duration, Instant};

#[derive(Clone)]
pub(crate) enum Backend {
    /// The shared connection, and the client that opens connections of
    /// their own (a waiting reserve's).
    Standalone(ConnectionManager, redis::Client),
    Cluster(ClusterConnection, redis::cluster::ClusterClient),
}

/// A connection to redis-inventory, standalone or cluster. Cheap to clone;
/// clones share the underlying connections.
#[derive(Clone)]
pub struct Client {
    backend: Backend,
    /// The options it connected with, changed by the `with_*` methods: one
    /// place for them, whether set before connecting or after.
    options: ClientBuilder,
}

/// One reserve in a batch.
#[derive(Clone, Debug)]
pub struct ReserveRequest {
    /// The SKU key.
    pub sku: String,
    /// Client-chosen transaction id.
    pub txid: String,
    /// Units to hold (>= 1).
    pub qty: i64,
    /// TTL; `None` uses the server's `inventory.default-ttl-ms`.
    pub ttl: Option<Duration>,
}

fn cmd(name: &str) -> Cmd {
    redis::cmd(name)
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

pub(crate) fn parse_reply(v: Value) -> Result<Reply> {
    redis::from_redis_value(&v).map_err(|e| Error::Protocol(e.to_string()))
}

impl Client {
    /// Options for connecting: retries, durability, batch window.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Connects to one server, e.g. `redis://127.0.0.1:6379/`, with the
    /// default options ([`ClientBuilder::standalone`]).
    ///
    /// ```no_run
    /// # async fn demo() -> redis_inventory_client::Result<()> {
    /// let client = redis_inventory_client::Client::standalone("redis://127.0.0.1:6379/").await?;
    /// # Ok(()) }
    /// ```
    pub async fn standalone(url: &str) -> Result<Client> {
        Client::builder().standalone(url).await
    }

    /// Connects to a Redis Cluster from one or more node URLs, with the
    /// default options ([`ClientBuilder::cluster`]).
    ///
    /// ```no_run
    /// # async fn demo() -> redis_inventory_client::Result<()> {
    /// let client = redis_inventory_client::Client::cluster(&["redis://127.0.0.1:7001/"]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn cluster(urls: &[&str]) -> Result<Client> {
        Client::builder().cluster(urls).await
    }

    /// Sets how idempotent commands are retried (as [`ClientBuilder::retry`]
    /// does before connecting).
    ///
    /// ```no_run
    /// # async fn demo(c: redis_inventory_client::Client) {
    /// use std::time::Duration;
    /// let c = c.with_retry(redis_inventory_client::RetryPolicy { deadline: Duration::from_secs(3), ..Default::default() });
    /// # }
    /// ```
    pub fn with_retry(mut self, retry: RetryPolicy) -> Client {
        self.options = self.options.retry(retry);
        self
    }

    /// Waits for `replicas` acknowledgements after each write; the count is
    /// reported in [`Reply::acked_replicas`].
    ///
    /// ```no_run
    /// # async fn demo(c: redis_inventory_client::Client) {
    /// use std::time::Duration;
    /// let c = c.with_durability(redis_inventory_client::Durability { replicas: 1, timeout: Duration::from_millis(100) });
    /// # }
    /// ```
    pub fn with_durability(mut self, durability: Durability) -> Client {
        self.options = self.options.durability(durability);
        self
    }

    /// How many commands a batch keeps in flight (default 256).
    ///
    /// ```no_run
    /// # async fn demo(c: redis_inventory_client::Client) {
    /// let c = c.with_window(1024);
    /// # }
    /// ```
    pub fn with_window(mut self, window: usize) -> Client {
        self.options = self.options.window(window);
        self
    }

    /// Sends one command to the primary that owns `key`'s slot.
    async fn send(&self, key: &[u8], cmd: &Cmd) -> Result<Value> {
        match &self.backend {
            Backend::Standalone(c, _) => cmd
                .query_async(&mut c.clone())
                .await
                .map_err(Error::from_redis),
            Backend::Cluster(c, _) => {
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                    Route::new(slot(key), SlotAddr::Master),
                ));
                c.clone()
                    .route_command(cmd, route)
                    .await
                    .map_err(Error::from_redis)
            }
        }
    }

    /// `send`, retried with backoff on transient errors until the deadline.
    /// Only for commands that are idempotent by txid.
    async fn send_idempotent(&self, key: &[u8], cmd: &Cmd) -> Result<Value> {
        self.send_until(key, cmd, self.options.retry.deadline).await
    }

    /// `send`, retried with backoff on transient errors for `deadline`.
    pub(crate) async fn send_until(
        &self,
        key: &[u8],
        cmd: &Cmd,
        deadline: Duration,
    ) -> Result<Value> {
        let started = Instant::now();
        let mut backoff = self.options.retry.initial_backoff;
        loop {
            match self.send(key, cmd).await {
                Err(e) if e.is_transient() && started.elapsed() + backoff < deadline => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.options.retry.max_backoff);
                }
                other => return other,
            }
        }
    }

    /// An idempotent command to `sku`'s node, its reply typed.
    async fn query<T: redis::FromRedisValue>(&self, sku: &str, c: &Cmd) -> Result<T> {
        let v = self.send_idempotent(sku.as_bytes(), c).await?;
        redis::from_redis_value(&v).map_err(|e| Error::Protocol(e.to_string()))
    }

    /// After a write: `WAIT` on the node that took it, when durability is set.
    pub(crate) async fn settle(&self, key: &[u8], mut reply: Reply) -> Result<Reply> {
        if let Some(d) = self.options.durability {
            let mut wait = cmd("WAIT");
            wait.arg(d.replicas)
                .arg(u64::try_from(d.timeout.as_millis()).unwrap_or(u64::MAX));
            let acked: i64 = redis::from_redis_value(&self.send(key, &wait).await?)
                .map_err(|e| Error::Protocol(e.to_string()))?;
            reply.acked_replicas = Some(acked.max(0) as u64);
        }
        Ok(reply)
    }

    /// `INV.SET`: sets stock (creating the key). Never retried: on
    /// [`Error::Connection`] the outcome is unknown; read the version with
    /// [`Client::get`] and retry with `if_version`.
    ///
    /// ```no_run
    /// # async fn demo(c: redis_inventory_client::Client) -> redis_inventory_client::Result<()> {
    /// c.set("sku:tee", 100, Some(0)).await?; // create only if missing
    /// # Ok(()) }
    /// ```
    pub async fn set(&self, sku: &str, stock: i64, if_version: Option<u64>) -> Result<()> {
        let mut c = cmd("INV.SET");
        c.arg(sku).arg(stock);
        if let Some(v) = if_version {
            c.arg("IFVERSION").arg(v);
        }
        self.send(sku.as_bytes(), &c).await?;
        Ok(())
    }

    /// `INV.ADD`: adds (or, negative, writes off available) units; returns
    /// available units. Never retried, like [`Client::set`].
    ///
    /// ```no_run
    /// # async fn demo(c: redis_inventory_client::Client) -> redis_inventory_client::Result<()> {
    /// let available = c.add("sku:tee", 20, None).await?;
    /// # Ok(()) }
    /// ```
    pub async fn add(&self, sku: &str, delta: i64, if_version: Option<u64>) -> Result<i64> {
        let mut c = cmd("INV.ADD");
        c.arg(sku).arg(delta);
        if let Some(v) = if_version {
            c.arg("IFVERSION").arg(v);
        }
        let v = self.send(sku.as_bytes(), &c).await?;
        redis::from_redis_value(&v).map_err(|e| Error::Protocol(e.to_string()))
    }

    /// `INV.GET`: the SKU's counters, `None` when the key does not exist.
    ///
    /// ```no_run
    /// # async fn demo(c: redis_inventory_client::Client) -> redis_inventory_client::Result<()> {
    /// if let Some(s) = c.get("sku:tee").await? { println!("{} available", s.counts.available); }
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, sku: &str) -> Result<Option<Stock>> {
        let mut c = cmd("INV.GET");
        c.arg(sku);
        self.query(sku, &c).await
    }

    /// `INV.RESERVE`: holds `qty` units for `txid`. Idempotent: a retry
    /// answers the same. `ttl` `None` uses the server default. When the
    /// retry deadline passes with the outcome unknown, the txid is fenced
    /// before this returns [`Error::Abandoned`].
    ///
    /// ```no_run
    /// # async fn demo(c: redis_inventory_client::Client) -> redis_inventory_client::Result<()> {
    /// use std::time::Duration;
    /// let r = c.reserve("sku:tee", "order-1", 2, Some(Duration::from_secs(600))).await?;
    /// # Ok(()) }
    /// ```
    pub async fn reserve(
        &self,
        sku: &str,
        txid: &str,
        qty: i64,
        ttl: Option<Duration>,
    ) -> Result<Reply> {
        let c = reserve_cmd(sku, txid, qty, ttl);
        self.reserve_or_fence(sku, txid, &c).await
    }

    /// `INV.CONFIRM`: sells the reserved units. Idempotent.
    ///
    /// ```no_run
    /// # async fn demo(c: redis_inventory_client::Client) -> redis_inventory_client::Result<()> {
    /// c.confirm("sku:tee", "order-1").await?;
    /// # Ok(()) }
    /// ```
    pub async fn confirm(&self, sku: &str, txid: &str) -> Result<Reply> {
        self.txid_command("INV.CONFIRM", sku, txid).await
    }

    /// `INV.CANCEL`: releases the units, or fences a txid not yet reserved.
    /// Idempotent.
    ///
    /// ```no_run
    /// # async fn demo(c: redis_inventory_client::Client) -> redis_inventory_client::Result<()> {
    /// c.cancel("sku:tee", "order-1").await?;
    /// # Ok(()) }
    /// ```
    pub async fn cancel(&self, sku: &str, txid: &str) -> Result<Reply> {
        self.txid_command("INV.CANCEL", sku, txid).await
    }

    /// `INV.EXTEND`: gives a RESERVED record a new deadline of now + `ttl`.
    ///
    /// ```no_run
    /// # async fn demo(c: redis_inventory_client::Client) -> redis_inventory_client::Result<()> {
    /// c.extend("sku:tee", "order-1", std::time::Duration::from_secs(300)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn extend(&self, sku: &str, txid: &str, ttl: Duration) -> Result<Reply> {
        let mut c = cmd("INV.EXTEND");
        c.arg(sku).arg(txid).arg(ttl_ms(ttl));
        let reply = parse_reply(self.send_idempotent(sku.as_bytes(), &c).await?)?;
        self.settle(sku.as_bytes(), reply).await
    }

    async fn txid_command(&self, name: &str, sku: &str, txid: &str) -> Result<Reply> {
        let mut c = cmd(name);
        c.arg(sku).arg(txid);
        let reply = parse_reply(self.send_idempotent(sku.as_bytes(), &c).await?)?;
        self.settle(sku.as_bytes(), reply).await
    }

    /// `INV.TX`: one transaction record, `None` when unknown.
    ///
    /// ```no_run
    /// # async fn demo(c: redis_inventory_client::Client) -> redis_inventory_client::Result<()> {
    /// let record = c.tx("sku:tee", "order-1").await?;
    /// # Ok(()) }
    /// ```
    pub async fn tx(&self, sku: &str, txid: &str) -> Result<Option<TxRecord>> {
        let mut c = cmd("INV.TX");
        c.arg(sku).arg(txid);
        self.query(sku, &c).await
    }

    /// `INV.SCAN`: one page of the SKU's records from `cursor` (start at 0;
    /// the page's cursor is 0 when done).
    ///
    /// ```no_run
    /// # async fn demo(c: redis_inventory_client::Client) -> redis_inventory_client::Result<()> {
    /// let mut cursor = 0;
    /// loop {
    ///     let page = c.scan("sku:tee", cursor, Some(500)).await?;
    ///     for (txid, record) in &page.records { /* ... */ }
    ///     cursor = page.cursor;
    ///     if cursor == 0 { break; }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn scan(&self, sku: &str, cursor: u64, count: Option<u64>) -> Result<ScanPage> {
        let c = commands::scan_cmd(sku, cursor, count);
        self.query(sku, &c).await
    }

    /// `INV.AUDIT`: `None` when the SKU's invariants hold, else the
    /// server's `DRIFT ...` line.
    pub async fn audit(&self, sku: &str) -> Result<Option<String>> {
        let mut c = cmd("INV.AUDIT");
        c.arg(sku);
        let v = self.send_idempotent(sku.as_bytes(), &c).await?;
        commands::audit_result(v).map_err(|e| Error::Protocol(e.to_string()))
    }

    /// Many independent reserves (different SKUs and txids), sent
    /// concurrently with at most `window` in flight. redis-rs multiplexes
    /// concurrent commands onto one connection per node, so each node sees
    /// them pipelined, and follows redirects per command (never resending a
    /// whole pipeline). Results come back in input order; each is retried on
    /// its own like [`Client::reserve`].
    ///
    /// ```no_run
    /// # async fn demo(c: redis_inventory_client::Client) {
    /// use redis_inventory_client::ReserveRequest;
    /// let reqs: Vec<ReserveRequest> = (0..1000)
    ///     .map(|i| ReserveRequest { sku: format!("sku:{i}"), txid: format!("o{i}"), qty: 1, ttl: None })
    ///     .collect();
    /// let results = c.reserve_many(&reqs).await;
    /// # }
    /// ```
    pub async fn reserve_many(&self, requests: &[ReserveRequest]) -> Vec<Result<Reply>> {
        futures::stream::iter(requests)
            .map(|r| self.reserve(&r.sku, &r.txid, r.qty, r.ttl))
            .buffered(self.options.window)
            .collect()
            .await
    }
}

/// A server URL fit to print or log: the user name and password are
/// replaced by `***`.
///
/// ```
/// use redis_inventory_client::redact_url;
/// assert_eq!(redact_url("redis://app:s3cret@10.0.0.5:6379/0"), "redis://***@10.0.0.5:6379/0");
/// assert_eq!(redact_url("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/");
/// ```
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

pub(crate) fn reserve_cmd(sku: &str, txid: &str, qty: i64, ttl: Option<Duration>) -> Cmd {
    let mut c = cmd("INV.RESERVE");
    c.arg(sku).arg(txid).arg(qty);
    if let Some(t) = ttl {
        c.arg("TTL").arg(ttl_ms(t));
    }
    c
}

impl Client {
    pub(crate) async fn send_multi(&self, key: &[u8], cmd: &Cmd) -> Result<Value> {
        self.send_idempotent(key, cmd).await
    }

    pub(crate) fn ttl_arg(ttl: Option<Duration>) -> u64 {
        ttl.map_or(0, ttl_ms)
    }
}

/// A multi-key reply: overall state, then `[key, state, available, version]` per key.
type MultiReply = (String, Vec<(Vec<u8>, String, i64, i64)>);

/// Parses `[state, [[key, state, available, version], ...]]` into each
/// item's (outcome, available), in the order the keys were sent.
pub(crate) fn parse_reply_multi(v: Value) -> Result<Vec<(Outcome, i64)>> {
    let (_, items): MultiReply =
        redis::from_redis_value(&v).map_err(|e| Error::Protocol(e.to_string()))?;
    items
        .into_iter()
        .map(|(_, state, available, _)| {
            Outcome::parse(&state)
                .map(|o| (o, available))
                .ok_or_else(|| Error::Protocol(format!("state {state}")))
        })
        .collect()
}

//! An opt-in local cache of `INV.GET` for app servers that show stock on
//! every page: the server tells it which keys changed (`CLIENT TRACKING`
//! over RESP3), so it serves a snapshot only until the key's next change,
//! never a stale map. It never decides a reservation: reserves always go to
//! the server, which alone decides.
//!
//! Why hand-written: redis-rs's own client-side cache (`cache-aio`, marked
//! experimental) caches only the commands on its built-in read-only list,
//! which has no way to name a module command.
//!
//! How it stays correct:
//! - Reads go over one RESP3 connection with tracking on; invalidations
//!   arrive on the same connection, in order with the replies, and are
//!   applied by redis-rs's reader as it parses them (the push handler below
//!   runs inline), so an invalidation the client has received is applied
//!   before any later reply is seen.
//! - A reply and an invalidation that follows it race to the cache: the
//!   reply's reader may insert after the invalidation was applied. So a key
//!   with a read in flight is marked when invalidated, and that read does
//!   not insert.
//! - A flush (nil invalidation: FLUSHALL, or the server's tracking table
//!   evicting keys), a disconnection, or no proof of life for
//!   `3 x heartbeat` empties the cache; entries are served only while the
//!   heartbeat shows invalidations can still arrive.

use crate::{Error, Result, Stock};
use redis::aio::MultiplexedConnection;
use redis::{PushInfo, PushKind, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// Counters of a [`StockCache`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads served from the cache.
    pub hits: u64,
    /// Reads that went to the server.
    pub misses: u64,
    /// Keys the server said changed (each removes its entry).
    pub invalidations: u64,
    /// Times the whole cache was emptied (flush, disconnection, silence).
    pub resets: u64,
    /// Entries held now.
    pub entries: usize,
}

/// A read in flight for one key.
#[derive(Default)]
struct Pending {
    reads: u32,
    /// Invalidated while in flight: its replies are not cached.
    invalidated: bool,
}

struct State {
    /// Snapshots by key; `None`: the key does not exist.
    entries: HashMap<Vec<u8>, Option<Stock>>,
    pending: HashMap<Vec<u8>, Pending>,
    /// Bumped on every reset: reads started before it do not insert.
    epoch: u64,
    /// The connection whose invalidations the entries rely on.
    generation: u64,
    connected: bool,
    /// When the last heartbeat that came back was sent: every invalidation
    /// sent before it has been applied.
    alive_at: Instant,
    stats: CacheStats,
}

impl State {
    fn reset(&mut self) {
        self.entries.clear();
        self.epoch += 1;
        self.stats.resets += 1;
    }

    fn invalidate(&mut self, key: &[u8]) {
        self.stats.invalidations += 1;
        self.entries.remove(key);
        if let Some(p) = self.pending.get_mut(key) {
            p.invalidated = true;
        }
    }
}

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A push from the connection of `generation` (run by redis-rs's reader,
    /// inline: it must not block).
    fn on_push(&self, generation: u64, push: PushInfo) {
        let mut s = self.lock();
        if s.generation != generation {
            return;
        }
        match push.kind {
            PushKind::Invalidate => match push.data.first() {
                Some(Value::Array(keys)) => {
                    for key in keys {
                        if let Value::BulkString(key) = key {
                            s.invalidate(key);
                        }
                    }
                }
                _ => s.reset(),
            },
            PushKind::Disconnection => {
                s.connected = false;
                s.reset();
            }
            _ => {}
        }
    }
}

/// A local, invalidation-driven cache of `INV.GET` on one standalone server
/// (see the module docs for how it stays correct). Cheap to clone; clones
/// share the cache. Reconnects on the next read after a disconnection.
///
/// ```no_run
/// # async fn demo() -> redis_inventory_client::Result<()> {
/// use redis_inventory_client::StockCache;
/// let cache = StockCache::connect("redis://127.0.0.1:6379/").await?;
/// let shown = cache.get("sku:tee").await?; // from the server, then cached
/// let again = cache.get("sku:tee").await?; // local until sku:tee changes
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct StockCache {
    shared: Arc<Shared>,
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    connection: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    heartbeat: Duration,
    max_entries: usize,
}

impl StockCache {
    /// Connects to `url` (any protocol in it is replaced by RESP3) with a
    /// heartbeat of 500 ms and at most 100,000 entries.
    pub async fn connect(url: &str) -> Result<StockCache> {
        let client = redis::Client::open(url).map_err(|e| Error::InvalidInput(e.to_string()))?;
        StockCache::from_client(client, Duration::from_millis(500), 100_000).await
    }

    /// Connects through a redis-rs client you configured (TLS, credentials),
    /// with the heartbeat that bounds how long a silent connection's entries
    /// are served (`3 x heartbeat`) and the most entries held.
    pub async fn from_client(
        client: redis::Client,
        heartbeat: Duration,
        max_entries: usize,
    ) -> Result<StockCache> {
        let mut info = client.get_connection_info().clone();
        info.redis.protocol = redis::ProtocolVersion::RESP3;
        let client = redis::Client::open(info).map_err(|e| Error::InvalidInput(e.to_string()))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                entries: HashMap::new(),
                pending: HashMap::new(),
                epoch: 0,
                generation: 0,
                connected: false,
                alive_at: Instant::now(),
                stats: CacheStats::default(),
            }),
        });
        let cache = StockCache {
            shared,
            inner: Arc::new(Inner {
                client,
                connection: tokio::sync::Mutex::new(None),
                heartbeat: heartbeat.max(Duration::from_millis(10)),
                max_entries: max_entries.max(1),
            }),
        };
        cache.connection().await?;
        tokio::spawn(heartbeat_loop(
            Arc::downgrade(&cache.shared),
            Arc::downgrade(&cache.inner),
        ));
        Ok(cache)
    }

    /// The SKU's snapshot: the cached one while no change to the key has
    /// been announced, otherwise `INV.GET` from the server (then cached).
    /// `None` when the key does not exist (cached too: its creation is
    /// announced like any change).
    pub async fn get(&self, sku: &str) -> Result<Option<Stock>> {
        let key = sku.as_bytes();
        {
            let mut s = self.shared.lock();
            let fresh = s.connected && s.alive_at.elapsed() < self.inner.heartbeat * 3;
            if let Some(stock) = fresh.then(|| s.entries.get(key).copied()).flatten() {
                s.stats.hits += 1;
                return Ok(stock);
            }
            s.stats.misses += 1;
        }
        let mut con = self.connection().await?;
        let (epoch, generation) = {
            let mut s = self.shared.lock();
            s.pending.entry(key.to_vec()).or_default().reads += 1;
            (s.epoch, s.generation)
        };
        let reply: redis::RedisResult<Option<Stock>> =
            redis::cmd("INV.GET").arg(key).query_async(&mut con).await;
        let mut s = self.shared.lock();
        let invalidated = match s.pending.get_mut(key) {
            Some(p) => {
                p.reads -= 1;
                let invalidated = p.invalidated;
                if p.reads == 0 {
                    s.pending.remove(key);
                }
                invalidated
            }
            None => true,
        };
        let stock = reply.map_err(Error::from_redis)?;
        let current = s.connected && s.epoch == epoch && s.generation == generation;
        if current && !invalidated {
            if s.entries.len() >= self.inner.max_entries && !s.entries.contains_key(key) {
                // Full: make room by dropping any one entry (its key stays
                // tracked on the server; a later invalidation is harmless).
                if let Some(victim) = s.entries.keys().next().cloned() {
                    s.entries.remove(&victim);
                }
            }
            s.entries.insert(key.to_vec(), stock);
        }
        Ok(stock)
    }

    /// Waits until every change announced before this call has reached the
    /// cache (a round trip on the tracking connection): after a write made
    /// elsewhere returns, `sync` then `get` sees it.
    pub async fn sync(&self) -> Result<()> {
        let mut con = self.connection().await?;
        let sent = Instant::now();
        redis::cmd("PING")
            .query_async::<()>(&mut con)
            .await
            .map_err(Error::from_redis)?;
        let mut s = self.shared.lock();
        if s.alive_at < sent {
            s.alive_at = sent;
        }
        Ok(())
    }

    /// The cache's counters.
    pub fn stats(&self) -> CacheStats {
        let s = self.shared.lock();
        CacheStats {
            entries: s.entries.len(),
            ..s.stats
        }
    }

    /// The tracking connection, connecting anew (tracking on, cache
    /// emptied) when there is none or it was lost.
    async fn connection(&self) -> Result<MultiplexedConnection> {
        let mut slot = self.inner.connection.lock().await;
        if let (Some(con), true) = (slot.as_ref(), self.shared.lock().connected) {
            return Ok(con.clone());
        }
        let generation = {
            let mut s = self.shared.lock();
            s.generation += 1;
            s.connected = false;
            s.reset();
            s.generation
        };
        let shared = Arc::downgrade(&self.shared);
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(self.inner.heartbeat * 3)
            .set_response_timeout(self.inner.heartbeat * 3)
            .set_push_sender(move |push: PushInfo| match shared.upgrade() {
                Some(shared) => {
                    shared.on_push(generation, push);
                    Ok(())
                }
                None => Err(()),
            });
        let mut con = self
            .inner
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(Error::from_redis)?;
        let sent = Instant::now();
        redis::cmd("CLIENT")
            .arg("TRACKING")
            .arg("ON")
            .query_async::<()>(&mut con)
            .await
            .map_err(Error::from_redis)?;
        {
            let mut s = self.shared.lock();
            if s.generation == generation {
                s.connected = true;
                s.alive_at = sent;
            }
        }
        *slot = Some(con.clone());
        Ok(con)
    }
}

/// Proves every `heartbeat` that the tracking connection still delivers (a
/// PING comes back), so entries are served only while invalidations could
/// arrive; ends when the cache is dropped.
async fn heartbeat_loop(shared: Weak<Shared>, inner: Weak<Inner>) {
    loop {
        let Some(heartbeat) = inner.upgrade().map(|i| i.heartbeat) else {
            return;
        };
        tokio::time::sleep(heartbeat).await;
        let (Some(shared), Some(inner)) = (shared.upgrade(), inner.upgrade()) else {
            return;
        };
        let cache = StockCache { shared, inner };
        let connected = cache.shared.lock().connected;
        if connected {
            // A failure shows as a Disconnection push, or as silence that
            // stops entries from being served.
            let _ = cache.sync().await;
        }
    }
}

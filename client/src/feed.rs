//! The change feed's typed consumer: SKUs' feed streams read through a
//! consumer group, at least once, across a cluster's shards.
//!
//! Delivery is Redis Streams' own (`XREADGROUP`, `XACK`, `XAUTOCLAIM`): an
//! entry read and not acknowledged stays pending on its consumer; the same
//! consumer name reads its own pending entries again after a restart, and
//! any consumer of the group claims what another left pending longer than
//! the claim idle time. So an entry is handed out until someone acks it:
//! at least once, possibly twice (a consumer that dies after its work and
//! before its ack). Order is the stream's within one SKU; entries of
//! different SKUs come in no particular order.

use crate::waiting::Waiter;
use crate::{Backend, Client, Error, Result};
use inventory_core::ledger::stream_name;
use inventory_core::slot::slot;
use redis::{cmd, Cmd, Value};
use std::time::{Duration, Instant};

/// What an entry says happened (its `event` field).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedEventKind {
    /// A hold was made (`qty` units, `deadline`).
    Reserved,
    /// A hold was confirmed (`qty`: the units sold).
    Confirmed,
    /// A hold was cancelled.
    Cancelled,
    /// A cancel came before its reserve: the txid is fenced.
    Fenced,
    /// A hold's deadline passed: its units are back.
    Expired,
    /// A hold's deadline moved (`deadline`: the new one).
    Extended,
    /// A hold's quantity changed (`qty`: the new one).
    Adjusted,
    /// Stock was set or added (`qty`: the stock after).
    Stock,
    /// The seller's rules changed (the feed turned on or off included).
    Rules,
    /// Available units reached 0.
    SoldOut,
    /// Available units left 0 (`qty`: available).
    BackInStock,
    /// Available units fell to or below the `LOW` threshold (`qty`:
    /// available).
    LowStock,
    /// A word this client does not know (a newer module's).
    Other(String),
}

impl FeedEventKind {
    fn parse(word: &str) -> FeedEventKind {
        match word {
            "reserved" => FeedEventKind::Reserved,
            "confirmed" => FeedEventKind::Confirmed,
            "cancelled" => FeedEventKind::Cancelled,
            "fenced" => FeedEventKind::Fenced,
            "expired" => FeedEventKind::Expired,
            "extended" => FeedEventKind::Extended,
            "adjusted" => FeedEventKind::Adjusted,
            "stock" => FeedEventKind::Stock,
            "rules" => FeedEventKind::Rules,
            "soldout" => FeedEventKind::SoldOut,
            "backinstock" => FeedEventKind::BackInStock,
            "lowstock" => FeedEventKind::LowStock,
            other => FeedEventKind::Other(other.to_string()),
        }
    }
}

/// One entry of a SKU's change feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedEvent {
    /// The SKU whose stream it came from.
    pub sku: String,
    /// The stream entry's ID (what [`FeedConsumer::ack`] acknowledges).
    pub id: String,
    pub event: FeedEventKind,
    /// The transaction it concerns (record events).
    pub txid: Option<String>,
    pub qty: i64,
    /// The SKU's version after the change it belongs to (one change may
    /// write several entries under one version).
    pub version: u64,
    pub buyer: Option<String>,
    /// The hold's deadline, unix ms (reserved, extended).
    pub deadline: Option<u64>,
}

/// Where a consumer group created by [`Client::feed_consumer`] starts (an
/// existing group keeps its place).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedStart {
    /// Entries written from now on.
    New,
    /// Every entry the stream still holds.
    Beginning,
}

/// One SKU's stream as a consumer reads it.
struct Source {
    sku: String,
    stream: String,
    /// Read this consumer's own pending entries before new ones: at the
    /// start (a restart of the same consumer name) and after a read whose
    /// reply was lost.
    own_pending: bool,
    /// The last pending entry handed out (each is handed out once per
    /// pass over the pending list).
    pending_from: String,
    /// Where the next XAUTOCLAIM starts.
    claim_from: String,
}

/// A consumer in one group, over the feeds of some SKUs (any shards).
/// Made by [`Client::feed_consumer`].
///
/// ```no_run
/// # async fn demo(c: redis_inventory_client::Client) -> redis_inventory_client::Result<()> {
/// use redis_inventory_client::{FeedEventKind, FeedStart};
/// use std::time::Duration;
/// let mut orders = c.feed_consumer(&["sku:tee", "sku:mug"], "shipping", "svc-1", FeedStart::New).await?;
/// loop {
///     let events = orders.next(Duration::from_secs(5)).await?;
///     for e in &events {
///         if e.event == FeedEventKind::Confirmed { /* ship e.qty of e.sku for e.txid */ }
///     }
///     orders.ack(&events).await?; // after the work: at least once
/// }
/// # }
/// ```
pub struct FeedConsumer {
    client: Client,
    group: String,
    name: String,
    sources: Vec<Source>,
    count: usize,
    claim_idle: Duration,
    last_claim: Option<Instant>,
    poll: Duration,
    trimmed: u64,
    /// The connection blocking reads wait on, kept between them.
    waiter: Option<Waiter>,
}

impl Client {
    /// A consumer named `consumer` in group `group` over the change feeds
    /// of `skus` (turned on with `SaleRules::feed`). Creates the group on
    /// each stream where it does not exist yet, starting at `start` (and
    /// the stream, empty, where it does not exist yet). A consumer that
    /// restarts under the same name first gets what it had read and not
    /// acknowledged.
    pub async fn feed_consumer(
        &self,
        skus: &[&str],
        group: &str,
        consumer: &str,
        start: FeedStart,
    ) -> Result<FeedConsumer> {
        let mut sources = Vec::with_capacity(skus.len());
        for sku in skus {
            let stream = String::from_utf8_lossy(&stream_name(sku.as_bytes())).into_owned();
            let mut c = cmd("XGROUP");
            c.arg("CREATE")
                .arg(&stream)
                .arg(group)
                .arg(match start {
                    FeedStart::New => "$",
                    FeedStart::Beginning => "0",
                })
                .arg("MKSTREAM");
            match self.send_idempotent(sku.as_bytes(), &c).await {
                Ok(_) => {}
                Err(Error::Server(e)) if e.code() == "BUSYGROUP" => {}
                Err(e) => return Err(e),
            }
            sources.push(Source {
                sku: sku.to_string(),
                stream,
                own_pending: true,
                pending_from: "0".to_string(),
                claim_from: "0-0".to_string(),
            });
        }
        Ok(FeedConsumer {
            client: self.clone(),
            group: group.to_string(),
            name: consumer.to_string(),
            sources,
            count: 100,
            claim_idle: Duration::from_secs(30),
            last_claim: None,
            poll: Duration::from_millis(50),
            trimmed: 0,
            waiter: None,
        })
    }
}

impl FeedConsumer {
    /// Most entries one read takes from one stream (default 100).
    pub fn with_count(mut self, count: usize) -> FeedConsumer {
        self.count = count.max(1);
        self
    }

    /// How long an entry stays pending on another consumer before this one
    /// claims it (default 30 s): longer than any consumer takes to handle
    /// and ack a batch, or a slow consumer's entries are handled twice.
    pub fn with_claim_idle(mut self, idle: Duration) -> FeedConsumer {
        self.claim_idle = idle;
        self
    }

    /// Entries that were pending when the stream's trimming dropped them
    /// (`inventory.feed-maxlen`): lost to this group, acknowledged by
    /// `next` so they leave the pending list.
    pub fn trimmed(&self) -> u64 {
        self.trimmed
    }

    /// The next entries, waiting up to `wait` for some: first this
    /// consumer's own unacknowledged ones (after a restart), then those a
    /// dead consumer left pending past the claim idle time, then new ones.
    /// Empty when `wait` passed with nothing. Handle them, then [`ack`]
    /// them; an entry not acked comes back.
    ///
    /// Waiting blocks on a connection of its own (`XREADGROUP ... BLOCK`)
    /// on a standalone server, and on a cluster when every SKU is in one
    /// hash slot; the consumer keeps that connection for its next waits
    /// (a new one after an error, or for a wait longer than it was made
    /// for);
    /// across a cluster's slots it reads every stream again each 50 ms.
    ///
    /// [`ack`]: FeedConsumer::ack
    pub async fn next(&mut self, wait: Duration) -> Result<Vec<FeedEvent>> {
        let until = Instant::now() + wait;
        loop {
            let mut out = self.own_pending().await?;
            if out.is_empty() {
                out = self.claim().await?;
            }
            if out.is_empty() {
                out = self.read_new().await?;
            }
            let left = until.saturating_duration_since(Instant::now());
            if !out.is_empty() || left.is_zero() {
                return Ok(out);
            }
            if self.one_slot() {
                return self.block(left, wait).await;
            }
            tokio::time::sleep(self.poll.min(left)).await;
        }
    }

    /// Acknowledges `events` (`XACK`, per stream): they will not be handed
    /// out again.
    pub async fn ack(&self, events: &[FeedEvent]) -> Result<()> {
        for s in &self.sources {
            let ids: Vec<&str> = events
                .iter()
                .filter(|e| e.sku == s.sku)
                .map(|e| e.id.as_str())
                .collect();
            self.ack_ids(s, &ids).await?;
        }
        Ok(())
    }

    async fn ack_ids(&self, s: &Source, ids: &[&str]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut c = cmd("XACK");
        c.arg(&s.stream).arg(&self.group).arg(ids);
        self.client.send_idempotent(s.sku.as_bytes(), &c).await?;
        Ok(())
    }

    fn read_cmd(&self, streams: &[&Source], id: &str, block: Option<Duration>) -> Cmd {
        let mut c = cmd("XREADGROUP");
        c.arg("GROUP")
            .arg(&self.group)
            .arg(&self.name)
            .arg("COUNT")
            .arg(self.count);
        if let Some(b) = block {
            c.arg("BLOCK")
                .arg(u64::try_from(b.as_millis()).unwrap_or(u64::MAX).max(1));
        }
        c.arg("STREAMS");
        for s in streams {
            c.arg(&s.stream);
        }
        for _ in streams {
            c.arg(id);
        }
        c
    }

    /// This consumer's own pending entries, from the streams that may have
    /// some; a stream that has none left is read for new entries from then
    /// on. Pending entries trimmed away are acked and counted.
    async fn own_pending(&mut self) -> Result<Vec<FeedEvent>> {
        let mut out = Vec::new();
        for i in 0..self.sources.len() {
            if !self.sources[i].own_pending {
                continue;
            }
            loop {
                let s = &self.sources[i];
                let c = self.read_cmd(&[s], &s.pending_from, None);
                let v = self.client.send_idempotent(s.sku.as_bytes(), &c).await?;
                let (events, gone) = parse_read(&self.sources, &v)?;
                let last = [events.last().map(|e| &e.id), gone.last()]
                    .into_iter()
                    .flatten()
                    .max_by(|a, b| stream_order(a).cmp(&stream_order(b)))
                    .cloned();
                let Some(last) = last else {
                    // The pass is over: new entries from now on.
                    let s = &mut self.sources[i];
                    s.own_pending = false;
                    s.pending_from = "0".to_string();
                    break;
                };
                let gone: Vec<&str> = gone.iter().map(String::as_str).collect();
                self.ack_ids(&self.sources[i], &gone).await?;
                self.trimmed += gone.len() as u64;
                self.sources[i].pending_from = last;
                if !events.is_empty() {
                    out.extend(events);
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Entries other consumers left pending past the claim idle time, taken
    /// over (`XAUTOCLAIM`), at most once per half the idle time.
    async fn claim(&mut self) -> Result<Vec<FeedEvent>> {
        if self
            .last_claim
            .is_some_and(|t| t.elapsed() < self.claim_idle / 2)
        {
            return Ok(Vec::new());
        }
        self.last_claim = Some(Instant::now());
        let idle = u64::try_from(self.claim_idle.as_millis()).unwrap_or(u64::MAX);
        let mut out = Vec::new();
        for i in 0..self.sources.len() {
            let s = &self.sources[i];
            let mut c = cmd("XAUTOCLAIM");
            c.arg(&s.stream)
                .arg(&self.group)
                .arg(&self.name)
                .arg(idle)
                .arg(&s.claim_from)
                .arg("COUNT")
                .arg(self.count);
            let v = self.client.send_idempotent(s.sku.as_bytes(), &c).await?;
            let (next, entries) = parse_claim(&v)?;
            for (id, fields) in entries {
                match fields {
                    Some(f) => out.push(event(&s.sku, id, &f)?),
                    None => self.trimmed += 1,
                }
            }
            self.sources[i].claim_from = next;
        }
        Ok(out)
    }

    /// New entries from every stream, without waiting. A read whose reply
    /// is lost may have handed entries out: they are read again as this
    /// consumer's own pending ones.
    async fn read_new(&mut self) -> Result<Vec<FeedEvent>> {
        let mut out = Vec::new();
        for i in 0..self.sources.len() {
            let s = &self.sources[i];
            let c = self.read_cmd(&[s], ">", None);
            match self.client.send(s.sku.as_bytes(), &c).await {
                Ok(v) => out.extend(parse_read(&self.sources, &v)?.0),
                Err(e) => {
                    self.sources[i].own_pending = true;
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Whether one XREADGROUP can wait on every stream: on a standalone
    /// server always, on a cluster when they share a slot.
    fn one_slot(&self) -> bool {
        if matches!(self.client.backend, Backend::Standalone(..)) {
            return true;
        }
        let mut slots = self.sources.iter().map(|s| slot(s.sku.as_bytes()));
        let first = slots.next();
        slots.all(|s| Some(s) == first)
    }

    /// Waits up to `wait` for new entries of every stream (one server or
    /// one slot), on a connection of its own; `asked` is the wait the
    /// caller gave `next` (a new connection is made for that, so the next
    /// call's wait, asked alike, fits it).
    async fn block(&mut self, wait: Duration, asked: Duration) -> Result<Vec<FeedEvent>> {
        let all: Vec<&Source> = self.sources.iter().collect();
        if all.is_empty() {
            tokio::time::sleep(wait).await;
            return Ok(Vec::new());
        }
        let c = self.read_cmd(&all, ">", Some(wait));
        // The kept connection, or a new one when there is none (the last
        // wait failed) or this wait is longer than it was opened for.
        let mut waiter = match self.waiter.take() {
            Some(w) if w.fits(wait) => w,
            _ => self.client.waiter(asked.max(wait)).await?,
        };
        match waiter.send(&c).await {
            Ok(v) => {
                self.waiter = Some(waiter);
                Ok(parse_read(&self.sources, &v)?.0)
            }
            Err(e) => {
                for s in &mut self.sources {
                    s.own_pending = true;
                }
                Err(e)
            }
        }
    }
}

/// A stream entry ID as numbers, for ordering (`ms-seq`).
fn stream_order(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// An XREADGROUP reply's entries (RESP2 or RESP3), typed; and the IDs of
/// entries that are pending but gone from the stream (trimmed).
fn parse_read(sources: &[Source], v: &Value) -> Result<(Vec<FeedEvent>, Vec<String>)> {
    let per_stream: Vec<(&Value, &Value)> = match v {
        Value::Nil => Vec::new(),
        Value::Array(items) => items
            .iter()
            .map(|kv| match kv {
                Value::Array(pair) if pair.len() == 2 => Ok((&pair[0], &pair[1])),
                other => Err(protocol("a stream in XREADGROUP's reply", other)),
            })
            .collect::<Result<_>>()?,
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
        other => return Err(protocol("XREADGROUP's reply", other)),
    };
    let (mut out, mut gone) = (Vec::new(), Vec::new());
    for (name, entries) in per_stream {
        let name = text(name)?;
        let sku = sources
            .iter()
            .find(|s| s.stream == name)
            .map(|s| s.sku.clone())
            .ok_or_else(|| Error::Protocol(format!("a reply from stream {name} not asked for")))?;
        for (id, fields) in parse_entries(entries)? {
            match fields {
                Some(f) => out.push(event(&sku, id, &f)?),
                None => gone.push(id),
            }
        }
    }
    Ok((out, gone))
}

/// An XAUTOCLAIM reply: where the next claim starts, and the entries.
fn parse_claim(v: &Value) -> Result<(String, Entries)> {
    match v {
        Value::Array(items) if items.len() >= 2 => {
            Ok((text(&items[0])?, parse_entries(&items[1])?))
        }
        other => Err(protocol("XAUTOCLAIM's reply", other)),
    }
}

/// Entries as `(id, fields)`; `None` fields: an entry gone from the stream.
type Entries = Vec<(String, Option<Vec<(String, String)>>)>;

fn parse_entries(v: &Value) -> Result<Entries> {
    let Value::Array(items) = v else {
        return Err(protocol("a list of stream entries", v));
    };
    items
        .iter()
        .map(|e| match e {
            Value::Array(pair) if pair.len() == 2 => {
                let id = text(&pair[0])?;
                let fields = match &pair[1] {
                    Value::Nil => None,
                    Value::Array(kv) => Some(
                        kv.chunks_exact(2)
                            .map(|p| Ok((text(&p[0])?, text(&p[1])?)))
                            .collect::<Result<Vec<_>>>()?,
                    ),
                    Value::Map(kv) => Some(
                        kv.iter()
                            .map(|(k, v)| Ok((text(k)?, text(v)?)))
                            .collect::<Result<Vec<_>>>()?,
                    ),
                    other => return Err(protocol("an entry's fields", other)),
                };
                Ok((id, fields))
            }
            other => Err(protocol("a stream entry", other)),
        })
        .collect()
}

fn event(sku: &str, id: String, fields: &[(String, String)]) -> Result<FeedEvent> {
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let number = |name: &str| -> Result<Option<i64>> {
        get(name)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| Error::Protocol(format!("feed entry {id}: {name} is {v:?}")))
            })
            .transpose()
    };
    let Some(kind) = get("event") else {
        return Err(Error::Protocol(format!("feed entry {id} has no event")));
    };
    Ok(FeedEvent {
        sku: sku.to_string(),
        event: FeedEventKind::parse(kind),
        txid: get("txid").map(str::to_string),
        qty: number("qty")?.unwrap_or(0),
        version: number("version")?.unwrap_or(0).max(0) as u64,
        buyer: get("buyer").map(str::to_string),
        deadline: number("deadline")?.map(|d| d.max(0) as u64),
        id,
    })
}

fn text(v: &Value) -> Result<String> {
    match v {
        Value::BulkString(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::VerbatimString { text, .. } => Ok(text.clone()),
        other => Err(protocol("a string", other)),
    }
}

fn protocol(what: &str, got: &Value) -> Error {
    Error::Protocol(format!("expected {what}, got {got:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn entries_parse_in_both_protocols_and_gone_ones_are_told_apart() {
        let sources = [Source {
            sku: "sku".into(),
            stream: "inv:feed:{1}:sku".into(),
            own_pending: false,
            pending_from: "0".into(),
            claim_from: "0-0".into(),
        }];
        let fields = Value::Array(
            [
                "event", "reserved", "key", "sku", "txid", "o1", "qty", "2", "version", "3",
            ]
            .into_iter()
            .map(bulk)
            .collect(),
        );
        let entries = Value::Array(vec![
            Value::Array(vec![bulk("5-0"), fields.clone()]),
            Value::Array(vec![bulk("5-1"), Value::Nil]),
        ]);
        let resp2 = Value::Array(vec![Value::Array(vec![
            bulk("inv:feed:{1}:sku"),
            entries.clone(),
        ])]);
        let resp3 = Value::Map(vec![(bulk("inv:feed:{1}:sku"), entries)]);
        for v in [resp2, resp3] {
            let (events, gone) = parse_read(&sources, &v).unwrap();
            assert_eq!(gone, ["5-1"]);
            assert_eq!(
                events,
                [FeedEvent {
                    sku: "sku".into(),
                    id: "5-0".into(),
                    event: FeedEventKind::Reserved,
                    txid: Some("o1".into()),
                    qty: 2,
                    version: 3,
                    buyer: None,
                    deadline: None,
                }]
            );
        }
        assert!(parse_read(&sources, &Value::Nil).unwrap().0.is_empty());
        let other = Value::Array(vec![Value::Array(vec![bulk("x"), Value::Array(vec![])])]);
        assert!(parse_read(&sources, &other).is_err());
    }
}

//! The mixed load every fault scenario runs: workers on their own
//! connections send reserves (TTLs from 300 ms to 10 s, some by PXAT),
//! retries, confirms, cancels (some before their reserve), extends,
//! multi-key orders and restocks, and log each request with its outcome in
//! the shared ledger. They follow the server when a fault moves it (a
//! restart on a new port, a promoted replica) and can be paused for a check.

use crate::ledger::{now_ms, Ledger, Op, Outcome, State};
use redis::{Connection, ConnectionLike, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use testkit::hostile::Rng;

/// The load's SKUs: few, so workers collide on them.
pub const KEYS: usize = 6;
const INITIAL_STOCK: i64 = 300;

/// The load's keys share one hash tag, `h12860`, which hashes to slot 0:
/// one slot move carries every key, and as the lowest slot of whichever
/// master owns it, it is the one `redis-cli --cluster reshard
/// --cluster-slots 1` moves.
pub fn key(i: usize) -> String {
    format!("sku:{{h12860}}{i}")
}

/// The slot every load key is in.
pub const SLOT: u16 = 0;

/// Where the load sends its requests.
#[derive(Clone)]
pub enum Target {
    /// One server, followed when a fault moves it.
    Server(String),
    /// A cluster, through a client that follows MOVED and ASK. With
    /// `retry: false` a request whose connection broke is not sent again
    /// (the load counts it unanswered): a resent INV.ADD could apply twice.
    Cluster { urls: Vec<String>, retry: bool },
    /// A cluster's nodes: the load talks straight to the master that owns
    /// `SLOT` (asked of any live node), so that the `WAIT` after a write
    /// reaches the node that took the write. A stale owner answers MOVED (a
    /// refusal) and the owner is asked again.
    SlotOwner(Vec<String>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// A reply is a promise.
    Reply,
    /// A write is a promise once `WAIT 1` confirms a replica has it.
    Wait,
    /// No reply is a promise (replication without WAIT): the checker
    /// counts what was acknowledged and lost.
    Unconfirmed,
}

struct Shared {
    target: Mutex<Target>,
    ledger: Mutex<Ledger>,
    stop: AtomicBool,
    pause: AtomicBool,
    paused: AtomicUsize,
    durability: Durability,
}

pub struct Load {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Load {
    /// Stocks the keys on `target` (a promise in every view: the setup
    /// waits for `replicas` to have it) and starts `workers` threads.
    pub fn start(
        target: Target,
        workers: usize,
        durability: Durability,
        replicas: i64,
        seed: u64,
    ) -> Load {
        let mut ledger = Ledger::default();
        // Straight to the slot's master in a cluster, so that WAIT asks the
        // node that took the setup.
        let setup = match &target {
            Target::Cluster { urls, .. } => Target::SlotOwner(urls.clone()),
            other => other.clone(),
        };
        let mut c = connect_to(&setup).expect("connect for the setup");
        for i in 0..KEYS {
            let _: () = redis::cmd("INV.SET")
                .arg(key(i))
                .arg(INITIAL_STOCK)
                .query(&mut *c)
                .expect("INV.SET");
            ledger.add(&key(i), INITIAL_STOCK, Outcome::Acked { durable: true });
        }
        if replicas > 0 {
            let n: i64 = redis::cmd("WAIT")
                .arg(replicas)
                .arg(10_000)
                .query(&mut *c)
                .expect("WAIT");
            assert_eq!(n, replicas, "the replicas have the setup");
        }
        let shared = Arc::new(Shared {
            target: Mutex::new(target),
            ledger: Mutex::new(ledger),
            stop: AtomicBool::new(false),
            pause: AtomicBool::new(false),
            paused: AtomicUsize::new(0),
            durability,
        });
        let workers = (0..workers)
            .map(|w| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || Worker::new(w, seed, shared).run())
            })
            .collect();
        Load { shared, workers }
    }

    /// Points the workers at another server (a restart, a promotion).
    pub fn follow(&self, url: &str) {
        *self.shared.target.lock().unwrap() = Target::Server(url.to_string());
    }

    /// Stops the workers between requests and waits until all are idle.
    pub fn pause(&self) {
        self.shared.pause.store(true, Ordering::SeqCst);
        while self.shared.paused.load(Ordering::SeqCst) < self.workers.len() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn resume(&self) {
        self.shared.pause.store(false, Ordering::SeqCst);
        while self.shared.paused.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.shared.ledger.lock().unwrap()
    }

    /// Stops the workers and returns the ledger.
    pub fn finish(self) -> Ledger {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.pause.store(false, Ordering::SeqCst);
        for w in self.workers {
            let _ = w.join();
        }
        let shared = Arc::try_unwrap(self.shared).ok().expect("workers joined");
        shared.ledger.into_inner().unwrap()
    }
}

type Conn = Box<dyn ConnectionLike + Send>;

fn connect_to(target: &Target) -> redis::RedisResult<Conn> {
    Ok(match target {
        Target::Server(url) => Box::new(connect(url)?),
        Target::Cluster { urls, retry } => {
            let mut b = redis::cluster::ClusterClient::builder(urls.clone())
                .response_timeout(Duration::from_secs(3));
            if !retry {
                b = b.retries(0);
            }
            Box::new(b.build()?.get_connection()?)
        }
        Target::SlotOwner(urls) => Box::new(connect(&slot_owner(urls)?)?),
    })
}

/// The URL of the master that owns `SLOT`, as the first node of `urls` that
/// answers sees it.
fn slot_owner(urls: &[String]) -> redis::RedisResult<String> {
    let mut last = None;
    for url in urls {
        match connect(url).and_then(|mut c| testkit::cluster::slot_master(&mut c, SLOT)) {
            Ok(Some((host, port))) => {
                let host = if host.is_empty() { "127.0.0.1" } else { &host };
                return Ok(format!("redis://{host}:{port}/"));
            }
            Ok(None) => {}
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| (redis::ErrorKind::ClusterDown, "slot not served").into()))
}

pub fn connect(url: &str) -> redis::RedisResult<Connection> {
    let c = redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(1))?;
    c.set_read_timeout(Some(Duration::from_secs(3)))?;
    c.set_write_timeout(Some(Duration::from_secs(3)))?;
    Ok(c)
}

/// A txid this worker created and what it was for.
struct Mine {
    txid: String,
    keys: Vec<(String, i64)>,
    ttl: i64,
    pxat: Option<i64>,
    /// When the first reserve was sent: its deadline is no earlier than this + TTL.
    first_send: i64,
    /// The buyer the order reserves for (`BUYER`), on about half of them.
    buyer: Option<String>,
}

struct Worker {
    id: usize,
    rng: Rng,
    shared: Arc<Shared>,
    conn: Option<Conn>,
    next: u64,
    mine: Vec<Mine>,
    /// Txids cancelled before any reserve, to reserve later (the fence must refuse).
    fenced: Vec<(String, String)>,
}

impl Worker {
    fn new(id: usize, seed: u64, shared: Arc<Shared>) -> Worker {
        Worker {
            id,
            rng: Rng::new(seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9)),
            shared,
            conn: None,
            next: 0,
            mine: Vec::new(),
            fenced: Vec::new(),
        }
    }

    fn run(mut self) {
        while !self.shared.stop.load(Ordering::SeqCst) {
            if self.shared.pause.load(Ordering::SeqCst) {
                self.shared.paused.fetch_add(1, Ordering::SeqCst);
                while self.shared.pause.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(2));
                }
                self.shared.paused.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            if self.conn.is_none() {
                let target = self.shared.target.lock().unwrap().clone();
                match connect_to(&target) {
                    Ok(c) => self.conn = Some(c),
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                }
            }
            self.step();
        }
    }

    fn txid(&mut self) -> String {
        self.next += 1;
        format!("w{}-{}", self.id, self.next)
    }

    /// A buyer for about half of the new orders, from a small pool so
    /// buyers hold several orders at once (no limit is set: the load's
    /// promises stay those of plain reserves, and INV.AUDIT checks every
    /// buyer's held units against its open holds).
    fn buyer(&mut self) -> Option<String> {
        (self.rng.below(2) == 0).then(|| format!("buyer-{}", self.rng.below(50)))
    }

    fn pick_key(&mut self) -> String {
        key(self.rng.below(KEYS))
    }

    /// One request of the mix.
    fn step(&mut self) {
        let roll = self.rng.below(100);
        let have = !self.mine.is_empty();
        match roll {
            0..=34 => self.reserve_new(),
            35..=44 if have => self.retry(),
            45..=62 if have => self.finish_one(true),
            63..=71 if have => self.finish_one(false),
            72..=75 => self.cancel_first(),
            76..=80 if have => self.extend(),
            81..=88 => self.order(),
            89..=94 => self.restock(),
            95..=99 if !self.fenced.is_empty() => self.reserve_fenced(),
            _ => self.reserve_new(),
        }
        // Keep the worker's own list short: old txids are left to expiry.
        if self.mine.len() > 64 {
            self.mine.remove(0);
        }
    }

    /// Sends `cmd`: the reply with its outcome, or the outcome alone when
    /// there is no reply. With `Durability::Wait` a write's reply is durable
    /// only once WAIT says a replica has it.
    fn send(&mut self, cmd: &redis::Cmd, write: bool) -> (Option<Value>, Outcome) {
        let Some(c) = self.conn.as_mut() else {
            return (None, Outcome::Unanswered);
        };
        match cmd.query::<Value>(&mut **c) {
            Ok(v) => {
                let mut durable = self.shared.durability != Durability::Unconfirmed;
                if write && self.shared.durability == Durability::Wait {
                    let n: redis::RedisResult<i64> =
                        redis::cmd("WAIT").arg(1).arg(200).query(&mut **c);
                    durable = matches!(n, Ok(n) if n >= 1);
                    if n.is_err() {
                        self.conn = None;
                    }
                }
                (Some(v), Outcome::Acked { durable })
            }
            Err(e) if e.code().is_some() => {
                // Talking to a node that no longer takes the slot's writes:
                // ask where they go now.
                if matches!(e.code(), Some("MOVED" | "READONLY")) {
                    self.conn = None;
                }
                (None, Outcome::Refused)
            }
            Err(_) => {
                self.conn = None;
                (None, Outcome::Unanswered)
            }
        }
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.shared.ledger.lock().unwrap()
    }

    fn reserve_new(&mut self) {
        let (txid, key) = (self.txid(), self.pick_key());
        let qty = 1 + self.rng.below(3) as i64;
        let ttl = 300 + self.rng.below(9_700) as i64;
        let pxat = (self.rng.below(5) == 0).then(|| now_ms() + ttl);
        let buyer = self.buyer();
        let mine = Mine {
            txid,
            keys: vec![(key, qty)],
            ttl,
            pxat,
            first_send: now_ms(),
            buyer,
        };
        if self.reserve(&mine) != Some(State::NoStock) {
            self.mine.push(mine);
        }
    }

    /// INV.RESERVE (one key) or INV.MRESERVE (several) for `mine`; the
    /// state answered, if any.
    fn reserve(&mut self, mine: &Mine) -> Option<State> {
        let floor = mine.pxat.unwrap_or(mine.first_send + mine.ttl);
        if let [(key, qty)] = mine.keys.as_slice() {
            let mut cmd = redis::cmd("INV.RESERVE");
            cmd.arg(key).arg(&mine.txid).arg(qty);
            match mine.pxat {
                Some(at) => cmd.arg("PXAT").arg(at),
                None => cmd.arg("TTL").arg(mine.ttl),
            };
            if let Some(b) = &mine.buyer {
                cmd.arg("BUYER").arg(b);
            }
            let (reply, outcome) = self.send(&cmd, true);
            let state = reply.as_ref().and_then(first_state);
            let op = Op::Reserve {
                qty: *qty,
                deadline_floor: floor,
            };
            self.log().tx(&[(key, state)], &mine.txid, op, outcome);
            return state;
        }
        let mut cmd = redis::cmd("INV.MRESERVE");
        cmd.arg(&mine.txid);
        if let Some(b) = &mine.buyer {
            cmd.arg("BUYER").arg(b);
        }
        cmd.arg(mine.ttl);
        for (key, qty) in &mine.keys {
            cmd.arg(key).arg(qty);
        }
        let (reply, outcome) = self.send(&cmd, true);
        let state = reply.as_ref().and_then(first_state);
        // Only a RESERVED order holds its lines; otherwise nothing applied.
        let item = (state == Some(State::Reserved)).then_some(State::Reserved);
        let mut log = self.log();
        for (key, qty) in &mine.keys {
            let op = Op::Reserve {
                qty: *qty,
                deadline_floor: floor,
            };
            log.tx(&[(key, item)], &mine.txid, op, outcome);
        }
        state
    }

    fn retry(&mut self) {
        let i = self.rng.below(self.mine.len());
        let mine = self.mine.swap_remove(i);
        self.reserve(&mine);
        self.mine.push(mine);
    }

    /// Confirms (or cancels) one of this worker's txids.
    fn finish_one(&mut self, confirm: bool) {
        let i = self.rng.below(self.mine.len());
        let mine = self.mine.swap_remove(i);
        if let [(key, qty)] = mine.keys.as_slice() {
            // A third of the confirms of more than one unit sell one fewer.
            let part = (confirm && *qty > 1 && self.rng.below(3) == 0).then_some(qty - 1);
            let op = if confirm {
                Op::Confirm(part)
            } else {
                Op::Cancel
            };
            let mut cmd = redis::cmd(if confirm { "INV.CONFIRM" } else { "INV.CANCEL" });
            cmd.arg(key).arg(&mine.txid);
            if let Some(n) = part {
                cmd.arg("QTY").arg(n);
            }
            let (reply, outcome) = self.send(&cmd, true);
            let state = reply.as_ref().and_then(first_state);
            self.log().tx(&[(key, state)], &mine.txid, op, outcome);
            return;
        }
        let op = if confirm {
            Op::Confirm(None)
        } else {
            Op::Cancel
        };
        let mut cmd = redis::cmd(if confirm {
            "INV.MCONFIRM"
        } else {
            "INV.MCANCEL"
        });
        cmd.arg(&mine.txid);
        for (key, _) in &mine.keys {
            cmd.arg(key);
        }
        let (reply, outcome) = self.send(&cmd, true);
        let states = reply.as_ref().map(item_states).unwrap_or_default();
        let whole = reply.as_ref().and_then(first_state);
        let mut log = self.log();
        for (i, (key, _)) in mine.keys.iter().enumerate() {
            // An MCONFIRM that did not confirm changed nothing; an
            // MCANCEL's items are what each key now holds.
            let state = match (confirm, whole) {
                (true, Some(State::Confirmed)) => Some(State::Confirmed),
                (true, _) => None,
                (false, _) => states.get(i).copied().flatten(),
            };
            log.tx(&[(key, state)], &mine.txid, op, outcome);
        }
    }

    /// A cancel that arrives before its reserve: it must leave a fence.
    fn cancel_first(&mut self) {
        let (txid, key) = (self.txid(), self.pick_key());
        let mut cmd = redis::cmd("INV.CANCEL");
        cmd.arg(&key).arg(&txid);
        let (reply, outcome) = self.send(&cmd, true);
        let state = reply.as_ref().and_then(first_state);
        self.log().tx(&[(&key, state)], &txid, Op::Cancel, outcome);
        self.fenced.push((key, txid));
    }

    /// The late reserve of a fenced txid.
    fn reserve_fenced(&mut self) {
        let (key, txid) = self.fenced.swap_remove(self.rng.below(self.fenced.len()));
        let mine = Mine {
            txid,
            keys: vec![(key, 1)],
            ttl: 5_000,
            pxat: None,
            first_send: now_ms(),
            buyer: None,
        };
        self.reserve(&mine);
    }

    /// Extends a single-key reservation to 10 s from now: past every
    /// deadline the load sets, so deadlines only move forward.
    fn extend(&mut self) {
        let i = self.rng.below(self.mine.len());
        let [(key, _)] = self.mine[i].keys.as_slice() else {
            return;
        };
        let (key, txid) = (key.clone(), self.mine[i].txid.clone());
        let floor = now_ms() + 10_000;
        let mut cmd = redis::cmd("INV.EXTEND");
        cmd.arg(&key).arg(&txid).arg(10_000);
        let (reply, outcome) = self.send(&cmd, true);
        let state = reply.as_ref().and_then(first_state);
        let op = Op::Extend {
            deadline_floor: floor,
        };
        self.log().tx(&[(&key, state)], &txid, op, outcome);
    }

    /// A cart over two or three SKUs.
    fn order(&mut self) {
        let txid = self.txid();
        let first = self.rng.below(KEYS);
        let n = 2 + self.rng.below(2);
        let keys = (0..n)
            .map(|i| (key((first + i) % KEYS), 1 + self.rng.below(2) as i64))
            .collect();
        let buyer = self.buyer();
        let mine = Mine {
            txid,
            keys,
            ttl: 300 + self.rng.below(9_700) as i64,
            pxat: None,
            first_send: now_ms(),
            buyer,
        };
        if self.reserve(&mine) != Some(State::NoStock) {
            self.mine.push(mine);
        }
    }

    fn restock(&mut self) {
        let key = self.pick_key();
        let units = 5 + self.rng.below(16) as i64;
        let mut cmd = redis::cmd("INV.ADD");
        cmd.arg(&key).arg(units);
        let (_, outcome) = self.send(&cmd, true);
        self.log().add(&key, units, outcome);
    }
}

/// The state at the head of a `[state, ...]` reply.
fn first_state(v: &Value) -> Option<State> {
    let Value::Array(items) = v else { return None };
    match items.first()? {
        Value::BulkString(b) => State::parse(std::str::from_utf8(b).ok()?),
        Value::SimpleString(s) => State::parse(s),
        _ => None,
    }
}

/// Each item's state in a multi-key reply `[state, [[key, state, ...], ...]]`.
fn item_states(v: &Value) -> Vec<Option<State>> {
    let Value::Array(top) = v else { return vec![] };
    let Some(Value::Array(items)) = top.get(1) else {
        return vec![];
    };
    items
        .iter()
        .map(|item| match item {
            Value::Array(fields) => match fields.get(1)? {
                Value::BulkString(b) => State::parse(std::str::from_utf8(b).ok()?),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

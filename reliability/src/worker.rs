//! One worker of the load (load.rs): on its own connection, it sends
//! reserves, retries, confirms, cancels (some before their reserve),
//! extends, multi-key orders and restocks, and logs each request with its
//! outcome in the shared ledger.

use crate::ledger::{now_ms, Ledger, Op, Outcome, State};
use crate::load::{connect_to, key, Conn, Durability, Shared, KEYS};
use redis::Value;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use testkit::hostile::Rng;

/// A txid this worker created and what it was for.
struct Order {
    txid: String,
    keys: Vec<(String, i64)>,
    ttl: i64,
    pxat: Option<i64>,
    /// When the first reserve was sent: its deadline is no earlier than this + TTL.
    first_send: i64,
    /// The buyer the order reserves for (`BUYER`), on about half of them.
    buyer: Option<String>,
}

pub struct Worker {
    id: usize,
    rng: Rng,
    shared: Arc<Shared>,
    conn: Option<Conn>,
    next: u64,
    orders: Vec<Order>,
    /// Txids cancelled before any reserve, to reserve later (the fence must refuse).
    fenced: Vec<(String, String)>,
}

impl Worker {
    pub fn new(id: usize, seed: u64, shared: Arc<Shared>) -> Worker {
        Worker {
            id,
            rng: Rng::new(seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9)),
            shared,
            conn: None,
            next: 0,
            orders: Vec::new(),
            fenced: Vec::new(),
        }
    }

    pub fn run(mut self) {
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
        let have = !self.orders.is_empty();
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
        if self.orders.len() > 64 {
            self.orders.remove(0);
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
        let order = Order {
            txid,
            keys: vec![(key, qty)],
            ttl,
            pxat,
            first_send: now_ms(),
            buyer,
        };
        if self.reserve(&order) != Some(State::NoStock) {
            self.orders.push(order);
        }
    }

    /// INV.RESERVE (one key) or INV.MRESERVE (several) for `order`; the
    /// state answered, if any.
    fn reserve(&mut self, order: &Order) -> Option<State> {
        let floor = order.pxat.unwrap_or(order.first_send + order.ttl);
        if let [(key, qty)] = order.keys.as_slice() {
            let mut cmd = redis::cmd("INV.RESERVE");
            cmd.arg(key).arg(&order.txid).arg(qty);
            match order.pxat {
                Some(at) => cmd.arg("PXAT").arg(at),
                None => cmd.arg("TTL").arg(order.ttl),
            };
            if let Some(b) = &order.buyer {
                cmd.arg("BUYER").arg(b);
            }
            let (reply, outcome) = self.send(&cmd, true);
            let state = reply.as_ref().and_then(first_state);
            let op = Op::Reserve {
                qty: *qty,
                deadline_floor: floor,
            };
            self.log().tx(&[(key, state)], &order.txid, op, outcome);
            return state;
        }
        let mut cmd = redis::cmd("INV.MRESERVE");
        cmd.arg(&order.txid);
        if let Some(b) = &order.buyer {
            cmd.arg("BUYER").arg(b);
        }
        cmd.arg(order.ttl);
        for (key, qty) in &order.keys {
            cmd.arg(key).arg(qty);
        }
        let (reply, outcome) = self.send(&cmd, true);
        let state = reply.as_ref().and_then(first_state);
        // Only a RESERVED order holds its lines; otherwise nothing applied.
        let item = (state == Some(State::Reserved)).then_some(State::Reserved);
        let mut log = self.log();
        for (key, qty) in &order.keys {
            let op = Op::Reserve {
                qty: *qty,
                deadline_floor: floor,
            };
            log.tx(&[(key, item)], &order.txid, op, outcome);
        }
        state
    }

    fn retry(&mut self) {
        let i = self.rng.below(self.orders.len());
        let order = self.orders.swap_remove(i);
        self.reserve(&order);
        self.orders.push(order);
    }

    /// Confirms (or cancels) one of this worker's txids.
    fn finish_one(&mut self, confirm: bool) {
        let i = self.rng.below(self.orders.len());
        let order = self.orders.swap_remove(i);
        if let [(key, qty)] = order.keys.as_slice() {
            // A third of the confirms of more than one unit sell one fewer.
            let part = (confirm && *qty > 1 && self.rng.below(3) == 0).then_some(qty - 1);
            let op = if confirm {
                Op::Confirm(part)
            } else {
                Op::Cancel
            };
            let mut cmd = redis::cmd(if confirm { "INV.CONFIRM" } else { "INV.CANCEL" });
            cmd.arg(key).arg(&order.txid);
            if let Some(n) = part {
                cmd.arg("QTY").arg(n);
            }
            let (reply, outcome) = self.send(&cmd, true);
            let state = reply.as_ref().and_then(first_state);
            self.log().tx(&[(key, state)], &order.txid, op, outcome);
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
        cmd.arg(&order.txid);
        for (key, _) in &order.keys {
            cmd.arg(key);
        }
        let (reply, outcome) = self.send(&cmd, true);
        let states = reply.as_ref().map(item_states).unwrap_or_default();
        let whole = reply.as_ref().and_then(first_state);
        let mut log = self.log();
        for (i, (key, _)) in order.keys.iter().enumerate() {
            // An MCONFIRM that did not confirm changed nothing; an
            // MCANCEL's items are what each key now holds.
            let state = match (confirm, whole) {
                (true, Some(State::Confirmed)) => Some(State::Confirmed),
                (true, _) => None,
                (false, _) => states.get(i).copied().flatten(),
            };
            log.tx(&[(key, state)], &order.txid, op, outcome);
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
        let order = Order {
            txid,
            keys: vec![(key, 1)],
            ttl: 5_000,
            pxat: None,
            first_send: now_ms(),
            buyer: None,
        };
        self.reserve(&order);
    }

    /// Extends a single-key reservation to 10 s from now: past every
    /// deadline the load sets, so deadlines only move forward.
    fn extend(&mut self) {
        let i = self.rng.below(self.orders.len());
        let [(key, _)] = self.orders[i].keys.as_slice() else {
            return;
        };
        let (key, txid) = (key.clone(), self.orders[i].txid.clone());
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
        let order = Order {
            txid,
            keys,
            ttl: 300 + self.rng.below(9_700) as i64,
            pxat: None,
            first_send: now_ms(),
            buyer,
        };
        if self.reserve(&order) != Some(State::NoStock) {
            self.orders.push(order);
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

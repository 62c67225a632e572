//! The waiting room's shell: `INV.RESERVE ... BLOCK ms` blocks its client
//! (`RM_BlockClient`, no server timeout) in its key's queue (the core's
//! `WaitQueue`); a change that returns units serves the queue at once, in
//! arrival order, each grant an ordinary reservation and its own change.
//!
//! Who answers a waiter: a grant or a rule's refusal (`serve`), a cancel
//! of its txid (`cancelled`), the end of its wait (`end_waits`: NOSTOCK;
//! `CLIENT UNBLOCK` through the timeout callback), its key going away or
//! changing type (`check_rooms`: NOSTOCK, WRONGTYPE, or TRYAGAIN in a
//! cluster). A closed connection drops its place (the disconnect
//! callback); the server answers every waiter of a master turned replica.
//! Callbacks run on the main thread; a queue is taken out of its map while
//! worked on, so no callback finds one borrowed. No step grows with the
//! number of waiters or keys: maps are `ShardedMap`s, waits end from one
//! heap of each key's next end, and housekeeping looks at a bounded number
//! of keys a tick, in turn.

mod callbacks;
mod sweep;

pub use sweep::{check_rooms, next_end};

use callbacks::{disconnect_callback, free_answer, reply_callback, timeout_callback, unblock};

use super::config;
use super::key::OpenKey;
use super::server::{now_ms, selected_db};
use super::stats::STATS;
use inventory_core::ledger::{
    quote, Ahead, BuyerId, Error, Grant, Status, TxId, View, WaitQueue, Waiter,
};
use inventory_core::shardmap::ShardedMap;
use redis_module::{raw, Context};
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// A blocked client, as the queue holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocked(*mut raw::RedisModuleBlockedClient);

type Room = (i32, Box<[u8]>);

/// (when, room) of each queue's next end of a wait (`Queue::note_end`).
type Ends = BinaryHeap<Reverse<(u64, Rc<Room>)>>;

/// One key's waiters, and whether the key has existed while they waited: a
/// reserve may wait for a key that is not there yet (the sale's stock is
/// set later), but once the key was there and is gone (deleted, moved to
/// another node), its waiters are answered.
struct Queue {
    waiters: WaitQueue<Blocked>,
    key_seen: bool,
    /// Its database and key, shared with its waiters' entries in WAITING,
    /// RING and ENDS (which know this queue by this `Rc`).
    room: Rc<Room>,
    /// The end it has in ENDS, the earliest of its waiters' when put there.
    end_in_heap: Option<u64>,
    /// Whether it is in PENDING.
    pending: bool,
}

impl Queue {
    fn new(room: &Room) -> Queue {
        let room = Rc::new(room.clone());
        RING.with(|r| r.borrow_mut().push_back(Rc::clone(&room)));
        Queue {
            waiters: WaitQueue::default(),
            key_seen: false,
            room,
            end_in_heap: None,
            pending: false,
        }
    }

    /// Leaves the rest of its answers to housekeeping's next tick.
    fn mark_pending(&mut self) {
        if !self.pending {
            self.pending = true;
            PENDING.with(|p| p.borrow_mut().push_back(Rc::clone(&self.room)));
        }
    }

    /// Puts its earliest end in ENDS when that is earlier than the one
    /// there (a wait ends on time, and a key has one entry, not one a
    /// waiter).
    fn note_end(&mut self) {
        if let Some(t) = self.waiters.next_end() {
            if self.end_in_heap.is_none_or(|h| t < h) {
                self.end_in_heap = Some(t);
                ENDS.with(|e| e.borrow_mut().push(Reverse((t, Rc::clone(&self.room)))));
            }
        }
    }
}

thread_local! {
    /// The waiters of every key that has any, by database and key name.
    static ROOMS: RefCell<ShardedMap<Room, Queue>> = RefCell::new(ShardedMap::default());
    /// Where each blocked client waits: its room and arrival number there.
    /// A client is in here exactly until the module unblocks it.
    static WAITING: RefCell<ShardedMap<usize, (Rc<Room>, u64)>> =
        RefCell::new(ShardedMap::default());
    /// Every queue, in the order housekeeping looks at them (`check_rooms`);
    /// an entry whose queue is gone is dropped when it comes up.
    static RING: RefCell<VecDeque<Rc<Room>>> = const { RefCell::new(VecDeque::new()) };
    /// When each queue's next wait ends (`Queue::note_end`), earliest first.
    static ENDS: RefCell<Ends> = const { RefCell::new(BinaryHeap::new()) };
    /// Queues with answers left over from a full turn, served first by the
    /// next tick.
    static PENDING: RefCell<VecDeque<Rc<Room>>> = const { RefCell::new(VecDeque::new()) };
    /// Answers the current housekeeping tick may still give.
    static TICK_LEFT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Steps past ends (ENDS entries, ends of waiters that left) the
    /// current tick may still take.
    static TICK_STEPS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Whether any key has waiters: the one load a command pays when none do.
static ANY: AtomicBool = AtomicBool::new(false);

/// Waiters one change, or one housekeeping tick, answers (grants, ended
/// waits, waiters of a key gone); the rest are answered by the next ticks,
/// a millisecond apart, still in order. An answer costs the server 30 to
/// 40 us in all on this project's 2-core machine (the grant, the blocked
/// client's reply handed over, the write: docs/benchmarks.md, "The waiting
/// room's longest step"), so 12 keep a turn near half a millisecond however
/// many wait.
const ANSWERS_PER_TURN: usize = 12;

/// Keys with waiters one housekeeping tick looks at (in turn).
const ROOMS_PER_TICK: usize = 128;

/// Steps past ends one housekeeping tick takes (each a heap pop: a hundred
/// thousand waiters that left leave as many ends behind).
const STEPS_PER_TICK: usize = 4_096;

/// Whether any key has waiters.
pub fn any() -> bool {
    ANY.load(Relaxed)
}

fn take_room(room: &Room) -> Option<Queue> {
    ROOMS.with(|r| r.borrow_mut().remove(room))
}

fn put_room(room: Room, q: Queue) {
    if !q.waiters.is_empty() {
        ROOMS.with(|r| r.borrow_mut().insert(room, q));
    }
    let any = ROOMS.with(|r| !r.borrow().is_empty());
    ANY.store(any, Relaxed);
    if !any {
        // Nobody waits: what RING and ENDS still hold is stale.
        RING.with(|r| *r.borrow_mut() = VecDeque::new());
        PENDING.with(|p| *p.borrow_mut() = VecDeque::new());
        ENDS.with(|e| *e.borrow_mut() = BinaryHeap::new());
    }
}

fn room_of(ctx: &Context, key: &[u8]) -> Room {
    (selected_db(ctx), key.into())
}

/// What waits ahead of a new reserve of `txid` on `key`; an error when the
/// txid itself is waiting there.
pub fn ahead(
    ctx: &Context,
    key: &[u8],
    txid: &TxId,
    buyer: Option<&BuyerId>,
) -> Result<Ahead, Error> {
    if !ANY.load(Relaxed) {
        return Ok(Ahead::NONE);
    }
    let room = room_of(ctx, key);
    ROOMS.with(|r| match r.borrow().get(&room) {
        None => Ok(Ahead::NONE),
        Some(q) if q.waiters.contains(txid) => Err(Error::Waiting(quote(txid.as_bytes()))),
        Some(q) => Ok(q.waiters.ahead(buyer)),
    })
}

/// What the module answers a waiter with, kept until its reply callback.
#[derive(Clone)]
enum Answer {
    Outcome(Status, View),
    Error(Error),
}

/// Whether the calling client may block here: not inside MULTI, a script,
/// a replicated or loading stream, or a call that forbids blocking.
fn may_block(ctx: &Context) -> bool {
    let deny = raw::REDISMODULE_CTX_FLAGS_MULTI
        | raw::REDISMODULE_CTX_FLAGS_LUA
        | raw::REDISMODULE_CTX_FLAGS_DENY_BLOCKING
        | raw::REDISMODULE_CTX_FLAGS_REPLICATED
        | raw::REDISMODULE_CTX_FLAGS_LOADING;
    // SAFETY: a live command context.
    let flags = unsafe { raw::RedisModule_GetContextFlags.map_or(0, |f| f(ctx.ctx)) };
    flags as u32 & deny == 0
}

/// Puts the calling reserve in `key`'s queue (`key_exists`: whether the key
/// is there now) and blocks its client, for at most `timeout_ms` (0: while
/// it stays connected). False when it may not block here (MULTI, a
/// script): it then answers NOSTOCK as usual.
pub fn wait(
    ctx: &Context,
    key: &[u8],
    key_exists: bool,
    waiter: (TxId, i64, inventory_core::ledger::Ttl, Option<BuyerId>),
    timeout_ms: u64,
) -> Result<bool, Error> {
    if !may_block(ctx) {
        return Ok(false);
    }
    let room = room_of(ctx, key);
    let max = config::max_waiters();
    let waiting = ROOMS.with(|r| r.borrow().get(&room).map_or(0, |q| q.waiters.len()));
    if waiting as u64 >= max {
        return Err(Error::QueueFull { max });
    }
    // SAFETY: reading function pointers the server set at load.
    let api = unsafe {
        (
            raw::RedisModule_BlockClient,
            raw::RedisModule_SetDisconnectCallback,
        )
    };
    let (Some(block), Some(on_disconnect)) = api else {
        return Ok(false);
    };
    // The module ends the wait (`end_waits`). 2^50 ms: no overflow.
    let until = match timeout_ms {
        0 => 0,
        ms => now_ms().saturating_add(ms.min(1 << 50)),
    };
    // SAFETY: a live command context of a client that may block (checked
    // above); the callbacks live as long as the module. The timeout
    // callback still answers `CLIENT UNBLOCK`.
    let bc = unsafe {
        block(
            ctx.ctx,
            Some(reply_callback),
            Some(timeout_callback),
            Some(free_answer),
            0,
        )
    };
    if bc.is_null() {
        return Ok(false);
    }
    // SAFETY: `bc` was just returned by the server and is blocked.
    unsafe { on_disconnect(bc, Some(disconnect_callback)) };
    let (txid, qty, ttl, buyer) = waiter;
    let mut q = take_room(&room).unwrap_or_else(|| Queue::new(&room));
    q.key_seen |= key_exists;
    let pushed = q.waiters.push(
        Waiter::new(Blocked(bc), txid.clone(), qty, ttl, buyer),
        until,
    );
    q.note_end();
    let shared = Rc::clone(&q.room);
    put_room(room, q);
    match pushed {
        Ok(seq) => {
            WAITING.with(|w| w.borrow_mut().insert(bc as usize, (shared, seq)));
            STATS.waiting(1);
        }
        // `ahead` refused a waiting txid before planning: unreachable, but
        // a blocked client must be released whatever happens.
        Err(_) => unblock(bc, Answer::Error(Error::Waiting(quote(txid.as_bytes())))),
    }
    Ok(true)
}

/// Serves `key`'s queue after a change that may have returned units: while
/// the front waiter's units are there, it gets its reservation (committed
/// as its own change) and its answer; a waiter a rule now refuses gets that
/// answer. Stops at the first waiter whose units are not there (strict
/// arrival order), or after `ANSWERS_PER_TURN` answers (housekeeping goes
/// on a millisecond later).
pub fn serve(ctx: &Context, entry: &mut OpenKey) {
    serve_up_to(ctx, entry, ANSWERS_PER_TURN);
}

/// `serve` for housekeeping: out of the tick's answers (`start_tick`).
pub fn serve_in_tick(ctx: &Context, entry: &mut OpenKey) {
    let left = TICK_LEFT.get();
    TICK_LEFT.set(left - serve_up_to(ctx, entry, left));
}

/// A housekeeping tick begins: it may give `ANSWERS_PER_TURN` answers.
pub fn start_tick() {
    TICK_LEFT.set(ANSWERS_PER_TURN);
    TICK_STEPS.set(STEPS_PER_TICK);
}

/// Whether the waiting rooms have work for the next tick at once: answers
/// left over from a full turn, or waits already ended.
pub fn busy() -> bool {
    ANY.load(Relaxed)
        && (PENDING.with(|p| !p.borrow().is_empty()) || next_end().is_some_and(|t| t <= now_ms()))
}

/// `serve` with at most `budget` answers; how many it gave.
fn serve_up_to(ctx: &Context, entry: &mut OpenKey, budget: usize) -> usize {
    if !ANY.load(Relaxed) {
        return 0;
    }
    let key: Box<[u8]> = entry.name().into();
    let room = room_of(ctx, &key);
    let Some(mut q) = take_room(&room) else {
        return 0;
    };
    let policy = config::policy();
    let mut answered = 0;
    loop {
        let now = now_ms();
        let planned = match entry.sku().plan_grant(&q.waiters, now, &policy) {
            None | Some(Grant::Wait) => break,
            Some(Grant::Done(_)) if answered == budget => {
                q.mark_pending();
                break;
            }
            Some(Grant::Done(planned)) => planned,
        };
        let answer = match planned {
            Ok(plan) => {
                STATS.count_plan(&plan);
                match entry.commit(&plan.effects) {
                    Ok(()) => {
                        if plan.status == Status::Reserved {
                            STATS.granted();
                        }
                        Answer::Outcome(plan.status, entry.view(now))
                    }
                    Err(e) => Answer::Error(e),
                }
            }
            Err(e) => Answer::Error(e),
        };
        if let Some(w) = q.waiters.pop_front() {
            STATS.waiting(-1);
            unblock(w.handle.0, answer);
        }
        answered += 1;
    }
    put_room(room, q);
    answered
}

/// After a cancel of `txid` on `key`: a waiter of that txid leaves the
/// queue, answered CANCELLED with the key as the cancel left it.
pub fn cancelled(ctx: &Context, key: &[u8], txid: &TxId, view: View) {
    if !ANY.load(Relaxed) {
        return;
    }
    let room = room_of(ctx, key);
    let Some(mut q) = take_room(&room) else {
        return;
    };
    let w = q.waiters.remove(txid);
    put_room(room, q);
    if let Some(w) = w {
        STATS.waiting(-1);
        unblock(w.handle.0, Answer::Outcome(Status::Cancelled, view));
    }
}

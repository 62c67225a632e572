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
//! worked on, so no callback finds one borrowed.

use super::config;
use super::key::OpenKey;
use super::reply;
use super::server::{now_ms, select_db, selected_db};
use super::stats::STATS;
use inventory_core::ledger::{
    quote, Ahead, BuyerId, Error, Grant, Status, TxId, View, WaitQueue, Waiter,
};
use redis_module::{raw, Context, RedisString};
use std::cell::RefCell;
use std::collections::HashMap;
use std::os::raw::{c_int, c_void};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// A blocked client, as the queue holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocked(*mut raw::RedisModuleBlockedClient);

type Room = (i32, Box<[u8]>);

/// One key's waiters, and whether the key has existed while they waited: a
/// reserve may wait for a key that is not there yet (the sale's stock is
/// set later), but once the key was there and is gone (deleted, moved to
/// another node), its waiters are answered.
struct Queue {
    waiters: WaitQueue<Blocked>,
    key_seen: bool,
    /// Its database and key, shared with its waiters' entries in WAITING.
    room: Rc<Room>,
}

impl Queue {
    fn new(room: &Room) -> Queue {
        Queue {
            waiters: WaitQueue::default(),
            key_seen: false,
            room: Rc::new(room.clone()),
        }
    }
}

thread_local! {
    /// The waiters of every key that has any, by database and key name.
    static ROOMS: RefCell<HashMap<Room, Queue>> = RefCell::new(HashMap::new());
    /// Where each blocked client waits: its room and arrival number there.
    /// A client is in here exactly until the module unblocks it.
    static WAITING: RefCell<HashMap<usize, (Rc<Room>, u64)>> = RefCell::new(HashMap::new());
}

/// Whether any key has waiters: the one load a command pays when none do.
static ANY: AtomicBool = AtomicBool::new(false);

/// Grants one change may make before the rest wait for the next
/// housekeeping tick (a millisecond later), so that no event-loop turn runs
/// long however many wait.
const GRANTS_PER_TURN: usize = 128;

/// Waiters one housekeeping tick answers when their key went away.
const FORCED_PER_TICK: usize = 1_000;

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
    ANY.store(ROOMS.with(|r| !r.borrow().is_empty()), Relaxed);
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

/// Releases a blocked client with `answer` (written by its reply callback).
fn unblock(bc: *mut raw::RedisModuleBlockedClient, answer: Answer) {
    WAITING.with(|w| w.borrow_mut().remove(&(bc as usize)));
    let data = Box::into_raw(Box::new(answer)).cast::<c_void>();
    // SAFETY: `bc` is a client this module blocked and has not unblocked
    // (it was still in WAITING); the server owns `data` from here and hands
    // it to `free_answer`.
    unsafe {
        match raw::RedisModule_UnblockClient {
            Some(f) => {
                f(bc, data);
            }
            None => drop(Box::from_raw(data.cast::<Answer>())),
        }
    }
}

/// Releases a blocked client without an answer of ours (its connection is
/// gone, or its timeout callback answered).
fn release(bc: *mut raw::RedisModuleBlockedClient) {
    WAITING.with(|w| w.borrow_mut().remove(&(bc as usize)));
    // SAFETY: as `unblock`, with no private data.
    unsafe {
        if let Some(f) = raw::RedisModule_UnblockClient {
            f(bc, std::ptr::null_mut());
        }
    }
}

/// Serves `key`'s queue after a change that may have returned units: while
/// the front waiter's units are there, it gets its reservation (committed
/// as its own change) and its answer; a waiter a rule now refuses gets that
/// answer. Stops at the first waiter whose units are not there (strict
/// arrival order), or after `GRANTS_PER_TURN` answers (housekeeping goes
/// on a millisecond later).
pub fn serve(ctx: &Context, entry: &mut OpenKey) {
    if !ANY.load(Relaxed) {
        return;
    }
    let key: Box<[u8]> = entry.name().into();
    let room = room_of(ctx, &key);
    let Some(mut q) = take_room(&room) else {
        return;
    };
    let policy = config::policy();
    let mut answered = 0;
    while answered < GRANTS_PER_TURN {
        let now = now_ms();
        let planned = match entry.sku().plan_grant(&q.waiters, now, &policy) {
            None | Some(Grant::Wait) => break,
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
    let more = answered == GRANTS_PER_TURN && !q.waiters.is_empty();
    put_room(room, q);
    if more {
        super::schedule::look_now(selected_db(ctx), &key);
    }
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

/// Housekeeping's look at every key with waiters: ended waits answered; a
/// key that was there and is gone (deleted, flushed, moved) or holds another
/// type answers its waiters (at most `FORCED_PER_TICK` a tick); otherwise
/// its queue is served (grants left over from a busy turn).
pub fn check_rooms(ctx: &Context) {
    if !ANY.load(Relaxed) {
        return;
    }
    let rooms: Vec<Room> = ROOMS.with(|r| r.borrow().keys().cloned().collect());
    let cluster = {
        // SAFETY: a live context.
        let flags = unsafe { raw::RedisModule_GetContextFlags.map_or(0, |f| f(ctx.ctx)) };
        flags as u32 & raw::REDISMODULE_CTX_FLAGS_CLUSTER != 0
    };
    let mut forced = 0;
    for (db, key) in rooms {
        if forced >= FORCED_PER_TICK || !select_db(ctx, db) {
            break;
        }
        let name = RedisString::create_from_slice(ctx.ctx, &key);
        let room = (db, key);
        let seen = ROOMS.with(|r| r.borrow().get(&room).is_some_and(|q| q.key_seen));
        let opened = OpenKey::open(ctx, name);
        // Waits that ended (BLOCK, PXAT) answer NOSTOCK with the key as it is.
        let view = opened
            .as_ref()
            .map(|e| e.view(now_ms()))
            .unwrap_or_default();
        forced += end_waits(&room, view);
        let gone = match opened {
            Ok(mut entry) if entry.stored().is_some() => {
                ROOMS.with(|r| {
                    if let Some(q) = r.borrow_mut().get_mut(&room) {
                        q.key_seen = true;
                    }
                });
                serve(ctx, &mut entry);
                None
            }
            Ok(_) if !seen => None,
            Ok(_) if cluster => Some(Answer::Error(Error::TryAgain(
                "the key is not on this node any more (moved or deleted) while this reserve \
                 waited; retry"
                    .into(),
            ))),
            Ok(_) => Some(Answer::Outcome(Status::NoStock, View::default())),
            Err(e) => Some(Answer::Error(e)),
        };
        let Some(answer) = gone else {
            continue;
        };
        let Some(mut q) = take_room(&room) else {
            continue;
        };
        while forced < FORCED_PER_TICK {
            let Some(w) = q.waiters.pop_front() else {
                break;
            };
            STATS.waiting(-1);
            STATS.waiter_dropped();
            unblock(w.handle.0, answer.clone());
            forced += 1;
        }
        put_room(room, q);
    }
}

/// Answers NOSTOCK (with `view`) every waiter of `room` whose wait has
/// ended; how many. (With a server timeout, a client answered by the module
/// in the turn it timed out would lose its reply: docs/design.md.)
fn end_waits(room: &Room, view: View) -> usize {
    let Some(mut q) = take_room(room) else {
        return 0;
    };
    let now = now_ms();
    let mut ended = 0;
    while let Some(w) = q.waiters.pop_ended(now) {
        STATS.waiting(-1);
        STATS.wait_timed_out();
        unblock(w.handle.0, Answer::Outcome(Status::NoStock, view));
        ended += 1;
    }
    put_room(room.clone(), q);
    ended
}

/// When the next wait ends, of every key's waiters (housekeeping's timer
/// comes back then).
pub fn next_end() -> Option<u64> {
    if !ANY.load(Relaxed) {
        return None;
    }
    ROOMS.with(|r| {
        r.borrow()
            .values()
            .filter_map(|q| q.waiters.next_end())
            .min()
    })
}

/// Takes a blocked client's waiter out of its queue (timeout, disconnect).
fn leave(bc: *mut raw::RedisModuleBlockedClient) -> Option<Room> {
    let (room, seq) = WAITING.with(|w| w.borrow().get(&(bc as usize)).cloned())?;
    let room = Room::clone(&room);
    if let Some(mut q) = take_room(&room) {
        if q.waiters.remove_arrival(seq).is_some() {
            STATS.waiting(-1);
        }
        put_room(room.clone(), q);
    }
    Some(room)
}

/// Writes the answer `unblock` left for a waiter.
extern "C" fn reply_callback(
    ctx: *mut raw::RedisModuleCtx,
    _argv: *mut *mut raw::RedisModuleString,
    _argc: c_int,
) -> c_int {
    let context = Context::new(ctx);
    // SAFETY: called by the server for a client this module unblocked; the
    // private data is the `Answer` `unblock` passed (or null).
    let answer = unsafe {
        raw::RedisModule_GetBlockedClientPrivateData
            .map_or(std::ptr::null_mut(), |f| f(ctx))
            .cast::<Answer>()
            .as_ref()
    };
    match answer {
        Some(Answer::Outcome(s, v)) => {
            let _ = reply::state_available_version(&context, *s, v);
        }
        Some(Answer::Error(e)) => reply::send(&context, Err(e.clone())),
        None => reply::send(
            &context,
            Err(Error::invalid("no answer for this waiting reserve")),
        ),
    }
    raw::REDISMODULE_OK as c_int
}

/// `CLIENT UNBLOCK` of a waiter (the module times waits out itself): it
/// leaves the queue and answers NOSTOCK with the key as it is now.
extern "C" fn timeout_callback(
    ctx: *mut raw::RedisModuleCtx,
    _argv: *mut *mut raw::RedisModuleString,
    _argc: c_int,
) -> c_int {
    let context = Context::new(ctx);
    // SAFETY: the server calls this with the context of the blocked client.
    let bc =
        unsafe { raw::RedisModule_GetBlockedClientHandle.map_or(std::ptr::null_mut(), |f| f(ctx)) };
    let room = if bc.is_null() { None } else { leave(bc) };
    // The client waits in the database it blocked in (it cannot select
    // another while blocked): its context reads the key there.
    let view = room
        .and_then(|(_, key)| {
            let name = RedisString::create_from_slice(ctx, &key);
            OpenKey::open(&context, name).ok().map(|e| e.view(now_ms()))
        })
        .unwrap_or_default();
    STATS.wait_timed_out();
    let _ = reply::state_available_version(&context, Status::NoStock, &view);
    if !bc.is_null() {
        // The server does not free a client blocked this way on a timeout.
        release(bc);
    }
    raw::REDISMODULE_OK as c_int
}

/// A waiter's connection closed: its place goes to the next.
extern "C" fn disconnect_callback(
    _ctx: *mut raw::RedisModuleCtx,
    bc: *mut raw::RedisModuleBlockedClient,
) {
    // A client already unblocked (answered) is not ours to release again.
    if leave(bc).is_some() {
        STATS.waiter_dropped();
        release(bc);
    }
}

/// Frees the answer `unblock` left, once the server is done with it.
extern "C" fn free_answer(_ctx: *mut raw::RedisModuleCtx, data: *mut c_void) {
    if !data.is_null() {
        // SAFETY: `data` is the `Box<Answer>` `unblock` gave the server,
        // handed back exactly once.
        drop(unsafe { Box::from_raw(data.cast::<Answer>()) });
    }
}

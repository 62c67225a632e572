//! Housekeeping's look at the waiting rooms: waits that ended, keys that
//! went away, grants left over from a busy turn; bounded work a tick.

use super::callbacks::unblock;
use super::{
    put_room, serve_in_tick, take_room, Answer, Room, ANY, ENDS, PENDING, RING, ROOMS,
    ROOMS_PER_TICK, STATS, TICK_LEFT, TICK_STEPS,
};
use crate::module::key::OpenKey;
use crate::module::server::{now_ms, select_db};
use inventory_core::ledger::{Error, Status, View};
use redis_module::{raw, Context, RedisString};
use std::cmp::Reverse;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;

/// Housekeeping's look at the waiting rooms, out of the tick's answers
/// (`start_tick`): first the waits that ended (earliest first: their time
/// is up), then the queues a full turn left answers to, then up to
/// `ROOMS_PER_TICK` keys in turn: a key that was there and is gone
/// (deleted, flushed, moved) or holds another type answers its waiters;
/// otherwise its queue is served.
pub fn check_rooms(ctx: &Context) {
    if !ANY.load(Relaxed) {
        return;
    }
    let cluster = {
        // SAFETY: a live context.
        let flags = unsafe { raw::RedisModule_GetContextFlags.map_or(0, |f| f(ctx.ctx)) };
        flags as u32 & raw::REDISMODULE_CTX_FLAGS_CLUSTER != 0
    };
    let left = || TICK_LEFT.get() > 0;
    let now = now_ms();
    while left() && take_step() {
        let due = ENDS.with(|e| {
            let mut e = e.borrow_mut();
            match e.peek() {
                Some(Reverse((t, _))) if *t <= now => e.pop().map(|Reverse(due)| due),
                _ => None,
            }
        });
        let Some((t, room)) = due else {
            break;
        };
        end_waits(ctx, &room, t);
    }
    for _ in 0..PENDING.with(|p| p.borrow().len()) {
        if !left() {
            break;
        }
        let Some(room) = PENDING.with(|p| p.borrow_mut().pop_front()) else {
            break;
        };
        let current = ROOMS.with(|r| match r.borrow_mut().get_mut(&*room) {
            Some(q) if Rc::ptr_eq(&q.room, &room) => {
                q.pending = false;
                true
            }
            _ => false,
        });
        if current {
            look_at(ctx, &room, cluster);
        }
    }
    let turn = RING.with(|r| r.borrow().len()).min(ROOMS_PER_TICK);
    for _ in 0..turn {
        if !left() {
            break;
        }
        let Some(room) = RING.with(|r| r.borrow_mut().pop_front()) else {
            break;
        };
        if is_current(&room) {
            look_at(ctx, &room, cluster);
        }
        if is_current(&room) {
            RING.with(|r| r.borrow_mut().push_back(room));
        }
    }
}

/// Takes one of the tick's answers; false when none is left.
fn take_answer() -> bool {
    let left = TICK_LEFT.get();
    TICK_LEFT.set(left.saturating_sub(1));
    left > 0
}

/// Takes one of the tick's steps past ends (`STEPS_PER_TICK`); false when
/// none is left.
fn take_step() -> bool {
    let left = TICK_STEPS.get();
    TICK_STEPS.set(left.saturating_sub(1));
    left > 0
}

/// Whether `room` is the `Rc` of a queue that still waits.
fn is_current(room: &Rc<Room>) -> bool {
    ROOMS.with(|r| {
        r.borrow()
            .get(&**room)
            .is_some_and(|q| Rc::ptr_eq(&q.room, room))
    })
}

/// One key's look (`check_rooms`): serves its queue, or answers its waiters
/// when its key is gone or of another type (those left over wait in
/// PENDING).
fn look_at(ctx: &Context, room: &Rc<Room>, cluster: bool) {
    let (db, key) = &**room;
    if !select_db(ctx, *db) {
        return;
    }
    let name = RedisString::create_from_slice(ctx.ctx, key);
    let seen = ROOMS.with(|r| r.borrow().get(&**room).is_some_and(|q| q.key_seen));
    let gone = match OpenKey::open(ctx, name) {
        Ok(mut entry) if entry.stored().is_some() => {
            ROOMS.with(|r| {
                if let Some(q) = r.borrow_mut().get_mut(&**room) {
                    q.key_seen = true;
                }
            });
            serve_in_tick(ctx, &mut entry);
            return;
        }
        Ok(_) if !seen => return,
        Ok(_) if cluster => Answer::Error(Error::TryAgain(
            "the key is not on this node any more (moved or deleted) while this reserve \
             waited; retry"
                .into(),
        )),
        Ok(_) => Answer::Outcome(Status::NoStock, View::default()),
        Err(e) => Answer::Error(e),
    };
    let Some(mut q) = take_room(room) else {
        return;
    };
    while !q.waiters.is_empty() {
        if !take_answer() {
            q.mark_pending();
            break;
        }
        if let Some(w) = q.waiters.pop_front() {
            STATS.waiting(-1);
            STATS.waiter_dropped();
            unblock(w.handle.0, gone.clone());
        }
    }
    put_room(Room::clone(room), q);
}

/// Answers NOSTOCK, with the key as it is, the waiters of `room` whose
/// wait has ended, out of the tick's answers, for its entry `(t, room)` of
/// ENDS (an entry its queue no longer has does nothing). (With a server
/// timeout, a client answered by the module in the turn it timed out would
/// lose its reply: docs/design.md.)
fn end_waits(ctx: &Context, room: &Rc<Room>, t: u64) {
    let ours = ROOMS.with(|r| {
        r.borrow()
            .get(&**room)
            .is_some_and(|q| Rc::ptr_eq(&q.room, room) && q.end_in_heap == Some(t))
    });
    if !ours || !select_db(ctx, room.0) {
        return;
    }
    let name = RedisString::create_from_slice(ctx.ctx, &room.1);
    let now = now_ms();
    let view = OpenKey::open(ctx, name)
        .map(|e| e.view(now))
        .unwrap_or_default();
    let Some(mut q) = take_room(room) else {
        return;
    };
    // Whatever is left (the tick's answers or steps ran out) is found again
    // through the entry `note_end` puts back, at the next tick.
    while TICK_LEFT.get() > 0 && take_step() {
        match q.waiters.pop_ended(now) {
            None => break,
            Some(None) => {}
            Some(Some(w)) => {
                take_answer();
                STATS.waiting(-1);
                STATS.wait_timed_out();
                unblock(w.handle.0, Answer::Outcome(Status::NoStock, view));
            }
        }
    }
    q.end_in_heap = None;
    q.note_end();
    put_room(Room::clone(room), q);
}

/// When the next wait ends (possibly one already answered: a hint), of
/// every key's waiters (housekeeping's timer comes back then).
pub fn next_end() -> Option<u64> {
    if !ANY.load(Relaxed) {
        return None;
    }
    ENDS.with(|e| e.borrow().peek().map(|Reverse((t, _))| *t))
}

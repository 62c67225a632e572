//! The waiting room's side of the server's blocked-client API: releasing a
//! blocked client with the module's answer, and the callbacks the server
//! calls (the reply, `CLIENT UNBLOCK`, a closed connection, freeing).

use super::{put_room, take_room, Answer, Room, STATS, WAITING};
use crate::module::key::OpenKey;
use crate::module::reply;
use crate::module::server::now_ms;
use inventory_core::ledger::{Error, Status};
use redis_module::{raw, Context, RedisString};
use std::os::raw::{c_int, c_void};

/// Releases a blocked client with `answer` (written by its reply callback).
pub(super) fn unblock(bc: *mut raw::RedisModuleBlockedClient, answer: Answer) {
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
pub(super) extern "C" fn reply_callback(
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
pub(super) extern "C" fn timeout_callback(
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
pub(super) extern "C" fn disconnect_callback(
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
pub(super) extern "C" fn free_answer(_ctx: *mut raw::RedisModuleCtx, data: *mut c_void) {
    if !data.is_null() {
        // SAFETY: `data` is the `Box<Answer>` `unblock` gave the server,
        // handed back exactly once.
        drop(unsafe { Box::from_raw(data.cast::<Answer>()) });
    }
}

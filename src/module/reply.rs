//! Writing replies. Every error reply goes through `error`, the one place
//! where a ledger `Error` becomes a Redis error, and which no text can make
//! panic: redis-module's own error replies build a C string from the text
//! with `CString::new(..).unwrap()` after truncating each character to a
//! byte, so any character whose code point is a multiple of 256 (U+0100 'Ā',
//! U+3000) would abort the server.

use super::STATS;
use inventory_core::ledger::{Error, Status};
use redis_module::{raw, Context};
use std::ffi::CString;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicPtr, Ordering::Relaxed};

/// Replies with `e` and counts what the INFO section counts of errors.
pub fn error(ctx: &Context, e: &Error) {
    if matches!(e, Error::TxConflict { .. } | Error::Conflict(_)) {
        STATS.conflict();
    }
    let line = e.reply_line();
    // SAFETY: a live command context and a NUL-terminated buffer that
    // outlives the call; Redis copies it.
    unsafe {
        if let Some(reply) = raw::RedisModule_ReplyWithError {
            reply(ctx.ctx, line.as_ptr().cast());
        }
    }
}

/// The bulk-string reply of each state word (`$8\r\nRESERVED\r\n`), made
/// once at load by `ECHO` through `RM_Call`, in `Status::ALL`'s order; null
/// where it could not be made. A bulk string is written the same way in
/// RESP2 and RESP3, so one reply serves every client. `RM_ReplyWithCallReply`
/// writes it as one piece, where `RM_ReplyWithStringBuffer` appends the
/// length, the bytes and the line end separately (385 of a sold-out
/// INV.RESERVE's 2,966 instructions, docs/benchmarks.md). Never freed: the
/// module cannot be unloaded while its type exists. Read on the main thread
/// only (commands); written once, at load, before any command runs.
static STATUS_REPLIES: [AtomicPtr<raw::RedisModuleCallReply>; Status::ALL.len()] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; Status::ALL.len()];

/// Makes `STATUS_REPLIES` (called once, at load). A reply whose protocol is
/// not exactly the bulk string of its word is dropped; the word is then
/// written piece by piece, as before.
pub fn init_status_replies(ctx: &Context) {
    for (slot, status) in STATUS_REPLIES.iter().zip(Status::ALL) {
        let word = status.as_str();
        let Ok(cword) = CString::new(word) else {
            continue;
        };
        let expected = format!("${}\r\n{word}\r\n", word.len());
        // SAFETY: RM_Call is variadic: the "c" format consumes one C string,
        // alive for the call. The reply is ours until freed; it is kept (and
        // never freed) only when its protocol is exactly `expected`.
        unsafe {
            let (Some(call), Some(proto), Some(free)) = (
                raw::RedisModule_Call,
                raw::RedisModule_CallReplyProto,
                raw::RedisModule_FreeCallReply,
            ) else {
                return;
            };
            let reply = call(ctx.ctx, c"ECHO".as_ptr(), c"c".as_ptr(), cword.as_ptr());
            if reply.is_null() {
                continue;
            }
            let mut len = 0;
            let p = proto(reply, &mut len);
            if !p.is_null()
                && std::slice::from_raw_parts(p.cast::<u8>(), len) == expected.as_bytes()
            {
                slot.store(reply, Relaxed);
            } else {
                free(reply);
            }
        }
    }
}

/// Writes a state word as a bulk string.
pub fn status_word(ctx: &Context, s: Status) {
    let cached = STATUS_REPLIES
        .get(s as usize)
        .map_or(std::ptr::null_mut(), |r| r.load(Relaxed));
    // SAFETY: a live command context; `cached` is a reply kept for the life
    // of the module; the buffer outlives the call and Redis copies it.
    unsafe {
        if let (false, Some(reply)) = (cached.is_null(), raw::RedisModule_ReplyWithCallReply) {
            if reply(ctx.ctx, cached) == raw::REDISMODULE_OK as c_int {
                return;
            }
        }
        if let Some(bulk) = raw::RedisModule_ReplyWithStringBuffer {
            let word = s.as_str();
            bulk(ctx.ctx, word.as_ptr().cast(), word.len());
        }
    }
}

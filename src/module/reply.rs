//! Writing replies: the one place a command's answer reaches the client.
//! Handlers return a `Reply`; `send` writes it, the hot single-key replies
//! (`state_available_version`, `pairs`) are written here directly. Every
//! error reply goes through `error`, the one place where a ledger `Error`
//! becomes a Redis error, and which no text can make panic: redis-module's
//! own error replies build a C string from the text with
//! `CString::new(..).unwrap()` after truncating each character to a byte, so
//! any character whose code point is a multiple of 256 (U+0100 'Ā', U+3000)
//! would abort the server.

use super::stats::STATS;
use inventory_core::ledger::{Error, Status, View};
use redis_module::{raw, Context, RedisValue};
use std::ffi::CString;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicPtr, Ordering::Relaxed};

/// What a handler answers: a value for `send` to write (`WRITTEN` when
/// the handler already wrote its reply here), or the error `error` writes.
pub type Reply = Result<RedisValue, Error>;

/// The value of a reply already written to the client.
pub const WRITTEN: RedisValue = RedisValue::NoReply;

/// Writes a handler's answer, unless it was written already. Inlined into
/// each command's trampoline, as the handler call is.
#[inline(always)]
pub fn send(ctx: &Context, reply: Reply) {
    match reply {
        Ok(RedisValue::NoReply) => {}
        // A static C string: redis-module would allocate a CString for it
        // (every INV.APPLY a replica applies answers OK).
        Ok(RedisValue::SimpleStringStatic("OK")) => ok(ctx),
        // Our own words and client bytes as buffers: nothing that
        // redis-module turns into a C string.
        Ok(value) => {
            ctx.reply(Ok(value));
        }
        Err(e) => error(ctx, &e),
    }
}

/// Replies `+OK`.
fn ok(ctx: &Context) {
    // SAFETY: a live command context and a static NUL-terminated string;
    // Redis copies it.
    unsafe {
        if let Some(reply) = raw::RedisModule_ReplyWithSimpleString {
            reply(ctx.ctx, c"OK".as_ptr());
        }
    }
}

/// Replies with `e` and counts what the INFO section counts of errors.
fn error(ctx: &Context, e: &Error) {
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
/// length, the bytes and the line end separately (an eighth of a sold-out
/// INV.RESERVE, docs/benchmarks.md). Never freed: the
/// module cannot be unloaded while its type exists. Read on the main thread
/// only (commands); written once, at load, before any command runs.
static STATUS_REPLIES: [AtomicPtr<raw::RedisModuleCallReply>; Status::ALL.len()] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; Status::ALL.len()];

/// Makes `STATUS_REPLIES` (called once, at load). A reply whose protocol is
/// not exactly the bulk string of its word is dropped; that word is then
/// written piece by piece.
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

/// A state word as a bulk string value, for replies built as values.
pub fn state(s: Status) -> RedisValue {
    RedisValue::BulkString(s.as_str().to_string())
}

/// `[state, available, version]`, the reply of every single-key write that
/// names a txid, written straight to the client.
#[inline]
pub fn state_available_version(ctx: &Context, s: Status, v: &View) -> Reply {
    // SAFETY: live command context; an array of 3 followed by 3 replies.
    unsafe {
        if let (Some(array), Some(int)) = (
            raw::RedisModule_ReplyWithArray,
            raw::RedisModule_ReplyWithLongLong,
        ) {
            array(ctx.ctx, 3);
            state_word(ctx, s);
            int(ctx.ctx, v.available);
            int(ctx.ctx, v.version as i64);
        }
    }
    Ok(WRITTEN)
}

/// Field/value pairs in this order: a map in RESP3, a flat array in RESP2.
pub fn pairs(ctx: &Context, fields: &[(&'static str, RedisValue)]) -> Reply {
    // SAFETY: ctx is the live command context; ReplyWithMap is followed by
    // exactly 2 * len replies.
    unsafe {
        let Some(reply_map) = raw::RedisModule_ReplyWithMap else {
            return Err(Error::invalid("RESP map replies are not supported"));
        };
        reply_map(ctx.ctx, fields.len() as std::os::raw::c_long);
    }
    for (name, value) in fields {
        ctx.reply(Ok(RedisValue::BulkString((*name).to_string())));
        ctx.reply(Ok(value.clone()));
    }
    Ok(WRITTEN)
}

/// Writes a state word as a bulk string.
fn state_word(ctx: &Context, s: Status) {
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

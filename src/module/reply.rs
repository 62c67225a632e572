//! Writing replies. Every error reply goes through `error`, the one place
//! where a ledger `Error` becomes a Redis error, and which no text can make
//! panic: redis-module's own error replies build a C string from the text
//! with `CString::new(..).unwrap()` after truncating each character to a
//! byte, so any character whose code point is a multiple of 256 (U+0100 'Ā',
//! U+3000) would abort the server.

use super::STATS;
use inventory_core::ledger::Error;
use redis_module::{raw, Context};

/// Replies with `e` and counts what the INFO section counts of errors.
pub fn error(ctx: &Context, e: &Error) {
    if matches!(e, Error::TxConflict { .. }) {
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

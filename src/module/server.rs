//! Small services of the server itself: the clock, database selection and
//! the log. Nothing here knows about inventory keys.

use redis_module::{raw, Context};
use std::ffi::CString;
use std::sync::atomic::{AtomicPtr, Ordering::Relaxed};

/// Wall clock in unix milliseconds. Where the server has
/// `RM_CachedMicroseconds` (Redis 7.2+, Valkey) this is the time it cached
/// for the current command, one time for a whole MULTI or script; on Redis
/// 7.0 it is the live clock, read by each command.
pub fn now_ms() -> u64 {
    // SAFETY: both functions take no arguments and are set at load.
    let us = unsafe {
        match raw::RedisModule_CachedMicroseconds {
            Some(cached) => cached(),
            None => raw::RedisModule_Milliseconds.map_or(0, |f| f()) * 1000,
        }
    };
    (us.max(0) / 1000) as u64
}

/// The database the context has selected.
pub fn selected_db(ctx: &Context) -> i32 {
    // SAFETY: ctx is a live context handed to us by Redis.
    unsafe { raw::RedisModule_GetSelectedDb.map_or(0, |f| f(ctx.ctx)) }
}

/// Selects a database on the context (housekeeping visits every db).
pub fn select_db(ctx: &Context, db: i32) -> bool {
    // SAFETY: ctx is a live context; Redis validates the db number.
    unsafe {
        raw::RedisModule_SelectDb.is_some_and(|f| f(ctx.ctx, db) == raw::REDISMODULE_OK as i32)
    }
}

/// A context that lives as long as the module, for logging from anywhere
/// (type callbacks have none of their own).
static LOG_CTX: AtomicPtr<raw::RedisModuleCtx> = AtomicPtr::new(std::ptr::null_mut());

/// Called once at load.
pub fn init_log(ctx: &Context) {
    // SAFETY: ctx is the module's load context; the detached context it
    // returns is never freed, so the pointer stays valid.
    let detached = unsafe {
        raw::RedisModule_GetDetachedThreadSafeContext.map_or(std::ptr::null_mut(), |f| f(ctx.ctx))
    };
    LOG_CTX.store(detached, Relaxed);
}

/// Log levels, as Redis names them.
#[derive(Clone, Copy)]
pub enum Level {
    Notice,
    Warning,
}

/// Writes one line to the server log. Any text is safe: it is passed as the
/// argument of a `%s` format (never as the format itself), and NUL bytes,
/// which a C string cannot hold, become `\x00`. redis-module's own log
/// helpers do neither: they unwrap `CString::new` and pass the message as
/// the format.
pub fn log(level: Level, message: &str) {
    let level = match level {
        Level::Notice => c"notice",
        Level::Warning => c"warning",
    };
    let text = CString::new(message.replace('\0', "\\x00")).unwrap_or_default();
    // SAFETY: RM_Log is variadic: "%s" consumes exactly one C string, which
    // outlives the call. A null context logs under a generic module name.
    unsafe {
        if let Some(rm_log) = raw::RedisModule_Log {
            rm_log(
                LOG_CTX.load(Relaxed),
                level.as_ptr(),
                c"%s".as_ptr(),
                text.as_ptr(),
            );
        }
    }
}

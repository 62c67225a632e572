//! The server's housekeeping registry (`inventory_core::schedule::Registry`) and
//! what keeps it true: every commit reschedules its key; keys that arrive or
//! leave by other paths are marked to be looked at now (rdb_load for RDB,
//! RESTORE, MIGRATE and full syncs; the unlink callback for DEL, UNLINK,
//! eviction, a key's own TTL and overwrites; the `rename_to`, `move_to` and
//! `copy_to` keyspace events); SWAPDB swaps two databases' schedules and
//! FLUSHDB/FLUSHALL drop them. A look finds the key's real state, so a mark
//! is always safe: a deleted key is forgotten, a replaced one rescheduled.

use super::release;
use super::server::{now_ms, select_db, selected_db};
use inventory_core::ledger::Pending;
use inventory_core::schedule::{Registry, Work};
use once_cell::sync::Lazy;
use redis_module::{raw, Context, RedisString};
use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicI32, Ordering::Relaxed};
use std::sync::Mutex;

static REGISTRY: Lazy<Mutex<Registry>> = Lazy::new(|| Mutex::new(Registry::default()));

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Registers a key's pending work as its value reports it.
pub fn register_work(db: i32, key: &[u8], p: Pending) {
    let work = Work {
        deadline: p.deadline,
        done: p.done,
        now: p.busy.then(now_ms),
    };
    registry().set(db, key, work);
}

/// Asks housekeeping to look at a key soon.
pub fn look_now(db: i32, key: &[u8]) {
    registry().set(db, key, Work::now(now_ms()));
}

/// Asks housekeeping to look at a key at `t` (ms), not before.
pub fn look_at(db: i32, key: &[u8], t: u64) {
    registry().set(db, key, Work::now(t));
}

/// A key whose work is due at `now` with this retention, taken out of the
/// registry: the caller visits it and registers what remains.
pub fn pop_due(now: u64, retention: u64) -> Option<(i32, Box<[u8]>)> {
    registry().pop_due(now, retention)
}

/// A key marked to be looked at by `now`, taken out of the registry
/// (replicas: they do background work only; expiry comes from the master).
pub fn pop_marked(now: u64) -> Option<(i32, Box<[u8]>)> {
    registry().pop_marked(now)
}

/// Keys registered (INFO).
pub fn registered() -> usize {
    registry().len()
}

/// How long the earliest open deadline has passed without its reservation
/// expiring, in milliseconds (0 when none is due): expiry falling behind
/// (INFO).
pub fn expiry_lag_ms(now: u64) -> u64 {
    registry()
        .earliest_deadline()
        .map_or(0, |t| now.saturating_sub(t))
}

/// The earliest open deadline of any key (`None`: no open reservation).
pub fn earliest_deadline() -> Option<u64> {
    registry().earliest_deadline()
}

/// Keys counted by `due_keys`, at most: INFO stays cheap however far
/// expiry is behind.
pub const DUE_KEYS_CAP: usize = 10_000;

/// Keys with a reservation past its deadline and not yet expired, up to
/// `DUE_KEYS_CAP` (INFO).
pub fn due_keys(now: u64) -> usize {
    registry().due_keys(now, DUE_KEYS_CAP)
}

/// Whether any key holds a reservation past its deadline, not yet expired.
pub fn any_due(now: u64) -> bool {
    registry().due_keys(now, 1) > 0
}

/// Up to `cap` keys with a reservation past its deadline and not yet
/// expired, to count what they hold.
pub fn due_list(now: u64, cap: usize) -> Vec<(i32, Box<[u8]>)> {
    registry().due_list(now, cap)
}

/// The db of the last `move_from` event: the db MOVE was called in.
static MOVE_FROM_DB: AtomicI32 = AtomicI32::new(-1);

/// Generic keyspace events that bring an existing value under a new name.
/// (Subscribed with the raw API: redis-module's handler unwraps the event
/// name as UTF-8, and any module may raise events of any name.)
unsafe extern "C" fn on_key_event(
    ctx: *mut raw::RedisModuleCtx,
    _kind: c_int,
    event: *const c_char,
    key: *mut raw::RedisModuleString,
) -> c_int {
    if event.is_null() || key.is_null() {
        return raw::REDISMODULE_OK as c_int;
    }
    let ctx = Context::new(ctx);
    // SAFETY: Redis passes a NUL-terminated event name and a live key name.
    let (event, key) = unsafe {
        (
            CStr::from_ptr(event).to_bytes(),
            RedisString::string_as_slice(key),
        )
    };
    let db = selected_db(&ctx);
    match event {
        b"rename_to" | b"copy_to" => look_now(db, key),
        b"move_from" => MOVE_FROM_DB.store(db, Relaxed),
        b"move_to" => {
            look_now(db, key);
            // Valkey 8.1 runs this callback on a context whose client the
            // caller's connection shares, selected to the target db; select
            // the caller's db back so MOVE does not switch its connection.
            let from = MOVE_FROM_DB.swap(-1, Relaxed);
            if from >= 0 {
                select_db(&ctx, from);
            }
        }
        _ => {}
    }
    raw::REDISMODULE_OK as c_int
}

/// SWAPDB exchanges two databases' keys.
unsafe extern "C" fn on_swapdb(
    _ctx: *mut raw::RedisModuleCtx,
    _eid: raw::RedisModuleEvent,
    _sub: u64,
    data: *mut c_void,
) {
    if data.is_null() {
        return;
    }
    // SAFETY: for the SwapDB event Redis passes a RedisModuleSwapDbInfo.
    let info = unsafe { &*data.cast::<raw::RedisModuleSwapDbInfo>() };
    registry().swap(info.dbnum_first, info.dbnum_second);
}

/// Schedules bigger than this are dropped on the module's freeing thread.
const DROP_APART: usize = 10_000;

/// FLUSHDB and FLUSHALL (also before a full sync and DEBUG RELOAD): the
/// flushed databases' schedules go.
unsafe extern "C" fn on_flush(
    _ctx: *mut raw::RedisModuleCtx,
    _eid: raw::RedisModuleEvent,
    sub: u64,
    data: *mut c_void,
) {
    if sub != raw::REDISMODULE_SUBEVENT_FLUSHDB_START || data.is_null() {
        return;
    }
    // SAFETY: for the FlushDB event Redis passes a RedisModuleFlushInfo.
    let info = unsafe { &*data.cast::<raw::RedisModuleFlushInfo>() };
    let flushed = registry().flush((info.dbnum >= 0).then_some(info.dbnum));
    if flushed.len() > DROP_APART {
        release::later(flushed);
    }
}

/// The data type's unlink callback: the key is deleted or overwritten.
///
/// # Safety
/// Called by Redis only, with the key's option context.
pub unsafe extern "C" fn on_unlink(ctx: *mut raw::RedisModuleKeyOptCtx, _value: *const c_void) {
    // SAFETY: ctx is the option context Redis passes for this key.
    let (name, db) = unsafe {
        (
            raw::RedisModule_GetKeyNameFromOptCtx.map_or(std::ptr::null(), |f| f(ctx)),
            raw::RedisModule_GetDbIdFromOptCtx.map_or(-1, |f| f(ctx)),
        )
    };
    if !name.is_null() && db >= 0 {
        look_now(
            db,
            redis_module::RedisString::string_as_slice(name.cast_mut()),
        );
    }
}

/// Subscribes to generic keyspace events, SWAPDB and FLUSHDB.
pub fn start(ctx: &Context) -> Result<(), String> {
    // SAFETY: ctx is the module's load context; the callback lives forever.
    let subscribed = unsafe {
        raw::RedisModule_SubscribeToKeyspaceEvents.is_some_and(|subscribe| {
            subscribe(
                ctx.ctx,
                raw::REDISMODULE_NOTIFY_GENERIC as c_int,
                Some(on_key_event),
            ) == raw::REDISMODULE_OK as c_int
        })
    };
    if !subscribed {
        return Err("cannot subscribe to keyspace events".into());
    }
    let events: [(u64, raw::RedisModuleEventCallback); 2] = [
        (raw::REDISMODULE_EVENT_SWAPDB, Some(on_swapdb)),
        (raw::REDISMODULE_EVENT_FLUSHDB, Some(on_flush)),
    ];
    for (id, callback) in events {
        let event = raw::RedisModuleEvent { id, dataver: 1 };
        // SAFETY: ctx is the module's load context; the callbacks live forever.
        unsafe {
            if let Some(subscribe) = raw::RedisModule_SubscribeToServerEvent {
                subscribe(ctx.ctx, event, callback);
            }
        }
    }
    Ok(())
}

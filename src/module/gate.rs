//! The propagation gate: whether a change must be handed to replication at
//! all (`needed`); `propagation.rs` says how it is.
//!
//! Redis propagates a command only when something consumes it: the AOF is on,
//! or this master has replicas or a replication backlog. Native commands skip
//! the work otherwise, but `RM_Replicate` builds its argv and looks the
//! command up before Redis checks, which is a third of an INV.RESERVE. So the
//! module skips `RM_Replicate` under the same condition, conservatively:
//!
//! - The state starts as "needed".
//! - The first timer tick (after startup, so after any backlog created while
//!   loading) turns it to "not needed" only if `INFO replication` shows a
//!   master with no replicas and no backlog.
//! - Any SYNC or PSYNC (seen by a command filter before it runs) or any role
//!   change turns it to "needed" for the life of the process: those are the
//!   only ways a backlog appears at run time.
//! - "Not needed" also requires the AOF to be off when it is settled; a
//!   CONFIG SET of `appendonly` (server event, before any later command) turns
//!   it to "needed" for good.
//! - Valkey 9's atomic slot migration feeds its target from the same
//!   propagation, after a snapshot taken once the export has started. The
//!   export starts inside `CLUSTER MIGRATESLOTS` on the source, which the
//!   filter sees before it runs, and the server reports it by an event fired
//!   in that command before it connects to the target: either turns the state
//!   to "needed" for good (`slot_migration.rs` forwards the event), so every
//!   change after the snapshot reaches the target. On a server that knows
//!   the migration but would not report it, the state starts "needed" and
//!   stays so.
//!
//! The filter runs before every command of the server, the module's or not
//! (docs/benchmarks.md measured it). Once the
//! state is "needed" it can never change again, so the next timer tick
//! unregisters the filter: a server with an AOF or a replica, the way a
//! stock ledger is deployed, stops paying for it after its first tick.

use redis_module::{raw, Context, ContextFlags};
use std::ffi::CStr;
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicPtr, AtomicU8, Ordering::Relaxed};

const UNKNOWN: u8 = 0;
const NOT_NEEDED: u8 = 1;
const NEEDED: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// The command filter while it is registered (null once retired or if it
/// never was). Touched on the main thread only.
static FILTER: AtomicPtr<raw::RedisModuleCommandFilter> = AtomicPtr::new(std::ptr::null_mut());

/// True when a change must be handed to RM_Replicate.
pub fn needed() -> bool {
    STATE.load(Relaxed) != NOT_NEEDED
}

/// Called from the timer: settles UNKNOWN from INFO replication, and
/// retires the command filter once propagation is needed for good.
pub fn settle(ctx: &Context) {
    match STATE.load(Relaxed) {
        UNKNOWN => settle_unknown(ctx),
        NEEDED => retire_filter(ctx),
        _ => {}
    }
}

/// Whether the command filter is still registered (INFO reports it).
pub fn filtering() -> bool {
    !FILTER.load(Relaxed).is_null()
}

/// Unregisters the command filter: with the state "needed" for good, the
/// SYNC it watches for changes nothing.
fn retire_filter(ctx: &Context) {
    let filter = FILTER.swap(std::ptr::null_mut(), Relaxed);
    if filter.is_null() {
        return;
    }
    // SAFETY: ctx is the module's timer context and `filter` the handle
    // RM_RegisterCommandFilter returned to this module, unregistered once
    // (the swap above cleared it).
    let status = unsafe {
        raw::RedisModule_UnregisterCommandFilter
            .map_or(raw::REDISMODULE_ERR as c_int, |f| f(ctx.ctx, filter))
    };
    if status != raw::REDISMODULE_OK as c_int {
        // Still registered: keep the handle so INFO says so.
        FILTER.store(filter, Relaxed);
    }
}

fn settle_unknown(ctx: &Context) {
    // SAFETY: ctx is a live context; the info data is freed before returning.
    let idle_master = unsafe {
        let (Some(get), Some(field_c), Some(field_i), Some(free)) = (
            raw::RedisModule_GetServerInfo,
            raw::RedisModule_ServerInfoGetFieldC,
            raw::RedisModule_ServerInfoGetFieldSigned,
            raw::RedisModule_FreeServerInfo,
        ) else {
            return;
        };
        let info = get(ctx.ctx, c"replication".as_ptr());
        if info.is_null() {
            return;
        }
        let role = field_c(info, c"role".as_ptr());
        let is_master = !role.is_null() && CStr::from_ptr(role).to_bytes() == b"master";
        let mut err = 0;
        let replicas = field_i(info, c"connected_slaves".as_ptr(), &mut err);
        let replicas_ok = err == 0;
        let backlog = field_i(info, c"repl_backlog_active".as_ptr(), &mut err);
        let idle = is_master && replicas_ok && err == 0 && replicas == 0 && backlog == 0;
        free(ctx.ctx, info);
        idle
    };
    let aof = ctx.get_flags().contains(ContextFlags::AOF);
    let next = if idle_master && !aof {
        NOT_NEEDED
    } else {
        NEEDED
    };
    let _ = STATE.compare_exchange(UNKNOWN, next, Relaxed, Relaxed);
}

/// Propagation is needed from now on, for the life of the process: a
/// consumer appeared (or may have).
pub fn mark_needed() {
    STATE.store(NEEDED, Relaxed);
}

/// Whether a command (its name and first argument) starts a consumer of
/// propagation: SYNC or PSYNC (a replica), or `CLUSTER MIGRATESLOTS` (an
/// atomic slot migration's target, Valkey 9).
fn starts_consumer(name: &[u8], first: Option<&[u8]>) -> bool {
    name.eq_ignore_ascii_case(b"sync")
        || name.eq_ignore_ascii_case(b"psync")
        || (name.eq_ignore_ascii_case(b"cluster")
            && first.is_some_and(|a| a.eq_ignore_ascii_case(b"migrateslots")))
}

unsafe extern "C" fn on_command(fctx: *mut raw::RedisModuleCommandFilterCtx) {
    // SAFETY: fctx is the live filter context; argument 0 is the command
    // name. An argument's bytes are read while the filter runs, and only
    // argument 1 of a 7-byte command name (CLUSTER) is read at all.
    unsafe {
        let (Some(arg), Some(count), Some(ptr_len)) = (
            raw::RedisModule_CommandFilterArgGet,
            raw::RedisModule_CommandFilterArgsCount,
            raw::RedisModule_StringPtrLen,
        ) else {
            return;
        };
        let bytes = |i: c_int| -> Option<&[u8]> {
            let s = arg(fctx, i);
            if s.is_null() {
                return None;
            }
            let mut len = 0;
            let p = ptr_len(s, &mut len);
            (!p.is_null()).then(|| std::slice::from_raw_parts(p.cast::<u8>(), len))
        };
        let Some(name) = bytes(0) else {
            return;
        };
        let first = if name.len() == 7 && count(fctx) > 1 {
            bytes(1)
        } else {
            None
        };
        if starts_consumer(name, first) {
            mark_needed();
        }
    }
}

unsafe extern "C" fn on_role_change(
    _ctx: *mut raw::RedisModuleCtx,
    _eid: raw::RedisModuleEvent,
    _sub: u64,
    _data: *mut c_void,
) {
    mark_needed();
}

unsafe extern "C" fn on_config_change(
    _ctx: *mut raw::RedisModuleCtx,
    _eid: raw::RedisModuleEvent,
    _sub: u64,
    data: *mut c_void,
) {
    if data.is_null() {
        mark_needed();
        return;
    }
    // SAFETY: for the Config event Redis passes a RedisModuleConfigChange
    // whose names are `num_changes` C strings.
    unsafe {
        let change = &*data.cast::<raw::RedisModuleConfigChange>();
        for i in 0..change.num_changes as usize {
            let name = *change.config_names.add(i);
            if name.is_null()
                || CStr::from_ptr(name)
                    .to_bytes()
                    .eq_ignore_ascii_case(b"appendonly")
            {
                mark_needed();
            }
        }
    }
}

/// Installs the command filter and the role-change and config subscriptions.
pub fn start(ctx: &Context) {
    let role = raw::RedisModuleEvent {
        id: raw::REDISMODULE_EVENT_REPLICATION_ROLE_CHANGED,
        dataver: 1,
    };
    // SAFETY: ctx is the module's load context; the callbacks live forever.
    unsafe {
        let filter = raw::RedisModule_RegisterCommandFilter.map_or(std::ptr::null_mut(), |f| {
            f(
                ctx.ctx,
                Some(on_command),
                raw::REDISMODULE_CMDFILTER_NOSELF as i32,
            )
        });
        FILTER.store(filter, Relaxed);
        if filter.is_null() {
            // Without the filter a SYNC could go unseen: always propagate.
            mark_needed();
        }
        let config = raw::RedisModuleEvent {
            id: raw::REDISMODULE_EVENT_CONFIG,
            dataver: 1,
        };
        let subscribed = raw::RedisModule_SubscribeToServerEvent.is_some_and(|subscribe| {
            subscribe(ctx.ctx, role, Some(on_role_change)) == raw::REDISMODULE_OK as i32
                && subscribe(ctx.ctx, config, Some(on_config_change)) == raw::REDISMODULE_OK as i32
        });
        if !subscribed {
            // A role or AOF change could go unseen: always propagate.
            mark_needed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::starts_consumer;

    #[test]
    fn a_replica_or_a_slot_export_starts_a_consumer() {
        for (name, first) in [
            (&b"SYNC"[..], None),
            (b"psync", Some(&b"?"[..])),
            (b"CLUSTER", Some(b"MIGRATESLOTS")),
            (b"cluster", Some(b"migrateSlots")),
        ] {
            assert!(starts_consumer(name, first), "{name:?} {first:?}");
        }
    }

    #[test]
    fn other_commands_start_none() {
        for (name, first) in [
            (&b"CLUSTER"[..], None),
            (b"CLUSTER", Some(&b"INFO"[..])),
            (b"CLUSTER", Some(b"GETSLOTMIGRATIONS")),
            (b"CLUSTER", Some(b"SETSLOT")),
            (b"MIGRATE", Some(b"127.0.0.1")),
            (b"INV.RESERVE", Some(b"sku")),
            (b"", None),
        ] {
            assert!(!starts_consumer(name, first), "{name:?} {first:?}");
        }
    }
}

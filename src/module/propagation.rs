//! How a change reaches replicas and the AOF: each applied effect is sent
//! as `INV.APPLY key <effect>` (`replicate`; AOF rewrites use the same
//! encoding, `effect_argv`), and whether that is needed at all.
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
//! (about 120 instructions each on Redis 7.0, docs/benchmarks.md). Once the
//! state is "needed" it can never change again, so the next timer tick
//! unregisters the filter: a server with an AOF or a replica, the way a
//! stock ledger is deployed, stops paying for it after its first tick.

use super::arg::Arg;
use inventory_core::ledger::{Effect, TxId};
use redis_module::{raw, Context, ContextFlags, RedisString};
use std::ffi::CStr;
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicU8, Ordering::Relaxed};

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

/// The running command's own argument array (the calling client's, name
/// included), which `RM_ReplicateVerbatim` propagates.
#[derive(Clone, Copy)]
pub struct CallArgv {
    ptr: *mut *mut raw::RedisModuleString,
    len: usize,
}

impl CallArgv {
    pub const NONE: CallArgv = CallArgv {
        ptr: std::ptr::null_mut(),
        len: 0,
    };

    /// # Safety
    /// `ptr` is the argument array Redis passed to the running command, with
    /// `len` strings, used only while that command runs.
    pub unsafe fn new(ptr: *mut *mut raw::RedisModuleString, len: usize) -> CallArgv {
        CallArgv { ptr, len }
    }
}

/// Argument strings of the calling command that replication may reuse.
/// `qty` must be the string the effect's quantity was parsed from.
pub struct Echo {
    pub txid: Option<*mut raw::RedisModuleString>,
    pub qty: Option<*mut raw::RedisModuleString>,
    /// The call's argument array, when its shape lets a fresh reservation
    /// be replicated through it (`replicate_reserve_in_place`).
    pub argv: CallArgv,
}

impl Default for Echo {
    fn default() -> Echo {
        Echo {
            txid: None,
            qty: None,
            argv: CallArgv::NONE,
        }
    }
}

impl Echo {
    /// Only the txid string is reusable.
    pub fn txid(txid: Arg) -> Echo {
        Echo {
            txid: Some(txid.raw()),
            ..Echo::default()
        }
    }

    /// A reserve's txid and qty strings, and its argument array.
    pub fn reserve(txid: Arg, qty: Arg, argv: CallArgv) -> Echo {
        Echo {
            txid: Some(txid.raw()),
            qty: Some(qty.raw()),
            argv,
        }
    }
}

/// Effect names used on every replicated change, created once and shared
/// (passing a RedisModuleString only bumps its refcount).
#[derive(Clone, Copy)]
enum Op {
    Stock,
    Add,
    Reserve,
    Confirm,
    Cancel,
    Fence,
    Extend,
}

static OPS: once_cell::sync::Lazy<[usize; 7]> = once_cell::sync::Lazy::new(|| {
    [
        "STOCK", "ADD", "RESERVE", "CONFIRM", "CANCEL", "FENCE", "EXTEND",
    ]
    .map(|name| {
        // SAFETY: a context-free string that is never freed; only touched on
        // the main thread.
        unsafe {
            raw::RedisModule_CreateString.map_or(0, |create| {
                create(std::ptr::null_mut(), name.as_ptr().cast(), name.len()) as usize
            })
        }
    })
});

/// The replication command's name, made once like the effect names.
static APPLY: once_cell::sync::Lazy<usize> = once_cell::sync::Lazy::new(|| {
    // SAFETY: as OPS.
    unsafe {
        raw::RedisModule_CreateString.map_or(0, |create| {
            let name = "INV.APPLY";
            create(std::ptr::null_mut(), name.as_ptr().cast(), name.len()) as usize
        })
    }
});

fn op(o: Op) -> *mut raw::RedisModuleString {
    OPS[o as usize] as *mut raw::RedisModuleString
}

/// Propagates one effect as `INV.APPLY key <effect>` to replicas and the AOF.
/// The frequent single-record effects go through a format string, without
/// building any argument in Rust; the rest through a string vector.
pub fn replicate(ctx: &Context, key: *mut raw::RedisModuleString, effect: &Effect, echo: &Echo) {
    if !needed() {
        return;
    }
    // The caller's own txid (and qty) strings are passed by reference when
    // they are what the effect names; otherwise a string is made once here.
    let made;
    let txid_string = |id: &TxId| -> *mut raw::RedisModuleString {
        match echo.txid {
            Some(s) if !s.is_null() && RedisString::string_as_slice(s) == id.as_bytes() => s,
            _ => std::ptr::null_mut(),
        }
    };
    let tx = match effect {
        Effect::Reserve { txid, .. }
        | Effect::Confirm(txid)
        | Effect::Cancel(txid)
        | Effect::Fence { txid, .. }
        | Effect::Extend { txid, .. } => {
            let echoed = txid_string(txid);
            if echoed.is_null() {
                made = RedisString::create_from_slice(std::ptr::null_mut(), txid.as_bytes());
                made.inner
            } else {
                echoed
            }
        }
        _ => std::ptr::null_mut(),
    };
    // SAFETY: RM_Replicate is variadic; each format letter is matched by the
    // argument type the module API documents: s = RedisModuleString*,
    // l = long long, v = (RedisModuleString**, size_t). Every pointer
    // outlives the call.
    unsafe {
        let Some(rm_replicate) = raw::RedisModule_Replicate else {
            return;
        };
        let (c, cmd, k) = (ctx.ctx, c"INV.APPLY".as_ptr(), key);
        match effect {
            Effect::Stock(n) => rm_replicate(c, cmd, c"ssl".as_ptr(), k, op(Op::Stock), *n),
            Effect::Add(n) => rm_replicate(c, cmd, c"ssl".as_ptr(), k, op(Op::Add), *n),
            Effect::Reserve { qty, deadline, .. } => match echo.qty.filter(|q| !q.is_null()) {
                Some(q)
                    if tx == echo.txid.unwrap_or(std::ptr::null_mut())
                        && echo.argv.len == 6
                        && replicate_reserve_in_place(c, echo.argv, k, tx, q, *deadline)
                            == raw::REDISMODULE_OK as c_int =>
                {
                    raw::REDISMODULE_OK as c_int
                }
                // Another shape, or the in-place path could not run.
                Some(q) => rm_replicate(
                    c,
                    cmd,
                    c"ssssl".as_ptr(),
                    k,
                    op(Op::Reserve),
                    tx,
                    q,
                    *deadline as i64,
                ),
                None => rm_replicate(
                    c,
                    cmd,
                    c"sssll".as_ptr(),
                    k,
                    op(Op::Reserve),
                    tx,
                    *qty,
                    *deadline as i64,
                ),
            },
            Effect::Confirm(_) => rm_replicate(c, cmd, c"sss".as_ptr(), k, op(Op::Confirm), tx),
            Effect::Cancel(_) => rm_replicate(c, cmd, c"sss".as_ptr(), k, op(Op::Cancel), tx),
            Effect::Fence { at, .. } => {
                rm_replicate(c, cmd, c"sssl".as_ptr(), k, op(Op::Fence), tx, *at as i64)
            }
            Effect::Extend { deadline, .. } => rm_replicate(
                c,
                cmd,
                c"sssl".as_ptr(),
                k,
                op(Op::Extend),
                tx,
                *deadline as i64,
            ),
            Effect::Expire(_)
            | Effect::ExpireFirst(_)
            | Effect::Purge(_)
            | Effect::Load { .. }
            | Effect::Records(_) => {
                let (_strings, mut argv) = effect_argv(effect);
                rm_replicate(c, cmd, c"sv".as_ptr(), k, argv.as_mut_ptr(), argv.len())
            }
        };
    }
}

/// Replicates `INV.APPLY key RESERVE txid qty deadline` through the call's
/// own argument array: `INV.RESERVE key txid qty TTL|PXAT n` has the same six
/// slots, so they are pointed at the effect's strings for the length of one
/// `RM_ReplicateVerbatim` (which copies the array and takes its own
/// references) and put back before anything else reads them. Measured:
/// 2,640 of the 3,546 instructions `RM_Replicate` added to a reserve were
/// its command lookup by name and building its argument objects
/// (docs/benchmarks.md); this does neither. What replicas and the AOF
/// receive is byte for byte what `RM_Replicate` sent. Returns an error,
/// having replicated nothing, when it cannot run (the caller then uses
/// `RM_Replicate`).
///
/// # Safety
/// `ctx` is the running command's context and `argv` its 6-slot array;
/// `key`, `txid`, `qty` are strings alive for the call.
unsafe fn replicate_reserve_in_place(
    ctx: *mut raw::RedisModuleCtx,
    argv: CallArgv,
    key: *mut raw::RedisModuleString,
    txid: *mut raw::RedisModuleString,
    qty: *mut raw::RedisModuleString,
    deadline: u64,
) -> c_int {
    // SAFETY: the API table is filled once at load and never written again.
    let Some(verbatim) = (unsafe { raw::RedisModule_ReplicateVerbatim }) else {
        return raw::REDISMODULE_ERR as c_int;
    };
    let apply = *APPLY as *mut raw::RedisModuleString;
    let at = deadline_string(deadline);
    if apply.is_null() || at.is_null() || argv.ptr.is_null() || argv.len != 6 {
        return raw::REDISMODULE_ERR as c_int;
    }
    // SAFETY: the caller's guarantee: the live 6-slot array of this call.
    let slots = unsafe { std::slice::from_raw_parts_mut(argv.ptr, 6) };
    let mut saved = [std::ptr::null_mut(); 6];
    saved.copy_from_slice(slots);
    slots.copy_from_slice(&[apply, key, op(Op::Reserve), txid, qty, at]);
    // SAFETY: ctx is the running command's context.
    let status = unsafe { verbatim(ctx) };
    slots.copy_from_slice(&saved);
    status
}

/// The last deadline replicated, and its string, which the module holds
/// one reference to. Reserves with one TTL arriving in the same millisecond
/// (a flash sale's burst) share one deadline, so they share its string
/// instead of each making one (400 of an INV.RESERVE's 6,000 instructions
/// with a replica or AOF attached, docs/benchmarks.md). Sharing is safe as
/// for the effect names: a string handed to replication is only read, and
/// replication takes its own reference. Touched on the main thread only
/// (commands and timers); the atomics are plain loads and stores.
static LAST_DEADLINE: AtomicU64 = AtomicU64::new(u64::MAX);
static LAST_DEADLINE_STRING: AtomicPtr<raw::RedisModuleString> =
    AtomicPtr::new(std::ptr::null_mut());

/// `deadline` as a module string (null if the server cannot make one),
/// valid at least until the next call.
fn deadline_string(deadline: u64) -> *mut raw::RedisModuleString {
    let cached = LAST_DEADLINE_STRING.load(Relaxed);
    if LAST_DEADLINE.load(Relaxed) == deadline && !cached.is_null() {
        return cached;
    }
    // SAFETY: the API table is filled once at load. A context-free string
    // made here is owned by the cache; the one it replaces loses the
    // cache's reference (replication keeps its own where it still has one).
    unsafe {
        let (Some(from_ll), Some(free)) = (
            raw::RedisModule_CreateStringFromLongLong,
            raw::RedisModule_FreeString,
        ) else {
            return std::ptr::null_mut();
        };
        let made = from_ll(std::ptr::null_mut(), deadline as i64);
        if made.is_null() {
            return made;
        }
        if !cached.is_null() {
            free(std::ptr::null_mut(), cached);
        }
        LAST_DEADLINE_STRING.store(made, Relaxed);
        LAST_DEADLINE.store(deadline, Relaxed);
        made
    }
}

/// An effect's arguments as module strings (binary safe), for the "v"
/// format of RM_Replicate and RM_EmitAOF. Keep the strings alive while the
/// pointers are in use.
pub fn effect_argv(effect: &Effect) -> (Vec<RedisString>, Vec<*mut raw::RedisModuleString>) {
    let strings: Vec<RedisString> = effect
        .to_args()
        .into_iter()
        .map(|a| RedisString::create_from_slice(std::ptr::null_mut(), &a))
        .collect();
    let argv = strings.iter().map(|s| s.inner).collect();
    (strings, argv)
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

//! Housekeeping: expire reservations past their deadline and purge finished
//! records past retention, on the master only, without any client touching
//! the key, with bounded work per event-loop turn; and, on masters and
//! replicas alike, grow big txid indexes in steps.
//!
//! A registry maps (db, key) to the time that key next has work. Every commit
//! reschedules its key exactly; keys that arrive by other paths are hinted
//! "look now": rdb_load (RDB, RESTORE, MIGRATE, full sync), and the
//! `rename_to`, `move_to` and `copy_to` keyspace events; SWAPDB swaps the
//! registry's db numbers. A timer pops due entries, plans housekeeping for
//! each key and commits it like any command, so expirations and purges reach
//! replicas and the AOF as explicit `INV.APPLY` effects.

use super::keys::{now_ms, select_db, Entry};
use super::{config, STATS};
use once_cell::sync::Lazy;
use redis_module::{raw, Context, ContextFlags, NotifyEvent, RedisString};
use std::collections::{BTreeSet, HashMap};
use std::os::raw::c_void;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the timer runs.
const TICK: Duration = Duration::from_millis(10);
/// Longest a tick may work before yielding to clients.
const TIME_BOX: Duration = Duration::from_millis(3);
/// Most records one `INV.APPLY EXPIRE|PURGE` effect names.
const BATCH: usize = 1000;
/// Record slots a key's growing txid index takes per visit. Small, because
/// the first visits to a fresh index also pay its page faults (one per 4 KiB
/// page the random placements touch): a visit stays well under a
/// millisecond and the time box decides how many run per tick.
const GROW_BATCH: usize = 512;

#[derive(Default)]
struct Registry {
    by_time: BTreeSet<(u64, i32, Vec<u8>)>,
    by_key: HashMap<(i32, Vec<u8>), u64>,
    retention_seen: u64,
}

impl Registry {
    fn set(&mut self, db: i32, key: &[u8], at: Option<u64>) {
        let k = (db, key.to_vec());
        if let Some(old) = self.by_key.remove(&k) {
            self.by_time.remove(&(old, k.0, k.1.clone()));
        }
        if let Some(at) = at {
            self.by_time.insert((at, k.0, k.1.clone()));
            self.by_key.insert(k, at);
        }
    }

    fn pop_due(&mut self, now: u64) -> Option<(i32, Vec<u8>)> {
        let first = self.by_time.first()?;
        if first.0 > now {
            return None;
        }
        let (_, db, key) = self.by_time.pop_first()?;
        self.by_key.remove(&(db, key.clone()));
        Some((db, key))
    }

    /// Re-checks every key now (after retention changed).
    fn recheck_all(&mut self) {
        let keys: Vec<(i32, Vec<u8>)> = self.by_key.keys().cloned().collect();
        for (db, key) in keys {
            self.set(db, &key, Some(0));
        }
    }

    fn swap(&mut self, a: i32, b: i32) {
        let entries: Vec<((i32, Vec<u8>), u64)> = self.by_key.drain().collect();
        self.by_time.clear();
        for ((db, key), at) in entries {
            let db = if db == a {
                b
            } else if db == b {
                a
            } else {
                db
            };
            self.set(db, &key, Some(at));
        }
    }
}

static REGISTRY: Lazy<Mutex<Registry>> = Lazy::new(|| Mutex::new(Registry::default()));

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Records when a key next has work (`None`: never).
pub fn schedule(db: i32, key: &[u8], at: Option<u64>) {
    registry().set(db, key, at);
}

/// Asks housekeeping to look at a key soon.
pub fn hint(db: i32, key: &[u8]) {
    registry().set(db, key, Some(0));
}

/// The db of the last `move_from` event: the db MOVE was called in.
static MOVE_FROM_DB: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// Keyspace events that bring an existing value under a new name.
pub fn on_key_event(ctx: &Context, _kind: NotifyEvent, event: &str, key: &[u8]) {
    use std::sync::atomic::Ordering::Relaxed;
    let db = super::keys::selected_db(ctx);
    match event {
        "rename_to" | "copy_to" => hint(db, key),
        "move_from" => MOVE_FROM_DB.store(db, Relaxed),
        "move_to" => {
            hint(db, key);
            // Valkey 8.1 runs this callback on a context whose client the
            // caller's connection shares, selected to the target db; select
            // the caller's db back so MOVE does not switch its connection.
            let from = MOVE_FROM_DB.swap(-1, Relaxed);
            if from >= 0 {
                super::keys::select_db(ctx, from);
            }
        }
        _ => {}
    }
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

/// Subscribes to SWAPDB and starts the timer.
pub fn start(ctx: &Context) {
    let event = raw::RedisModuleEvent {
        id: raw::REDISMODULE_EVENT_SWAPDB,
        dataver: 1,
    };
    // SAFETY: ctx is the module's load context; the callback lives forever.
    unsafe {
        if let Some(subscribe) = raw::RedisModule_SubscribeToServerEvent {
            subscribe(ctx.ctx, event, Some(on_swapdb));
        }
    }
    arm(ctx);
}

fn arm(ctx: &Context) {
    ctx.create_timer(TICK, |ctx: &Context, ()| tick(ctx), ());
}

fn tick(ctx: &Context) {
    super::propagation::settle(ctx);
    let flags = ctx.get_flags();
    if !flags.contains(ContextFlags::LOADING) {
        if flags.contains(ContextFlags::MASTER) {
            housekeep(ctx);
        } else {
            grow_indexes(ctx);
        }
    }
    arm(ctx);
}

/// On a replica: only the growth of txid indexes (registered as due at time
/// 0), which changes no state; expiry and purges come from the master.
fn grow_indexes(ctx: &Context) {
    visit_due(ctx, 0, |entry| {
        if let Some(sku) = entry.stored() {
            sku.grow_index(GROW_BATCH);
        }
    });
}

fn housekeep(ctx: &Context) {
    let now = now_ms();
    let retention = config::policy().retention_ms;
    {
        let mut reg = registry();
        if reg.retention_seen != retention {
            reg.retention_seen = retention;
            reg.recheck_all();
        }
    }
    visit_due(ctx, now, |entry| {
        let effects = entry.sku().plan_housekeeping(now, retention, BATCH);
        STATS.count_effects(&effects);
        if let Err(e) = entry.commit(&effects) {
            ctx.log_warning(&format!("inventory: housekeeping failed: {e}"));
        }
        if let Some(sku) = entry.stored() {
            sku.grow_index(GROW_BATCH);
        }
    });
}

/// Pops the keys due by `due_by` until the time box is spent, runs `work` on
/// each (opened for writing) and registers its next work.
fn visit_due(ctx: &Context, due_by: u64, mut work: impl FnMut(&Entry)) {
    let retention = config::policy().retention_ms;
    let started = Instant::now();
    while started.elapsed() < TIME_BOX {
        let Some((db, key)) = registry().pop_due(due_by) else {
            break;
        };
        if !select_db(ctx, db) {
            continue;
        }
        let Ok(entry) = Entry::open(ctx, RedisString::create_from_slice(ctx.ctx, &key)) else {
            continue;
        };
        work(&entry);
        // The registry entry was popped: register this key's next work under
        // its current name, whatever the value remembered (rename, copy).
        let next = entry.stored().and_then(|sku| {
            let next = sku.next_event(retention);
            sku.mark_scheduled(next);
            next
        });
        schedule(db, &key, next);
    }
}

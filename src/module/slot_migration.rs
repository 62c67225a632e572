//! Valkey 9's atomic slot migration (`CLUSTER MIGRATESLOTS`). The target
//! receives the slots' keys (as the AOF rewrite's `INV.APPLY` lines) and
//! then the source's effects, before it owns the slots. Until then the
//! source decides every change, expiry included, so housekeeping here parks
//! those keys, as a replica would, and looks at them again once the import
//! completes. An aborted import's keys are deleted by the server.
//!
//! On the source, an export feeds the target from propagation: its start
//! turns propagation on for good (`gate.rs` says why and when).
//!
//! The server refuses `CLUSTER MIGRATESLOTS` while a loaded module has not
//! declared that it handles this; the module declares it only where the
//! server knows the option (Valkey 9.0 and later).

use super::gate;
use super::schedule;
use super::server::{log, Level};
use inventory_core::slot::slot;
use redis_module::{raw, Context};
use std::os::raw::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Mutex;

/// `VALKEYMODULE_OPTIONS_HANDLE_ATOMIC_SLOT_MIGRATION`.
const OPTION: c_int = 1 << 5;
/// `ValkeyModuleEvent_AtomicSlotMigration` and the subevents acted on.
const EVENT: u64 = 19;
const IMPORT_STARTED: u64 = 0;
const EXPORT_STARTED: u64 = 1;
const IMPORT_ABORTED: u64 = 2;
const IMPORT_COMPLETED: u64 = 4;

/// `ValkeyModuleSlotRange`: inclusive bounds.
#[repr(C)]
struct SlotRange {
    start: c_int,
    end: c_int,
}

/// `ValkeyModuleAtomicSlotMigrationInfo` (version 1).
#[repr(C)]
struct Info {
    version: u64,
    job_name: [c_char; 41],
    slot_ranges: *const SlotRange,
    num_slot_ranges: u32,
}

/// A running import: its job name and inclusive slot ranges.
struct Job {
    name: Vec<u8>,
    ranges: Vec<(u16, u16)>,
}

#[derive(Default)]
struct Imports {
    jobs: Vec<Job>,
    /// Keys housekeeping found due in an importing slot.
    deferred: Vec<(i32, Box<[u8]>)>,
}

impl Imports {
    fn importing(&self, s: u16) -> bool {
        self.jobs
            .iter()
            .any(|job| job.ranges.iter().any(|&(a, b)| (a..=b).contains(&s)))
    }
}

/// Whether any import runs: the one thing housekeeping reads per key when
/// none does.
static ACTIVE: AtomicBool = AtomicBool::new(false);
static IMPORTS: Mutex<Imports> = Mutex::new(Imports {
    jobs: Vec::new(),
    deferred: Vec::new(),
});

fn imports() -> std::sync::MutexGuard<'static, Imports> {
    IMPORTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The option bit to declare: set where the server knows it.
pub fn option() -> c_int {
    // SAFETY: takes no arguments; the pointer is set at load when it exists.
    let all = unsafe { raw::RedisModule_GetModuleOptionsAll.map_or(0, |f| f()) };
    all & OPTION
}

/// Subscribes to the migration event where the server has it. Where the
/// server migrates slots atomically but the subscription fails, an export
/// could start unseen: propagation is then on for good.
pub fn start(ctx: &Context) {
    if option() == 0 {
        return;
    }
    let event = raw::RedisModuleEvent {
        id: EVENT,
        dataver: 1,
    };
    // SAFETY: ctx is the load context; the callback lives as long as the module.
    let subscribed = unsafe {
        raw::RedisModule_SubscribeToServerEvent.is_some_and(|subscribe| {
            subscribe(ctx.ctx, event, Some(on_event)) == raw::REDISMODULE_OK as c_int
        })
    };
    if !subscribed {
        gate::mark_needed();
    }
}

/// Whether housekeeping must leave `key` alone because it is in a slot
/// being imported; if so (true), the key is kept to be looked at when the
/// import ends.
pub fn defer_while_importing(db: i32, key: &[u8]) -> bool {
    if !ACTIVE.load(Relaxed) {
        return false;
    }
    let mut imports = imports();
    if !imports.importing(slot(key)) {
        return false;
    }
    imports.deferred.push((db, key.into()));
    true
}

/// The job an event names (no slots for a malformed one).
///
/// # Safety
/// `data` is null or the `Info` the server passed with the event.
unsafe fn job(data: *const c_void) -> Job {
    if data.is_null() {
        return Job {
            name: Vec::new(),
            ranges: Vec::new(),
        };
    }
    // SAFETY: per the contract above.
    let info = unsafe { &*data.cast::<Info>() };
    let name = info
        .job_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    let n = if info.slot_ranges.is_null() {
        0
    } else {
        info.num_slot_ranges as usize
    };
    // SAFETY: the server passes `num_slot_ranges` ranges at `slot_ranges`.
    let raw = unsafe { std::slice::from_raw_parts(info.slot_ranges, n) };
    let ranges = raw
        .iter()
        .filter_map(|r| Some((u16::try_from(r.start).ok()?, u16::try_from(r.end).ok()?)))
        .collect();
    Job { name, ranges }
}

unsafe extern "C" fn on_event(
    _ctx: *mut raw::RedisModuleCtx,
    _eid: raw::RedisModuleEvent,
    sub: u64,
    data: *mut c_void,
) {
    if sub == EXPORT_STARTED {
        // Before the export's snapshot: every later change must reach the
        // target.
        gate::mark_needed();
        return;
    }
    // SAFETY: the server passes this event's info struct (or null).
    let job = unsafe { job(data) };
    let name = job.name.clone();
    let mut imports = imports();
    match sub {
        IMPORT_STARTED => imports.jobs.push(job),
        IMPORT_COMPLETED | IMPORT_ABORTED => {
            imports.jobs.retain(|j| j.name != name);
            // Completed: the keys are ours now. Aborted: the server deletes
            // them, and a look finds them gone.
            let deferred = std::mem::take(&mut imports.deferred);
            let (still, done): (Vec<_>, Vec<_>) = deferred
                .into_iter()
                .partition(|(_, key)| imports.importing(slot(key)));
            imports.deferred = still;
            if !done.is_empty() {
                log(
                    Level::Notice,
                    &format!(
                        "slot import {} {}: housekeeping of {} key(s) waited for it",
                        String::from_utf8_lossy(&name),
                        if sub == IMPORT_COMPLETED {
                            "completed"
                        } else {
                            "aborted"
                        },
                        done.len()
                    ),
                );
            }
            for (db, key) in done {
                schedule::look_now(db, &key);
            }
        }
        _ => {}
    }
    ACTIVE.store(!imports.jobs.is_empty(), Relaxed);
}

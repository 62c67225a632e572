//! Housekeeping: expire reservations past their deadline and purge finished
//! records past retention, on the master only, without any client touching
//! the key; and, on masters and replicas alike, each key's background work
//! (index growth or shrink, compaction), which changes no state.
//!
//! A timer pops due keys from the registry (`schedule.rs`), plans
//! housekeeping for each and commits it like any command, so expirations
//! and purges reach replicas and the AOF as explicit `INV.APPLY` effects.
//! Each tick works at most `TIME_BOX`; while due work remains it comes back
//! after `BUSY_TICK`, otherwise after `TICK`.

use super::key::OpenKey;
use super::server::{log, now_ms, select_db, Level};
use super::stats::STATS;
use super::{config, schedule, slot_migration, waiting};
use redis_module::{raw, Context, ContextFlags, RedisString};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// How often the timer runs when nothing is due.
const TICK: Duration = Duration::from_millis(10);
/// How soon it runs again when due work is left: clients get the event loop
/// in between, about half of it while housekeeping is behind.
const BUSY_TICK: Duration = Duration::from_millis(1);
/// Longest a tick may work before yielding to clients.
const TIME_BOX: Duration = Duration::from_micros(1500);
/// Most records one `INV.APPLY EXPIRE|PURGE` effect names.
const BATCH: usize = 1000;
/// Record slots a key's background work takes per visit. Small, because
/// the first visits to a fresh index also pay its page faults (one per 4 KiB
/// page the random placements touch): a visit stays well under a
/// millisecond and the time box decides how many run per tick.
const GROW_BATCH: usize = 128;

pub fn start(ctx: &Context) {
    arm(ctx, TICK);
}

fn arm(ctx: &Context, after: Duration) {
    ctx.create_timer(after, |ctx: &Context, ()| tick(ctx), ());
}

fn tick(ctx: &Context) {
    super::gate::settle(ctx);
    waiting::start_tick();
    let flags = ctx.get_flags();
    let mut behind = false;
    if !flags.contains(ContextFlags::LOADING) {
        behind = if flags.contains(ContextFlags::MASTER) && !writes_paused() {
            let behind = housekeep(ctx);
            waiting::check_rooms(ctx);
            behind
        } else {
            maintain_keys(ctx)
        };
        count_due(ctx);
    }
    arm(ctx, next_tick(behind));
}

/// When the timer runs next: soon while work is due; while reserves wait,
/// at the next hold deadline or end of a wait (to the millisecond) when it
/// comes before the idle tick, so an expiring hold's units reach the queue
/// at once and a wait ends on time; otherwise at the idle tick.
fn next_tick(behind: bool) -> Duration {
    if behind || waiting::busy() {
        return BUSY_TICK;
    }
    if waiting::any() {
        let next = [schedule::earliest_deadline(), waiting::next_end()]
            .into_iter()
            .flatten()
            .min();
        if let Some(at) = next {
            let ms = at.saturating_sub(now_ms());
            if ms < TICK.as_millis() as u64 {
                return Duration::from_millis(ms.max(1));
            }
        }
    }
    TICK
}

/// Whether the server has paused writes (`CLIENT PAUSE WRITE`, `FAILOVER`,
/// a manual cluster failover, the end of an atomic slot migration): it
/// then refuses anything reaching the replication stream, and a write from
/// a timer aborts it. Expiry waits; reads already show the reservations as
/// expired and their units as available.
fn writes_paused() -> bool {
    // SAFETY: takes no arguments; the pointer is set at load.
    unsafe { raw::RedisModule_AvoidReplicaTraffic.is_some_and(|f| f() != 0) }
}

/// Keys looked into for `due_reservations`, at most, per count.
pub const DUE_SAMPLE: usize = 100;
/// How often the count is refreshed while reservations are due.
const DUE_REFRESH_MS: u64 = 100;

static DUE_RESERVATIONS: AtomicU64 = AtomicU64::new(0);
static DUE_COUNTED_AT: AtomicU64 = AtomicU64::new(0);

/// Reservations past their deadline and not yet expired, as last counted
/// (INFO): exact while at most `DUE_SAMPLE` keys hold some, otherwise what
/// the `DUE_SAMPLE` keys with the earliest deadlines hold.
pub fn due_reservations() -> u64 {
    DUE_RESERVATIONS.load(Relaxed)
}

/// After a tick: 0 at once when no key is due (the usual case, one
/// registry lookup); otherwise, at most every `DUE_REFRESH_MS`, the sum of
/// what the due keys hold (each key keeps that sum, so a look is O(1)).
fn count_due(ctx: &Context) {
    let now = now_ms();
    if !schedule::any_due(now) {
        DUE_RESERVATIONS.store(0, Relaxed);
        return;
    }
    if now.saturating_sub(DUE_COUNTED_AT.load(Relaxed)) < DUE_REFRESH_MS {
        return;
    }
    let keys = schedule::due_list(now, DUE_SAMPLE);
    let mut due = 0;
    for (db, key) in keys {
        if !select_db(ctx, db) {
            continue;
        }
        if let Ok(entry) = OpenKey::open(ctx, RedisString::create_from_slice(ctx.ctx, &key)) {
            due += entry.sku().due(now).0;
        }
    }
    DUE_RESERVATIONS.store(due, Relaxed);
    DUE_COUNTED_AT.store(now, Relaxed);
}

/// On a replica: only background work (registered as due now), which
/// changes no state; expiry and purges come from the master. Replicas never
/// expire by their own clock, so deadlines count as never due here.
fn maintain_keys(ctx: &Context) -> bool {
    let now = now_ms();
    visit_due(
        ctx,
        || schedule::pop_marked(now),
        |entry| {
            entry.maintain(GROW_BATCH);
            Visit::Done
        },
    )
}

/// Returns whether due work is left for another tick.
fn housekeep(ctx: &Context) -> bool {
    let now = now_ms();
    let retention = config::policy().retention_ms;
    // Keys a slot migration is bringing in are the source's to change.
    let pop = || loop {
        let (db, key) = schedule::pop_due(now, retention)?;
        if !slot_migration::defer_while_importing(db, &key) {
            return Some((db, key));
        }
    };
    visit_due(ctx, pop, |entry| {
        let effects = entry.sku().plan_housekeeping(now, retention, BATCH);
        match entry.commit(&effects) {
            Ok(()) => STATS.count_effects(&effects),
            // A fed key whose stream a reshard has not brought here yet:
            // nothing changed; look again a little later.
            Err(inventory_core::ledger::Error::TryAgain(_)) => return Visit::PutOff(PUT_OFF),
            // Nothing changed either (a feed stream name taken by another
            // type): said once a second at most, not spun on.
            Err(e) => {
                log(Level::Warning, &format!("housekeeping failed: {e}"));
                return Visit::PutOff(PUT_OFF_FAILED);
            }
        }
        // Units that expired go to the key's waiters first.
        waiting::serve_in_tick(ctx, entry);
        entry.maintain(GROW_BATCH);
        Visit::Done
    })
}

/// What a visit left of a key's work.
enum Visit {
    /// Registered as the key reports it.
    Done,
    /// Its work cannot be done now: looked at again after this long.
    PutOff(Duration),
}

/// How long a key whose stream is elsewhere waits for another look.
const PUT_OFF: Duration = Duration::from_millis(100);

/// How long a key whose work failed waits for another look.
const PUT_OFF_FAILED: Duration = Duration::from_secs(1);

/// Pops due keys until the time box is spent, runs `work` on each (opened
/// for writing) and registers what it has left. Returns whether the time
/// box ran out with due keys left.
fn visit_due(
    ctx: &Context,
    mut pop: impl FnMut() -> Option<(i32, Box<[u8]>)>,
    mut work: impl FnMut(&mut OpenKey) -> Visit,
) -> bool {
    let started = Instant::now();
    while started.elapsed() < TIME_BOX {
        let Some((db, key)) = pop() else {
            return false;
        };
        if !select_db(ctx, db) {
            continue;
        }
        let Ok(mut entry) = OpenKey::open(ctx, RedisString::create_from_slice(ctx.ctx, &key))
        else {
            continue;
        };
        match work(&mut entry) {
            // The registry entry was popped: register this key's next work
            // under its current name, whatever the value remembered
            // (rename, copy).
            Visit::Done => {
                if let Some(p) = entry.pending() {
                    schedule::register_work(db, &key, p);
                }
            }
            Visit::PutOff(wait) => schedule::look_at(db, &key, now_ms() + wait.as_millis() as u64),
        }
    }
    true
}

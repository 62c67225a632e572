//! The Redis shell around the ledger: configs, key access, the data type's
//! callbacks, housekeeping (expiry and purge), command handlers and INFO.

pub mod alloc;
pub mod arg;
pub mod commands;
pub mod config;
pub mod datatype;
pub mod gate;
pub mod housekeeping;
pub mod key;
pub mod propagation;
pub mod release;
pub mod reply;
pub mod schedule;
pub mod server;
pub mod slot_migration;

use inventory_core::ledger::Stats;
use once_cell::sync::Lazy;

/// The INFO counters of this process.
pub static STATS: Lazy<Stats> = Lazy::new(Stats::default);

#[allow(deprecated)] // the builder API cannot name the module's default section
/// `INFO inventory`: one field per counter, prefixed `inventory_` by Redis.
pub fn info(ctx: &redis_module::InfoContext, for_crash_report: bool) {
    ctx.add_info_section(None);
    for (name, value) in STATS.fields() {
        ctx.add_info_field_long_long(name, value);
    }
    ctx.add_info_field_long_long("propagating", i64::from(gate::needed()));
    ctx.add_info_field_long_long("command_filter", i64::from(gate::filtering()));
    // A crash report may come from inside the registry's lock: not read then.
    if !for_crash_report {
        ctx.add_info_field_long_long("scheduled_keys", schedule::registered() as i64);
        let now = server::now_ms();
        let lag = schedule::expiry_lag_ms(now);
        ctx.add_info_field_long_long("expiry_lag_ms", i64::try_from(lag).unwrap_or(i64::MAX));
        ctx.add_info_field_long_long("due_keys", schedule::due_keys(now) as i64);
        let due = housekeeping::due_reservations();
        ctx.add_info_field_long_long("due_reservations", i64::try_from(due).unwrap_or(i64::MAX));
    }
}

//! `INFO inventory`: the counters, and gauges read from the layers below.

use super::stats::STATS;
use super::{gate, housekeeping, schedule, server};

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

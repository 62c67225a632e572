//! `INV.APPLY key <effect>`: the replication and AOF form of every change.

use super::{Handled, Request};
use crate::module::key::Entry;
use crate::module::server::{log, Level};
use inventory_core::ledger::Error;
use inventory_core::parse;
use redis_module::{Context, ContextFlags, RedisValue};

/// Accepted only from a master's stream or while loading, where it applies
/// the effect exactly, without consulting any clock or config.
pub fn apply(ctx: &Context, req: &Request) -> Handled {
    let flags = ctx.get_flags();
    if !flags.intersects(ContextFlags::REPLICATED | ContextFlags::LOADING) {
        return Err(Error::invalid(
            "INV.APPLY is internal: accepted only from a master's replication stream or an AOF being loaded",
        ));
    }
    let cmd = parse::apply(req.args())?;
    let mut entry = Entry::open_arg(ctx, cmd.key)?;
    if let Err(e) = entry.commit(std::slice::from_ref(&cmd.effect)) {
        log(
            Level::Warning,
            &format!("INV.APPLY on a key out of step: {e}"),
        );
        return Err(e);
    }
    Ok(RedisValue::SimpleStringStatic("OK"))
}

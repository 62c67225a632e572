//! `INV.APPLY key <effect>`: the replication and AOF form of every change.

use super::{Handled, Request};
use crate::module::key::Entry;
use crate::module::propagation::Echo;
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
    // One effect, passed on to this node's AOF and replicas as received.
    if let Err(e) = entry.commit_echo(std::slice::from_ref(&cmd.effect), &Echo::verbatim()) {
        log(
            Level::Warning,
            &format!("INV.APPLY on a key out of step: {e}"),
        );
        return Err(e);
    }
    Ok(RedisValue::SimpleStringStatic("OK"))
}

//! `INV.APPLY key <effect>`: the replication and AOF form of every change.

use super::Request;
use crate::module::key::OpenKey;
use crate::module::propagation::ReplicationArgs;
use crate::module::reply::Reply;
use crate::module::server::{log, Level};
use inventory_core::ledger::{Effect, Error, TxId};
use inventory_core::parse::{self, Arg as _};
use redis_module::{Context, ContextFlags, RedisValue};

/// Refuses a call from anywhere but a master's stream or an AOF being
/// loaded.
fn internal(ctx: &Context, name: &str) -> Result<(), Error> {
    if ctx
        .get_flags()
        .intersects(ContextFlags::REPLICATED | ContextFlags::LOADING)
    {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{name} is internal: accepted only from a master's replication stream or an AOF being loaded"
        )))
    }
}

/// Accepted only from a master's stream or while loading, where it applies
/// the effect exactly, without consulting any clock or config.
pub fn apply(ctx: &Context, req: &Request) -> Reply {
    internal(ctx, "INV.APPLY")?;
    // The key is opened and the lines a reserve's txid (and buyer) will be
    // looked up in are loaded while the effect is parsed, as on the master.
    let args = req.args();
    let mut entry = match args.first() {
        Some(&key) => OpenKey::open_arg(ctx, key)?,
        None => return Err(Error::Arity("inv.apply")),
    };
    // Where the effect's own words start: after the key and a separate
    // feed stamp, by the stamp's shape (a joined stamp is inside the name
    // word; the parser below checks the rest; a malformed effect only
    // prefetches or lends a string that goes unused).
    let op = 1 + parse::stamp_len(args.get(1..).unwrap_or_default());
    if let [_, txid, rest @ ..] = args.get(op..).unwrap_or_default() {
        entry.sku().prefetch(txid.bytes());
        if let [_, _, w, id] = rest {
            if w.bytes().eq_ignore_ascii_case(b"BUYER") {
                entry.sku().prefetch_buyer(id.bytes());
            }
        }
    }
    let cmd = parse::apply(args)?;
    // One effect, passed on to this node's AOF and replicas as received;
    // its feed entries name the received txid and buyer strings (checked
    // equal where they are used, so a guess here is never wrong, only
    // unused).
    let mut reuse = ReplicationArgs::verbatim(cmd.feed);
    if cmd.feed.is_some() {
        reuse.txid = args.get(op + 1).map(|a| a.raw());
        reuse.buyer = args.last().map(|a| a.raw());
    }
    applied(entry.commit_replicating(std::slice::from_ref(&cmd.effect), &reuse))
}

/// `INV.APPLY.CONFIRM key txid`: `INV.APPLY key CONFIRM txid`.
pub fn confirm(ctx: &Context, req: &Request) -> Reply {
    internal(ctx, "INV.APPLY.CONFIRM")?;
    one_record(ctx, req, "inv.apply.confirm", Effect::Confirm)
}

/// `INV.APPLY.CANCEL key txid`: `INV.APPLY key CANCEL txid`.
pub fn cancel(ctx: &Context, req: &Request) -> Reply {
    internal(ctx, "INV.APPLY.CANCEL")?;
    one_record(ctx, req, "inv.apply.cancel", Effect::Cancel)
}

/// Applies `effect(txid)` to `key` from `<name> key txid`, passing it on
/// verbatim.
fn one_record(
    ctx: &Context,
    req: &Request,
    name: &'static str,
    effect: fn(TxId) -> Effect,
) -> Reply {
    let &[key, txid] = req.args() else {
        return Err(Error::Arity(name));
    };
    let mut entry = OpenKey::open_arg(ctx, key)?;
    entry.sku().prefetch(txid.bytes());
    let txid = TxId::new(txid.bytes()).map_err(|_| Error::Apply("malformed effect".into()))?;
    applied(entry.commit_replicating(&[effect(txid)], &ReplicationArgs::verbatim(None)))
}

/// 1, or the error of an effect that does not fit the key, logged (a
/// replica or a replay out of step with its master). Nobody reads the
/// answer (`internal`: a master's link or an AOF being loaded), so it is
/// the one the server sends from a shared object: `+OK` makes and frees a
/// string in the server on every call before it is dropped
/// (docs/benchmarks.md).
fn applied(result: Result<(), Error>) -> Reply {
    if let Err(e) = result {
        log(
            Level::Warning,
            &format!("INV.APPLY on a key out of step: {e}"),
        );
        return Err(e);
    }
    Ok(RedisValue::Integer(1))
}

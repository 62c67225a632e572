//! Writes to one key: INV.SET, INV.ADD, INV.RESERVE, INV.CONFIRM,
//! INV.CANCEL, INV.EXTEND, INV.ADJUST, INV.RULES.

use super::Request;
use crate::module::config::policy;
use crate::module::key::OpenKey;
use crate::module::propagation::ReplicationArgs;
use crate::module::reply::{self, Reply};
use crate::module::server::now_ms;
use crate::module::stats::STATS;
use inventory_core::ledger::{Error, Plan, Sku, TxId};
use inventory_core::parse;
use redis_module::{Context, RedisValue};

/// Plans on a key opened early, commits, and replies `[state, available,
/// version]`.
fn single(
    ctx: &Context,
    entry: Result<OpenKey, Error>,
    reuse: ReplicationArgs,
    plan: impl FnOnce(&Sku, u64) -> Result<Plan, Error>,
) -> Reply {
    let now = now_ms();
    let mut entry = entry?;
    let plan = plan(entry.sku(), now)?;
    STATS.count_plan(&plan);
    entry.commit_replicating(&plan.effects, &reuse)?;
    reply::state_available_version(ctx, plan.status, &entry.view(now))
}

pub fn set(ctx: &Context, req: &Request) -> Reply {
    let cmd = parse::set(req.args())?;
    let mut entry = OpenKey::open_arg(ctx, cmd.key)?;
    let plan = entry.sku().plan_set(cmd.stock, cmd.if_version, now_ms())?;
    STATS.count_plan(&plan);
    entry.commit(&plan.effects)?;
    Ok(RedisValue::SimpleStringStatic("OK"))
}

pub fn add(ctx: &Context, req: &Request) -> Reply {
    let cmd = parse::add(req.args())?;
    let now = now_ms();
    let mut entry = OpenKey::open_arg(ctx, cmd.key)?;
    let plan = entry.sku().plan_add(cmd.delta, cmd.if_version, now)?;
    STATS.count_plan(&plan);
    entry.commit(&plan.effects)?;
    Ok(RedisValue::Integer(entry.view(now).available))
}

pub fn reserve(ctx: &Context, req: &Request) -> Reply {
    let entry = req.open_early(ctx, "inv.reserve");
    let cmd = parse::reserve(req.args())?;
    let p = policy();
    let buyer = cmd.buyer.as_ref().map(|b| b.1);
    let reuse = ReplicationArgs::reserve(cmd.txid_arg, cmd.qty_arg, buyer, req.call_argv());
    single(ctx, entry, reuse, |sku, now| {
        let buyer = cmd.buyer.as_ref().map(|b| &b.0);
        sku.plan_reserve_for(&cmd.txid, cmd.qty, cmd.ttl, buyer, now, &p)
    })
}

pub fn confirm(ctx: &Context, req: &Request) -> Reply {
    let entry = req.open_early(ctx, "inv.confirm");
    let cmd = parse::confirm(req.args())?;
    single(
        ctx,
        entry,
        ReplicationArgs::txid(cmd.txid_arg),
        |sku, now| sku.plan_confirm_qty(&cmd.txid, cmd.qty, now),
    )
}

pub fn adjust(ctx: &Context, req: &Request) -> Reply {
    let entry = req.open_early(ctx, "inv.adjust");
    let cmd = parse::adjust(req.args())?;
    single(
        ctx,
        entry,
        ReplicationArgs::txid(cmd.txid_arg),
        |sku, now| sku.plan_adjust(&cmd.txid, cmd.qty, now),
    )
}

pub fn rules(ctx: &Context, req: &Request) -> Reply {
    let cmd = parse::rules(req.args())?;
    let mut entry = OpenKey::open_arg(ctx, cmd.key)?;
    let plan = entry.sku().plan_rules(&cmd.change)?;
    STATS.count_plan(&plan);
    entry.commit(&plan.effects)?;
    Ok(RedisValue::SimpleStringStatic("OK"))
}

pub fn cancel(ctx: &Context, req: &Request) -> Reply {
    by_txid(ctx, req, "inv.cancel", Sku::plan_cancel)
}

/// `CMD key txid`: commands whose only argument is the txid.
fn by_txid(
    ctx: &Context,
    req: &Request,
    name: &'static str,
    plan: fn(&Sku, &TxId, u64) -> Result<Plan, Error>,
) -> Reply {
    let entry = req.open_early(ctx, name);
    let cmd = parse::key_txid(name, req.args())?;
    single(
        ctx,
        entry,
        ReplicationArgs::txid(cmd.txid_arg),
        |sku, now| plan(sku, &cmd.txid, now),
    )
}

pub fn extend(ctx: &Context, req: &Request) -> Reply {
    let entry = req.open_early(ctx, "inv.extend");
    let cmd = parse::extend(req.args())?;
    let p = policy();
    single(
        ctx,
        entry,
        ReplicationArgs::txid(cmd.txid_arg),
        |sku, now| sku.plan_extend(&cmd.txid, cmd.ttl_ms, now, &p),
    )
}

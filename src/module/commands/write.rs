//! Writes to one key: INV.SET, INV.ADD, INV.RESERVE, INV.CONFIRM,
//! INV.CANCEL, INV.EXTEND, INV.ADJUST, INV.RULES.

use super::Request;
use crate::module::arg::Arg;
use crate::module::config::policy;
use crate::module::key::OpenKey;
use crate::module::propagation::ReplicationArgs;
use crate::module::reply::{self, Reply};
use crate::module::server::now_ms;
use crate::module::stats::STATS;
use crate::module::waiting;
use inventory_core::ledger::{Error, Plan, Sku, Status, Ttl, View};
use inventory_core::parse;
use inventory_core::parse::Arg as _;
use redis_module::{Context, RedisValue};

/// Plans on a key opened early, commits, serves the key's waiters (a
/// change may have returned units), and replies `[state, available,
/// version]` as its own change left the key.
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
    let view = entry.view(now);
    waiting::serve(ctx, &mut entry);
    reply::state_available_version(ctx, plan.status, &view)
}

/// Plans and commits a change that needs no txid, then serves the key's
/// waiters; the key as the change left it.
fn stock_change(
    ctx: &Context,
    key: Arg,
    plan: impl FnOnce(&Sku, u64) -> Result<Plan, Error>,
) -> Result<View, Error> {
    let now = now_ms();
    let mut entry = OpenKey::open_arg(ctx, key)?;
    let plan = plan(entry.sku(), now)?;
    STATS.count_plan(&plan);
    entry.commit(&plan.effects)?;
    let view = entry.view(now);
    waiting::serve(ctx, &mut entry);
    Ok(view)
}

pub fn set(ctx: &Context, req: &Request) -> Reply {
    let cmd = parse::set(req.args())?;
    stock_change(ctx, cmd.key, |sku, now| {
        sku.plan_set(cmd.stock, cmd.if_version, now)
    })?;
    Ok(RedisValue::SimpleStringStatic("OK"))
}

pub fn add(ctx: &Context, req: &Request) -> Reply {
    let cmd = parse::add(req.args())?;
    let view = stock_change(ctx, cmd.key, |sku, now| {
        sku.plan_add(cmd.delta, cmd.if_version, now)
    })?;
    Ok(RedisValue::Integer(view.available))
}

/// `INV.RESERVE`; with `BLOCK ms`, a reserve that finds no units (or
/// others waiting ahead of it) waits for them in the key's queue instead of
/// answering NOSTOCK.
pub fn reserve(ctx: &Context, req: &Request) -> Reply {
    let entry = req.open_early(ctx, "inv.reserve");
    let cmd = parse::reserve(req.args())?;
    let p = policy();
    let buyer = cmd.buyer.as_ref().map(|b| &b.0);
    let ahead = waiting::ahead(ctx, cmd.key.bytes(), &cmd.txid, buyer)?;
    let reuse = ReplicationArgs::reserve(
        cmd.txid_arg,
        cmd.qty_arg,
        cmd.buyer.as_ref().map(|b| b.1),
        req.call_argv(),
    );
    let now = now_ms();
    let mut entry = entry?;
    let plan = entry
        .sku()
        .plan_reserve_behind(&cmd.txid, cmd.qty, cmd.ttl, buyer, ahead, now, &p)?;
    STATS.count_plan(&plan);
    entry.commit_replicating(&plan.effects, &reuse)?;
    if let (Status::NoStock, Some(block)) = (plan.status, cmd.block) {
        // A wait ends by its PXAT at the latest.
        let until = match cmd.ttl {
            Ttl::At(at) => at.saturating_sub(now).max(1),
            _ => u64::MAX,
        };
        let timeout = match block {
            0 if until == u64::MAX => 0,
            0 => until,
            ms => ms.min(until),
        };
        let waiter = (cmd.txid, cmd.qty, cmd.ttl, cmd.buyer.map(|b| b.0));
        let exists = entry.stored().is_some();
        if waiting::wait(ctx, cmd.key.bytes(), exists, waiter, timeout)? {
            return Ok(reply::WRITTEN);
        }
    }
    reply::state_available_version(ctx, plan.status, &entry.view(now))
}

pub fn confirm(ctx: &Context, req: &Request) -> Reply {
    let entry = req.open_early(ctx, "inv.confirm");
    let cmd = parse::confirm(req.args())?;
    single(
        ctx,
        entry,
        ReplicationArgs::txid_in(cmd.txid_arg, req.call_argv()),
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
    stock_change(ctx, cmd.key, |sku, _| sku.plan_rules(&cmd.change))?;
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// `INV.CANCEL`: also takes a waiting reserve of the txid out of the queue
/// (answered CANCELLED); the cancel fences the txid as for any unknown one.
pub fn cancel(ctx: &Context, req: &Request) -> Reply {
    let entry = req.open_early(ctx, "inv.cancel");
    let cmd = parse::key_txid("inv.cancel", req.args())?;
    let now = now_ms();
    let mut entry = entry?;
    let plan = entry.sku().plan_cancel(&cmd.txid, now)?;
    STATS.count_plan(&plan);
    entry.commit_replicating(
        &plan.effects,
        &ReplicationArgs::txid_in(cmd.txid_arg, req.call_argv()),
    )?;
    let view = entry.view(now);
    waiting::cancelled(ctx, cmd.key.bytes(), &cmd.txid, view);
    waiting::serve(ctx, &mut entry);
    reply::state_available_version(ctx, plan.status, &view)
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

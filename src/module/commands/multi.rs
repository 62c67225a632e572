//! Multi-key commands: INV.MRESERVE, INV.MCONFIRM, INV.MCANCEL. Every key
//! is opened, then the core plans the command over all of them
//! (`MultiPlan`: all or nothing) and checks every key's effects before any
//! key changes.

use super::{describe, Request};
use crate::module::arg::Arg;
use crate::module::config::{max_keys, policy};
use crate::module::key::OpenKey;
use crate::module::reply::{state, Reply, WRITTEN};
use crate::module::server::now_ms;
use crate::module::stats::STATS;
use crate::module::waiting;
use inventory_core::ledger::{Effects, Error, MultiPlan, Plan, Sku, Status, TxId, View};
use inventory_core::parse::{self, Arg as _};
use redis_module::{raw, Context, RedisValue};

/// `[state, [[key, state, available, version], ...]]`
fn multi_reply(overall: Status, items: Vec<(Arg, Status, View)>) -> RedisValue {
    RedisValue::Array(vec![
        state(overall),
        RedisValue::Array(
            items
                .into_iter()
                .map(|(k, s, v)| {
                    RedisValue::Array(vec![
                        RedisValue::StringBuffer(k.bytes().to_vec()),
                        state(s),
                        RedisValue::Integer(v.available),
                        RedisValue::Integer(v.version as i64),
                    ])
                })
                .collect(),
        ),
    ])
}

/// The keys of one command, opened, with the command's plan; nothing
/// changes until `finish`.
struct Planned<'a, 'c> {
    now: u64,
    keys: Vec<Arg<'a>>,
    entries: Vec<OpenKey<'c>>,
    plan: MultiPlan,
}

fn plan_all<'a, 'c>(
    ctx: &'c Context,
    keys: Vec<Arg<'a>>,
    plan: impl FnOnce(&[&Sku], u64) -> Result<MultiPlan, Error>,
) -> Result<Planned<'a, 'c>, Error> {
    let now = now_ms();
    let entries: Vec<OpenKey> = keys
        .iter()
        .map(|&k| OpenKey::open_arg(ctx, k))
        .collect::<Result<_, _>>()?;
    let skus: Vec<&Sku> = entries.iter().map(OpenKey::sku).collect();
    let plan = plan(&skus, now)?;
    Ok(Planned {
        now,
        keys,
        entries,
        plan,
    })
}

impl Planned<'_, '_> {
    /// Commits every key's plan (each key's effects checked before any key
    /// changes), or, when the command is blocked, only counts the blocking
    /// key's answer. Then serves each key's waiters (a cancel of `cancels`
    /// also takes its waiting reserves out of their queues); the reply
    /// shows the keys as the command left them.
    fn finish(mut self, ctx: &Context, cancels: Option<&TxId>) -> Reply {
        let skus: Vec<&Sku> = self.entries.iter().map(OpenKey::sku).collect();
        let committed = self.plan.check(&skus)?;
        if committed {
            // A key whose feed stream name holds another type refuses the
            // whole command, before any key changes.
            for (e, p) in self.entries.iter().zip(&self.plan.plans) {
                e.check_feed(&p.effects)?;
            }
            for (e, p) in self.entries.iter_mut().zip(&self.plan.plans) {
                STATS.count_plan(p);
                e.commit(&p.effects)?;
            }
        } else if let Some(p) = self.plan.blocked.and_then(|i| self.plan.plans.get(i)) {
            STATS.count_plan(&Plan {
                effects: Effects::new(),
                ..p.clone()
            });
        }
        let now = self.now;
        let items: Vec<(Arg, Status, View)> = self
            .keys
            .iter()
            .zip(self.entries.iter().zip(&self.plan.plans))
            .map(|(&k, (e, p))| (k, p.status, e.view(now)))
            .collect();
        if committed {
            for (e, (k, _, view)) in self.entries.iter_mut().zip(&items) {
                if let Some(txid) = cancels {
                    waiting::cancelled(ctx, k.bytes(), txid, *view);
                }
                waiting::serve(ctx, e);
            }
        }
        Ok(multi_reply(self.plan.overall, items))
    }
}

pub fn mreserve(ctx: &Context, req: &Request) -> Reply {
    if key_positions(ctx, describe::INSERT, || parse::mreserve_keys(req.args())) {
        return Ok(WRITTEN);
    }
    let cmd = parse::mreserve(req.args(), max_keys())?;
    let p = policy();
    let keys = cmd.items.iter().map(|(k, _)| *k).collect();
    let qtys: Vec<i64> = cmd.items.iter().map(|(_, q)| *q).collect();
    let ahead = cmd
        .items
        .iter()
        .map(|(k, _)| waiting::ahead(ctx, k.bytes(), &cmd.txid, cmd.buyer.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    plan_all(ctx, keys, |skus, now| {
        let buyer = cmd.buyer.as_ref();
        MultiPlan::reserve_behind(skus, &cmd.txid, &qtys, cmd.ttl, buyer, &ahead, now, &p)
    })?
    .finish(ctx, None)
}

pub fn mconfirm(ctx: &Context, req: &Request) -> Reply {
    if key_positions(ctx, describe::UPDATE, || parse::mconfirm_keys(req.args())) {
        return Ok(WRITTEN);
    }
    let cmd = parse::mconfirm(req.args(), max_keys())?;
    let keys = cmd.items.iter().map(|(k, _)| *k).collect();
    let qtys: Vec<Option<i64>> = cmd.items.iter().map(|(_, q)| *q).collect();
    plan_all(ctx, keys, |skus, now| {
        MultiPlan::confirm(skus, &cmd.txid, &qtys, now)
    })?
    .finish(ctx, None)
}

/// When the server asks where a command's keys are (`getkeys-api`: COMMAND
/// GETKEYS, ACL key patterns, cluster routing), tells it and returns true.
fn key_positions(ctx: &Context, flags: u32, keys: impl FnOnce() -> Vec<usize>) -> bool {
    // SAFETY: ctx is the live command context; the API table is filled
    // once at load. Positions count the command name as 0.
    unsafe {
        let Some(asked) = raw::RedisModule_IsKeysPositionRequest else {
            return false;
        };
        if asked(ctx.ctx) == 0 {
            return false;
        }
        for i in keys() {
            let pos = (i + 1) as std::os::raw::c_int;
            match (
                raw::RedisModule_KeyAtPosWithFlags,
                raw::RedisModule_KeyAtPos,
            ) {
                (Some(with_flags), _) => with_flags(ctx.ctx, pos, flags as std::os::raw::c_int),
                (None, Some(at)) => at(ctx.ctx, pos),
                (None, None) => {}
            }
        }
    }
    true
}

pub fn mcancel(ctx: &Context, req: &Request) -> Reply {
    let cmd = parse::multi("inv.mcancel", req.args(), max_keys())?;
    plan_all(ctx, cmd.keys, |skus, now| {
        MultiPlan::cancel(skus, &cmd.txid, now)
    })?
    .finish(ctx, Some(&cmd.txid))
}

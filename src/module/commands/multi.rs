//! Multi-key commands: INV.MRESERVE, INV.MCONFIRM, INV.MCANCEL. Every key
//! is opened and planned, and every key's effects are checked, before any
//! key changes: a command applies all or nothing.

use super::{status, Handled, Request};
use crate::module::arg::Arg;
use crate::module::config::{max_keys, policy};
use crate::module::key::Entry;
use crate::module::server::now_ms;
use crate::module::STATS;
use inventory_core::ledger::{Effects, Error, Plan, Sku, Status, View};
use inventory_core::parse::{self, Arg as _};
use redis_module::{Context, RedisValue};

/// `[state, [[key, state, available, version], ...]]`
fn multi_reply(overall: Status, items: Vec<(Arg, Status, View)>) -> RedisValue {
    RedisValue::Array(vec![
        status(overall),
        RedisValue::Array(
            items
                .into_iter()
                .map(|(k, s, v)| {
                    RedisValue::Array(vec![
                        RedisValue::StringBuffer(k.bytes().to_vec()),
                        status(s),
                        RedisValue::Integer(v.available),
                        RedisValue::Integer(v.version as i64),
                    ])
                })
                .collect(),
        ),
    ])
}

/// The keys of one command, opened, with a plan for each; nothing changes
/// until `finish`.
struct Planned<'a, 'c> {
    now: u64,
    keys: Vec<Arg<'a>>,
    entries: Vec<Entry<'c>>,
    plans: Vec<Plan>,
}

fn plan_all<'a, 'c>(
    ctx: &'c Context,
    keys: Vec<Arg<'a>>,
    mut plan: impl FnMut(usize, &Sku, u64) -> Result<Plan, Error>,
) -> Result<Planned<'a, 'c>, Error> {
    let now = now_ms();
    let entries: Vec<Entry> = keys
        .iter()
        .map(|&k| Entry::open_arg(ctx, k))
        .collect::<Result<_, _>>()?;
    let plans = entries
        .iter()
        .enumerate()
        .map(|(i, e)| plan(i, e.sku(), now))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Planned {
        now,
        keys,
        entries,
        plans,
    })
}

impl Planned<'_, '_> {
    /// Commits every plan, or (when `blocked`) only counts the blocking one.
    /// Every key's effects are checked before any key changes.
    fn finish(mut self, overall: Status, blocked: Option<usize>) -> Handled {
        match blocked {
            Some(i) => STATS.count_plan(&Plan {
                effects: Effects::new(),
                ..self.plans[i].clone()
            }),
            None => {
                for (e, p) in self.entries.iter().zip(&self.plans) {
                    e.sku().check(&p.effects)?;
                }
                for (e, p) in self.entries.iter_mut().zip(&self.plans) {
                    STATS.count_plan(p);
                    e.commit(&p.effects)?;
                }
            }
        }
        let now = self.now;
        let items = self
            .keys
            .iter()
            .zip(self.entries.iter().zip(&self.plans))
            .map(|(&k, (e, p))| (k, p.status, e.view(now)))
            .collect();
        Ok(multi_reply(overall, items))
    }

    /// The first plan whose status is not `want`, if any.
    fn blocked(&self, want: Status) -> Option<usize> {
        self.plans.iter().position(|p| p.status != want)
    }
}

pub fn mreserve(ctx: &Context, req: &Request) -> Handled {
    let cmd = parse::mreserve(req.args(), max_keys())?;
    let p = policy();
    let keys = cmd.items.iter().map(|(k, _)| *k).collect();
    let planned = plan_all(ctx, keys, |i, sku, now| {
        let qty = cmd.items.get(i).map_or(0, |item| item.1);
        sku.plan_reserve(&cmd.txid, qty, cmd.ttl, now, &p)
    })?;
    let blocked = planned.blocked(Status::Reserved);
    let overall = blocked.map_or(Status::Reserved, |i| planned.plans[i].status);
    planned.finish(overall, blocked)
}

pub fn mconfirm(ctx: &Context, req: &Request) -> Handled {
    let cmd = parse::multi("inv.mconfirm", req.args(), max_keys())?;
    let planned = plan_all(ctx, cmd.keys, |_, sku, now| {
        Ok(sku.plan_confirm(&cmd.txid, now))
    })?;
    let blocked = planned.blocked(Status::Confirmed);
    let overall = blocked.map_or(Status::Confirmed, |i| planned.plans[i].status);
    planned.finish(overall, blocked)
}

pub fn mcancel(ctx: &Context, req: &Request) -> Handled {
    let cmd = parse::multi("inv.mcancel", req.args(), max_keys())?;
    let planned = plan_all(ctx, cmd.keys, |_, sku, now| sku.plan_cancel(&cmd.txid, now))?;
    let overall = if planned.plans.iter().any(|p| p.status == Status::Confirmed) {
        Status::Confirmed
    } else {
        Status::Cancelled
    };
    planned.finish(overall, None)
}

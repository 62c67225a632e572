//! One handler per command: parse, plan in the ledger, commit, reply.
//! No business rule lives here.

use super::config::policy;
use super::keys::{now_ms, read, Echo, Entry};
use super::STATS;
use crate::ledger::{Error, Plan, Sku, Status, TxView, View};
use crate::parse;
use redis_module::{raw, Context, ContextFlags, RedisError, RedisResult, RedisString, RedisValue};

/// The one place ledger errors become Redis error replies.
fn reply_err(e: Error) -> RedisError {
    if matches!(e, Error::TxConflict { .. }) {
        STATS.conflict();
    }
    RedisError::String(e.to_string())
}

/// The arguments after the command name, on the stack for short commands.
fn slices(args: &[RedisString]) -> smallvec::SmallVec<[&[u8]; 8]> {
    args.iter().skip(1).map(RedisString::as_slice).collect()
}

fn key(ctx: &Context, name: &[u8]) -> RedisString {
    // Binary safe: redis-module's create_string panics on NUL bytes.
    RedisString::create_from_slice(ctx.ctx, name)
}

fn status(s: Status) -> RedisValue {
    RedisValue::SimpleStringStatic(s.as_str())
}

/// `[state, available, version]`, written straight to the client.
fn outcome(ctx: &Context, s: Status, v: &View) -> RedisResult {
    // SAFETY: live command context; an array of 3 followed by 3 replies.
    unsafe {
        if let (Some(array), Some(simple), Some(int)) = (
            raw::RedisModule_ReplyWithArray,
            raw::RedisModule_ReplyWithSimpleString,
            raw::RedisModule_ReplyWithLongLong,
        ) {
            array(ctx.ctx, 3);
            simple(ctx.ctx, s.as_cstr().as_ptr());
            int(ctx.ctx, v.available);
            int(ctx.ctx, v.version as i64);
        }
    }
    Ok(RedisValue::NoReply)
}

/// Plans on one key, commits, and replies `[state, available, version]`.
fn single(
    ctx: &Context,
    args: &[RedisString],
    echo: Echo,
    plan: impl FnOnce(&Sku, u64) -> Result<Plan, Error>,
) -> RedisResult {
    let name = &args[1];
    let now = now_ms();
    let entry = Entry::open(ctx, name.safe_clone(ctx)).map_err(reply_err)?;
    let plan = plan(entry.sku(), now).map_err(reply_err)?;
    STATS.count_plan(&plan);
    entry.commit_echo(&plan.effects, &echo).map_err(reply_err)?;
    outcome(ctx, plan.status, &entry.view(now))
}

pub fn set(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let a = slices(&args);
    let cmd = parse::set(&a).map_err(reply_err)?;
    let entry = Entry::open(ctx, key(ctx, a[0])).map_err(reply_err)?;
    let plan = entry
        .sku()
        .plan_set(cmd.stock, cmd.if_version, now_ms())
        .map_err(reply_err)?;
    STATS.count_plan(&plan);
    entry.commit(&plan.effects).map_err(reply_err)?;
    Ok(RedisValue::SimpleStringStatic("OK"))
}

pub fn add(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let a = slices(&args);
    let cmd = parse::add(&a).map_err(reply_err)?;
    let now = now_ms();
    let entry = Entry::open(ctx, key(ctx, a[0])).map_err(reply_err)?;
    let plan = entry
        .sku()
        .plan_add(cmd.delta, cmd.if_version, now)
        .map_err(reply_err)?;
    STATS.count_plan(&plan);
    entry.commit(&plan.effects).map_err(reply_err)?;
    Ok(RedisValue::Integer(entry.view(now).available))
}

pub fn reserve(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let a = slices(&args);
    let cmd = parse::reserve(&a).map_err(reply_err)?;
    let p = policy();
    single(
        ctx,
        &args,
        Echo {
            txid: Some(&args[2]),
            qty: Some(&args[3]),
        },
        |sku, now| sku.plan_reserve(&cmd.txid, cmd.qty, cmd.ttl, now, &p),
    )
}

pub fn confirm(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let a = slices(&args);
    let txid = parse::key_txid("inv.confirm", &a).map_err(reply_err)?;
    single(
        ctx,
        &args,
        Echo {
            txid: Some(&args[2]),
            qty: None,
        },
        |sku, now| Ok(sku.plan_confirm(&txid, now)),
    )
}

pub fn cancel(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let a = slices(&args);
    let txid = parse::key_txid("inv.cancel", &a).map_err(reply_err)?;
    single(
        ctx,
        &args,
        Echo {
            txid: Some(&args[2]),
            qty: None,
        },
        |sku, now| Ok(sku.plan_cancel(&txid, now)),
    )
}

pub fn extend(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let a = slices(&args);
    let cmd = parse::extend(&a).map_err(reply_err)?;
    let p = policy();
    single(
        ctx,
        &args,
        Echo {
            txid: Some(&args[2]),
            qty: None,
        },
        |sku, now| sku.plan_extend(&cmd.txid, cmd.ttl_ms, now, &p),
    )
}

/// Replies field/value pairs in this order: a map in RESP3, a flat array in RESP2.
fn pairs(ctx: &Context, fields: &[(&'static str, RedisValue)]) -> RedisResult {
    // SAFETY: ctx is the live command context; ReplyWithMap is followed by
    // exactly 2 * len replies.
    unsafe {
        let Some(reply_map) = raw::RedisModule_ReplyWithMap else {
            return Err(RedisError::Str("ERR RESP map replies are not supported"));
        };
        reply_map(ctx.ctx, fields.len() as std::os::raw::c_long);
    }
    for (name, value) in fields {
        ctx.reply(Ok(RedisValue::SimpleStringStatic(name)));
        ctx.reply(Ok(value.clone()));
    }
    Ok(RedisValue::NoReply)
}

pub fn get(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let a = slices(&args);
    parse::key_only("inv.get", &a).map_err(reply_err)?;
    let now = now_ms();
    let view = read(ctx, &key(ctx, a[0]), |s| s.map(|s| s.view(now))).map_err(reply_err)?;
    let Some(v) = view else {
        return Ok(RedisValue::Null);
    };
    let i = RedisValue::Integer;
    pairs(
        ctx,
        &[
            ("stock", i(v.stock)),
            ("reserved", i(v.reserved)),
            ("available", i(v.available)),
            ("sold", i(v.sold)),
            ("version", i(v.version as i64)),
            ("open", i(v.open as i64)),
            ("records", i(v.records as i64)),
        ],
    )
}

pub fn tx(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let a = slices(&args);
    let txid = parse::key_txid("inv.tx", &a).map_err(reply_err)?;
    let now = now_ms();
    let found = read(ctx, &key(ctx, a[0]), |s| {
        s.and_then(|s| s.tx(txid.as_bytes(), now))
    })
    .map_err(reply_err)?;
    let Some(t) = found else {
        return Ok(RedisValue::Null);
    };
    pairs(
        ctx,
        &[
            ("state", RedisValue::SimpleStringStatic(t.state.as_str())),
            ("qty", RedisValue::Integer(t.qty)),
            ("deadline", RedisValue::Integer(t.time as i64)),
        ],
    )
}

fn record(t: &TxView) -> RedisValue {
    RedisValue::Array(vec![
        RedisValue::StringBuffer(t.txid.as_bytes().to_vec()),
        RedisValue::SimpleStringStatic(t.state.as_str()),
        RedisValue::Integer(t.qty),
        RedisValue::Integer(t.time as i64),
    ])
}

pub fn scan(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let a = slices(&args);
    let cmd = parse::scan(&a).map_err(reply_err)?;
    let now = now_ms();
    let (next, recs) = read(ctx, &key(ctx, a[0]), |s| match s {
        Some(s) => s.scan(cmd.cursor, cmd.count, now),
        None => (0, Vec::new()),
    })
    .map_err(reply_err)?;
    Ok(RedisValue::Array(vec![
        RedisValue::BulkString(next.to_string()),
        RedisValue::Array(recs.iter().map(record).collect()),
    ]))
}

pub fn audit(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let a = slices(&args);
    parse::key_only("inv.audit", &a).map_err(reply_err)?;
    let result = read(ctx, &key(ctx, a[0]), |s| s.map_or(Ok(()), Sku::audit)).map_err(reply_err)?;
    if result.is_err() {
        STATS.audit_failed();
    }
    result.map_err(reply_err)?;
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// `[state, [[key, state, available, version], ...]]`
fn multi_reply(overall: Status, items: Vec<(&[u8], Status, View)>) -> RedisValue {
    RedisValue::Array(vec![
        status(overall),
        RedisValue::Array(
            items
                .into_iter()
                .map(|(k, s, v)| {
                    RedisValue::Array(vec![
                        RedisValue::StringBuffer(k.to_vec()),
                        status(s),
                        RedisValue::Integer(v.available),
                        RedisValue::Integer(v.version as i64),
                    ])
                })
                .collect(),
        ),
    ])
}

/// Opens every key and plans on each; nothing changes until `commit_all`.
fn plan_all<'c>(
    ctx: &'c Context,
    keys: &[&[u8]],
    mut plan: impl FnMut(usize, &Sku, u64) -> Result<Plan, Error>,
) -> Result<(u64, Vec<Entry<'c>>, Vec<Plan>), RedisError> {
    let now = now_ms();
    let entries: Vec<Entry> = keys
        .iter()
        .map(|k| Entry::open(ctx, key(ctx, k)))
        .collect::<Result<_, _>>()
        .map_err(reply_err)?;
    let plans = entries
        .iter()
        .enumerate()
        .map(|(i, e)| plan(i, e.sku(), now))
        .collect::<Result<Vec<_>, _>>()
        .map_err(reply_err)?;
    Ok((now, entries, plans))
}

/// Commits every plan, or (when `blocked`) only counts the blocking one.
fn finish(
    keys: &[&[u8]],
    now: u64,
    entries: &[Entry],
    plans: &[Plan],
    overall: Status,
    blocked: Option<usize>,
) -> RedisResult {
    match blocked {
        Some(i) => STATS.count_plan(&Plan {
            effects: crate::ledger::Effects::new(),
            ..plans[i].clone()
        }),
        None => {
            for (e, p) in entries.iter().zip(plans) {
                STATS.count_plan(p);
                e.commit(&p.effects).map_err(reply_err)?;
            }
        }
    }
    let items = keys
        .iter()
        .zip(entries.iter().zip(plans))
        .map(|(k, (e, p))| (*k, p.status, e.view(now)))
        .collect();
    Ok(multi_reply(overall, items))
}

pub fn mreserve(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let a = slices(&args);
    let cmd = parse::mreserve(&a).map_err(reply_err)?;
    let p = policy();
    let keys: Vec<&[u8]> = cmd.items.iter().map(|(k, _)| *k).collect();
    let (now, entries, plans) = plan_all(ctx, &keys, |i, sku, now| {
        sku.plan_reserve(&cmd.txid, cmd.items[i].1, cmd.ttl, now, &p)
    })?;
    let blocked = plans.iter().position(|p| p.status != Status::Reserved);
    let overall = blocked.map_or(Status::Reserved, |i| plans[i].status);
    finish(&keys, now, &entries, &plans, overall, blocked)
}

pub fn mconfirm(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let a = slices(&args);
    let cmd = parse::multi("inv.mconfirm", &a).map_err(reply_err)?;
    let (now, entries, plans) = plan_all(ctx, &cmd.keys, |_, sku, now| {
        Ok(sku.plan_confirm(&cmd.txid, now))
    })?;
    let blocked = plans.iter().position(|p| p.status != Status::Confirmed);
    let overall = blocked.map_or(Status::Confirmed, |i| plans[i].status);
    finish(&cmd.keys, now, &entries, &plans, overall, blocked)
}

pub fn mcancel(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let a = slices(&args);
    let cmd = parse::multi("inv.mcancel", &a).map_err(reply_err)?;
    let (now, entries, plans) = plan_all(ctx, &cmd.keys, |_, sku, now| {
        Ok(sku.plan_cancel(&cmd.txid, now))
    })?;
    let overall = if plans.iter().any(|p| p.status == Status::Confirmed) {
        Status::Confirmed
    } else {
        Status::Cancelled
    };
    finish(&cmd.keys, now, &entries, &plans, overall, None)
}

/// `INV.APPLY key <effect>`: the replication and AOF form of every change.
/// Accepted only from a master's stream or while loading, where it applies
/// the effect exactly, without consulting any clock or config.
pub fn apply(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let flags = ctx.get_flags();
    if !flags.intersects(ContextFlags::REPLICATED | ContextFlags::LOADING) {
        return Err(RedisError::Str(
            "ERR INV.APPLY is internal: accepted only from a master's replication stream or an AOF being loaded",
        ));
    }
    let a = slices(&args);
    let effect = parse::apply(&a).map_err(reply_err)?;
    let entry = Entry::open(ctx, key(ctx, a[0])).map_err(reply_err)?;
    if let Err(e) = entry.commit(std::slice::from_ref(&effect)) {
        ctx.log_warning(&format!("inventory: INV.APPLY on a key out of step: {e}"));
        return Err(reply_err(e));
    }
    Ok(RedisValue::SimpleStringStatic("OK"))
}

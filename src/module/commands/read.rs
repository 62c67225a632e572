//! Reads: INV.GET, INV.TX, INV.SCAN, INV.AUDIT, INV.BUYER, INV.FEED. They open their key for
//! reading and change nothing.

use super::Request;
use crate::module::key::read;
use crate::module::reply::{pairs, state, Reply};
use crate::module::server::now_ms;
use crate::module::stats::STATS;
use inventory_core::ledger::{stream_name, Sku, TxView};
use inventory_core::parse;
use inventory_core::parse::Arg as _;
use redis_module::{Context, RedisValue};

pub fn get(ctx: &Context, req: &Request) -> Reply {
    let cmd = parse::key_only("inv.get", req.args())?;
    let now = now_ms();
    let Some((v, rules)) = read(ctx, cmd.key, |s| s.map(|s| (s.view(now), s.rules())))? else {
        return Ok(RedisValue::Null);
    };
    let i = RedisValue::Integer;
    let mut fields: Vec<_> = v.fields().map(|(name, value)| (name, i(value))).into();
    // Only the rules that are set: readers of the fields above keep working.
    fields.extend(rules.set().map(|(name, value)| (name, i(value as i64))));
    pairs(ctx, &fields)
}

/// `INV.FEED key`: the name of the key's feed stream, whether or not the
/// key exists or its feed is on (the name depends on the key's name only).
pub fn feed(_ctx: &Context, req: &Request) -> Reply {
    let cmd = parse::key_only("inv.feed", req.args())?;
    Ok(RedisValue::StringBuffer(stream_name(cmd.key.bytes())))
}

pub fn buyer(ctx: &Context, req: &Request) -> Reply {
    let cmd = parse::buyer(req.args())?;
    let v = read(ctx, cmd.key, |s| {
        s.map(|s| s.buyer(cmd.buyer.as_bytes())).unwrap_or_default()
    })?;
    pairs(
        ctx,
        &[
            ("held", RedisValue::Integer(v.held)),
            ("bought", RedisValue::Integer(v.bought)),
        ],
    )
}

pub fn tx(ctx: &Context, req: &Request) -> Reply {
    let cmd = parse::key_txid("inv.tx", req.args())?;
    let now = now_ms();
    let found = read(ctx, cmd.key, |s| {
        s.and_then(|s| s.tx(cmd.txid.as_bytes(), now))
    })?;
    let Some(t) = found else {
        return Ok(RedisValue::Null);
    };
    let mut fields = vec![
        ("state", state(t.state.into())),
        ("qty", RedisValue::Integer(t.qty)),
        ("deadline", RedisValue::Integer(t.time as i64)),
        ("sold", RedisValue::Integer(t.sold)),
    ];
    if let Some(b) = &t.buyer {
        fields.push(("buyer", RedisValue::StringBuffer(b.as_bytes().to_vec())));
    }
    pairs(ctx, &fields)
}

fn record(t: &TxView) -> RedisValue {
    RedisValue::Array(vec![
        RedisValue::StringBuffer(t.txid.as_bytes().to_vec()),
        state(t.state.into()),
        RedisValue::Integer(t.qty),
        RedisValue::Integer(t.time as i64),
        RedisValue::Integer(t.sold),
    ])
}

pub fn scan(ctx: &Context, req: &Request) -> Reply {
    let cmd = parse::scan(req.args())?;
    let now = now_ms();
    let (next, recs) = read(ctx, cmd.key, |s| match s {
        Some(s) => s.scan(cmd.cursor, cmd.count, now),
        None => (0, Vec::new()),
    })?;
    Ok(RedisValue::Array(vec![
        RedisValue::BulkString(next.to_string()),
        RedisValue::Array(recs.iter().map(record).collect()),
    ]))
}

pub fn audit(ctx: &Context, req: &Request) -> Reply {
    let cmd = parse::key_only("inv.audit", req.args())?;
    let result = read(ctx, cmd.key, |s| s.map_or(Ok(()), Sku::audit))?;
    if result.is_err() {
        STATS.audit_failed();
    }
    result?;
    Ok(RedisValue::SimpleStringStatic("OK"))
}

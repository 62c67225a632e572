//! One handler per command: parse, plan in the ledger, commit, reply.
//! No business rule lives here.

use super::config::{max_keys, policy};
use super::keys::{read, Echo, Entry};
use super::server::{log, now_ms, Level};
use super::{reply, STATS};
use inventory_core::ledger::{Error, Plan, Sku, Status, TxView, View};
use inventory_core::parse;
use redis_module::{raw, Context, ContextFlags, RedisString, RedisValue};
use std::ffi::CString;
use std::os::raw::c_int;

/// What a handler returns: a reply to write (or `NoReply` when it wrote its
/// own), or the error `reply::error` writes.
type Handled = Result<RedisValue, Error>;

/// A command's arguments as Redis passed them (the name at 0).
#[derive(Clone, Copy)]
pub struct Argv<'a>(&'a [*mut raw::RedisModuleString]);

impl<'a> Argv<'a> {
    fn bytes(self, i: usize) -> &'a [u8] {
        self.0
            .get(i)
            .map_or(&[], |&s| RedisString::string_as_slice(s))
    }

    /// The arguments after the command name, on the stack for short commands.
    fn slices(self) -> smallvec::SmallVec<[&'a [u8]; 8]> {
        let rest = self.0.get(1..).unwrap_or(&[]);
        if rest.len() > 8 {
            return rest
                .iter()
                .map(|&s| RedisString::string_as_slice(s))
                .collect();
        }
        // Filled in place: collecting through the iterator costs more than
        // the arguments' own lookups on the hottest commands.
        let mut buf: [&[u8]; 8] = [&[]; 8];
        for (slot, &s) in buf.iter_mut().zip(rest) {
            *slot = RedisString::string_as_slice(s);
        }
        smallvec::SmallVec::from_buf_and_len(buf, rest.len())
    }

    fn raw(self, i: usize) -> *mut raw::RedisModuleString {
        self.0.get(i).copied().unwrap_or(std::ptr::null_mut())
    }
}

/// Calls a handler with Redis's argv and writes its reply. Inlined into
/// each command's trampoline, so the handler is a direct call.
#[inline(always)]
fn dispatch(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
    handler: fn(&Context, Argv) -> Handled,
) -> c_int {
    let context = Context::new(ctx);
    let args: &[*mut raw::RedisModuleString] = if argv.is_null() || argc <= 0 {
        &[]
    } else {
        // SAFETY: Redis passes `argc` valid argument strings for the call.
        unsafe { std::slice::from_raw_parts(argv, argc as usize) }
    };
    match handler(&context, Argv(args)) {
        // Written by the handler itself (the hot single-key replies).
        Ok(RedisValue::NoReply) => {}
        // Replies of our own words and of client bytes as buffers: nothing
        // that redis-module turns into a C string.
        Ok(value) => {
            context.reply(Ok(value));
        }
        Err(e) => reply::error(&context, &e),
    }
    raw::REDISMODULE_OK as c_int
}

/// Registers one command with legacy key positions (first, last, step), the
/// form Redis 7.0 and Valkey 8.1 both accept.
fn create(
    ctx: &Context,
    name: &str,
    func: raw::RedisModuleCmdFunc,
    flags: &str,
    keys: (c_int, c_int, c_int),
) -> Result<(), String> {
    let (Ok(cname), Ok(cflags)) = (CString::new(name), CString::new(flags)) else {
        return Err(format!("bad command name {name}"));
    };
    // SAFETY: ctx is the load context; the strings outlive the call.
    let status = unsafe {
        raw::RedisModule_CreateCommand.map_or(raw::REDISMODULE_ERR as c_int, |f| {
            f(
                ctx.ctx,
                cname.as_ptr(),
                func,
                cflags.as_ptr(),
                keys.0,
                keys.1,
                keys.2,
            )
        })
    };
    if status == raw::REDISMODULE_OK as c_int {
        Ok(())
    } else {
        Err(format!("cannot register {name}"))
    }
}

macro_rules! command_table {
    ($($name:literal => $handler:ident, $flags:literal, $keys:expr;)*) => {
        /// Registers every command.
        pub fn register(ctx: &Context) -> Result<(), String> {
            $({
                extern "C" fn trampoline(
                    ctx: *mut raw::RedisModuleCtx,
                    argv: *mut *mut raw::RedisModuleString,
                    argc: c_int,
                ) -> c_int {
                    dispatch(ctx, argv, argc, $handler)
                }
                create(ctx, $name, Some(trampoline), $flags, $keys)?;
            })*
            Ok(())
        }
    };
}

// Keys first so cluster routing, COMMAND GETKEYS and ACL key patterns work.
command_table! {
    "inv.set" => set, "write deny-oom", (1, 1, 1);
    "inv.add" => add, "write deny-oom", (1, 1, 1);
    "inv.get" => get, "readonly fast", (1, 1, 1);
    "inv.reserve" => reserve, "write deny-oom", (1, 1, 1);
    "inv.confirm" => confirm, "write deny-oom", (1, 1, 1);
    "inv.cancel" => cancel, "write deny-oom", (1, 1, 1);
    "inv.extend" => extend, "write deny-oom", (1, 1, 1);
    "inv.tx" => tx, "readonly fast", (1, 1, 1);
    "inv.mreserve" => mreserve, "write deny-oom", (3, -1, 2);
    "inv.mconfirm" => mconfirm, "write deny-oom", (2, -1, 1);
    "inv.mcancel" => mcancel, "write deny-oom", (2, -1, 1);
    "inv.scan" => scan, "readonly", (1, 1, 1);
    "inv.audit" => audit, "readonly", (1, 1, 1);
    "inv.apply" => apply, "write", (1, 1, 1);
}

fn key(ctx: &Context, name: &[u8]) -> RedisString {
    // Binary safe: redis-module's create_string panics on NUL bytes.
    RedisString::create_from_slice(ctx.ctx, name)
}

fn status(s: Status) -> RedisValue {
    RedisValue::BulkString(s.as_str().to_string())
}

/// `[state, available, version]`, written straight to the client.
fn outcome(ctx: &Context, s: Status, v: &View) -> Handled {
    // SAFETY: live command context; an array of 3 followed by 3 replies.
    unsafe {
        if let (Some(array), Some(bulk), Some(int)) = (
            raw::RedisModule_ReplyWithArray,
            raw::RedisModule_ReplyWithStringBuffer,
            raw::RedisModule_ReplyWithLongLong,
        ) {
            array(ctx.ctx, 3);
            // A bulk string: the simple-string API copies and scans its input.
            let word = s.as_str();
            bulk(ctx.ctx, word.as_ptr().cast(), word.len());
            int(ctx.ctx, v.available);
            int(ctx.ctx, v.version as i64);
        }
    }
    Ok(RedisValue::NoReply)
}

/// Opens the key of `CMD key txid ...` before the arguments are parsed and
/// starts loading the txid's index line, so that on a key with a million
/// records the memory access overlaps with parsing instead of stalling the
/// lookup (docs/benchmarks.md). Opening a key changes nothing; its error
/// (WRONGTYPE) is reported only once the arguments have parsed.
fn open_early<'c>(ctx: &'c Context, args: Argv, name: &'static str) -> Result<Entry<'c>, Error> {
    if args.0.len() < 3 {
        return Err(Error::Arity(name));
    }
    let entry = Entry::open_arg(ctx, args.raw(1))?;
    entry.sku().prefetch(args.bytes(2));
    Ok(entry)
}

/// Plans on an opened key, commits, and replies `[state, available, version]`.
fn single(
    ctx: &Context,
    entry: Result<Entry, Error>,
    echo: Echo,
    plan: impl FnOnce(&Sku, u64) -> Result<Plan, Error>,
) -> Handled {
    let now = now_ms();
    let mut entry = entry?;
    let plan = plan(entry.sku(), now)?;
    STATS.count_plan(&plan);
    entry.commit_echo(&plan.effects, &echo)?;
    outcome(ctx, plan.status, &entry.view(now))
}

pub fn set(ctx: &Context, args: Argv) -> Handled {
    let a = args.slices();
    let cmd = parse::set(&a)?;
    let mut entry = Entry::open_arg(ctx, args.raw(1))?;
    let plan = entry.sku().plan_set(cmd.stock, cmd.if_version, now_ms())?;
    STATS.count_plan(&plan);
    entry.commit(&plan.effects)?;
    Ok(RedisValue::SimpleStringStatic("OK"))
}

pub fn add(ctx: &Context, args: Argv) -> Handled {
    let a = args.slices();
    let cmd = parse::add(&a)?;
    let now = now_ms();
    let mut entry = Entry::open_arg(ctx, args.raw(1))?;
    let plan = entry.sku().plan_add(cmd.delta, cmd.if_version, now)?;
    STATS.count_plan(&plan);
    entry.commit(&plan.effects)?;
    Ok(RedisValue::Integer(entry.view(now).available))
}

pub fn reserve(ctx: &Context, args: Argv) -> Handled {
    let entry = open_early(ctx, args, "inv.reserve");
    let a = args.slices();
    let cmd = parse::reserve(&a)?;
    let p = policy();
    single(
        ctx,
        entry,
        Echo {
            txid: Some(args.raw(2)),
            qty: Some(args.raw(3)),
        },
        |sku, now| sku.plan_reserve(&cmd.txid, cmd.qty, cmd.ttl, now, &p),
    )
}

pub fn confirm(ctx: &Context, args: Argv) -> Handled {
    by_txid(ctx, args, "inv.confirm", |sku, txid, now| {
        Ok(sku.plan_confirm(txid, now))
    })
}

pub fn cancel(ctx: &Context, args: Argv) -> Handled {
    by_txid(ctx, args, "inv.cancel", Sku::plan_cancel)
}

/// `CMD key txid`: commands whose only argument is the txid.
fn by_txid(
    ctx: &Context,
    args: Argv,
    name: &'static str,
    plan: fn(&Sku, &inventory_core::ledger::TxId, u64) -> Result<Plan, Error>,
) -> Handled {
    let entry = open_early(ctx, args, name);
    let txid = parse::key_txid(name, &args.slices())?;
    single(ctx, entry, Echo::txid(args.raw(2)), |sku, now| {
        plan(sku, &txid, now)
    })
}

pub fn extend(ctx: &Context, args: Argv) -> Handled {
    let entry = open_early(ctx, args, "inv.extend");
    let a = args.slices();
    let cmd = parse::extend(&a)?;
    let p = policy();
    single(ctx, entry, Echo::txid(args.raw(2)), |sku, now| {
        sku.plan_extend(&cmd.txid, cmd.ttl_ms, now, &p)
    })
}

/// Replies field/value pairs in this order: a map in RESP3, a flat array in RESP2.
fn pairs(ctx: &Context, fields: &[(&'static str, RedisValue)]) -> Handled {
    // SAFETY: ctx is the live command context; ReplyWithMap is followed by
    // exactly 2 * len replies.
    unsafe {
        let Some(reply_map) = raw::RedisModule_ReplyWithMap else {
            return Err(Error::invalid("RESP map replies are not supported"));
        };
        reply_map(ctx.ctx, fields.len() as std::os::raw::c_long);
    }
    for (name, value) in fields {
        ctx.reply(Ok(RedisValue::BulkString((*name).to_string())));
        ctx.reply(Ok(value.clone()));
    }
    Ok(RedisValue::NoReply)
}

pub fn get(ctx: &Context, args: Argv) -> Handled {
    let a = args.slices();
    parse::key_only("inv.get", &a)?;
    let now = now_ms();
    let view = read(ctx, &key(ctx, a[0]), |s| s.map(|s| s.view(now)))?;
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

pub fn tx(ctx: &Context, args: Argv) -> Handled {
    let a = args.slices();
    let txid = parse::key_txid("inv.tx", &a)?;
    let now = now_ms();
    let found = read(ctx, &key(ctx, a[0]), |s| {
        s.and_then(|s| s.tx(txid.as_bytes(), now))
    })?;
    let Some(t) = found else {
        return Ok(RedisValue::Null);
    };
    pairs(
        ctx,
        &[
            (
                "state",
                RedisValue::BulkString(t.state.as_str().to_string()),
            ),
            ("qty", RedisValue::Integer(t.qty)),
            ("deadline", RedisValue::Integer(t.time as i64)),
        ],
    )
}

fn record(t: &TxView) -> RedisValue {
    RedisValue::Array(vec![
        RedisValue::StringBuffer(t.txid.as_bytes().to_vec()),
        RedisValue::BulkString(t.state.as_str().to_string()),
        RedisValue::Integer(t.qty),
        RedisValue::Integer(t.time as i64),
    ])
}

pub fn scan(ctx: &Context, args: Argv) -> Handled {
    let a = args.slices();
    let cmd = parse::scan(&a)?;
    let now = now_ms();
    let (next, recs) = read(ctx, &key(ctx, a[0]), |s| match s {
        Some(s) => s.scan(cmd.cursor, cmd.count, now),
        None => (0, Vec::new()),
    })?;
    Ok(RedisValue::Array(vec![
        RedisValue::BulkString(next.to_string()),
        RedisValue::Array(recs.iter().map(record).collect()),
    ]))
}

pub fn audit(ctx: &Context, args: Argv) -> Handled {
    let a = args.slices();
    parse::key_only("inv.audit", &a)?;
    let result = read(ctx, &key(ctx, a[0]), |s| s.map_or(Ok(()), Sku::audit))?;
    if result.is_err() {
        STATS.audit_failed();
    }
    result?;
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
) -> Result<(u64, Vec<Entry<'c>>, Vec<Plan>), Error> {
    let now = now_ms();
    let entries: Vec<Entry> = keys
        .iter()
        .map(|k| Entry::open(ctx, key(ctx, k)))
        .collect::<Result<_, _>>()?;
    let plans = entries
        .iter()
        .enumerate()
        .map(|(i, e)| plan(i, e.sku(), now))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((now, entries, plans))
}

/// Commits every plan, or (when `blocked`) only counts the blocking one.
/// Every key's effects are checked before any key changes, so the command
/// applies all or nothing.
fn finish(
    keys: &[&[u8]],
    now: u64,
    entries: &mut [Entry],
    plans: &[Plan],
    overall: Status,
    blocked: Option<usize>,
) -> Handled {
    match blocked {
        Some(i) => STATS.count_plan(&Plan {
            effects: inventory_core::ledger::Effects::new(),
            ..plans[i].clone()
        }),
        None => {
            for (e, p) in entries.iter().zip(plans) {
                e.sku().check(&p.effects)?;
            }
            for (e, p) in entries.iter_mut().zip(plans) {
                STATS.count_plan(p);
                e.commit(&p.effects)?;
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

pub fn mreserve(ctx: &Context, args: Argv) -> Handled {
    let a = args.slices();
    let cmd = parse::mreserve(&a, max_keys())?;
    let p = policy();
    let keys: Vec<&[u8]> = cmd.items.iter().map(|(k, _)| *k).collect();
    let (now, mut entries, plans) = plan_all(ctx, &keys, |i, sku, now| {
        sku.plan_reserve(&cmd.txid, cmd.items[i].1, cmd.ttl, now, &p)
    })?;
    let blocked = plans.iter().position(|p| p.status != Status::Reserved);
    let overall = blocked.map_or(Status::Reserved, |i| plans[i].status);
    finish(&keys, now, &mut entries, &plans, overall, blocked)
}

pub fn mconfirm(ctx: &Context, args: Argv) -> Handled {
    let a = args.slices();
    let cmd = parse::multi("inv.mconfirm", &a, max_keys())?;
    let (now, mut entries, plans) = plan_all(ctx, &cmd.keys, |_, sku, now| {
        Ok(sku.plan_confirm(&cmd.txid, now))
    })?;
    let blocked = plans.iter().position(|p| p.status != Status::Confirmed);
    let overall = blocked.map_or(Status::Confirmed, |i| plans[i].status);
    finish(&cmd.keys, now, &mut entries, &plans, overall, blocked)
}

pub fn mcancel(ctx: &Context, args: Argv) -> Handled {
    let a = args.slices();
    let cmd = parse::multi("inv.mcancel", &a, max_keys())?;
    let (now, mut entries, plans) = plan_all(ctx, &cmd.keys, |_, sku, now| {
        sku.plan_cancel(&cmd.txid, now)
    })?;
    let overall = if plans.iter().any(|p| p.status == Status::Confirmed) {
        Status::Confirmed
    } else {
        Status::Cancelled
    };
    finish(&cmd.keys, now, &mut entries, &plans, overall, None)
}

/// `INV.APPLY key <effect>`: the replication and AOF form of every change.
/// Accepted only from a master's stream or while loading, where it applies
/// the effect exactly, without consulting any clock or config.
pub fn apply(ctx: &Context, args: Argv) -> Handled {
    let flags = ctx.get_flags();
    if !flags.intersects(ContextFlags::REPLICATED | ContextFlags::LOADING) {
        return Err(Error::invalid(
            "INV.APPLY is internal: accepted only from a master's replication stream or an AOF being loaded",
        ));
    }
    let a = args.slices();
    let effect = parse::apply(&a)?;
    let mut entry = Entry::open_arg(ctx, args.raw(1))?;
    if let Err(e) = entry.commit(std::slice::from_ref(&effect)) {
        log(
            Level::Warning,
            &format!("INV.APPLY on a key out of step: {e}"),
        );
        return Err(e);
    }
    Ok(RedisValue::SimpleStringStatic("OK"))
}

//! One handler per command: parse (into a command that keeps handles to its
//! own arguments), plan in the ledger, commit, reply. No business rule lives
//! here. Writes to one key are in `write.rs`, reads in `read.rs`, multi-key
//! commands in `multi.rs`, the replication form in `apply.rs`.

mod apply;
mod describe;
mod multi;
mod read;
mod write;

use super::arg::Arg;
use super::key::OpenKey;
use super::propagation::CallArgv;
use super::reply::{self, Reply};
use describe::Arg as DocArg;
use inventory_core::ledger::Error;
use inventory_core::parse::Arg as _;
use redis_module::{raw, Context};
use std::ffi::{CStr, CString};
use std::os::raw::c_int;

/// The arguments after the command name, each read once, and the call's
/// own argument array.
pub struct Request<'a> {
    args: &'a [Arg<'a>],
    /// The call's own argument array (the command name included), for
    /// replication to pass on (`CallArgv`).
    argv: CallArgv,
}

/// Most arguments a command reads into a buffer on the stack; longer
/// commands (multi-key ones) read theirs into a vector.
const STACK_ARGS: usize = 8;

impl<'a> Request<'a> {
    /// The call's argument array, for `ReplicationArgs::reserve`.
    pub fn call_argv(&self) -> CallArgv {
        self.argv
    }

    /// For the parsers.
    pub fn args(&self) -> &[Arg<'a>] {
        self.args
    }

    /// For `CMD key txid ...`: opens the key before the arguments are parsed
    /// and starts loading the txid's index line, so that on a key with a
    /// million records the memory access overlaps with parsing instead of
    /// stalling the lookup (docs/benchmarks.md). Opening a key changes
    /// nothing; its error (WRONGTYPE) is reported only once the arguments
    /// have parsed, so malformed arguments win.
    pub fn open_early<'c>(
        &self,
        ctx: &'c Context,
        cmd: &'static str,
    ) -> Result<OpenKey<'c>, Error> {
        let [key, txid, ..] = self.args[..] else {
            return Err(Error::Arity(cmd));
        };
        let entry = OpenKey::open_arg(ctx, key)?;
        entry.sku().prefetch(txid.bytes());
        // INV.RESERVE's `BUYER id` sits after qty or after `TTL ms`.
        for at in [3, 5] {
            if let [w, id, ..] = self.args.get(at..).unwrap_or(&[]) {
                if w.bytes().eq_ignore_ascii_case(b"BUYER") {
                    entry.sku().prefetch_buyer(id.bytes());
                }
            }
        }
        Ok(entry)
    }
}

/// Calls a handler with Redis's argv and writes its reply. Inlined into
/// each command's trampoline, so the handler is a direct call.
#[inline(always)]
fn dispatch(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
    handler: fn(&Context, &Request) -> Reply,
) -> c_int {
    let context = Context::new(ctx);
    let (raw_argv, argv): (CallArgv, &[*mut raw::RedisModuleString]) =
        if argv.is_null() || argc <= 0 {
            (CallArgv::NONE, &[])
        } else {
            // SAFETY: Redis passes `argc` valid argument strings for the
            // call, in the calling client's own array, alive until it returns.
            unsafe {
                (
                    CallArgv::new(argv, argc as usize),
                    std::slice::from_raw_parts(argv, argc as usize),
                )
            }
        };
    let rest = argv.get(1..).unwrap_or(&[]);
    let mut buf = [Arg::EMPTY; STACK_ARGS];
    let long: Vec<Arg>;
    let args: &[Arg] = if rest.len() > STACK_ARGS {
        long = rest.iter().map(|&s| Arg::new(s)).collect();
        &long
    } else {
        // Filled in place, in the caller's frame: nothing is moved or
        // copied afterwards (docs/benchmarks.md measured what a returned
        // vector costs).
        for (slot, &s) in buf.iter_mut().zip(rest) {
            *slot = Arg::new(s);
        }
        &buf[..rest.len()]
    };
    let req = Request {
        args,
        argv: raw_argv,
    };
    reply::send(&context, handler(&context, &req));
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
    ($($name:literal => $handler:path, $flags:literal, $keys:expr, $arity:literal, $key_flags:expr,
       $categories:literal, $summary:literal, $complexity:expr, $args:expr;)*) => {
        /// Registers every command and describes it to the server.
        pub fn register(ctx: &Context) -> Result<(), String> {
            let with_category = describe::add_category(ctx);
            $({
                extern "C" fn trampoline(
                    ctx: *mut raw::RedisModuleCtx,
                    argv: *mut *mut raw::RedisModuleString,
                    argc: c_int,
                ) -> c_int {
                    dispatch(ctx, argv, argc, $handler)
                }
                create(ctx, $name, Some(trampoline), $flags, $keys)?;
                let described = describe::Info {
                    arity: $arity,
                    key_flags: $key_flags,
                    categories: $categories,
                    summary: $summary,
                    complexity: $complexity,
                    args: $args,
                };
                let name = CString::new($name).map_err(|_| format!("bad command name {}", $name))?;
                describe::describe(ctx, &name, $keys, &described, with_category)?;
            })*
            Ok(())
        }
    };
}

// The arguments `COMMAND DOCS` lists (redis-cli's hints).
const KEY: DocArg = DocArg::key(c"key");
const TXID: DocArg = DocArg::text(c"txid");
const IFVERSION: DocArg = DocArg::int(c"version").token(c"IFVERSION").optional();
const SET: &[DocArg] = &[KEY, DocArg::int(c"stock"), IFVERSION];
const ADD: &[DocArg] = &[KEY, DocArg::int(c"delta"), IFVERSION];
const ONE_KEY: &[DocArg] = &[KEY];
const KEY_TXID: &[DocArg] = &[KEY, TXID];
const BUYER: DocArg = DocArg::text(c"buyer").token(c"BUYER").optional();
const RESERVE: &[DocArg] = &[
    KEY,
    TXID,
    DocArg::int(c"qty"),
    DocArg::one_of(
        c"deadline",
        &[
            DocArg::int(c"ms").token(c"TTL"),
            DocArg::unix_time(c"unix-time-milliseconds").token(c"PXAT"),
        ],
    )
    .optional(),
    BUYER,
    DocArg::int(c"ms").token(c"BLOCK").optional(),
];
const QTY: DocArg = DocArg::int(c"qty").token(c"QTY").optional();
const CONFIRM: &[DocArg] = &[KEY, TXID, QTY];
const ADJUST: &[DocArg] = &[KEY, TXID, DocArg::int(c"qty")];
const RULES: &[DocArg] = &[
    KEY,
    DocArg::int(c"limit").token(c"LIMIT").optional(),
    DocArg::unix_time(c"start").token(c"START").optional(),
    DocArg::unix_time(c"end").token(c"END").optional(),
    DocArg::one_of(
        c"feed",
        &[
            DocArg::pure_token(c"on", c"ON"),
            DocArg::pure_token(c"off", c"OFF"),
        ],
    )
    .token(c"FEED")
    .optional(),
    DocArg::int(c"low").token(c"LOW").optional(),
    DocArg::pure_token(c"newsale", c"NEWSALE").optional(),
];
const BUYER_READ: &[DocArg] = &[KEY, DocArg::text(c"buyer")];
const EXTEND: &[DocArg] = &[KEY, TXID, DocArg::int(c"ttl-ms")];
const MRESERVE: &[DocArg] = &[
    TXID,
    BUYER,
    DocArg::int(c"ttl-ms"),
    DocArg::block(c"item", &[KEY, DocArg::int(c"qty")]).multiple(),
];
const MCONFIRM: &[DocArg] = &[TXID, DocArg::block(c"item", &[KEY, QTY]).multiple()];
const MULTI: &[DocArg] = &[TXID, KEY.multiple()];
const SCAN: &[DocArg] = &[
    KEY,
    DocArg::int(c"cursor"),
    DocArg::int(c"count").token(c"COUNT").optional(),
];
const APPLY: &[DocArg] = &[KEY, DocArg::text(c"effect").multiple()];

// Complexities `COMMAND DOCS` states: a change planned on a key (which may
// first expire due reservations, at most 1,000), a change of one record,
// and the multi-key commands.
const PLANNED: &CStr =
    c"O(log N) for N records on the key, plus at most 1,000 due reservations expired on the way";
const ONE_RECORD: &CStr = c"O(log N) for N records on the key";
const PER_KEY: &CStr = c"O(K log N) for K keys of at most N records each";

// Keys first so cluster routing, COMMAND GETKEYS and ACL key patterns work.
// Columns: handler, flags, legacy key positions, arity (negative: at least),
// what the command does to its keys, ACL categories, summary, complexity,
// arguments.
command_table! {
    "inv.set" => write::set, "write deny-oom", (1, 1, 1), -3, describe::WRITE, "write",
        c"Sets a SKU's stock, creating the key", PLANNED, SET;
    "inv.add" => write::add, "write deny-oom", (1, 1, 1), -3, describe::UPDATE, "write",
        c"Adds to (or takes from) a SKU's stock", PLANNED, ADD;
    "inv.get" => read::get, "readonly fast", (1, 1, 1), 2, describe::READ, "read fast",
        c"Returns a SKU's stock, reserved, available, sold, version and record counts", c"O(1)", ONE_KEY;
    "inv.reserve" => write::reserve, "write deny-oom", (1, 1, 1), -4, describe::INSERT, "write",
        c"Reserves units for a transaction id, idempotently, until a deadline; with BLOCK, waits in line for returned units", PLANNED, RESERVE;
    "inv.confirm" => write::confirm, "write deny-oom", (1, 1, 1), -3, describe::UPDATE, "write",
        c"Confirms a reservation (or part of it): its units become sold", ONE_RECORD, CONFIRM;
    "inv.cancel" => write::cancel, "write deny-oom", (1, 1, 1), 3, describe::UPDATE, "write",
        c"Cancels a reservation, or fences a transaction id that has not reserved yet", ONE_RECORD, KEY_TXID;
    "inv.extend" => write::extend, "write deny-oom", (1, 1, 1), 4, describe::UPDATE, "write",
        c"Moves an open reservation's deadline", ONE_RECORD, EXTEND;
    "inv.adjust" => write::adjust, "write deny-oom", (1, 1, 1), 4, describe::UPDATE, "write",
        c"Changes an open reservation's quantity in place", PLANNED, ADJUST;
    "inv.rules" => write::rules, "write deny-oom", (1, 1, 1), -3, describe::UPDATE, "write",
        c"Sets a SKU's sale rules: per-buyer limit, sale window, change feed, new sale", c"O(1)", RULES;
    "inv.feed" => read::feed, "readonly fast", (1, 1, 1), 2, describe::READ, "read fast",
        c"Returns the name of a SKU's change-feed stream", c"O(1)", ONE_KEY;
    "inv.buyer" => read::buyer, "readonly fast", (1, 1, 1), 3, describe::READ, "read fast",
        c"Returns one buyer's held and bought units on a SKU", c"O(1)", BUYER_READ;
    "inv.tx" => read::tx, "readonly fast", (1, 1, 1), 3, describe::READ, "read fast",
        c"Returns one transaction id's state, quantity and deadline", c"O(1)", KEY_TXID;
    "inv.mreserve" => multi::mreserve, "write deny-oom getkeys-api", (0, 0, 0), -5, describe::INSERT, "write",
        c"Reserves units on several SKUs of one slot, all or nothing", PER_KEY, MRESERVE;
    "inv.mconfirm" => multi::mconfirm, "write deny-oom getkeys-api", (0, 0, 0), -3, describe::UPDATE, "write",
        c"Confirms a transaction id on several SKUs of one slot, all or nothing", PER_KEY, MCONFIRM;
    "inv.mcancel" => multi::mcancel, "write deny-oom", (2, -1, 1), -3, describe::UPDATE, "write",
        c"Cancels or fences a transaction id on several SKUs of one slot", PER_KEY, MULTI;
    "inv.scan" => read::scan, "readonly", (1, 1, 1), -3, describe::READ, "read",
        c"Iterates over a SKU's transaction records", c"O(COUNT) per call", SCAN;
    "inv.audit" => read::audit, "readonly", (1, 1, 1), 2, describe::READ, "read",
        c"Checks a SKU's invariants against its records", c"O(N) where N is the records", ONE_KEY;
    "inv.apply" => apply::apply, "write", (1, 1, 1), -3, describe::WRITE, "write",
        c"Internal: how every change reaches replicas and the AOF; refused from clients", ONE_RECORD, APPLY;
    "inv.apply.confirm" => apply::confirm, "write", (1, 1, 1), 3, describe::UPDATE, "write",
        c"Internal: a confirm as replicas and the AOF receive it; refused from clients", ONE_RECORD, KEY_TXID;
    "inv.apply.cancel" => apply::cancel, "write", (1, 1, 1), 3, describe::UPDATE, "write",
        c"Internal: a cancel as replicas and the AOF receive it; refused from clients", ONE_RECORD, KEY_TXID;
}

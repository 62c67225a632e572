//! One handler per command: parse (into a command that keeps handles to its
//! own arguments), plan in the ledger, commit, reply. No business rule lives
//! here. Writes to one key are in `write.rs`, reads in `read.rs`, multi-key
//! commands in `multi.rs`, the replication form in `apply.rs`.

mod apply;
mod multi;
mod read;
mod write;

use super::arg::Arg;
use super::key::Entry;
use super::reply;
use inventory_core::ledger::{Error, Status};
use inventory_core::parse::Arg as _;
use redis_module::{raw, Context, RedisValue};
use std::ffi::CString;
use std::os::raw::c_int;

/// What a handler returns: a reply to write (or `NoReply` when it wrote its
/// own), or the error `reply::error` writes.
type Handled = Result<RedisValue, Error>;

/// The arguments after the command name, each read once; on the stack for
/// the short commands.
pub struct Request<'a> {
    args: smallvec::SmallVec<[Arg<'a>; 8]>,
}

impl<'a> Request<'a> {
    fn new(argv: &'a [*mut raw::RedisModuleString]) -> Request<'a> {
        let rest = argv.get(1..).unwrap_or(&[]);
        if rest.len() > 8 {
            return Request {
                args: rest.iter().map(|&s| Arg::new(s)).collect(),
            };
        }
        // Filled in place: collecting through the iterator costs more than
        // the arguments' own lookups on the hottest commands.
        let mut buf = [Arg::EMPTY; 8];
        for (slot, &s) in buf.iter_mut().zip(rest) {
            *slot = Arg::new(s);
        }
        Request {
            args: smallvec::SmallVec::from_buf_and_len(buf, rest.len()),
        }
    }

    /// For the parsers.
    pub fn args(&self) -> &[Arg<'a>] {
        &self.args
    }

    /// For `CMD key txid ...`: opens the key before the arguments are parsed
    /// and starts loading the txid's index line, so that on a key with a
    /// million records the memory access overlaps with parsing instead of
    /// stalling the lookup (docs/benchmarks.md). Opening a key changes
    /// nothing; its error (WRONGTYPE) is reported only once the arguments
    /// have parsed, so malformed arguments win.
    pub fn open_early<'c>(&self, ctx: &'c Context, cmd: &'static str) -> Result<Entry<'c>, Error> {
        let [key, txid, ..] = self.args[..] else {
            return Err(Error::Arity(cmd));
        };
        let entry = Entry::open_arg(ctx, key)?;
        entry.sku().prefetch(txid.bytes());
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
    handler: fn(&Context, &Request) -> Handled,
) -> c_int {
    let context = Context::new(ctx);
    let argv: &[*mut raw::RedisModuleString] = if argv.is_null() || argc <= 0 {
        &[]
    } else {
        // SAFETY: Redis passes `argc` valid argument strings for the call.
        unsafe { std::slice::from_raw_parts(argv, argc as usize) }
    };
    match handler(&context, &Request::new(argv)) {
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
    ($($name:literal => $handler:path, $flags:literal, $keys:expr;)*) => {
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
    "inv.set" => write::set, "write deny-oom", (1, 1, 1);
    "inv.add" => write::add, "write deny-oom", (1, 1, 1);
    "inv.get" => read::get, "readonly fast", (1, 1, 1);
    "inv.reserve" => write::reserve, "write deny-oom", (1, 1, 1);
    "inv.confirm" => write::confirm, "write deny-oom", (1, 1, 1);
    "inv.cancel" => write::cancel, "write deny-oom", (1, 1, 1);
    "inv.extend" => write::extend, "write deny-oom", (1, 1, 1);
    "inv.tx" => read::tx, "readonly fast", (1, 1, 1);
    "inv.mreserve" => multi::mreserve, "write deny-oom", (3, -1, 2);
    "inv.mconfirm" => multi::mconfirm, "write deny-oom", (2, -1, 1);
    "inv.mcancel" => multi::mcancel, "write deny-oom", (2, -1, 1);
    "inv.scan" => read::scan, "readonly", (1, 1, 1);
    "inv.audit" => read::audit, "readonly", (1, 1, 1);
    "inv.apply" => apply::apply, "write", (1, 1, 1);
}

/// A state word as a bulk string.
fn status(s: Status) -> RedisValue {
    RedisValue::BulkString(s.as_str().to_string())
}

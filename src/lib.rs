//! redis-inventory: atomic, idempotent, never-oversold stock reservations
//! (Try-Confirm-Cancel) as a Redis module.
//!
//! This crate is the Redis shell (commands, data type, housekeeping, INFO)
//! around `inventory_core` (core/), which decides everything and holds no
//! Redis types. docs/architecture.md maps the layers.
//!
//! Commands are registered through the legacy command table (no `#[command]`
//! proc-macro) so the module loads on Redis 7.0 as well as Valkey 8.1.

pub mod module;

use module::datatype::INVENTORY_TYPE;
use module::server::{log, Level};
use redis_module::{raw, Context, ModuleOptions, RedisString, Status};
use std::os::raw::c_int;

fn init(ctx: &Context, args: &[RedisString]) -> Status {
    module::server::init_log(ctx);
    // Said once, at notice level: none of the supported servers as packaged
    // can run active defrag (each is built without the patched jemalloc it
    // needs), so a callback could never run or be tested.
    log(
        Level::Notice,
        "active defrag does not move inventory values (no defrag callback)",
    );
    // The table that names feed streams is built now, not by the first
    // fed change (a few milliseconds).
    inventory_core::ledger::warm_stream_names();
    if let Err(e) = module::config::register(ctx, args) {
        log(Level::Warning, &e);
        return Status::Err;
    }
    // Large loads return an error instead of aborting on a short read, only
    // real changes signal WATCH / client tracking, and (Valkey 9) slots can
    // move by atomic slot migration.
    let options = ModuleOptions::HANDLE_IO_ERRORS | ModuleOptions::NO_IMPLICIT_SIGNAL_MODIFIED;
    // SAFETY: ctx is the load context; the function is set at load.
    unsafe {
        if let Some(set) = raw::RedisModule_SetModuleOptions {
            set(ctx.ctx, options.bits() | module::slot_migration::option());
        }
    }
    // SAFETY: ctx is the load context; the callback lives as long as the module.
    unsafe {
        if let Some(register) = redis_module::raw::RedisModule_RegisterInfoFunc {
            register(ctx.ctx, Some(info_callback));
        }
    }
    if let Err(e) = module::commands::register(ctx) {
        log(Level::Warning, &e);
        return Status::Err;
    }
    module::reply::init_status_replies(ctx);
    module::gate::start(ctx);
    if let Err(e) = module::schedule::start(ctx) {
        log(Level::Warning, &e);
        return Status::Err;
    }
    module::slot_migration::start(ctx);
    module::housekeeping::start(ctx);
    // Last: a load that fails unmaps the module's code, which a thread
    // started before would still be running.
    module::release::start();
    Status::Ok
}

/// The crate's version as `MODULE LIST` shows it: major * 10000 + minor *
/// 100 + patch (0.1.0 is 100), the usual encoding of Redis modules.
const MODULE_VERSION: c_int = {
    const fn number(s: &str) -> i32 {
        let (b, mut i, mut n) = (s.as_bytes(), 0, 0);
        while i < b.len() {
            n = n * 10 + (b[i] - b'0') as i32;
            i += 1;
        }
        n
    }
    number(env!("CARGO_PKG_VERSION_MAJOR")) * 10_000
        + number(env!("CARGO_PKG_VERSION_MINOR")) * 100
        + number(env!("CARGO_PKG_VERSION_PATCH"))
};

// Unit tests run outside Redis, on the system allocator.
#[cfg(not(test))]
#[global_allocator]
static ALLOCATOR: module::alloc::ModuleAlloc = module::alloc::ModuleAlloc;

/// Loads the module. Written out instead of redis-module's `redis_module!`
/// macro, which logs a warning on every start on every supported server
/// ("Skip register defrag callbacks ...": it probes an API of Redis 8) and
/// registers things this module does not use (its own command, event and
/// config tables, all empty here).
///
/// # Safety
/// Called by the server once, with its load context and arguments.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn RedisModule_OnLoad(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    // SAFETY: ctx is the server's load context; the name is a static C
    // string (nothing may be allocated before Init fills the API table).
    let status = unsafe {
        raw::Export_RedisModule_Init(
            ctx,
            c"inventory".as_ptr(),
            MODULE_VERSION,
            raw::REDISMODULE_APIVER_1 as c_int,
        )
    };
    if status == raw::Status::Err as c_int {
        return raw::Status::Err as c_int;
    }
    let context = Context::new(ctx);
    let _ = redis_module::MODULE_CONTEXT.set_context(&context);
    let args = redis_module::decode_args(ctx, argv, argc);
    if INVENTORY_TYPE.create_data_type(ctx).is_err() {
        return raw::Status::Err as c_int;
    }
    match init(&context, &args) {
        Status::Ok => raw::Status::Ok as c_int,
        Status::Err => raw::Status::Err as c_int,
    }
}

/// `MODULE UNLOAD`: the server refuses it for a module with a data type
/// before calling this; nothing to release otherwise.
#[no_mangle]
#[allow(non_snake_case)]
pub extern "C" fn RedisModule_OnUnload(_ctx: *mut raw::RedisModuleCtx) -> c_int {
    raw::Status::Ok as c_int
}

extern "C" fn info_callback(
    ctx: *mut redis_module::raw::RedisModuleInfoCtx,
    for_crash_report: i32,
) {
    module::info::info(&redis_module::InfoContext::new(ctx), for_crash_report != 0);
}

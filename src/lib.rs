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
use redis_module::{redis_module, Context, ModuleOptions, RedisString, Status};

fn init(ctx: &Context, args: &[RedisString]) -> Status {
    module::server::init_log(ctx);
    if let Err(e) = module::config::register(ctx, args) {
        log(Level::Warning, &e);
        return Status::Err;
    }
    // Large loads return an error instead of aborting on a short read, and
    // only real changes signal WATCH / client tracking.
    ctx.set_module_options(
        ModuleOptions::HANDLE_IO_ERRORS | ModuleOptions::NO_IMPLICIT_SIGNAL_MODIFIED,
    );
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
    module::propagation::start(ctx);
    if let Err(e) = module::schedule::start(ctx) {
        log(Level::Warning, &e);
        return Status::Err;
    }
    module::housekeeping::start(ctx);
    Status::Ok
}

/// The crate's version as `MODULE LIST` shows it: major * 10000 + minor *
/// 100 + patch (0.1.0 is 100), the usual encoding of Redis modules.
const MODULE_VERSION: i32 = {
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

redis_module! {
    name: "inventory",
    version: MODULE_VERSION,
    allocator: (module::alloc::ModuleAlloc, module::alloc::ModuleAlloc),
    data_types: [INVENTORY_TYPE],
    init: init,
}

extern "C" fn info_callback(
    ctx: *mut redis_module::raw::RedisModuleInfoCtx,
    for_crash_report: i32,
) {
    module::info(&redis_module::InfoContext::new(ctx), for_crash_report != 0);
}

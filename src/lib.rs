//! redis-inventory: atomic, idempotent, never-oversold stock reservations
//! (Try-Confirm-Cancel) as a Redis module.
//!
//! - `ledger`: the pure core (no Redis types), unit- and property-tested.
//! - `parse`: typed parsing of every command's arguments.
//! - `module`: the Redis shell (commands, data type, housekeeping, INFO).
//!
//! Commands are registered through the legacy command table (no `#[command]`
//! proc-macro) so the module loads on Redis 7.0 as well as Valkey 8.1.

pub mod ledger;
pub mod module;
pub mod parse;
pub mod schedule;

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

// Plain `#[test]`s run outside Redis, where the Redis allocator would abort.
#[cfg(not(test))]
type Allocator = module::alloc::ModuleAlloc;
#[cfg(not(test))]
const ALLOCATOR: Allocator = module::alloc::ModuleAlloc;
#[cfg(test)]
type Allocator = std::alloc::System;
#[cfg(test)]
const ALLOCATOR: Allocator = std::alloc::System;

redis_module! {
    name: "inventory",
    version: 1,
    allocator: (Allocator, ALLOCATOR),
    data_types: [INVENTORY_TYPE],
    init: init,
}

extern "C" fn info_callback(
    ctx: *mut redis_module::raw::RedisModuleInfoCtx,
    for_crash_report: i32,
) {
    module::info(&redis_module::InfoContext::new(ctx), for_crash_report != 0);
}

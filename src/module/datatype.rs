//! The `inventory` native data type and all of its callbacks in one place:
//! RDB load/save (also DUMP/RESTORE and MIGRATE), AOF rewrite, digest,
//! memory usage, copy, free and free effort.

use super::schedule;
use super::server::{log, Level};
use super::stats::STATS;
use inventory_core::ledger::{self, Effect, RecordParts, Sku, ENCODING_VERSION};
use redis_module::native_types::RedisType;
use redis_module::{raw, RedisString};
use std::os::raw::{c_int, c_void};
use std::ptr::null_mut;

pub static INVENTORY_TYPE: RedisType = RedisType::new(
    "inventory",
    ENCODING_VERSION,
    raw::RedisModuleTypeMethods {
        version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
        rdb_load: Some(rdb_load),
        rdb_save: Some(rdb_save),
        aof_rewrite: Some(aof_rewrite),
        mem_usage: Some(mem_usage),
        digest: Some(digest),
        free: Some(free),
        aux_load: None,
        aux_save: None,
        aux_save_triggers: 0,
        free_effort: Some(free_effort),
        unlink: None,
        copy: Some(copy),
        defrag: None,
        mem_usage2: None,
        free_effort2: None,
        unlink2: Some(schedule::on_unlink),
        copy2: None,
        aux_save2: None,
    },
);

/// Records per `INV.APPLY key RECORDS ...` line in a rewritten AOF.
const AOF_CHUNK: usize = 256;

/// A loaded or copied value's share of the INFO gauges (main thread).
fn count(sku: &Sku) {
    STATS.adjust(1, sku.open_raw() as i64, sku.reserved_raw());
}

fn log_warning(msg: &str) {
    log(Level::Warning, msg);
}

unsafe extern "C" fn rdb_load(rdb: *mut raw::RedisModuleIO, encver: c_int) -> *mut c_void {
    let load = || {
        raw::load_string_buffer(rdb)
            .map(|b| b.as_ref().to_vec())
            .map_err(|_| ledger::Error::invalid("truncated inventory payload"))
    };
    match ledger::decode(encver, load) {
        Ok(sku) => {
            count(&sku);
            // SAFETY: rdb is the live IO handle Redis passed to rdb_load.
            unsafe { remember_loaded_key(rdb) };
            Box::into_raw(Box::new(sku)).cast()
        }
        // SAFETY: rdb is the live IO handle Redis passed to rdb_load.
        Err(e) => unsafe {
            log_rejected(rdb, &e);
            null_mut()
        },
    }
}

/// Says why a value was not loaded, naming its key. A payload that ends
/// early (a truncated RDB file) gets its own words: nothing of the key is
/// loaded, and when the server is loading a file at startup, the RDB check
/// it runs next hangs if the file ends between two of the value's parts
/// (a server bug; README, Limits).
unsafe fn log_rejected(rdb: *mut raw::RedisModuleIO, e: &ledger::Error) {
    // SAFETY: rdb is the live IO handle Redis passed to rdb_load.
    let (name, io_error, loading) = unsafe {
        let name = raw::RedisModule_GetKeyNameFromIO.map_or(null_mut(), |f| f(rdb).cast_mut());
        let io_error = raw::RedisModule_IsIOError.is_some_and(|f| f(rdb) != 0);
        let flags = raw::RedisModule_GetContextFlags.map_or(0, |f| f(null_mut()));
        (
            name,
            io_error,
            flags & raw::REDISMODULE_CTX_FLAGS_LOADING as c_int != 0,
        )
    };
    let key = if name.is_null() {
        String::from("?")
    } else {
        ledger::quote(RedisString::string_as_slice(name))
    };
    if io_error {
        log_warning(&format!(
            "key '{key}': the payload ends early (a truncated file or payload); nothing of the key is loaded{}",
            if loading {
                ". If the server now hangs at 100% CPU in its RDB check, the file ends between two parts of this value: a server bug (README, Limits); stop it with SIGKILL and load a complete file"
            } else {
                ""
            }
        ));
    } else {
        log_warning(&format!("key '{key}': rejected payload: {e}"));
    }
}

/// Hands a key loaded from RDB, RESTORE or MIGRATE to housekeeping.
unsafe fn remember_loaded_key(rdb: *mut raw::RedisModuleIO) {
    // SAFETY: rdb is the live IO handle Redis passed to rdb_load.
    let (name, db) = unsafe {
        (
            raw::RedisModule_GetKeyNameFromIO.map_or(null_mut(), |f| f(rdb).cast_mut()),
            raw::RedisModule_GetDbIdFromIO.map_or(-1, |f| f(rdb)),
        )
    };
    if !name.is_null() && db >= 0 {
        schedule::look_now(db, RedisString::string_as_slice(name));
    }
}

unsafe extern "C" fn rdb_save(rdb: *mut raw::RedisModuleIO, value: *mut c_void) {
    // SAFETY: Redis hands back a value this module created.
    let sku = unsafe { &*value.cast::<Sku>() };
    ledger::encode(sku, |buf| raw::save_slice(rdb, buf));
}

unsafe extern "C" fn aof_rewrite(
    aof: *mut raw::RedisModuleIO,
    key: *mut raw::RedisModuleString,
    value: *mut c_void,
) {
    // SAFETY: Redis hands back a value this module created.
    let sku = unsafe { &*value.cast::<Sku>() };
    let h = sku.header();
    emit(
        aof,
        key,
        &Effect::Load {
            stock: h.stock,
            sold: h.sold,
            version: h.version,
            rules: sku.rules(),
        },
    );
    let mut chunk: Vec<RecordParts> = Vec::with_capacity(AOF_CHUNK);
    for r in sku.record_parts() {
        chunk.push(r);
        if chunk.len() == AOF_CHUNK {
            emit(aof, key, &Effect::Records(std::mem::take(&mut chunk)));
        }
    }
    if !chunk.is_empty() {
        emit(aof, key, &Effect::Records(chunk));
    }
    let mut buyers = Vec::with_capacity(AOF_CHUNK);
    for b in sku.buyer_parts() {
        buyers.push(b);
        if buyers.len() == AOF_CHUNK {
            emit(aof, key, &Effect::Buyers(std::mem::take(&mut buyers)));
        }
    }
    if !buyers.is_empty() {
        emit(aof, key, &Effect::Buyers(buyers));
    }
}

/// Writes `INV.APPLY key <effect>` to a rewritten AOF.
fn emit(aof: *mut raw::RedisModuleIO, key: *mut raw::RedisModuleString, effect: &Effect) {
    let (_strings, mut argv) = super::propagation::effect_argv(effect);
    // SAFETY: "sv" reads one RedisModuleString* then an array pointer and its
    // length; all strings stay alive until the call returns.
    unsafe {
        if let Some(emit_aof) = raw::RedisModule_EmitAOF {
            emit_aof(
                aof,
                c"INV.APPLY".as_ptr(),
                c"sv".as_ptr(),
                key,
                argv.as_mut_ptr(),
                argv.len(),
            );
        }
    }
}

unsafe extern "C" fn digest(md: *mut raw::RedisModuleDigest, value: *mut c_void) {
    // SAFETY: Redis hands back a value this module created; md is live.
    let sku = unsafe { &*value.cast::<Sku>() };
    // SAFETY: the API table is filled once at load and never written again.
    let api = unsafe {
        (
            raw::RedisModule_DigestAddStringBuffer,
            raw::RedisModule_DigestAddLongLong,
            raw::RedisModule_DigestEndSequence,
        )
    };
    let (Some(add_buf), Some(add_ll), Some(end)) = api else {
        return;
    };
    let h = sku.header();
    // Each sequence is mixed in order; sequences combine without order, so
    // master and replica agree whatever their slot layout.
    // SAFETY: md is the live digest Redis passed; every buffer outlives the
    // call that reads it.
    unsafe {
        add_buf(md, c"inventory".as_ptr().cast_mut().cast(), 9);
        add_ll(md, h.stock);
        add_ll(md, h.sold);
        add_ll(md, h.version as i64);
        let rules = sku.rules();
        for v in [rules.limit, rules.start, rules.end] {
            add_ll(md, v as i64);
        }
        end(md);
        for r in sku.record_parts() {
            let id = r.txid.as_bytes();
            add_buf(md, id.as_ptr().cast_mut().cast(), id.len());
            add_ll(md, i64::from(r.state.code()));
            add_ll(md, r.qty);
            add_ll(md, r.time as i64);
            if let Some(b) = &r.buyer {
                let b = b.as_bytes();
                add_buf(md, b.as_ptr().cast_mut().cast(), b.len());
            }
            add_ll(md, r.alt);
            end(md);
        }
        for (b, bought) in sku.buyer_parts() {
            let b = b.as_bytes();
            add_buf(md, c"buyer".as_ptr().cast_mut().cast(), 5);
            add_buf(md, b.as_ptr().cast_mut().cast(), b.len());
            add_ll(md, bought);
            end(md);
        }
    }
}

unsafe extern "C" fn mem_usage(value: *const c_void) -> usize {
    // SAFETY: Redis hands back a value this module created.
    unsafe { &*value.cast::<Sku>() }.mem_usage()
}

unsafe extern "C" fn free_effort(_key: *mut raw::RedisModuleString, value: *const c_void) -> usize {
    // SAFETY: as above. Large keys are then freed on a lazy-free thread,
    // which `free` allows: it only drops memory and updates atomics.
    unsafe { &*value.cast::<Sku>() }.records_len().max(1)
}

unsafe extern "C" fn free(value: *mut c_void) {
    // SAFETY: the value was created by Box::into_raw in this module.
    let sku = unsafe { Box::from_raw(value.cast::<Sku>()) };
    STATS.release(1, sku.open_raw() as i64, sku.reserved_raw());
}

unsafe extern "C" fn copy(
    _from: *mut raw::RedisModuleString,
    _to: *mut raw::RedisModuleString,
    value: *const c_void,
) -> *mut c_void {
    // SAFETY: Redis hands back a value this module created.
    let sku = unsafe { &*value.cast::<Sku>() }.clone();
    count(&sku);
    // Housekeeping learns the new key from the `copy_to` keyspace event.
    Box::into_raw(Box::new(sku)).cast()
}

//! Module configs (`inventory.*`): settable in redis.conf, as loadmodule
//! arguments (`name value` pairs) and with CONFIG SET/GET.

use inventory_core::ledger::Policy;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

pub static DEFAULT_TTL_MS: AtomicI64 = AtomicI64::new(600_000);
pub static MAX_TTL_MS: AtomicI64 = AtomicI64::new(86_400_000);
pub static RETENTION_MS: AtomicI64 = AtomicI64::new(86_400_000);
pub static MAX_OPEN_PER_KEY: AtomicI64 = AtomicI64::new(0);
pub static MAX_KEYS_PER_COMMAND: AtomicI64 = AtomicI64::new(1000);
pub static MAX_WAITERS_PER_KEY: AtomicI64 = AtomicI64::new(100_000);
pub static FEED_MAXLEN: AtomicI64 = AtomicI64::new(1_000_000);
pub static FEED_DEFAULT: AtomicI64 = AtomicI64::new(0);
pub static FEED_MAX_AGE_MS: AtomicI64 = AtomicI64::new(0);

/// Upper bound of the millisecond configs: ten years.
pub const MAX_MS: i64 = 10 * 365 * 86_400_000;

fn get(v: &AtomicI64) -> u64 {
    v.load(Relaxed).max(0) as u64
}

/// The settings in force now.
pub fn policy() -> Policy {
    Policy {
        default_ttl_ms: get(&DEFAULT_TTL_MS),
        max_ttl_ms: get(&MAX_TTL_MS),
        max_open_per_key: get(&MAX_OPEN_PER_KEY),
        retention_ms: get(&RETENTION_MS),
    }
}

/// Most keys one multi-key command may name.
pub fn max_keys() -> usize {
    get(&MAX_KEYS_PER_COMMAND) as usize
}

/// Most reserves that may wait (`BLOCK`) on one key.
pub fn max_waiters() -> u64 {
    get(&MAX_WAITERS_PER_KEY)
}

/// Most entries a key's feed stream keeps (0: no cap); the master trims
/// to it after each change it feeds.
pub fn feed_maxlen() -> u64 {
    get(&FEED_MAXLEN)
}

/// How old (ms) the oldest entry a key's feed stream keeps may be, by the
/// master's clock when it trims (0: no age limit).
pub fn feed_max_age_ms() -> u64 {
    get(&FEED_MAX_AGE_MS)
}

/// Whether a key a master creates starts with its change feed on
/// (`inventory.feed-default 1`).
pub fn feed_default() -> bool {
    get(&FEED_DEFAULT) == 1
}

/// Every config: name (without the `inventory.` prefix), value, default, range.
pub static CONFIGS: [(&str, &AtomicI64, i64, i64, i64); 9] = [
    ("default-ttl-ms", &DEFAULT_TTL_MS, 600_000, 1, MAX_MS),
    ("max-ttl-ms", &MAX_TTL_MS, 86_400_000, 1, MAX_MS),
    ("retention-ms", &RETENTION_MS, 86_400_000, 0, MAX_MS),
    ("max-open-per-key", &MAX_OPEN_PER_KEY, 0, 0, u32::MAX as i64),
    (
        "max-keys-per-command",
        &MAX_KEYS_PER_COMMAND,
        1000,
        1,
        1_000_000,
    ),
    (
        "max-waiters-per-key",
        &MAX_WAITERS_PER_KEY,
        100_000,
        0,
        10_000_000,
    ),
    ("feed-maxlen", &FEED_MAXLEN, 1_000_000, 0, i64::MAX),
    ("feed-default", &FEED_DEFAULT, 0, 0, 1),
    ("feed-max-age-ms", &FEED_MAX_AGE_MS, 0, 0, MAX_MS),
];

/// Registers the configs, loads redis.conf values, then applies module args.
pub fn register(
    ctx: &redis_module::Context,
    args: &[redis_module::RedisString],
) -> Result<(), String> {
    use redis_module::configuration::{register_i64_configuration, ConfigurationFlags};
    for (name, var, default, lo, hi) in CONFIGS.iter() {
        register_i64_configuration(
            ctx,
            name,
            *var,
            *default,
            *lo,
            *hi,
            ConfigurationFlags::DEFAULT,
            None,
        );
    }
    // SAFETY: ctx is the module's load context.
    unsafe {
        if let Some(load) = redis_module::raw::RedisModule_LoadConfigs {
            load(ctx.ctx);
        }
    }
    apply_module_args(args)
}

/// Applies `loadmodule path name value [name value ...]` arguments (names
/// with or without the `inventory.` prefix). They override redis.conf lines.
pub fn apply_module_args(args: &[redis_module::RedisString]) -> Result<(), String> {
    if args.len() % 2 != 0 {
        return Err("module arguments must be 'name value' pairs".into());
    }
    for pair in args.chunks_exact(2) {
        let name = inventory_core::ledger::quote(pair[0].as_slice()).to_ascii_lowercase();
        let name = name.strip_prefix("inventory.").unwrap_or(&name);
        let raw = inventory_core::ledger::quote(pair[1].as_slice());
        let (_, var, _, lo, hi) = CONFIGS
            .iter()
            .find(|c| c.0 == name)
            .ok_or_else(|| format!("unknown module argument '{name}'"))?;
        let value: i64 = raw
            .parse()
            .ok()
            .filter(|v| (*lo..=*hi).contains(v))
            .ok_or_else(|| format!("{name} must be an integer from {lo} to {hi}, got '{raw}'"))?;
        var.store(value, Relaxed);
    }
    Ok(())
}

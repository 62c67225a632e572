//! Key access: open a key as an inventory SKU, and commit effects to it.
//! `Entry::commit` is the only place a key changes: it applies each effect,
//! replicates it as `INV.APPLY`, raises its keyspace event, keeps the INFO
//! gauges, signals WATCH/tracking and reschedules housekeeping.

use super::datatype::INVENTORY_TYPE;
use super::{config, expiry, STATS};
use crate::ledger::{Effect, Error, Sku, View};
use redis_module::key::RedisKeyWritable;
use redis_module::{raw, Context, KeyType, NotifyEvent, RedisString};

/// Wall clock in unix milliseconds.
pub fn now_ms() -> u64 {
    // SAFETY: RedisModule_Milliseconds takes no arguments and is set at load.
    let ms = unsafe { raw::RedisModule_Milliseconds.map_or(0, |f| f()) };
    ms.max(0) as u64
}

/// The database the context has selected.
pub fn selected_db(ctx: &Context) -> i32 {
    // SAFETY: ctx is a live context handed to us by Redis.
    unsafe { raw::RedisModule_GetSelectedDb.map_or(0, |f| f(ctx.ctx)) }
}

/// Selects a database on the context (housekeeping visits every db).
pub fn select_db(ctx: &Context, db: i32) -> bool {
    // SAFETY: ctx is a live context; Redis validates the db number.
    unsafe {
        raw::RedisModule_SelectDb.is_some_and(|f| f(ctx.ctx, db) == raw::REDISMODULE_OK as i32)
    }
}

/// Reads a key: `f(None)` when missing, WRONGTYPE for other types.
pub fn read<R>(
    ctx: &Context,
    name: &RedisString,
    f: impl FnOnce(Option<&Sku>) -> R,
) -> Result<R, Error> {
    let key = ctx.open_key(name);
    if key.key_type() == KeyType::Empty {
        return Ok(f(None));
    }
    let value: Option<&Sku> = key
        .get_value(&INVENTORY_TYPE)
        .map_err(|_| Error::WrongType)?;
    Ok(f(value))
}

/// A key opened for writing.
pub struct Entry<'c> {
    ctx: &'c Context,
    name: RedisString,
    key: RedisKeyWritable,
    empty: Sku,
}

impl<'c> Entry<'c> {
    pub fn open(ctx: &'c Context, name: RedisString) -> Result<Self, Error> {
        let key = ctx.open_key_writable(&name);
        if key.key_type() != KeyType::Empty && key.get_value::<Sku>(&INVENTORY_TYPE).is_err() {
            return Err(Error::WrongType);
        }
        Ok(Entry {
            ctx,
            name,
            key,
            empty: Sku::new(),
        })
    }

    pub fn name(&self) -> &RedisString {
        &self.name
    }

    pub fn stored(&self) -> Option<&mut Sku> {
        self.key.get_value::<Sku>(&INVENTORY_TYPE).ok().flatten()
    }

    /// The SKU, or an empty one (version 0) when the key is missing.
    pub fn sku(&self) -> &Sku {
        match self.stored() {
            Some(s) => s,
            None => &self.empty,
        }
    }

    pub fn view(&self, now: u64) -> View {
        self.sku().view(now)
    }

    /// Applies effects in order, propagating each one that applied. Stops at
    /// the first that does not apply (a replica out of step) and returns its
    /// error; what applied before it stays applied and propagated.
    pub fn commit(&self, effects: &[Effect]) -> Result<(), Error> {
        let Some(first) = effects.first() else {
            return Ok(());
        };
        if self.stored().is_none() {
            if !first.creates_key() {
                return Err(Error::Apply("no such key".into()));
            }
            self.key
                .set_value(&INVENTORY_TYPE, Sku::new())
                .map_err(|e| Error::Apply(e.to_string()))?;
            STATS.adjust(1, 0, 0);
        }
        let sku = self
            .stored()
            .ok_or_else(|| Error::Apply("no such key".into()))?;
        let (open, reserved) = (sku.open_raw() as i64, sku.reserved_raw());
        let mut result = Ok(());
        let mut applied = 0;
        for effect in effects {
            if let Err(e) = sku.apply(effect) {
                result = Err(e);
                break;
            }
            applied += 1;
            let args = effect.to_args();
            let mut argv: Vec<&[u8]> = Vec::with_capacity(args.len() + 1);
            argv.push(self.name.as_slice());
            argv.extend(args.iter().map(Vec::as_slice));
            self.ctx.replicate("INV.APPLY", argv.as_slice());
            self.ctx
                .notify_keyspace_event(NotifyEvent::MODULE, effect.event(), &self.name);
        }
        STATS.adjust(
            0,
            sku.open_raw() as i64 - open,
            sku.reserved_raw() - reserved,
        );
        if sku.version() == 0 {
            // Creation failed before any effect applied: leave no empty key.
            let _ = self.key.delete();
        } else if applied > 0 {
            // SAFETY: ctx and name are live for the duration of the command.
            unsafe {
                if let Some(signal) = raw::RedisModule_SignalModifiedKey {
                    signal(self.ctx.ctx, self.name.inner);
                }
            }
            if let Some(next) = sku.schedule_change(config::policy().retention_ms) {
                expiry::schedule(selected_db(self.ctx), self.name.as_slice(), next);
            }
        }
        result
    }
}

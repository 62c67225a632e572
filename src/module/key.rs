//! Key access: open a key as an inventory SKU, and commit effects to it.
//! `OpenKey::commit` is the only place a key changes: it applies each effect,
//! replicates it as `INV.APPLY`, raises its keyspace event, keeps the INFO
//! gauges, signals WATCH/tracking and reschedules housekeeping.

use super::arg::Arg;
use super::config;
use super::datatype::INVENTORY_TYPE;
use super::feed::FeedStream;
use super::propagation::{replicate, replicate_fed, ReplicationArgs};
use super::schedule;
use super::server::{log, selected_db, Level};
use super::stats::STATS;
use inventory_core::ledger::{Effect, Error, FeedEntries, Pending, Rules, Sku, View};
use redis_module::{raw, Context, ContextFlags, RedisString};

/// Reads the key a command names, opened for reading: `f(None)` when
/// missing, WRONGTYPE for another type.
pub fn read<R>(ctx: &Context, name: Arg, f: impl FnOnce(Option<&Sku>) -> R) -> Result<R, Error> {
    let key = Key::open(ctx, name.raw(), raw::KeyMode::READ);
    // SAFETY: the value belongs to the open key and is only read while the
    // key stays open, within this call.
    Ok(f(unsafe { key.value()?.as_ref() }))
}

/// A key opened with the raw API, closed on drop. (redis-module's
/// `RedisKeyWritable` makes three API calls to read a value; reading a key
/// of ours takes two here, and a missing key two.)
struct Key(*mut raw::RedisModuleKey);

impl Key {
    fn open(ctx: &Context, name: *mut raw::RedisModuleString, mode: raw::KeyMode) -> Key {
        Key(raw::open_key(ctx.ctx, name, mode))
    }

    /// The stored SKU: null while the key is missing, WRONGTYPE for another type.
    fn value(&self) -> Result<*mut Sku, Error> {
        let ours = *INVENTORY_TYPE.raw_type.borrow();
        // SAFETY: a key opened by `open` and not yet closed; these API
        // functions exist in every Redis the module loads on.
        unsafe {
            let (Some(get_type), Some(get_value), Some(key_type)) = (
                raw::RedisModule_ModuleTypeGetType,
                raw::RedisModule_ModuleTypeGetValue,
                raw::RedisModule_KeyType,
            ) else {
                return Err(Error::Apply("module API missing".into()));
            };
            if !ours.is_null() && get_type(self.0) == ours {
                Ok(get_value(self.0).cast::<Sku>())
            } else if key_type(self.0) == raw::REDISMODULE_KEYTYPE_EMPTY as i32 {
                Ok(std::ptr::null_mut())
            } else {
                Err(Error::WrongType)
            }
        }
    }

    /// Stores a new empty SKU in the (missing) key and returns it.
    fn create(&self) -> Result<*mut Sku, Error> {
        let ours = *INVENTORY_TYPE.raw_type.borrow();
        if self.0.is_null() || ours.is_null() {
            return Err(Error::Apply("cannot create the key".into()));
        }
        let value = Box::into_raw(Box::new(Sku::new()));
        // SAFETY: a live open key; on success Redis owns `value` and frees it
        // through the type's free callback, on failure it is still ours.
        let status = unsafe {
            raw::RedisModule_ModuleTypeSetValue.map_or(raw::REDISMODULE_ERR as i32, |set| {
                set(self.0, ours, value.cast())
            })
        };
        if status == raw::REDISMODULE_OK as i32 {
            Ok(value)
        } else {
            // SAFETY: Redis did not take the value.
            drop(unsafe { Box::from_raw(value) });
            Err(Error::Apply("cannot create the key".into()))
        }
    }

    fn delete(&self) {
        // SAFETY: a live open key (checked non-null: the API dereferences it).
        unsafe {
            if let (false, Some(delete)) = (self.0.is_null(), raw::RedisModule_DeleteKey) {
                delete(self.0);
            }
        }
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        raw::close_key(self.0);
    }
}

/// A key's name: the calling command's own argument (alive for the whole
/// command, so nothing is retained or freed) or a string made for it.
enum Name {
    Arg(*mut raw::RedisModuleString),
    Made(RedisString),
}

impl Name {
    fn ptr(&self) -> *mut raw::RedisModuleString {
        match self {
            Name::Arg(p) => *p,
            Name::Made(s) => s.inner,
        }
    }
}

/// A key opened for writing. Reading its SKU borrows the entry; changing it
/// (`commit`, housekeeping steps) borrows it mutably, so no reference to the
/// value outlives a change.
pub struct OpenKey<'c> {
    ctx: &'c Context,
    name: Name,
    key: Key,
    /// The stored value, looked up once (null while the key is missing).
    value: *mut Sku,
}

/// What a missing key reads as: version 0, nothing held.
static EMPTY: once_cell::sync::Lazy<Sku> = once_cell::sync::Lazy::new(Sku::new);

impl<'c> OpenKey<'c> {
    /// Opens the key named by a string made for it.
    pub fn open(ctx: &'c Context, name: RedisString) -> Result<Self, Error> {
        Self::open_name(ctx, Name::Made(name))
    }

    /// Opens the key named by the calling command's argument `name`, which
    /// Redis keeps alive until the command returns.
    pub fn open_arg(ctx: &'c Context, name: Arg) -> Result<Self, Error> {
        Self::open_name(ctx, Name::Arg(name.raw()))
    }

    fn open_name(ctx: &'c Context, name: Name) -> Result<Self, Error> {
        // Callers pass a parsed key argument; a null one never reaches the API.
        if name.ptr().is_null() {
            return Err(Error::Apply("no key name".into()));
        }
        let key = Key::open(ctx, name.ptr(), raw::KeyMode::READ | raw::KeyMode::WRITE);
        // One lookup tells all three apart: missing, ours, another type.
        let value = key.value()?;
        Ok(OpenKey {
            ctx,
            name,
            key,
            value,
        })
    }

    /// The stored SKU, if the key exists.
    pub fn stored(&self) -> Option<&Sku> {
        // SAFETY: the pointer came from the open key's value and stays valid
        // while the key is open: only `commit` (through `&mut self`)
        // replaces or deletes the value, and it refreshes the pointer.
        unsafe { self.value.as_ref() }
    }

    fn stored_mut(&mut self) -> Option<&mut Sku> {
        // SAFETY: as `stored`; `&mut self` makes this the only reference.
        unsafe { self.value.as_mut() }
    }

    /// The key's name.
    pub fn name(&self) -> &[u8] {
        RedisString::string_as_slice(self.name.ptr())
    }

    /// The SKU, or an empty one (version 0) when the key is missing.
    pub fn sku(&self) -> &Sku {
        self.stored().unwrap_or(&EMPTY)
    }

    pub fn view(&self, now: u64) -> View {
        self.sku().view(now)
    }

    /// Housekeeping's work that changes no state: a step of the key's
    /// background work (index growth or shrink, compaction).
    pub fn maintain(&mut self, budget: usize) {
        if let Some(sku) = self.stored_mut() {
            sku.maintain(budget);
        }
    }

    /// What housekeeping has pending on this key (`None`: missing), noted
    /// on the value so commits can skip unchanged work.
    pub fn pending(&mut self) -> Option<Pending> {
        let sku = self.stored_mut()?;
        let p = sku.pending();
        sku.mark_scheduled(p);
        Some(p)
    }

    /// The key's feed stream, opened for a change of `effects` that writes
    /// to it (`None` when none does): a stream name taken by another type
    /// is an error.
    fn feed_stream(&self, effects: &[Effect], stamped: bool) -> Result<Option<FeedStream>, Error> {
        let fed = self.sku().rules().feed;
        let feeding = fed || effects.iter().any(Effect::turns_feed_on);
        if feeding || stamped {
            FeedStream::open(self.ctx, self.name(), self.name.ptr(), fed).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Whether a key created now starts with its feed on: on a master
    /// deciding the change, with `inventory.feed-default 1`. Replicas and
    /// AOF replay get the master's decision as an effect.
    fn creates_fed(&self) -> bool {
        config::feed_default()
            && !self
                .ctx
                .get_flags()
                .intersects(ContextFlags::REPLICATED | ContextFlags::LOADING)
    }

    /// What `commit` checks of the key's feed stream first, for a command
    /// that must check every key before changing any.
    pub fn check_feed(&self, effects: &[Effect]) -> Result<(), Error> {
        self.feed_stream(effects, false).map(drop)
    }

    /// Applies effects in order, propagating each. A list of several is
    /// checked as a whole first, so it applies all or nothing; one effect
    /// checks itself. An error leaves the key as it was.
    pub fn commit(&mut self, effects: &[Effect]) -> Result<(), Error> {
        self.commit_replicating(effects, &ReplicationArgs::default())
    }

    /// `commit`, passing the caller's own argument strings to replication.
    pub fn commit_replicating(
        &mut self,
        effects: &[Effect],
        reuse: &ReplicationArgs,
    ) -> Result<(), Error> {
        let Some(first) = effects.first() else {
            return Ok(());
        };
        if self.value.is_null() && first.creates_key() && self.creates_fed() {
            // `inventory.feed-default 1`: a key this master creates starts
            // with its feed on, decided here and carried by an effect.
            let mut with_feed = effects.to_vec();
            with_feed.push(Effect::Rules {
                rules: Rules {
                    feed: true,
                    ..Rules::default()
                },
                new_sale: false,
            });
            return self.apply_all(&with_feed, reuse);
        }
        self.apply_all(effects, reuse)
    }

    /// `commit_replicating`'s work, for `effects` as they are.
    fn apply_all(&mut self, effects: &[Effect], reuse: &ReplicationArgs) -> Result<(), Error> {
        let Some(first) = effects.first() else {
            return Ok(());
        };
        if effects.len() > 1 {
            self.sku().check(effects)?;
        }
        // The feed's stream is opened (and its type checked) before
        // anything changes.
        let mut stream = self.feed_stream(effects, reuse.feed.is_some())?;
        if self.value.is_null() {
            if !first.creates_key() {
                return Err(Error::Apply("no such key".into()));
            }
            self.value = self.key.create()?;
            STATS.adjust(1, 0, 0);
        }
        let (ctx, name) = (self.ctx, self.name.ptr());
        let sku = self
            .stored_mut()
            .ok_or_else(|| Error::Apply("no such key".into()))?;
        let (open, reserved) = (sku.open_raw() as i64, sku.reserved_raw());
        let mut result = Ok(());
        let mut applied = 0;
        // A change that turns the feed on feeds all its effects (a key
        // created with the feed on has its first stock in the feed); a
        // stamped effect (a replica, an AOF replay) was fed on its master.
        let feeding_all = effects.iter().any(Effect::turns_feed_on);
        for effect in effects {
            let fed =
                stream.is_some() && (feeding_all || reuse.feed.is_some() || sku.feeds(effect));
            let mut entries = FeedEntries::new();
            let before = if fed {
                sku.feed_transitions(effect, &mut entries);
                sku.available_raw()
            } else {
                0
            };
            if let Err(e) = sku.apply(effect) {
                result = Err(e);
                break;
            }
            applied += 1;
            match stream.as_mut() {
                // `fed` holds whenever a stamp came with the effect.
                Some(s) if fed => {
                    sku.feed_thresholds(before, &mut entries);
                    let stamp = match s.write(ctx, &entries, sku.feed_version(effect), reuse) {
                        Ok(stamp) => stamp,
                        Err(e) => {
                            // The change is made; its entries are not all
                            // in the stream (docs/design.md, the feed).
                            super::stats::STATS.feed_error();
                            log(
                                Level::Warning,
                                &format!("feed of a change not written: {e}"),
                            );
                            None
                        }
                    };
                    replicate_fed(ctx, name, effect, stamp, reuse);
                }
                _ => replicate(ctx, name, effect, reuse),
            }
            // SAFETY: live ctx and key name; the event name is a static C string.
            unsafe {
                if let Some(notify) = raw::RedisModule_NotifyKeyspaceEvent {
                    notify(
                        ctx.ctx,
                        raw::REDISMODULE_NOTIFY_MODULE,
                        effect.event().as_ptr(),
                        name,
                    );
                }
            }
        }
        STATS.adjust(
            0,
            sku.open_raw() as i64 - open,
            sku.reserved_raw() - reserved,
        );
        let created_empty = sku.version() == 0;
        let next = if applied > 0 && !created_empty {
            sku.schedule_change()
        } else {
            None
        };
        if created_empty {
            // Creation failed before any effect applied: leave no empty key.
            self.value = std::ptr::null_mut();
            self.key.delete();
        } else if applied > 0 {
            // SAFETY: ctx and name are live for the duration of the command.
            unsafe {
                if let Some(signal) = raw::RedisModule_SignalModifiedKey {
                    signal(ctx.ctx, name);
                }
            }
            if let Some(p) = next {
                schedule::register_work(selected_db(ctx), RedisString::string_as_slice(name), p);
            }
        }
        result
    }
}

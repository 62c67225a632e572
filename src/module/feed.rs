//! Writing a key's feed entries to its stream, inside the command (or
//! housekeeping pass) that makes the change: the core (`ledger/feed.rs`)
//! decides the entries, this writes them with the stream API and says
//! where they went (`FeedStamp`), which replication carries to replicas
//! and the AOF so they write the same entries under the same IDs.

use super::config;
use super::propagation::{deadline_string, version_string, ReplicationArgs};
use super::stats::STATS;
use inventory_core::ledger::{
    age_floor, stream_name, Error, FeedEntry, FeedStamp, Field, FieldValue, StreamId, FEED_EVENTS,
    FEED_FIELDS,
};
use redis_module::{raw, Context, ContextFlags, RedisString};
use smallvec::SmallVec;
use std::sync::atomic::{AtomicPtr, Ordering::Relaxed};

/// The words every entry uses, made once and shared: `RM_StreamAdd` copies
/// what it is given into the stream, so a shared string only lends its
/// bytes (as the effect names of replication do). Touched on the main
/// thread only; never freed.
static WORDS: once_cell::sync::Lazy<Vec<usize>> = once_cell::sync::Lazy::new(|| {
    FEED_FIELDS
        .iter()
        .chain(FEED_EVENTS.iter())
        .map(|w| {
            // SAFETY: a context-free string, made once at first use on the
            // main thread.
            unsafe {
                raw::RedisModule_CreateString.map_or(0, |create| {
                    create(std::ptr::null_mut(), w.as_ptr().cast(), w.len()) as usize
                })
            }
        })
        .collect()
});

/// Strings of the quantities 0 to 63, made once and shared like `WORDS`
/// (most holds are of a few units).
static SMALL: once_cell::sync::Lazy<Vec<usize>> = once_cell::sync::Lazy::new(|| {
    (0..64)
        .map(|n: i64| {
            // SAFETY: as for WORDS.
            unsafe {
                raw::RedisModule_CreateStringFromLongLong
                    .map_or(0, |from| from(std::ptr::null_mut(), n) as usize)
            }
        })
        .collect()
});

/// The shared string at `at` of `words` (WORDS, read once per entry).
fn word(words: &[usize], at: usize) -> *mut raw::RedisModuleString {
    words.get(at).copied().unwrap_or(0) as *mut raw::RedisModuleString
}

fn event(words: &[usize], name: &str) -> *mut raw::RedisModuleString {
    let at = FEED_EVENTS.iter().position(|e| *e == name);
    word(words, at.map_or(usize::MAX, |i| i + FEED_FIELDS.len()))
}

/// A context-free string of `bytes` (freed when dropped).
fn made(bytes: &[u8]) -> RedisString {
    RedisString::create_from_slice(std::ptr::null_mut(), bytes)
}

/// A context-free string of an integer (freed when dropped).
fn number(v: i64) -> RedisString {
    // SAFETY: the API table is filled once at load.
    let inner = unsafe {
        raw::RedisModule_CreateStringFromLongLong
            .map_or(std::ptr::null_mut(), |from| from(std::ptr::null_mut(), v))
    };
    RedisString::from_redis_module_string(std::ptr::null_mut(), inner)
}

/// One entry's field-value pairs as stream API arguments: the shared words,
/// the key's own name string, and the strings made for its values (kept in
/// `made` until the entry is written).
struct EntryArgs {
    /// `len` words: at most the seven fields an entry has, with their values.
    argv: [*mut raw::RedisModuleString; 2 * FEED_FIELDS.len()],
    len: usize,
    made: SmallVec<[RedisString; 5]>,
}

impl EntryArgs {
    fn new() -> EntryArgs {
        EntryArgs {
            argv: [std::ptr::null_mut(); 2 * FEED_FIELDS.len()],
            len: 0,
            made: SmallVec::new(),
        }
    }

    /// Makes these the arguments of entry `e` (in place: a change's entries
    /// share one `EntryArgs`); the calling command's own txid and buyer
    /// strings (`reuse`) stand for equal values, the shared ones for small
    /// quantities, the deadline and the version, so a hold's entry makes no
    /// string of its own (a change makes one, its version).
    fn fill(
        &mut self,
        e: &FeedEntry,
        key: *mut raw::RedisModuleString,
        version: u64,
        reuse: &ReplicationArgs,
    ) {
        self.made.clear();
        self.len = 0;
        let a = self;
        let same = |s: Option<*mut raw::RedisModuleString>, b: &[u8]| {
            s.filter(|p| !p.is_null() && RedisString::string_as_slice(*p) == b)
        };
        let (words, small): (&[usize], &[usize]) = (&WORDS, &SMALL);
        e.for_each_pair(version, |field, value| {
            let v = match (field, value) {
                (_, FieldValue::Word(w)) => event(words, w),
                (_, FieldValue::Key) => key,
                (Field::Txid, FieldValue::Bytes(b)) => {
                    same(reuse.txid, b).unwrap_or_else(|| a.keep(made(b)))
                }
                (Field::Buyer, FieldValue::Bytes(b)) => {
                    same(reuse.buyer, b).unwrap_or_else(|| a.keep(made(b)))
                }
                (_, FieldValue::Bytes(b)) => a.keep(made(b)),
                (Field::Deadline, FieldValue::Int(n)) => deadline_string(n.max(0) as u64),
                (_, FieldValue::Int(n)) => match usize::try_from(n).ok().and_then(|i| small.get(i))
                {
                    Some(&p) => p as *mut raw::RedisModuleString,
                    // Every entry of a change has its version: one string
                    // serves them all (a pass expiring 1,000 holds).
                    None if field == Field::Version => version_string(n.max(0) as u64),
                    None => a.keep(number(n)),
                },
            };
            // WORDS holds the field names first, in FEED_FIELDS' order; an
            // entry has each field at most once, so `len` stays in bounds
            // (a word past them would be left out, and `complete` says so).
            let pair = a
                .len
                .checked_add(2)
                .and_then(|end| a.argv.get_mut(a.len..end));
            if let Some(pair) = pair {
                pair.copy_from_slice(&[word(words, field as usize), v]);
                a.len += 2;
            } else {
                a.len = usize::MAX;
            }
        });
    }

    fn keep(&mut self, s: RedisString) -> *mut raw::RedisModuleString {
        let p = s.inner;
        self.made.push(s);
        p
    }

    /// The words made, when every word and value was made (the server had
    /// memory) and they fit.
    fn complete(&mut self) -> Option<&mut [*mut raw::RedisModuleString]> {
        let words = self.argv.get_mut(..self.len)?;
        words.iter().all(|p| !p.is_null()).then_some(words)
    }
}

/// The last key whose feed was opened, and its stream's name string
/// (context-free, one reference held by this cache): a flash sale changes
/// one key over and over, so its stream's name is made once, not per
/// change.
struct LastName {
    key: Vec<u8>,
    name: *mut raw::RedisModuleString,
}

/// The cache, a leaked box replaced when another key's feed is opened.
/// Touched on the main thread only (commands and timers), as the shared
/// numbers of replication are (`propagation::LastNumber`); the atomic is a
/// plain load and store.
static LAST_NAME: AtomicPtr<LastName> = AtomicPtr::new(std::ptr::null_mut());

/// The stream name string of `key`'s feed, from the cache when `key` was
/// the last one asked for, retained for the caller (freed when the value
/// returned drops).
fn stream_string(key: &[u8]) -> RedisString {
    let last = LAST_NAME.load(Relaxed);
    // SAFETY: null or a box leaked below, freed only when replaced below,
    // on this same (main) thread.
    let cached = unsafe { last.as_ref() }.filter(|l| l.key.as_slice() == key);
    let name = match cached {
        Some(l) => l.name,
        None => {
            let fresh = made(&stream_name(key));
            if fresh.inner.is_null() {
                return fresh;
            }
            let name = fresh.inner;
            // The cache keeps this reference.
            std::mem::forget(fresh);
            let new = Box::into_raw(Box::new(LastName {
                key: key.to_vec(),
                name,
            }));
            let old = LAST_NAME.swap(new, Relaxed);
            if !old.is_null() {
                // SAFETY: the box this cache leaked before, no longer
                // reachable from it; its string loses the cache's reference
                // (a stream open elsewhere holds its own).
                let old = unsafe { Box::from_raw(old) };
                drop(RedisString::from_redis_module_string(
                    std::ptr::null_mut(),
                    old.name,
                ));
            }
            name
        }
    };
    // SAFETY: a live string the cache holds a reference to; retaining it
    // gives the caller one of its own.
    unsafe {
        if let Some(retain) = raw::RedisModule_RetainString {
            retain(std::ptr::null_mut(), name);
        }
    }
    RedisString::from_redis_module_string(std::ptr::null_mut(), name)
}

/// The feed stream of one key, open for writing while a change is made;
/// closed on drop (which also wakes clients blocked reading it).
pub struct FeedStream {
    name: RedisString,
    key: *mut raw::RedisModuleKey,
    /// The inventory key's name string (alive for the whole change).
    of: *mut raw::RedisModuleString,
}

impl FeedStream {
    /// Opens the feed stream of the key named `key` (its bytes, and its
    /// name string, which lives as long as the change), before the change:
    /// a stream name that holds another type refuses the change, nothing
    /// done. `fed` says the key's feed was on before this change: then, on
    /// a cluster node, a missing stream is one a reshard has not brought
    /// here yet (or taken away already), and the change answers TRYAGAIN.
    pub fn open(
        ctx: &Context,
        key: &[u8],
        key_string: *mut raw::RedisModuleString,
        fed: bool,
    ) -> Result<FeedStream, Error> {
        let name = stream_string(key);
        if name.inner.is_null() {
            return Err(Error::Apply("cannot make the feed stream's name".into()));
        }
        let handle = raw::open_key(
            ctx.ctx,
            name.inner,
            raw::KeyMode::READ | raw::KeyMode::WRITE,
        );
        let stream = FeedStream {
            name,
            key: handle,
            of: key_string,
        };
        // SAFETY: a key just opened and not yet closed.
        let kind = unsafe { raw::RedisModule_KeyType.map_or(-1, |t| t(stream.key)) };
        let ok = [
            raw::REDISMODULE_KEYTYPE_EMPTY,
            raw::REDISMODULE_KEYTYPE_STREAM,
        ];
        if fed && kind == raw::REDISMODULE_KEYTYPE_EMPTY as i32 && apart_by_reshard(ctx) {
            return Err(Error::TryAgain(format!(
                "the feed stream '{}' is not on this node: a reshard is moving the key and its stream; retry (if the stream was deleted, XGROUP CREATE ... MKSTREAM makes it again)",
                inventory_core::ledger::quote(stream.name.as_slice())
            )));
        }
        if stream.key.is_null() || !ok.iter().any(|&k| kind == k as i32) {
            return Err(Error::invalid(format!(
                "the feed stream '{}' holds another type: delete or rename it",
                inventory_core::ledger::quote(stream.name.as_slice())
            )));
        }
        Ok(stream)
    }

    /// Appends `entries` (of the change ending at `version` of key `key`):
    /// on a master the first ID is the stream's next one (as XADD `*`
    /// picks it) and the stream is then trimmed to `inventory.feed-maxlen`;
    /// on a replica or an AOF replay, `given` says both. Returns where they
    /// went (`None`: no entries). A failure here (a stream at the last
    /// possible ID, a replica out of step) is counted and logged by the
    /// caller; the change itself is already made.
    pub fn write(
        &mut self,
        ctx: &Context,
        entries: &[FeedEntry],
        version: u64,
        reuse: &ReplicationArgs,
    ) -> Result<Option<FeedStamp>, Error> {
        let given = reuse.feed;
        let Some(first_entry) = entries.first() else {
            return match given {
                None => Ok(None),
                Some(_) => Err(Error::Apply(
                    "a feed stamp for a change with no entries".into(),
                )),
            };
        };
        // SAFETY: reading the API table, filled once at load and never
        // written again.
        let api = unsafe {
            (
                raw::RedisModule_StreamAdd,
                raw::RedisModule_StreamTrimByLength,
                raw::RedisModule_ValueLength,
                raw::RedisModule_NotifyKeyspaceEvent,
            )
        };
        let (Some(add), Some(trim), Some(len), Some(notify)) = api else {
            return Err(Error::Apply("the stream API is missing".into()));
        };
        // SAFETY: as above.
        let Some(trim_by_id) = (unsafe { raw::RedisModule_StreamTrimByID }) else {
            return Err(Error::Apply("the stream API is missing".into()));
        };
        let mut id = raw::RedisModuleStreamID {
            ms: given.map_or(0, |g| g.first.ms),
            seq: given.map_or(0, |g| g.first.seq),
        };
        let mut first = None;
        let mut args = EntryArgs::new();
        for (i, entry) in entries.iter().enumerate() {
            args.fill(entry, self.of, version, reuse);
            let Some(argv) = args.complete() else {
                return Err(Error::Apply("cannot make a feed entry's strings".into()));
            };
            let pairs = (argv.len() / 2) as i64;
            let auto = i == 0 && given.is_none();
            let flags = if auto {
                raw::REDISMODULE_STREAM_ADD_AUTOID as i32
            } else {
                0
            };
            // SAFETY: an open stream key (checked at open), an ID struct and
            // `pairs` field-value pairs of live strings.
            let status = unsafe { add(self.key, flags, &mut id, argv.as_mut_ptr(), pairs) };
            if status != raw::REDISMODULE_OK as i32 {
                return Err(Error::Apply(format!(
                    "cannot append the {} entry {} of the feed (the stream refused ID {}-{})",
                    first_entry.event,
                    i + 1,
                    id.ms,
                    id.seq
                )));
            }
            let at = StreamId {
                ms: id.ms,
                seq: id.seq,
            };
            first.get_or_insert(at);
            let Some(next) = at.next() else {
                if i + 1 < entries.len() {
                    return Err(Error::Apply("the feed stream has no IDs left".into()));
                }
                break;
            };
            id = raw::RedisModuleStreamID {
                ms: next.ms,
                seq: next.seq,
            };
        }
        let maxlen = given.map_or_else(config::feed_maxlen, |g| g.maxlen);
        let mut trimmed = 0;
        // SAFETY: the open stream key.
        let entries_now = unsafe { len(self.key) } as u64;
        let over = maxlen > 0 && entries_now > maxlen;
        if over {
            // Exact trimming: every copy drops the same entries.
            // SAFETY: the open stream key; flags 0 is exact trimming.
            let n = unsafe { trim(self.key, 0, i64::try_from(maxlen).unwrap_or(i64::MAX)) };
            trimmed = n.max(0);
        }
        let minid = match given {
            Some(g) => g.minid,
            None => first.and_then(|f| age_floor(f, config::feed_max_age_ms())),
        };
        if let Some(floor) = minid {
            let mut id = raw::RedisModuleStreamID {
                ms: floor.ms,
                seq: floor.seq,
            };
            // Exact trimming by ID: every copy drops the same entries.
            // SAFETY: the open stream key and a live ID struct.
            let n = unsafe { trim_by_id(self.key, 0, &mut id) };
            trimmed += n.max(0);
        }
        // SAFETY: live context and key name; the event names are static C
        // strings.
        unsafe {
            notify(
                ctx.ctx,
                raw::REDISMODULE_NOTIFY_STREAM,
                c"xadd".as_ptr(),
                self.name.inner,
            );
            if trimmed > 0 {
                notify(
                    ctx.ctx,
                    raw::REDISMODULE_NOTIFY_STREAM,
                    c"xtrim".as_ptr(),
                    self.name.inner,
                );
            }
            if let Some(signal) = raw::RedisModule_SignalModifiedKey {
                signal(ctx.ctx, self.name.inner);
            }
        }
        STATS.fed(entries.len() as i64, trimmed);
        // The stamp names a length only when this copy trimmed to it (0:
        // not trimmed): every copy holds the same entries, so one that has
        // nothing to trim here has nothing to trim there, and the stamp
        // every replica and the AOF read is shorter by the length's digits.
        Ok(first.map(|first| FeedStamp {
            first,
            maxlen: if over { maxlen } else { 0 },
            minid,
        }))
    }
}

/// Whether a fed key without its stream may be one a key-by-key reshard
/// (MIGRATE, as `redis-cli --cluster reshard` does it) has split from its
/// stream: on a cluster node, for a change decided here. Replicated and
/// loaded effects follow the master that decided them, which had both.
fn apart_by_reshard(ctx: &Context) -> bool {
    let flags = ctx.get_flags();
    flags.contains(ContextFlags::CLUSTER)
        && !flags.intersects(ContextFlags::REPLICATED | ContextFlags::LOADING)
}

impl Drop for FeedStream {
    fn drop(&mut self) {
        raw::close_key(self.key);
    }
}

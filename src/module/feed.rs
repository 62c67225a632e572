//! Writing a key's feed entries to its stream, inside the command (or
//! housekeeping pass) that makes the change: the core (`ledger/feed.rs`)
//! decides the entries, this writes them with the stream API and says
//! where they went (`FeedStamp`), which replication carries to replicas
//! and the AOF so they write the same entries under the same IDs.

use super::config;
use super::stats::STATS;
use inventory_core::ledger::{stream_name, Error, FeedEntry, FeedStamp, StreamId};
use redis_module::{raw, Context, RedisString};

/// The feed stream of one key, open for writing while a change is made;
/// closed on drop (which also wakes clients blocked reading it).
pub struct FeedStream {
    name: RedisString,
    key: *mut raw::RedisModuleKey,
}

impl FeedStream {
    /// Opens the feed stream of the key `key`, before the change: a stream
    /// name that holds another type refuses the change, nothing done.
    pub fn open(ctx: &Context, key: &[u8]) -> Result<FeedStream, Error> {
        let name = RedisString::create_from_slice(ctx.ctx, &stream_name(key));
        let handle = raw::open_key(
            ctx.ctx,
            name.inner,
            raw::KeyMode::READ | raw::KeyMode::WRITE,
        );
        let stream = FeedStream { name, key: handle };
        // SAFETY: a key just opened and not yet closed.
        let kind = unsafe { raw::RedisModule_KeyType.map_or(-1, |t| t(stream.key)) };
        let ok = [
            raw::REDISMODULE_KEYTYPE_EMPTY,
            raw::REDISMODULE_KEYTYPE_STREAM,
        ];
        if stream.key.is_null() || !ok.iter().any(|&k| kind == k as i32) {
            return Err(Error::invalid(format!(
                "the feed stream '{}' holds another type: delete or rename it, or turn the feed off",
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
        key: &[u8],
        entries: &[FeedEntry],
        version: u64,
        given: Option<FeedStamp>,
    ) -> Result<Option<FeedStamp>, Error> {
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
        let mut id = raw::RedisModuleStreamID {
            ms: given.map_or(0, |g| g.first.ms),
            seq: given.map_or(0, |g| g.first.seq),
        };
        let mut first = None;
        for (i, entry) in entries.iter().enumerate() {
            let fields = entry.fields(key, version);
            let strings: Vec<RedisString> = fields
                .iter()
                .flat_map(|(f, v)| [&f[..], &v[..]])
                .map(|b| RedisString::create_from_slice(ctx.ctx, b))
                .collect();
            let mut argv: Vec<*mut raw::RedisModuleString> =
                strings.iter().map(|s| s.inner).collect();
            let auto = i == 0 && given.is_none();
            let flags = if auto {
                raw::REDISMODULE_STREAM_ADD_AUTOID as i32
            } else {
                0
            };
            // SAFETY: an open stream key (checked at open), an ID struct and
            // `fields.len()` field-value pairs of live strings.
            let status = unsafe {
                add(
                    self.key,
                    flags,
                    &mut id,
                    argv.as_mut_ptr(),
                    fields.len() as i64,
                )
            };
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
        if maxlen > 0 && entries_now > maxlen {
            // Exact trimming: every copy drops the same entries.
            // SAFETY: the open stream key; flags 0 is exact trimming.
            let n = unsafe { trim(self.key, 0, i64::try_from(maxlen).unwrap_or(i64::MAX)) };
            trimmed = n.max(0);
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
        Ok(first.map(|first| FeedStamp { first, maxlen }))
    }
}

impl Drop for FeedStream {
    fn drop(&mut self) {
        raw::close_key(self.key);
    }
}

//! How a change reaches replicas and the AOF: each applied effect is sent
//! as `INV.APPLY key <effect>` (`replicate`; AOF rewrites use the same
//! encoding, `effect_argv`), a confirm or cancel of `INV.CONFIRM|CANCEL key
//! txid` as `INV.APPLY.CONFIRM|CANCEL key txid`, a fed effect with its feed
//! stamp (`replicate_fed`), when the gate (`gate.rs`) says anything
//! consumes it; the frequent shapes through the call's own arguments
//! (`replicate_in_place`, docs/design.md "Replication forms").

use super::arg::Arg;
use super::gate;
use inventory_core::ledger::{Effect, FeedStamp, TxId};
use redis_module::{raw, Context, RedisString};
use std::os::raw::c_int;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering::Relaxed};

/// The running command's own argument array (the calling client's, name
/// included), which `RM_ReplicateVerbatim` propagates.
#[derive(Clone, Copy)]
pub struct CallArgv {
    ptr: *mut *mut raw::RedisModuleString,
    len: usize,
}

impl CallArgv {
    pub const NONE: CallArgv = CallArgv {
        ptr: std::ptr::null_mut(),
        len: 0,
    };

    /// # Safety
    /// `ptr` is the argument array Redis passed to the running command, with
    /// `len` strings, used only while that command runs.
    pub unsafe fn new(ptr: *mut *mut raw::RedisModuleString, len: usize) -> CallArgv {
        CallArgv { ptr, len }
    }
}

/// Argument strings of the calling command that replication may reuse.
/// `qty` must be the string the effect's quantity was parsed from.
pub struct ReplicationArgs {
    pub txid: Option<*mut raw::RedisModuleString>,
    pub qty: Option<*mut raw::RedisModuleString>,
    /// The reserve's buyer string, when it named one.
    pub buyer: Option<*mut raw::RedisModuleString>,
    /// The call's argument array, when its shape lets its effect be
    /// replicated through it (`replicate_in_place`).
    pub argv: CallArgv,
    /// The call is `INV.APPLY key <effect>` itself (a replica or an AOF
    /// replay): what it received is what it passes on, verbatim.
    pub verbatim: bool,
    /// Where the master wrote the effect's feed entries (INV.APPLY's
    /// `FEED` words).
    pub feed: Option<FeedStamp>,
}

impl Default for ReplicationArgs {
    fn default() -> ReplicationArgs {
        ReplicationArgs {
            txid: None,
            qty: None,
            buyer: None,
            argv: CallArgv::NONE,
            verbatim: false,
            feed: None,
        }
    }
}

impl ReplicationArgs {
    /// Only the txid string is reusable.
    pub fn txid(txid: Arg) -> ReplicationArgs {
        ReplicationArgs {
            txid: Some(txid.raw()),
            ..ReplicationArgs::default()
        }
    }

    /// The txid string, and the call's argument array for an effect that
    /// fits it (a confirm or cancel of `INV.CONFIRM|CANCEL key txid`).
    pub fn txid_in(txid: Arg, argv: CallArgv) -> ReplicationArgs {
        ReplicationArgs {
            txid: Some(txid.raw()),
            argv,
            ..ReplicationArgs::default()
        }
    }

    /// INV.APPLY's own effect, passed on as received, with the feed
    /// stamp it carried.
    pub fn verbatim(feed: Option<FeedStamp>) -> ReplicationArgs {
        ReplicationArgs {
            verbatim: true,
            feed,
            ..ReplicationArgs::default()
        }
    }

    /// A reserve's txid, qty and buyer strings, and its argument array.
    pub fn reserve(txid: Arg, qty: Arg, buyer: Option<Arg>, argv: CallArgv) -> ReplicationArgs {
        ReplicationArgs {
            txid: Some(txid.raw()),
            qty: Some(qty.raw()),
            buyer: buyer.map(Arg::raw),
            argv,
            verbatim: false,
            feed: None,
        }
    }
}

/// Effect names used on every replicated change, created once and shared
/// (passing a RedisModuleString only bumps its refcount).
#[derive(Clone, Copy)]
enum EffectName {
    Stock,
    Add,
    Reserve,
    Confirm,
    Cancel,
    Fence,
    Extend,
    Buyer,
}

static OPS: once_cell::sync::Lazy<[usize; 8]> = once_cell::sync::Lazy::new(|| {
    [
        "STOCK", "ADD", "RESERVE", "CONFIRM", "CANCEL", "FENCE", "EXTEND", "BUYER",
    ]
    .map(|name| {
        // SAFETY: a context-free string that is never freed; only touched on
        // the main thread.
        unsafe {
            raw::RedisModule_CreateString.map_or(0, |create| {
                create(std::ptr::null_mut(), name.as_ptr().cast(), name.len()) as usize
            })
        }
    })
});

/// The replication commands: `INV.APPLY`, and the three-word forms of a
/// confirm and a cancel (`INV.APPLY.CONFIRM key txid`, `INV.APPLY.CANCEL
/// key txid`), which fit the calls they come from (`replicate_in_place`).
#[derive(Clone, Copy)]
enum ApplyName {
    Apply,
    Confirm,
    Cancel,
}

/// Their names, made once like the effect names, in `ApplyName`'s order.
static APPLY_NAMES: once_cell::sync::Lazy<[usize; 3]> = once_cell::sync::Lazy::new(|| {
    ["INV.APPLY", "INV.APPLY.CONFIRM", "INV.APPLY.CANCEL"].map(|name| {
        // SAFETY: as OPS.
        unsafe {
            raw::RedisModule_CreateString.map_or(0, |create| {
                create(std::ptr::null_mut(), name.as_ptr().cast(), name.len()) as usize
            })
        }
    })
});

fn apply_name(n: ApplyName) -> *mut raw::RedisModuleString {
    APPLY_NAMES[n as usize] as *mut raw::RedisModuleString
}

fn op(o: EffectName) -> *mut raw::RedisModuleString {
    OPS[o as usize] as *mut raw::RedisModuleString
}

/// Propagates one effect as `INV.APPLY key <effect>` to replicas and the AOF.
/// The frequent single-record effects go through a format string, without
/// building any argument in Rust; the rest through a string vector.
pub fn replicate(
    ctx: &Context,
    key: *mut raw::RedisModuleString,
    effect: &Effect,
    reuse: &ReplicationArgs,
) {
    if !gate::needed() {
        return;
    }
    if reuse.verbatim {
        // SAFETY: ctx is the running INV.APPLY's context; the API table is
        // filled once at load.
        unsafe {
            if let Some(verbatim) = raw::RedisModule_ReplicateVerbatim {
                verbatim(ctx.ctx);
            }
        }
        return;
    }
    // The caller's own txid (and qty) strings are passed by reference when
    // they are what the effect names; otherwise a string is made once here.
    let made;
    let txid_string = |id: &TxId| -> *mut raw::RedisModuleString {
        match reuse.txid {
            Some(s) if !s.is_null() && RedisString::string_as_slice(s) == id.as_bytes() => s,
            _ => std::ptr::null_mut(),
        }
    };
    let tx = match effect {
        Effect::Reserve { txid, .. }
        | Effect::Confirm(txid)
        | Effect::Cancel(txid)
        | Effect::Fence { txid, .. }
        | Effect::Extend { txid, .. } => {
            let echoed = txid_string(txid);
            if echoed.is_null() {
                made = RedisString::create_from_slice(std::ptr::null_mut(), txid.as_bytes());
                made.inner
            } else {
                echoed
            }
        }
        _ => std::ptr::null_mut(),
    };
    // SAFETY: RM_Replicate is variadic; each format letter is matched by the
    // argument type the module API documents: s = RedisModuleString*,
    // l = long long, v = (RedisModuleString**, size_t). Every pointer
    // outlives the call.
    unsafe {
        let Some(rm_replicate) = raw::RedisModule_Replicate else {
            return;
        };
        let (c, cmd, k) = (ctx.ctx, c"INV.APPLY".as_ptr(), key);
        match effect {
            Effect::Stock(n) => rm_replicate(c, cmd, c"ssl".as_ptr(), k, op(EffectName::Stock), *n),
            Effect::Add(n) => rm_replicate(c, cmd, c"ssl".as_ptr(), k, op(EffectName::Add), *n),
            Effect::Reserve {
                qty,
                deadline,
                buyer: None,
                ..
            } => match reuse.qty.filter(|q| !q.is_null()) {
                Some(q)
                    if tx == reuse.txid.unwrap_or(std::ptr::null_mut())
                        && reuse.argv.len == 6
                        && reuse.buyer.is_none()
                        && replicate_reserve_in_place(
                            c,
                            reuse.argv,
                            k,
                            op(EffectName::Reserve),
                            [tx, q, deadline_string(*deadline)],
                            None,
                        ) == raw::REDISMODULE_OK as c_int =>
                {
                    raw::REDISMODULE_OK as c_int
                }
                // Another shape, or the in-place path could not run.
                Some(q) => rm_replicate(
                    c,
                    cmd,
                    c"ssssl".as_ptr(),
                    k,
                    op(EffectName::Reserve),
                    tx,
                    q,
                    *deadline as i64,
                ),
                None => rm_replicate(
                    c,
                    cmd,
                    c"sssll".as_ptr(),
                    k,
                    op(EffectName::Reserve),
                    tx,
                    *qty,
                    *deadline as i64,
                ),
            },
            Effect::Reserve {
                deadline,
                buyer: Some(b),
                ..
            } => match (reuse.qty.filter(|q| !q.is_null()), reuse.buyer) {
                (Some(q), Some(bs))
                    if !bs.is_null()
                        && tx == reuse.txid.unwrap_or(std::ptr::null_mut())
                        && RedisString::string_as_slice(bs) == b.as_bytes() =>
                {
                    if reuse.argv.len == 8
                        && replicate_reserve_in_place(
                            c,
                            reuse.argv,
                            k,
                            op(EffectName::Reserve),
                            [tx, q, deadline_string(*deadline)],
                            Some(bs),
                        ) == raw::REDISMODULE_OK as c_int
                    {
                        raw::REDISMODULE_OK as c_int
                    } else {
                        rm_replicate(
                            c,
                            cmd,
                            c"sssslss".as_ptr(),
                            k,
                            op(EffectName::Reserve),
                            tx,
                            q,
                            *deadline as i64,
                            op(EffectName::Buyer),
                            bs,
                        )
                    }
                }
                _ => {
                    let (_strings, mut argv) = effect_argv(effect);
                    rm_replicate(c, cmd, c"sv".as_ptr(), k, argv.as_mut_ptr(), argv.len())
                }
            },
            // `INV.CONFIRM key txid` / `INV.CANCEL key txid`: three words,
            // as the effect's own form; otherwise INV.APPLY's.
            Effect::Confirm(_) | Effect::Cancel(_)
                if tx == reuse.txid.unwrap_or(std::ptr::null_mut())
                    && replicate_in_place(
                        c,
                        reuse.argv,
                        &[
                            apply_name(if matches!(effect, Effect::Confirm(_)) {
                                ApplyName::Confirm
                            } else {
                                ApplyName::Cancel
                            }),
                            k,
                            tx,
                        ],
                    ) == raw::REDISMODULE_OK as c_int =>
            {
                raw::REDISMODULE_OK as c_int
            }
            Effect::Confirm(_) => {
                rm_replicate(c, cmd, c"sss".as_ptr(), k, op(EffectName::Confirm), tx)
            }
            Effect::Cancel(_) => {
                rm_replicate(c, cmd, c"sss".as_ptr(), k, op(EffectName::Cancel), tx)
            }
            Effect::Fence { at, .. } => rm_replicate(
                c,
                cmd,
                c"sssl".as_ptr(),
                k,
                op(EffectName::Fence),
                tx,
                *at as i64,
            ),
            Effect::Extend { deadline, .. } => rm_replicate(
                c,
                cmd,
                c"sssl".as_ptr(),
                k,
                op(EffectName::Extend),
                tx,
                *deadline as i64,
            ),
            Effect::Expire(_)
            | Effect::ExpireFirst(_)
            | Effect::Purge(_)
            | Effect::Load { .. }
            | Effect::Records(_)
            | Effect::ConfirmPart { .. }
            | Effect::Adjust { .. }
            | Effect::Rules { .. }
            | Effect::Buyers(_) => {
                let (_strings, mut argv) = effect_argv(effect);
                rm_replicate(c, cmd, c"sv".as_ptr(), k, argv.as_mut_ptr(), argv.len())
            }
        };
    }
}

/// Propagates a fed effect as `INV.APPLY key <NAME>:<first id>:<maxlen>[:<minid>]
/// <effect args>` (the stamp joined to the effect's name,
/// `FeedStamp::joined`), so that replicas and the AOF write its entries
/// under the master's IDs (without a stamp, as `replicate` does). A
/// reserve, confirm or cancel reuses the caller's strings and the shared
/// words, as `replicate`'s own paths do, and a reserve of the usual shapes
/// goes through the call's own argument array (`replicate_reserve_in_place`:
/// with the stamp in its name word, a fed reserve has as many words as the
/// INV.RESERVE it came from); other effects build theirs.
pub fn replicate_fed(
    ctx: &Context,
    key: *mut raw::RedisModuleString,
    effect: &Effect,
    stamp: Option<FeedStamp>,
    reuse: &ReplicationArgs,
) {
    let Some(stamp) = stamp.filter(|_| !reuse.verbatim) else {
        return replicate(ctx, key, effect, reuse);
    };
    if !gate::needed() {
        return;
    }
    let reused = |id: &TxId| {
        reuse
            .txid
            .filter(|s| !s.is_null() && RedisString::string_as_slice(*s) == id.as_bytes())
    };
    // The effect's words after its name: the caller's strings and shared
    // words where they are what the effect names.
    let fast: Option<(
        EffectName,
        smallvec::SmallVec<[*mut raw::RedisModuleString; 6]>,
    )> = match effect {
        Effect::Reserve {
            txid,
            deadline,
            buyer,
            ..
        } => match (reused(txid), reuse.qty, buyer, reuse.buyer) {
            (Some(tx), Some(q), None, _) => Some((
                EffectName::Reserve,
                smallvec::smallvec![tx, q, deadline_string(*deadline)],
            )),
            (Some(tx), Some(q), Some(b), Some(bs))
                if !bs.is_null() && RedisString::string_as_slice(bs) == b.as_bytes() =>
            {
                Some((
                    EffectName::Reserve,
                    smallvec::smallvec![
                        tx,
                        q,
                        deadline_string(*deadline),
                        op(EffectName::Buyer),
                        bs
                    ],
                ))
            }
            _ => None,
        },
        Effect::Confirm(t) => reused(t).map(|tx| (EffectName::Confirm, smallvec::smallvec![tx])),
        Effect::Cancel(t) => reused(t).map(|tx| (EffectName::Cancel, smallvec::smallvec![tx])),
        _ => None,
    }
    .filter(|(_, words)| {
        words
            .iter()
            .all(|p: &*mut raw::RedisModuleString| !p.is_null())
    });
    // Otherwise the effect's own strings, kept alive until replicated.
    let built;
    let (name, words): (&[u8], &[*mut raw::RedisModuleString]) = match &fast {
        Some((name, words)) => (RedisString::string_as_slice(op(*name)), words),
        None => {
            built = effect_argv(effect);
            match built.1.split_first() {
                Some((name, words)) => (RedisString::string_as_slice(*name), words),
                None => return,
            }
        }
    };
    let joined = RedisString::create_from_slice(std::ptr::null_mut(), &stamp.joined(name));
    // The key is the running command's key string, as for `replicate`.
    let k = key;
    // SAFETY: ctx is the running command's context; `words` are live
    // strings (the caller's, shared ones or `built`'s) and `joined` lives
    // to the end of this function. For the in-place path, the call's array
    // is the one Redis passed (`reuse.argv`), checked for its shape there.
    unsafe {
        if let (Some((EffectName::Reserve, _)), [tx, q, at, rest @ ..]) = (&fast, words) {
            // Through the call's own array when its shape fits (checked
            // there); otherwise by RM_Replicate below.
            let buyer = rest.get(1).copied();
            if replicate_reserve_in_place(
                ctx.ctx,
                reuse.argv,
                k,
                joined.inner,
                [*tx, *q, *at],
                buyer,
            ) == raw::REDISMODULE_OK as c_int
            {
                return;
            }
        }
        let mut argv: smallvec::SmallVec<[*mut raw::RedisModuleString; 8]> =
            smallvec::smallvec![joined.inner];
        argv.extend(words.iter().copied());
        if let Some(rm_replicate) = raw::RedisModule_Replicate {
            rm_replicate(
                ctx.ctx,
                c"INV.APPLY".as_ptr(),
                c"sv".as_ptr(),
                k,
                argv.as_mut_ptr(),
                argv.len(),
            );
        }
    }
}

/// Replicates `INV.APPLY key <name> txid qty deadline [BUYER id]` through
/// the call's own argument array (`replicate_in_place`): `INV.RESERVE key
/// txid qty TTL|PXAT n [BUYER id]` has the same six (eight) slots. `name`
/// is `RESERVE`, or for a fed reserve the name joined to its feed stamp.
///
/// # Safety
/// As `replicate_in_place`; `key`, `name`, the effect's `txid`, `qty` and
/// deadline strings and `buyer` are strings alive for the call.
unsafe fn replicate_reserve_in_place(
    ctx: *mut raw::RedisModuleCtx,
    argv: CallArgv,
    key: *mut raw::RedisModuleString,
    name: *mut raw::RedisModuleString,
    [txid, qty, at]: [*mut raw::RedisModuleString; 3],
    buyer: Option<*mut raw::RedisModuleString>,
) -> c_int {
    let words = [
        apply_name(ApplyName::Apply),
        key,
        name,
        txid,
        qty,
        at,
        op(EffectName::Buyer),
        buyer.unwrap_or(std::ptr::null_mut()),
    ];
    let len = if buyer.is_some() { 8 } else { 6 };
    // SAFETY: the caller's guarantee.
    unsafe { replicate_in_place(ctx, argv, &words[..len]) }
}

/// Replicates `words` (the replication command's name first) through the
/// call's own argument array, when it has as many slots: they are pointed
/// at `words` for the length of one `RM_ReplicateVerbatim` (which copies
/// the array and takes its own references) and put back before anything
/// else reads them. Most of what `RM_Replicate` costs a change is its
/// command lookup by name and building its argument objects
/// (docs/benchmarks.md); this does neither. What replicas and the AOF
/// receive is the command `RM_Replicate` would send with the same words.
/// Returns an error, having replicated nothing, when it cannot run
/// (another number of slots, a null word: the caller then uses
/// `RM_Replicate`).
///
/// # Safety
/// `ctx` is the running command's context and `argv` its array (or
/// `CallArgv::NONE`); every word is a string alive for the call.
unsafe fn replicate_in_place(
    ctx: *mut raw::RedisModuleCtx,
    argv: CallArgv,
    words: &[*mut raw::RedisModuleString],
) -> c_int {
    const MOST: usize = 8;
    // SAFETY: the API table is filled once at load and never written again.
    let Some(verbatim) = (unsafe { raw::RedisModule_ReplicateVerbatim }) else {
        return raw::REDISMODULE_ERR as c_int;
    };
    let len = words.len();
    if words.iter().any(|p| p.is_null()) || argv.ptr.is_null() || argv.len != len || len > MOST {
        return raw::REDISMODULE_ERR as c_int;
    }
    // SAFETY: the caller's guarantee: the live array of this call, of `len`
    // slots (checked above).
    let slots = unsafe { std::slice::from_raw_parts_mut(argv.ptr, len) };
    let mut saved = [std::ptr::null_mut(); MOST];
    saved[..len].copy_from_slice(slots);
    slots.copy_from_slice(words);
    // SAFETY: ctx is the running command's context.
    let status = unsafe { verbatim(ctx) };
    slots.copy_from_slice(&saved[..len]);
    status
}

/// The last number asked for, and its string, which the module holds one
/// reference to. Reserves with one TTL arriving in the same millisecond (a
/// flash sale's burst) share one deadline, so they share its string
/// instead of each making one (docs/benchmarks.md). Sharing is safe as for
/// the effect names: a string handed to replication is only read, and
/// replication takes its own reference (the stream API copies what it is
/// given). Touched on the
/// main thread only (commands and timers); the atomics are plain loads and
/// stores.
struct LastNumber {
    value: AtomicU64,
    string: AtomicPtr<raw::RedisModuleString>,
}

impl LastNumber {
    const fn new() -> LastNumber {
        LastNumber {
            value: AtomicU64::new(u64::MAX),
            string: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// `v` as a module string (null if the server cannot make one), valid
    /// at least until the next call.
    fn get(&self, v: u64) -> *mut raw::RedisModuleString {
        let cached = self.string.load(Relaxed);
        if self.value.load(Relaxed) == v && !cached.is_null() {
            return cached;
        }
        // SAFETY: the API table is filled once at load. A context-free
        // string made here is owned by the cache; the one it replaces loses
        // the cache's reference (replication keeps its own where it still
        // has one).
        unsafe {
            let (Some(create), Some(free)) =
                (raw::RedisModule_CreateString, raw::RedisModule_FreeString)
            else {
                return std::ptr::null_mut();
            };
            // Written here rather than by RM_CreateStringFromLongLong, whose
            // digit loop is slower than itoa's (a version a change).
            let mut digits = itoa::Buffer::new();
            let text = digits.format(v);
            let made = create(std::ptr::null_mut(), text.as_ptr().cast(), text.len());
            if made.is_null() {
                return made;
            }
            if !cached.is_null() {
                free(std::ptr::null_mut(), cached);
            }
            self.string.store(made, Relaxed);
            self.value.store(v, Relaxed);
            made
        }
    }
}

static LAST_DEADLINE: LastNumber = LastNumber::new();
static LAST_VERSION: LastNumber = LastNumber::new();

/// A change's version as a module string, shared by every feed entry of
/// the change (null if the server cannot make one); valid until the next
/// call for another version.
pub fn version_string(version: u64) -> *mut raw::RedisModuleString {
    LAST_VERSION.get(version)
}

/// `deadline` as a module string, shared with the next call for the same
/// deadline (null if the server cannot make one); valid until the next call.
pub fn deadline_string(deadline: u64) -> *mut raw::RedisModuleString {
    LAST_DEADLINE.get(deadline)
}

/// An effect's arguments as module strings (binary safe), for the "v"
/// format of RM_Replicate and RM_EmitAOF. Keep the strings alive while the
/// pointers are in use.
pub fn effect_argv(effect: &Effect) -> (Vec<RedisString>, Vec<*mut raw::RedisModuleString>) {
    let strings: Vec<RedisString> = effect
        .to_args()
        .into_iter()
        .map(|a| RedisString::create_from_slice(std::ptr::null_mut(), &a))
        .collect();
    let argv = strings.iter().map(|s| s.inner).collect();
    (strings, argv)
}

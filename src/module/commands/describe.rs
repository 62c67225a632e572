//! What the server, `COMMAND` and ACL are told about each command: exact
//! arity, key specs (what it does to each key), a summary, complexity and
//! arguments (redis-cli's hints come from them), and, where the server
//! offers them, ACL categories. Registered with the
//! raw `RedisModule_SetCommandInfo` (Redis 7.0 has it) and
//! `RedisModule_SetCommandACLCategories` (Redis 7.2+, Valkey), each looked
//! up at run time.

use redis_module::{raw, Context};
use std::ffi::CStr;
use std::os::raw::c_int;

/// The module's own ACL category, `@inventory`.
const CATEGORY: &CStr = c"inventory";

/// What a command does to its keys and what it is about.
pub struct Info {
    /// Positive: exactly this many arguments, the name included; negative:
    /// at least that many.
    pub arity: c_int,
    /// `REDISMODULE_CMD_KEY_*` flags of every key the command names.
    pub key_flags: u32,
    /// ACL categories besides `@inventory` (Redis 7.2+ and Valkey).
    pub categories: &'static str,
    pub summary: &'static CStr,
    pub complexity: &'static CStr,
    pub args: &'static [Arg],
}

/// One argument as `COMMAND DOCS` lists it.
pub struct Arg {
    name: &'static CStr,
    kind: Kind,
    token: Option<&'static CStr>,
    flags: u32,
    sub: &'static [Arg],
}

#[derive(Clone, Copy)]
enum Kind {
    Key,
    Text,
    Integer,
    UnixTime,
    OneOf,
    Block,
    PureToken,
}

impl Arg {
    const fn new(name: &'static CStr, kind: Kind) -> Arg {
        Arg {
            name,
            kind,
            token: None,
            flags: raw::REDISMODULE_CMD_ARG_NONE,
            sub: &[],
        }
    }
    /// The command's key (its only key spec).
    pub const fn key(name: &'static CStr) -> Arg {
        Arg::new(name, Kind::Key)
    }
    pub const fn text(name: &'static CStr) -> Arg {
        Arg::new(name, Kind::Text)
    }
    pub const fn int(name: &'static CStr) -> Arg {
        Arg::new(name, Kind::Integer)
    }
    pub const fn unix_time(name: &'static CStr) -> Arg {
        Arg::new(name, Kind::UnixTime)
    }
    /// A word alone, no value.
    pub const fn pure_token(name: &'static CStr, token: &'static CStr) -> Arg {
        Arg {
            token: Some(token),
            ..Arg::new(name, Kind::PureToken)
        }
    }
    pub const fn one_of(name: &'static CStr, sub: &'static [Arg]) -> Arg {
        Arg {
            sub,
            ..Arg::new(name, Kind::OneOf)
        }
    }
    pub const fn block(name: &'static CStr, sub: &'static [Arg]) -> Arg {
        Arg {
            sub,
            ..Arg::new(name, Kind::Block)
        }
    }
    /// Preceded by the word `token`.
    pub const fn token(self, token: &'static CStr) -> Arg {
        Arg {
            token: Some(token),
            ..self
        }
    }
    pub const fn optional(self) -> Arg {
        Arg {
            flags: self.flags | raw::REDISMODULE_CMD_ARG_OPTIONAL,
            ..self
        }
    }
    pub const fn multiple(self) -> Arg {
        Arg {
            flags: self.flags | raw::REDISMODULE_CMD_ARG_MULTIPLE,
            ..self
        }
    }
}

/// The raw, zero-terminated form of `args`; nested arrays are kept in
/// `store` (their buffers do not move when `store` grows).
/// Without a key spec (commands whose keys the module reports itself), key
/// arguments are described as strings: a key argument must name a spec.
fn raw_args(
    args: &[Arg],
    store: &mut Vec<Vec<raw::RedisModuleCommandArg>>,
    spec: bool,
) -> *mut raw::RedisModuleCommandArg {
    let mut out: Vec<raw::RedisModuleCommandArg> = args
        .iter()
        .map(|a| {
            let subargs = if a.sub.is_empty() {
                std::ptr::null_mut()
            } else {
                raw_args(a.sub, store, spec)
            };
            raw::RedisModuleCommandArg {
                name: a.name.as_ptr(),
                type_: match a.kind {
                    Kind::Key if spec => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_KEY,
                    Kind::Key => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_STRING,
                    Kind::Text => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_STRING,
                    Kind::Integer => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_INTEGER,
                    Kind::UnixTime => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_UNIX_TIME,
                    Kind::OneOf => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_ONEOF,
                    Kind::Block => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_BLOCK,
                    Kind::PureToken => {
                        raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_PURE_TOKEN
                    }
                },
                key_spec_index: if spec && matches!(a.kind, Kind::Key) {
                    0
                } else {
                    -1
                },
                token: a.token.map_or(std::ptr::null(), CStr::as_ptr),
                summary: std::ptr::null(),
                since: std::ptr::null(),
                flags: a.flags as c_int,
                deprecated_since: std::ptr::null(),
                subargs,
                display_text: std::ptr::null(),
            }
        })
        .collect();
    // SAFETY: plain C data; all zero ends the array, as the API documents.
    out.push(unsafe { std::mem::zeroed() });
    let ptr = out.as_mut_ptr();
    store.push(out);
    ptr
}

/// Read-only access to the key's data.
pub const READ: u32 = raw::REDISMODULE_CMD_KEY_RO | raw::REDISMODULE_CMD_KEY_ACCESS;
/// Changes the key and returns some of its data.
pub const UPDATE: u32 =
    raw::REDISMODULE_CMD_KEY_RW | raw::REDISMODULE_CMD_KEY_ACCESS | raw::REDISMODULE_CMD_KEY_UPDATE;
/// Adds a reservation to the key and returns some of its data (the server
/// takes one of INSERT, UPDATE and DELETE per key spec).
pub const INSERT: u32 =
    raw::REDISMODULE_CMD_KEY_RW | raw::REDISMODULE_CMD_KEY_ACCESS | raw::REDISMODULE_CMD_KEY_INSERT;
/// Changes the key, returning nothing of it.
pub const WRITE: u32 = raw::REDISMODULE_CMD_KEY_RW | raw::REDISMODULE_CMD_KEY_UPDATE;

const VERSION: raw::RedisModuleCommandInfoVersion = raw::RedisModuleCommandInfoVersion {
    version: 1,
    sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
    sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
    sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
};

/// The key spec for legacy positions (first, last, step): `first` is an
/// argument index; `last` is `first` (one key) or -1 (through the end).
fn key_spec(
    flags: u32,
    (first, last, step): (c_int, c_int, c_int),
) -> raw::RedisModuleCommandKeySpec {
    raw::RedisModuleCommandKeySpec {
        notes: std::ptr::null(),
        flags: u64::from(flags),
        begin_search_type: raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX,
        bs: raw::RedisModuleCommandKeySpec__bindgen_ty_1 {
            index: raw::RedisModuleCommandKeySpec__bindgen_ty_1__bindgen_ty_1 { pos: first },
        },
        find_keys_type: raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE,
        fk: raw::RedisModuleCommandKeySpec__bindgen_ty_2 {
            range: raw::RedisModuleCommandKeySpec__bindgen_ty_2__bindgen_ty_1 {
                lastkey: if last == first { 0 } else { -1 },
                keystep: step,
                limit: 0,
            },
        },
    }
}

/// The terminating entry of a key-spec array: all zero.
fn no_key_spec() -> raw::RedisModuleCommandKeySpec {
    // SAFETY: the struct is plain C data (pointers, integers, unions of
    // integers); all zero is the terminator the API documents.
    unsafe { std::mem::zeroed() }
}

/// Creates `@inventory` where the server lets modules add categories
/// (Valkey 8.1+, Redis 7.4+). True when it exists afterwards.
pub fn add_category(ctx: &Context) -> bool {
    // SAFETY: called from OnLoad with the load context, as the API requires;
    // the name is a static C string.
    unsafe {
        raw::RedisModule_AddACLCategory
            .is_some_and(|f| f(ctx.ctx, CATEGORY.as_ptr()) == raw::REDISMODULE_OK as c_int)
    }
}

/// Tells the server about one registered command. `with_category` adds
/// `@inventory` to its categories.
pub fn describe(
    ctx: &Context,
    name: &CStr,
    keys: (c_int, c_int, c_int),
    info: &Info,
    with_category: bool,
) -> Result<(), String> {
    let label = name.to_string_lossy();
    // SAFETY: ctx is the load context and the name a registered command's.
    let command = unsafe {
        raw::RedisModule_GetCommand.map_or(std::ptr::null_mut(), |f| f(ctx.ctx, name.as_ptr()))
    };
    if command.is_null() {
        return Err(format!("cannot find {label} to describe it"));
    }
    // First key 0: the module reports its keys (`getkeys-api`), no spec.
    let spec = keys.0 != 0;
    let mut specs = if spec {
        [key_spec(info.key_flags, keys), no_key_spec()]
    } else {
        [no_key_spec(), no_key_spec()]
    };
    let mut store = Vec::new();
    let args = raw_args(info.args, &mut store, spec);
    let command_info = raw::RedisModuleCommandInfo {
        version: &VERSION,
        summary: info.summary.as_ptr(),
        complexity: info.complexity.as_ptr(),
        since: c"0.1.0".as_ptr(),
        history: std::ptr::null_mut(),
        tips: std::ptr::null(),
        arity: info.arity,
        key_specs: specs.as_mut_ptr(),
        args,
    };
    // SAFETY: command is live; the server copies what it keeps from the info
    // during the call, and every pointer in it (specs, the argument arrays
    // in `store`, static strings) is valid for the call.
    let status = unsafe {
        raw::RedisModule_SetCommandInfo
            .map_or(raw::REDISMODULE_ERR as c_int, |f| f(command, &command_info))
    };
    if status != raw::REDISMODULE_OK as c_int {
        return Err(format!("the server refused the description of {label}"));
    }
    let categories = match (with_category, info.categories.is_empty()) {
        (true, true) => CATEGORY.to_string_lossy().into_owned(),
        (true, false) => format!("{} {}", info.categories, CATEGORY.to_string_lossy()),
        (false, _) => info.categories.to_owned(),
    };
    // SAFETY: as above; the string is a C string built here, valid for the
    // call. Servers without the API (Redis 7.0) skip this.
    unsafe {
        if let (Some(set), Ok(c)) = (
            raw::RedisModule_SetCommandACLCategories,
            std::ffi::CString::new(categories),
        ) {
            if set(command, c.as_ptr()) != raw::REDISMODULE_OK as c_int {
                return Err(format!("the server refused the ACL categories of {label}"));
            }
        }
    }
    Ok(())
}

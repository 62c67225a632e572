//! One argument of the running command: Redis's own string, alive until the
//! command returns, with its bytes read once. Parsers keep these handles
//! (`inventory_core::parse::Arg`), so a key is opened and a txid or qty
//! echoed into replication through the very string the client sent: nothing
//! is copied, retained or freed.

use redis_module::{raw, RedisString};

#[derive(Clone, Copy)]
pub struct Arg<'a> {
    raw: *mut raw::RedisModuleString,
    bytes: &'a [u8],
}

impl<'a> Arg<'a> {
    /// A placeholder (a null string of no bytes) for unused slots of a
    /// fixed array; never handed to the module API.
    pub const EMPTY: Arg<'static> = Arg {
        raw: std::ptr::null_mut(),
        bytes: &[],
    };

    /// Reads one of the command's argument strings (non-null: Redis passes
    /// `argc` valid strings).
    pub fn new(raw: *mut raw::RedisModuleString) -> Arg<'a> {
        Arg {
            raw,
            bytes: RedisString::string_as_slice(raw),
        }
    }

    /// The string itself, for the module API.
    pub fn raw(self) -> *mut raw::RedisModuleString {
        self.raw
    }
}

impl inventory_core::parse::Arg for Arg<'_> {
    fn bytes(&self) -> &[u8] {
        self.bytes
    }
}

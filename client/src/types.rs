//! Typed replies and errors.

use std::fmt;

/// The state a reservation command answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Units are held for the txid.
    Reserved,
    /// Not enough units were available; nothing was recorded.
    NoStock,
    /// The units were sold.
    Confirmed,
    /// The reservation was cancelled (or the txid fenced by an early cancel).
    Cancelled,
    /// The reservation's deadline passed; its units went back.
    Expired,
    /// No record of the txid on this SKU.
    Unknown,
}

impl Outcome {
    /// Parses the module's state word.
    ///
    /// ```
    /// use redis_inventory_client::Outcome;
    /// assert_eq!(Outcome::parse("RESERVED"), Some(Outcome::Reserved));
    /// ```
    pub fn parse(word: &str) -> Option<Outcome> {
        Some(match word {
            "RESERVED" => Outcome::Reserved,
            "NOSTOCK" => Outcome::NoStock,
            "CONFIRMED" => Outcome::Confirmed,
            "CANCELLED" => Outcome::Cancelled,
            "EXPIRED" => Outcome::Expired,
            "UNKNOWN" => Outcome::Unknown,
            _ => return None,
        })
    }
}

/// The reply of a single-SKU reservation command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// What happened (or had already happened) to the txid.
    pub outcome: Outcome,
    /// Units available on the SKU afterwards.
    pub available: i64,
    /// The SKU's version afterwards (0 when the key does not exist).
    pub version: u64,
    /// Replicas that acknowledged the write, when a [`crate::Durability`] is set.
    pub acked_replicas: Option<u64>,
}

/// A snapshot of one SKU (`INV.GET`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Stock {
    /// Units on hand, reserved ones included.
    pub stock: i64,
    /// Units held by open reservations.
    pub reserved: i64,
    /// `stock - reserved`.
    pub available: i64,
    /// Units confirmed since the key was created.
    pub sold: i64,
    /// +1 on every change; use it with `IFVERSION`.
    pub version: u64,
    /// Open reservations.
    pub open: u64,
}

/// One transaction record (`INV.TX`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxRecord {
    /// Its state.
    pub outcome: Outcome,
    /// Units it holds or held.
    pub qty: i64,
    /// Deadline in unix milliseconds while reserved.
    pub deadline: u64,
}

/// Everything that can go wrong.
#[derive(Debug)]
pub enum Error {
    /// The txid is already reserved with another quantity (`TXCONFLICT`).
    Conflict(String),
    /// `IFVERSION` did not match (`VERSION`).
    Version(String),
    /// A stock change would take units that are not available (`NOSTOCK`),
    /// or a key holds too many open reservations (`LIMIT`).
    Refused(String),
    /// The server rejected the arguments (`ERR`, `WRONGTYPE`), or the call was
    /// malformed before it was sent.
    InvalidInput(String),
    /// The cluster could not serve the call (`CLUSTERDOWN`, `CROSSSLOT`,
    /// redirects that did not settle) within the retry deadline.
    Cluster(String),
    /// Connecting, sending or reading failed, or timed out, within the retry
    /// deadline. For SET/ADD the outcome is unknown: read, then use IFVERSION.
    Connection(redis::RedisError),
    /// An unexpected reply shape.
    Protocol(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Conflict(m) => write!(f, "conflict: {m}"),
            Error::Version(m) => write!(f, "version mismatch: {m}"),
            Error::Refused(m) => write!(f, "refused: {m}"),
            Error::InvalidInput(m) => write!(f, "invalid input: {m}"),
            Error::Cluster(m) => write!(f, "cluster: {m}"),
            Error::Connection(e) => write!(f, "connection: {e}"),
            Error::Protocol(m) => write!(f, "unexpected reply: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// Maps a redis-rs error by its reply code.
    pub(crate) fn from_redis(e: redis::RedisError) -> Error {
        let detail = || {
            format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or(""))
                .trim()
                .to_string()
        };
        match e.code() {
            Some("TXCONFLICT") => Error::Conflict(detail()),
            Some("VERSION") => Error::Version(detail()),
            Some("NOSTOCK") | Some("LIMIT") => Error::Refused(detail()),
            Some("ERR") | Some("WRONGTYPE") => Error::InvalidInput(detail()),
            Some("MOVED") | Some("ASK") | Some("TRYAGAIN") | Some("CLUSTERDOWN")
            | Some("CROSSSLOT") => Error::Cluster(detail()),
            _ if e.is_io_error()
                || e.is_timeout()
                || e.is_connection_dropped()
                || e.is_connection_refusal() =>
            {
                Error::Connection(e)
            }
            _ => Error::Cluster(e.to_string()),
        }
    }

    /// True for failures a retry of an idempotent command may cure.
    ///
    /// ```
    /// use redis_inventory_client::Error;
    /// assert!(!Error::InvalidInput("qty".into()).is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Connection(_) | Error::Cluster(_))
    }
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

//! Typed replies and errors.

use inventory_core::ledger::code;
use std::fmt;

/// The state a reservation command answers with: the module's own type
/// (`inventory_core::ledger::Status`), so the words cannot drift apart.
///
/// ```
/// use redis_inventory_client::Outcome;
/// assert_eq!(Outcome::parse("RESERVED"), Some(Outcome::Reserved));
/// assert_eq!(Outcome::Expired.as_str(), "EXPIRED");
/// ```
pub use inventory_core::ledger::Status as Outcome;

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

/// The counters of one SKU as `INV.GET` answers them: the module's own
/// type (`inventory_core::ledger::View`), so the fields cannot drift apart.
pub use inventory_core::ledger::View as StockCounts;

/// A snapshot of one SKU (`INV.GET`): its counters, and the sale rules that
/// are set.
///
/// ```
/// use redis_inventory_client::{Stock, StockCounts};
/// let s = Stock { counts: StockCounts { stock: 3, available: 3, ..Default::default() }, ..Default::default() };
/// assert_eq!((s.counts.available, s.limit), (3, None));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Stock {
    /// Stock, reserved, available, sold, version, open and records.
    pub counts: StockCounts,
    /// The per-buyer limit, when set (`INV.RULES LIMIT`).
    pub limit: Option<u64>,
    /// When the sale window opens (unix ms), when set.
    pub start: Option<u64>,
    /// When the sale window closes (unix ms), when set.
    pub end: Option<u64>,
    /// Whether the SKU's change feed is on (`INV.RULES FEED ON`).
    pub feed: bool,
    /// The feed's `lowstock` threshold, when set (`INV.RULES LOW`).
    pub low: Option<u64>,
}

/// One transaction record (`INV.TX`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxRecord {
    /// Its state.
    pub outcome: Outcome,
    /// Units it holds or held (for a confirmed one, the units held when it
    /// was confirmed).
    pub qty: i64,
    /// Deadline in unix milliseconds while reserved.
    pub deadline: u64,
    /// Units sold (confirmed records; fewer than `qty` after a partial
    /// confirm).
    pub sold: i64,
}

/// An error reply from the server: its code (`TXCONFLICT`, `NOPERM`, ...),
/// its message, and the redis-rs error it arrived as (the `source`).
#[derive(Debug)]
pub struct ServerError {
    code: String,
    message: String,
    source: redis::RedisError,
}

impl ServerError {
    fn new(e: redis::RedisError) -> ServerError {
        // redis-rs keeps no code for a refused login (WRONGPASS or NOAUTH).
        let code = match (e.code(), e.kind()) {
            (Some(code), _) => code,
            (None, redis::ErrorKind::AuthenticationFailed) => "AUTH",
            (None, _) => "",
        };
        ServerError {
            code: code.to_string(),
            message: e.detail().unwrap_or("").to_string(),
            source: e,
        }
    }

    /// The error code, the reply's first word.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// What the server said after the code.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.message)
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Everything that can go wrong. Only [`Error::Connection`] and
/// [`Error::Unavailable`] are transient ([`Error::is_transient`]): the
/// idempotent commands retry those until their deadline; every other error
/// is returned at once.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The txid is already reserved with another quantity (`TXCONFLICT`).
    Conflict(ServerError),
    /// `IFVERSION` did not match (`VERSION`).
    Version(ServerError),
    /// A stock change would take units that are not available (`NOSTOCK`),
    /// or a key holds as many reservations or records as allowed (`LIMIT`).
    Refused(ServerError),
    /// The server rejected the call's arguments (`ERR`).
    Rejected(ServerError),
    /// The key holds another type (`WRONGTYPE`).
    WrongType(ServerError),
    /// The connection's user may not run the command or touch the key
    /// (`NOPERM`), or is not authenticated (`NOAUTH`, `WRONGPASS`; a login
    /// refused while connecting has the code `AUTH`).
    NotAllowed(ServerError),
    /// The server is at `maxmemory` and refuses writes (`OOM`).
    OutOfMemory(ServerError),
    /// The server or cluster cannot serve the call for now: `TRYAGAIN`,
    /// `CLUSTERDOWN`, `LOADING`, `READONLY` (a failover demoted the node),
    /// `MASTERDOWN`, `BUSY`, or `MOVED`/`ASK` that did not settle. Retried
    /// until the deadline.
    Unavailable(ServerError),
    /// Any other error reply (`NOSCRIPT`, `CROSSSLOT`, a code this client
    /// does not know).
    Server(ServerError),
    /// Connecting, sending or reading failed or timed out, until the retry
    /// deadline (connecting included). For SET/ADD the outcome is unknown:
    /// read, then use IFVERSION.
    Connection(redis::RedisError),
    /// The TLS handshake failed: the server's certificate is not trusted
    /// (unknown CA, wrong name, expired) or the peers share no protocol.
    /// Not retried: it does not heal by waiting.
    Tls(redis::RedisError),
    /// A reserve whose outcome was still unknown when the retry deadline
    /// passed (sent, no reply: a slow or paused server, a cut connection).
    /// So that a reserve still in flight cannot take stock after the caller
    /// gave up, the client then cancelled the txid (`INV.CANCEL`, retried
    /// for `RetryPolicy::fence_deadline`). `fenced` is what that cancel
    /// answered: `Some(Cancelled)` (or `Expired`) when the txid holds
    /// nothing and any late reserve of it is refused; `None` when the
    /// cancel did not land either, and the txid may hold units until its
    /// TTL: cancel it when the server is back. Use a new txid to try again.
    Abandoned {
        txid: String,
        /// The failure the reserve ended with.
        cause: Box<Error>,
        fenced: Option<Outcome>,
    },
    /// The call was malformed before it was sent.
    InvalidInput(String),
    /// An order was blocked and cancelling its other lines failed too: call
    /// `cancel_order` again (it is idempotent).
    CompensationFailed(String),
    /// An unexpected reply shape.
    Protocol(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Conflict(e) => write!(f, "conflict: {e}"),
            Error::Version(e) => write!(f, "version mismatch: {e}"),
            Error::Refused(e) => write!(f, "refused: {e}"),
            Error::Rejected(e) => write!(f, "rejected: {e}"),
            Error::WrongType(e) => write!(f, "wrong type: {e}"),
            Error::NotAllowed(e) => write!(f, "not allowed: {e}"),
            Error::OutOfMemory(e) => write!(f, "out of memory: {e}"),
            Error::Unavailable(e) => write!(f, "unavailable: {e}"),
            Error::Server(e) => write!(f, "server error: {e}"),
            Error::Connection(e) => write!(f, "connection: {e}"),
            Error::Tls(e) => write!(f, "TLS: {e}"),
            Error::Abandoned {
                txid,
                cause,
                fenced: Some(state),
            } => write!(
                f,
                "reserve of txid '{txid}' abandoned, its outcome unknown at the deadline ({cause}); fenced: INV.CANCEL answered {}",
                state.as_str()
            ),
            Error::Abandoned {
                txid,
                cause,
                fenced: None,
            } => write!(
                f,
                "reserve of txid '{txid}' abandoned, its outcome unknown at the deadline ({cause}); the fence (INV.CANCEL) did not land either: the txid may hold units until its TTL"
            ),
            Error::InvalidInput(m) => write!(f, "invalid input: {m}"),
            Error::CompensationFailed(m) => write!(f, "compensation failed: {m}"),
            Error::Protocol(m) => write!(f, "unexpected reply: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connection(e) | Error::Tls(e) => Some(e),
            Error::Abandoned { cause, .. } => Some(cause.as_ref()),
            _ => self.server_error().map(|e| e as _),
        }
    }
}

impl Error {
    /// Maps a redis-rs error by its reply code.
    pub(crate) fn from_redis(e: redis::RedisError) -> Error {
        let io = e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal();
        if e.kind() == redis::ErrorKind::AuthenticationFailed {
            return Error::NotAllowed(ServerError::new(e));
        }
        let Some(code) = e.code().map(str::to_string) else {
            return if is_tls_failure(&e) {
                Error::Tls(e)
            } else if io {
                Error::Connection(e)
            } else {
                Error::Protocol(e.to_string())
            };
        };
        let server = ServerError::new(e);
        match code.as_str() {
            code::TXCONFLICT => Error::Conflict(server),
            code::VERSION => Error::Version(server),
            code::NOSTOCK | code::LIMIT => Error::Refused(server),
            "ERR" => Error::Rejected(server),
            "WRONGTYPE" => Error::WrongType(server),
            "NOPERM" | "NOAUTH" | "WRONGPASS" => Error::NotAllowed(server),
            "OOM" => Error::OutOfMemory(server),
            code::TRYAGAIN
            | "CLUSTERDOWN"
            | "LOADING"
            | "READONLY"
            | "MASTERDOWN"
            | "BUSY"
            | "MOVED"
            | "ASK" => Error::Unavailable(server),
            _ if io => Error::Connection(server.source),
            _ => Error::Server(server),
        }
    }

    /// True for failures a retry of an idempotent command may cure: a
    /// connection that failed or timed out, a server or cluster that cannot
    /// serve for now.
    ///
    /// ```
    /// use redis_inventory_client::Error;
    /// assert!(!Error::InvalidInput("qty".into()).is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Connection(_) | Error::Unavailable(_))
    }

    /// The server's error reply, when the error is one.
    pub fn server_error(&self) -> Option<&ServerError> {
        match self {
            Error::Conflict(e)
            | Error::Version(e)
            | Error::Refused(e)
            | Error::Rejected(e)
            | Error::WrongType(e)
            | Error::NotAllowed(e)
            | Error::OutOfMemory(e)
            | Error::Unavailable(e)
            | Error::Server(e) => Some(e),
            _ => None,
        }
    }
}

/// A TLS handshake that failed (rustls's error inside the I/O error
/// redis-rs reports).
fn is_tls_failure(e: &redis::RedisError) -> bool {
    #[cfg(feature = "tls")]
    {
        let io = std::error::Error::source(e).and_then(|s| s.downcast_ref::<std::io::Error>());
        io.and_then(|io| io.get_ref())
            .is_some_and(|inner| inner.is::<rustls::Error>())
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = e;
        false
    }
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

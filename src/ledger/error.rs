//! The one error type of the ledger. Its `Display` is the exact Redis error
//! reply: a code (`ERR`, `WRONGTYPE`, `TXCONFLICT`, ...) then what was wrong.

use std::fmt;

/// Everything that can go wrong, from malformed arguments to broken invariants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Malformed input: syntax, range, unknown option. The text follows `ERR `.
    Invalid(String),
    /// Wrong number of arguments for the named command.
    Arity(&'static str),
    /// The key holds another Redis type.
    WrongType,
    /// The txid is already RESERVED with another quantity.
    TxConflict { held: i64, asked: i64 },
    /// IFVERSION did not match.
    Version { current: u64, expected: u64 },
    /// A stock change would take units that are not available.
    NoStock(String),
    /// `inventory.max-open-per-key` open reservations already exist.
    Limit { max: u64 },
    /// INV.AUDIT found a broken invariant.
    Drift(String),
    /// An INV.APPLY effect does not fit the key's state (replica out of step).
    Apply(String),
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(m) => write!(f, "ERR {m}"),
            Error::Arity(cmd) => write!(f, "ERR wrong number of arguments for '{cmd}' command"),
            Error::WrongType => {
                f.write_str("WRONGTYPE Operation against a key holding the wrong kind of value")
            }
            Error::TxConflict { held, asked } => write!(
                f,
                "TXCONFLICT txid is already reserved with qty {held}, not {asked}"
            ),
            Error::Version { current, expected } => {
                write!(f, "VERSION key is at version {current}, not {expected}")
            }
            Error::NoStock(m) => write!(f, "NOSTOCK {m}"),
            Error::Limit { max } => write!(
                f,
                "LIMIT key already holds {max} open reservations (inventory.max-open-per-key)"
            ),
            Error::Drift(m) => write!(f, "DRIFT {m}"),
            Error::Apply(m) => write!(f, "ERR INV.APPLY {m}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

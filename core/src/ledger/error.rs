//! The one error type of the ledger. Its `Display` is the exact Redis error
//! reply: a code (`ERR`, `WRONGTYPE`, `TXCONFLICT`, ...) then what was wrong.

use std::fmt;

/// The error codes of the module's own errors (each reply's first word),
/// shared with clients.
pub mod code {
    /// The txid is already reserved with another quantity.
    pub const TXCONFLICT: &str = "TXCONFLICT";
    /// IFVERSION did not match.
    pub const VERSION: &str = "VERSION";
    /// A stock change would take units that are not available.
    pub const NOSTOCK: &str = "NOSTOCK";
    /// A key holds as many open reservations, or records, as allowed.
    pub const LIMIT: &str = "LIMIT";
    /// The command cannot run within its bounded work now; a retry can.
    pub const TRYAGAIN: &str = "TRYAGAIN";
    /// INV.AUDIT found a broken invariant.
    pub const DRIFT: &str = "DRIFT";
    /// The txid is waiting for units already (`BLOCK`).
    pub const WAITING: &str = "WAITING";
}

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
    /// The txid's record disagrees with a retry otherwise (another buyer,
    /// another confirmed quantity); the text says how.
    Conflict(String),
    /// IFVERSION did not match.
    Version { current: u64, expected: u64 },
    /// A stock change would take units that are not available.
    NoStock(String),
    /// `inventory.max-open-per-key` open reservations already exist.
    Limit { max: u64 },
    /// The key holds as many records as a key can.
    Full { max: usize },
    /// The command cannot run within its bounded work now; a retry soon can.
    TryAgain(String),
    /// INV.AUDIT found a broken invariant.
    Drift(String),
    /// An INV.APPLY effect does not fit the key's state (replica out of step).
    Apply(String),
    /// The txid (quoted) is already waiting for units on this key.
    Waiting(String),
    /// `inventory.max-waiters-per-key` reserves already wait on the key.
    QueueFull { max: u64 },
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
}

impl Error {
    /// The error as Redis sends it back: its text with NUL, CR and LF (which
    /// an error line cannot hold) replaced by spaces, then a NUL, for the C
    /// API that takes it.
    pub fn reply_line(&self) -> Vec<u8> {
        let mut line: Vec<u8> = self
            .to_string()
            .into_bytes()
            .into_iter()
            .map(|b| {
                if matches!(b, b'\0' | b'\r' | b'\n') {
                    b' '
                } else {
                    b
                }
            })
            .collect();
        line.push(0);
        line
    }
}

/// Most bytes of client input an error message quotes.
pub const QUOTE_MAX: usize = 64;

/// Client input as it may appear inside an error reply or a log line:
/// printable UTF-8 kept, every other byte (controls, DEL, invalid UTF-8)
/// written as `\xNN`, and at most `QUOTE_MAX` bytes of input followed by
/// `...`. The result never holds NUL, CR or LF, so no reply or log writer
/// can choke on it, and its size does not grow with the input.
pub fn quote(input: &[u8]) -> String {
    use std::fmt::Write;
    let (shown, cut) = match input.get(..QUOTE_MAX) {
        Some(head) if input.len() > QUOTE_MAX => (head, true),
        _ => (input, false),
    };
    let mut out = String::with_capacity(shown.len() + 3);
    for chunk in shown.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                // Controls are below U+00A0: their UTF-8 bytes escape one by one.
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\x{b:02x}");
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    if cut {
        out.push_str("...");
    }
    out
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
                "{} txid is already reserved with qty {held}, not {asked}",
                code::TXCONFLICT
            ),
            Error::Conflict(m) => write!(f, "{} {m}", code::TXCONFLICT),
            Error::Version { current, expected } => {
                write!(
                    f,
                    "{} key is at version {current}, not {expected}",
                    code::VERSION
                )
            }
            Error::NoStock(m) => write!(f, "{} {m}", code::NOSTOCK),
            Error::Limit { max } => write!(
                f,
                "{} key already holds {max} open reservations (inventory.max-open-per-key)",
                code::LIMIT
            ),
            Error::Full { max } => write!(
                f,
                "{} key already holds {max} records, the most a key can",
                code::LIMIT
            ),
            Error::TryAgain(m) => write!(f, "{} {m}", code::TRYAGAIN),
            Error::Drift(m) => write!(f, "{} {m}", code::DRIFT),
            Error::Apply(m) => write!(f, "ERR INV.APPLY {m}"),
            Error::Waiting(txid) => write!(
                f,
                "{} txid '{txid}' is already waiting for units on this key",
                code::WAITING
            ),
            Error::QueueFull { max } => write!(
                f,
                "{} key already has {max} waiting reserves (inventory.max-waiters-per-key)",
                code::LIMIT
            ),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_line_never_holds_nul_cr_or_lf_but_at_its_end() {
        for text in ["a\0b", "a\r\nb", "Ā\u{3000}", ""] {
            let line = Error::invalid(text).reply_line();
            let (end, body) = line.split_last().unwrap();
            assert_eq!(*end, 0);
            assert!(
                !body.iter().any(|b| matches!(b, b'\0' | b'\r' | b'\n')),
                "{text:?}"
            );
        }
    }

    #[test]
    fn quote_keeps_printable_text_and_escapes_the_rest() {
        assert_eq!(quote(b"order-1"), "order-1");
        assert_eq!(quote("Ā 一\u{3000}".as_bytes()), "Ā 一\u{3000}");
        assert_eq!(quote(b"a\0b\r\n\x7f"), "a\\x00b\\x0d\\x0a\\x7f");
        assert_eq!(quote(b"\xc4\xff"), "\\xc4\\xff");
        assert_eq!(quote("\u{85}".as_bytes()), "\\xc2\\x85");
        let long = [b'x'; 200];
        assert_eq!(quote(&long), format!("{}...", "x".repeat(QUOTE_MAX)));
        // A character cut at the limit is escaped, not dropped.
        let mut cut = vec![b'x'; QUOTE_MAX - 1];
        cut.extend_from_slice("Ā".as_bytes());
        assert_eq!(
            quote(&cut),
            format!("{}\\xc4...", "x".repeat(QUOTE_MAX - 1))
        );
    }
}

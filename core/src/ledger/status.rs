//! The state a command replies with: the words every client reads (the Rust
//! client reuses this type as its `Outcome`).

use super::records::State;

/// What happened (or had already happened) to a txid on a SKU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
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
    /// The buyer's limit on this SKU would be passed; nothing was recorded.
    Limited,
    /// The sale window has not started; nothing was recorded.
    NotYet,
    /// The sale window has ended; nothing was recorded.
    Closed,
}

impl Status {
    pub const ALL: [Status; 9] = [
        Status::Reserved,
        Status::NoStock,
        Status::Confirmed,
        Status::Cancelled,
        Status::Expired,
        Status::Unknown,
        Status::Limited,
        Status::NotYet,
        Status::Closed,
    ];

    /// The reply word.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Reserved => "RESERVED",
            Status::NoStock => "NOSTOCK",
            Status::Confirmed => "CONFIRMED",
            Status::Cancelled => "CANCELLED",
            Status::Expired => "EXPIRED",
            Status::Unknown => "UNKNOWN",
            Status::Limited => "LIMITED",
            Status::NotYet => "NOTYET",
            Status::Closed => "CLOSED",
        }
    }

    /// Parses a reply word.
    ///
    /// ```
    /// use inventory_core::ledger::Status;
    /// assert_eq!(Status::parse("RESERVED"), Some(Status::Reserved));
    /// assert_eq!(Status::parse("reserved"), None);
    /// ```
    pub fn parse(word: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == word)
    }
}

impl From<State> for Status {
    fn from(s: State) -> Status {
        match s {
            State::Reserved => Status::Reserved,
            State::Confirmed => Status::Confirmed,
            State::Cancelled => Status::Cancelled,
            State::Expired => Status::Expired,
        }
    }
}

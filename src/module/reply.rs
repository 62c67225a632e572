//! Writing replies. Every error reply goes through `error`, the one place
//! where a ledger `Error` becomes a Redis error, and which no text can make
//! panic: redis-module's own error replies build a C string from the text
//! with `CString::new(..).unwrap()` after truncating each character to a
//! byte, so any character whose code point is a multiple of 256 (U+0100 'Ā',
//! U+3000) would abort the server.

use super::STATS;
use crate::ledger::Error;
use redis_module::{raw, Context};

/// The bytes of an error reply: the error's text with NUL, CR and LF (which
/// a RESP error line cannot hold) replaced by spaces, NUL-terminated.
fn error_line(e: &Error) -> Vec<u8> {
    let mut line: Vec<u8> = e
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

/// Replies with `e` and counts what the INFO section counts of errors.
pub fn error(ctx: &Context, e: &Error) {
    if matches!(e, Error::TxConflict { .. }) {
        STATS.conflict();
    }
    let line = error_line(e);
    // SAFETY: a live command context and a NUL-terminated buffer that
    // outlives the call; Redis copies it.
    unsafe {
        if let Some(reply) = raw::RedisModule_ReplyWithError {
            reply(ctx.ctx, line.as_ptr().cast());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_line_never_holds_nul_cr_or_lf_but_at_its_end() {
        for text in ["a\0b", "a\r\nb", "Ā\u{3000}", ""] {
            let line = error_line(&Error::invalid(text));
            let (end, body) = line.split_last().unwrap();
            assert_eq!(*end, 0);
            assert!(
                !body.iter().any(|b| matches!(b, b'\0' | b'\r' | b'\n')),
                "{text:?}"
            );
        }
    }
}

//! The goals `make bench`, `make bench RATIOS=1` and `make budget` judge,
//! written once. Each check names its figure and its bound, so the report
//! line and the verdict cannot disagree.

/// RESERVE CPU at most this share of the seed Lua reserve's.
pub const CPU_VS_SEED: f64 = 0.25;
/// RESERVE CPU at most this multiple of HINCRBY's.
pub const CPU_VS_HINCRBY: f64 = 2.5;
/// As deployed (AOF everysec + one replica), RESERVE CPU at most this
/// multiple of HINCRBY's, stocked and sold out...
pub const DEPLOYED_VS_HINCRBY: f64 = 2.0;
pub const DEPLOYED_VS_HINCRBY_SOLD_OUT: f64 = 1.2;
/// ...of TairString's `EXINCRBY ... MIN 0`, stocked and sold out...
pub const DEPLOYED_VS_TAIR: f64 = 1.0;
pub const DEPLOYED_VS_TAIR_SOLD_OUT: f64 = 0.5;
/// ...and of the barrier Lua and the seed Lua, stocked.
pub const DEPLOYED_VS_BARRIER: f64 = 0.2;
pub const DEPLOYED_VS_SEED: f64 = 0.15;
/// Whole-server CPU per request as deployed (AOF everysec + one replica;
/// phases/server_cpu.rs), master: a stocked INV.RESERVE at most this
/// multiple of TairString's `EXINCRBY key -1 MIN 0` and of HINCRBY...
pub const WS_VS_TAIR: f64 = 0.9;
pub const WS_VS_HINCRBY: f64 = 1.3;
/// ...a sold-out one at most this multiple of a sold-out EXINCRBY...
pub const WS_VS_TAIR_SOLD_OUT: f64 = 0.7;
/// ...the replica applying a reserve at most this multiple of applying
/// EXINCRBY's propagated command...
pub const WS_REPLICA_VS_TAIR: f64 = 1.0;
/// ...a stocked reserve at most this share of the barrier Lua's and of the
/// seckill Lua's...
pub const WS_VS_BARRIER: f64 = 0.3;
pub const WS_VS_SECKILL: f64 = 0.22;
/// ...a reserve with a new buyer on a key with a per-buyer limit at most
/// this share of the seckill Lua's, stocked and sold out, and this multiple
/// of a reserve without a buyer...
pub const WS_BUYER_VS_SECKILL: f64 = 0.3;
pub const WS_BUYER_VS_SECKILL_SOLD_OUT: f64 = 0.45;
pub const WS_BUYER_VS_RESERVE: f64 = 1.15;
/// ...and CONFIRM and CANCEL each at most this multiple of a stocked reserve.
pub const WS_CONFIRM_CANCEL: f64 = 1.0;
/// The change feed (issue 30): a reserve with the feed on at most this
/// multiple of one without, and this share of the seckill Lua with its XADD.
pub const WS_FEED_VS_RESERVE: f64 = 1.6;
pub const WS_FEED_VS_SECKILL: f64 = 0.4;

/// P16 RESERVE throughput at least this multiple of the seed Lua's.
pub const P16_VS_SEED: f64 = 2.5;
/// Bytes per open reservation (16-byte txids) at most this.
pub const BYTES_PER_RESERVATION: f64 = 64.0;
/// Bytes per buyer (16-byte ids, 10^6 buyers on one key) at most this.
pub const BYTES_PER_BUYER: f64 = 40.0;
/// The module's own memory per waiter (beside the server's state for a
/// blocked client), at most.
pub const BYTES_PER_WAITER: f64 = 200.0;
/// A returned unit reaches its waiter within this, at the 99th percentile.
pub const RETURN_TO_GRANT_P99_MS: f64 = 2.0;
/// No event-loop turn longer than this with the waiting room full (issue
/// 31; the machine's own floor, read in the same run, when higher).
pub const TURN_MS: f64 = 1.0;
/// Cost per call at most this multiple of its smallest value across sizes.
pub const FLATNESS: f64 = 1.5;
/// Largest size the flatness and memory goals cover.
pub const GOAL_MAX_OPEN: u64 = 1_000_000;
/// A million reservations sharing one deadline all back within this.
pub const EXPIRY_BACK_MS: f64 = 2_000.0;
/// No PING during expiry waits longer than this.
pub const EXPIRY_PING_MS: f64 = 10.0;
/// In the edge cases (a flood on one hot key, a big purge, a key growing,
/// a command naming thousands of keys): no command runs longer than this...
pub const SLOWEST_COMMAND_MS: f64 = 1.0;
/// ...and no concurrent PING waits longer than this.
pub const WORST_PING_MS: f64 = 5.0;
/// A command naming 40,000 keys costs at most this multiple per key of one
/// naming 1,000: its work is linear in its input.
pub const MANY_KEYS_PER_KEY: f64 = 2.0;

/// One goal: what was measured, against which bound, and whether it holds.
pub struct Goal {
    pub text: String,
    pub met: bool,
}

/// `value <= bound`, described by `what` (which shows the value).
pub fn at_most(what: String, value: f64, bound: f64) -> Goal {
    Goal {
        text: what,
        met: value <= bound,
    }
}

/// `value >= bound`, described by `what`.
pub fn at_least(what: String, value: f64, bound: f64) -> Goal {
    Goal {
        text: what,
        met: value >= bound,
    }
}

/// Prints the goals missed to stderr; true when every goal holds.
pub fn report_missed(goals: &[Goal]) -> bool {
    let missed: Vec<&Goal> = goals.iter().filter(|g| !g.met).collect();
    if !missed.is_empty() {
        eprintln!("goals missed:");
        for g in missed {
            eprintln!("  - {}", g.text);
        }
    }
    goals.iter().all(|g| g.met)
}

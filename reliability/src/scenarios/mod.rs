//! One file per scenario; each returns `Finding`s for the report.

pub mod cluster_failover;
pub mod crash;
pub mod failover;
pub mod hostile;
pub mod reshard;
pub mod soak;

use crate::ledger::{Counts, Ledger, View};
use redis::Connection;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// What one scenario run showed, for the report and the exit code.
#[derive(Default)]
pub struct Finding {
    pub scenario: String,
    /// The setup in words (persistence, replicas, WAIT).
    pub setup: String,
    pub faults: String,
    pub counts: Counts,
    /// Promises broken in the durable view: any is a failure.
    pub broken: BTreeSet<String>,
    /// Acknowledged requests whose effects were lost, counting every
    /// acknowledgement as a promise (what WAIT or fsync would have bought).
    pub lost_acked: BTreeSet<String>,
    /// Server crashes: aborts, panics, exits nobody asked for.
    pub crashes: Vec<String>,
    /// A control run passes when the checker finds losses.
    pub control: bool,
    /// Further figures, one line each.
    pub notes: Vec<String>,
    pub secs: f64,
    /// The server logs read for crashes, kept so a failed run can be
    /// looked into (`run_all` writes them out then).
    pub logs: Vec<(String, String)>,
}

impl Finding {
    pub fn new(scenario: &str, setup: &str) -> Finding {
        Finding {
            scenario: scenario.into(),
            setup: setup.into(),
            ..Finding::default()
        }
    }

    pub fn passed(&self) -> bool {
        if self.control {
            return !self.broken.is_empty() && self.crashes.is_empty();
        }
        self.broken.is_empty() && self.crashes.is_empty()
    }

    /// Checks the ledger against the server behind `c` in both views.
    pub fn check(&mut self, ledger: &Ledger, c: &mut Connection) {
        if let Err(e) = expiry_caught_up(c) {
            self.broken.insert(e);
        }
        self.broken.extend(settled(ledger, c, View::Durable));
        self.lost_acked.extend(settled(ledger, c, View::All));
    }

    /// Records a crash if the log shows one.
    pub fn scan_log(&mut self, what: &str, log: &str) {
        self.logs.push((what.to_string(), log.to_string()));
        for sign in testkit::CRASH_SIGNS {
            if log.contains(sign) {
                self.crashes.push(format!("{what}: log says '{sign}'"));
            }
        }
    }
}

/// What the check finds, read again (up to 3 times, 200 ms apart) while it
/// finds something: a reservation that passed its deadline between INFO and
/// the reads is counted by INFO until housekeeping expires it, within
/// milliseconds; a lost promise stays lost.
fn settled(ledger: &Ledger, c: &mut Connection, view: View) -> BTreeSet<String> {
    let mut last = BTreeSet::new();
    for _ in 0..3 {
        last = match ledger.check(c, view) {
            Ok(bad) => bad,
            Err(e) => BTreeSet::from([format!("the check could not read: {e}")]),
        };
        if last.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    last
}

/// Distinct keys and txids named in broken-promise lines.
pub fn distinct(lines: &BTreeSet<String>) -> usize {
    lines
        .iter()
        .map(|l| l.split(": ").next().unwrap_or(l))
        .collect::<BTreeSet<_>>()
        .len()
}

/// Waits (up to 10 s) until no reservation past its deadline is waiting
/// for housekeeping: reservations whose deadline passed while a server was
/// down or not yet master expire once it serves as master.
pub fn expiry_caught_up(c: &mut Connection) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let due =
        |c: &mut Connection| testkit::info_value(c, "inventory", "inventory_due_reservations");
    while Instant::now() < deadline {
        if due(c) == "0" {
            // One more sampling period, so the count is fresh.
            std::thread::sleep(Duration::from_millis(150));
            if due(c) == "0" {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "expiry did not catch up in 10 s: {} reservations due, lag {} ms",
        due(c),
        testkit::info_value(c, "inventory", "inventory_expiry_lag_ms")
    ))
}

/// `DEBUG DIGEST` of the server behind `c`; a failed read is an error,
/// never an empty digest (two failed reads must not compare equal).
pub fn digest(c: &mut Connection) -> Result<String, String> {
    redis::cmd("DEBUG")
        .arg("DIGEST")
        .query(c)
        .map_err(|e| format!("DEBUG DIGEST could not be read: {e}"))
}

/// Whether two servers hold the same data (`DEBUG DIGEST`); an error when
/// either digest cannot be read.
pub fn same_digest(a: &mut Connection, b: &mut Connection) -> Result<bool, String> {
    Ok(digest(a)? == digest(b)?)
}

/// Sends a signal to a process (STOP and CONT to make a replica lag).
pub fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
}

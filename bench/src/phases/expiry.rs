//! Phase 4: many reservations sharing one deadline.

use crate::common::*;
use crate::report::*;
use crate::Args;
use std::time::Duration;

/// Phase 4: `n` reservations sharing one deadline.
pub(crate) fn phase_expiry(args: &Args, n: usize) -> ExpiryRow {
    let server = bench_server(&args.server);
    let c = &mut server.conn();
    let deadline = fill_sharing_one_deadline(c, n);
    let probe = PingProbe::start(server.url(), move || now_ms() + 100 >= deadline);
    while now_ms() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let back = loop {
        let reserved: i64 = redis::cmd("INFO")
            .arg("inventory")
            .query::<String>(c)
            .ok()
            .and_then(|i| {
                i.lines()
                    .find_map(|l| l.strip_prefix("inventory_reserved_units:"))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(-1);
        if reserved == 0 {
            break now_ms().saturating_sub(deadline);
        }
        assert!(now_ms() < deadline + 60_000, "expiry did not finish");
        std::thread::sleep(Duration::from_millis(5));
    };
    std::thread::sleep(Duration::from_millis(50));
    // No PING answered while armed is no measurement: NaN meets no goal.
    let worst = probe
        .finish()
        .last()
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    ExpiryRow {
        reservations: n,
        all_back_after_deadline_ms: back as f64,
        worst_ping_ms: worst,
    }
}

//! Crash: kill -9 under the mixed load, restart on the same files, check.
//! Some kills land right after BGREWRITEAOF; some leave the server down
//! past deadlines, so reservations must expire after the restart.

use super::Finding;
use crate::load::{Durability, Load, Target};
use crate::Setup;
use std::time::{Duration, Instant};
use testkit::hostile::Rng;
use testkit::Server;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// `appendonly yes`, `appendfsync always`, with or without the RDB preamble.
    AofAlways { preamble: bool },
    /// No AOF and no RDB: the control run, where the checker must see losses.
    None,
}

pub fn run(setup: &Setup, persistence: Persistence, kills: usize) -> Finding {
    let started = Instant::now();
    let (args, name): (Vec<&str>, String) = match persistence {
        Persistence::AofAlways { preamble } => (
            vec![
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--aof-use-rdb-preamble",
                if preamble { "yes" } else { "no" },
            ],
            format!(
                "appendonly yes, appendfsync always, aof-use-rdb-preamble {}",
                if preamble { "yes" } else { "no" }
            ),
        ),
        Persistence::None => (
            vec!["--appendonly", "no"],
            "control: no AOF, no RDB (losses expected)".into(),
        ),
    };
    let mut f = Finding::new("crash (kill -9)", &name);
    f.control = persistence == Persistence::None;
    let mut rng = Rng::new(setup.seed);
    let mut s = Server::start_with(&setup.server, setup.build, &args);
    let load = Load::start(Target::Server(s.url()), 4, Durability::Reply, 0, setup.seed);
    let (mut rewrites, mut long_downs) = (0, 0);
    for i in 0..kills {
        std::thread::sleep(Duration::from_millis(400 + rng.below(800) as u64));
        if i % 4 == 1 && persistence != Persistence::None {
            let _: redis::RedisResult<()> = redis::cmd("BGREWRITEAOF").query(&mut s.conn());
            std::thread::sleep(Duration::from_millis(rng.below(30) as u64));
            rewrites += 1;
        }
        // Down for 1.5 s: reservations with 300 ms TTLs pass their deadline.
        let down = if i % 3 == 2 {
            long_downs += 1;
            Duration::from_millis(1_500)
        } else {
            Duration::ZERO
        };
        s = s.kill_and_restart_after(down);
        load.follow(&s.url());
        // The load runs on the restarted server a while, then a check.
        std::thread::sleep(Duration::from_millis(200));
        load.pause();
        f.check(&load.ledger(), &mut s.conn());
        load.resume();
    }
    let ledger = load.finish();
    f.check(&ledger, &mut s.conn());
    // The log file outlives restarts: one scan sees every run.
    f.scan_log("server", &s.log());
    f.counts = ledger.counts;
    f.faults = format!(
        "{kills} kill -9 ({rewrites} right after BGREWRITEAOF, {long_downs} with the server down 1.5 s past deadlines)"
    );
    f.secs = started.elapsed().as_secs_f64();
    f
}

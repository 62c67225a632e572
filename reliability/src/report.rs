//! docs/reliability.md: per server, each scenario's setup, faults,
//! requests by outcome, what the checker found, and the guarantees.

use crate::scenarios::{distinct, Finding};
use crate::Setup;
use std::fmt::Write;

/// "Redis 7.0.15" or "Valkey 9.1.2", read from a server started for it.
pub fn server_name(setup: &Setup) -> String {
    let s = testkit::Server::start_with(&setup.server, setup.build, &[]);
    testkit::version(&mut s.conn())
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} CPUs, Linux {}", kernel.trim())
}

/// The commit the run is built from, and whether the tree has changes
/// (read as the run starts).
pub fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match (
        git(&["rev-parse", "--short=12", "HEAD"]),
        git(&["status", "--porcelain"]),
    ) {
        (Some(c), Some(changes)) if changes.is_empty() => format!("commit {c}"),
        (Some(c), _) => format!("commit {c} with uncommitted changes"),
        _ => "an unknown commit (not a git checkout)".into(),
    }
}

pub fn markdown(
    results: &[(String, Vec<Finding>)],
    command: &str,
    commit: &str,
    fuzz: Option<&str>,
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Reliability\n");
    let _ = writeln!(
        md,
        "Measured by `make reliability` ({command}) on {commit}, {}, on {}. Every scenario starts \
         its own servers on loopback; its clients log each request with its reply, and one \
         checker compares what they were told with what the servers hold (see [Method](#method)).\n",
        date(),
        machine()
    );
    for (server, findings) in results {
        let _ = writeln!(md, "## {server}\n");
        let _ = writeln!(
            md,
            "| scenario | setup | faults | requests: acknowledged / of them not durable / refused / unanswered | broken promises | acknowledged and lost | crashes | result | time |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
        for f in findings {
            let c = f.counts;
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {:.0} s |",
                f.scenario,
                f.setup,
                f.faults,
                if c.acked + c.refused + c.unanswered == 0 {
                    "(not a ledger load)".to_string()
                } else {
                    format!(
                        "{} / {} / {} / {}",
                        c.acked, c.not_durable, c.refused, c.unanswered
                    )
                },
                f.broken.len(),
                distinct(&f.lost_acked),
                f.crashes.len(),
                match (f.passed(), f.control) {
                    (true, true) => "pass: the checker saw the losses",
                    (true, false) => "pass",
                    (false, _) => "**FAIL**",
                },
                f.secs
            );
        }
        let _ = writeln!(md);
        for f in findings {
            for n in &f.notes {
                let _ = writeln!(md, "- {}: {n}", f.scenario);
            }
            if f.control {
                for line in f.broken.iter().take(3) {
                    let _ = writeln!(md, "- control run, the checker reports: `{line}`");
                }
            }
        }
        let _ = writeln!(md);
    }
    if let Some(log) = fuzz {
        md.push_str(&fuzz_section(log));
    }
    md.push_str(GUARANTEES);
    md
}

/// `scripts/fuzz.sh`'s output as a section: per target, how long it ran and
/// how many inputs it executed and how many failing inputs it left in
/// fuzz/artifacts (the script also fails the run on any).
fn fuzz_section(log: &str) -> String {
    let mut md = String::from(FUZZ_INTRO);
    // One row per "fuzz: <target> for <n>s" line, filled by the stats after it.
    let mut rows: Vec<[String; 5]> = Vec::new();
    for line in log.lines() {
        let value = |prefix: &str| line.strip_prefix(prefix).map(|v| v.trim().to_string());
        if let Some(rest) = line.strip_prefix("fuzz: ") {
            // The time asked for is not a measurement: the seconds come
            // from the target's own `fuzz-ran:` line, "?" without one.
            let (name, _asked) = rest.split_once(" for ").unwrap_or((rest, ""));
            rows.push([name.into(), "?".into(), "?".into(), "?".into(), "?".into()]);
        } else if let (Some(v), Some(row)) = (value("fuzz-ran:"), rows.last_mut()) {
            // "<target> <runs> runs in <seconds> s"
            let words: Vec<&str> = v.split_whitespace().collect();
            if let [_, _, "runs", "in", secs, "s"] = words[..] {
                row[1] = secs.into();
            }
        } else if let (Some(v), Some(row)) =
            (value("stat::number_of_executed_units:"), rows.last_mut())
        {
            row[2] = v;
        } else if let (Some(v), Some(row)) = (value("stat::peak_rss_mb:"), rows.last_mut()) {
            row[3] = v;
        } else if let (Some(v), Some(row)) = (value("fuzz-failing-inputs:"), rows.last_mut()) {
            row[4] = v;
        }
    }
    for [name, secs, runs, rss, failing] in rows {
        let _ = writeln!(md, "| {name} | {secs} | {runs} | {rss} MB | {failing} |");
    }
    md.push('\n');
    md
}

fn date() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    out.unwrap_or_default()
}

const GUARANTEES: &str = include_str!("guarantees.md");

const FUZZ_INTRO: &str = "## Coverage-guided fuzzing\n\n\
`scripts/fuzz.sh` (cargo-fuzz, libFuzzer), from the committed seed corpus in fuzz/corpus, in \
process on the core (no server): `commands` drives every argument parser into planning and \
applying and applies arbitrary `INV.APPLY` effects; `decode` feeds the RDB decoder arbitrary \
payloads. Every change or key it accepts must pass the key's audit, and a loaded key must save \
back to the same bytes. A crash fails the run.\n\n\
| target | seconds | inputs executed | peak memory | failing inputs (artifacts) |\n|---|---|---|---|---|\n";

#[cfg(test)]
mod tests {
    use super::fuzz_section;

    #[test]
    fn the_fuzz_table_reads_each_count_from_the_log() {
        let log = "fuzz: commands for 120s\n\
                   stat::number_of_executed_units: 5512\n\
                   stat::peak_rss_mb: 512\n\
                   fuzz-failing-inputs: 0\n\
                   fuzz-ran: commands 5512 runs in 121 s\n\
                   fuzz: decode for 120s\n\
                   stat::number_of_executed_units: 77\n";
        let md = fuzz_section(log);
        assert!(
            md.contains("| commands | 121 | 5512 | 512 MB | 0 |"),
            "{md}"
        );
        // A count the log does not give is shown as unknown, never as 0,
        // and the time asked for is never shown as the time run.
        assert!(md.contains("| decode | ? | 77 | ? MB | ? |"), "{md}");
    }
}

//! `make reliability`: the fault scenarios against real servers, each
//! checked against what its clients were told; writes docs/reliability.md.
//! `--short` is the form `make test` runs.

mod dump;
mod ledger;
mod load;
mod report;
mod scenarios;
mod server_state;
mod worker;

use clap::Parser;
use scenarios::{cluster_failover, crash, failover, hostile, reshard, soak, Finding};
use std::time::Duration;
use testkit::Build;

#[derive(Parser)]
#[command(about = "Crashes, failovers, hostile input and soak against real servers")]
struct Args {
    /// Server binaries to run every scenario on (repeat for several).
    #[arg(long, required = true)]
    server: Vec<String>,
    /// The few-minute form `make test` runs.
    #[arg(long)]
    short: bool,
    /// Load the release build of the module (the debug build otherwise).
    #[arg(long)]
    release: bool,
    /// Write the report here (markdown).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Run only the scenarios whose name contains this (crash, failover, hostile, corrupted, truncated, soak).
    #[arg(long)]
    only: Option<String>,
    #[arg(long, default_value_t = 0x1e55_0e11)]
    seed: u64,
    /// The output of `scripts/fuzz.sh` run just before, summed up in the
    /// report (`make reliability` fuzzes each target first).
    #[arg(long)]
    fuzz_log: Option<std::path::PathBuf>,
}

/// What every scenario runs against.
pub struct Setup {
    pub server: String,
    pub build: Build,
    pub seed: u64,
}

/// The sizes of one form of the suite.
struct Sizes {
    crash_kills: usize,
    control_kills: usize,
    failovers: usize,
    cluster_failovers: usize,
    moves: usize,
    vectors: usize,
    payloads: usize,
    files: usize,
    soak: Duration,
    soak_window: Duration,
}

const LONG: Sizes = Sizes {
    crash_kills: 20,
    control_kills: 2,
    failovers: 10,
    cluster_failovers: 10,
    moves: 12,
    vectors: 100_000,
    payloads: 10_000,
    files: 10,
    soak: Duration::from_secs(120),
    soak_window: Duration::from_secs(30),
};

const SHORT: Sizes = Sizes {
    crash_kills: 3,
    control_kills: 1,
    failovers: 2,
    cluster_failovers: 1,
    moves: 3,
    vectors: 10_000,
    payloads: 1_000,
    files: 2,
    soak: Duration::from_secs(5),
    soak_window: Duration::from_secs(1),
};

/// The scenarios in the order they run; `--only` matches these names.
const STEPS: &[&str] = &[
    "crash",
    "crash without preamble",
    "crash control",
    "failover with wait",
    "failover",
    "cluster failover with wait",
    "cluster failover",
    "reshard",
    "reshard bare",
    "hostile vectors",
    "corrupted payloads",
    "truncated files",
    "soak",
];

/// Left out of the short form: the cluster failover through a cluster
/// client without WAIT (the form with WAIT runs, and the reshard already
/// drives the cluster client through MOVED and ASK).
const LONG_ONLY: &[&str] = &["cluster failover"];

fn step(name: &str, setup: &Setup, sizes: &Sizes, long: bool) -> Finding {
    use crash::Persistence::{AofAlways, None as NoPersistence};
    match name {
        "crash" => crash::run(setup, AofAlways { preamble: true }, sizes.crash_kills),
        "crash without preamble" => {
            crash::run(setup, AofAlways { preamble: false }, sizes.crash_kills)
        }
        "crash control" => crash::run(setup, NoPersistence, sizes.control_kills),
        "failover with wait" => failover::run(setup, true, sizes.failovers),
        "failover" => failover::run(setup, false, sizes.failovers),
        "cluster failover with wait" => cluster_failover::run(setup, sizes.cluster_failovers, true),
        "cluster failover" => cluster_failover::run(setup, sizes.cluster_failovers, false),
        "reshard" => reshard::run(setup, sizes.moves, reshard::Shape::Deployed),
        "reshard bare" => reshard::run(setup, sizes.moves, reshard::Shape::Bare),
        "hostile vectors" => hostile::vectors(setup, sizes.vectors),
        "corrupted payloads" => hostile::payloads(setup, sizes.payloads),
        "truncated files" => hostile::files(setup, sizes.files, long),
        _ => soak::run(setup, sizes.soak, sizes.soak_window, long),
    }
}

fn run_all(setup: &Setup, sizes: &Sizes, long: bool, only: Option<&str>) -> Vec<Finding> {
    STEPS
        .iter()
        .filter(|name| only.is_none_or(|o| name.contains(o)))
        .filter(|name| long || !LONG_ONLY.contains(name))
        .map(|name| {
            let f = step(name, setup, sizes, long);
            eprintln!(
                "  {} {} — {} ({:.0} s)",
                if f.passed() { "ok  " } else { "FAIL" },
                f.scenario,
                f.setup,
                f.secs
            );
            // A control run's findings are expected: show a few.
            let shown = if f.passed() {
                3 * usize::from(f.control)
            } else {
                20
            };
            for line in f.broken.iter().chain(&f.crashes).take(shown) {
                eprintln!("       {line}");
            }
            if !f.passed() {
                keep_logs(&f);
            }
            f
        })
        .collect()
}

/// Writes a failed run's server logs under target/reliability-logs/.
fn keep_logs(f: &Finding) {
    let slug = |s: &str| {
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect::<String>()
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let dir = std::path::Path::new("target/reliability-logs")
        .join(format!("{}-{stamp}", slug(&f.scenario)));
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    for (i, (what, log)) in f.logs.iter().enumerate() {
        let _ = std::fs::write(dir.join(format!("{i:02}-{}.log", slug(what))), log);
    }
    eprintln!("       server logs: {}", dir.display());
}

fn main() {
    let args = Args::parse();
    let sizes = if args.short { &SHORT } else { &LONG };
    let build = if args.release {
        Build::Release
    } else {
        Build::Debug
    };
    let commit = report::commit();
    let mut results = Vec::new();
    for server in &args.server {
        let setup = Setup {
            server: server.clone(),
            build,
            seed: args.seed,
        };
        let name = report::server_name(&setup);
        eprintln!(
            "== reliability ({}) on {name}",
            if args.short { "short" } else { "long" }
        );
        results.push((
            name,
            run_all(&setup, sizes, !args.short, args.only.as_deref()),
        ));
    }
    if let Some(out) = &args.out {
        let fuzz = args.fuzz_log.as_ref().map(|p| {
            std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        });
        let command = std::env::args().collect::<Vec<_>>().join(" ");
        let text = report::markdown(&results, &command, &commit, fuzz.as_deref());
        std::fs::write(out, text).expect("write the report");
        eprintln!("wrote {}", out.display());
    }
    let failed = results
        .iter()
        .flat_map(|(_, f)| f)
        .filter(|f| !f.passed())
        .count();
    if failed > 0 {
        eprintln!("{failed} scenario run(s) failed");
        std::process::exit(1);
    }
}

//! The commands through redis-py, Python's client (pinned in scripts/deps.sh;
//! RESP3 is its default from 8.x), under its default, RESP2 and RESP3: the
//! checks are in redispy_check.py, run by the real Python interpreter.

use crate::harness::*;
use std::process::Command;

pub fn redispy_path() -> String {
    std::env::var("INVENTORY_REDISPY").unwrap_or_else(|_| {
        panic!("INVENTORY_REDISPY is unset: run `make test`, which installs redis-py into .deps/redispy and sets it")
    })
}

/// Runs one of the checks in tests/integration with the real Python and
/// the pinned redis-py against the server on `port`; what it printed, once
/// it exited successfully.
fn run_check(script: &str, port: u16) -> String {
    let path = format!("{}/tests/integration/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .arg(path)
        .arg(port.to_string())
        .env("PYTHONPATH", redispy_path())
        .output()
        .expect("python3 (make deps installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn redis_py_reads_maps_under_resp3_pairs_under_resp2_and_the_same_replies() {
    let s = Server::start(&[]);
    assert_eq!(
        run_check("redispy_check.py", s.port),
        "ok protocol=3\nok protocol=2\nok protocol=3\n"
    );
}

/// redis-py's cluster client finds every key of every command, the
/// multi-key ones with BUYER and QTY included, and routes it to its owner.
#[test]
fn redis_py_cluster_client_routes_every_form() {
    let cluster = testkit::cluster::Cluster::start_shaped(
        &testkit::server_bin(),
        testkit::Build::Debug,
        &[],
        0,
    );
    assert_eq!(
        run_check("redispy_cluster_check.py", cluster.nodes[0].port),
        "ok cluster\n"
    );
}

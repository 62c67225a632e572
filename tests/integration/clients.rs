//! docs/clients.md cannot drift: every example in it (```python or ```js,
//! tagged `standalone` or `cluster`) runs with the pinned redis-py, ioredis
//! and node-redis against a real server and a real 3+3 cluster, and must
//! print the output the page shows (an example with a third word, such as
//! `feed`, prints the ```text block with that word).

use crate::harness::*;
use crate::redispy::redispy_path;
use std::io::Write;
use std::process::{Command, Stdio};

const PAGE: &str = include_str!("../../docs/clients.md");

/// The node_modules folder holding the pinned Node.js clients.
fn node_modules() -> String {
    std::env::var("INVENTORY_NODE_MODULES").unwrap_or_else(|_| {
        panic!("INVENTORY_NODE_MODULES is unset: run `make test`, which installs ioredis and node-redis into .deps/node and sets it")
    })
}

struct Example {
    lang: String,
    cluster: bool,
    /// The ```text block it prints (`None`: the page's first one).
    output: Option<String>,
    code: String,
}

fn examples() -> Vec<Example> {
    let mut out = Vec::new();
    let mut lines = PAGE.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let mut words = info.split_whitespace();
        let (Some(lang), Some(mode)) = (words.next(), words.next()) else {
            continue;
        };
        if lang == "text" {
            // An output block (```text feed), not an example.
            continue;
        }
        let output = words.next().map(String::from);
        let code: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        out.push(Example {
            lang: lang.to_string(),
            cluster: mode == "cluster",
            output,
            code: code.join("\n") + "\n",
        });
    }
    out
}

/// What an example prints: the page's first ```text block, or the one
/// tagged with the example's third word.
fn expected(tag: Option<&str>) -> String {
    let fence = match tag {
        None => "```text\n".to_string(),
        Some(t) => format!("```text {t}\n"),
    };
    let start = PAGE
        .find(&fence)
        .unwrap_or_else(|| panic!("docs/clients.md shows no output block {fence:?}"))
        + fence.len();
    let len = PAGE[start..].find("```").expect("the output block ends");
    PAGE[start..start + len].to_string()
}

/// Runs one example with its interpreter, the address in `var`; its output.
fn run(example: &Example, var: &str, url: &str) -> String {
    let mut cmd = match example.lang.as_str() {
        "python" => {
            let mut c = Command::new("python3");
            c.env("PYTHONPATH", redispy_path());
            c
        }
        "js" => {
            let mut c = Command::new("node");
            c.env("NODE_PATH", node_modules());
            c
        }
        other => panic!("docs/clients.md: no interpreter for ```{other}"),
    };
    let mut child = cmd
        .arg("-")
        .env(var, url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 and node (make deps installs them)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(example.code.as_bytes())
        .expect("write the example");
    let out = child.wait_with_output().expect("the example ran");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} example failed: {stdout}{}",
        example.lang,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn every_client_example_runs_standalone_and_on_a_cluster() {
    let all = examples();
    for (lang, cluster) in [
        ("python", false),
        ("python", true),
        ("js", false),
        ("js", true),
    ] {
        assert!(
            all.iter().any(|e| e.lang == lang && e.cluster == cluster),
            "docs/clients.md has no {lang} example for {}",
            if cluster {
                "a cluster"
            } else {
                "a standalone server"
            }
        );
    }
    for e in all.iter().filter(|e| !e.cluster) {
        let s = Server::start(&[]);
        assert_eq!(
            run(e, "REDIS_URL", &s.url()),
            expected(e.output.as_deref()),
            "{}:\n{}",
            e.lang,
            e.code
        );
    }
    let cluster = testkit::cluster::Cluster::start_shaped(
        &testkit::server_bin(),
        testkit::Build::Debug,
        &[],
        1,
    );
    for e in all.iter().filter(|e| e.cluster) {
        for m in cluster.masters() {
            ok(&mut cluster.nodes[m].conn(), &["FLUSHALL"]);
        }
        let url = cluster.nodes[0].url();
        assert_eq!(
            run(e, "REDIS_CLUSTER_URL", &url),
            expected(e.output.as_deref()),
            "{}:\n{}",
            e.lang,
            e.code
        );
    }
}

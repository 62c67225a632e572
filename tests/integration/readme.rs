//! The redis-cli examples of README and docs/commands.md cannot drift:
//! every ```console block is run against a fresh server through the real
//! redis-cli, and what it prints must be what the page shows (unix times
//! in ms, which carry the time of the run, compare as any time).

use crate::harness::*;
use std::process::Command;

/// A step of a console block: a command line and the output the page shows.
struct Step {
    line: String,
    output: String,
}

fn console_blocks(readme: &str) -> Vec<Vec<Step>> {
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```console" {
            continue;
        }
        let mut steps: Vec<Step> = Vec::new();
        for line in lines.by_ref() {
            if line.trim() == "```" {
                break;
            }
            match line.strip_prefix("$ ") {
                Some(command) => steps.push(Step {
                    line: command.to_string(),
                    output: String::new(),
                }),
                None => {
                    let step = steps.last_mut().expect("output before any command");
                    step.output.push_str(line);
                    step.output.push('\n');
                }
            }
        }
        blocks.push(steps);
    }
    blocks
}

/// Runs one line as a user would in a terminal: `redis-cli ...` (its
/// terminal formatting, forced with --no-raw since the output is captured)
/// or `sleep N`.
fn run(line: &str, port: u16) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["sleep", secs] => {
            let secs: f64 = secs.parse().expect("sleep seconds");
            std::thread::sleep(std::time::Duration::from_secs_f64(secs));
            String::new()
        }
        ["redis-cli", args @ ..] => {
            let out = Command::new("redis-cli")
                .args(["-p", &port.to_string(), "--no-raw"])
                .args(args)
                .output()
                .expect("redis-cli (make deps installs it)");
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
        _ => panic!("console line not understood: {line}"),
    }
}

/// `text` with every run of exactly 13 digits (a unix time in ms, as in a
/// stream entry ID or a deadline, which carry the time of the run) made
/// `<ms>`, so a page can show them.
fn any_time(text: &str) -> String {
    let mut out = String::new();
    let mut digits = String::new();
    for ch in text.chars().chain(std::iter::once('\n')) {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        out.push_str(if digits.len() == 13 { "<ms>" } else { &digits });
        digits.clear();
        out.push(ch);
    }
    out.pop();
    out
}

#[test]
fn only_unix_times_in_ms_compare_as_any_time() {
    assert_eq!(any_time("1) \"1796600000000-0\"\n"), "1) \"<ms>-0\"\n");
    assert_eq!(
        any_time("(integer) 100 12345678901234"),
        "(integer) 100 12345678901234"
    );
    assert_eq!(any_time("179660000000"), "179660000000");
}

/// The pages whose console blocks are run.
const PAGES: [&str; 2] = ["README.md", "docs/commands.md"];

#[test]
fn console_examples_print_what_the_pages_show() {
    for page in PAGES {
        let path = format!("{}/{page}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let blocks = console_blocks(&text);
        assert!(!blocks.is_empty(), "{page} has no console block");
        for steps in blocks {
            let s = Server::start(&[]);
            for step in steps {
                assert_eq!(
                    any_time(&run(&step.line, s.port)),
                    any_time(&step.output),
                    "{page}: $ {}",
                    step.line
                );
            }
        }
    }
}

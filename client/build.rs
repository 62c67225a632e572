//! Turns every ```rust block of README.md into an async function that
//! `tests/readme.rs` compiles and runs against real servers, so the README's
//! examples cannot drift from the API. The README's example addresses become
//! the test servers' (`url`, `cluster`); a ```rust,no_run block (one that
//! needs what a test machine lacks, such as a certificate) is compiled only.

use std::fmt::Write;

fn main() {
    println!("cargo::rerun-if-changed=README.md");
    let readme = std::fs::read_to_string("README.md").unwrap_or_default();
    let mut out = String::new();
    let mut names = Vec::new();
    let mut block: Option<String> = None;
    let mut run = true;
    for line in readme.lines() {
        match (&mut block, line.trim()) {
            (None, "```rust" | "```rust,no_run") => {
                run = line.trim() == "```rust";
                block = Some(String::new());
            }
            (Some(code), "```") => {
                let name = format!("readme_example_{}", names.len() + 1);
                let code = code
                    .replace("&[\"redis://127.0.0.1:7101/\"]", "cluster")
                    .replace("\"redis://127.0.0.1:6379/\"", "url");
                let _ = write!(
                    out,
                    "#[allow(unused_variables, unused_imports)]\n\
                     async fn {name}(url: &str, cluster: &[&str]) \
                     -> Result<(), Box<dyn std::error::Error>> {{\n\
                     let _ = (url, cluster);\n{code}Ok(())\n}}\n"
                );
                names.push((name, run));
                block = None;
            }
            (Some(code), _) => {
                code.push_str(line);
                code.push('\n');
            }
            (None, _) => {}
        }
    }
    let _ = writeln!(out, "const README_EXAMPLES: usize = {};", names.len());
    let _ = writeln!(
        out,
        "async fn run_readme_example(i: usize, url: &str, cluster: &[&str]) \
         -> Result<(), Box<dyn std::error::Error>> {{\n match i {{"
    );
    for (i, (name, run)) in names.iter().enumerate() {
        match run {
            true => writeln!(out, "  {i} => {name}(url, cluster).await,"),
            false => writeln!(out, "  {i} => {{ let _ = {name}; Ok(()) }}"),
        }
        .expect("write to a String");
    }
    let _ = writeln!(out, "  _ => unreachable!(),\n }}\n}}");
    let dest = std::path::Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR"))
        .join("readme_examples.rs");
    std::fs::write(dest, out).expect("write readme_examples.rs");
}

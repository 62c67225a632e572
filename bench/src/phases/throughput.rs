//! Phase 1b: server throughput from redis-benchmark, hot key.

use crate::common::*;
use crate::report::*;
use crate::{Args, Sizes};

/// Requests per second redis-benchmark reports for one command
/// (`__rand_int__` becomes a random 12-digit number, so txids are fresh).
pub(crate) fn redis_benchmark(port: u16, n: usize, pipeline: usize, command: &[String]) -> f64 {
    let out = std::process::Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-c",
            "50",
            "-n",
            &n.to_string(),
        ])
        .args(["-P", &pipeline.to_string(), "-r", "1000000000", "--csv"])
        .args(command)
        .output()
        .expect("redis-benchmark (Debian package redis-tools)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.split("\",\"").nth(1))
        .and_then(|v| v.trim_matches('"').parse().ok())
        .unwrap_or(f64::NAN)
}

/// Server throughput of the reserve family and the floors, hot key.
pub(crate) fn phase_throughput(args: &Args, sz: &Sizes) -> Vec<ThroughputRow> {
    let server = bench_server(&args.server);
    let c = &mut server.conn();
    setup_keys(c, 1);
    let s = scripts(c);
    let n = sz.ops * 4;
    let now = now_ms().to_string();
    let keys = lua_keys("sku:0");
    let cases: Vec<(&'static str, &'static str, Vec<String>)> = vec![
        (
            "inventory",
            "INV.RESERVE",
            [
                "INV.RESERVE",
                "sku:0",
                "tx:__rand_int__",
                "1",
                "TTL",
                "3600000",
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            "seed Lua reserve",
            "EVALSHA",
            vec![
                "EVALSHA".into(),
                s.seed.clone(),
                "1".into(),
                "seed:sku:0".into(),
                "__rand_int__".into(),
                "1".into(),
            ],
        ),
        (
            "Lua TCC set",
            "EVALSHA reserve",
            vec![
                "EVALSHA".into(),
                s.reserve.clone(),
                "3".into(),
                keys[0].clone(),
                keys[1].clone(),
                keys[2].clone(),
                "tx:__rand_int__".into(),
                "1".into(),
                "3600000".into(),
                now,
            ],
        ),
        (
            "HINCRBY",
            "HINCRBY",
            ["HINCRBY", "seed:sku:0", "reserved", "1"]
                .map(String::from)
                .to_vec(),
        ),
        ("PING", "PING", vec!["PING".into()]),
    ];
    // The cases take turns within each run, so machine noise hits them alike.
    let runs = sz.runs.max(3);
    let mut samples = vec![(vec![], vec![]); cases.len()];
    for _ in 0..runs {
        for ((_, _, argv), (p1, p16)) in cases.iter().zip(samples.iter_mut()) {
            p1.push(redis_benchmark(server.port, n / 4, 1, argv));
            p16.push(redis_benchmark(server.port, n, 16, argv));
        }
    }
    cases
        .into_iter()
        .zip(samples)
        .map(|((implementation, command, _), (p1, p16))| ThroughputRow {
            implementation,
            command,
            p1_ops_per_s: median(p1),
            p16_ops_per_s: median(p16.clone()),
            p16_runs: p16,
        })
        .collect()
}

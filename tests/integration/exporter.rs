//! INFO inventory reaches Prometheus through the real
//! prometheus-redis-exporter (Debian's, installed by `make test`), with the
//! script shipped in docs/monitoring/: the exporter reads INFO ALL, which
//! leaves module sections out, so the script hands them over.

use crate::harness::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn exporter_bin() -> String {
    std::env::var("INVENTORY_EXPORTER").unwrap_or_else(|_| {
        panic!("INVENTORY_EXPORTER is unset: run `make test`, which installs prometheus-redis-exporter and sets it")
    })
}

/// The body of `GET /metrics`, once the exporter answers (within 10 s).
fn scrape(port: u16) -> String {
    let started = Instant::now();
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                .unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).unwrap();
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the exporter never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn value(metrics: &str, field: &str) -> Option<i64> {
    let prefix = format!("redis_script_values{{key=\"{field}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse::<f64>().unwrap() as i64)
}

#[test]
fn the_real_exporter_publishes_every_inventory_field() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "a", "10"]);
    ok(c, &["INV.RESERVE", "a", "t1", "2"]);
    ok(c, &["INV.RESERVE", "a", "t2", "1"]);
    ok(c, &["INV.CONFIRM", "a", "t1"]);
    ok(c, &["INV.CANCEL", "a", "t3"]);

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/monitoring/inventory.lua");
    let _exporter = Exporter(
        Command::new(exporter_bin())
            .arg("-redis.addr")
            .arg(s.url())
            .arg("-script")
            .arg(script)
            .arg("-web.listen-address")
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus-redis-exporter"),
    );
    let metrics = scrape(port);
    for (field, expected) in [
        ("inventory_keys", 1),
        ("inventory_open_reservations", 1),
        ("inventory_reserved_units", 1),
        ("inventory_reserves", 2),
        ("inventory_confirms", 1),
        ("inventory_empty_rollbacks", 1),
        ("inventory_expiry_lag_ms", 0),
    ] {
        assert_eq!(value(&metrics, field), Some(expected), "{field}");
    }
    // Every field INFO shows is exported.
    let info: String = redis::cmd("INFO").arg("inventory").query(c).unwrap();
    for line in info.lines().filter(|l| l.starts_with("inventory_")) {
        let field = line.split(':').next().unwrap();
        assert!(
            value(&metrics, field).is_some(),
            "{field} missing from /metrics"
        );
    }
}

/// The `inventory_*` names a monitoring file queries (`key="..."`, also
/// JSON-escaped).
fn queried_fields(text: &str) -> Vec<String> {
    text.split("key=")
        .skip(1)
        .filter_map(|rest| {
            let rest = rest.trim_start_matches(['\\', '"']);
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            name.starts_with("inventory_").then_some(name)
        })
        .collect()
}

#[test]
fn the_dashboard_and_the_alerts_query_only_fields_info_has() {
    let s = Server::start(&[]);
    let info: String = redis::cmd("INFO")
        .arg("inventory")
        .query(&mut s.conn())
        .unwrap();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/monitoring/");
    for file in ["grafana-dashboard.json", "alerts.yml"] {
        let text = std::fs::read_to_string(format!("{dir}{file}")).unwrap();
        let fields = queried_fields(&text);
        assert!(fields.len() >= 5, "{file} queries {fields:?}");
        for field in fields {
            assert!(
                info.lines().any(|l| l.starts_with(&format!("{field}:"))),
                "{file} queries {field}, which INFO inventory does not have"
            );
        }
    }
}

//! A server with the release module on a free loopback port, killed on drop,
//! and the INFO readings the benchmark needs.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    pub port: u16,
    _dir: std::path::PathBuf,
}

impl Server {
    pub fn start(bin: &str) -> Server {
        let module = std::fs::canonicalize("target/release/libinventory.so")
            .expect("run `cargo build --release` first");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("inventory-bench-{port}"));
        let _ = std::fs::create_dir_all(&dir);
        let child = Command::new(bin)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args([
                "--dir",
                &dir.display().to_string(),
                "--maxclients",
                "10000",
                "--latency-tracking",
                "no",
            ])
            .args(["--loadmodule", &module.display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let server = Server {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.try_conn().is_err() {
            assert!(Instant::now() < deadline, "{bin} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn try_conn(&self) -> redis::RedisResult<redis::Connection> {
        let mut c = redis::Client::open(self.url())?.get_connection()?;
        redis::cmd("PING").query::<String>(&mut c)?;
        Ok(c)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn conn(&self) -> redis::Connection {
        self.try_conn().expect("connect")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn info_field(c: &mut redis::Connection, section: &str, field: &str) -> String {
    let info: String = redis::cmd("INFO").arg(section).query(c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

pub fn used_memory(c: &mut redis::Connection) -> i64 {
    info_field(c, "memory", "used_memory").parse().unwrap_or(0)
}

/// `usec_per_call` of a command since the last CONFIG RESETSTAT.
pub fn usec_per_call(c: &mut redis::Connection, cmd: &str) -> f64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(c).unwrap();
    info.lines()
        .find(|l| l.starts_with(&format!("cmdstat_{cmd}:")))
        .and_then(|l| {
            l.split(',')
                .find_map(|kv| kv.strip_prefix("usec_per_call="))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

pub fn reset_stats(c: &mut redis::Connection) {
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(c).unwrap();
}

pub fn version(c: &mut redis::Connection) -> String {
    let v = info_field(c, "server", "valkey_version");
    if v.is_empty() {
        format!("Redis {}", info_field(c, "server", "redis_version"))
    } else {
        format!("Valkey {v}")
    }
}

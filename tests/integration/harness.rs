//! One RAII harness for real servers: a free loopback port, a temp dir,
//! `--save ""`, debug commands on, a log file, readiness with a deadline,
//! kill + wait on drop. The binary comes from `INVENTORY_SERVER` (default
//! `redis-server`), the module from `INVENTORY_MODULE` (default the debug
//! build in target/).

use redis::{Connection, Value};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn server_bin() -> String {
    std::env::var("INVENTORY_SERVER").unwrap_or_else(|_| "redis-server".into())
}

pub fn module_path() -> PathBuf {
    let path = std::env::var("INVENTORY_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/debug/libinventory.so")
        });
    assert!(
        path.exists(),
        "module not found at {} (run `cargo build` or set INVENTORY_MODULE)",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub struct Server {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    extra: Vec<String>,
}

impl Server {
    /// A server with the module loaded and the given extra arguments.
    pub fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir, extra.iter().map(|s| s.to_string()).collect())
    }

    fn start_in(dir: tempfile::TempDir, extra: Vec<String>) -> Server {
        let port = free_port();
        let log = dir.path().join("server.log");
        let module = module_path();
        let mut args: Vec<String> = vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--dir".into(),
            dir.path().display().to_string(),
            "--logfile".into(),
            log.display().to_string(),
            "--save".into(),
            "".into(),
            "--enable-debug-command".into(),
            "yes".into(),
            "--loadmodule".into(),
            module.display().to_string(),
        ];
        // Module arguments must follow --loadmodule directly.
        let split = extra
            .iter()
            .position(|a| a.starts_with("--"))
            .unwrap_or(extra.len());
        args.extend(extra[..split].iter().cloned());
        args.extend(extra[split..].iter().cloned());
        let child = Command::new(server_bin())
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start '{}': {e} (install it with `make deps` or set INVENTORY_SERVER)",
                    server_bin()
                )
            });
        let mut server = Server {
            child,
            port,
            dir,
            extra,
        };
        server.wait_ready();
        server
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(120)..].join("\n")
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("server exited ({status}); log:\n{}", self.log_tail());
            }
            if let Ok(mut c) = self.try_conn() {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    let loading: String = redis::cmd("INFO")
                        .arg("persistence")
                        .query(&mut c)
                        .unwrap_or_default();
                    if loading.contains("loading:0") {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "server not ready in time; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn try_conn(&self) -> redis::RedisResult<Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?.get_connection()
    }

    pub fn conn(&self) -> Connection {
        self.try_conn().expect("connect")
    }

    /// Stops the server (SHUTDOWN NOSAVE) and starts it again on the same dir
    /// and arguments: what survives is what the dir held.
    pub fn restart(self) -> Server {
        self.restart_after(Duration::ZERO)
    }

    /// Stops the server, waits, then starts it again on the same dir.
    pub fn restart_after(mut self, pause: Duration) -> Server {
        let _ = redis::cmd("SHUTDOWN").arg("NOSAVE").exec(&mut self.conn());
        let _ = self.child.wait();
        std::thread::sleep(pause);
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        let extra = std::mem::take(&mut self.extra);
        Server::start_in(dir, extra)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one command and returns the raw reply (errors as `Err`).
pub fn call(c: &mut Connection, args: &[&str]) -> redis::RedisResult<Value> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c)
}

/// Sends a command that must succeed.
pub fn ok(c: &mut Connection, args: &[&str]) -> Value {
    call(c, args).unwrap_or_else(|e| panic!("{args:?} failed: {e}"))
}

/// The full error text a command returns (code and message).
pub fn err(c: &mut Connection, args: &[&str]) -> String {
    match call(c, args) {
        Ok(v) => panic!("{args:?} succeeded with {v:?}"),
        Err(e) => {
            let code = e.code().unwrap_or("");
            let detail = e.detail().unwrap_or("");
            format!("{code} {detail}").trim().to_string()
        }
    }
}

/// `[state, available, version]` replies as a tuple.
pub fn outcome(c: &mut Connection, args: &[&str]) -> (String, i64, i64) {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c)
        .unwrap_or_else(|e| panic!("{args:?} failed: {e}"))
}

/// A field of INV.GET / INV.TX (flat field/value pairs in RESP2).
pub fn field(c: &mut Connection, args: &[&str], name: &str) -> Option<i64> {
    let pairs: Option<Vec<(String, redis::Value)>> =
        redis::cmd(args[0]).arg(&args[1..]).query(c).ok()?;
    pairs?
        .into_iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| redis::from_redis_value(&v).ok())
}

pub fn get(c: &mut Connection, key: &str, name: &str) -> i64 {
    field(c, &["INV.GET", key], name).unwrap_or_else(|| panic!("INV.GET {key} has no {name}"))
}

pub fn tx_state(c: &mut Connection, key: &str, txid: &str) -> Option<String> {
    let pairs: Option<Vec<(String, redis::Value)>> =
        redis::cmd("INV.TX").arg(key).arg(txid).query(c).unwrap();
    pairs?
        .into_iter()
        .find(|(k, _)| k == "state")
        .and_then(|(_, v)| redis::from_redis_value(&v).ok())
}

pub fn digest(c: &mut Connection) -> String {
    redis::cmd("DEBUG").arg("DIGEST").query(c).unwrap()
}

pub fn info_field(c: &mut Connection, name: &str) -> i64 {
    let info: String = redis::cmd("INFO").arg("inventory").query(c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("inventory_{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("INFO has no inventory_{name}:\n{info}"))
}

/// Polls `check` until it holds or the deadline passes.
pub fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until no AOF rewrite is running or scheduled, and checks the last one succeeded.
pub fn wait_for_aof_rewrite(c: &mut Connection) {
    eventually("AOF rewrite", Duration::from_secs(10), || {
        let info: String = redis::cmd("INFO").arg("persistence").query(c).unwrap();
        info.contains("aof_rewrite_in_progress:0") && info.contains("aof_rewrite_scheduled:0")
    });
    let info: String = redis::cmd("INFO").arg("persistence").query(c).unwrap();
    assert!(
        info.contains("aof_last_bgrewrite_status:ok"),
        "the AOF rewrite failed: {info}"
    );
}

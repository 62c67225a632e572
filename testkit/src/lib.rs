//! The one harness for real servers, shared by the integration tests, the
//! client's cluster tests, the benchmarks and the demo: a free loopback port,
//! a temp dir, `--save ""`, debug commands on, a log file, readiness with a
//! deadline, kill + wait on drop. The binary comes from `INVENTORY_SERVER`
//! (default `redis-server`), the module from `INVENTORY_MODULE` (default the
//! debug build in target/, or the release build for benchmarks).

pub mod cluster;
pub mod hostile;
pub mod stats;

pub use stats::{command_usec, info_value, usec_per_call, used_memory};

use redis::Connection;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn server_bin() -> String {
    std::env::var("INVENTORY_SERVER").unwrap_or_else(|_| "redis-server".into())
}

/// Which build of the module to load.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Build {
    Debug,
    Release,
    /// No module at start: the test loads one with MODULE LOAD (the debug
    /// build's path, `module_path`).
    NoModule,
}

/// The module to load: `INVENTORY_MODULE`, else the given build in target/,
/// which must be newer than the module's sources (`cargo test --test
/// integration` builds the tests, not the module they load: an edit
/// followed by no `cargo build` would test the previous module).
pub fn module_path(build: Build) -> PathBuf {
    let (dir, flag) = if build == Build::Release {
        ("release", " --release")
    } else {
        ("debug", "")
    };
    if let Ok(given) = std::env::var("INVENTORY_MODULE") {
        let path = PathBuf::from(given);
        assert!(
            path.exists(),
            "module not found at {} (INVENTORY_MODULE)",
            path.display()
        );
        return path;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = root.join(format!("target/{dir}/libinventory.so"));
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "module not found at {} (run `cargo build{flag}` or set INVENTORY_MODULE)",
                path.display()
            )
        });
    let sources = ["src", "core/src"].map(|d| root.join(d));
    if let Some(newer) = sources.iter().find_map(|d| newer_file(d, built)) {
        panic!(
            "the module at {} is older than {} (run `cargo build{flag}` or set INVENTORY_MODULE)",
            path.display(),
            newer.display()
        );
    }
    path
}

/// A file under `dir` modified after `than`, if any.
fn newer_file(dir: &std::path::Path, than: std::time::SystemTime) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            if let Some(p) = newer_file(&path, than) {
                return Some(p);
            }
        } else if meta.modified().is_ok_and(|m| m > than) {
            return Some(path);
        }
    }
    None
}

/// Ports the tests' standalone servers take: below Linux's ephemeral range
/// (32768 and up), where client sockets could take a port between its pick
/// and the server's bind, and apart from the clusters' ports and their bus
/// ports (`cluster.rs`: 20000-22999, bus 30000-32999).
const SERVER_PORTS: std::ops::Range<u16> = 10_000..20_000;

/// Picks `n` consecutive ports in `range`, each free (and, with `bus`, each
/// port + 10000 too), starting from a place that differs per process and
/// per call so parallel tests spread out.
pub(crate) fn free_ports_in(range: std::ops::Range<u16>, n: u16, bus: bool) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
    let span = u32::from(range.end - range.start - n);
    let seed = std::process::id().wrapping_mul(7919) + CALLS.fetch_add(1, Ordering::Relaxed) * 977;
    for attempt in 0..span {
        let base = range.start + ((seed + attempt * 7) % span) as u16;
        if (0..n).all(|i| free(base + i) && (!bus || free(base + i + 10_000))) {
            return base;
        }
    }
    panic!("no free ports in {range:?}");
}

/// A free loopback port for a server (e.g. a second, TLS, port).
pub fn free_port() -> u16 {
    free_ports_in(SERVER_PORTS, 1, false)
}

pub struct Server {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    launch: Launch,
}

/// How a server is started, kept so that it can be started again.
struct Launch {
    extra: Vec<String>,
    build: Build,
    bin: String,
    /// A configuration file given before every other argument.
    conf: Option<String>,
}

impl Launch {
    fn new(bin: &str, build: Build, extra: &[&str], conf: Option<&std::path::Path>) -> Launch {
        Launch {
            extra: extra.iter().map(|s| s.to_string()).collect(),
            build,
            bin: bin.to_string(),
            conf: conf.map(|c| c.display().to_string()),
        }
    }
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

impl Server {
    /// `INVENTORY_SERVER` with the debug module and extra arguments (module
    /// arguments first, then `--options`).
    pub fn start(extra: &[&str]) -> Server {
        Self::start_build(Build::Debug, extra)
    }

    /// Like `start`, but a server that will not start (an option it was
    /// not built with, say) is the reason and its log's tail, not a panic.
    pub fn try_start(extra: &[&str]) -> Result<Server, String> {
        Self::try_start_in(
            temp_dir(),
            Launch::new(&server_bin(), Build::Debug, extra, None),
        )
    }

    /// Like `start`, with the chosen build of the module.
    pub fn start_build(build: Build, extra: &[&str]) -> Server {
        Self::start_with(&server_bin(), build, extra)
    }

    /// A given server binary with the chosen build of the module.
    pub fn start_with(bin: &str, build: Build, extra: &[&str]) -> Server {
        Self::start_in(temp_dir(), Launch::new(bin, build, extra, None))
    }

    /// `INVENTORY_SERVER` with the debug module started from a
    /// configuration file (as `make run` starts from redis.conf); the
    /// harness's own arguments (port, dir, log) override the file's.
    pub fn start_conf(conf: &std::path::Path, extra: &[&str]) -> Server {
        Self::start_in(
            temp_dir(),
            Launch::new(&server_bin(), Build::Debug, extra, Some(conf)),
        )
    }

    fn start_in(dir: tempfile::TempDir, launch: Launch) -> Server {
        Self::try_start_in(dir, launch).unwrap_or_else(|log| panic!("{log}"))
    }

    fn try_start_in(dir: tempfile::TempDir, launch: Launch) -> Result<Server, String> {
        let mut server = Self::spawn(dir, launch);
        // A port is free when picked but another test's socket can take it
        // before the server binds it: then start again on another port.
        let mut retries = 5;
        loop {
            match server.wait_ready() {
                Ok(()) => return Ok(server),
                Err(log) if retries > 0 && log.contains("Address already in use") => {
                    retries -= 1;
                    let (dir, launch) = server.take_parts();
                    let _ = std::fs::remove_file(dir.path().join("server.log"));
                    server = Self::spawn(dir, launch);
                }
                Err(log) => return Err(log),
            }
        }
    }

    /// Starts the server process on a free port; `wait_ready` says when it serves.
    fn spawn(dir: tempfile::TempDir, launch: Launch) -> Server {
        let port = free_port();
        let log = dir.path().join("server.log");
        let mut args: Vec<String> = launch.conf.iter().cloned().collect();
        args.extend([
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
        ]);
        if launch.build != Build::NoModule {
            let module = module_path(launch.build);
            args.extend(["--loadmodule".into(), module.display().to_string()]);
        }
        // Module arguments (those before the first --option) follow
        // --loadmodule directly, as `extra` lists them.
        args.extend(launch.extra.iter().cloned());
        let child = Command::new(&launch.bin)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(stderr_file(dir.path()))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start '{}': {e} (install it with `make deps` or set INVENTORY_SERVER)",
                    launch.bin
                )
            });
        Server {
            child,
            port,
            dir,
            launch,
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(120)..].join("\n")
    }

    /// Waits until the server answers and has loaded its data; the reason
    /// and the log's tail when it exits or does not get there in time.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "server exited ({status}); log:\n{}",
                    self.log_tail()
                ));
            }
            // A server stuck before its event loop (Redis's RDB check can
            // spin on a truncated file) accepts connections and never
            // answers: a read timeout lets the deadline decide.
            let conn = redis::Client::open(self.url()).and_then(|c| {
                let c = c.get_connection_with_timeout(Duration::from_secs(2))?;
                c.set_read_timeout(Some(Duration::from_secs(2)))?;
                Ok(c)
            });
            if let Ok(mut c) = conn {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    let loading: String = redis::cmd("INFO")
                        .arg("persistence")
                        .query(&mut c)
                        .unwrap_or_default();
                    if loading.contains("loading:0") {
                        return Ok(());
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "server not ready in time; log:\n{}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn try_conn(&self) -> redis::RedisResult<Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?.get_connection()
    }

    /// The server's process id (to stop and continue it in a test).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn conn(&self) -> Connection {
        self.try_conn().expect("connect")
    }

    /// Stops the server (SHUTDOWN NOSAVE) and starts it again on the same dir
    /// and arguments: what survives is what the dir held.
    pub fn restart(self) -> Server {
        self.restart_after(Duration::ZERO)
    }

    /// Kills the server (SIGKILL: no shutdown, no final fsync) and starts it
    /// again on the same dir: what survives is what reached the disk.
    pub fn kill_and_restart(self) -> Server {
        self.kill_and_restart_after(Duration::ZERO)
    }

    /// Kills the server (SIGKILL), leaves it down for `down` (deadlines can
    /// pass meanwhile), then starts it again on the same dir.
    pub fn kill_and_restart_after(mut self, down: Duration) -> Server {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(down);
        self.relaunch()
    }

    /// Starts a server on a data dir the caller prepared (an RDB or AOF to
    /// load); the reason and the log's tail when it will not start
    /// ("server exited (signal: ...)" when it crashed).
    pub fn try_start_on(
        dir: tempfile::TempDir,
        build: Build,
        bin: &str,
        extra: &[&str],
    ) -> Result<Server, String> {
        Self::try_start_in(dir, Launch::new(bin, build, extra, None))
    }

    /// Stops the server, waits, then starts it again on the same dir.
    pub fn restart_after(self, pause: Duration) -> Server {
        self.restart_with(|_| std::thread::sleep(pause))
    }

    /// Stops the server, runs `between` on its (stopped) data dir, then
    /// starts it again there: for editing what it loads at startup.
    pub fn restart_with(mut self, between: impl FnOnce(&std::path::Path)) -> Server {
        let _ = redis::cmd("SHUTDOWN").arg("NOSAVE").exec(&mut self.conn());
        let _ = self.child.wait();
        between(self.dir.path());
        self.relaunch()
    }

    /// Starts a stopped server again on its dir and arguments.
    fn relaunch(mut self) -> Server {
        let (dir, launch) = self.take_parts();
        Server::start_in(dir, launch)
    }

    /// Its data dir and how it was started, taken out of this handle.
    fn take_parts(&mut self) -> (tempfile::TempDir, Launch) {
        let dir = std::mem::replace(&mut self.dir, temp_dir());
        let empty = Launch::new("", self.launch.build, &[], None);
        (dir, std::mem::replace(&mut self.launch, empty))
    }

    /// What the server logged, then what it wrote to stderr (where a Rust
    /// panic's message goes, before the abort the log reports).
    pub fn log(&self) -> String {
        read_logs(self.dir.path(), "server.log")
    }
}

/// What a crash leaves in a server's log or stderr: the server's own crash
/// report (a module panic aborts the process, which the server reports as a
/// signal), a Rust panic's message, a failed assertion.
pub const CRASH_SIGNS: &[&str] = &[
    "crashed by signal",
    "panicked",
    "ASSERTION FAILED",
    "BUG REPORT",
];

/// The file a server's stderr is appended to, in its dir (a restarted
/// server appends), or nowhere if it cannot be made.
pub(crate) fn stderr_file(dir: &std::path::Path) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("stderr.log"))
        .map_or_else(|_| Stdio::null(), Stdio::from)
}

/// The log file `name` in `dir`, then the stderr kept beside it.
pub(crate) fn read_logs(dir: &std::path::Path, name: &str) -> String {
    let log = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let stderr = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
    if stderr.is_empty() {
        log
    } else {
        format!("{log}\n--- stderr ---\n{stderr}")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where `skip` records skipped tests: `INVENTORY_SKIP_LOG`, else
/// target/test-skips.log in the workspace (`make test` empties it first and
/// prints it, with a count, at the end).
pub fn skip_log() -> PathBuf {
    std::env::var("INVENTORY_SKIP_LOG")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-skips.log")
        })
}

/// Records that the running test cannot run on this server, and why: one
/// line, "<server> <test>: <reason>", in `skip_log()`. Call it, then return:
/// the test harness of stable Rust has no run-time skip, so the line is
/// what makes a skip visible in `make test`'s output.
pub fn skip(reason: &str) {
    use std::io::Write;
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    let line = format!("{} {test}: {reason}\n", server_bin());
    eprint!("SKIPPED {line}");
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(skip_log())
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = appended {
        panic!("cannot record the skip in {}: {e}", skip_log().display());
    }
}

/// Polls `check` until it holds or the deadline passes.
pub fn eventually(what: &str, within: Duration, check: impl FnMut() -> bool) {
    assert!(holds_within(within, check), "timed out waiting for {what}");
}

/// Polls `check` (every 20 ms) until it holds, or until `within` has
/// passed: whether it held. For a caller whose failure message needs what
/// `check` saw last.
pub fn holds_within(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !check() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

pub fn reset_stats(c: &mut Connection) {
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(c).unwrap();
}

/// "Redis 7.0.15" or "Valkey 8.1.8".
pub fn version(c: &mut Connection) -> String {
    let v = info_value(c, "server", "valkey_version");
    if v.is_empty() {
        format!("Redis {}", info_value(c, "server", "redis_version"))
    } else {
        format!("Valkey {v}")
    }
}

/// `kill -SIG pid` (STOP and CONT freeze and thaw a server).
pub fn signal(sig: &str, pid: u32) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{sig} {pid}");
}

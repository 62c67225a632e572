//! A real Redis Cluster: 3 masters, each with one replica (or none, the bare
//! shape) on loopback, each node with the module loaded, created with
//! `redis-cli --cluster create`, killed on drop.

use crate::eventually;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A base port with `n` consecutive ports and their bus ports (+10000)
/// free, all below the ephemeral range: nodes in 20000-22999, bus ports in
/// 30000-32999.
fn free_ports(n: u16) -> u16 {
    crate::free_ports_in(20_000..23_000, n, true)
}

pub struct Node {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    bin: String,
    args: Vec<String>,
}

impl Node {
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn alive(&self) -> bool {
        self.child.is_some()
    }

    /// What the node logged so far, then its stderr.
    pub fn log(&self) -> String {
        crate::read_logs(self.dir.path(), "log")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            // A failed test shows what each node logged last (a crash included).
            let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- node {} log tail ---\n{}",
                self.port,
                lines[lines.len().saturating_sub(15)..].join("\n")
            );
        }
    }
}

pub struct Cluster {
    pub nodes: Vec<Node>,
}

fn start_node(port: u16, bin: &str, build: crate::Build, extra: &[&str]) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f).display().to_string();
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--cluster-enabled",
        "yes",
        "--cluster-node-timeout",
        "1500",
        // One replica per master: nothing to batch, so a full sync (a
        // restarted node rejoining) starts at once, not after 5 s.
        "--repl-diskless-sync-delay",
        "0",
        "--cluster-config-file",
        &d("nodes.conf"),
        "--dir",
        &dir.path().display().to_string(),
        "--logfile",
        &d("log"),
        "--enable-debug-command",
        "yes",
        "--loadmodule",
        &crate::module_path(build).display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut node = Node {
        port,
        child: None,
        dir,
        bin: bin.to_string(),
        args,
    };
    node.restart();
    node
}

impl Node {
    /// Starts the node (again) on its port, dir and arguments: after a
    /// kill it rejoins the cluster from its nodes.conf, as a replica when
    /// its replica was promoted meanwhile.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new(&self.bin)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(crate::stderr_file(self.dir.path()))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin));
        self.child = Some(child);
        let url = self.url();
        eventually("node up", Duration::from_secs(20), || {
            redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection())
                .is_ok()
        });
    }
}

/// The host and port of the master serving `slot`, as the node behind `c`
/// sees it (CLUSTER SLOTS); `None` when no range holds the slot.
pub fn slot_master(
    c: &mut redis::Connection,
    slot: u16,
) -> redis::RedisResult<Option<(String, u16)>> {
    let ranges: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER").arg("SLOTS").query(c)?;
    Ok(ranges.iter().find_map(|r| {
        let start: i64 = redis::from_redis_value(r.first()?).ok()?;
        let end: i64 = redis::from_redis_value(r.get(1)?).ok()?;
        let master: Vec<redis::Value> = redis::from_redis_value(r.get(2)?).ok()?;
        let host: String = redis::from_redis_value(master.first()?).ok()?;
        let port: u16 = redis::from_redis_value(master.get(1)?).ok()?;
        (start..=end)
            .contains(&i64::from(slot))
            .then_some((host, port))
    }))
}

pub fn info(c: &mut redis::Connection, section: &str) -> String {
    redis::cmd("INFO").arg(section).query(c).unwrap_or_default()
}

impl Cluster {
    /// 3 masters and 3 replicas of `INVENTORY_SERVER` with the debug
    /// module, all slots covered, replicas in sync.
    pub fn start() -> Cluster {
        Self::start_with(&crate::server_bin(), crate::Build::Debug, &[])
    }

    /// Like `start`, with a given server binary, build of the module and
    /// extra `--options` for every node.
    pub fn start_with(bin: &str, build: crate::Build, extra: &[&str]) -> Cluster {
        Self::start_shaped(bin, build, extra, 1)
    }

    /// Like `start_with`, with `replicas` replicas per master (0: three
    /// bare masters).
    pub fn start_shaped(bin: &str, build: crate::Build, extra: &[&str], replicas: u16) -> Cluster {
        let count = 3 * (1 + replicas);
        let base = free_ports(count);
        let nodes: Vec<Node> = (0..count)
            .map(|i| start_node(base + i, bin, build, extra))
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Cluster { nodes };
        cluster.wait_healthy();
        cluster
    }

    /// Every live node sees a healthy cluster and every replica has finished
    /// its initial sync (link up). A replica may still trail its master's
    /// latest writes: callers that compare a replica with its master wait
    /// for it (WAIT, or polling until they agree).
    pub fn wait_healthy(&self) {
        for n in self.nodes.iter().filter(|n| n.alive()) {
            eventually("cluster_state:ok", Duration::from_secs(20), || {
                let mut c = n.conn();
                let ci: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut c)
                    .unwrap_or_default();
                let repl = info(&mut c, "replication");
                ci.contains("cluster_state:ok")
                    && (repl.contains("role:master") || repl.contains("master_link_status:up"))
            });
        }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.alive())
            .map(|n| n.url())
            .collect()
    }

    /// Indexes of the live masters.
    pub fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i].alive()
                    && info(&mut self.nodes[i].conn(), "replication").contains("role:master")
            })
            .collect()
    }

    /// The index of the node serving `slot` as master.
    pub fn owner(&self, slot: u16) -> usize {
        let live = self.nodes.iter().position(|n| n.alive()).unwrap();
        let (_, port) = slot_master(&mut self.nodes[live].conn(), slot)
            .unwrap()
            .unwrap_or_else(|| panic!("slot {slot} not served"));
        self.nodes.iter().position(|n| n.port == port).unwrap()
    }

    pub fn node_id(&self, i: usize) -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut self.nodes[i].conn())
            .unwrap()
    }

    /// The hash slot of `key`, as the cluster computes it.
    pub fn slot_of(&self, key: &str) -> u16 {
        let live = self.nodes.iter().position(|n| n.alive()).unwrap();
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut self.nodes[live].conn())
            .unwrap()
    }

    /// Whether the servers migrate slots atomically (`CLUSTER
    /// MIGRATESLOTS`, Valkey 9).
    pub fn has_atomic_migration(&self) -> bool {
        let live = self.nodes.iter().position(|n| n.alive()).unwrap();
        let help: Vec<String> = redis::cmd("CLUSTER")
            .arg("HELP")
            .query(&mut self.nodes[live].conn())
            .unwrap_or_default();
        help.iter().any(|l| l.starts_with("MIGRATESLOTS"))
    }

    /// Moves `slot` from master `from` to master `to` by atomic slot
    /// migration, run by the source, and waits (up to 30 s) for the job to
    /// end; the job's message if it failed.
    pub fn migrate_atomically(&self, slot: u16, from: usize, to: usize) -> Result<(), String> {
        let c = &mut self.nodes[from].conn();
        let s = slot.to_string();
        redis::cmd("CLUSTER")
            .arg(&[
                "MIGRATESLOTS",
                "SLOTSRANGE",
                &s,
                &s,
                "NODE",
                &self.node_id(to),
            ])
            .query::<()>(c)
            .map_err(|e| format!("CLUSTER MIGRATESLOTS: {e}"))?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let jobs: Vec<Vec<(String, redis::Value)>> = redis::cmd("CLUSTER")
                .arg("GETSLOTMIGRATIONS")
                .query(c)
                .map_err(|e| e.to_string())?;
            let last = jobs.last().cloned().unwrap_or_default();
            let field = |name: &str| {
                last.iter()
                    .find(|(k, _)| k == name)
                    .and_then(|(_, v)| redis::from_redis_value::<String>(v).ok())
                    .unwrap_or_default()
            };
            match field("state").as_str() {
                "success" => return Ok(()),
                "failed" | "cancelled" => {
                    return Err(format!(
                        "MIGRATESLOTS {}: {}",
                        field("state"),
                        field("message")
                    ))
                }
                state if std::time::Instant::now() > deadline => {
                    return Err(format!("MIGRATESLOTS still {state:?} after 30 s"))
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

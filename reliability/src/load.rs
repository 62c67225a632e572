//! The mixed load every fault scenario runs, and its controller: it starts
//! the workers (worker.rs) on their own connections, makes them follow the
//! server when a fault moves it (a restart on a new port, a promoted
//! replica), pauses them for a check and collects their ledger.

use crate::ledger::{Ledger, Outcome};
use crate::worker::Worker;
use redis::{Connection, ConnectionLike};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The load's SKUs: few, so workers collide on them.
pub const KEYS: usize = 6;
const INITIAL_STOCK: i64 = 300;

/// The load's keys share one hash tag, `h12860`, which hashes to slot 0:
/// one slot move carries every key, and as the lowest slot of whichever
/// master owns it, it is the one `redis-cli --cluster reshard
/// --cluster-slots 1` moves.
pub fn key(i: usize) -> String {
    format!("sku:{{h12860}}{i}")
}

/// The slot every load key is in.
pub const SLOT: u16 = 0;

/// Where the load sends its requests.
#[derive(Clone)]
pub enum Target {
    /// One server, followed when a fault moves it.
    Server(String),
    /// A cluster, through a client that follows MOVED and ASK. With
    /// `retry: false` a request whose connection broke is not sent again
    /// (the load counts it unanswered): a resent INV.ADD could apply twice.
    Cluster { urls: Vec<String>, retry: bool },
    /// A cluster's nodes: the load talks straight to the master that owns
    /// `SLOT` (asked of any live node), so that the `WAIT` after a write
    /// reaches the node that took the write. A stale owner answers MOVED (a
    /// refusal) and the owner is asked again.
    SlotOwner(Vec<String>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// A reply is a promise.
    Reply,
    /// A write is a promise once `WAIT 1` confirms a replica has it.
    Wait,
    /// No reply is a promise (replication without WAIT): the checker
    /// counts what was acknowledged and lost.
    Unconfirmed,
}

pub struct Shared {
    pub target: Mutex<Target>,
    pub ledger: Mutex<Ledger>,
    pub stop: AtomicBool,
    pub pause: AtomicBool,
    pub paused: AtomicUsize,
    pub durability: Durability,
}

pub struct Load {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Load {
    /// Stocks the keys on `target` (a promise in every view: the setup
    /// waits for `replicas` to have it) and starts `workers` threads.
    pub fn start(
        target: Target,
        workers: usize,
        durability: Durability,
        replicas: i64,
        seed: u64,
    ) -> Load {
        let mut ledger = Ledger::default();
        // Straight to the slot's master in a cluster, so that WAIT asks the
        // node that took the setup.
        let setup = match &target {
            Target::Cluster { urls, .. } => Target::SlotOwner(urls.clone()),
            other => other.clone(),
        };
        let mut c = connect_to(&setup).expect("connect for the setup");
        for i in 0..KEYS {
            let _: () = redis::cmd("INV.SET")
                .arg(key(i))
                .arg(INITIAL_STOCK)
                .query(&mut *c)
                .expect("INV.SET");
            ledger.add(&key(i), INITIAL_STOCK, Outcome::Acked { durable: true });
        }
        // Every key's change feed is on, and each check replays it
        // against the key (its stream moves with it in a reshard).
        for i in 0..KEYS {
            let _: () = redis::cmd("INV.RULES")
                .arg(key(i))
                .arg("FEED")
                .arg("ON")
                .query(&mut *c)
                .expect("INV.RULES FEED ON");
        }
        ledger.feed = true;
        if replicas > 0 {
            let n: i64 = redis::cmd("WAIT")
                .arg(replicas)
                .arg(10_000)
                .query(&mut *c)
                .expect("WAIT");
            assert_eq!(n, replicas, "the replicas have the setup");
        }
        let shared = Arc::new(Shared {
            target: Mutex::new(target),
            ledger: Mutex::new(ledger),
            stop: AtomicBool::new(false),
            pause: AtomicBool::new(false),
            paused: AtomicUsize::new(0),
            durability,
        });
        let workers = (0..workers)
            .map(|w| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || Worker::new(w, seed, shared).run())
            })
            .collect();
        Load { shared, workers }
    }

    /// Points the workers at another server (a restart, a promotion).
    pub fn follow(&self, url: &str) {
        *self.shared.target.lock().unwrap() = Target::Server(url.to_string());
    }

    /// Stops the workers between requests and waits until all are idle.
    pub fn pause(&self) {
        self.shared.pause.store(true, Ordering::SeqCst);
        while self.shared.paused.load(Ordering::SeqCst) < self.workers.len() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn resume(&self) {
        self.shared.pause.store(false, Ordering::SeqCst);
        while self.shared.paused.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.shared.ledger.lock().unwrap()
    }

    /// Stops the workers and returns the ledger.
    pub fn finish(self) -> Ledger {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.pause.store(false, Ordering::SeqCst);
        for w in self.workers {
            let _ = w.join();
        }
        let shared = Arc::try_unwrap(self.shared).ok().expect("workers joined");
        shared.ledger.into_inner().unwrap()
    }
}

pub type Conn = Box<dyn ConnectionLike + Send>;

pub fn connect_to(target: &Target) -> redis::RedisResult<Conn> {
    Ok(match target {
        Target::Server(url) => Box::new(connect(url)?),
        Target::Cluster { urls, retry } => {
            let mut b = redis::cluster::ClusterClient::builder(urls.clone())
                .response_timeout(Duration::from_secs(3));
            if !retry {
                b = b.retries(0);
            }
            Box::new(b.build()?.get_connection()?)
        }
        Target::SlotOwner(urls) => Box::new(connect(&slot_owner(urls)?)?),
    })
}

/// The URL of the master that owns `SLOT`, as the first node of `urls` that
/// answers sees it.
fn slot_owner(urls: &[String]) -> redis::RedisResult<String> {
    let mut last = None;
    for url in urls {
        match connect(url).and_then(|mut c| testkit::cluster::slot_master(&mut c, SLOT)) {
            Ok(Some((host, port))) => {
                let host = if host.is_empty() { "127.0.0.1" } else { &host };
                return Ok(format!("redis://{host}:{port}/"));
            }
            Ok(None) => {}
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| (redis::ErrorKind::ClusterDown, "slot not served").into()))
}

pub fn connect(url: &str) -> redis::RedisResult<Connection> {
    let c = redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(1))?;
    c.set_read_timeout(Some(Duration::from_secs(3)))?;
    c.set_write_timeout(Some(Duration::from_secs(3)))?;
    Ok(c)
}

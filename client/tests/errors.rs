//! The client fails fast and says why, against real servers: a server that
//! is down, a user without permission, a server at maxmemory, a node a
//! failover demoted and promoted again. Only transient conditions are
//! retried.

use redis_inventory_client::{Client, Error, Outcome, RetryPolicy};
use std::time::{Duration, Instant};
use testkit::{signal, Server};

fn admin(s: &Server) -> redis::Connection {
    s.conn()
}

fn run(c: &mut redis::Connection, args: &[&str]) {
    let _: redis::Value = redis::cmd(args[0])
        .arg(&args[1..])
        .query(c)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
}

#[tokio::test]
async fn a_server_that_is_down_is_a_connection_error_by_the_deadline() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let r = Client::builder()
        .retry(RetryPolicy {
            deadline: Duration::from_secs(1),
            ..Default::default()
        })
        .standalone(&format!("redis://127.0.0.1:{port}/"))
        .await;
    let elapsed = started.elapsed();
    match r {
        Err(Error::Connection(e)) => assert!(e.is_connection_refusal() || e.is_timeout(), "{e}"),
        Err(e) => panic!("expected a connection error, got {e}"),
        Ok(_) => panic!("connected to nothing"),
    }
    // Bounded by the deadline (plus one backoff), not redis-rs's minutes.
    assert!(
        elapsed < Duration::from_secs(3),
        "gave up after {elapsed:?}"
    );
}

#[tokio::test]
async fn a_user_without_permission_is_refused_at_once_not_retried() {
    let s = Server::start(&[]);
    let a = &mut admin(&s);
    run(a, &["INV.SET", "sku", "5"]);
    run(
        a,
        &[
            "ACL",
            "SETUSER",
            "viewer",
            "on",
            ">pw",
            "~*",
            "+@all",
            "-inv.reserve",
        ],
    );
    let url = format!("redis://viewer:pw@127.0.0.1:{}/", s.port);
    let c = Client::standalone(&url).await.unwrap();
    let started = Instant::now();
    match c.reserve("sku", "o1", 1, None).await {
        Err(err @ Error::NotAllowed(_)) => {
            let Error::NotAllowed(e) = &err else {
                unreachable!()
            };
            assert_eq!(e.code(), "NOPERM");
            // The typed error carries the server's error as its source.
            let source = std::error::Error::source(&err).expect("a source");
            assert!(source.to_string().contains("NOPERM"), "{source}");
        }
        other => panic!("expected NotAllowed, got {other:?}"),
    }
    // The default deadline is 10 s: refused at once means no retries.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(c.get("sku").await.unwrap().is_some(), "reads stay allowed");
    // A wrong password is refused at connect time, also at once.
    let started = Instant::now();
    let bad = format!("redis://viewer:nope@127.0.0.1:{}/", s.port);
    match Client::standalone(&bad).await {
        Err(Error::NotAllowed(e)) => assert_eq!(e.code(), "AUTH"),
        Err(e) => panic!("expected NotAllowed, got {e}"),
        Ok(_) => panic!("logged in with a wrong password"),
    }
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_server_at_maxmemory_is_out_of_memory_at_once() {
    let s = Server::start(&[]);
    let a = &mut admin(&s);
    run(a, &["INV.SET", "sku", "5"]);
    run(a, &["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    run(a, &["CONFIG", "SET", "maxmemory", "1"]);
    let c = Client::standalone(&s.url()).await.unwrap();
    let started = Instant::now();
    match c.reserve("sku", "o1", 1, None).await {
        Err(Error::OutOfMemory(e)) => assert_eq!(e.code(), "OOM"),
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    // Its source is the redis-rs error it came as.
    let e = c.reserve("sku", "o1", 1, None).await.unwrap_err();
    assert!(std::error::Error::source(&e).is_some());
    run(a, &["CONFIG", "SET", "maxmemory", "0"]);
    assert_eq!(
        c.reserve("sku", "o1", 1, None).await.unwrap().outcome,
        Outcome::Reserved
    );
}

#[tokio::test]
async fn other_error_replies_are_typed_and_not_retried() {
    let s = Server::start(&[]);
    let a = &mut admin(&s);
    run(a, &["SET", "text", "x"]);
    let c = Client::standalone(&s.url()).await.unwrap();
    assert!(matches!(
        c.reserve("text", "o1", 1, None).await,
        Err(Error::WrongType(_))
    ));
    assert!(matches!(
        c.reserve("sku", "", 1, None).await,
        Err(Error::Rejected(e)) if e.message() == "txid must be 1 to 128 bytes, got 0"
    ));
}

#[tokio::test]
async fn a_node_demoted_by_a_failover_is_retried_until_it_serves_again() {
    let other = Server::start(&[]);
    let s = Server::start(&[]);
    run(&mut admin(&other), &["INV.SET", "sku", "5"]);
    let c = Client::standalone(&s.url()).await.unwrap();
    // The node becomes a replica (writes answer READONLY), then is promoted.
    let a = &mut admin(&s);
    run(a, &["REPLICAOF", "127.0.0.1", &other.port.to_string()]);
    testkit::eventually("replica in sync", Duration::from_secs(10), || {
        testkit::info_value(a, "replication", "master_link_status") == "up"
    });
    let port = s.port;
    let promote = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut a = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        let _: () = redis::cmd("REPLICAOF")
            .arg("NO")
            .arg("ONE")
            .query(&mut a)
            .unwrap();
    });
    let started = Instant::now();
    let r = c.reserve("sku", "o1", 2, None).await.unwrap();
    assert_eq!((r.outcome, r.available), (Outcome::Reserved, 3));
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "it was retried"
    );
    promote.await.unwrap();
}

/// Freezes the server now and thaws it after `after`, on a thread of its
/// own (the frozen server cannot be waited on by the test's runtime).
fn freeze_for(s: &Server, after: Duration) -> std::thread::JoinHandle<()> {
    let pid = s.pid();
    signal("STOP", pid);
    std::thread::spawn(move || {
        std::thread::sleep(after);
        signal("CONT", pid);
    })
}

async fn client_with(s: &Server, deadline: Duration, fence_deadline: Duration) -> Client {
    Client::builder()
        .retry(RetryPolicy {
            deadline,
            fence_deadline,
            ..Default::default()
        })
        .standalone(&s.url())
        .await
        .unwrap()
}

/// The "deducted after the timeout" trap: a reserve sent to a server that
/// stalls mid-request gets no reply before the caller's deadline; the
/// server runs it later. The client fences the txid before it returns, so
/// when the server comes back the late reserve takes nothing (or is undone
/// by the cancel that follows it) and the caller is told so.
#[tokio::test]
async fn a_reserve_whose_reply_never_came_is_fenced_before_the_error_returns() {
    let s = Server::start(&[]);
    run(&mut admin(&s), &["INV.SET", "sku", "5"]);
    let client = client_with(&s, Duration::from_secs(1), Duration::from_secs(10)).await;
    let thaw = freeze_for(&s, Duration::from_millis(1500));
    let r = client
        .reserve("sku", "late", 2, Some(Duration::from_secs(600)))
        .await;
    thaw.join().unwrap();
    match r {
        Err(Error::Abandoned {
            txid,
            cause,
            fenced: Some(Outcome::Cancelled),
        }) => {
            assert_eq!(txid, "late");
            assert!(cause.is_transient(), "{cause}");
        }
        Err(e) => panic!("expected a fenced abandon, got {e}"),
        Ok(r) => panic!("a reply came back from a frozen server: {r:?}"),
    }
    // Whichever of the reserve and the cancel the server ran first, the
    // txid ends cancelled and holds nothing.
    let a = &mut admin(&s);
    let state: Vec<redis::Value> = redis::cmd("INV.TX")
        .arg("sku")
        .arg("late")
        .query(a)
        .unwrap();
    assert_eq!(state[1], redis::Value::BulkString(b"CANCELLED".to_vec()));
    let stock = client.get("sku").await.unwrap().unwrap();
    assert_eq!((stock.counts.available, stock.counts.reserved), (5, 0));
    // A retry of the same txid is refused: the caller gave it up.
    let again = client
        .reserve("sku", "late", 2, Some(Duration::from_secs(600)))
        .await
        .unwrap();
    assert_eq!(again.outcome, Outcome::Cancelled);
    assert_eq!(again.available, 5);
}

/// When the fence cannot land either (the server stays frozen past the
/// fence's own bound), the error says that the txid may hold units, and
/// the call still returns within both bounds.
#[tokio::test]
async fn a_fence_that_cannot_land_is_reported_within_its_bound() {
    let s = Server::start(&[]);
    run(&mut admin(&s), &["INV.SET", "sku", "5"]);
    let client = client_with(&s, Duration::from_secs(1), Duration::from_secs(1)).await;
    let thaw = freeze_for(&s, Duration::from_secs(4));
    let started = Instant::now();
    let r = client.reserve("sku", "stuck", 1, None).await;
    let elapsed = started.elapsed();
    thaw.join().unwrap();
    match &r {
        Err(Error::Abandoned {
            txid, fenced: None, ..
        }) => assert_eq!(txid, "stuck"),
        Err(e) => panic!("expected an unfenced abandon, got {e}"),
        Ok(r) => panic!("a reply came back from a frozen server: {r:?}"),
    }
    let text = r.unwrap_err().to_string();
    assert!(text.contains("may hold units until its TTL"), "{text}");
    assert!(
        elapsed < Duration::from_secs(4),
        "returned after {elapsed:?}"
    );
}

//! Many connections racing for one hot SKU: the server serialises them, so
//! what the replies acknowledge adds up to what the key holds, and reserved
//! plus sold never exceeds the stock.

use crate::harness::*;
use redis::Value;
use std::sync::{Arc, Barrier};

const CONNECTIONS: usize = 200;
const PER_CONNECTION: usize = 5;
const STOCK: i64 = 500;

#[test]
fn two_hundred_connections_racing_for_one_sku_never_oversell() {
    let s = Server::start(&["--maxclients", "1000"]);
    ok(&mut s.conn(), &["INV.SET", "hot", &STOCK.to_string()]);
    let start = Arc::new(Barrier::new(CONNECTIONS));
    let buyers: Vec<_> = (0..CONNECTIONS)
        .map(|b| {
            let (url, start) = (s.url(), start.clone());
            std::thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                start.wait();
                let mut held = 0;
                for i in 0..PER_CONNECTION {
                    let qty = 1 + ((b + i) % 3) as i64;
                    let txid = format!("buyer-{b}-{i}");
                    let reply = ok(&mut c, &["INV.RESERVE", "hot", &txid, &qty.to_string()]);
                    let Value::Array(parts) = reply else {
                        panic!("{reply:?}")
                    };
                    let reserved = match &parts[0] {
                        Value::BulkString(s) if s == b"RESERVED" => true,
                        Value::BulkString(s) if s == b"NOSTOCK" => false,
                        other => panic!("{other:?}"),
                    };
                    if reserved {
                        held += qty;
                    }
                    // Every other reservation is paid at once.
                    if reserved && i % 2 == 0 {
                        ok(&mut c, &["INV.CONFIRM", "hot", &txid]);
                    }
                }
                held
            })
        })
        .collect();
    let acknowledged: i64 = buyers.into_iter().map(|b| b.join().unwrap()).sum();
    let c = &mut s.conn();
    let stock: Vec<Value> = redis::from_redis_value(&ok(c, &["INV.GET", "hot"])).unwrap();
    let field = |name: &str| -> i64 {
        let i = stock
            .iter()
            .position(|v| matches!(v, Value::BulkString(b) if b == name.as_bytes()))
            .unwrap();
        redis::from_redis_value(&stock[i + 1]).unwrap()
    };
    let (reserved, sold, on_hand) = (field("reserved"), field("sold"), field("stock"));
    assert_eq!(
        reserved + sold,
        acknowledged,
        "every acknowledged unit is held or sold"
    );
    assert!(
        reserved + sold <= STOCK,
        "oversold: {reserved} + {sold} > {STOCK}"
    );
    assert_eq!(
        on_hand + sold,
        STOCK,
        "confirming moves units from stock to sold"
    );
    // Demand (about 2,000 units) exceeds the stock: it sells out, but for
    // what no later request was small enough to take.
    assert!(
        acknowledged > STOCK - 3,
        "only {acknowledged} sold of {STOCK}"
    );
    assert_eq!(ok(c, &["INV.AUDIT", "hot"]), Value::Okay);
}

//! Writes the seed corpus (`cargo run --bin seeds`, from fuzz/): valid
//! inputs for each target, so fuzzing starts from real commands and real
//! saved keys. The files are committed under corpus/.

use inventory_core::ledger::{encode, Policy, Sku, Ttl, TxId};

const NOW: u64 = 1_800_000_000_000;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = format!("corpus/{target}");
    std::fs::create_dir_all(&dir).expect("corpus dir");
    std::fs::write(format!("{dir}/{name}"), bytes).expect("seed file");
}

/// A command input: its selector byte, then its arguments joined by 0xFF.
fn command(which: u8, args: &[&str]) -> Vec<u8> {
    let mut out = vec![which];
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(0xFF);
        }
        out.extend_from_slice(a.as_bytes());
    }
    out
}

fn commit(sku: &mut Sku, plan: inventory_core::ledger::Plan) {
    for e in plan.effects.iter() {
        sku.apply(e).expect("seed effect");
    }
}

/// A key with `n` reservations, some confirmed and some cancelled.
fn key(n: usize) -> Sku {
    let mut sku = Sku::new();
    let p = Policy::default();
    let plan = sku.plan_set(1_000_000, None, NOW).expect("set");
    commit(&mut sku, plan);
    for i in 0..n {
        let txid = TxId::new(format!("order-{i:08}").as_bytes()).expect("txid");
        let plan = sku
            .plan_reserve(&txid, 1 + (i % 3) as i64, Ttl::Millis(60_000), NOW, &p)
            .expect("reserve");
        commit(&mut sku, plan);
        match i % 4 {
            0 => {
                let plan = sku.plan_confirm(&txid, NOW);
                commit(&mut sku, plan);
            }
            1 => {
                let plan = sku.plan_cancel(&txid, NOW).expect("cancel");
                commit(&mut sku, plan);
            }
            _ => {}
        }
    }
    sku
}

fn main() {
    let seeds: [(&str, u8, &[&str]); 19] = [
        ("set", 0, &["k", "10"]),
        ("set-ifversion", 0, &["k", "10", "IFVERSION", "3"]),
        ("add", 1, &["k", "-5", "IFVERSION", "3"]),
        ("reserve", 2, &["k", "t1", "2", "TTL", "60000"]),
        (
            "reserve-pxat",
            2,
            &["k", "t1", "2", "PXAT", "1800000030000"],
        ),
        ("reserve-open", 2, &["k", "open", "2"]),
        ("reserve-block", 2, &["k", "t1", "200", "BLOCK", "100"]),
        (
            "reserve-block-buyer",
            2,
            &["k", "t1", "200", "BUYER", "carol", "BLOCK", "0"],
        ),
        ("confirm", 3, &["k", "open"]),
        ("cancel", 4, &["k", "new"]),
        ("extend", 5, &["k", "open", "120000"]),
        (
            "apply-reserve",
            6,
            &["k", "RESERVE", "t9", "1", "1800000060000"],
        ),
        ("apply-expire", 6, &["k", "EXPIRE", "open"]),
        (
            "mreserve",
            7,
            &["order", "2", "a", "1", "b", "2", "TTL", "1000"],
        ),
        ("mcancel", 8, &["order", "a", "b"]),
        ("scan", 9, &["k", "0", "COUNT", "10"]),
        (
            "rules-feed",
            14 | 0x80,
            &["k", "FEED", "ON", "LOW", "99", "LIMIT", "2"],
        ),
        (
            "apply-fed-reserve",
            6 | 0x80,
            &[
                "k",
                "FEED",
                "1800000000000-7",
                "100",
                "RESERVE",
                "t9",
                "1",
                "1800000060000",
            ],
        ),
        (
            "apply-fed-reserve-joined",
            6 | 0x80,
            &[
                "k",
                "RESERVE:1800000000000-7:100:1799999000000-0",
                "t9",
                "1",
                "1800000060000",
                "BUYER",
                "b",
            ],
        ),
        ("feed-name", 10, &["{a}}b{"]),
    ];
    for (name, which, args) in seeds {
        write("commands", name, &command(which, args));
    }
    write("commands", "housekeeping", &[11]);
    for n in [0, 5, 300] {
        let mut bytes = vec![inventory_core::ledger::ENCODING_VERSION as u8];
        encode(&key(n), |b| {
            bytes.extend_from_slice(&(b.len() as u16).to_le_bytes());
            bytes.extend_from_slice(b);
        });
        let v = inventory_core::ledger::ENCODING_VERSION;
        write("decode", &format!("key-{n}-v{v}"), &bytes);
    }
}

//! Unit and property tests of the records structure.

use super::*;
use crate::ledger::txid::TxId;

#[test]
fn record_is_32_bytes() {
    assert_eq!(std::mem::size_of::<Record>(), 32);
}

#[test]
fn long_txids_live_in_the_side_table() {
    let mut r = Records::default();
    let long = [b'L'; 100];
    assert_eq!(
        r.insert(&TxId::new(&long).unwrap(), State::Reserved, 5, 9),
        Insert::Added
    );
    assert_eq!(
        r.insert(&TxId::new(b"short").unwrap(), State::Reserved, 1, 9),
        Insert::Added
    );
    assert_eq!(
        r.insert(&TxId::new(&long).unwrap(), State::Reserved, 5, 9),
        Insert::Exists
    );
    let slot = r.find(&long).unwrap();
    assert_eq!(r.get(slot).unwrap().txid_bytes(), &long[..]);
    assert_eq!(r.get(slot).unwrap().qty(), 5);
    r.remove(slot);
    assert!(r.find(&long).is_none());
    assert_eq!(
        r.insert(&TxId::new(&[b'M'; 17]).unwrap(), State::Confirmed, 0, 1),
        Insert::Added
    );
    assert_eq!(r.long.len(), 1, "the freed side-table entry is reused");
    r.check().unwrap();
}

#[test]
fn index_survives_growth_removal_and_compaction() {
    let mut r = Records::default();
    let id = |i: usize| {
        // Every seventh txid is long, so the side table takes part.
        let len = if i % 7 == 0 { 40 } else { 16 };
        TxId::new(format!("{i:0len$}").as_bytes()).unwrap()
    };
    for i in 0..20_000 {
        assert_eq!(
            r.insert(&id(i), State::Reserved, 1, i as u64),
            Insert::Added
        );
    }
    for i in (0..20_000).step_by(2) {
        r.remove(r.find(id(i).as_bytes()).unwrap());
    }
    r.check().unwrap();
    for i in 0..20_000 {
        assert_eq!(r.find(id(i).as_bytes()).is_some(), i % 2 == 1, "txid {i}");
    }
    for i in (0..20_000).step_by(4) {
        r.remove(r.find(id(i + 1).as_bytes()).unwrap());
    }
    r.compact();
    r.check().unwrap();
    assert_eq!(r.len(), 5_000);
    for i in (3..20_000).step_by(4) {
        assert_eq!(
            r.get(r.find(id(i).as_bytes()).unwrap()).unwrap().time(),
            i as u64
        );
    }
}

/// Big enough that the index grows in the background (>= 1024 buckets),
/// with removals, slot reuse, small steps and a forced finish mixed in.
#[test]
fn index_grows_in_steps_while_records_change() {
    let mut r = Records::default();
    let id = |i: u64| TxId::new(format!("{i:016}").as_bytes()).unwrap();
    let mut rng = crate::TestRng::new();
    let mut next = || rng.next();
    let mut live = std::collections::BTreeSet::new();
    let (mut started, mut steps) = (0, 0);
    for i in 0..150_000u64 {
        assert_eq!(r.insert(&id(i), State::Reserved, 1, i), Insert::Added);
        live.insert(i);
        if next() % 8 == 0 {
            // Remove a random earlier record; its slot is reused later.
            let victim = next() % (i + 1);
            if live.remove(&victim) {
                r.remove(r.find(id(victim).as_bytes()).unwrap());
            }
        }
        if r.busy() {
            started += 1;
            // Sometimes no step at all, so the forced finish is reached.
            if next() % 3 != 0 {
                r.maintain((next() % 300) as usize);
                steps += 1;
            }
        }
        if i % 10_000 == 0 {
            r.check().unwrap();
        }
    }
    assert!(started > 0 && steps > 0, "the background path ran");
    r.check().unwrap();
    while r.maintain(1_000) {}
    r.check().unwrap();
    assert_eq!(r.len(), live.len());
    for i in 0..150_000u64 {
        assert_eq!(
            r.find(id(i).as_bytes()).is_some(),
            live.contains(&i),
            "txid {i}"
        );
    }
}

/// With no housekeeping steps at all (an AOF loading, a master too busy for
/// its timer), the inserts themselves finish a growth, a few slots each:
/// none copies more than a handful, and the move is done before the
/// serving index fills.
#[test]
fn inserts_finish_a_growth_a_few_slots_each() {
    let mut r = Records::default();
    let id = |i: u64| TxId::new(format!("{i:016}").as_bytes()).unwrap();
    let mut i = 0u64;
    while !r.busy() {
        r.insert(&id(i), State::Reserved, 1, i);
        i += 1;
    }
    let mut last = r.growth_cursor().unwrap();
    while let Some(cursor) = r.growth_cursor() {
        // The share per insert drifts up as room runs out, logarithmically:
        // about 60 at most here.
        assert!(
            cursor - last <= 100,
            "one insert copied {} slots",
            cursor - last
        );
        last = cursor;
        // No removals here: the slab holds exactly the live records.
        let left = r.len() - cursor;
        r.insert(&id(i), State::Reserved, 1, i);
        i += 1;
        if r.growth_cursor().is_none() {
            assert!(left <= 100, "the last insert copied {left} slots");
        }
    }
    r.check().unwrap();
    assert!((0..i).all(|k| r.find(id(k).as_bytes()).is_some()));
}

/// Without housekeeping steps (a replica, or a master too busy), the
/// growth finishes in one go when the serving index is full.
#[test]
fn an_unfinished_growth_completes_when_the_index_fills() {
    let mut r = Records::default();
    let id = |i: u64| TxId::new(format!("{i:016}").as_bytes()).unwrap();
    let mut i = 0u64;
    while !r.busy() {
        r.insert(&id(i), State::Reserved, 1, i);
        i += 1;
    }
    r.maintain(1_000);
    r.check().unwrap();
    while r.busy() {
        r.insert(&id(i), State::Reserved, 1, i);
        i += 1;
    }
    r.check().unwrap();
    assert!((0..i).all(|k| r.find(id(k).as_bytes()).is_some()));
}

/// After a purge of most records, compaction runs in small steps while
/// records keep arriving and leaving: the structure checks out at every
/// step, every live record is found, memory goes back, and the index moves
/// to a smaller one.
#[test]
fn compaction_runs_in_steps_while_records_change() {
    let mut r = Records::default();
    let id = |i: u64| TxId::new(format!("{i:016}").as_bytes()).unwrap();
    let mut live = std::collections::BTreeSet::new();
    for i in 0..120_000u64 {
        let state = if i % 3 == 0 {
            State::Reserved
        } else {
            State::Confirmed
        };
        assert_eq!(r.insert(&id(i), state, 1, i % 977), Insert::Added);
        live.insert(i);
        if r.busy() {
            r.maintain(700);
        }
    }
    while r.maintain(10_000) {}
    let full = r.mem_usage();
    // Most records go, from everywhere in the slab.
    for i in 0..120_000u64 {
        if i % 10 != 0 {
            r.remove(r.find(id(i).as_bytes()).unwrap());
            live.remove(&i);
        }
    }
    r.after_removals();
    assert!(r.busy(), "a compaction started");
    let epoch = r.epoch();
    let mut rng = 0x9e37_79b9_u64;
    let mut next_id = 1_000_000u64;
    let mut steps = 0;
    while r.busy() {
        r.maintain(300);
        steps += 1;
        // Changes between steps: new records, and removals anywhere.
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        if rng % 3 == 0 {
            assert_eq!(
                r.insert(&id(next_id), State::Reserved, 2, next_id % 500),
                Insert::Added
            );
            live.insert(next_id);
            next_id += 1;
        } else if let Some(&victim) = live.iter().nth((rng >> 33) as usize % live.len()) {
            r.remove(r.find(id(victim).as_bytes()).unwrap());
            live.remove(&victim);
        }
        if steps % 50 == 0 {
            r.check().unwrap();
        }
    }
    assert!(steps > 20, "the work was spread over {steps} steps");
    r.check().unwrap();
    assert_ne!(r.epoch(), epoch, "scan cursors restart after records moved");
    assert_eq!(r.len(), live.len());
    for &i in &live {
        assert!(r.find(id(i).as_bytes()).is_some(), "txid {i}");
    }
    assert!(
        r.mem_usage() * 4 < full,
        "memory {} after compaction, {full} before",
        r.mem_usage()
    );
}

#[test]
fn heaps_follow_state_and_time() {
    let mut r = Records::default();
    for (i, t) in [50u64, 10, 30, 20, 40].iter().enumerate() {
        let added = r.insert(
            &TxId::new(format!("t{i}").as_bytes()).unwrap(),
            State::Reserved,
            1,
            *t,
        );
        assert_eq!(added, Insert::Added);
    }
    assert_eq!(r.first_deadline(), Some(10));
    let s = r.find(b"t1").unwrap();
    r.set_state(s, State::Confirmed);
    assert_eq!(r.first_deadline(), Some(20));
    assert_eq!(r.first_done(), Some(10));
    r.set_time(r.find(b"t0").unwrap(), 5);
    assert_eq!(r.first_deadline(), Some(5));
    let mut due = vec![];
    r.visit_due(25, |s| {
        due.push(r.get(s).unwrap().time());
        true
    });
    due.sort();
    assert_eq!(due, vec![5, 20]);
    r.remove(r.find(b"t3").unwrap());
    assert!(r.find(b"t3").is_none());
    r.check().unwrap();
    r.compact();
    r.check().unwrap();
    assert_eq!(r.len(), 4);
}

proptest::proptest! {
    /// The heaps' cached smallest key (and bound on the largest) stay
    /// exact through every kind of change, in any order: `check` compares
    /// them with the heap itself, and the earliest deadline and the due
    /// set with a brute-force scan of the records.
    #[test]
    fn heap_tops_stay_exact(ops in proptest::collection::vec((0u8..5, 0usize..40, 0u64..50), 1..300)) {
        let mut r = Records::default();
        let id = |i: usize| TxId::new(format!("t{i}").as_bytes()).unwrap();
        for (op, i, time) in ops {
            let slot = r.find(id(i).as_bytes());
            match (op, slot) {
                (0 | 1, None) => {
                    let state = if op == 0 { State::Reserved } else { State::Confirmed };
                    proptest::prop_assert_eq!(r.insert(&id(i), state, 1, time), Insert::Added);
                }
                (2, Some(s)) => r.set_time(s, time),
                (3, Some(s)) => r.remove(s),
                (4, Some(s)) => r.set_state(s, State::Cancelled),
                _ => {}
            }
            proptest::prop_assert!(r.check().is_ok(), "{:?}", r.check());
            let min_of = |open: bool| {
                r.iter()
                    .filter(|x| (x.state() == State::Reserved) == open)
                    .map(|x| x.time())
                    .min()
            };
            proptest::prop_assert_eq!(r.first_deadline(), min_of(true));
            proptest::prop_assert_eq!(r.first_done(), min_of(false));
            let mut due = 0;
            r.visit_due(time, |_| {
                due += 1;
                true
            });
            let expected = r
                .iter()
                .filter(|x| x.state() == State::Reserved && x.time() <= time)
                .count();
            proptest::prop_assert_eq!(due, expected);
        }
    }
}

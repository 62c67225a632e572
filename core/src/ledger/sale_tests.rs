//! Property tests of the flash-sale rules: random sequences of reserves
//! with and without buyers, rule changes (limit, window, new sale), partial
//! confirms, adjusts, cancels, time jumps and housekeeping, against a plain
//! model. After every step: replies and readers agree with the model
//! (records, buyers' held and bought units), nothing is oversold, INV.AUDIT
//! passes, a replica fed the same effects is identical, the encoding and
//! the AOF rewrite's effects rebuild the key exactly, the version moves
//! once per change, and a consumer that follows only the key's feed
//! entries knows its open holds and whether it is sold out.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

const START: u64 = 1_700_000_000_000;
const RETENTION: u64 = 1_000;

#[derive(Clone, Debug)]
enum Op {
    Reserve(u8, i64, u64, Option<u8>),
    Confirm(u8, Option<i64>),
    Adjust(u8, i64),
    Cancel(u8),
    /// Limit, start, end, new sale, and the feed's switch and threshold.
    Rules(
        Option<u64>,
        Option<u64>,
        Option<u64>,
        bool,
        (Option<bool>, Option<u64>),
    ),
    Add(i64),
    Advance(u64),
    Housekeep,
}

/// A window bound: cleared, or a time around the test's clock.
fn bound() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some(0)),
        2 => (0u64..3000).prop_map(|d| Some(START + d)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..8, 1i64..5, 1u64..800, prop::option::weighted(0.8, 0u8..3))
            .prop_map(|(t, q, ttl, b)| Op::Reserve(t, q, ttl, b)),
        3 => (0u8..8, prop::option::of(0i64..6)).prop_map(|(t, n)| Op::Confirm(t, n)),
        2 => (0u8..8, 1i64..7).prop_map(|(t, q)| Op::Adjust(t, q)),
        2 => (0u8..8).prop_map(Op::Cancel),
        2 => (
            prop::option::of(0u64..6),
            bound(),
            bound(),
            prop::bool::weighted(0.2),
            (prop::option::of(any::<bool>()), prop::option::of(0u64..4)),
        )
            .prop_map(|(l, s, e, n, f)| Op::Rules(l, s, e, n, f)),
        1 => (-3i64..8).prop_map(Op::Add),
        2 => (1u64..700).prop_map(Op::Advance),
        1 => Just(Op::Housekeep),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rec {
    state: State,
    /// Held units; for CONFIRMED, the units sold.
    qty: i64,
    time: u64,
    buyer: Option<u8>,
    /// First quantity of an adjusted hold; units held by a partial confirm.
    alt: i64,
}

#[derive(Default, Debug)]
struct Model {
    stock: i64,
    sold: i64,
    recs: BTreeMap<u8, Rec>,
    bought: BTreeMap<u8, i64>,
    rules: Rules,
}

impl Model {
    fn seen(&self, t: u8, now: u64) -> Option<Rec> {
        self.recs.get(&t).map(|&r| match r.state {
            State::Reserved if r.time <= now => Rec {
                state: State::Expired,
                ..r
            },
            _ => r,
        })
    }

    fn available(&self, now: u64) -> i64 {
        let held: i64 = (0..8u8)
            .filter_map(|t| self.seen(t, now))
            .filter(|r| r.state == State::Reserved)
            .map(|r| r.qty)
            .sum();
        self.stock - held
    }

    /// A buyer's held units count its holds until their expiry is recorded.
    fn held(&self, b: u8) -> i64 {
        self.recs
            .values()
            .filter(|r| r.state == State::Reserved && r.buyer == Some(b))
            .map(|r| r.qty)
            .sum()
    }

    fn total(&self, b: u8) -> i64 {
        self.held(b) + self.bought.get(&b).copied().unwrap_or(0)
    }

    fn finish(&mut self, t: u8, state: State, sold: i64) {
        if let Some(r) = self.recs.get_mut(&t) {
            let held = r.qty;
            if let (Some(b), true) = (r.buyer, sold > 0) {
                *self.bought.entry(b).or_default() += sold;
            }
            r.state = state;
            r.buyer = None;
            r.alt = if state == State::Confirmed && sold < held {
                held
            } else {
                0
            };
            if state == State::Confirmed {
                r.qty = sold;
                self.stock -= sold;
                self.sold += sold;
            }
        }
    }
}

fn tx(t: u8) -> TxId {
    TxId::new(format!("tx-{t}").as_bytes()).unwrap()
}

fn buyer(b: u8) -> BuyerId {
    BuyerId::new(format!("buyer-{b}").as_bytes()).unwrap()
}

type Snapshot = (Header, Rules, Vec<RecordParts>, Vec<(BuyerId, BuyerView)>);

fn snapshot(s: &Sku) -> Snapshot {
    let mut recs: Vec<RecordParts> = s.record_parts().collect();
    recs.sort_by(|a, b| a.txid.cmp(&b.txid));
    let buyers = (0..3)
        .map(|b| (buyer(b), s.buyer(buyer(b).as_bytes())))
        .collect();
    (s.header(), s.rules(), recs, buyers)
}

/// What a feed consumer knows from the entries alone: the open holds
/// (txid -> qty, buyer), whether the key is sold out, the last version.
#[derive(Default)]
struct FeedMirror {
    open: BTreeMap<Vec<u8>, (i64, Option<Vec<u8>>)>,
    sold_out: bool,
    version: u64,
}

thread_local! {
    static MIRROR: std::cell::RefCell<FeedMirror> = std::cell::RefCell::new(FeedMirror {
        sold_out: true,
        ..FeedMirror::default()
    });
}

/// Starts a new consumer (a new key: nothing available).
fn new_mirror() {
    MIRROR.with(|m| {
        *m.borrow_mut() = FeedMirror {
            sold_out: true,
            ..FeedMirror::default()
        }
    });
}

/// Follows one effect's entries and checks the consumer against the key.
fn follow(m: &mut FeedMirror, entries: &FeedEntries, version: u64, sku: &Sku) {
    let t = |e: &FeedEntry| {
        e.txid
            .as_ref()
            .expect("a record's entry names its txid")
            .as_bytes()
            .to_vec()
    };
    for e in entries {
        assert!(FEED_EVENTS.contains(&e.event), "{e:?}");
        for (field, _) in e.pairs(version) {
            assert!(FEED_FIELDS.contains(&field.name()), "{field:?}");
        }
        match e.event {
            "reserved" => {
                let b = e.buyer.as_ref().map(|b| b.as_bytes().to_vec());
                assert!(m.open.insert(t(e), (e.qty, b)).is_none(), "{e:?}");
            }
            "adjusted" => m.open.get_mut(&t(e)).expect("an adjusted hold is open").0 = e.qty,
            "confirmed" | "cancelled" | "expired" => {
                let (held, _) = m.open.remove(&t(e)).expect("a finished hold was open");
                assert!(e.qty <= held, "{e:?} of {held}");
            }
            "fenced" => assert!(!m.open.contains_key(&t(e))),
            "soldout" => assert!(!std::mem::replace(&mut m.sold_out, true), "{e:?}"),
            "backinstock" => assert!(std::mem::replace(&mut m.sold_out, false), "{e:?}"),
            "stock" | "rules" | "lowstock" | "extended" => {}
            other => panic!("unknown event {other}"),
        }
    }
    if !entries.is_empty() {
        // One version a change: its effects' entries share it.
        assert!(version >= m.version, "versions rise");
        m.version = version;
    }
    let open: BTreeMap<Vec<u8>, (i64, Option<Vec<u8>>)> = sku
        .record_parts()
        .filter(|r| r.state == State::Reserved)
        .map(|r| {
            (
                r.txid.as_bytes().to_vec(),
                (r.qty, r.buyer.map(|b| b.as_bytes().to_vec())),
            )
        })
        .collect();
    assert_eq!(m.open, open);
    assert_eq!(m.sold_out, sku.available_raw() <= 0);
}

fn commit(master: &mut Sku, replica: &mut Sku, effects: &[Effect]) {
    master
        .check(effects)
        .expect("a plan's effects check as a whole");
    let last = MIRROR.with(|m| m.borrow().version);
    let mut versions = Vec::new();
    for e in effects {
        let (mut entries, before) = (FeedEntries::new(), master.available_raw());
        master.feed_transitions(e, &mut entries);
        master.apply(e).expect("planned effect applies on master");
        master.feed_thresholds(before, &mut entries);
        let version = master.feed_version(e);
        if !entries.is_empty() {
            versions.push(version);
        }
        MIRROR.with(|m| follow(&mut m.borrow_mut(), &entries, version, master));
        replica
            .apply(e)
            .expect("replicated effect applies on replica");
    }
    // The entries of one change carry its version, which no earlier change
    // had.
    assert!(
        versions.iter().all(|&v| v == master.version() && v > last),
        "{versions:?}"
    );
}

/// The effects an AOF rewrite writes for a key, as the module emits them.
fn rewrite(s: &Sku) -> Vec<Effect> {
    let h = s.header();
    let mut out = vec![Effect::Load {
        stock: h.stock,
        sold: h.sold,
        version: h.version,
        rules: s.rules(),
    }];
    let recs: Vec<RecordParts> = s.record_parts().collect();
    if !recs.is_empty() {
        out.push(Effect::Records(recs));
    }
    let buyers: Vec<(BuyerId, i64)> = s.buyer_parts().collect();
    if !buyers.is_empty() {
        out.push(Effect::Buyers(buyers));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn flash_sale_rules_behave_like_the_model(ops in proptest::collection::vec(op(), 1..70)) {
        let policy = Policy { retention_ms: RETENTION, ..Policy::default() };
        let (mut sku, mut replica, mut m) = (Sku::new(), Sku::new(), Model::default());
        new_mirror();
        let mut now = START;
        let e = sku.plan_set(12, None, now).unwrap().effects;
    commit(&mut sku, &mut replica, &e);
        m.stock = 12;
        for op in ops {
            let before = snapshot(&sku);
            match op {
                Op::Reserve(t, q, ttl, b) => {
                    let id = b.map(buyer);
                    let r = sku.plan_reserve_for(&tx(t), q, Ttl::Millis(ttl), id.as_ref(), now, &policy);
                    let rules = m.rules;
                    match m.seen(t, now) {
                        Some(rec) if rec.state == State::Reserved => {
                            let first = if rec.alt != 0 { rec.alt } else { rec.qty };
                            if q != rec.qty && q != first {
                                prop_assert_eq!(r, Err(Error::TxConflict { held: rec.qty, asked: q }));
                            } else if b.is_some() && b != rec.buyer {
                                prop_assert!(matches!(r, Err(Error::Conflict(_))), "{:?}", r);
                            } else {
                                let p = r.unwrap();
                                prop_assert_eq!((p.status, p.effects.len()), (Status::Reserved, 0));
                            }
                        }
                        Some(rec) => {
                            let p = r.unwrap();
                            prop_assert_eq!((p.status, p.effects.len()), (Status::from(rec.state), 0));
                        }
                        None if rules.start != 0 && now < rules.start => {
                            prop_assert_eq!(r.unwrap().status, Status::NotYet);
                        }
                        None if rules.end != 0 && now >= rules.end => {
                            prop_assert_eq!(r.unwrap().status, Status::Closed);
                        }
                        None if b.is_none() && rules.limit != 0 => {
                            prop_assert!(matches!(r, Err(Error::Invalid(_))), "{:?}", r);
                        }
                        None if b.is_some_and(|b| m.total(b) + q > rules.limit as i64 && rules.limit != 0) => {
                            let p = r.unwrap();
                            prop_assert_eq!((p.status, p.effects.len()), (Status::Limited, 0));
                        }
                        None if m.available(now) < q => {
                            prop_assert_eq!(r.unwrap().status, Status::NoStock);
                        }
                        None => {
                            let p = r.unwrap();
                            prop_assert_eq!(p.status, Status::Reserved);
                            commit(&mut sku, &mut replica, &p.effects);
                            m.recs.insert(t, Rec { state: State::Reserved, qty: q, time: now + ttl, buyer: b, alt: 0 });
                        }
                    }
                }
                Op::Confirm(t, n) => {
                    let r = sku.plan_confirm_qty(&tx(t), n, now);
                    match m.seen(t, now) {
                        None => prop_assert_eq!(r.unwrap().status, Status::Unknown),
                        Some(rec) if rec.state == State::Reserved => match n {
                            Some(n) if n < 1 || n > rec.qty => {
                                prop_assert!(matches!(r, Err(Error::Invalid(_))), "{:?}", r);
                            }
                            _ => {
                                let p = r.unwrap();
                                prop_assert_eq!(p.status, Status::Confirmed);
                                commit(&mut sku, &mut replica, &p.effects);
                                m.finish(t, State::Confirmed, n.unwrap_or(rec.qty));
                            }
                        },
                        Some(rec) if rec.state == State::Confirmed && n.is_some_and(|n| n != rec.qty) => {
                            prop_assert!(matches!(r, Err(Error::Conflict(_))), "{:?}", r);
                        }
                        Some(rec) => {
                            let p = r.unwrap();
                            prop_assert_eq!((p.status, p.effects.len()), (Status::from(rec.state), 0));
                        }
                    }
                }
                Op::Adjust(t, q) => {
                    let r = sku.plan_adjust(&tx(t), q, now).unwrap();
                    match m.seen(t, now) {
                        None => prop_assert_eq!(r.status, Status::Unknown),
                        Some(rec) if rec.state != State::Reserved => {
                            prop_assert_eq!((r.status, r.effects.len()), (Status::from(rec.state), 0));
                        }
                        Some(rec) if q == rec.qty => prop_assert_eq!((r.status, r.effects.len()), (Status::Reserved, 0)),
                        Some(rec) if q > rec.qty && rec.buyer.is_some_and(|b| m.rules.limit != 0 && m.total(b) + q - rec.qty > m.rules.limit as i64) => {
                            prop_assert_eq!((r.status, r.effects.len()), (Status::Limited, 0));
                        }
                        Some(rec) if q - rec.qty > m.available(now) => {
                            prop_assert_eq!((r.status, r.effects.len()), (Status::NoStock, 0));
                        }
                        Some(rec) => {
                            prop_assert_eq!(r.status, Status::Reserved);
                            commit(&mut sku, &mut replica, &r.effects);
                            let first = if rec.alt != 0 { rec.alt } else { rec.qty };
                            let e = m.recs.get_mut(&t).unwrap();
                            e.qty = q;
                            e.alt = if first == q { 0 } else { first };
                        }
                    }
                }
                Op::Cancel(t) => {
                    let p = sku.plan_cancel(&tx(t), now).unwrap();
                    match m.seen(t, now) {
                        None => {
                            m.recs.insert(t, Rec { state: State::Cancelled, qty: 0, time: now, buyer: None, alt: 0 });
                        }
                        Some(rec) if rec.state == State::Reserved => m.finish(t, State::Cancelled, 0),
                        Some(_) => prop_assert!(p.effects.is_empty()),
                    }
                    commit(&mut sku, &mut replica, &p.effects);
                }
                Op::Rules(limit, start, end, new_sale, (feed, low)) => {
                    let change = RulesChange { limit, start, end, new_sale, feed, low };
                    let r = sku.plan_rules(&change);
                    let rules = Rules {
                        limit: limit.unwrap_or(m.rules.limit),
                        start: start.unwrap_or(m.rules.start),
                        end: end.unwrap_or(m.rules.end),
                        feed: feed.unwrap_or(m.rules.feed),
                        low: low.unwrap_or(m.rules.low),
                    };
                    if rules.start != 0 && rules.end != 0 && rules.end <= rules.start {
                        prop_assert!(matches!(r, Err(Error::Invalid(_))), "{:?}", r);
                    } else {
                        commit(&mut sku, &mut replica, &r.unwrap().effects);
                        m.rules = rules;
                        if new_sale {
                            m.bought.clear();
                        }
                    }
                }
                Op::Add(d) => {
                    if let Ok(p) = sku.plan_add(d, None, now) {
                        commit(&mut sku, &mut replica, &p.effects);
                        m.stock += d;
                    } else {
                        prop_assert!(m.available(now) + d < 0);
                    }
                }
                Op::Advance(ms) => now += ms,
                Op::Housekeep => {
                    let effects = sku.plan_housekeeping(now, RETENTION, usize::MAX);
                    commit(&mut sku, &mut replica, &effects);
                    m.recs.retain(|_, r| r.state == State::Reserved || r.time + RETENTION > now);
                }
            }
            // Expiries the ledger recorded (housekeeping, or a command that
            // needed the units) give the buyer's allowance back: the model
            // follows the ledger on when, never on what.
            for (t, rec) in m.recs.iter_mut() {
                let raw = sku.record_parts().find(|p| p.txid == tx(*t));
                match raw {
                    Some(p) if rec.state == State::Reserved && p.state == State::Expired => {
                        prop_assert!(rec.time <= now);
                        rec.state = State::Expired;
                        rec.buyer = None;
                        rec.alt = 0;
                    }
                    None => prop_assert!(rec.state != State::Reserved || rec.time + RETENTION <= now),
                    _ => {}
                }
            }
            m.recs.retain(|t, _| sku.tx(tx(*t).as_bytes(), now).is_some());

            let v = sku.view(now);
            prop_assert!(v.available >= 0);
            prop_assert_eq!((v.stock, v.sold, v.available), (m.stock, m.sold, m.available(now)));
            for t in 0..8u8 {
                let got = sku.tx(tx(t).as_bytes(), now).map(|x| (x.state, x.qty, x.sold, x.time, x.buyer));
                let want = m.seen(t, now).map(|r| match r.state {
                    State::Confirmed => (r.state, if r.alt != 0 { r.alt } else { r.qty }, r.qty, r.time, None),
                    State::Reserved => (r.state, r.qty, 0, r.time, r.buyer.map(buyer)),
                    _ => (r.state, r.qty, 0, r.time, None),
                });
                prop_assert_eq!(got, want);
            }
            for b in 0..3u8 {
                let got = sku.buyer(buyer(b).as_bytes());
                prop_assert_eq!((got.held, got.bought), (m.held(b), m.bought.get(&b).copied().unwrap_or(0)));
            }
            prop_assert_eq!(sku.rules(), m.rules);
            prop_assert!(sku.audit().is_ok(), "{:?}", sku.audit());
            let after = snapshot(&sku);
            let changed = (&after.1, &after.2, &after.3, after.0.stock, after.0.sold)
                != (&before.1, &before.2, &before.3, before.0.stock, before.0.sold);
            prop_assert_eq!(after.0.version, before.0.version + u64::from(changed));
            prop_assert_eq!(snapshot(&replica), after.clone());
            let mut bufs = Vec::new();
            encode(&sku, |b| bufs.push(b.to_vec()));
            let mut all = bufs.into_iter();
            let loaded = decode(ENCODING_VERSION, || all.next().ok_or(Error::invalid("short"))).unwrap();
            prop_assert_eq!(snapshot(&loaded), after.clone());
            let mut rebuilt = Sku::new();
            for e in rewrite(&sku) {
                let args = e.to_args();
                let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                rebuilt.apply(&Effect::parse(&refs).unwrap()).unwrap();
            }
            prop_assert_eq!(snapshot(&rebuilt), after);
        }
    }
}

#[test]
fn version_1_payloads_still_load() {
    // A key as the version 1 encoding wrote it: header, one record chunk.
    #[derive(bincode::Encode)]
    struct H(i64, i64, u64, u64);
    #[derive(bincode::Encode)]
    struct R(Vec<u8>, u8, i64, u64);
    let cfg = bincode::config::standard();
    let bufs = [
        bincode::encode_to_vec(H(10, 2, 7, 1), cfg).unwrap(),
        bincode::encode_to_vec(vec![R(b"a".to_vec(), 0, 3, START)], cfg).unwrap(),
    ];
    let mut it = bufs.into_iter();
    let sku = decode(1, || it.next().ok_or(Error::invalid("short"))).unwrap();
    let v = sku.view(START - 1);
    assert_eq!((v.stock, v.sold, v.reserved, v.version), (10, 2, 3, 7));
    assert_eq!(sku.rules(), Rules::default());
    sku.audit().unwrap();
}

#[test]
fn version_2_payloads_still_load() {
    // A key as the version 2 encoding wrote it (the rules of issue 29, no
    // feed): header, one record chunk with a buyer, one buyer chunk.
    #[derive(bincode::Encode)]
    struct H(i64, i64, u64, u64, u64, u64, u64, u64);
    #[derive(bincode::Encode)]
    struct R(Vec<u8>, u8, i64, u64, Vec<u8>, i64);
    #[derive(bincode::Encode)]
    struct B(Vec<u8>, i64);
    let cfg = bincode::config::standard();
    let bufs = [
        bincode::encode_to_vec(H(10, 2, 7, 1, 3, 0, 0, 1), cfg).unwrap(),
        bincode::encode_to_vec(vec![R(b"a".to_vec(), 0, 3, START, b"al".to_vec(), 0)], cfg)
            .unwrap(),
        bincode::encode_to_vec(vec![B(b"al".to_vec(), 2)], cfg).unwrap(),
    ];
    let mut it = bufs.into_iter();
    let sku = decode(2, || it.next().ok_or(Error::invalid("short"))).unwrap();
    let v = sku.view(START - 1);
    assert_eq!((v.stock, v.sold, v.reserved, v.version), (10, 2, 3, 7));
    assert_eq!(
        sku.rules(),
        Rules {
            limit: 3,
            ..Rules::default()
        }
    );
    assert_eq!(sku.buyer(b"al"), BuyerView { held: 3, bought: 2 });
    sku.audit().unwrap();
    // Written again, it is version 3, and reads back the same.
    let mut bufs = Vec::new();
    encode(&sku, |b| bufs.push(b.to_vec()));
    let mut it = bufs.into_iter();
    let again = decode(3, || it.next().ok_or(Error::invalid("short"))).unwrap();
    assert_eq!(again.rules(), sku.rules());
    assert_eq!(again.buyer(b"al"), sku.buyer(b"al"));
}

#[test]
fn lowering_a_limit_takes_nothing_from_held_units() {
    let policy = Policy::default();
    let mut s = Sku::new();
    let mut r = Sku::new();
    let e = s.plan_set(10, None, START).unwrap().effects;
    commit(&mut s, &mut r, &e);
    let limit = |n| RulesChange {
        limit: Some(n),
        ..RulesChange::default()
    };
    let e = s.plan_rules(&limit(3)).unwrap().effects;
    commit(&mut s, &mut r, &e);
    let p = s
        .plan_reserve_for(&tx(1), 3, Ttl::Default, Some(&buyer(0)), START, &policy)
        .unwrap();
    commit(&mut s, &mut r, &p.effects);
    let e = s.plan_rules(&limit(1)).unwrap().effects;
    commit(&mut s, &mut r, &e);
    assert_eq!(
        s.tx(tx(1).as_bytes(), START).unwrap().state,
        State::Reserved
    );
    assert_eq!(s.buyer(buyer(0).as_bytes()).held, 3);
    let p = s
        .plan_reserve_for(&tx(2), 1, Ttl::Default, Some(&buyer(0)), START, &policy)
        .unwrap();
    assert_eq!(p.status, Status::Limited);
    // Confirming still works, and counts as bought for the key's life.
    let e = s.plan_confirm_qty(&tx(1), Some(2), START).unwrap().effects;
    commit(&mut s, &mut r, &e);
    assert_eq!(
        s.buyer(buyer(0).as_bytes()),
        BuyerView { held: 0, bought: 2 }
    );
    assert_eq!(s.view(START).available, 8);
}

#[test]
fn compaction_moves_each_hold_with_its_buyer() {
    let policy = Policy::default();
    let mut s = Sku::new();
    let mut r = Sku::new();
    let e = s.plan_set(100_000, None, START).unwrap().effects;
    commit(&mut s, &mut r, &e);
    // 5,000 holds of 50 buyers; the first 4,900 cancelled and purged, so
    // compaction moves the last 100 (held by buyers) into the holes.
    for i in 0..5000u32 {
        let txid = TxId::new(format!("order-{i:010}").as_bytes()).unwrap();
        let b = buyer((i % 50) as u8);
        let ttl = Ttl::Millis(if i < 4900 { 10 } else { 600_000 });
        let p = s
            .plan_reserve_for(&txid, 1, ttl, Some(&b), START, &policy)
            .unwrap();
        commit(&mut s, &mut r, &p.effects);
    }
    for i in 0..4900u32 {
        let txid = TxId::new(format!("order-{i:010}").as_bytes()).unwrap();
        let e = s.plan_cancel(&txid, START).unwrap().effects;
        commit(&mut s, &mut r, &e);
    }
    let later = START + 10 + RETENTION + 1;
    let e = s.plan_housekeeping(later, RETENTION, usize::MAX);
    commit(&mut s, &mut r, &e);
    assert!(s.pending().busy, "compaction is due");
    while s.maintain(7) {
        s.audit().unwrap();
    }
    s.audit().unwrap();
    assert_eq!(s.records_len(), 100);
    for b in 0..50u8 {
        assert_eq!(s.buyer(buyer(b).as_bytes()).held, 2, "buyer {b}");
    }
    // Every hold still ends against its own buyer.
    for i in 4900..5000u32 {
        let txid = TxId::new(format!("order-{i:010}").as_bytes()).unwrap();
        assert_eq!(
            s.tx(txid.as_bytes(), later).unwrap().buyer,
            Some(buyer((i % 50) as u8))
        );
        let e = s.plan_confirm_qty(&txid, None, later).unwrap().effects;
        commit(&mut s, &mut r, &e);
    }
    for b in 0..50u8 {
        assert_eq!(
            s.buyer(buyer(b).as_bytes()),
            BuyerView { held: 0, bought: 2 }
        );
    }
    s.audit().unwrap();
    assert_eq!(snapshot(&s), snapshot(&r));
}

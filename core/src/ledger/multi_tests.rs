//! Property tests of the multi-key commands: random sequences of
//! INV.MRESERVE, INV.MCONFIRM and INV.MCANCEL over three keys, mixed with
//! single-key changes, time jumps and housekeeping, checked against a plain
//! model. A multi-key command changes every key or none, and its answer is
//! the model's; every key stays consistent and matches a replica fed the
//! same effects.

use super::*;
use proptest::prelude::*;

const START: u64 = 1_700_000_000_000;
const KEYS: usize = 3;
const RETENTION: u64 = 1_000;

#[derive(Clone, Debug)]
enum Op {
    /// Restock key k to n units.
    Set(usize, i64),
    /// A single-key reserve, to make txids collide with multi-key ones.
    Reserve(usize, u8, i64, u64),
    /// INV.MRESERVE txid ttl [(key, qty)...] (distinct keys).
    MReserve(u8, u64, Vec<(usize, i64)>),
    MConfirm(u8, Vec<usize>),
    MCancel(u8, Vec<usize>),
    Advance(u64),
    Housekeep,
}

fn keys() -> impl Strategy<Value = Vec<usize>> {
    proptest::sample::subsequence((0..KEYS).collect::<Vec<_>>(), 1..=KEYS).prop_shuffle()
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..KEYS, 0i64..12).prop_map(|(k, n)| Op::Set(k, n)),
        1 => (0..KEYS, 0u8..5, 1i64..4, 1u64..400).prop_map(|(k, t, q, ttl)| Op::Reserve(k, t, q, ttl)),
        3 => (0u8..5, 1u64..400, keys(), proptest::collection::vec(1i64..5, KEYS))
            .prop_map(|(t, ttl, ks, qs)| Op::MReserve(t, ttl, ks.into_iter().zip(qs).collect())),
        2 => (0u8..5, keys()).prop_map(|(t, ks)| Op::MConfirm(t, ks)),
        2 => (0u8..5, keys()).prop_map(|(t, ks)| Op::MCancel(t, ks)),
        1 => (1u64..500).prop_map(Op::Advance),
        1 => Just(Op::Housekeep),
    ]
}

/// One key of the model: the single-key model test's.
type Key = super::model_tests::Model;

fn tx(t: u8) -> TxId {
    TxId::new(format!("order-{t}").as_bytes()).unwrap()
}

/// What a reserve of `q` for `t` answers on a model key, and whether it
/// adds a record; Err for a TXCONFLICT.
fn model_reserve(k: &Key, t: u8, q: i64, now: u64) -> std::result::Result<(Status, bool), ()> {
    match k.state(t, now) {
        Some((State::Reserved, held, _)) if held != q => Err(()),
        Some((s, _, _)) => Ok((s.into(), false)),
        None if k.available(now) < q => Ok((Status::NoStock, false)),
        None => Ok((Status::Reserved, true)),
    }
}

/// Applies a multi-key plan as the module does: every key checked first,
/// then every key's effects applied, on the master and on a replica.
fn commit(skus: &mut [Sku], replicas: &mut [Sku], ks: &[usize], plan: &MultiPlan) -> bool {
    let refs: Vec<&Sku> = ks.iter().map(|&k| &skus[k]).collect();
    let changes = plan
        .check(&refs)
        .expect("a plan's effects check on every key");
    if changes {
        for (&k, p) in ks.iter().zip(&plan.plans) {
            for e in &p.effects {
                skus[k].apply(e).expect("planned effect applies");
                replicas[k].apply(e).expect("replicated effect applies");
            }
        }
    }
    changes
}

fn snapshot(s: &Sku) -> (Header, Vec<RecordParts>) {
    let mut recs: Vec<RecordParts> = s.record_parts().collect();
    recs.sort_by(|a, b| a.txid.cmp(&b.txid));
    (s.header(), recs)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn multi_key_commands_change_every_key_or_none(ops in proptest::collection::vec(op(), 1..60)) {
        let policy = Policy { retention_ms: RETENTION, ..Policy::default() };
        let mut skus: Vec<Sku> = (0..KEYS).map(|_| Sku::new()).collect();
        let mut replicas: Vec<Sku> = (0..KEYS).map(|_| Sku::new()).collect();
        let mut m: Vec<Key> = vec![Key::default(); KEYS];
        let mut now = START;
        for k in 0..KEYS {
            let p = skus[k].plan_set(6, None, now).unwrap();
            let plan = MultiPlan { overall: p.status, plans: vec![p], blocked: None };
            commit(&mut skus, &mut replicas, &[k], &plan);
            m[k].stock = 6;
        }
        for op in ops {
            let versions: Vec<u64> = skus.iter().map(Sku::version).collect();
            match op {
                Op::Set(k, n) => {
                    if let Ok(p) = skus[k].plan_set(n, None, now) {
                        let plan = MultiPlan { overall: p.status, plans: vec![p], blocked: None };
                        commit(&mut skus, &mut replicas, &[k], &plan);
                        m[k].stock = n;
                    } else {
                        prop_assert!(n < m[k].stock - m[k].available(now), "a restock refused");
                    }
                }
                Op::Reserve(k, t, q, ttl) => {
                    let r = skus[k].plan_reserve(&tx(t), q, Ttl::Millis(ttl), now, &policy);
                    match model_reserve(&m[k], t, q, now) {
                        Err(()) => prop_assert!(matches!(r, Err(Error::TxConflict { .. })), "{:?}", r),
                        Ok((status, adds)) => {
                            let p = r.unwrap();
                            prop_assert_eq!(p.status, status);
                            let plan = MultiPlan { overall: p.status, plans: vec![p], blocked: None };
                            commit(&mut skus, &mut replicas, &[k], &plan);
                            if adds {
                                m[k].recs.insert(t, (State::Reserved, q, now + ttl));
                            }
                        }
                    }
                }
                Op::MReserve(t, ttl, items) => {
                    let ks: Vec<usize> = items.iter().map(|&(k, _)| k).collect();
                    let qtys: Vec<i64> = items.iter().map(|&(_, q)| q).collect();
                    let refs: Vec<&Sku> = ks.iter().map(|&k| &skus[k]).collect();
                    let r = MultiPlan::reserve(&refs, &tx(t), &qtys, Ttl::Millis(ttl), None, now, &policy);
                    let want: std::result::Result<Vec<(Status, bool)>, ()> = items
                        .iter()
                        .map(|&(k, q)| model_reserve(&m[k], t, q, now))
                        .collect();
                    match want {
                        Err(()) => prop_assert!(matches!(r, Err(Error::TxConflict { .. })), "{:?}", r),
                        Ok(want) => {
                            let plan = r.unwrap();
                            let blocked = want.iter().position(|w| w.0 != Status::Reserved);
                            prop_assert_eq!(plan.blocked, blocked);
                            prop_assert_eq!(plan.overall, blocked.map_or(Status::Reserved, |i| want[i].0));
                            let statuses: Vec<Status> = plan.plans.iter().map(|p| p.status).collect();
                            prop_assert_eq!(statuses, want.iter().map(|w| w.0).collect::<Vec<_>>());
                            let changed = commit(&mut skus, &mut replicas, &ks, &plan);
                            prop_assert_eq!(changed, blocked.is_none());
                            if blocked.is_none() {
                                for (&(k, q), &(_, adds)) in items.iter().zip(&want) {
                                    if adds {
                                        m[k].recs.insert(t, (State::Reserved, q, now + ttl));
                                    }
                                }
                            }
                        }
                    }
                }
                Op::MConfirm(t, ks) => {
                    let refs: Vec<&Sku> = ks.iter().map(|&k| &skus[k]).collect();
                    let plan = MultiPlan::confirm(&refs, &tx(t), &[], now).unwrap();
                    let want: Vec<Status> = ks
                        .iter()
                        .map(|&k| m[k].state(t, now).map_or(Status::Unknown, |(s, _, _)| match s {
                            State::Reserved => Status::Confirmed,
                            s => s.into(),
                        }))
                        .collect();
                    let blocked = want.iter().position(|&s| s != Status::Confirmed);
                    prop_assert_eq!(plan.blocked, blocked);
                    prop_assert_eq!(plan.overall, blocked.map_or(Status::Confirmed, |i| want[i]));
                    let changed = commit(&mut skus, &mut replicas, &ks, &plan);
                    prop_assert_eq!(changed, blocked.is_none());
                    if blocked.is_none() {
                        for &k in &ks {
                            if let Some((State::Reserved, q, d)) = m[k].state(t, now) {
                                m[k].recs.insert(t, (State::Confirmed, q, d));
                                m[k].stock -= q;
                                m[k].sold += q;
                            }
                        }
                    }
                }
                Op::MCancel(t, ks) => {
                    let refs: Vec<&Sku> = ks.iter().map(|&k| &skus[k]).collect();
                    let plan = MultiPlan::cancel(&refs, &tx(t), now).unwrap();
                    let any_confirmed = ks
                        .iter()
                        .any(|&k| matches!(m[k].state(t, now), Some((State::Confirmed, _, _))));
                    prop_assert_eq!(
                        plan.overall,
                        if any_confirmed { Status::Confirmed } else { Status::Cancelled }
                    );
                    prop_assert!(commit(&mut skus, &mut replicas, &ks, &plan));
                    for &k in &ks {
                        match m[k].state(t, now) {
                            None => {
                                m[k].recs.insert(t, (State::Cancelled, 0, now));
                            }
                            Some((State::Reserved, q, d)) => {
                                m[k].recs.insert(t, (State::Cancelled, q, d));
                            }
                            Some(_) => {}
                        }
                    }
                }
                Op::Advance(ms) => now += ms,
                Op::Housekeep => {
                    for k in 0..KEYS {
                        let effects = skus[k].plan_housekeeping(now, RETENTION, usize::MAX);
                        let p = Plan { status: Status::Reserved, event: Event::Other, effects: effects.into() };
                        let plan = MultiPlan { overall: p.status, plans: vec![p], blocked: None };
                        commit(&mut skus, &mut replicas, &[k], &plan);
                        // The model keeps what the ledger still holds (a
                        // purge is checked by the single-key model test).
                        let held: Vec<u8> = m[k].recs.keys().copied().collect();
                        for t in held {
                            match skus[k].tx(tx(t).as_bytes(), now) {
                                None => {
                                    m[k].recs.remove(&t);
                                }
                                Some(v) => {
                                    let (_, q, d) = m[k].recs[&t];
                                    m[k].recs.insert(t, (v.state, q, d));
                                }
                            }
                        }
                    }
                }
            }
            for k in 0..KEYS {
                let v = skus[k].view(now);
                prop_assert!(v.available >= 0, "key {} oversold: {:?}", k, v);
                prop_assert_eq!((v.stock, v.sold, v.available), (m[k].stock, m[k].sold, m[k].available(now)), "key {}", k);
                for t in 0..5u8 {
                    let got = skus[k].tx(tx(t).as_bytes(), now).map(|x| (x.state, x.qty, x.time));
                    prop_assert_eq!(got, m[k].state(t, now), "key {} txid {}", k, t);
                }
                prop_assert!(skus[k].audit().is_ok(), "{:?}", skus[k].audit());
                prop_assert_eq!(snapshot(&replicas[k]), snapshot(&skus[k]));
                // A key's version moves by at most one per command.
                prop_assert!(skus[k].version() <= versions[k] + 1);
            }
        }
    }
}

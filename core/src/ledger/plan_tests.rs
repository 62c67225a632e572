//! Unit tests of planning: the reserve, confirm, cancel cycle, fences,
//! due records, bounds.
use super::*;
use crate::ledger::effect::RecordParts;

const NOW: u64 = 1_000_000;

fn id(s: &str) -> TxId {
    TxId::new(s.as_bytes()).unwrap()
}

fn run(sku: &mut Sku, plan: impl FnOnce(&Sku) -> Result<Plan>) -> Status {
    let plan = plan(sku).unwrap();
    for e in &plan.effects {
        sku.apply(e).unwrap();
    }
    plan.status
}

fn stocked(n: i64) -> Sku {
    let mut s = Sku::new();
    run(&mut s, |s| s.plan_set(n, None, NOW));
    s
}

#[test]
fn reserve_confirm_cancel_cycle() {
    let p = Policy::default();
    let mut s = stocked(10);
    assert_eq!(s.version(), 1);
    assert_eq!(
        run(&mut s, |s| s.plan_reserve(
            &id("a"),
            4,
            Ttl::Default,
            NOW,
            &p
        )),
        Status::Reserved
    );
    assert_eq!(s.view(NOW).available, 6);
    assert_eq!(s.version(), 2);
    // Retry: same answer, nothing changes.
    let replay = s.plan_reserve(&id("a"), 4, Ttl::Default, NOW, &p).unwrap();
    assert_eq!(
        (replay.status, replay.event, replay.effects.len()),
        (Status::Reserved, Event::Replay, 0)
    );
    assert_eq!(
        s.plan_reserve(&id("a"), 5, Ttl::Default, NOW, &p),
        Err(Error::TxConflict { held: 4, asked: 5 })
    );
    assert_eq!(
        run(&mut s, |s| Ok(s.plan_confirm(&id("a"), NOW))),
        Status::Confirmed
    );
    let v = s.view(NOW);
    assert_eq!(
        (v.stock, v.reserved, v.available, v.sold, v.version),
        (6, 0, 6, 4, 3)
    );
    assert_eq!(
        s.plan_cancel(&id("a"), NOW).unwrap().status,
        Status::Confirmed
    );
    assert_eq!(
        s.plan_reserve(&id("a"), 4, Ttl::Default, NOW, &p)
            .unwrap()
            .status,
        Status::Confirmed
    );
}

#[test]
fn cancel_before_reserve_fences() {
    let p = Policy::default();
    let mut s = stocked(10);
    assert_eq!(
        run(&mut s, |s| s.plan_cancel(&id("late"), NOW)),
        Status::Cancelled
    );
    let plan = s
        .plan_reserve(&id("late"), 1, Ttl::Default, NOW, &p)
        .unwrap();
    assert_eq!(
        (plan.status, plan.event, plan.effects.len()),
        (Status::Cancelled, Event::Fenced, 0)
    );
    assert_eq!(s.view(NOW).available, 10);
}

#[test]
fn due_records_count_as_expired_before_materialising() {
    let p = Policy::default();
    let mut s = stocked(5);
    run(&mut s, |s| {
        s.plan_reserve(&id("a"), 5, Ttl::Millis(100), NOW, &p)
    });
    let later = NOW + 100;
    let v = s.view(later);
    assert_eq!((v.available, v.reserved, v.open), (5, 0, 0));
    assert_eq!(s.tx(b"a", later).unwrap().state, State::Expired);
    assert_eq!(s.plan_confirm(&id("a"), later).status, Status::Expired);
    // A reserve that needs the units materialises the expiry first.
    let plan = s
        .plan_reserve(&id("b"), 5, Ttl::Default, later, &p)
        .unwrap();
    assert_eq!(plan.effects[0], Effect::ExpireFirst(vec![id("a")]));
    run(&mut s, |_| Ok(plan));
    s.audit().unwrap();
    assert_eq!(s.tx(b"a", later).unwrap().state, State::Expired);
}

#[test]
fn apply_validates_before_changing() {
    let mut s = stocked(1);
    let before = s.header();
    assert!(s
        .apply(&Effect::Reserve {
            txid: id("x"),
            qty: 2,
            deadline: 1,
            buyer: None,
        })
        .is_err());
    assert!(s.apply(&Effect::Expire(vec![id("nope")])).is_err());
    assert!(s.apply(&Effect::Stock(-1)).is_err());
    assert_eq!(s.header(), before);
}

#[test]
fn a_bad_records_batch_changes_nothing() {
    let mut s = stocked(5);
    let part = |t: &str, state, qty| RecordParts {
        txid: id(t),
        state,
        qty,
        time: 1,
        buyer: None,
        alt: 0,
    };
    let good = vec![
        part("a", State::Reserved, 2),
        part("b", State::Confirmed, 1),
    ];
    s.apply(&Effect::Records(good)).unwrap();
    let before = s.header();
    for bad in [
        vec![
            part("c", State::Reserved, 1),
            part("c", State::Cancelled, 0),
        ],
        vec![part("d", State::Reserved, 1), part("a", State::Expired, 1)],
        vec![part("e", State::Reserved, 3), part("f", State::Reserved, 1)],
        vec![part("g", State::Reserved, 0)],
    ] {
        assert!(s.apply(&Effect::Records(bad)).is_err());
        assert_eq!((s.header(), s.reserved_raw()), (before, 2));
    }
    s.audit().unwrap();
}

#[test]
fn ttl_bounds() {
    let p = Policy {
        max_ttl_ms: 1000,
        ..Policy::default()
    };
    assert!(p.deadline(Ttl::Millis(0), NOW).is_err());
    assert!(p.deadline(Ttl::Millis(1001), NOW).is_err());
    assert_eq!(p.deadline(Ttl::At(NOW + 1000), NOW), Ok(NOW + 1000));
    assert!(p.deadline(Ttl::At(NOW), NOW).is_err());
    assert_eq!(p.deadline(Ttl::Default, NOW), Ok(NOW + 1000));
}

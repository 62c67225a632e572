//! Property test of the waiting room: random arrivals (waiting reserves,
//! polling reserves), cancels, restocks, time and housekeeping, with the
//! queue served after every change the way the module serves it. Checked
//! after every step against a plain model (a list in arrival order): every
//! grant goes to the earliest waiter, and only when its units are there; a
//! served queue's head never fits (nothing left servable); a polling
//! reserve never takes units while anyone waits; a buyer's waiting units
//! count against the limit; nothing is oversold, the key audits, and a
//! replica that applied the same effects is identical.

use super::model_tests::commit;
use super::*;
use proptest::prelude::*;
use std::collections::VecDeque;

const START: u64 = 1_700_000_000_000;

#[derive(Clone, Debug)]
enum Op {
    /// A reserve with BLOCK: txid, qty, TTL, buyer (one of two).
    Wait(u8, i64, u64, bool),
    /// A reserve without BLOCK.
    Poll(u8, i64),
    Cancel(u8),
    Add(i64),
    Advance(u64),
    Housekeep,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..24, 1i64..4, 1u64..400, any::<bool>()).prop_map(|(t, q, ttl, b)| Op::Wait(t, q, ttl, b)),
        1 => (0u8..24, 1i64..4).prop_map(|(t, q)| Op::Poll(t, q)),
        2 => (0u8..24).prop_map(Op::Cancel),
        1 => (0i64..5).prop_map(Op::Add),
        1 => (1u64..300).prop_map(Op::Advance),
        1 => Just(Op::Housekeep),
    ]
}

fn tx(t: u8) -> TxId {
    TxId::new(format!("w-{t}").as_bytes()).unwrap()
}

fn buyer(b: bool) -> BuyerId {
    BuyerId::new(if b { b"alice" } else { b"bob" }).unwrap()
}

/// Serves the queue as the module does; returns the txids granted, in
/// order. Checks each decision against the model queue.
fn serve(
    sku: &mut Sku,
    replica: &mut Sku,
    q: &mut WaitQueue<u8>,
    model: &mut VecDeque<(u8, i64)>,
    now: u64,
    policy: &Policy,
) -> std::result::Result<Vec<u8>, TestCaseError> {
    let mut granted = Vec::new();
    while let Some(grant) = sku.plan_grant(q, now, policy) {
        let &(t, qty) = model.front().expect("the model has the same waiters");
        prop_assert_eq!(
            q.front().map(|w| w.handle),
            Some(t),
            "served in arrival order"
        );
        let fits = sku.view(now).available >= qty;
        match grant {
            Grant::Wait => {
                prop_assert!(!fits, "the head's {} units were there", qty);
                break;
            }
            Grant::Done(Ok(plan)) => {
                prop_assert!(fits, "granted without its units");
                prop_assert_eq!(plan.status, Status::Reserved);
                commit(sku, replica, &plan);
                q.pop_front();
                model.pop_front();
                granted.push(t);
            }
            Grant::Done(Err(e)) => return Err(TestCaseError::fail(format!("grant failed: {e}"))),
        }
    }
    Ok(granted)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn waiters_are_served_in_arrival_order(ops in proptest::collection::vec(op(), 1..80)) {
        let policy = Policy { retention_ms: 1_000, ..Policy::default() };
        let (mut sku, mut replica) = (Sku::new(), Sku::new());
        let p = sku.plan_set(2, None, START).unwrap();
        commit(&mut sku, &mut replica, &p);
        let p = sku.plan_rules(&RulesChange { limit: Some(4), ..Default::default() }).unwrap();
        commit(&mut sku, &mut replica, &p);
        let mut q: WaitQueue<u8> = WaitQueue::default();
        let mut model: VecDeque<(u8, i64)> = VecDeque::new();
        let mut now = START;
        for op in ops {
            match op {
                Op::Wait(t, qty, ttl, b) if !q.contains(&tx(t)) => {
                    let who = buyer(b);
                    let ahead = q.ahead(Some(&who));
                    let plan = match sku.plan_reserve_behind(&tx(t), qty, Ttl::Millis(ttl), Some(&who), ahead, now, &policy) {
                        Err(Error::TxConflict { .. } | Error::Conflict(_)) => Plan::new(Status::Unknown, Event::Other),
                        other => other.unwrap(),
                    };
                    let bv = sku.buyer(who.as_bytes());
                    let over = bv.held + bv.bought + ahead.buyer_waiting + qty > 4;
                    if plan.status == Status::NoStock {
                        prop_assert!(ahead.queued || sku.view(now).available < qty);
                        q.push(Waiter::new(t, tx(t), qty, Ttl::Millis(ttl), Some(who)), 0).unwrap();
                        model.push_back((t, qty));
                    } else if plan.status == Status::Reserved && !plan.effects.is_empty() {
                        prop_assert!(!ahead.queued, "a reserve overtook the queue");
                        prop_assert!(!over, "the limit ignored waiting units");
                        commit(&mut sku, &mut replica, &plan);
                    } else if plan.status == Status::Limited {
                        prop_assert!(over);
                    }
                }
                Op::Wait(..) => {}
                Op::Poll(t, qty) if !q.contains(&tx(t)) => {
                    let who = buyer(t % 2 == 0);
                    let ahead = q.ahead(Some(&who));
                    let plan = match sku.plan_reserve_behind(&tx(t), qty, Ttl::Millis(200), Some(&who), ahead, now, &policy) {
                        Err(Error::TxConflict { .. } | Error::Conflict(_)) => Plan::new(Status::Unknown, Event::Other),
                        other => other.unwrap(),
                    };
                    // A retry of a known txid answers its state; a new
                    // reservation (effects) must not pass anyone waiting.
                    if plan.status == Status::Reserved && !plan.effects.is_empty() {
                        prop_assert!(!ahead.queued, "a polling reserve overtook the queue");
                    }
                    commit(&mut sku, &mut replica, &plan);
                }
                Op::Poll(..) => {}
                Op::Cancel(t) => {
                    let plan = sku.plan_cancel(&tx(t), now).unwrap();
                    commit(&mut sku, &mut replica, &plan);
                    if q.remove(&tx(t)).is_some() {
                        model.retain(|w| w.0 != t);
                    }
                }
                Op::Add(n) => {
                    let plan = sku.plan_add(n, None, now).unwrap();
                    commit(&mut sku, &mut replica, &plan);
                }
                Op::Advance(ms) => now += ms,
                Op::Housekeep => {
                    let effects = sku.plan_housekeeping(now, 1_000, usize::MAX);
                    let plan = Plan::new(Status::Reserved, Event::Other).with(effects.into_iter().collect());
                    commit(&mut sku, &mut replica, &plan);
                }
            }
            serve(&mut sku, &mut replica, &mut q, &mut model, now, &policy)?;
            // Served: nothing left that fits, and nobody polls ahead.
            if let Some(&(_, qty)) = model.front() {
                prop_assert!(sku.view(now).available < qty);
            }
            prop_assert_eq!(q.len(), model.len());
            prop_assert!(sku.view(now).available >= 0);
            prop_assert_eq!(sku.audit(), Ok(()));
            prop_assert_eq!(sku.header(), replica.header());
        }
    }
}

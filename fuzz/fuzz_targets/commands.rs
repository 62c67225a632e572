//! Any argument vector, for every command: the parser answers (never a
//! panic), and a write that parses is planned and applied to a key holding
//! records in every state (a multi-key command to one such key per key it
//! names), which must still pass its audit. A plan whose effects fail their
//! own check is a bug, as in the model tests. A multi-key command changes
//! every key or none. INV.APPLY's effects (what an AOF or a master can send)
//! are applied as they come. Every applied effect's feed entries (the
//! change feed) are derived too, as the module does.
//! Input: byte 0 picks the command (its high bit: a key with sale rules);
//! the rest, split on 0xFF, are its arguments after the command name.
#![no_main]

use inventory_core::ledger::{
    stream_name, BuyerId, Effect, FeedEntries, Grant, FEED_EVENTS, FEED_FIELDS, MultiPlan, Plan, Policy, Result, RulesChange, Sku, Status,
    Ttl, TxId, WaitQueue, Waiter,
};
use inventory_core::parse;
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_800_000_000_000;

/// A key with stock, an open reservation, a confirmed, a cancelled and a
/// fenced record, buyers' holds (one adjusted), a partial confirm, and
/// with `rules`, a limit per buyer and a sale window around the fuzz clock.
fn seeded(rules: bool) -> Sku {
    let mut sku = Sku::new();
    let p = Policy::default();
    let tx = |t: &str| TxId::new(t.as_bytes()).expect("txid");
    let buyer = |b: &str| BuyerId::new(b.as_bytes()).expect("buyer");
    let plan = sku.plan_set(100, None, NOW);
    seed(&mut sku, plan);
    for (t, q) in [("open", 2), ("paid", 3), ("gone", 4)] {
        let plan = sku.plan_reserve(&tx(t), q, Ttl::Millis(60_000), NOW, &p);
        seed(&mut sku, plan);
    }
    for (t, q, b) in [("b1", 2, "alice"), ("b2", 3, "bob"), ("b3", 4, "alice")] {
        let plan = sku.plan_reserve_for(&tx(t), q, Ttl::Millis(60_000), Some(&buyer(b)), NOW, &p);
        seed(&mut sku, plan);
    }
    let plan = sku.plan_adjust(&tx("b1"), 1, NOW);
    seed(&mut sku, plan);
    let plan = sku.plan_confirm_qty(&tx("b2"), Some(1), NOW);
    seed(&mut sku, plan);
    let rules_change = RulesChange {
        limit: Some(8),
        start: Some(NOW - 1),
        end: Some(NOW + 10_000),
        new_sale: false,
        feed: Some(true),
        low: Some(95),
    };
    if rules {
        let plan = sku.plan_rules(&rules_change);
        seed(&mut sku, plan);
    }
    let plan = Ok(sku.plan_confirm(&tx("paid"), NOW));
    seed(&mut sku, plan);
    let plan = sku.plan_cancel(&tx("gone"), NOW);
    seed(&mut sku, plan);
    let plan = sku.plan_cancel(&tx("fence"), NOW);
    seed(&mut sku, plan);
    sku
}

/// Applies one effect as the module does on a master, with its feed
/// entries derived (transitions before, crossings after) and laid out.
fn apply_fed(sku: &mut Sku, e: &Effect) -> Result<()> {
    let (mut entries, before) = (FeedEntries::new(), sku.available_raw());
    sku.feed_transitions(e, &mut entries);
    sku.apply(e)?;
    sku.feed_thresholds(before, &mut entries);
    let version = sku.feed_version(e);
    for entry in &entries {
        let pairs = entry.pairs(version);
        assert!(pairs
            .iter()
            .all(|(field, _)| FEED_FIELDS.contains(&field.name())));
        assert!(FEED_EVENTS.contains(&entry.event));
    }
    Ok(())
}

fn seed(sku: &mut Sku, plan: Result<Plan>) {
    for e in plan.expect("seed plan").effects.iter() {
        sku.apply(e).expect("seed effect");
    }
}

fn commit(sku: &mut Sku, plan: Result<Plan>) {
    let Ok(plan) = plan else { return };
    sku.check(&plan.effects)
        .expect("a plan's effects pass their own check");
    for e in plan.effects.iter() {
        apply_fed(sku, e).expect("a checked plan applies");
    }
    sku.audit()
        .expect("a committed plan leaves the key consistent");
}

/// At most this many keys of a multi-key command are planned (each a
/// seeded key); more are only parsed.
const MULTI_KEYS: usize = 6;

/// Plans a multi-key command over one seeded key per key it names, then
/// commits it as the module does: every key checked, then every key
/// changed, or none when the command is blocked.
fn commit_multi(keys: usize, rules: bool, plan: impl FnOnce(&[&Sku]) -> Result<MultiPlan>) {
    if keys > MULTI_KEYS {
        return;
    }
    let mut skus: Vec<Sku> = (0..keys).map(|_| seeded(rules)).collect();
    let before: Vec<u64> = skus.iter().map(Sku::version).collect();
    let refs: Vec<&Sku> = skus.iter().collect();
    let Ok(plan) = plan(&refs) else { return };
    let changes = plan
        .check(&refs)
        .expect("a multi-key plan's effects pass their own check");
    assert_eq!(changes, plan.blocked.is_none());
    if changes {
        for (sku, p) in skus.iter_mut().zip(&plan.plans) {
            for e in p.effects.iter() {
                apply_fed(sku, e).expect("a checked plan applies");
            }
        }
    }
    for (sku, v) in skus.iter().zip(before) {
        sku.audit()
            .expect("a multi-key command leaves every key consistent");
        assert!(
            plan.blocked.is_none() || sku.version() == v,
            "a blocked command changed a key"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let args: Vec<&[u8]> = rest.split(|&b| b == 0xFF).collect();
    // The high bit of the command byte: a key with rules or without.
    let rules = which & 0x80 != 0;
    let mut sku = seeded(rules);
    let p = Policy::default();
    let now = NOW + 1_000;
    match (which & 0x7F) % 16 {
        0 => {
            if let Ok(c) = parse::set(&args) {
                let plan = sku.plan_set(c.stock, c.if_version, now);
                commit(&mut sku, plan);
            }
        }
        1 => {
            if let Ok(c) = parse::add(&args) {
                let plan = sku.plan_add(c.delta, c.if_version, now);
                commit(&mut sku, plan);
            }
        }
        2 => {
            if let Ok(c) = parse::reserve(&args) {
                let buyer = c.buyer.as_ref().map(|b| &b.0);
                let plan = sku.plan_reserve_for(&c.txid, c.qty, c.ttl, buyer, now, &p);
                if let (Some(until), Ok(plan)) = (c.block, &plan) {
                    if plan.status == Status::NoStock {
                        // BLOCK: it waits; when served, what it is granted
                        // (or told) commits cleanly, and nothing overtakes it.
                        let mut q = WaitQueue::default();
                        let w = Waiter::new((), c.txid.clone(), c.qty, c.ttl, buyer.cloned());
                        if q.push(w, until).is_ok() {
                            let ahead = q.ahead(buyer);
                            let other = TxId::new(b"behind").expect("txid");
                            if let Ok(behind) =
                                sku.plan_reserve_behind(&other, 1, c.ttl, None, ahead, now, &p)
                            {
                                assert_ne!(behind.status, Status::Reserved, "overtook a waiter");
                            }
                            let restock = sku.plan_add(c.qty.clamp(1, 1_000_000), None, now);
                            commit(&mut sku, restock);
                            if let Some(Grant::Done(grant)) = sku.plan_grant(&q, now, &p) {
                                commit(&mut sku, grant);
                            }
                        }
                        return;
                    }
                }
                commit(&mut sku, plan);
            }
        }
        3 => {
            if let Ok(c) = parse::confirm(&args) {
                let plan = sku.plan_confirm_qty(&c.txid, c.qty, now);
                commit(&mut sku, plan);
            }
        }
        4 => {
            if let Ok(c) = parse::key_txid("inv.cancel", &args) {
                let plan = sku.plan_cancel(&c.txid, now);
                commit(&mut sku, plan);
            }
        }
        5 => {
            if let Ok(c) = parse::extend(&args) {
                let plan = sku.plan_extend(&c.txid, c.ttl_ms, now, &p);
                commit(&mut sku, plan);
            }
        }
        6 => {
            if let Ok(c) = parse::apply(&args) {
                if apply_fed(&mut sku, &c.effect).is_ok() {
                    sku.audit()
                        .expect("an applied effect leaves the key consistent");
                }
            }
        }
        7 => {
            if let Ok(c) = parse::mreserve(&args, 64) {
                let qtys: Vec<i64> = c.items.iter().map(|(_, q)| *q).collect();
                commit_multi(c.items.len(), rules, |skus| {
                    MultiPlan::reserve(skus, &c.txid, &qtys, c.ttl, c.buyer.as_ref(), now, &p)
                });
            }
        }
        8 => {
            if let Ok(c) = parse::multi("inv.mcancel", &args, 64) {
                commit_multi(c.keys.len(), rules, |skus| {
                    MultiPlan::cancel(skus, &c.txid, now)
                });
            }
        }
        12 => {
            if let Ok(c) = parse::mconfirm(&args, 64) {
                let qtys: Vec<Option<i64>> = c.items.iter().map(|(_, q)| *q).collect();
                commit_multi(c.items.len(), rules, |skus| {
                    MultiPlan::confirm(skus, &c.txid, &qtys, now)
                });
            }
        }
        13 => {
            if let Ok(c) = parse::adjust(&args) {
                let plan = sku.plan_adjust(&c.txid, c.qty, now);
                commit(&mut sku, plan);
            }
        }
        14 => {
            if let Ok(c) = parse::rules(&args) {
                let plan = sku.plan_rules(&c.change);
                commit(&mut sku, plan);
            }
        }
        15 => {
            if let Ok(c) = parse::buyer(&args) {
                let _ = sku.buyer(c.buyer.as_bytes());
            }
        }
        9 => {
            if let Ok(c) = parse::scan(&args) {
                let _ = sku.scan(c.cursor, c.count, now);
            }
        }
        10 => {
            if let Ok(c) = parse::key_only("inv.feed", &args) {
                assert!(stream_name(c.key).ends_with(c.key));
            }
        }
        _ => {
            // Housekeeping long after every deadline, then its effects.
            let effects = sku.plan_housekeeping(now + 10_000_000, 0, 1000);
            for e in &effects {
                apply_fed(&mut sku, e).expect("housekeeping applies");
            }
            sku.audit().expect("housekeeping leaves the key consistent");
        }
    }
});

//! Multi-key commands (INV.MRESERVE, INV.MCONFIRM, INV.MCANCEL): every key
//! is planned, and every key's effects are checked, before any key changes.
//! A command applies all or nothing.

use super::{Ahead, BuyerId, Plan, Policy, Result, Sku, Status, Ttl, TxId};

/// One multi-key command's decision, over its keys in the command's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiPlan {
    /// The command's answer.
    pub overall: Status,
    /// Each key's plan.
    pub plans: Vec<Plan>,
    /// The first key whose answer stops the command: then no key changes.
    pub blocked: Option<usize>,
}

impl MultiPlan {
    /// Goes on only when every key answers `want`; otherwise the first key
    /// that does not gives the command's answer, and nothing changes.
    fn all_or_nothing(plans: Vec<Plan>, want: Status) -> MultiPlan {
        let blocked = plans.iter().position(|p| p.status != want);
        MultiPlan {
            overall: blocked.map_or(want, |i| plans[i].status),
            plans,
            blocked,
        }
    }

    /// INV.MRESERVE: one txid reserves `qtys[i]` on key `i`, for one buyer
    /// when given. A TXCONFLICT on any key is the command's error.
    pub fn reserve(
        skus: &[&Sku],
        txid: &TxId,
        qtys: &[i64],
        ttl: Ttl,
        buyer: Option<&BuyerId>,
        now: u64,
        policy: &Policy,
    ) -> Result<MultiPlan> {
        Self::reserve_behind(skus, txid, qtys, ttl, buyer, &[], now, policy)
    }

    /// `reserve` on keys with waiting rooms: `ahead[i]` is what waits on
    /// key `i` (missing: nobody), and a key anyone waits on answers NOSTOCK
    /// (the whole order then reserves nothing), as a single reserve would.
    #[allow(clippy::too_many_arguments)]
    pub fn reserve_behind(
        skus: &[&Sku],
        txid: &TxId,
        qtys: &[i64],
        ttl: Ttl,
        buyer: Option<&BuyerId>,
        ahead: &[Ahead],
        now: u64,
        policy: &Policy,
    ) -> Result<MultiPlan> {
        let plans = skus
            .iter()
            .zip(qtys)
            .enumerate()
            .map(|(i, (sku, &qty))| {
                let ahead = ahead.get(i).copied().unwrap_or(Ahead::NONE);
                sku.plan_reserve_behind(txid, qty, ttl, buyer, ahead, now, policy)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self::all_or_nothing(plans, Status::Reserved))
    }

    /// INV.MCONFIRM: confirms the txid on every key (selling `qtys[i]` of
    /// key `i`'s units when given), or on none.
    pub fn confirm(
        skus: &[&Sku],
        txid: &TxId,
        qtys: &[Option<i64>],
        now: u64,
    ) -> Result<MultiPlan> {
        let plans = skus
            .iter()
            .enumerate()
            .map(|(i, sku)| sku.plan_confirm_qty(txid, qtys.get(i).copied().flatten(), now))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self::all_or_nothing(plans, Status::Confirmed))
    }

    /// INV.MCANCEL: cancels (or fences) the txid on every key; the answer
    /// is CONFIRMED when any key had confirmed it, CANCELLED otherwise.
    pub fn cancel(skus: &[&Sku], txid: &TxId, now: u64) -> Result<MultiPlan> {
        let plans = skus
            .iter()
            .map(|sku| sku.plan_cancel(txid, now))
            .collect::<Result<Vec<_>>>()?;
        let overall = if plans.iter().any(|p| p.status == Status::Confirmed) {
            Status::Confirmed
        } else {
            Status::Cancelled
        };
        Ok(MultiPlan {
            overall,
            plans,
            blocked: None,
        })
    }

    /// Whether the command changes its keys, having checked every key's
    /// effects against its key first: an error here leaves every key as
    /// it was, so the caller applies each plan's effects only after it.
    pub fn check(&self, skus: &[&Sku]) -> Result<bool> {
        if self.blocked.is_some() {
            return Ok(false);
        }
        for (sku, plan) in skus.iter().zip(&self.plans) {
            sku.check(&plan.effects)?;
        }
        Ok(true)
    }
}

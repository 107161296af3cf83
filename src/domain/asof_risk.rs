//! The risk columns of one pledge as of a date, in business time: a step function of the day,
//! read from the pledge and everything recorded of its risk (its rights' states by `statusSince`,
//! a court's freeze from its `from`, an invalidation from its filing, a fee from the day after its
//! due date (`RightState::flag_days`), its default from `defaultedOn` to `resolvedOn`, its valuations by `valuedOn`, its claims by
//! `filedOn` and a rejection's `decidedOn`, payments by `paidOn`).
//!
//! The ledger keeps as-of exposure as dated deltas (`asof`). Whatever event touches a pledge's
//! risk, the projector adds the difference between the function after and before it as dated
//! deltas (`diff` of two `points`), so a right's status dated years back, or a valuation recorded
//! late, moves past exposure exactly where it belongs, and a pledge without any risk recorded
//! costs nothing.
//!
//! Stocks (at risk, defaulted, appraised) count the pledge while it is in force, as the secured
//! amount as of a date does; compensation claimed and paid are flows that stay after the release,
//! as they do now.

use super::exposure::RowDelta;
use super::pledge::Pledge;
use super::programme::{Claim, ClaimStatus};
use super::right::RightRecord;
use super::risk::{PledgeDefault, Valuation};
use chrono::NaiveDate;
use std::collections::BTreeMap;

/// A pledge's risk columns as dated deltas, by day.
pub type Points = Vec<(NaiveDate, RowDelta)>;

/// Everything the risk columns of one pledge depend on.
#[derive(Debug, Clone, Copy)]
pub struct RiskInputs<'a> {
    pub pledge: &'a Pledge,
    /// The records of the pledge's rights that have one.
    pub rights: &'a [RightRecord],
    pub default: Option<&'a PledgeDefault>,
    pub valuations: &'a [Valuation],
    pub claims: &'a [Claim],
}

impl RiskInputs<'_> {
    /// Whether nothing of the pledge's risk is recorded: its columns are zero on every day.
    pub fn is_blank(&self) -> bool {
        self.rights.is_empty() && self.default.is_none() && self.valuations.is_empty() && self.claims.is_empty()
    }

    /// In force at the end of `day`: registered on it or before and not released by it.
    fn in_force(&self, day: NaiveDate) -> bool {
        let c = &self.pledge.content;
        c.registered_on <= day && self.pledge.release.as_ref().is_none_or(|r| day < r.released_on)
    }

    /// The secured amount in effect at the end of `day`, in fen: the registered amount moved by
    /// every change effective by then (as-of exposure's own rule).
    fn secured_fen(&self, day: NaiveDate) -> i128 {
        let changes = self.pledge.changes.iter().filter(|c| c.effective_on <= day);
        self.pledge.registered_amount().fen()
            + changes.map(|c| c.secured_amount.1.fen() - c.secured_amount.0.fen()).sum::<i128>()
    }

    /// Whether a right's state in effect on `day` says it lost force, is frozen or is held by
    /// another than the pledgor.
    fn flagged(&self, day: NaiveDate) -> bool {
        self.rights.iter().any(|r| r.flag_on(&self.pledge.content, day).is_some())
    }

    /// The pledge's risk columns at the end of `day`.
    pub fn value_on(&self, day: NaiveDate) -> RowDelta {
        let mut value = RowDelta {
            claimed_fen: self.claimed_fen(day),
            paid_fen: self
                .claims
                .iter()
                .flat_map(|c| &c.payments)
                .filter(|p| p.paid_on <= day)
                .map(|p| p.amount.fen())
                .sum(),
            ..RowDelta::default()
        };
        if !self.in_force(day) {
            return value;
        }
        let secured = self.secured_fen(day);
        if self.flagged(day) {
            value.at_risk_fen = secured;
            value.at_risk_pledges = 1;
        }
        let open = |d: &&PledgeDefault| {
            d.content.defaulted_on <= day && d.resolution.as_ref().is_none_or(|(r, ..)| day < r.resolved_on)
        };
        if let Some(d) = self.default.filter(open) {
            value.defaulted_fen = d.content.outstanding_principal.fen();
            value.defaulted_pledges = 1;
        }
        // The latest appraisal by then, as `risk::latest` picks it now.
        let known: Vec<Valuation> = self.valuations.iter().filter(|v| v.content.valued_on <= day).cloned().collect();
        if let Some(latest) = super::risk::latest(&known) {
            value.appraised_fen = latest.content.value.fen();
            value.appraised_secured_fen = secured;
        }
        value
    }

    /// The fund's share of the claims filed by `day` and not rejected by then.
    fn claimed_fen(&self, day: NaiveDate) -> i128 {
        let counts = |c: &&Claim| {
            let rejected =
                c.status == ClaimStatus::Rejected && c.decision.as_ref().is_some_and(|d| d.decided_on <= day);
            c.basis.filed_on <= day && !rejected
        };
        self.claims.iter().filter(counts).map(|c| c.compensation.fund.fen()).sum()
    }

    /// Every day on which `value_on` may change: between two of them it is constant.
    fn turning_days(&self) -> Vec<NaiveDate> {
        let p = self.pledge;
        let mut days = vec![p.content.registered_on];
        days.extend(p.changes.iter().map(|c| c.effective_on));
        days.extend(p.release.as_ref().map(|r| r.released_on));
        for state in self.rights.iter().flat_map(|r| r.effective()).map(|s| &s.state) {
            days.push(state.status_since);
            days.extend(state.flag_days());
        }
        if let Some(d) = self.default {
            days.push(d.content.defaulted_on);
            days.extend(d.resolution.as_ref().map(|(r, ..)| r.resolved_on));
        }
        days.extend(self.valuations.iter().map(|v| v.content.valued_on));
        for claim in self.claims {
            days.push(claim.basis.filed_on);
            days.extend(claim.decision.as_ref().map(|d| d.decided_on));
            days.extend(claim.payments.iter().map(|p| p.paid_on));
        }
        days.sort_unstable();
        days.dedup();
        days
    }
}

/// The pledge's risk columns as dated deltas: summed up to a day, they give `value_on` that day.
pub fn points(inputs: &RiskInputs<'_>) -> Points {
    if inputs.is_blank() {
        return Vec::new();
    }
    let mut previous = RowDelta::default();
    let mut out = Vec::new();
    for day in inputs.turning_days() {
        let value = inputs.value_on(day);
        let delta = value.minus(&previous);
        if !delta.is_zero() {
            out.push((day, delta));
        }
        previous = value;
    }
    out
}

/// The dated deltas that turn `before`'s function into `after`'s, by day, without zeros.
pub fn diff(before: &[(NaiveDate, RowDelta)], after: &[(NaiveDate, RowDelta)]) -> Points {
    let mut by_day: BTreeMap<NaiveDate, RowDelta> = BTreeMap::new();
    for (day, delta) in after {
        let sum = by_day.entry(*day).or_default();
        *sum = sum.plus(delta);
    }
    for (day, delta) in before {
        let sum = by_day.entry(*day).or_default();
        *sum = sum.minus(delta);
    }
    by_day.into_iter().filter(|(_, d)| !d.is_zero()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 1, day).unwrap()
    }

    fn at_risk(fen: i128) -> RowDelta {
        RowDelta { at_risk_fen: fen, at_risk_pledges: (fen > 0) as i64 - (fen < 0) as i64, ..RowDelta::default() }
    }

    /// `diff(before, after)` added to `before` gives `after` on every day, and holds no zeros.
    fn check(before: &[(NaiveDate, RowDelta)], after: &[(NaiveDate, RowDelta)], expected: &[(NaiveDate, RowDelta)]) {
        let moved = diff(before, after);
        assert_eq!(moved, expected);
        let sum_to = |points: &[(NaiveDate, RowDelta)], day| {
            points.iter().filter(|(d, _)| *d <= day).fold(RowDelta::default(), |s, (_, p)| s.plus(p))
        };
        for day in 1..=31 {
            assert_eq!(sum_to(before, on(day)).plus(&sum_to(&moved, on(day))), sum_to(after, on(day)));
        }
    }

    #[test]
    fn a_diff_moves_the_function_before_into_the_one_after() {
        // Nothing to move.
        check(&[(on(3), at_risk(5))], &[(on(3), at_risk(5))], &[]);
        // A flag dated back: the same amount from an earlier day.
        check(
            &[(on(10), at_risk(5)), (on(20), at_risk(-5))],
            &[(on(4), at_risk(5)), (on(20), at_risk(-5))],
            &[(on(4), at_risk(5)), (on(10), at_risk(-5))],
        );
        // From nothing, and back to nothing.
        check(&[], &[(on(2), at_risk(7))], &[(on(2), at_risk(7))]);
        check(&[(on(2), at_risk(7))], &[], &[(on(2), at_risk(-7))]);
    }
}

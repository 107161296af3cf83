//! Regulator statistics: what was registered in a period, per region, pledgee or right kind, with
//! year-on-year growth and the share of "inclusive" (small) registrations at or below a threshold.
//! The ledger keeps one registration fact per pledge, indexed by county and date, and one risk
//! fact per default, claim and payment (the risk side's flows of the period); this module tallies
//! facts exactly (decimal sums, distinct enterprises).

use super::ident::{CreditCode, RightKind};
use super::money::Money;
use super::region::{CountyCode, Region};
use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};

/// What a registration contributes to statistics, fixed at registration: later changes and the
/// release do not alter what was registered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fact {
    pub county: CountyCode,
    pub registered_on: NaiveDate,
    pub amount: Money,
    pub pledgor: CreditCode,
    pub pledgee: CreditCode,
    /// Rights by kind, in `RightKind::ALL` order.
    pub rights: [u32; 5],
}

/// A risk event of a pledge, counted in the period of its business date under the pledge's own
/// rows (its county, pledgee and kinds of right): a default on its `defaultedOn`, a claim on its
/// `filedOn` (while not rejected), a payment on its `paidOn`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RiskFact {
    pub on: NaiveDate,
    /// The pledge's registration fact: where and under which rows it counts.
    pub pledge: Fact,
    pub flow: RiskFlow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RiskFlow {
    /// The outstanding principal when the loan defaulted.
    Default(Money),
    /// The fund's share of a claim.
    Claim(Money),
    Payment(Money),
}

/// Which registrations a statistics request counts, by the kinds of right they involve: every
/// registration, or those with at least one right of a listed kind. A registration pledging a
/// patent and a trademark counts under "patents" and under "trademarks" alike, as the published
/// tables count the registrations involving each kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindFilter {
    /// By kind, in `RightKind::ALL` order; all `false`: no filter.
    listed: [bool; 5],
}

impl KindFilter {
    /// Every registration.
    pub const ALL: KindFilter = KindFilter { listed: [false; 5] };

    /// Registrations involving at least one right of any of `kinds`; empty: every registration.
    pub fn of(kinds: &[RightKind]) -> KindFilter {
        let mut listed = [false; 5];
        for (slot, kind) in listed.iter_mut().zip(RightKind::ALL) {
            *slot = kinds.contains(&kind);
        }
        KindFilter { listed }
    }

    pub fn keeps(&self, fact: &Fact) -> bool {
        !self.listed.contains(&true) || self.listed.iter().zip(fact.rights).any(|(listed, n)| *listed && n > 0)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub amount_fen: i128,
    pub registrations: u64,
    pub enterprises: BTreeSet<CreditCode>,
    pub rights: [u64; 5],
    pub inclusive: u64,
    /// The risk side's flows of the period (`RiskFact`).
    pub defaults: u64,
    pub defaulted_fen: i128,
    pub claimed_fen: i128,
    pub paid_fen: i128,
}

impl Tally {
    pub fn add(&mut self, fact: &Fact, inclusive_threshold: Money) {
        self.amount_fen += fact.amount.fen();
        self.registrations += 1;
        self.enterprises.insert(fact.pledgor.clone());
        for (total, n) in self.rights.iter_mut().zip(fact.rights) {
            *total += u64::from(n);
        }
        if fact.amount <= inclusive_threshold {
            self.inclusive += 1;
        }
    }

    pub fn add_risk(&mut self, fact: &RiskFact) {
        match fact.flow {
            RiskFlow::Default(outstanding) => {
                self.defaults += 1;
                self.defaulted_fen += outstanding.fen();
            }
            RiskFlow::Claim(fund) => self.claimed_fen += fund.fen(),
            RiskFlow::Payment(amount) => self.paid_fen += amount.fen(),
        }
    }

    pub fn patents(&self) -> u64 {
        self.rights[0] + self.rights[1] + self.rights[2]
    }

    /// Share of registrations at or below the threshold, in percent with 2 decimals.
    pub fn inclusive_share_percent(&self) -> Option<Decimal> {
        percent(i128::from(self.inclusive), i128::from(self.registrations))
    }
}

/// `part / whole` in percent, rounded half away from zero to 2 decimals; `None` when `whole` is 0.
pub fn percent(part: i128, whole: i128) -> Option<Decimal> {
    if whole == 0 {
        return None;
    }
    let value = Decimal::from_i128_with_scale(part, 0) * Decimal::ONE_HUNDRED / Decimal::from_i128_with_scale(whole, 0);
    let mut rounded = value.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    // Always two decimals, as published tables print them.
    rounded.rescale(2);
    Some(rounded)
}

/// Year-on-year growth of `current` over `previous` in percent; `None` without a previous amount.
pub fn growth_percent(current_fen: i128, previous_fen: i128) -> Option<Decimal> {
    percent(current_fen - previous_fen, previous_fen)
}

/// A closed period of registration dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

/// A year earlier; 29 February becomes 28 February.
fn year_earlier(d: NaiveDate) -> NaiveDate {
    d.with_year(d.year() - 1)
        .or_else(|| NaiveDate::from_ymd_opt(d.year() - 1, d.month(), 28))
        .expect("every month has a 28th")
}

/// Periods longer than this are refused: statistics are read per year or shorter, and the bound
/// keeps one request's scan bounded.
pub const PERIOD_DAYS_MAX: i64 = 3660;

impl Period {
    pub fn new(from: NaiveDate, to: NaiveDate) -> Result<Period, &'static str> {
        if to < from {
            return Err("must not be before from");
        }
        if (to - from).num_days() > PERIOD_DAYS_MAX {
            return Err("the period may span at most 10 years");
        }
        Ok(Period { from, to })
    }

    /// The same period a year earlier, for year-on-year growth.
    pub fn previous(self) -> Period {
        Period { from: year_earlier(self.from), to: year_earlier(self.to) }
    }

    pub fn contains(self, d: NaiveDate) -> bool {
        self.from <= d && d <= self.to
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    None,
    ChildRegion,
    Pledgee,
    RightKind,
}

/// The rows a fact counts in under `grouping` below `region`: (key, name). A pledgee row is named
/// by its credit code here: what a registration called the bank is not an authority on its name,
/// so the ledger names the row from its bank directory.
pub fn row_keys(fact: &Fact, region: Region, grouping: Grouping) -> Vec<(String, String)> {
    match grouping {
        Grouping::None => Vec::new(),
        Grouping::ChildRegion => fact
            .county
            .region()
            .with_ancestors()
            .find(|r| r.parent() == Some(region))
            .map(|child| vec![(child.code_string(), child.name().to_owned())])
            .unwrap_or_default(),
        Grouping::Pledgee => vec![(fact.pledgee.to_string(), fact.pledgee.to_string())],
        Grouping::RightKind => RightKind::ALL
            .iter()
            .zip(fact.rights)
            .filter(|(_, n)| *n > 0)
            .map(|(k, _)| (k.name().to_owned(), k.name().to_owned()))
            .collect(),
    }
}

/// The tallies of one period: the total and one per row key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tallies {
    pub total: Tally,
    pub rows: BTreeMap<String, (String, Tally)>,
}

impl Tallies {
    pub fn add(&mut self, fact: &Fact, region: Region, grouping: Grouping, threshold: Money) {
        self.total.add(fact, threshold);
        for (key, name) in row_keys(fact, region, grouping) {
            self.rows.entry(key).or_insert_with(|| (name, Tally::default())).1.add(fact, threshold);
        }
    }

    pub fn add_risk(&mut self, fact: &RiskFact, region: Region, grouping: Grouping) {
        self.total.add_risk(fact);
        for (key, name) in row_keys(&fact.pledge, region, grouping) {
            self.rows.entry(key).or_insert_with(|| (name, Tally::default())).1.add_risk(fact);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_are_exact_and_rounded() {
        assert_eq!(percent(1, 3).unwrap().to_string(), "33.33");
        assert_eq!(percent(2, 3).unwrap().to_string(), "66.67");
        assert_eq!(percent(0, 3).unwrap().to_string(), "0.00");
        assert_eq!(percent(1, 0), None);
        assert_eq!(growth_percent(1680, 1000).unwrap().to_string(), "68.00");
        assert_eq!(growth_percent(500, 1000).unwrap().to_string(), "-50.00");
    }

    #[test]
    fn a_kind_filter_keeps_registrations_involving_a_listed_kind() {
        let fact = |rights: [u32; 5]| Fact {
            county: CountyCode::parse("330106").unwrap(),
            registered_on: NaiveDate::from_ymd_opt(2024, 3, 1).unwrap(),
            amount: Money::parse_positive("1.00").unwrap(),
            pledgor: CreditCode::parse("91330100716105852F").unwrap(),
            pledgee: CreditCode::parse("914403001922038216").unwrap(),
            rights,
        };
        let (patent, design, trademark, mixed) =
            (fact([2, 0, 0, 0, 0]), fact([0, 0, 1, 0, 0]), fact([0, 0, 0, 3, 0]), fact([0, 1, 0, 1, 0]));
        let patents = KindFilter::of(&[RightKind::InventionPatent, RightKind::UtilityModel, RightKind::DesignPatent]);
        let trademarks = KindFilter::of(&[RightKind::Trademark]);
        let copyrights = KindFilter::of(&[RightKind::Copyright]);
        let keeps = |filter: KindFilter| [&patent, &design, &trademark, &mixed].map(|f| filter.keeps(f));
        assert_eq!(keeps(KindFilter::ALL), [true; 4]);
        assert_eq!(keeps(KindFilter::of(&[])), [true; 4], "no kind listed: no filter");
        assert_eq!(keeps(patents), [true, true, false, true]);
        assert_eq!(keeps(trademarks), [false, false, true, true], "a mixed pledge counts under each kind");
        assert_eq!(keeps(copyrights), [false; 4]);
        assert_eq!(
            keeps(KindFilter::of(&[RightKind::InventionPatent, RightKind::Trademark])),
            [true, false, true, true]
        );
    }

    #[test]
    fn periods() {
        let d = |s| crate::domain::text::parse_date(s).unwrap();
        let p = Period::new(d("2024-01-01"), d("2024-02-29")).unwrap();
        assert_eq!(p.previous(), Period { from: d("2023-01-01"), to: d("2023-02-28") });
        assert!(Period::new(d("2024-01-02"), d("2024-01-01")).is_err());
        assert!(Period::new(d("2000-01-01"), d("2024-01-01")).is_err());
    }
}

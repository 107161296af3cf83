//! Exposure: what active pledges and credit lines add up to per region, per pledgee and per right
//! kind. This module says which aggregate rows a pledge or a credit line counts in and by how much;
//! the ledger keeps the rows up to date in the same atomic write as the records.

use super::credit_line::CreditLine;
use super::error::LedgerError;
use super::ident::{CreditCode, RightKind};
use super::money::Money;
use super::pledge::Pledge;
use super::region::Region;

/// The second half of an aggregate's identity, below its region.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dimension {
    Total,
    Pledgee(CreditCode),
    Kind(RightKind),
    /// One bank's book by right kind: what a bank sees when it groups its exposure by kind.
    PledgeeKind(CreditCode, RightKind),
}

/// One aggregate row: a region and a dimension.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bucket {
    pub region: Region,
    pub dimension: Dimension,
}

/// The stored value of an aggregate row.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Row {
    pub secured_amount: Money,
    pub pledge_count: u64,
    pub enterprise_count: u64,
    pub right_count: u64,
    pub credit_limit: Money,
    pub credit_drawn: Money,
    /// Active pledges with a right that lost force or is frozen (`right::RiskFlag`).
    pub at_risk_amount: Money,
    pub at_risk_count: u64,
    /// Outstanding principal of active pledges in default, not yet resolved.
    pub defaulted_amount: Money,
    pub defaulted_count: u64,
    /// Latest appraised value of the active pledges that have one, and their secured amount
    /// (loan-to-value is the one over the other).
    pub appraised_value: Money,
    pub appraised_secured: Money,
    /// Compensation computed for claims not rejected, and paid: flows that stay when the pledge
    /// is released.
    pub compensation_claimed: Money,
    pub compensation_paid: Money,
}

/// A signed change to a row. `enterprise` is decided by the ledger from its distinct-pledgor
/// reference counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowDelta {
    pub secured_fen: i128,
    pub pledges: i64,
    pub enterprises: i64,
    pub rights: i64,
    pub limit_fen: i128,
    pub drawn_fen: i128,
    pub at_risk_fen: i128,
    pub at_risk_pledges: i64,
    pub defaulted_fen: i128,
    pub defaulted_pledges: i64,
    pub appraised_fen: i128,
    pub appraised_secured_fen: i128,
    pub claimed_fen: i128,
    pub paid_fen: i128,
}

impl RowDelta {
    /// `self - other`, field by field: the change from one contribution to another.
    pub fn minus(&self, other: &RowDelta) -> RowDelta {
        self.combine(other, -1)
    }

    /// `self + other`, field by field.
    pub fn plus(&self, other: &RowDelta) -> RowDelta {
        self.combine(other, 1)
    }

    /// `self + sign * other`, field by field.
    fn combine(&self, other: &RowDelta, sign: i64) -> RowDelta {
        let fen = |a: i128, b: i128| a + i128::from(sign) * b;
        let n = |a: i64, b: i64| a + sign * b;
        RowDelta {
            secured_fen: fen(self.secured_fen, other.secured_fen),
            pledges: n(self.pledges, other.pledges),
            enterprises: n(self.enterprises, other.enterprises),
            rights: n(self.rights, other.rights),
            limit_fen: fen(self.limit_fen, other.limit_fen),
            drawn_fen: fen(self.drawn_fen, other.drawn_fen),
            at_risk_fen: fen(self.at_risk_fen, other.at_risk_fen),
            at_risk_pledges: n(self.at_risk_pledges, other.at_risk_pledges),
            defaulted_fen: fen(self.defaulted_fen, other.defaulted_fen),
            defaulted_pledges: n(self.defaulted_pledges, other.defaulted_pledges),
            appraised_fen: fen(self.appraised_fen, other.appraised_fen),
            appraised_secured_fen: fen(self.appraised_secured_fen, other.appraised_secured_fen),
            claimed_fen: fen(self.claimed_fen, other.claimed_fen),
            paid_fen: fen(self.paid_fen, other.paid_fen),
        }
    }

    pub fn is_zero(&self) -> bool {
        *self == RowDelta::default()
    }
}

fn apply_count(value: u64, delta: i64) -> Option<u64> {
    value.checked_add_signed(delta)
}

impl Row {
    /// The row after `delta`; an error means the aggregates no longer match the records.
    pub fn apply(&self, delta: &RowDelta) -> Result<Row, LedgerError> {
        let broken =
            || LedgerError::Internal(format!("aggregate would leave its range applying {delta:?} to {self:?}"));
        Ok(Row {
            secured_amount: self.secured_amount.checked_apply(delta.secured_fen).ok_or_else(broken)?,
            pledge_count: apply_count(self.pledge_count, delta.pledges).ok_or_else(broken)?,
            enterprise_count: apply_count(self.enterprise_count, delta.enterprises).ok_or_else(broken)?,
            right_count: apply_count(self.right_count, delta.rights).ok_or_else(broken)?,
            credit_limit: self.credit_limit.checked_apply(delta.limit_fen).ok_or_else(broken)?,
            credit_drawn: self.credit_drawn.checked_apply(delta.drawn_fen).ok_or_else(broken)?,
            at_risk_amount: self.at_risk_amount.checked_apply(delta.at_risk_fen).ok_or_else(broken)?,
            at_risk_count: apply_count(self.at_risk_count, delta.at_risk_pledges).ok_or_else(broken)?,
            defaulted_amount: self.defaulted_amount.checked_apply(delta.defaulted_fen).ok_or_else(broken)?,
            defaulted_count: apply_count(self.defaulted_count, delta.defaulted_pledges).ok_or_else(broken)?,
            appraised_value: self.appraised_value.checked_apply(delta.appraised_fen).ok_or_else(broken)?,
            appraised_secured: self.appraised_secured.checked_apply(delta.appraised_secured_fen).ok_or_else(broken)?,
            compensation_claimed: self.compensation_claimed.checked_apply(delta.claimed_fen).ok_or_else(broken)?,
            compensation_paid: self.compensation_paid.checked_apply(delta.paid_fen).ok_or_else(broken)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        *self == Row::default()
    }
}

/// A pledge's share in one bucket: what it adds when it becomes active and removes on release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PledgeShare {
    pub bucket: Bucket,
    pub rights: i64,
}

/// Every bucket an active pledge counts in: each region from its county up to the country, times
/// the total, its pledgee, and each kind of right it holds.
pub fn pledge_shares(pledge: &Pledge) -> Vec<PledgeShare> {
    let c = &pledge.content;
    let mut kinds: Vec<(RightKind, i64)> = Vec::new();
    for right in &c.rights {
        match kinds.iter_mut().find(|(k, _)| *k == right.kind()) {
            Some((_, n)) => *n += 1,
            None => kinds.push((right.kind(), 1)),
        }
    }
    let total_rights = c.rights.len() as i64;
    let mut shares = Vec::with_capacity(4 * (2 + 2 * kinds.len()));
    for region in c.county.region().with_ancestors() {
        shares.push(PledgeShare { bucket: Bucket { region, dimension: Dimension::Total }, rights: total_rights });
        shares.push(PledgeShare {
            bucket: Bucket { region, dimension: Dimension::Pledgee(c.pledgee.credit_code.clone()) },
            rights: total_rights,
        });
        for (kind, n) in &kinds {
            shares.push(PledgeShare { bucket: Bucket { region, dimension: Dimension::Kind(*kind) }, rights: *n });
            shares.push(PledgeShare {
                bucket: Bucket { region, dimension: Dimension::PledgeeKind(c.pledgee.credit_code.clone(), *kind) },
                rights: *n,
            });
        }
    }
    shares
}

/// Whether a pledge of `county` and `pledgee`, holding rights of the kinds `holds` says, counts in
/// `bucket`: exactly the buckets `pledge_shares` lists for it (a test holds the two together).
/// The projector decides by it which of a pledgor's other pledges share a row, from the pledgor's
/// compact record, without loading each pledge.
pub fn counts_in(bucket: &Bucket, county: Region, pledgee: &CreditCode, holds: impl Fn(RightKind) -> bool) -> bool {
    bucket.region.contains(county)
        && match &bucket.dimension {
            Dimension::Total => true,
            Dimension::Pledgee(code) => code == pledgee,
            Dimension::Kind(kind) => holds(*kind),
            Dimension::PledgeeKind(code, kind) => code == pledgee && holds(*kind),
        }
}

/// Every bucket a credit line counts in: its region and those above, total and per bank.
pub fn credit_line_buckets(line: &CreditLine) -> Vec<Bucket> {
    let bank = &line.content.bank.credit_code;
    line.content
        .region
        .with_ancestors()
        .flat_map(|region| {
            [
                Bucket { region, dimension: Dimension::Total },
                Bucket { region, dimension: Dimension::Pledgee(bank.clone()) },
            ]
        })
        .collect()
}

#[cfg(test)]
mod membership {
    use super::*;
    use crate::domain::ident::RightNumber;
    use crate::domain::pledge::{NewPledge, Party, Right};
    use crate::domain::region::CountyCode;
    use crate::domain::text::Text;

    fn pledge(county: &str, pledgee: &str, rights: &[(RightKind, &str)]) -> Pledge {
        let party =
            |code: &str| Party { name: Text::parse("P").unwrap(), credit_code: CreditCode::parse(code).unwrap() };
        let date = |s: &str| crate::domain::text::parse_date(s).unwrap();
        let rights = rights
            .iter()
            .map(|(kind, n)| Right::new(RightNumber::parse(n, *kind).unwrap(), Text::parse("t").unwrap(), None))
            .collect();
        let content = NewPledge {
            registration_number: None,
            pledgor: party("91330100716105852F"),
            co_pledgors: Vec::new(),
            invalidation_pending_accepted: false,
            pledgee: party(pledgee),
            county: CountyCode::parse(county).unwrap(),
            secured_amount: Money::parse_positive("1").unwrap(),
            debt_term_start: date("2020-01-01"),
            debt_term_end: date("2021-01-01"),
            registered_on: date("2020-01-01"),
            rights,
            credit_line_id: None,
        };
        Pledge {
            id: uuid::Uuid::nil(),
            registration_number: crate::domain::pledge::RegistrationNumber::parse("Z-1").unwrap(),
            content,
            release: None,
            changes: Vec::new(),
            created_by: crate::domain::principal::PrincipalName::parse("p").unwrap(),
            released_by: None,
            create_time: 0,
            update_time: 0,
            version: 1,
        }
    }

    #[test]
    fn counts_in_is_the_membership_pledge_shares_lists() {
        let banks = ["914403001922038216", "91330100716105852F"];
        let pledges = [
            pledge("330108", banks[0], &[(RightKind::Trademark, "12345678")]),
            pledge("320106", banks[1], &[(RightKind::Trademark, "12345678"), (RightKind::Copyright, "2019SR000123")]),
        ];
        // Every bucket of every region above two counties, every dimension, both banks.
        let regions: Vec<Region> = ["330108", "320106"]
            .iter()
            .flat_map(|c| CountyCode::parse(c).unwrap().region().with_ancestors().collect::<Vec<_>>())
            .collect();
        for p in &pledges {
            let shares: Vec<Bucket> = pledge_shares(p).into_iter().map(|s| s.bucket).collect();
            let holds = |kind: RightKind| p.content.rights.iter().any(|r| r.kind() == kind);
            for region in &regions {
                let mut dimensions = vec![Dimension::Total];
                for bank in banks {
                    let code = CreditCode::parse(bank).unwrap();
                    dimensions.push(Dimension::Pledgee(code.clone()));
                    for kind in RightKind::ALL {
                        dimensions.push(Dimension::Kind(kind));
                        dimensions.push(Dimension::PledgeeKind(code.clone(), kind));
                    }
                }
                for dimension in dimensions {
                    let bucket = Bucket { region: *region, dimension };
                    let listed = shares.contains(&bucket);
                    let counted = counts_in(&bucket, p.content.county.region(), &p.content.pledgee.credit_code, holds);
                    assert_eq!(listed, counted, "{bucket:?} for a pledge of {}", p.content.county);
                }
            }
        }
    }
}

//! The risk side of one pledge: its default (recorded by the pledgee bank, then resolved by
//! recovery or write-off) and its valuations (appraisals: appraiser, method, value, date), from
//! which loan-to-value follows. Kept beside the pledge, not in it: a pledge's versions are its
//! registration, changes and release, and a default or an appraisal is not a new version of the
//! registered pledge.

use super::Reason;
use super::error::LedgerError;
use super::money::Money;
use super::pledge::Pledge;
use super::principal::PrincipalName;
use super::text::{Name, Note};
use super::{FieldViolation, Micros};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use uuid::Uuid;

/// Banks re-appraise collateral yearly or on events; a pledge keeps its appraisals in one record.
pub const VALUATIONS_PER_PLEDGE_MAX: usize = 50;

/// A default as the bank records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewDefault {
    pub defaulted_on: NaiveDate,
    /// Principal outstanding when the loan defaulted: at most the secured amount.
    pub outstanding_principal: Money,
    /// Principal lost after disposal of the pledged rights, when known at recording.
    pub loss: Option<Money>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Resolution {
    /// Recovered, in full or in part (repayment, disposal of the rights): the loss is what remains.
    Recovered,
    /// Written off: the loss is what could not be recovered.
    WrittenOff,
}

impl Resolution {
    pub fn name(self) -> &'static str {
        match self {
            Resolution::Recovered => "RECOVERED",
            Resolution::WrittenOff => "WRITTEN_OFF",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewResolution {
    pub resolved_on: NaiveDate,
    pub resolution: Resolution,
    /// The principal finally lost (zero: recovered in full).
    pub loss: Money,
    pub note: Note,
}

/// A pledge's default and its resolution; a defaulted pledge keeps its whole history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PledgeDefault {
    pub pledge_id: Uuid,
    pub content: NewDefault,
    pub recorded_by: PrincipalName,
    pub create_time: Micros,
    pub resolution: Option<(NewResolution, PrincipalName, Micros)>,
}

impl NewDefault {
    /// The default of `pledge` as a request states it, checked against the pledge.
    pub fn check(self, pledge: &Pledge) -> Result<NewDefault, LedgerError> {
        let mut violations = Vec::new();
        if self.defaulted_on < pledge.content.registered_on {
            violations.push(FieldViolation::new(
                "defaultedOn",
                format!("must not be before the registration on {}", pledge.content.registered_on),
            ));
        }
        if self.outstanding_principal > pledge.content.secured_amount {
            violations.push(FieldViolation::new(
                "outstandingPrincipal",
                format!("must not exceed the secured amount {}", pledge.content.secured_amount),
            ));
        }
        if let Some(loss) = self.loss
            && loss > self.outstanding_principal
        {
            violations.push(FieldViolation::new("loss", "must not exceed the outstanding principal"));
        }
        if !violations.is_empty() {
            return Err(LedgerError::invalid(violations));
        }
        Ok(self)
    }
}

impl PledgeDefault {
    /// Records a default on an active pledge that has none.
    pub fn record(
        pledge: &Pledge,
        existing: Option<&PledgeDefault>,
        content: NewDefault,
        by: PrincipalName,
        now: Micros,
    ) -> Result<PledgeDefault, LedgerError> {
        if let Some(release) = &pledge.release {
            return Err(LedgerError::refused(
                Reason::PLEDGE_ALREADY_RELEASED,
                format!("pledge {} was released on {}", pledge.id, release.released_on),
            )
            .with("pledgeId", pledge.id));
        }
        if let Some(d) = existing {
            return Err(LedgerError::refused(
                Reason::PLEDGE_ALREADY_DEFAULTED,
                format!("pledge {} defaulted on {}", pledge.id, d.content.defaulted_on),
            )
            .with("pledgeId", pledge.id)
            .with("defaultedOn", d.content.defaulted_on));
        }
        let content = content.check(pledge)?;
        Ok(PledgeDefault { pledge_id: pledge.id, content, recorded_by: by, create_time: now, resolution: None })
    }

    /// The default after its resolution.
    pub fn resolve(
        &self,
        resolution: NewResolution,
        by: PrincipalName,
        now: Micros,
    ) -> Result<PledgeDefault, LedgerError> {
        if let Some((r, ..)) = &self.resolution {
            return Err(LedgerError::refused(
                Reason::DEFAULT_ALREADY_RESOLVED,
                format!("the default of pledge {} was resolved on {}", self.pledge_id, r.resolved_on),
            )
            .with("pledgeId", self.pledge_id));
        }
        let mut violations = Vec::new();
        if resolution.resolved_on < self.content.defaulted_on {
            violations.push(FieldViolation::new(
                "resolvedOn",
                format!("must not be before the default on {}", self.content.defaulted_on),
            ));
        }
        if resolution.loss > self.content.outstanding_principal {
            violations.push(FieldViolation::new("loss", "must not exceed the outstanding principal"));
        }
        if !violations.is_empty() {
            return Err(LedgerError::invalid(violations));
        }
        Ok(self.apply_resolution(resolution, by, now))
    }

    pub fn apply_resolution(&self, resolution: NewResolution, by: PrincipalName, at: Micros) -> PledgeDefault {
        PledgeDefault { resolution: Some((resolution, by, at)), ..self.clone() }
    }

    /// Still non-performing: defaulted and not yet resolved.
    pub fn is_open(&self) -> bool {
        self.resolution.is_none()
    }

    /// The principal lost: the resolution's, else the loss known at recording.
    pub fn loss(&self) -> Option<Money> {
        match &self.resolution {
            Some((r, ..)) => Some(r.loss),
            None => self.content.loss,
        }
    }

    /// The default as it was right after the entry written at `at`.
    pub fn as_at(&self, at: Micros) -> Option<PledgeDefault> {
        if at < self.create_time {
            return None;
        }
        let resolution = self.resolution.clone().filter(|(.., t)| *t <= at);
        Some(PledgeDefault { resolution, ..self.clone() })
    }

    pub fn update_time(&self) -> Micros {
        self.resolution.as_ref().map_or(self.create_time, |(.., at)| *at)
    }
}

/// How an appraiser valued the right (the methods of the Asset Appraisal Standards for IP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Method {
    Income,
    Market,
    Cost,
    Other,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Income => "INCOME",
            Method::Market => "MARKET",
            Method::Cost => "COST",
            Method::Other => "OTHER",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewValuation {
    pub appraiser: Name,
    pub method: Method,
    pub value: Money,
    pub valued_on: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Valuation {
    pub id: Uuid,
    pub pledge_id: Uuid,
    pub content: NewValuation,
    pub recorded_by: PrincipalName,
    pub create_time: Micros,
}

impl Valuation {
    /// Records an appraisal of an active pledge, within the pledge's limit of appraisals.
    pub fn record(
        id: Uuid,
        pledge: &Pledge,
        count: usize,
        content: NewValuation,
        by: PrincipalName,
        now: Micros,
    ) -> Result<Valuation, LedgerError> {
        if let Some(release) = &pledge.release {
            return Err(LedgerError::refused(
                Reason::PLEDGE_ALREADY_RELEASED,
                format!("pledge {} was released on {}", pledge.id, release.released_on),
            )
            .with("pledgeId", pledge.id));
        }
        if count >= VALUATIONS_PER_PLEDGE_MAX {
            return Err(LedgerError::refused(
                Reason::VALUATIONS_LIMIT_REACHED,
                format!("a pledge keeps at most {VALUATIONS_PER_PLEDGE_MAX} valuations"),
            )
            .with("pledgeId", pledge.id));
        }
        Ok(Valuation { id, pledge_id: pledge.id, content, recorded_by: by, create_time: now })
    }
}

/// The valuation that counts: the latest by valuation date, then by recording.
pub fn latest(valuations: &[Valuation]) -> Option<&Valuation> {
    valuations.iter().max_by_key(|v| (v.content.valued_on, v.create_time))
}

/// Loan-to-value in percent, 2 decimals (rounded half away from zero): secured amount over
/// appraised value, as every percentage the ledger publishes.
pub fn loan_to_value_percent(secured: Money, value: Money) -> Option<Decimal> {
    super::statistics::percent(secured.fen(), value.fen())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loan_to_value() {
        let check = |secured: &str, value: &str, expected: Option<&str>| {
            let got =
                loan_to_value_percent(Money::parse_positive(secured).unwrap(), Money::parse_positive(value).unwrap());
            assert_eq!(got.map(|d| d.to_string()), expected.map(str::to_owned), "{secured} / {value}");
        };
        check("5000000", "10000000", Some("50.00"));
        check("1", "3", Some("33.33"));
        check("2", "3", Some("66.67"));
        check("12000000", "8000000", Some("150.00"));
    }
}

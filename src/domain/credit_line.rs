//! Credit lines: a bank's commitment to lend up to a limit in a region during a period. Pledges
//! that name a line draw their secured amount on it; these are the rules of drawing.

use super::Reason;
use super::error::LedgerError;
use super::money::Money;
use super::pledge::{NewPledge, Party};
use super::principal::PrincipalName;
use super::region::Region;
use super::text::Note;
use super::{FieldViolation, Micros};
use chrono::NaiveDate;
use uuid::Uuid;

/// The content of a credit-line agreement, checked in itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewCreditLine {
    pub bank: Party,
    pub region: Region,
    pub program: Note,
    pub limit: Money,
    pub valid_from: NaiveDate,
    pub valid_to: NaiveDate,
}

impl NewCreditLine {
    pub fn new(
        bank: Party,
        region: Region,
        program: Note,
        limit: Money,
        valid_from: NaiveDate,
        valid_to: NaiveDate,
    ) -> Result<NewCreditLine, LedgerError> {
        if valid_to < valid_from {
            return Err(LedgerError::invalid(vec![FieldViolation::new("validTo", "must not be before validFrom")]));
        }
        Ok(NewCreditLine { bank, region, program, limit, valid_from, valid_to })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CreditLine {
    pub id: Uuid,
    pub content: NewCreditLine,
    /// Sum of the secured amounts of the active pledges drawing on the line; never above `limit`.
    pub drawn: Money,
    pub created_by: PrincipalName,
    pub create_time: Micros,
    pub update_time: Micros,
}

impl CreditLine {
    pub fn open(id: Uuid, content: NewCreditLine, by: PrincipalName, now: Micros) -> CreditLine {
        CreditLine { id, content, drawn: Money::ZERO, created_by: by, create_time: now, update_time: now }
    }

    pub fn available(&self) -> Money {
        self.content.limit.checked_sub(self.drawn).expect("invariant: drawn <= limit")
    }

    /// Checks that `pledge` may draw on this line at all: the bank is the pledgee, the pledge's
    /// county lies in the line's region, and the line is in force on the registration date.
    pub fn admits(&self, pledge: &NewPledge) -> Result<(), LedgerError> {
        let c = &self.content;
        if c.bank.credit_code != pledge.pledgee.credit_code {
            return Err(LedgerError::refused(
                Reason::CREDIT_LINE_BANK_MISMATCH,
                format!(
                    "credit line {} belongs to {}, not to the pledgee {}",
                    self.id, c.bank.credit_code, pledge.pledgee.credit_code
                ),
            )
            .with("creditLineId", self.id)
            .with("bankCreditCode", &c.bank.credit_code));
        }
        if !c.region.contains(pledge.county.region()) {
            return Err(LedgerError::refused(
                Reason::CREDIT_LINE_REGION_MISMATCH,
                format!("county {} lies outside the credit line's region {}", pledge.county, c.region),
            )
            .with("creditLineId", self.id)
            .with("regionCode", c.region.code_string()));
        }
        if pledge.registered_on < c.valid_from || pledge.registered_on > c.valid_to {
            return Err(LedgerError::refused(
                Reason::CREDIT_LINE_NOT_IN_FORCE,
                format!(
                    "credit line {} is valid from {} to {}, not on {}",
                    self.id, c.valid_from, c.valid_to, pledge.registered_on
                ),
            )
            .with("creditLineId", self.id));
        }
        Ok(())
    }

    /// The line after drawing `delta_fen` more (negative gives back), or CREDIT_LINE_EXHAUSTED.
    pub fn draw(&self, delta_fen: i128, now: Micros) -> Result<CreditLine, LedgerError> {
        let drawn = self
            .drawn
            .checked_apply(delta_fen)
            .ok_or_else(|| LedgerError::Internal(format!("credit line {} would draw below zero", self.id)))?;
        if drawn > self.content.limit {
            let requested = Money::from_fen(delta_fen).unwrap_or(Money::ZERO);
            return Err(LedgerError::refused(
                Reason::CREDIT_LINE_EXHAUSTED,
                format!("credit line {} has {} available, {} requested", self.id, self.available(), requested),
            )
            .with("creditLineId", self.id)
            .with("available", self.available())
            .with("requested", requested));
        }
        let mut next = self.clone();
        next.drawn = drawn;
        next.update_time = now;
        Ok(next)
    }
}

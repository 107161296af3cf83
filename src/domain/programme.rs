//! Risk-compensation programmes for IP-pledge loans and the claims filed under them.
//!
//! Chinese cities and provinces run public funds that compensate part of a bank's principal loss on
//! a defaulted IP-pledge loan (Guangzhou 2025: 40% of the loss for loans up to 5 M yuan, 30% up to
//! 15 M, 20% up to 30 M, within a yearly budget, and no more for a bank whose yearly losses pass 3%
//! of its yearly lending). Some share the loss with an insurer, a guarantor or a valuer as well
//! (Guangzhou's "5311": fund 50%, insurer or guarantor 30, valuer 10, bank 10), and some cap the
//! fund's part per loan and per borrower a year beside the yearly budget (Guangzhou 2023: at most
//! 10 M yuan a loan, 20 M a borrower a year, 50 M a year). These are the pure rules: what a
//! programme may hold, how a loss is split, and the life of a claim. The ledger computes a claim's
//! `ClaimBasis` from its state; nothing here reads it.
//!
//! All shares are basis points and all amounts fen, so every split is exact; every part is rounded
//! down, because a public fund never pays more than its rule, and the bank bears the remainder, so
//! the parts always add up to the loss.
//!
//! A claim stands on facts the bank cannot move after the default: the loan as it defaulted, the
//! loss it was filed with (approved only while it is the default's, paid only while the default's
//! is not less), a filing day that has come and falls in the programme's validity, and one
//! compensation per loss across programmes (a county's, its city's and its province's may all
//! cover a pledge: a later claim only tops the earlier ones up to its own rule).

use super::Reason;
use super::error::LedgerError;
use super::ident::CreditCode;
use super::money::Money;
use super::pledge::china_date;
use super::principal::PrincipalName;
use super::region::{CountyCode, Region};
use super::text::{Name, Note};
use super::{FieldViolation, Micros};
use chrono::{Datelike, NaiveDate};
use std::fmt;
use uuid::Uuid;

/// Published programmes have three or four tiers; ten leaves room and bounds the record.
pub const TIERS_MAX: usize = 10;

/// A programme lists the banks that signed its cooperation agreement: dozens in a city, a few
/// hundred in a province. The list is searched on every claim, so it is bounded.
pub const ELIGIBLE_BANKS_MAX: usize = 500;

/// A fund pays a claim in one or a few instalments; every payment is kept inside the claim record,
/// so this bounds the record's size.
pub const PAYMENTS_PER_CLAIM_MAX: usize = 20;

/// Basis points in the whole: 10000 bp = 100%.
const BP_WHOLE: u16 = 10_000;

/// Share in basis points (1/100 of a percent): 4000 = 40%. Only `0..=10000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "u16")]
pub struct Bp(u16);

impl Bp {
    pub const ZERO: Bp = Bp(0);

    // Longer than ~70 lines: it collects every field violation of a programme (tiers, shares, budget,
    // dates, region) into one answer, field by field, as AIP asks.
    pub fn new(bp: u16) -> Result<Bp, String> {
        if bp > BP_WHOLE {
            return Err(format!("must be at most {BP_WHOLE} basis points (100%), got {bp}"));
        }
        Ok(Bp(bp))
    }

    pub fn get(self) -> u16 {
        self.0
    }

    /// `amount × self`, rounded down to the fen.
    fn of_floor(self, amount: Money) -> Money {
        let fen = amount.fen() * i128::from(self.0) / i128::from(BP_WHOLE);
        Money::from_fen(fen).expect("a share of at most 100% of an amount is an amount")
    }
}

// Read back through `new`, so a stored share is checked like a requested one.
impl TryFrom<u16> for Bp {
    type Error = String;

    fn try_from(bp: u16) -> Result<Bp, String> {
        Bp::new(bp)
    }
}

impl fmt::Display for Bp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}%", self.0 / 100, self.0 % 100)
    }
}

/// One step of a programme's scale: the fund's share of the loss on loans up to `loan_up_to`
/// (inclusive) and above the previous tier's bound.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tier {
    pub loan_up_to: Money,
    pub fund_share: Bp,
}

/// The content of a programme, checked in itself: build it with `NewProgramme::new` from a
/// `ProgrammeDraft`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewProgramme {
    pub name: Name,
    /// Loans of pledges whose county lies in it are covered; any level.
    pub region: Region,
    pub budget_per_year: Money,
    /// Ascending by `loan_up_to`; the first tier that holds a loan's amount applies.
    pub tiers: Vec<Tier>,
    /// Of the loss, borne by an insurer (0: none).
    pub insurer_share: Bp,
    /// Of the loss, borne by a guarantor (0: none).
    pub guarantor_share: Bp,
    /// Of the loss, borne by the valuer that appraised the rights (0: none).
    pub valuer_share: Bp,
    /// The most the fund pays for one loan (pledge), across its claims not rejected; `None`: only
    /// the budget bounds it.
    pub cap_per_loan: Option<Money>,
    /// The most the fund pays in one budget year for the loans of one borrower (the pledgor);
    /// `None`: no such cap.
    pub cap_per_borrower_per_year: Option<Money>,
    /// A bank's yearly losses under the programme over its yearly lending in the region, above
    /// which the fund stops compensating it; `None`: no stop line.
    pub stop_line: Option<Bp>,
    /// Empty: every bank.
    pub eligible_banks: Vec<CreditCode>,
    /// Loans registered from `valid_from` to `valid_to` (inclusive) are covered.
    pub valid_from: NaiveDate,
    pub valid_to: NaiveDate,
}

/// A programme's content as a request states it, each field parsed but the rules across them
/// not yet checked: `NewProgramme::new` checks them (named fields, where ten positional arguments
/// could be swapped unnoticed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgrammeDraft {
    pub name: Name,
    pub region: Region,
    pub budget_per_year: Money,
    pub tiers: Vec<Tier>,
    pub insurer_share: Bp,
    pub guarantor_share: Bp,
    pub valuer_share: Bp,
    pub cap_per_loan: Option<Money>,
    pub cap_per_borrower_per_year: Option<Money>,
    pub stop_line: Option<Bp>,
    pub eligible_banks: Vec<CreditCode>,
    pub valid_from: NaiveDate,
    pub valid_to: NaiveDate,
}

/// The shares of the loss borne beside the fund's: the insurer's, the guarantor's and the valuer's.
#[derive(Debug, Clone, Copy)]
struct OtherShares {
    insurer: Bp,
    guarantor: Bp,
    valuer: Bp,
}

impl OtherShares {
    fn sum_bp(self) -> u16 {
        self.insurer.get() + self.guarantor.get() + self.valuer.get()
    }
}

/// The tiers' violations: each above the last, each fund share positive and, with the insurer's,
/// the guarantor's and the valuer's (`others`, checked once by the caller), within the loss.
fn tier_violations(tiers: &[Tier], shares: OtherShares, violations: &mut Vec<FieldViolation>) {
    let others = shares.sum_bp();
    let OtherShares { insurer: insurer_share, guarantor: guarantor_share, valuer: valuer_share } = shares;
    for (i, tier) in tiers.iter().enumerate() {
        if tier.loan_up_to.is_zero() {
            violations.push(FieldViolation::new(format!("tiers[{i}].loanUpTo"), "must be positive"));
        }
        if let Some(previous) = i.checked_sub(1).map(|p| &tiers[p])
            && tier.loan_up_to <= previous.loan_up_to
        {
            violations.push(FieldViolation::new(
                format!("tiers[{i}].loanUpTo"),
                format!("must be above the previous tier's {}", previous.loan_up_to),
            ));
        }
        if tier.fund_share == Bp::ZERO {
            violations.push(FieldViolation::new(format!("tiers[{i}].fundSharePercent"), "must be positive"));
        } else if others <= BP_WHOLE && tier.fund_share.get() + others > BP_WHOLE {
            violations.push(FieldViolation::new(
                format!("tiers[{i}].fundSharePercent"),
                format!(
                    "the shares of tier {i} add up to more than the loss: fund {}, insurer {insurer_share}, \
                     guarantor {guarantor_share}, valuer {valuer_share}",
                    tier.fund_share
                ),
            ));
        }
    }
}

/// The eligible banks' violations: a bound on their number, and none listed twice.
fn bank_violations(eligible_banks: &[CreditCode], violations: &mut Vec<FieldViolation>) {
    if eligible_banks.len() > ELIGIBLE_BANKS_MAX {
        violations.push(FieldViolation::new(
            "eligibleBanks",
            format!("at most {ELIGIBLE_BANKS_MAX} banks; leave it empty to admit every bank"),
        ));
        return;
    }
    let mut seen = std::collections::HashMap::with_capacity(eligible_banks.len());
    for (i, bank) in eligible_banks.iter().enumerate() {
        if let Some(first) = seen.insert(bank, i) {
            violations.push(FieldViolation::new(
                format!("eligibleBanks[{i}]"),
                format!("{bank} is listed twice (also eligibleBanks[{first}])"),
            ));
        }
    }
}

/// The caps' violations: each positive when set, and the cap per loan not above the cap per
/// borrower and year, which is not above the yearly budget. A larger cap than the one it sits
/// inside could never bind (a loan's claims under a programme are one borrower's, of one year; a
/// borrower's year is part of the budget's), so it can only be a mistake in the measure's figures;
/// the published measures nest them (Guangzhou 2023: 10 M ≤ 20 M ≤ 50 M).
fn cap_violations(
    (per_loan, per_borrower): (Option<Money>, Option<Money>),
    budget_per_year: Money,
    violations: &mut Vec<FieldViolation>,
) {
    for (field, cap) in [("capPerLoan", per_loan), ("capPerBorrowerPerYear", per_borrower)] {
        if cap.is_some_and(Money::is_zero) {
            violations.push(FieldViolation::new(field, "must be positive; leave it unset for no cap"));
        }
    }
    if let (Some(loan), Some(borrower)) = (per_loan, per_borrower)
        && loan > borrower
    {
        violations.push(FieldViolation::new(
            "capPerLoan",
            format!("must not be above capPerBorrowerPerYear {borrower}: a loan is one borrower's"),
        ));
    }
    let widest = per_borrower.or(per_loan).filter(|_| !budget_per_year.is_zero());
    if let Some(cap) = widest
        && cap > budget_per_year
    {
        let field = if per_borrower.is_some() { "capPerBorrowerPerYear" } else { "capPerLoan" };
        violations.push(FieldViolation::new(
            field,
            format!("must not be above budgetPerYear {budget_per_year}: the budget bounds every year's claims"),
        ));
    }
}

impl NewProgramme {
    /// Checks the rules that concern the content alone and collects every violation; `field`
    /// paths are relative to the programme (`tiers[1].loanUpTo`), for the transport to prefix.
    pub fn new(draft: ProgrammeDraft) -> Result<NewProgramme, LedgerError> {
        let ProgrammeDraft {
            name,
            region,
            budget_per_year,
            tiers,
            insurer_share,
            guarantor_share,
            valuer_share,
            cap_per_loan,
            cap_per_borrower_per_year,
            stop_line,
            eligible_banks,
            valid_from,
            valid_to,
        } = draft;
        let mut violations = Vec::new();
        if budget_per_year.is_zero() {
            violations.push(FieldViolation::new("budgetPerYear", "must be positive"));
        }
        if tiers.is_empty() {
            violations.push(FieldViolation::new("tiers", "a programme needs at least one tier"));
        }
        if tiers.len() > TIERS_MAX {
            violations.push(FieldViolation::new("tiers", format!("at most {TIERS_MAX} tiers per programme")));
        }
        // Checked once here rather than in every tier, so that ten tiers do not repeat one mistake.
        if insurer_share.get() + guarantor_share.get() > BP_WHOLE {
            violations.push(FieldViolation::new(
                "guarantorSharePercent",
                format!(
                    "insurerShare {insurer_share} and guarantorShare {guarantor_share} add up to more than the loss"
                ),
            ));
        }
        let shares = OtherShares { insurer: insurer_share, guarantor: guarantor_share, valuer: valuer_share };
        if insurer_share.get() + guarantor_share.get() <= BP_WHOLE && shares.sum_bp() > BP_WHOLE {
            violations.push(FieldViolation::new(
                "valuerSharePercent",
                format!(
                    "insurerShare {insurer_share}, guarantorShare {guarantor_share} and valuerShare {valuer_share} add \
                     up to more than the loss"
                ),
            ));
        }
        tier_violations(&tiers, shares, &mut violations);
        cap_violations((cap_per_loan, cap_per_borrower_per_year), budget_per_year, &mut violations);
        if stop_line == Some(Bp::ZERO) {
            // A zero line would refuse every claim; a programme without one leaves it unset.
            violations
                .push(FieldViolation::new("stopLinePercent", "must be positive; leave it unset for no stop line"));
        }
        bank_violations(&eligible_banks, &mut violations);
        if valid_to < valid_from {
            violations.push(FieldViolation::new("validTo", "must not be before validFrom"));
        }
        if !violations.is_empty() {
            return Err(LedgerError::invalid(violations));
        }
        Ok(NewProgramme {
            name,
            region,
            budget_per_year,
            tiers,
            insurer_share,
            guarantor_share,
            valuer_share,
            cap_per_loan,
            cap_per_borrower_per_year,
            stop_line,
            eligible_banks,
            valid_from,
            valid_to,
        })
    }

    /// The tier that covers a loan of `loan_amount`; `None` above the last one.
    pub fn tier_for(&self, loan_amount: Money) -> Option<&Tier> {
        self.tiers.iter().find(|t| loan_amount <= t.loan_up_to)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Programme {
    pub id: Uuid,
    pub content: NewProgramme,
    pub created_by: PrincipalName,
    pub create_time: Micros,
}

/// Which claim rules a claim is decided under. `Current`: the ledger's rules 1 on (journal entries
/// of `rules` 1). `Original`: a claim decided before them (`rules` 0), re-decided as it was then:
/// filed on any day, also after its programme ended, and checked against no stop line (the
/// measure of a bank's lending changed with rules 1 and the old one is not kept); its loan is the
/// pledge's amount when filed and no other claim counts against it (the ledger builds that basis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimRules {
    Original,
    Current,
}

/// What a claim is decided against: the ledger computes these from its state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClaimBasis {
    /// The pledgee filing.
    pub bank: CreditCode,
    /// The pledge's county.
    pub county: CountyCode,
    /// The loan's (pledge's) registration date.
    pub registered_on: NaiveDate,
    /// The pledge's secured amount when it defaulted (a change after the default is not the loan
    /// that defaulted): picks the tier.
    pub loan_amount: Money,
    /// Principal loss after disposal of the pledged rights: the default's loss at filing. The
    /// claim is approved only while the default's loss is still this, and paid only while it is
    /// not less (`Claim::approve`, `Claim::pay`).
    pub loss: Money,
    /// Business date of the claim; its year is the budget year.
    pub filed_on: NaiveDate,
    /// Fund amounts of the programme's claims of that year that were not rejected.
    pub committed_this_year: Money,
    /// Losses of this bank's claims under the programme that year, not rejected, before this one.
    pub bank_losses_this_year: Money,
    /// Secured amounts this bank lent that year within the programme's region (the ledger's
    /// rule: `ledger::risk_projector::lent`).
    pub bank_lending_this_year: Money,
    /// Fund parts of the pledge's other claims not rejected (under other programmes, nested or
    /// overlapping): one loss is compensated once, so this claim only tops them up to its rule.
    pub compensated_elsewhere: Money,
    /// Fund parts of the pledge's claims under this programme not rejected (against its cap per
    /// loan). The ledger fills it only for a programme with that cap (zero otherwise, so that a
    /// claim decided before caps existed is decided the same); with one claim per pledge and
    /// programme (`CLAIM_EXISTS`) it is zero there, and the cap bounds that one claim.
    pub loan_fund_before: Money,
    /// Fund parts of the programme's claims filed that year on the loans of this pledge's pledgor,
    /// not rejected (against its cap per borrower and year); filled only for a programme with
    /// that cap, as `loan_fund_before`.
    pub borrower_fund_this_year: Money,
}

/// Which limit lowered the fund's part below what its rule owes (after the pledge's other
/// claims), in the order they are applied: the cap per loan, the borrower's cap for the year, the
/// year's budget. When two bind at the same amount, the later (wider) is named: it is the one now
/// used up for the claims that share it (a borrower's second loan capped at both the loan's 10 M
/// and the 10 M left of the borrower's year names the borrower's year, which is now spent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FundCap {
    Loan,
    BorrowerYear,
    Budget,
}

impl FundCap {
    /// The API's name (`LOAN_CAP`, `BORROWER_YEAR_CAP`, `BUDGET`).
    pub fn api_name(self) -> &'static str {
        match self {
            FundCap::Loan => "LOAN_CAP",
            FundCap::BorrowerYear => "BORROWER_YEAR_CAP",
            FundCap::Budget => "BUDGET",
        }
    }
}

/// How a loss is split; `fund + insurer + guarantor + valuer + bank == loss` always.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Compensation {
    /// The share of the tier that applied (before any cap).
    pub fund_share: Bp,
    pub fund: Money,
    pub insurer: Money,
    pub guarantor: Money,
    pub valuer: Money,
    pub bank: Money,
    /// The fund paid less than it owed (its share, less what the pledge's other claims
    /// compensate) because the year's budget ran out: `capped_by == Some(FundCap::Budget)`, kept
    /// for the clients and entries from before the caps.
    pub capped_by_budget: bool,
    /// The limit that lowered the fund's part, if one did.
    pub capped_by: Option<FundCap>,
}

impl Programme {
    /// The budget of `year`: the yearly budget when the programme is valid in some of that year.
    pub fn budget_in(&self, year: i32) -> Money {
        let c = &self.content;
        if c.valid_from.year() <= year && year <= c.valid_to.year() { c.budget_per_year } else { Money::ZERO }
    }

    /// What is left of the budget of `year` after `committed_fen` (never below zero: a budget
    /// exceeded leaves nothing, it owes nothing).
    pub fn budget_left_in(&self, year: i32, committed_fen: i128) -> Money {
        Money::from_fen((self.budget_in(year).fen() - committed_fen).max(0)).unwrap_or(Money::ZERO)
    }

    /// How the fund, insurer, guarantor, valuer and bank share `basis.loss`, or why the programme
    /// does not compensate it.
    pub fn compensate(&self, basis: &ClaimBasis) -> Result<Compensation, LedgerError> {
        self.compensate_under(basis, ClaimRules::Current)
    }

    /// `compensate`, under `rules`: the programme covers the loan (`covering_tier`), the loss is
    /// one it can compensate, the bank's stop line, the caps and the year's budget allow it; then the
    /// split.
    pub fn compensate_under(&self, basis: &ClaimBasis, rules: ClaimRules) -> Result<Compensation, LedgerError> {
        let tier = self.covering_tier(basis, rules)?;
        if basis.loss.is_zero() {
            return Err(LedgerError::invalid_field("loss", "must be positive"));
        }
        if basis.loss > basis.loan_amount {
            return Err(LedgerError::refused(
                Reason::LOSS_EXCEEDS_LOAN,
                format!("the principal loss {} is above the loan of {}", basis.loss, basis.loan_amount),
            )
            .with("loss", basis.loss)
            .with("loanAmount", basis.loan_amount));
        }
        self.check_stop_line(basis, rules)?;
        let limits = self.limits_left(basis, rules)?;
        // One loss, one compensation: the pledge's other claims count against this one's rule, so
        // the fund parts of all its claims add up to the most generous rule's part at most.
        let by_rule = tier.fund_share.of_floor(basis.loss);
        let owed = by_rule.checked_sub(basis.compensated_elsewhere).unwrap_or(Money::ZERO);
        // The lowest limit below what is owed binds; of equal ones, the wider (`FundCap`).
        let mut fund = owed;
        let mut capped_by = None;
        for (cap, left) in limits {
            if left < owed && left <= fund {
                fund = left;
                capped_by = Some(cap);
            }
        }
        let c = &self.content;
        // Before the caps there was no valuer either: an old claim splits as it did.
        let valuer_share = if rules == ClaimRules::Current { c.valuer_share } else { Bp::ZERO };
        let insurer = c.insurer_share.of_floor(basis.loss);
        let guarantor = c.guarantor_share.of_floor(basis.loss);
        let valuer = valuer_share.of_floor(basis.loss);
        // The shares add up to at most 10000 bp and each part is rounded down, so the bank's part
        // is never negative.
        let others_fen = insurer.fen() + guarantor.fen() + valuer.fen();
        let bank = Money::from_fen(basis.loss.fen() - fund.fen() - others_fen)
            .expect("invariant: the parts of a loss are at most the loss");
        assert_eq!(fund.fen() + others_fen + bank.fen(), basis.loss.fen());
        assert!(fund <= owed && fund <= by_rule);
        let capped_by_budget = capped_by == Some(FundCap::Budget);
        Ok(Compensation {
            fund_share: tier.fund_share,
            fund,
            insurer,
            guarantor,
            valuer,
            bank,
            capped_by_budget,
            capped_by,
        })
    }

    /// What is left under each limit of the fund's part, in the order applied (the cap per loan,
    /// the borrower's cap for the year, the year's budget), each positive, or the refusal of the
    /// first that has nothing left. `ClaimRules::Original` knows only the budget.
    fn limits_left(&self, basis: &ClaimBasis, rules: ClaimRules) -> Result<Vec<(FundCap, Money)>, LedgerError> {
        let c = &self.content;
        let mut limits = Vec::with_capacity(3);
        let current = rules == ClaimRules::Current;
        if let Some(cap) = c.cap_per_loan.filter(|_| current) {
            let left_fen = cap.fen() - basis.loan_fund_before.fen();
            if left_fen <= 0 {
                return Err(LedgerError::refused(
                    Reason::LOAN_CAP_REACHED,
                    format!(
                        "programme {} pays at most {cap} for one loan, and its claims on this one come to {}",
                        self.id, basis.loan_fund_before
                    ),
                )
                .with("programmeId", self.id)
                .with("capPerLoan", cap)
                .with("fundOnLoan", basis.loan_fund_before));
            }
            limits.push((FundCap::Loan, Money::from_fen(left_fen).expect("positive and at most the cap")));
        }
        if let Some(cap) = c.cap_per_borrower_per_year.filter(|_| current) {
            limits.push((FundCap::BorrowerYear, self.borrower_left(basis, cap)?));
        }
        let budget_left = Money::from_fen(self.available_fen(basis)?).expect("positive and at most the budget");
        limits.push((FundCap::Budget, budget_left));
        Ok(limits)
    }

    /// What is left of the borrower's cap for the claim's year (positive), or
    /// `BORROWER_CAP_REACHED`.
    fn borrower_left(&self, basis: &ClaimBasis, cap: Money) -> Result<Money, LedgerError> {
        let year = basis.filed_on.year();
        let left_fen = cap.fen() - basis.borrower_fund_this_year.fen();
        if left_fen <= 0 {
            return Err(LedgerError::refused(
                Reason::BORROWER_CAP_REACHED,
                format!(
                    "programme {} pays at most {cap} a year for one borrower's loans, and its {year} claims on \
                     this borrower's loans come to {}",
                    self.id, basis.borrower_fund_this_year
                ),
            )
            .with("programmeId", self.id)
            .with("year", year)
            .with("capPerBorrowerPerYear", cap)
            .with("borrowerFund", basis.borrower_fund_this_year));
        }
        Ok(Money::from_fen(left_fen).expect("positive and at most the cap"))
    }

    /// The tier that covers the claim's loan, or why the programme does not cover it: the bank,
    /// the county, the loan's registration date, the filing date, the loan's amount.
    fn covering_tier(&self, basis: &ClaimBasis, rules: ClaimRules) -> Result<&Tier, LedgerError> {
        let c = &self.content;
        if !c.eligible_banks.is_empty() && !c.eligible_banks.contains(&basis.bank) {
            return Err(LedgerError::refused(
                Reason::BANK_NOT_ELIGIBLE,
                format!("bank {} is not among the banks of programme {}", basis.bank, self.id),
            )
            .with("programmeId", self.id)
            .with("bankCreditCode", &basis.bank));
        }
        if !c.region.contains(basis.county.region()) {
            return Err(LedgerError::refused(
                Reason::OUTSIDE_PROGRAMME_REGION,
                format!("county {} lies outside programme {}'s region {}", basis.county, self.id, c.region),
            )
            .with("programmeId", self.id)
            .with("countyCode", basis.county)
            .with("regionCode", c.region.code_string()));
        }
        if basis.registered_on < c.valid_from || basis.registered_on > c.valid_to {
            return Err(LedgerError::refused(
                Reason::LOAN_OUTSIDE_PROGRAMME_VALIDITY,
                format!(
                    "programme {} covers loans registered from {} to {}, not on {}",
                    self.id, c.valid_from, c.valid_to, basis.registered_on
                ),
            )
            .with("programmeId", self.id)
            .with("registeredOn", basis.registered_on)
            .with("validFrom", c.valid_from)
            .with("validTo", c.valid_to));
        }
        if basis.filed_on < c.valid_from {
            return Err(LedgerError::refused(
                Reason::PROGRAMME_NOT_YET_IN_FORCE,
                format!("programme {} is in force from {}, not on {}", self.id, c.valid_from, basis.filed_on),
            )
            .with("programmeId", self.id)
            .with("filedOn", basis.filed_on)
            .with("validFrom", c.valid_from));
        }
        // A programme pays from the budgets of the years it is in force; once it has ended, a
        // successor programme (or none) takes the claims, so a claim is filed while it runs.
        if basis.filed_on > c.valid_to && rules == ClaimRules::Current {
            return Err(LedgerError::refused(
                Reason::PROGRAMME_EXPIRED,
                format!("programme {} was in force until {}, not on {}", self.id, c.valid_to, basis.filed_on),
            )
            .with("programmeId", self.id)
            .with("filedOn", basis.filed_on)
            .with("validTo", c.valid_to));
        }
        c.tier_for(basis.loan_amount).ok_or_else(|| {
            let largest = c.tiers.last().expect("a programme has at least one tier").loan_up_to;
            LedgerError::refused(
                Reason::LOAN_ABOVE_TIERS,
                format!("programme {} covers loans up to {largest}, not {}", self.id, basis.loan_amount),
            )
            .with("programmeId", self.id)
            .with("loanAmount", basis.loan_amount)
            .with("largestLoan", largest)
        })
    }

    /// Refuses a claim that would take the bank's losses this year above the programme's stop
    /// line of what it lent in the region (current rules only).
    fn check_stop_line(&self, basis: &ClaimBasis, rules: ClaimRules) -> Result<(), LedgerError> {
        let c = &self.content;
        let year = basis.filed_on.year();
        if let Some(line) = c.stop_line.filter(|_| rules == ClaimRules::Current) {
            // losses / lending > line, multiplied out in fen so it stays exact; with no lending
            // every loss crosses the line. Both sides stay below 10^27, far inside i128.
            let losses_fen = basis.bank_losses_this_year.fen() + basis.loss.fen();
            let line_fen = basis.bank_lending_this_year.fen() * i128::from(line.get());
            if losses_fen * i128::from(BP_WHOLE) > line_fen {
                let losses = Money::from_fen(losses_fen).expect("a sum of two amounts");
                return Err(LedgerError::refused(
                    Reason::STOP_LINE_REACHED,
                    format!(
                        "bank {}'s losses under programme {} in {year} would reach {losses}, above {line} of the \
                         {} it lent in the region that year",
                        basis.bank, self.id, basis.bank_lending_this_year
                    ),
                )
                .with("programmeId", self.id)
                .with("bankCreditCode", &basis.bank)
                .with("year", year)
                .with("bankLosses", losses)
                .with("bankLending", basis.bank_lending_this_year)
                .with("stopLine", line));
            }
        }
        Ok(())
    }

    /// What is left of the year's budget, in fen (positive), or `BUDGET_EXHAUSTED`.
    fn available_fen(&self, basis: &ClaimBasis) -> Result<i128, LedgerError> {
        let c = &self.content;
        let year = basis.filed_on.year();
        // This rule never commits more than the budget, but the basis comes from the caller: above
        // the budget, nothing is available either.
        let available_fen = c.budget_per_year.fen() - basis.committed_this_year.fen();
        if available_fen <= 0 {
            return Err(LedgerError::refused(
                Reason::BUDGET_EXHAUSTED,
                format!(
                    "programme {} has committed {} of its {year} budget of {}",
                    self.id, basis.committed_this_year, c.budget_per_year
                ),
            )
            .with("programmeId", self.id)
            .with("year", year)
            .with("budgetPerYear", c.budget_per_year)
            .with("committed", basis.committed_this_year));
        }
        Ok(available_fen)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ClaimStatus {
    Filed,
    Approved,
    Rejected,
}

impl ClaimStatus {
    /// The API's name of the status (`FILED`, `APPROVED`, `REJECTED`): what a refusal's
    /// metadata and message say, as the resource shows it.
    pub fn api_name(self) -> &'static str {
        match self {
            ClaimStatus::Filed => "FILED",
            ClaimStatus::Approved => "APPROVED",
            ClaimStatus::Rejected => "REJECTED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    /// Business date of the decision.
    pub decided_on: NaiveDate,
    pub by: PrincipalName,
    /// Server time of the journal entry.
    pub at: Micros,
    pub note: Note,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Payment {
    pub paid_on: NaiveDate,
    pub amount: Money,
    pub by: PrincipalName,
    pub at: Micros,
}

/// A bank's claim on a programme for one pledge, as recorded: the split it was filed with, the
/// decision on it and the fund's payments.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claim {
    pub id: Uuid,
    pub programme_id: Uuid,
    pub pledge_id: Uuid,
    pub basis: ClaimBasis,
    pub compensation: Compensation,
    pub status: ClaimStatus,
    pub decision: Option<Decision>,
    pub payments: Vec<Payment>,
    pub filed_by: PrincipalName,
    pub create_time: Micros,
    pub update_time: Micros,
    pub version: u32,
}

impl Claim {
    /// A new claim with the split `programme` gives, or why the programme does not compensate it.
    /// `now` is the entry's time: a claim is filed on a day that has come in China, decided from
    /// the entry so that a replay of it decides the same.
    pub fn file(
        id: Uuid,
        programme: &Programme,
        pledge_id: Uuid,
        basis: ClaimBasis,
        by: PrincipalName,
        (now, rules): (Micros, ClaimRules),
    ) -> Result<Claim, LedgerError> {
        let today = china_date(now);
        if basis.filed_on > today && rules == ClaimRules::Current {
            return Err(LedgerError::invalid_field(
                "filedOn",
                format!("a claim is filed on a day that has come: must not be after today ({today}, China time)"),
            ));
        }
        let compensation = programme.compensate_under(&basis, rules)?;
        Ok(Claim {
            id,
            programme_id: programme.id,
            pledge_id,
            basis,
            compensation,
            status: ClaimStatus::Filed,
            decision: None,
            payments: Vec::new(),
            filed_by: by,
            create_time: now,
            update_time: now,
            version: 1,
        })
    }

    /// Approves the claim on the loss it was filed with, which must still be the default's loss
    /// (`loss_now`): on another loss the office rejects it and the bank files it again.
    pub fn approve(&self, decision: Decision, loss_now: Option<Money>) -> Result<Claim, LedgerError> {
        self.check_decision(&decision)?;
        if loss_now != Some(self.basis.loss) {
            return Err(self.basis_changed(loss_now, "approved on it: reject it, and the bank files it again"));
        }
        Ok(self.apply_decision(ClaimStatus::Approved, decision))
    }

    /// The refusal to approve or pay a claim on a loss that is no longer the default's; `why` says
    /// what is refused and what follows.
    fn basis_changed(&self, loss_now: Option<Money>, why: &str) -> LedgerError {
        let now = loss_now.map_or_else(|| "unknown".to_owned(), |l| l.to_string());
        LedgerError::refused(
            Reason::CLAIM_BASIS_CHANGED,
            format!(
                "claim {} was filed on a loss of {}, and the default's loss is now {now}: it is not {why}",
                self.id, self.basis.loss
            ),
        )
        .with("claimId", self.id)
        .with("claimLoss", self.basis.loss)
        .with("loss", now)
    }

    pub fn reject(&self, decision: Decision) -> Result<Claim, LedgerError> {
        self.check_decision(&decision)?;
        Ok(self.apply_decision(ClaimStatus::Rejected, decision))
    }

    fn check_decision(&self, decision: &Decision) -> Result<(), LedgerError> {
        if let Some(earlier) = &self.decision {
            return Err(LedgerError::refused(
                Reason::CLAIM_ALREADY_DECIDED,
                format!("claim {} was {} on {}", self.id, self.status.api_name(), earlier.decided_on),
            )
            .with("claimId", self.id)
            .with("status", self.status.api_name())
            .with("decidedOn", earlier.decided_on));
        }
        if decision.decided_on < self.basis.filed_on {
            return Err(LedgerError::invalid_field(
                "decidedOn",
                format!("must not be before the claim was filed on {}", self.basis.filed_on),
            ));
        }
        Ok(())
    }

    /// The claim after a decision that was accepted: how the journal's decision entries are applied.
    pub fn apply_decision(&self, status: ClaimStatus, decision: Decision) -> Claim {
        debug_assert!(self.status == ClaimStatus::Filed && status != ClaimStatus::Filed);
        let mut next = self.clone();
        next.status = status;
        next.update_time = decision.at;
        next.decision = Some(decision);
        next.version += 1;
        next
    }

    /// Records a payment of an approved claim while the default's loss (`loss_now`) is at least
    /// the loss it was approved on: the fund's part of a smaller final loss is smaller than what
    /// was approved, so nothing more is paid on it.
    pub fn pay(&self, payment: Payment, loss_now: Option<Money>) -> Result<Claim, LedgerError> {
        let decision = match (&self.status, &self.decision) {
            (ClaimStatus::Approved, Some(decision)) => decision,
            _ => {
                return Err(LedgerError::refused(
                    Reason::CLAIM_NOT_APPROVED,
                    format!("claim {} is {}; only an approved claim is paid", self.id, self.status.api_name()),
                )
                .with("claimId", self.id)
                .with("status", self.status.api_name()));
            }
        };
        if loss_now.is_none_or(|loss| loss < self.basis.loss) {
            return Err(self.basis_changed(loss_now, "paid on it: the fund owes less on a smaller loss"));
        }
        if self.payments.len() >= PAYMENTS_PER_CLAIM_MAX {
            return Err(LedgerError::refused(
                Reason::PAYMENTS_LIMIT_REACHED,
                format!("a claim is paid in at most {PAYMENTS_PER_CLAIM_MAX} payments"),
            )
            .with("claimId", self.id));
        }
        if payment.amount.is_zero() {
            return Err(LedgerError::invalid_field("amount", "must be positive"));
        }
        if payment.paid_on < decision.decided_on {
            return Err(LedgerError::invalid_field(
                "paidOn",
                format!("must not be before the claim was approved on {}", decision.decided_on),
            ));
        }
        let paid = self.paid();
        let total = paid.checked_add(payment.amount);
        if total.is_none_or(|t| t > self.compensation.fund) {
            let remaining = self.compensation.fund.checked_sub(paid).expect("invariant: paid <= fund");
            return Err(LedgerError::refused(
                Reason::PAYMENT_EXCEEDS_COMPENSATION,
                format!(
                    "claim {} has {remaining} left to pay of {}, not {}",
                    self.id, self.compensation.fund, payment.amount
                ),
            )
            .with("claimId", self.id)
            .with("fund", self.compensation.fund)
            .with("paid", paid)
            .with("amount", payment.amount));
        }
        Ok(self.apply_payment(payment))
    }

    /// The claim after a payment that was accepted.
    pub fn apply_payment(&self, payment: Payment) -> Claim {
        let mut next = self.clone();
        next.update_time = payment.at;
        next.payments.push(payment);
        next.version += 1;
        next
    }

    pub fn paid(&self) -> Money {
        self.payments.iter().fold(Money::ZERO, |sum, p| sum.checked_add(p.amount).expect("invariant: paid <= fund"))
    }

    /// What counts against the programme's budget: the fund's part unless the claim was rejected.
    pub fn committed(&self) -> Money {
        match self.status {
            ClaimStatus::Rejected => Money::ZERO,
            ClaimStatus::Filed | ClaimStatus::Approved => self.compensation.fund,
        }
    }

    /// This claim as it was right after the journal entry written at `at` that touched it (its
    /// filing, its decision or a payment): every version is in the record, since a decision and
    /// payments only add to it. `None` before it was filed.
    pub fn as_at(&self, at: Micros) -> Option<Claim> {
        if at < self.create_time {
            return None;
        }
        let mut version = self.clone();
        version.status = ClaimStatus::Filed;
        version.decision = None;
        version.payments.clear();
        version.update_time = self.create_time;
        version.version = 1;
        if let Some(decision) = self.decision.as_ref().filter(|d| d.at <= at) {
            version = version.apply_decision(self.status, decision.clone());
        }
        Some(self.payments.iter().take_while(|p| p.at <= at).fold(version, |c, p| c.apply_payment(p.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::text::parse_date;

    /// An amount as written in the tables, zero included (which requests cannot give).
    fn money(yuan: &str) -> Money {
        if yuan.bytes().all(|b| b == b'0' || b == b'.') { Money::ZERO } else { Money::parse_positive(yuan).unwrap() }
    }

    fn date(text: &str) -> NaiveDate {
        parse_date(text).unwrap()
    }

    fn bp(bp: u16) -> Bp {
        Bp::new(bp).unwrap()
    }

    fn bank(n: u32) -> CreditCode {
        CreditCode::complete(&format!("914401{n:011}")).unwrap()
    }

    fn me() -> PrincipalName {
        PrincipalName::parse("fund").unwrap()
    }

    /// What a result comes to, as one line: an accepted value as `show` writes it, a refusal as
    /// its reason, an invalid request as its reason and the fields it names.
    fn check<T>(case: &str, got: Result<T, LedgerError>, show: impl Fn(&T) -> String, expected: &str) {
        let got = match got {
            Ok(value) => show(&value),
            Err(LedgerError::Invalid { reason, violations }) => std::iter::once(reason.as_str().to_owned())
                .chain(violations.into_iter().map(|v| v.field))
                .collect::<Vec<_>>()
                .join(" "),
            Err(e) => e.reason().to_owned(),
        };
        assert_eq!(got, expected, "{case}");
    }

    /// A split as one line; the valuer's part when there is one, and the limit that bound (the
    /// budget as `capped`, as before the caps).
    fn split(c: &Compensation) -> String {
        assert_eq!(c.capped_by_budget, c.capped_by == Some(FundCap::Budget));
        let capped = match c.capped_by {
            None => String::new(),
            Some(FundCap::Budget) => " capped".to_owned(),
            Some(cap) => format!(" capped by {}", cap.api_name()),
        };
        let valuer = if c.valuer.is_zero() { String::new() } else { format!(" valuer {}", c.valuer) };
        format!(
            "{} fund {} insurer {} guarantor {}{valuer} bank {}{capped}",
            c.fund_share, c.fund, c.insurer, c.guarantor, c.bank
        )
    }

    /// The parts of Guangzhou's 2025 mechanism: 40% up to 5 M, 30% up to 15 M, 20% up to 30 M.
    const GUANGZHOU_TIERS: &[(&str, u16)] = &[("5000000.00", 4000), ("15000000.00", 3000), ("30000000.00", 2000)];

    #[allow(clippy::too_many_arguments)]
    fn draft(
        region: &str,
        budget: &str,
        tiers: &[(&str, u16)],
        insurer: u16,
        guarantor: u16,
        stop_line: Option<u16>,
        banks: Vec<CreditCode>,
        valid: (&str, &str),
    ) -> Result<NewProgramme, LedgerError> {
        NewProgramme::new(ProgrammeDraft {
            name: Name::parse("IP pledge risk compensation").unwrap(),
            region: Region::parse(region).unwrap(),
            budget_per_year: money(budget),
            tiers: tiers
                .iter()
                .map(|&(up_to, share)| Tier { loan_up_to: money(up_to), fund_share: bp(share) })
                .collect(),
            insurer_share: bp(insurer),
            guarantor_share: bp(guarantor),
            valuer_share: Bp::ZERO,
            cap_per_loan: None,
            cap_per_borrower_per_year: None,
            stop_line: stop_line.map(bp),
            eligible_banks: banks,
            valid_from: date(valid.0),
            valid_to: date(valid.1),
        })
    }

    fn programme(content: NewProgramme) -> Programme {
        Programme { id: Uuid::from_u128(7), content, created_by: me(), create_time: 1 }
    }

    fn guangzhou() -> Programme {
        let content =
            draft("440100", "1500000000.00", GUANGZHOU_TIERS, 0, 0, Some(300), vec![], ("2025-01-01", "2027-12-31"));
        programme(content.unwrap())
    }

    /// A claim of bank 1 in Tianhe, Guangzhou, well inside every limit unless a case says otherwise.
    fn basis(loan: &str, loss: &str) -> ClaimBasis {
        ClaimBasis {
            bank: bank(1),
            county: CountyCode::parse("440106").unwrap(),
            registered_on: date("2025-03-01"),
            loan_amount: money(loan),
            loss: money(loss),
            filed_on: date("2025-09-01"),
            committed_this_year: Money::ZERO,
            bank_losses_this_year: Money::ZERO,
            bank_lending_this_year: money("1000000000.00"),
            compensated_elsewhere: Money::ZERO,
            loan_fund_before: Money::ZERO,
            borrower_fund_this_year: Money::ZERO,
        }
    }

    #[test]
    fn shares_are_basis_points() {
        assert_eq!(Bp::new(0), Ok(Bp::ZERO));
        assert_eq!(Bp::new(10_000).map(Bp::get), Ok(10_000));
        assert!(Bp::new(10_001).is_err());
        assert_eq!(bp(4000).to_string(), "40.00%");
        assert_eq!(bp(250).to_string(), "2.50%");
        assert_eq!(serde_json::from_str::<Bp>("10000").unwrap(), bp(10_000));
        assert!(serde_json::from_str::<Bp>("10001").is_err(), "a stored share is checked when read back");
    }

    #[test]
    fn guangzhou_tiers() {
        let gz = guangzhou();
        let cases = [
            (
                "40% of a 4 M loan",
                "4000000.00",
                "1000000.00",
                "40.00% fund 400000.00 insurer 0.00 guarantor 0.00 bank 600000.00",
            ),
            (
                "30% of a 10 M loan",
                "10000000.00",
                "3000000.00",
                "30.00% fund 900000.00 insurer 0.00 guarantor 0.00 bank 2100000.00",
            ),
            (
                "the bound is in its tier",
                "5000000.00",
                "5000000.00",
                "40.00% fund 2000000.00 insurer 0.00 guarantor 0.00 bank 3000000.00",
            ),
            (
                "one fen above is the next",
                "5000000.01",
                "1000000.00",
                "30.00% fund 300000.00 insurer 0.00 guarantor 0.00 bank 700000.00",
            ),
            (
                "the last tier's bound",
                "30000000.00",
                "30000000.00",
                "20.00% fund 6000000.00 insurer 0.00 guarantor 0.00 bank 24000000.00",
            ),
            ("above the last tier", "30000000.01", "1.00", "LOAN_ABOVE_TIERS"),
            ("31 M", "31000000.00", "1000000.00", "LOAN_ABOVE_TIERS"),
            (
                "rounded down to the fen",
                "4000000.00",
                "1234567.89",
                "40.00% fund 493827.15 insurer 0.00 guarantor 0.00 bank 740740.74",
            ),
            ("a fen's 40% is nothing", "4000000.00", "0.01", "40.00% fund 0.00 insurer 0.00 guarantor 0.00 bank 0.01"),
            (
                "the whole loan lost",
                "4000000.00",
                "4000000.00",
                "40.00% fund 1600000.00 insurer 0.00 guarantor 0.00 bank 2400000.00",
            ),
            ("more lost than lent", "4000000.00", "4000000.01", "LOSS_EXCEEDS_LOAN"),
            ("nothing lost", "4000000.00", "0", "INVALID_FIELDS loss"),
        ];
        for (case, loan, loss, expected) in cases {
            check(case, gz.compensate(&basis(loan, loss)), split, expected);
        }
    }

    #[test]
    fn three_and_four_way_splits() {
        let qingdao = |guarantor| {
            let content = draft(
                "370200",
                "100000000.00",
                &[("10000000.00", 4000)],
                3000,
                guarantor,
                None,
                vec![],
                ("2024-01-01", "2026-12-31"),
            );
            programme(content.unwrap())
        };
        let in_laoshan =
            |loss| ClaimBasis { county: CountyCode::parse("370212").unwrap(), ..basis("8000000.00", loss) };
        let cases = [
            (0, "1000000.00", "40.00% fund 400000.00 insurer 300000.00 guarantor 0.00 bank 300000.00"),
            (0, "1234567.89", "40.00% fund 493827.15 insurer 370370.36 guarantor 0.00 bank 370370.38"),
            (0, "0.03", "40.00% fund 0.01 insurer 0.00 guarantor 0.00 bank 0.02"),
            (2000, "0.99", "40.00% fund 0.39 insurer 0.29 guarantor 0.19 bank 0.12"),
            (3000, "7654321.07", "40.00% fund 3061728.42 insurer 2296296.32 guarantor 2296296.32 bank 0.01"),
        ];
        for (guarantor, loss, expected) in cases {
            check(
                &format!("guarantor {guarantor} loss {loss}"),
                qingdao(guarantor).compensate(&in_laoshan(loss)),
                split,
                expected,
            );
        }
    }

    #[test]
    fn budget_and_stop_line() {
        let gz = guangzhou();
        let with = |committed: &str, losses: &str, lending: &str, loss: &str| ClaimBasis {
            committed_this_year: money(committed),
            bank_losses_this_year: money(losses),
            bank_lending_this_year: money(lending),
            ..basis("4000000.00", loss)
        };
        let cases = [
            (
                "200,000 left of the budget",
                with("1499800000.00", "0", "1000000000", "1000000.00"),
                "40.00% fund 200000.00 insurer 0.00 guarantor 0.00 bank 800000.00 capped",
            ),
            (
                "0.01 left",
                with("1499999999.99", "0", "1000000000", "1000000.00"),
                "40.00% fund 0.01 insurer 0.00 guarantor 0.00 bank 999999.99 capped",
            ),
            (
                "exactly the fund left",
                with("1499600000.00", "0", "1000000000", "1000000.00"),
                "40.00% fund 400000.00 insurer 0.00 guarantor 0.00 bank 600000.00",
            ),
            ("budget spent", with("1500000000.00", "0", "1000000000", "1000000.00"), "BUDGET_EXHAUSTED"),
            ("budget overspent", with("1500000000.01", "0", "1000000000", "1000000.00"), "BUDGET_EXHAUSTED"),
            // 3% of 100 M is 3 M.
            (
                "just at the stop line",
                with("0", "2000000.00", "100000000.00", "1000000.00"),
                "40.00% fund 400000.00 insurer 0.00 guarantor 0.00 bank 600000.00",
            ),
            ("1 fen over the stop line", with("0", "2000000.01", "100000000.00", "1000000.00"), "STOP_LINE_REACHED"),
            // 3% of 3,333,333.33 is 99,999.9999: a line between two fen.
            (
                "just under a line between fen",
                with("0", "0", "3333333.33", "99999.99"),
                "40.00% fund 39999.99 insurer 0.00 guarantor 0.00 bank 60000.00",
            ),
            ("just over a line between fen", with("0", "0", "3333333.33", "100000.00"), "STOP_LINE_REACHED"),
            ("no lending", with("0", "0", "0", "0.01"), "STOP_LINE_REACHED"),
            ("the stop line before the budget", with("1500000000.00", "0", "0", "0.01"), "STOP_LINE_REACHED"),
        ];
        for (case, claim, expected) in cases {
            check(case, gz.compensate(&claim), split, expected);
        }
        let mut no_line = guangzhou();
        no_line.content.stop_line = None;
        check(
            "no stop line",
            no_line.compensate(&with("0", "0", "0", "0.01")),
            split,
            "40.00% fund 0.00 insurer 0.00 guarantor 0.00 bank 0.01",
        );
    }

    #[test]
    fn who_where_and_when() {
        let mut only_bank_2 = guangzhou();
        only_bank_2.content.eligible_banks = vec![bank(2), bank(3)];
        let at = |county: &str, registered: &str, filed: &str| ClaimBasis {
            county: CountyCode::parse(county).unwrap(),
            registered_on: date(registered),
            filed_on: date(filed),
            ..basis("4000000.00", "1000000.00")
        };
        let allowed = "40.00% fund 400000.00 insurer 0.00 guarantor 0.00 bank 600000.00";
        let cases = [
            ("bank 1 is not listed", &only_bank_2, &at("440106", "2025-03-01", "2025-09-01"), "BANK_NOT_ELIGIBLE"),
            (
                "bank 3 is",
                &only_bank_2,
                &ClaimBasis { bank: bank(3), ..at("440106", "2025-03-01", "2025-09-01") },
                allowed,
            ),
            ("an empty list admits every bank", &guangzhou(), &at("440106", "2025-03-01", "2025-09-01"), allowed),
            ("Hangzhou", &guangzhou(), &at("330108", "2025-03-01", "2025-09-01"), "OUTSIDE_PROGRAMME_REGION"),
            (
                "Dongguan, next door",
                &guangzhou(),
                &at("441900", "2025-03-01", "2025-09-01"),
                "OUTSIDE_PROGRAMME_REGION",
            ),
            ("registered the first day", &guangzhou(), &at("440106", "2025-01-01", "2025-09-01"), allowed),
            ("registered the last day", &guangzhou(), &at("440106", "2027-12-31", "2027-12-31"), allowed),
            (
                "registered the day before",
                &guangzhou(),
                &at("440106", "2024-12-31", "2025-09-01"),
                "LOAN_OUTSIDE_PROGRAMME_VALIDITY",
            ),
            (
                "registered the day after",
                &guangzhou(),
                &at("440106", "2028-01-01", "2028-03-01"),
                "LOAN_OUTSIDE_PROGRAMME_VALIDITY",
            ),
            ("filed the programme's last day", &guangzhou(), &at("440106", "2025-03-01", "2027-12-31"), allowed),
            (
                "filed the day after the programme",
                &guangzhou(),
                &at("440106", "2025-03-01", "2028-01-01"),
                "PROGRAMME_EXPIRED",
            ),
            (
                "filed years after the programme",
                &guangzhou(),
                &at("440106", "2025-03-01", "2031-01-05"),
                "PROGRAMME_EXPIRED",
            ),
            (
                "filed before the programme",
                &guangzhou(),
                &at("440106", "2025-01-01", "2024-12-31"),
                "PROGRAMME_NOT_YET_IN_FORCE",
            ),
        ];
        for (case, programme, claim, expected) in cases {
            check(case, programme.compensate(claim), split, expected);
        }
        // A claim decided before rules 1 is decided again as it was: filed after the programme.
        let late = at("440106", "2025-03-01", "2031-01-05");
        assert!(guangzhou().compensate_under(&late, ClaimRules::Original).is_ok());
        assert!(guangzhou().compensate_under(&late, ClaimRules::Current).is_err());
    }

    // Longer than ~70 lines: a test table of every content rule of a programme.
    #[test]
    fn programme_content_rules() {
        let gz = |tiers, insurer, guarantor, stop_line, banks| {
            draft("440100", "1500000000.00", tiers, insurer, guarantor, stop_line, banks, ("2025-01-01", "2027-12-31"))
        };
        let many_banks: Vec<CreditCode> = (0..=ELIGIBLE_BANKS_MAX as u32).map(bank).collect();
        let eleven: Vec<(String, u16)> = (1..=11).map(|m| (format!("{m}000000.00"), 1000)).collect();
        let eleven: Vec<(&str, u16)> = eleven.iter().map(|(up_to, share)| (up_to.as_str(), *share)).collect();
        let shown = |p: &NewProgramme| format!("tiers: {}", p.tiers.len());
        let cases = [
            ("Guangzhou", gz(GUANGZHOU_TIERS, 0, 0, Some(300), vec![]), "tiers: 3"),
            ("the whole loss shared", gz(&[("1.00", 4000)], 3000, 3000, None, vec![bank(1)]), "tiers: 1"),
            ("the fund bears everything", gz(&[("1.00", 10_000)], 0, 0, None, vec![]), "tiers: 1"),
            ("ten tiers", gz(&eleven[..TIERS_MAX], 0, 0, None, vec![]), "tiers: 10"),
            (
                "no budget",
                draft("440100", "0", GUANGZHOU_TIERS, 0, 0, None, vec![], ("2025-01-01", "2025-01-01")),
                "INVALID_FIELDS budgetPerYear",
            ),
            ("no tiers", gz(&[], 0, 0, None, vec![]), "INVALID_FIELDS tiers"),
            ("eleven tiers", gz(&eleven, 0, 0, None, vec![]), "INVALID_FIELDS tiers"),
            ("a tier of nothing", gz(&[("0.00", 4000)], 0, 0, None, vec![]), "INVALID_FIELDS tiers[0].loanUpTo"),
            (
                "a repeated bound",
                gz(&[("5000000.00", 4000), ("5000000.00", 3000)], 0, 0, None, vec![]),
                "INVALID_FIELDS tiers[1].loanUpTo",
            ),
            (
                "bounds descending",
                gz(&[("15000000.00", 3000), ("5000000.00", 4000), ("30000000.00", 2000)], 0, 0, None, vec![]),
                "INVALID_FIELDS tiers[1].loanUpTo",
            ),
            (
                "a tier without a share",
                gz(&[("5000000.00", 4000), ("15000000.00", 0)], 0, 0, None, vec![]),
                "INVALID_FIELDS tiers[1].fundSharePercent",
            ),
            (
                "40% + 30% + 30.01%",
                gz(GUANGZHOU_TIERS, 3000, 3001, None, vec![]),
                "INVALID_FIELDS tiers[0].fundSharePercent",
            ),
            (
                "every tier over",
                gz(GUANGZHOU_TIERS, 8001, 0, None, vec![]),
                "INVALID_FIELDS tiers[0].fundSharePercent tiers[1].fundSharePercent tiers[2].fundSharePercent",
            ),
            (
                "insurer and guarantor alone over",
                gz(GUANGZHOU_TIERS, 6000, 4001, None, vec![]),
                "INVALID_FIELDS guarantorSharePercent",
            ),
            ("a stop line of zero", gz(GUANGZHOU_TIERS, 0, 0, Some(0), vec![]), "INVALID_FIELDS stopLinePercent"),
            (
                "a bank listed twice",
                gz(GUANGZHOU_TIERS, 0, 0, None, vec![bank(1), bank(2), bank(1)]),
                "INVALID_FIELDS eligibleBanks[2]",
            ),
            ("too many banks", gz(GUANGZHOU_TIERS, 0, 0, None, many_banks.clone()), "INVALID_FIELDS eligibleBanks"),
            (
                "as many banks as allowed",
                gz(GUANGZHOU_TIERS, 0, 0, None, many_banks[..ELIGIBLE_BANKS_MAX].to_vec()),
                "tiers: 3",
            ),
            (
                "ends before it starts",
                draft("440100", "1.00", GUANGZHOU_TIERS, 0, 0, None, vec![], ("2025-01-01", "2024-12-31")),
                "INVALID_FIELDS validTo",
            ),
            (
                "everything at once",
                draft(
                    "440100",
                    "0",
                    &[("5000000.00", 0), ("1.00", 4000)],
                    7000,
                    0,
                    Some(0),
                    vec![bank(1), bank(1)],
                    ("2025-01-01", "2024-12-31"),
                ),
                "INVALID_FIELDS budgetPerYear tiers[0].fundSharePercent tiers[1].loanUpTo tiers[1].fundSharePercent stopLinePercent eligibleBanks[1] validTo",
            ),
        ];
        for (case, got, expected) in cases {
            check(case, got, shown, expected);
        }
    }

    #[test]
    fn refusals_name_what_is_involved() {
        let claim = ClaimBasis {
            bank_losses_this_year: money("2000000.01"),
            bank_lending_this_year: money("100000000.00"),
            ..basis("4000000.00", "1000000.00")
        };
        let LedgerError::Refused { message, metadata, .. } = guangzhou().compensate(&claim).unwrap_err() else {
            panic!("a refusal")
        };
        assert!(message.contains("3000000.01, above 3.00% of the 100000000.00"), "{message}");
        let keys: Vec<_> = metadata.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["programmeId", "bankCreditCode", "year", "bankLosses", "bankLending", "stopLine"]);
        let claim = ClaimBasis { committed_this_year: money("1500000000.00"), ..basis("4000000.00", "1.00") };
        let LedgerError::Refused { metadata, .. } = guangzhou().compensate(&claim).unwrap_err() else {
            panic!("a refusal")
        };
        assert_eq!(metadata[1], ("year", "2025".to_owned()));
    }

    /// 2026-01-01T00:00:00Z: the entries of these claims are written from then on (`T0 + at`), so
    /// that the 2025 filings are in the past.
    const T0: Micros = 1_767_225_600_000_000;

    fn decision(on: &str, at: Micros) -> Decision {
        Decision { decided_on: date(on), by: me(), at: T0 + at, note: Note::parse("checked the disposal").unwrap() }
    }

    fn payment(on: &str, amount: &str, at: Micros) -> Payment {
        Payment { paid_on: date(on), amount: money(amount), by: me(), at: T0 + at }
    }

    fn state(c: &Claim) -> String {
        format!("v{} {:?} paid {} committed {} at {}", c.version, c.status, c.paid(), c.committed(), c.update_time - T0)
    }

    /// The default's loss in the tables' basis, as the ledger passes it to approvals and payments.
    fn unchanged() -> Option<Money> {
        Some(money("1000000.00"))
    }

    // Longer than ~70 lines: a test walking one claim through its whole life, step by step.
    #[test]
    fn life_of_a_claim() {
        let gz = guangzhou();
        let file = |basis| {
            Claim::file(Uuid::from_u128(1), &gz, Uuid::from_u128(2), basis, me(), (T0 + 10, ClaimRules::Current))
        };
        check("over the tiers", file(basis("40000000.00", "1.00")), state, "LOAN_ABOVE_TIERS");
        let filed = file(basis("4000000.00", "1000000.00")).unwrap();
        check("filed", Ok(filed.clone()), state, "v1 Filed paid 0.00 committed 400000.00 at 10");
        check(
            "paid before approval",
            filed.pay(payment("2025-10-01", "1.00", 20), unchanged()),
            state,
            "CLAIM_NOT_APPROVED",
        );
        check(
            "decided before filing",
            filed.approve(decision("2025-08-31", 20), unchanged()),
            state,
            "INVALID_FIELDS decidedOn",
        );
        let approved = filed.approve(decision("2025-09-01", 20), unchanged()).unwrap();
        check("approved", Ok(approved.clone()), state, "v2 Approved paid 0.00 committed 400000.00 at 20");
        check(
            "approved twice",
            approved.approve(decision("2025-09-02", 30), unchanged()),
            state,
            "CLAIM_ALREADY_DECIDED",
        );
        check("rejected after approval", approved.reject(decision("2025-09-02", 30)), state, "CLAIM_ALREADY_DECIDED");
        check(
            "paid before the decision",
            approved.pay(payment("2025-08-31", "1.00", 30), unchanged()),
            state,
            "INVALID_FIELDS paidOn",
        );
        check(
            "paid nothing",
            approved.pay(Payment { amount: Money::ZERO, ..payment("2025-10-01", "1.00", 30) }, unchanged()),
            state,
            "INVALID_FIELDS amount",
        );
        check(
            "paid more than the fund's part",
            approved.pay(payment("2025-10-01", "400000.01", 30), unchanged()),
            state,
            "PAYMENT_EXCEEDS_COMPENSATION",
        );
        let once = approved.pay(payment("2025-10-01", "150000.00", 30), unchanged()).unwrap();
        check("paid once", Ok(once.clone()), state, "v3 Approved paid 150000.00 committed 400000.00 at 30");
        check(
            "overpaid",
            once.pay(payment("2025-11-01", "250000.01", 40), unchanged()),
            state,
            "PAYMENT_EXCEEDS_COMPENSATION",
        );
        let twice = once.pay(payment("2025-11-01", "250000.00", 40), unchanged()).unwrap();
        check("paid in full", Ok(twice.clone()), state, "v4 Approved paid 400000.00 committed 400000.00 at 40");
        check(
            "paid beyond the full",
            twice.pay(payment("2025-11-02", "0.01", 50), unchanged()),
            state,
            "PAYMENT_EXCEEDS_COMPENSATION",
        );

        let rejected = filed.reject(decision("2025-09-03", 20)).unwrap();
        check("rejected", Ok(rejected.clone()), state, "v2 Rejected paid 0.00 committed 0.00 at 20");
        check(
            "approved after rejection",
            rejected.approve(decision("2025-09-04", 30), unchanged()),
            state,
            "CLAIM_ALREADY_DECIDED",
        );
        check(
            "paid after rejection",
            rejected.pay(payment("2025-10-01", "1.00", 30), unchanged()),
            state,
            "CLAIM_NOT_APPROVED",
        );

        let mut many = approved.clone();
        for i in 0..PAYMENTS_PER_CLAIM_MAX as i64 {
            many = many.pay(payment("2025-10-01", "1.00", 30 + i), unchanged()).unwrap();
        }
        check(
            "one payment too many",
            many.pay(payment("2025-10-01", "1.00", 100), unchanged()),
            state,
            "PAYMENTS_LIMIT_REACHED",
        );

        let stored: Claim = postcard::from_bytes(&postcard::to_allocvec(&twice).unwrap()).unwrap();
        assert_eq!(stored, twice);
    }

    #[test]
    fn every_version_of_a_claim_is_in_its_record() {
        let filed = Claim::file(
            Uuid::nil(),
            &guangzhou(),
            Uuid::nil(),
            basis("10000000.00", "3000000.00"),
            me(),
            (T0 + 10, ClaimRules::Current),
        )
        .unwrap();
        let loss = Some(money("3000000.00"));
        let approved = filed.approve(decision("2025-09-10", 20), loss).unwrap();
        let mut paid = vec![filed, approved];
        for (at, amount) in [(30, "500000.00"), (40, "300000.00"), (50, "100000.00")] {
            let next = paid.last().unwrap().pay(payment("2025-10-01", amount, at), loss).unwrap();
            paid.push(next);
        }
        let rejected = paid[0].reject(decision("2025-09-10", 20)).unwrap();
        for versions in [&paid[..], &[paid[0].clone(), rejected]] {
            let last = versions.last().unwrap();
            assert_eq!(last.as_at(T0 + 9), None, "before the filing");
            for version in versions {
                assert_eq!(last.as_at(version.update_time).as_ref(), Some(version), "version {}", version.version);
                assert_eq!(last.as_at(version.update_time + 5).as_ref(), Some(version), "between entries");
            }
        }
    }

    #[test]
    fn one_loss_is_compensated_once() {
        let gz = guangzhou();
        let elsewhere =
            |amount: &str| ClaimBasis { compensated_elsewhere: money(amount), ..basis("4000000.00", "1000000.00") };
        let cases = [
            ("no other claim", elsewhere("0"), "40.00% fund 400000.00 insurer 0.00 guarantor 0.00 bank 600000.00"),
            (
                "another programme paid 30%: topped up to 40%",
                elsewhere("300000.00"),
                "40.00% fund 100000.00 insurer 0.00 guarantor 0.00 bank 900000.00",
            ),
            (
                "another paid just under 40%",
                elsewhere("399999.99"),
                "40.00% fund 0.01 insurer 0.00 guarantor 0.00 bank 999999.99",
            ),
            (
                "another paid 40%",
                elsewhere("400000.00"),
                "40.00% fund 0.00 insurer 0.00 guarantor 0.00 bank 1000000.00",
            ),
            (
                "another paid 60%",
                elsewhere("600000.00"),
                "40.00% fund 0.00 insurer 0.00 guarantor 0.00 bank 1000000.00",
            ),
        ];
        for (case, claim, expected) in cases {
            check(case, gz.compensate(&claim), split, expected);
        }
        // What is left of the budget caps what is owed after the other claims, not the rule.
        let capped = ClaimBasis { committed_this_year: money("1499950000.00"), ..elsewhere("300000.00") };
        check(
            "topped up within the budget left",
            gz.compensate(&capped),
            split,
            "40.00% fund 50000.00 insurer 0.00 guarantor 0.00 bank 950000.00 capped",
        );
    }

    #[test]
    fn a_claim_is_filed_on_a_day_that_has_come() {
        let gz = guangzhou();
        // T0 is 2026-01-01 08:00 in China: the day in China, not UTC's, decides.
        let file = |filed: &str, now| {
            Claim::file(
                Uuid::nil(),
                &gz,
                Uuid::nil(),
                ClaimBasis { filed_on: date(filed), ..basis("4000000.00", "1000000.00") },
                me(),
                (now, ClaimRules::Current),
            )
        };
        check("today", file("2026-01-01", T0), state, "v1 Filed paid 0.00 committed 400000.00 at 0");
        check("tomorrow", file("2026-01-02", T0), state, "INVALID_FIELDS filedOn");
        check("five years ahead", file("2031-01-05", T0), state, "INVALID_FIELDS filedOn");
        let minute: Micros = 60_000_000;
        check(
            "still 2025-12-31 in UTC, already 2026-01-01 in China",
            file("2026-01-01", T0 - minute),
            state,
            "v1 Filed paid 0.00 committed 400000.00 at -60000000",
        );
        let before_midnight_in_china = T0 - 8 * 60 * minute - minute;
        check(
            "a minute before the day in China",
            file("2026-01-01", before_midnight_in_china),
            state,
            "INVALID_FIELDS filedOn",
        );
    }

    #[test]
    fn a_claim_is_approved_and_paid_on_the_loss_it_was_filed_with() {
        let filed = Claim::file(
            Uuid::nil(),
            &guangzhou(),
            Uuid::nil(),
            basis("4000000.00", "1000000.00"),
            me(),
            (T0, ClaimRules::Current),
        )
        .unwrap();
        let loss = |amount: &str| Some(money(amount));
        check("recovered in full", filed.approve(decision("2025-09-02", 20), loss("0")), state, "CLAIM_BASIS_CHANGED");
        check(
            "a smaller loss",
            filed.approve(decision("2025-09-02", 20), loss("999999.99")),
            state,
            "CLAIM_BASIS_CHANGED",
        );
        check(
            "a larger loss",
            filed.approve(decision("2025-09-02", 20), loss("1000000.01")),
            state,
            "CLAIM_BASIS_CHANGED",
        );
        check("no loss known", filed.approve(decision("2025-09-02", 20), None), state, "CLAIM_BASIS_CHANGED");
        check(
            "rejected whatever the loss",
            filed.reject(decision("2025-09-02", 20)),
            state,
            "v2 Rejected paid 0.00 committed 0.00 at 20",
        );
        let approved = filed.approve(decision("2025-09-02", 20), loss("1000000.00")).unwrap();
        let pay = |on_loss| approved.pay(payment("2025-10-01", "400000.00", 30), on_loss);
        check(
            "paid on its loss",
            pay(loss("1000000.00")),
            state,
            "v3 Approved paid 400000.00 committed 400000.00 at 30",
        );
        check(
            "paid on a larger loss",
            pay(loss("2000000.00")),
            state,
            "v3 Approved paid 400000.00 committed 400000.00 at 30",
        );
        check("recovered after approval", pay(loss("0")), state, "CLAIM_BASIS_CHANGED");
        check("a fen less lost", pay(loss("999999.99")), state, "CLAIM_BASIS_CHANGED");
        let LedgerError::Refused { metadata, .. } = pay(loss("0")).unwrap_err() else { panic!("a refusal") };
        assert_eq!(
            metadata,
            [("claimId", Uuid::nil().to_string()), ("claimLoss", "1000000.00".to_owned()), ("loss", "0.00".to_owned())]
        );
    }

    /// The fund parts the ledger sums for the caps, kept as a test keeps them: per loan, per
    /// borrower and year, per year (the budget). `file` decides a claim on them and, when it is
    /// filed, adds its fund part, as the projector does.
    #[derive(Debug, Default)]
    struct Book {
        per_loan: std::collections::HashMap<u32, i128>,
        per_borrower_year: std::collections::HashMap<(u32, i32), i128>,
        per_year: std::collections::HashMap<i32, i128>,
    }

    /// One claim of a sequence: which loan of which borrower, the loan and the loss, the filing
    /// day.
    #[derive(Debug, Clone)]
    struct Filing {
        borrower: u32,
        loan: u32,
        loan_amount: Money,
        loss: Money,
        filed_on: NaiveDate,
        /// What other programmes compensate of the loss.
        elsewhere: Money,
    }

    impl Book {
        fn basis(&self, f: &Filing) -> ClaimBasis {
            let year = f.filed_on.year();
            let sum = |fen: Option<&i128>| Money::from_fen(fen.copied().unwrap_or(0)).unwrap();
            ClaimBasis {
                loan_amount: f.loan_amount,
                loss: f.loss,
                filed_on: f.filed_on,
                registered_on: date("2023-01-02"),
                committed_this_year: sum(self.per_year.get(&year)),
                compensated_elsewhere: f.elsewhere,
                loan_fund_before: sum(self.per_loan.get(&f.loan)),
                borrower_fund_this_year: sum(self.per_borrower_year.get(&(f.borrower, year))),
                ..basis("1.00", "1.00")
            }
        }

        fn file(&mut self, programme: &Programme, f: &Filing) -> Result<Compensation, LedgerError> {
            let split = programme.compensate(&self.basis(f))?;
            let fund = split.fund.fen();
            *self.per_loan.entry(f.loan).or_default() += fund;
            *self.per_borrower_year.entry((f.borrower, f.filed_on.year())).or_default() += fund;
            *self.per_year.entry(f.filed_on.year()).or_default() += fund;
            Ok(split)
        }
    }

    /// A programme with a valuer's share and caps, around `draft`'s.
    fn with_caps(
        mut content: NewProgramme,
        valuer: u16,
        per_loan: Option<&str>,
        per_borrower: Option<&str>,
    ) -> Programme {
        content.valuer_share = bp(valuer);
        content.cap_per_loan = per_loan.map(money);
        content.cap_per_borrower_per_year = per_borrower.map(money);
        programme(content)
    }

    /// Guangzhou 2023: the fund covers 50% of the principal loss, at most 10 M yuan a loan and
    /// 20 M a borrower a year, 50 M a year in all (one tier: the measure bounds no loan; 100 M
    /// stands for "any loan" here).
    fn guangzhou_2023() -> Programme {
        let content =
            draft("440100", "50000000.00", &[("100000000.00", 5000)], 0, 0, None, vec![], ("2023-01-01", "2025-12-31"));
        with_caps(content.unwrap(), 0, Some("10000000.00"), Some("20000000.00"))
    }

    fn filing(borrower: u32, loan: u32, amount: &str, loss: &str, filed_on: &str) -> Filing {
        let (loan_amount, loss, filed_on) = (money(amount), money(loss), date(filed_on));
        Filing { borrower, loan, loan_amount, loss, filed_on, elsewhere: Money::ZERO }
    }

    // Longer than ~70 lines: one table walking Guangzhou 2023's caps claim by claim.
    #[test]
    fn guangzhou_2023_caps_per_loan_borrower_and_year() {
        let gz = guangzhou_2023();
        let mut book = Book::default();
        let cases = [
            // Borrower 1: 50% of 30 M is 15 M; the loan's cap pays 10 M.
            (
                "a 30 M loss on a 30 M loan",
                filing(1, 1, "30000000.00", "30000000.00", "2023-03-01"),
                "50.00% fund 10000000.00 insurer 0.00 guarantor 0.00 bank 20000000.00 capped by LOAN_CAP",
            ),
            // 10 M left of the borrower's 20 M, equal to the loan's cap: the borrower's year is spent.
            (
                "the same borrower's second loan that year",
                filing(1, 2, "30000000.00", "30000000.00", "2023-05-01"),
                "50.00% fund 10000000.00 insurer 0.00 guarantor 0.00 bank 20000000.00 capped by BORROWER_YEAR_CAP",
            ),
            ("a third loan that year", filing(1, 3, "2000000.00", "1000000.00", "2023-06-01"), "BORROWER_CAP_REACHED"),
            // Borrower 2: 10 M, then 4 M uncapped, then 6 M of a 15 M part: under the loan's cap.
            (
                "borrower 2's first",
                filing(2, 4, "30000000.00", "30000000.00", "2023-07-01"),
                "50.00% fund 10000000.00 insurer 0.00 guarantor 0.00 bank 20000000.00 capped by LOAN_CAP",
            ),
            (
                "borrower 2's second, under every cap",
                filing(2, 5, "8000000.00", "8000000.00", "2023-07-02"),
                "50.00% fund 4000000.00 insurer 0.00 guarantor 0.00 bank 4000000.00",
            ),
            (
                "borrower 2's third: 6 M left of its year",
                filing(2, 6, "30000000.00", "30000000.00", "2023-07-03"),
                "50.00% fund 6000000.00 insurer 0.00 guarantor 0.00 bank 24000000.00 capped by BORROWER_YEAR_CAP",
            ),
            // 40 M of the 50 M budget committed: borrower 3 gets 10 M, which both its loan's cap
            // and the budget left allow; the budget is spent.
            (
                "borrower 3: the last 10 M of the year",
                filing(3, 7, "30000000.00", "30000000.00", "2023-08-01"),
                "50.00% fund 10000000.00 insurer 0.00 guarantor 0.00 bank 20000000.00 capped",
            ),
            ("borrower 4 that year", filing(4, 8, "1000000.00", "1000000.00", "2023-09-01"), "BUDGET_EXHAUSTED"),
            // A new budget year: borrower 1's cap and the budget are whole again.
            (
                "borrower 1 the next year",
                filing(1, 9, "30000000.00", "30000000.00", "2024-02-01"),
                "50.00% fund 10000000.00 insurer 0.00 guarantor 0.00 bank 20000000.00 capped by LOAN_CAP",
            ),
            (
                "a loss under the caps",
                filing(4, 10, "3000000.00", "1234567.89", "2024-02-02"),
                "50.00% fund 617283.94 insurer 0.00 guarantor 0.00 bank 617283.95",
            ),
        ];
        for (case, f, expected) in cases {
            check(case, book.file(&gz, &f), split, expected);
        }
        assert_eq!(book.per_year[&2023], money("50000000.00").fen(), "the 2023 budget, spent exactly");
        // The loan's cap bounds a loan's claims together: a second claim on a loan whose fund
        // parts reached it gets nothing (the ledger files one claim per loan and programme).
        let again = filing(4, 10, "3000000.00", "1.00", "2024-03-01");
        let full = ClaimBasis { loan_fund_before: money("10000000.00"), ..book.basis(&again) };
        check("the loan's cap used", gz.compensate(&full), split, "LOAN_CAP_REACHED");
        let LedgerError::Refused { metadata, .. } = gz.compensate(&full).unwrap_err() else { panic!("a refusal") };
        let keys: Vec<_> = metadata.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["programmeId", "capPerLoan", "fundOnLoan"]);
        let spent = ClaimBasis { borrower_fund_this_year: money("20000000.00"), ..book.basis(&again) };
        let LedgerError::Refused { metadata, .. } = gz.compensate(&spent).unwrap_err() else { panic!("a refusal") };
        assert_eq!(
            metadata[1..],
            [
                ("year", "2024".to_owned()),
                ("capPerBorrowerPerYear", "20000000.00".to_owned()),
                ("borrowerFund", "20000000.00".to_owned())
            ]
        );
    }

    #[test]
    fn shared_loss_models() {
        let region = |code| {
            draft(code, "100000000.00", &[("30000000.00", 5000)], 3000, 0, None, vec![], ("2023-01-01", "2025-12-31"))
        };
        // Guangzhou "5311": fund 50, insurer (or guarantor) 30, valuer 10, bank 10.
        let gz_5311 = with_caps(region("440100").unwrap(), 1000, None, None);
        // Zhongshan 54:26:16:4: fund 54, bank 26, insurer 16, valuer 4.
        let mut zhongshan = draft(
            "442000",
            "100000000.00",
            &[("30000000.00", 5400)],
            1600,
            0,
            None,
            vec![],
            ("2023-01-01", "2025-12-31"),
        );
        zhongshan.as_mut().unwrap().valuer_share = bp(400);
        let zhongshan = programme(zhongshan.unwrap());
        // Qingdao's insurance loans 60:20:20 (insurer, guarantor, bank): the fund takes no share
        // of these loans, so its tier is the smallest share a tier may hold, 0.01%.
        let qingdao = programme(
            draft(
                "370200",
                "100000000.00",
                &[("30000000.00", 1)],
                6000,
                2000,
                None,
                vec![],
                ("2023-01-01", "2025-12-31"),
            )
            .unwrap(),
        );
        let at = |county: &str, loss: &str| ClaimBasis {
            county: CountyCode::parse(county).unwrap(),
            registered_on: date("2024-01-02"),
            filed_on: date("2024-09-01"),
            ..basis("10000000.00", loss)
        };
        let cases = [
            // 50% of 1,234,567.89 is 617,283.945: 617,283.94; 30% 370,370.367; 10% 123,456.789;
            // the bank bears the rest, its 10% and the three fen rounded off.
            (
                "5311, an odd fen",
                &gz_5311,
                at("440106", "1234567.89"),
                "50.00% fund 617283.94 insurer 370370.36 guarantor 0.00 valuer 123456.78 bank 123456.81",
            ),
            (
                "5311, a round loss",
                &gz_5311,
                at("440106", "1000000.00"),
                "50.00% fund 500000.00 insurer 300000.00 guarantor 0.00 valuer 100000.00 bank 100000.00",
            ),
            // 54% of 2,345,678.91 is 1,266,666.6114; 16% 375,308.6256; 4% 93,827.1564; the bank's
            // 26% is 609,876.5166: it bears 609,876.53.
            (
                "Zhongshan, an odd fen",
                &zhongshan,
                at("442000", "2345678.91"),
                "54.00% fund 1266666.61 insurer 375308.62 guarantor 0.00 valuer 93827.15 bank 609876.53",
            ),
            (
                "Zhongshan, 99 fen",
                &zhongshan,
                at("442000", "0.99"),
                "54.00% fund 0.53 insurer 0.15 guarantor 0.00 valuer 0.03 bank 0.28",
            ),
            (
                "Qingdao 60:20:20",
                &qingdao,
                at("370212", "1234567.89"),
                "0.01% fund 123.45 insurer 740740.73 guarantor 246913.57 bank 246790.14",
            ),
        ];
        for (case, programme, claim, expected) in cases {
            let got = programme.compensate(&claim);
            if let Ok(c) = &got {
                let parts = [c.fund, c.insurer, c.guarantor, c.valuer, c.bank];
                assert_eq!(
                    parts.iter().map(|m| m.fen()).sum::<i128>(),
                    claim.loss.fen(),
                    "{case}: the parts are the loss"
                );
            }
            check(case, got, split, expected);
        }
    }

    #[test]
    fn caps_and_valuer_content_rules() {
        let gz = |budget: &str, valuer: u16, insurer: u16, per_loan: Option<&str>, per_borrower: Option<&str>| {
            let draft = ProgrammeDraft {
                name: Name::parse("IP pledge risk compensation").unwrap(),
                region: Region::parse("440100").unwrap(),
                budget_per_year: money(budget),
                tiers: vec![Tier { loan_up_to: money("30000000.00"), fund_share: bp(5000) }],
                insurer_share: bp(insurer),
                guarantor_share: Bp::ZERO,
                valuer_share: bp(valuer),
                cap_per_loan: per_loan.map(money),
                cap_per_borrower_per_year: per_borrower.map(money),
                stop_line: None,
                eligible_banks: vec![],
                valid_from: date("2023-01-01"),
                valid_to: date("2025-12-31"),
            };
            NewProgramme::new(draft)
        };
        let shown = |p: &NewProgramme| {
            format!(
                "{:?} {:?} {}",
                p.cap_per_loan.map(|m| m.to_string()),
                p.cap_per_borrower_per_year.map(|m| m.to_string()),
                p.valuer_share
            )
        };
        let (m10, m20, m50) = (Some("10000000.00"), Some("20000000.00"), Some("50000000.00"));
        let cases = [
            ("Guangzhou 2023", gz("50000000.00", 0, 0, m10, m20), r#"Some("10000000.00") Some("20000000.00") 0.00%"#),
            ("5311", gz("50000000.00", 1000, 3000, None, None), "None None 10.00%"),
            (
                "caps equal to each other and the budget",
                gz("50000000.00", 0, 0, m50, m50),
                r#"Some("50000000.00") Some("50000000.00") 0.00%"#,
            ),
            ("only a loan cap", gz("50000000.00", 0, 0, m10, None), r#"Some("10000000.00") None 0.00%"#),
            ("a zero loan cap", gz("50000000.00", 0, 0, Some("0"), None), "INVALID_FIELDS capPerLoan"),
            ("a zero borrower cap", gz("50000000.00", 0, 0, None, Some("0")), "INVALID_FIELDS capPerBorrowerPerYear"),
            ("the loan's cap above the borrower's", gz("50000000.00", 0, 0, m20, m10), "INVALID_FIELDS capPerLoan"),
            (
                "the borrower's cap above the budget",
                gz("10000000.00", 0, 0, None, m20),
                "INVALID_FIELDS capPerBorrowerPerYear",
            ),
            ("the loan's cap above the budget", gz("10000000.00", 0, 0, m20, None), "INVALID_FIELDS capPerLoan"),
            ("50 + 30 + 20: the whole loss", gz("50000000.00", 2000, 3000, None, None), "None None 20.00%"),
            ("50 + 30 + 20.01", gz("50000000.00", 2001, 3000, None, None), "INVALID_FIELDS tiers[0].fundSharePercent"),
            (
                "insurer and valuer alone over",
                gz("50000000.00", 4001, 6000, None, None),
                "INVALID_FIELDS valuerSharePercent",
            ),
        ];
        for (case, got, expected) in cases {
            check(case, got, shown, expected);
        }
    }

    /// Claims decided before the caps and the valuer (`ClaimRules::Original`) split as they did:
    /// the programme's caps and valuer do not apply to them.
    #[test]
    fn original_rules_know_no_caps_and_no_valuer() {
        let mut content = guangzhou_2023().content;
        content.valuer_share = bp(1000);
        let p = programme(content);
        let claim = ClaimBasis {
            borrower_fund_this_year: money("20000000.00"),
            ..Book::default().basis(&filing(1, 1, "30000000.00", "30000000.00", "2023-03-01"))
        };
        check("current", p.compensate(&claim), split, "BORROWER_CAP_REACHED");
        check(
            "original",
            p.compensate_under(
                &ClaimBasis { borrower_fund_this_year: Money::ZERO, ..claim.clone() },
                ClaimRules::Original,
            ),
            split,
            "50.00% fund 15000000.00 insurer 0.00 guarantor 0.00 bank 15000000.00",
        );
    }

    /// The split as a brute-force model computes it: every part the largest amount in fen whose
    /// share rule holds, searched one fen at a time, and the fund's part the largest that no
    /// limit forbids; or the refusal of the first limit with nothing left.
    fn model(p: &Programme, b: &ClaimBasis) -> Result<([i128; 5], Option<FundCap>), &'static str> {
        let c = &p.content;
        let loss = b.loss.fen();
        // The largest x with x / loss <= share: x * 10000 <= loss * share.
        let floor_share = |share: Bp| (0..=loss).rev().find(|x| x * 10_000 <= loss * i128::from(share.get())).unwrap();
        let tier = c.tiers.iter().find(|t| b.loan_amount <= t.loan_up_to).ok_or("LOAN_ABOVE_TIERS")?;
        let by_rule = floor_share(tier.fund_share);
        let owed = (by_rule - b.compensated_elsewhere.fen()).max(0);
        let loan_left = c.cap_per_loan.map(|cap| cap.fen() - b.loan_fund_before.fen());
        let borrower_left = c.cap_per_borrower_per_year.map(|cap| cap.fen() - b.borrower_fund_this_year.fen());
        let budget_left = c.budget_per_year.fen() - b.committed_this_year.fen();
        if loan_left.is_some_and(|l| l <= 0) {
            return Err("LOAN_CAP_REACHED");
        }
        if borrower_left.is_some_and(|l| l <= 0) {
            return Err("BORROWER_CAP_REACHED");
        }
        if budget_left <= 0 {
            return Err("BUDGET_EXHAUSTED");
        }
        let allowed =
            |f: i128| loan_left.is_none_or(|l| f <= l) && borrower_left.is_none_or(|l| f <= l) && f <= budget_left;
        let fund = (0..=owed).rev().find(|f| allowed(*f)).unwrap();
        // The limits at the fund's part, when it is below what is owed: the widest is named.
        let binding =
            [(FundCap::Budget, Some(budget_left)), (FundCap::BorrowerYear, borrower_left), (FundCap::Loan, loan_left)];
        let capped_by = binding.into_iter().find(|(_, left)| fund < owed && *left == Some(fund)).map(|(cap, _)| cap);
        let others = [c.insurer_share, c.guarantor_share, c.valuer_share].map(floor_share);
        let bank = loss - fund - others.iter().sum::<i128>();
        Ok(([fund, others[0], others[1], others[2], bank], capped_by))
    }

    fn programme_strategy() -> impl Strategy<Value = Programme> {
        let shares = (1u16..=10_000, 0u16..=10_000, 0u16..=10_000, 0u16..=10_000);
        let caps = (1i64..400, 1i64..400, 1i64..600, any::<(bool, bool)>());
        (shares, caps).prop_map(|((fund, insurer, guarantor, valuer), (a, b, budget, (loan, borrower)))| {
            // Shares scaled to fit the whole: fund + others <= 100%.
            let total = u32::from(fund) + u32::from(insurer) + u32::from(guarantor) + u32::from(valuer);
            let scale = |s: u16| u16::try_from(u32::from(s) * 10_000 / total.max(10_000)).unwrap();
            let mut caps = [a, b, budget];
            caps.sort_unstable();
            let fen = |f: i64| Money::from_fen(i128::from(f)).unwrap();
            let content = NewProgramme::new(ProgrammeDraft {
                name: Name::parse("random").unwrap(),
                region: Region::parse("440100").unwrap(),
                budget_per_year: fen(caps[2]),
                tiers: vec![Tier { loan_up_to: fen(1_000), fund_share: Bp::new(scale(fund).max(1)).unwrap() }],
                insurer_share: bp(scale(insurer)),
                guarantor_share: bp(scale(guarantor)),
                valuer_share: bp(scale(valuer)),
                cap_per_loan: loan.then(|| fen(caps[0])),
                cap_per_borrower_per_year: borrower.then(|| fen(caps[1])),
                stop_line: None,
                eligible_banks: vec![],
                valid_from: date("2023-01-01"),
                valid_to: date("2024-12-31"),
            });
            programme(content.unwrap())
        })
    }

    fn filings_strategy() -> impl Strategy<Value = Vec<Filing>> {
        let one = (0u32..3, 0u32..4, 1i64..=1_000, any::<bool>(), 0i64..300);
        proptest::collection::vec(one, 1..24).prop_map(|claims| {
            claims
                .into_iter()
                .map(|(borrower, loan, loss, late, elsewhere)| {
                    Filing {
                        elsewhere: Money::from_fen(i128::from(elsewhere)).unwrap(),
                        borrower,
                        // A loan is one borrower's.
                        loan: borrower * 10 + loan,
                        loan_amount: Money::from_fen(1_000).unwrap(),
                        loss: Money::from_fen(i128::from(loss)).unwrap(),
                        filed_on: date(if late { "2024-06-01" } else { "2023-06-01" }),
                    }
                })
                .collect()
        })
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Any programme and claim sequence: the split is the model's, its parts are the loss, and
        /// no loan, borrower's year or year ever gets more than its cap.
        #[test]
        fn the_split_is_the_brute_force_models(p in programme_strategy(), filings in filings_strategy()) {
            let mut book = Book::default();
            for f in &filings {
                let basis = book.basis(f);
                let expected = model(&p, &basis);
                let got = book.file(&p, f);
                match (&got, expected) {
                    (Ok(c), Ok((parts, capped_by))) => {
                        prop_assert_eq!([c.fund, c.insurer, c.guarantor, c.valuer, c.bank].map(Money::fen), parts);
                        prop_assert_eq!(c.capped_by, capped_by);
                        prop_assert_eq!(c.capped_by_budget, capped_by == Some(FundCap::Budget));
                        prop_assert_eq!(parts.iter().sum::<i128>(), f.loss.fen());
                    }
                    (Err(e), Err(reason)) => prop_assert_eq!(e.reason(), reason),
                    (got, expected) => prop_assert!(false, "got {:?}, the model {:?}", got, expected),
                }
            }
            let c = &p.content;
            for fund in book.per_loan.values() {
                prop_assert!(c.cap_per_loan.is_none_or(|cap| *fund <= cap.fen()));
            }
            for fund in book.per_borrower_year.values() {
                prop_assert!(c.cap_per_borrower_per_year.is_none_or(|cap| *fund <= cap.fen()));
            }
            for fund in book.per_year.values() {
                prop_assert!(*fund <= c.budget_per_year.fen());
            }
        }
    }
}

//! Alerts before a pledge goes bad: the kinds, a bank's thresholds (`AlertPolicy`, with the
//! defaults a bank that set none gets), and a watched pledge's facts (`Watch`) from which the
//! alerts of any day follow. Alerts are not stored as such: a pledge's facts are, and its alerts
//! are a pure function of those facts, its bank's policy and the day, so a policy change or the
//! passing of days needs no rewrite.

use super::ident::{CreditCode, RightNumber};
use super::money::Money;
use super::region::CountyCode;
use chrono::NaiveDate;
use uuid::Uuid;

/// What an alert warns of (the API's UPPER_SNAKE names: `AlertKind::name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum AlertKind {
    RightExpiresNearTerm,
    LoanToValueAbovePolicy,
    NewlyAtRisk,
    DefaultUnresolved,
    ClaimUndecided,
}

impl AlertKind {
    pub const ALL: [AlertKind; 5] = [
        AlertKind::RightExpiresNearTerm,
        AlertKind::LoanToValueAbovePolicy,
        AlertKind::NewlyAtRisk,
        AlertKind::DefaultUnresolved,
        AlertKind::ClaimUndecided,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AlertKind::RightExpiresNearTerm => "RIGHT_EXPIRES_NEAR_TERM",
            AlertKind::LoanToValueAbovePolicy => "LOAN_TO_VALUE_ABOVE_POLICY",
            AlertKind::NewlyAtRisk => "NEWLY_AT_RISK",
            AlertKind::DefaultUnresolved => "DEFAULT_UNRESOLVED",
            AlertKind::ClaimUndecided => "CLAIM_UNDECIDED",
        }
    }

    pub fn parse(text: &str) -> Result<AlertKind, String> {
        AlertKind::ALL.into_iter().find(|k| k.name() == text.trim()).ok_or_else(|| {
            let names: Vec<&str> = AlertKind::ALL.iter().map(|k| k.name()).collect();
            format!("must be one of {}", names.join(", "))
        })
    }
}

/// The longest window a policy may set for the ageing and at-risk kinds (ten years).
pub const WINDOW_DAYS_MAX: u32 = 3650;
/// The longest margin after the debt term a right's end is watched within: a pledge's right
/// ending later than this after its term is never watched, so most registrations write nothing.
pub const EXPIRY_DAYS_MAX: u32 = 730;
/// The highest loan-to-value threshold, in basis points (1000 %).
pub const LOAN_TO_VALUE_BP_MAX: u32 = 100_000;
/// Rights flagged, and undecided claims, kept per watched pledge at most (a pledge has at most
/// `CLAIMS_PER_PLEDGE_MAX` claims and a handful of rights; this bounds a record's size).
pub const ITEMS_PER_WATCH_MAX: usize = 32;

/// A bank's thresholds. Days are whole days; the loan-to-value threshold is in basis points of the
/// secured amount over the latest valuation, and off when `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AlertPolicy {
    /// A right ending within this many days after the debt term's end (or before it).
    pub expiry_within_days: u32,
    /// Flagged at risk within the last this many days.
    pub newly_at_risk_days: u32,
    /// A default open this many days or more.
    pub default_unresolved_days: u32,
    /// A claim undecided this many days or more.
    pub claim_undecided_days: u32,
    pub loan_to_value_max_bp: Option<u32>,
}

impl Default for AlertPolicy {
    /// What a bank that set no policy gets: a right ending within half a year after the term, a
    /// flag of the last 30 days, a default open for a quarter, a claim undecided for two months;
    /// no loan-to-value threshold (a bank's credit policy, not the ledger's).
    fn default() -> AlertPolicy {
        AlertPolicy {
            expiry_within_days: 180,
            newly_at_risk_days: 30,
            default_unresolved_days: 90,
            claim_undecided_days: 60,
            loan_to_value_max_bp: None,
        }
    }
}

/// A window of days from a request: 1 to `max`.
pub fn window_days(days: i32, max: u32) -> Result<u32, String> {
    match u32::try_from(days) {
        Ok(d) if (1..=max).contains(&d) => Ok(d),
        _ => Err(format!("must be from 1 to {max} days")),
    }
}

/// A loan-to-value threshold from a request: 1 to `LOAN_TO_VALUE_BP_MAX` basis points.
pub fn loan_to_value_bp(bp: u32) -> Result<u32, String> {
    if (1..=LOAN_TO_VALUE_BP_MAX).contains(&bp) {
        Ok(bp)
    } else {
        Err(format!("must be above 0 and at most {} %", LOAN_TO_VALUE_BP_MAX / 100))
    }
}

impl AlertPolicy {
    /// Checks that a policy decoded from elsewhere (the journal) is within the limits.
    pub fn check(&self) -> Result<(), String> {
        window_days_u32(self.expiry_within_days, EXPIRY_DAYS_MAX)?;
        window_days_u32(self.newly_at_risk_days, WINDOW_DAYS_MAX)?;
        window_days_u32(self.default_unresolved_days, WINDOW_DAYS_MAX)?;
        window_days_u32(self.claim_undecided_days, WINDOW_DAYS_MAX)?;
        self.loan_to_value_max_bp.map(loan_to_value_bp).transpose()?;
        Ok(())
    }
}

fn window_days_u32(days: u32, max: u32) -> Result<u32, String> {
    window_days(i32::try_from(days).unwrap_or(-1), max)
}

/// A bank's policy as set: by whom and when (the entry's principal and time).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PolicyRecord {
    pub bank: CreditCode,
    pub policy: AlertPolicy,
    /// `None`: never set (the defaults).
    pub set: Option<(super::principal::PrincipalName, super::Micros)>,
}

/// A right of a watched pledge and its end: the earliest of its given expiry, statutory bound and
/// its record's expiry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RightEnd {
    pub number: RightNumber,
    pub ends_on: NaiveDate,
}

/// A right of the pledge flagged at risk, why (the flag's name, generic), and the day it was.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Flagged {
    pub number: RightNumber,
    pub reason: String,
    pub since: NaiveDate,
}

/// An active pledge's facts that alerts follow from; kept only while one of them can alert
/// (`is_watched`). Each `since` is the business day (China time) of the entry that set the fact.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Watch {
    pub pledge_id: Uuid,
    pub pledgee: CreditCode,
    pub county: CountyCode,
    pub debt_term_end: NaiveDate,
    pub secured: Money,
    /// The right ending first, when within `EXPIRY_DAYS_MAX` after the term's end, and since when.
    pub right_end: Option<(RightEnd, NaiveDate)>,
    /// The latest valuation's value, and since when it or the secured amount last moved.
    pub valuation: Option<(Money, NaiveDate)>,
    pub flags: Vec<Flagged>,
    /// The open default's date, and the day it was recorded.
    pub defaulted_on: Option<(NaiveDate, NaiveDate)>,
    /// Undecided claims: id, filing date and the day it was recorded.
    pub claims: Vec<(Uuid, NaiveDate, NaiveDate)>,
}

/// What an alert shows beside its kind.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Figures {
    Expiry { right: RightNumber, ends_on: NaiveDate, debt_term_end: NaiveDate },
    LoanToValue { secured: Money, value: Money, threshold_bp: u32 },
    AtRisk { right: RightNumber, reason: String },
    Default { defaulted_on: NaiveDate, age_days: i64 },
    Claim { claim_id: Uuid, filed_on: NaiveDate, age_days: i64 },
}

/// One alert of a pledge on a day.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub pledge_id: Uuid,
    pub pledgee: CreditCode,
    pub county: CountyCode,
    /// The pledge's secured amount.
    pub secured: Money,
    /// The day it arose: the fact's day, or for ageing kinds the day the age reached the policy.
    pub arose_on: NaiveDate,
    pub figures: Figures,
}

impl Alert {
    /// What makes two alerts the same one (kind and subject), whatever their figures' ages.
    pub fn identity(&self) -> (AlertKind, String) {
        let subject = match &self.figures {
            Figures::Expiry { right, .. } | Figures::AtRisk { right, .. } => right.as_str().to_owned(),
            Figures::Claim { claim_id, .. } => claim_id.to_string(),
            Figures::LoanToValue { .. } | Figures::Default { .. } => String::new(),
        };
        (self.kind, subject)
    }
}

fn add_days(day: NaiveDate, days: u32) -> NaiveDate {
    day.checked_add_days(chrono::Days::new(u64::from(days))).unwrap_or(NaiveDate::MAX)
}

impl Watch {
    /// Whether any fact here can alert under some policy.
    pub fn is_watched(&self) -> bool {
        self.right_end.is_some()
            || self.valuation.is_some()
            || !self.flags.is_empty()
            || self.defaulted_on.is_some()
            || !self.claims.is_empty()
    }

    /// The alerts of this pledge under `policy` on `today`.
    pub fn alerts(&self, policy: &AlertPolicy, today: NaiveDate) -> Vec<Alert> {
        let alert = |kind, arose_on, figures| Alert {
            kind,
            pledge_id: self.pledge_id,
            pledgee: self.pledgee.clone(),
            county: self.county,
            secured: self.secured,
            arose_on,
            figures,
        };
        let mut out = Vec::new();
        if let Some((end, since)) = &self.right_end
            && end.ends_on <= add_days(self.debt_term_end, policy.expiry_within_days)
        {
            let figures =
                Figures::Expiry { right: end.number.clone(), ends_on: end.ends_on, debt_term_end: self.debt_term_end };
            out.push(alert(AlertKind::RightExpiresNearTerm, *since, figures));
        }
        if let (Some((value, since)), Some(threshold_bp)) = (&self.valuation, policy.loan_to_value_max_bp)
            && self.secured.fen() * 10_000 > value.fen() * i128::from(threshold_bp)
        {
            let figures = Figures::LoanToValue { secured: self.secured, value: *value, threshold_bp };
            out.push(alert(AlertKind::LoanToValueAbovePolicy, *since, figures));
        }
        for f in &self.flags {
            if f.since <= today && add_days(f.since, policy.newly_at_risk_days) > today {
                let figures = Figures::AtRisk { right: f.number.clone(), reason: f.reason.clone() };
                out.push(alert(AlertKind::NewlyAtRisk, f.since, figures));
            }
        }
        if let Some((on, _)) = self.defaulted_on {
            let due = add_days(on, policy.default_unresolved_days);
            if due <= today {
                let figures = Figures::Default { defaulted_on: on, age_days: (today - on).num_days() };
                out.push(alert(AlertKind::DefaultUnresolved, due, figures));
            }
        }
        for (claim_id, filed_on, _) in &self.claims {
            let due = add_days(*filed_on, policy.claim_undecided_days);
            if due <= today {
                let figures = Figures::Claim {
                    claim_id: *claim_id,
                    filed_on: *filed_on,
                    age_days: (today - *filed_on).num_days(),
                };
                out.push(alert(AlertKind::ClaimUndecided, due, figures));
            }
        }
        out
    }
}

impl Watch {
    /// The alerts of the ageing kinds that came due by the passing of days in `(after, day]`: due
    /// after the day their fact was recorded (an entry that recorded a fact already due raised its
    /// alert itself), and not on or before `after` (the day opened before).
    pub fn came_due(&self, policy: &AlertPolicy, after: Option<NaiveDate>, day: NaiveDate) -> Vec<Alert> {
        let recorded_on = |a: &Alert| match &a.figures {
            Figures::Default { .. } => self.defaulted_on.map(|(_, recorded)| recorded),
            Figures::Claim { claim_id, .. } => {
                self.claims.iter().find(|(id, ..)| id == claim_id).map(|(_, _, recorded)| *recorded)
            }
            _ => None,
        };
        self.alerts(policy, day)
            .into_iter()
            .filter(|a| recorded_on(a).is_some_and(|r| r < a.arose_on) && after.is_none_or(|after| after < a.arose_on))
            .collect()
    }
}

/// The alerts of `after` on `today` that `before` did not have: what an entry raised.
pub fn raised(before: Option<&Watch>, after: &Watch, policy: &AlertPolicy, today: NaiveDate) -> Vec<Alert> {
    let had: Vec<(AlertKind, String)> =
        before.map(|w| w.alerts(policy, today).iter().map(Alert::identity).collect()).unwrap_or_default();
    after.alerts(policy, today).into_iter().filter(|a| !had.contains(&a.identity())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ident::RightKind;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn watch() -> Watch {
        Watch {
            pledge_id: Uuid::nil(),
            pledgee: CreditCode::parse("914403001922038216").unwrap(),
            county: CountyCode::parse("110101").unwrap(),
            debt_term_end: day("2027-06-30"),
            secured: Money::parse_positive("8000000").unwrap(),
            right_end: None,
            valuation: None,
            flags: Vec::new(),
            defaulted_on: None,
            claims: Vec::new(),
        }
    }

    fn kinds(w: &Watch, policy: &AlertPolicy, today: &str) -> Vec<&'static str> {
        w.alerts(policy, day(today)).iter().map(|a| a.kind.name()).collect()
    }

    #[test]
    fn each_kind_by_its_threshold() {
        let policy = AlertPolicy::default();
        let number = RightNumber::parse("ZL202210345678.8", RightKind::InventionPatent).unwrap();
        let mut w = watch();
        assert!(!w.is_watched());
        w.right_end = Some((RightEnd { number: number.clone(), ends_on: day("2027-12-31") }, day("2026-01-05")));
        assert!(kinds(&w, &policy, "2026-02-01").is_empty(), "184 days after the term: not within 180");
        w.debt_term_end = day("2027-09-30");
        assert_eq!(kinds(&w, &policy, "2026-02-01"), ["RIGHT_EXPIRES_NEAR_TERM"]);
        w.debt_term_end = day("2027-06-30");
        w.right_end = None;
        w.valuation = Some((Money::parse_positive("10000000").unwrap(), day("2026-01-05")));
        assert!(kinds(&w, &policy, "2026-02-01").is_empty(), "no threshold by default");
        let strict = AlertPolicy { loan_to_value_max_bp: Some(7000), ..policy };
        assert_eq!(kinds(&w, &strict, "2026-02-01"), ["LOAN_TO_VALUE_ABOVE_POLICY"], "80 % over 70 %");
        let loose = AlertPolicy { loan_to_value_max_bp: Some(8000), ..policy };
        assert!(kinds(&w, &loose, "2026-02-01").is_empty(), "80 % is not above 80 %");
        w.valuation = None;
        w.flags.push(Flagged { number: number.clone(), reason: "FROZEN".into(), since: day("2026-01-10") });
        assert_eq!(kinds(&w, &policy, "2026-02-08"), ["NEWLY_AT_RISK"]);
        assert!(kinds(&w, &policy, "2026-02-09").is_empty(), "30 days later it is no longer new");
        w.flags.clear();
        w.defaulted_on = Some((day("2026-01-01"), day("2026-01-02")));
        assert!(kinds(&w, &policy, "2026-03-31").is_empty());
        let due = w.alerts(&policy, day("2026-04-01"));
        assert_eq!(due.len(), 1);
        assert_eq!(
            (due[0].arose_on, &due[0].figures),
            (day("2026-04-01"), &Figures::Default { defaulted_on: day("2026-01-01"), age_days: 90 })
        );
        w.defaulted_on = None;
        w.claims.push((Uuid::nil(), day("2026-01-01"), day("2026-01-01")));
        assert!(kinds(&w, &policy, "2026-03-01").is_empty());
        assert_eq!(kinds(&w, &policy, "2026-03-02"), ["CLAIM_UNDECIDED"]);
    }

    #[test]
    fn what_came_due_by_the_passing_of_days() {
        let policy = AlertPolicy::default();
        let mut w = watch();
        // Recorded on 01-02, due on 04-01 (90 days): it comes due on 04-01, once.
        w.defaulted_on = Some((day("2026-01-01"), day("2026-01-02")));
        let due = |w: &Watch, after: Option<&str>, on: &str| w.came_due(&policy, after.map(day), day(on)).len();
        assert_eq!(due(&w, Some("2026-03-30"), "2026-03-31"), 0);
        assert_eq!(due(&w, Some("2026-03-31"), "2026-04-01"), 1);
        assert_eq!(due(&w, Some("2026-03-20"), "2026-04-03"), 1, "days skipped: still carried");
        assert_eq!(due(&w, Some("2026-04-01"), "2026-04-02"), 0, "carried once");
        // Recorded already due (backdated): its own entry raised it, no day carries it.
        w.defaulted_on = Some((day("2025-01-01"), day("2026-04-01")));
        assert_eq!(due(&w, Some("2026-04-01"), "2026-04-02"), 0);
        assert_eq!(due(&w, None, "2026-04-02"), 0);
    }

    #[test]
    fn raised_is_what_is_new() {
        let policy = AlertPolicy { loan_to_value_max_bp: Some(5000), ..AlertPolicy::default() };
        let before = watch();
        let mut after = watch();
        after.valuation = Some((Money::parse_positive("10000000").unwrap(), day("2026-01-05")));
        let raised_now = raised(Some(&before), &after, &policy, day("2026-01-05"));
        assert_eq!(raised_now.iter().map(|a| a.kind).collect::<Vec<_>>(), [AlertKind::LoanToValueAbovePolicy]);
        assert!(raised(Some(&after), &after, &policy, day("2026-01-06")).is_empty(), "an alert is raised once");
    }

    #[test]
    fn policy_limits() {
        assert!(AlertPolicy::default().check().is_ok());
        assert!(window_days(0, 10).is_err());
        assert!(window_days(11, 10).is_err());
        assert_eq!(window_days(10, 10), Ok(10));
        assert!(loan_to_value_bp(0).is_err());
        assert!(loan_to_value_bp(LOAN_TO_VALUE_BP_MAX + 1).is_err());
        let bad = AlertPolicy { expiry_within_days: EXPIRY_DAYS_MAX + 1, ..AlertPolicy::default() };
        assert!(bad.check().is_err());
        assert_eq!(AlertKind::parse("CLAIM_UNDECIDED"), Ok(AlertKind::ClaimUndecided));
        assert!(AlertKind::parse("SOON").is_err());
    }
}

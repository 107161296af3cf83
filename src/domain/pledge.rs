//! Pledges: registration, change and release, with the rules the pledge registers enforce on the
//! content of a pledge itself. Rules that depend on the rest of the ledger (a right already pledged,
//! a credit line's available amount) live in `ledger::decider`.

use super::error::LedgerError;
use super::ident::{CreditCode, RightKind, RightNumber};
use super::money::Money;
use super::principal::PrincipalName;
use super::reason::Reason as Refusal;
use super::region::CountyCode;
use super::text::{Name, Note, Reason};
use super::{FieldViolation, Micros};
use chrono::{Datelike, NaiveDate};
use uuid::Uuid;

/// A pledge of a large patent portfolio lists a few hundred rights; more is an error in the data,
/// and each right costs one index entry in the same atomic write.
pub const RIGHTS_PER_PLEDGE_MAX: usize = 500;

/// A right's co-owners are a handful (a university and its partners, a group's companies); the
/// co-pledgors are searched on every check of a right's holders, so their number is bounded.
pub const CO_PLEDGORS_MAX: usize = 19;

/// Every change is kept inside the pledge record; this bounds the record's size.
pub const CHANGES_PER_PLEDGE_MAX: usize = 200;

/// Prefix of the registration numbers the ledger assigns itself; refused in requests so an
/// assigned number can never collide with a given one.
pub const ASSIGNED_REGISTRATION_PREFIX: &str = "IPL-";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Party {
    pub name: Name,
    pub credit_code: CreditCode,
}

/// When a pledged right lapses, and how the ledger knows it. Register extracts rarely carry each
/// right's expiry, so a request may leave it out; the ledger then records what the law bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Expiry {
    /// The date the request gave (from the register or the certificate).
    Given(NaiveDate),
    /// None given: the last day the statutory term allows for a patent filed in the year its
    /// application number names (Patent Law art. 42: inventions 20 years, utility models 10,
    /// designs 10, or 15 for applications from 2021-06-01). The term runs from the filing day,
    /// which the number does not hold, so the bound is the end of the term's last year.
    StatutoryBound { last_day: NaiveDate, term_years: u8 },
    /// None given and none follows from the number: trademarks (renewable every 10 years),
    /// copyrights (the author's life and 50 years) and patent numbers without a filing year.
    Unknown,
}

impl Expiry {
    /// The last day the right is in force at the latest, when known or bounded.
    pub fn last_day(self) -> Option<NaiveDate> {
        match self {
            Expiry::Given(day) | Expiry::StatutoryBound { last_day: day, .. } => Some(day),
            Expiry::Unknown => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Right {
    pub number: RightNumber,
    pub title: Note,
    pub expiry: Expiry,
}

impl Right {
    /// A right as a request lists it; without a date its expiry is bounded by the statutory term
    /// when the number names a patent's filing year.
    // Longer than ~70 lines: it collects every field violation of a registration into one answer, field
    // by field, as AIP asks.
    pub fn new(number: RightNumber, title: Note, expires_on: Option<NaiveDate>) -> Right {
        let expiry = match expires_on {
            Some(day) => Expiry::Given(day),
            None => statutory_bound(&number)
                .map_or(Expiry::Unknown, |(last_day, term_years)| Expiry::StatutoryBound { last_day, term_years }),
        };
        Right { number, title, expiry }
    }

    pub fn kind(&self) -> RightKind {
        self.number.kind()
    }
}

/// The statutory bound of a patent's expiry from its number: (last day, term in years).
fn statutory_bound(number: &RightNumber) -> Option<(NaiveDate, u8)> {
    let year = number.filing_year()?;
    let term = match number.kind() {
        RightKind::InventionPatent => 20,
        RightKind::UtilityModel => 10,
        // 15 years for applications from 2021-06-01; the number holds only the year, so 2021 is
        // bounded by the longer term.
        RightKind::DesignPatent if year >= 2021 => 15,
        RightKind::DesignPatent => 10,
        RightKind::Trademark | RightKind::Copyright => return None,
    };
    let last_day = NaiveDate::from_ymd_opt(i32::from(year) + i32::from(term), 12, 31)?;
    Some((last_day, term))
}

/// A registration number as given by the registering office: 1 to 40 characters of letters,
/// digits and '-'.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct RegistrationNumber(String);

impl RegistrationNumber {
    pub fn parse(text: &str) -> Result<RegistrationNumber, String> {
        let t = text.trim();
        if t.is_empty() || t.len() > 40 || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err("must be 1 to 40 letters, digits or '-'".to_owned());
        }
        if t.to_ascii_uppercase().starts_with(ASSIGNED_REGISTRATION_PREFIX) {
            return Err(format!(
                "the prefix {ASSIGNED_REGISTRATION_PREFIX} is reserved for numbers the ledger assigns"
            ));
        }
        Ok(RegistrationNumber(t.to_owned()))
    }

    /// The number the ledger assigns when none was given: prefix, year of registration and a
    /// per-ledger serial, e.g. `IPL-2019-000000042`.
    pub fn assigned(registered_on: NaiveDate, serial: u64) -> RegistrationNumber {
        RegistrationNumber(format!("{ASSIGNED_REGISTRATION_PREFIX}{}-{serial:09}", registered_on.year()))
    }

    /// A number as the journal recorded it: one a registering office gave, or one the ledger
    /// assigned (which `parse` refuses in requests).
    pub fn parse_recorded(text: &str) -> Result<RegistrationNumber, String> {
        let assigned = RegistrationNumber(text.to_owned());
        match assigned.assigned_serial() {
            Some(_) if text.len() <= 40 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => Ok(assigned),
            _ => RegistrationNumber::parse(text),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The serial of a number the ledger assigned (`IPL-2019-000000042` is 42).
    pub fn assigned_serial(&self) -> Option<u64> {
        let rest = self.0.strip_prefix(ASSIGNED_REGISTRATION_PREFIX)?;
        rest.split_once('-')?.1.parse().ok()
    }
}

/// The content of a registration, checked in itself: build it with `NewPledge::new`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewPledge {
    pub registration_number: Option<RegistrationNumber>,
    /// The debtor, who borrows under the pledge: the enterprise the statistics count and a
    /// programme's cap per borrower follows.
    pub pledgor: Party,
    /// The co-owners of the pledged rights who pledge with the debtor (a co-owned right is pledged
    /// by all its owners); empty for most pledges and for every entry written before co-ownership.
    pub co_pledgors: Vec<Party>,
    /// Both parties accept pledging a right under an invalidation request (the registration
    /// guides let such a pledge proceed when the parties consent).
    pub invalidation_pending_accepted: bool,
    pub pledgee: Party,
    pub county: CountyCode,
    pub secured_amount: Money,
    pub debt_term_start: NaiveDate,
    pub debt_term_end: NaiveDate,
    pub registered_on: NaiveDate,
    pub rights: Vec<Right>,
    pub credit_line_id: Option<Uuid>,
}

/// Statutory terms counted from the filing year in the number: utility models 10 years, designs
/// 10 years (15 for filings from 2021-06-01, so 15 is the bound for 2021 and later). Invention
/// patents may get term compensation, so their expiry is not bounded here.
fn statutory_term_years(kind: RightKind, filing_year: u16) -> Option<i32> {
    match kind {
        RightKind::UtilityModel => Some(10),
        RightKind::DesignPatent if filing_year >= 2021 => Some(15),
        RightKind::DesignPatent => Some(10),
        _ => None,
    }
}

/// A pledge's content as a request states it, each field parsed but the rules across them not yet
/// checked: `NewPledge::new` checks them. Named fields, where ten positional arguments (three of
/// them dates) could be swapped unnoticed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PledgeDraft {
    pub registration_number: Option<RegistrationNumber>,
    pub pledgor: Party,
    pub co_pledgors: Vec<Party>,
    pub invalidation_pending_accepted: bool,
    pub pledgee: Party,
    pub county: CountyCode,
    pub secured_amount: Money,
    pub debt_term_start: NaiveDate,
    pub debt_term_end: NaiveDate,
    pub registered_on: NaiveDate,
    pub rights: Vec<Right>,
    pub credit_line_id: Option<Uuid>,
}

impl From<NewPledge> for PledgeDraft {
    /// A checked pledge as a draft again, to be checked again (a replayed entry is judged by the
    /// rules as a request is).
    fn from(pledge: NewPledge) -> PledgeDraft {
        let NewPledge {
            registration_number,
            pledgor,
            co_pledgors,
            invalidation_pending_accepted,
            pledgee,
            county,
            secured_amount,
            debt_term_start,
            debt_term_end,
            registered_on,
            rights,
            credit_line_id,
        } = pledge;
        PledgeDraft {
            registration_number,
            pledgor,
            co_pledgors,
            invalidation_pending_accepted,
            pledgee,
            county,
            secured_amount,
            debt_term_start,
            debt_term_end,
            registered_on,
            rights,
            credit_line_id,
        }
    }
}

/// The rights' violations: none listed twice, none expired before the registration, a given expiry
/// within its statutory term, none expiring before the debt term ends. Returns the refusal's reason
/// when the debt outlives a right (`TERM_EXCEEDS_RIGHT_EXPIRY`), which names the mistake better.
fn right_violations(
    rights: &[Right],
    (registered_on, debt_term_end): (NaiveDate, NaiveDate),
    violations: &mut Vec<FieldViolation>,
) -> Option<Refusal> {
    let mut term_exceeded = false;
    let mut seen = std::collections::HashMap::with_capacity(rights.len());
    for (i, right) in rights.iter().enumerate() {
        if let Some(first) = seen.insert(&right.number, i) {
            violations.push(FieldViolation::new(
                format!("rights[{i}].number"),
                format!("{} is listed twice (also rights[{first}])", right.number),
            ));
        }
        let Some(last_day) = right.expiry.last_day() else { continue };
        if last_day < registered_on {
            let why = match right.expiry {
                Expiry::StatutoryBound { term_years, .. } => format!(
                    "the {term_years}-year term of {} ended by {last_day}, before registration on {registered_on}",
                    right.number
                ),
                _ => format!("the right expired on {last_day} before registration on {registered_on}"),
            };
            violations.push(FieldViolation::new(format!("rights[{i}].expiresOn"), why));
            continue;
        }
        if let (Expiry::Given(_), Some(year), Some(term)) = (
            right.expiry,
            right.number.filing_year(),
            right.number.filing_year().and_then(|y| statutory_term_years(right.kind(), y)),
        ) {
            let last_year = i32::from(year) + term;
            if last_day.year() > last_year {
                violations.push(FieldViolation::new(
                    format!("rights[{i}].expiresOn"),
                    format!("a {} filed in {year} lapses by {last_year} at the latest", right.kind().name()),
                ));
            }
        }
        if debt_term_end > last_day {
            term_exceeded = true;
            violations.push(FieldViolation::new(
                format!("rights[{i}].expiresOn"),
                format!("the debt term ends {debt_term_end}, after {} expires on {last_day}", right.number),
            ));
        }
    }
    term_exceeded.then_some(Refusal::TERM_EXCEEDS_RIGHT_EXPIRY)
}

/// The co-pledgors' violations: a bound on their number, none named twice or as the debtor, none
/// the pledgee.
fn pledgor_violations(pledgor: &Party, co_pledgors: &[Party], pledgee: &Party, violations: &mut Vec<FieldViolation>) {
    if co_pledgors.len() > CO_PLEDGORS_MAX {
        violations.push(FieldViolation::new("coPledgors", format!("at most {CO_PLEDGORS_MAX} co-pledgors per pledge")));
        return;
    }
    let mut seen = std::collections::HashMap::with_capacity(co_pledgors.len());
    for (i, party) in co_pledgors.iter().enumerate() {
        let field = format!("coPledgors[{i}].creditCode");
        if party.credit_code == pledgor.credit_code {
            violations.push(FieldViolation::new(field, "the debtor (pledgor) is named once, as pledgor"));
        } else if party.credit_code == pledgee.credit_code {
            violations.push(FieldViolation::new(field, "the pledgee cannot be a pledgor"));
        } else if let Some(first) = seen.insert(&party.credit_code, i) {
            violations.push(FieldViolation::new(
                field,
                format!("{} is named twice (also coPledgors[{first}])", party.credit_code),
            ));
        }
    }
}

impl NewPledge {
    /// Every pledgor: the debtor first, then the co-pledgors.
    pub fn pledgors(&self) -> impl Iterator<Item = &Party> {
        std::iter::once(&self.pledgor).chain(&self.co_pledgors)
    }

    /// Whether `code` is one of the pledgors.
    pub fn is_pledgor(&self, code: &CreditCode) -> bool {
        self.pledgors().any(|p| p.credit_code == *code)
    }

    /// Checks the rules that concern the content alone; `field` paths are relative to the pledge
    /// (`rights[0].expiresOn`), for the transport to prefix.
    pub fn new(draft: PledgeDraft) -> Result<NewPledge, LedgerError> {
        let PledgeDraft {
            registration_number,
            pledgor,
            co_pledgors,
            invalidation_pending_accepted,
            pledgee,
            county,
            secured_amount,
            debt_term_start,
            debt_term_end,
            registered_on,
            rights,
            credit_line_id,
        } = draft;
        let mut violations = Vec::new();
        let mut reason = Refusal::INVALID_FIELDS;
        if rights.is_empty() {
            violations.push(FieldViolation::new("rights", "a pledge needs at least one right"));
        }
        if rights.len() > RIGHTS_PER_PLEDGE_MAX {
            violations
                .push(FieldViolation::new("rights", format!("at most {RIGHTS_PER_PLEDGE_MAX} rights per pledge")));
        }
        if debt_term_end < debt_term_start {
            violations.push(FieldViolation::new("debtTermEnd", "must not be before debtTermStart"));
        }
        if pledgor.credit_code == pledgee.credit_code {
            violations.push(FieldViolation::new("pledgee.creditCode", "the pledgee cannot be the pledgor"));
        }
        pledgor_violations(&pledgor, &co_pledgors, &pledgee, &mut violations);
        if let Some(refusal) = right_violations(&rights, (registered_on, debt_term_end), &mut violations) {
            reason = refusal;
        }
        if !violations.is_empty() {
            return Err(LedgerError::Invalid { reason, violations });
        }
        Ok(NewPledge {
            registration_number,
            pledgor,
            co_pledgors,
            invalidation_pending_accepted,
            pledgee,
            county,
            secured_amount,
            debt_term_start,
            debt_term_end,
            registered_on,
            rights,
            credit_line_id,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ReleaseReason {
    Repaid,
    Enforced,
    Waived,
    ContractInvalid,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Release {
    pub released_on: NaiveDate,
    pub reason: ReleaseReason,
    pub note: Note,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    pub request_id: Uuid,
    pub at: Micros,
    pub by: PrincipalName,
    /// The business date from which the new values apply (as-of exposure uses it).
    pub effective_on: NaiveDate,
    pub reason: Reason,
    pub secured_amount: (Money, Money),
    pub debt_term_end: (NaiveDate, NaiveDate),
}

/// A request to change an active pledge: at least one of the two values.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PledgeAmendment {
    pub secured_amount: Option<Money>,
    pub debt_term_end: Option<NaiveDate>,
    pub reason: Reason,
    /// `None`: the day the change is recorded, in China (UTC+8).
    pub effective_on: Option<NaiveDate>,
}

/// The calendar date in China (UTC+8) at server time `now`: the default business date of a change.
pub fn china_date(now: Micros) -> NaiveDate {
    let china = chrono::FixedOffset::east_opt(8 * 3600).expect("valid offset");
    chrono::DateTime::from_timestamp_micros(now).map_or(NaiveDate::MIN, |t| t.with_timezone(&china).date_naive())
}

/// A pledge as recorded: the registration plus its life since.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pledge {
    pub id: Uuid,
    pub registration_number: RegistrationNumber,
    pub content: NewPledge,
    pub release: Option<Release>,
    pub changes: Vec<Change>,
    pub created_by: PrincipalName,
    pub released_by: Option<PrincipalName>,
    pub create_time: Micros,
    pub update_time: Micros,
    pub version: u32,
}

impl Pledge {
    pub fn register(
        id: Uuid,
        registration_number: RegistrationNumber,
        content: NewPledge,
        by: PrincipalName,
        now: Micros,
    ) -> Pledge {
        Pledge {
            id,
            registration_number,
            content,
            release: None,
            changes: Vec::new(),
            created_by: by,
            released_by: None,
            create_time: now,
            update_time: now,
            version: 1,
        }
    }

    pub fn is_active(&self) -> bool {
        self.release.is_none()
    }

    fn ensure_active(&self) -> Result<(), LedgerError> {
        match &self.release {
            None => Ok(()),
            Some(r) => Err(LedgerError::refused(
                Refusal::PLEDGE_ALREADY_RELEASED,
                format!("pledge {} was released on {}", self.id, r.released_on),
            )
            .with("pledgeId", self.id)
            .with("releasedOn", r.released_on)),
        }
    }

    /// The pledge after `amendment`, or why it cannot be changed.
    pub fn change(
        &self,
        amendment: &PledgeAmendment,
        request_id: Uuid,
        by: PrincipalName,
        now: Micros,
    ) -> Result<Pledge, LedgerError> {
        self.ensure_active()?;
        let c = &self.content;
        let amount = amendment.secured_amount.unwrap_or(c.secured_amount);
        let term_end = amendment.debt_term_end.unwrap_or(c.debt_term_end);
        if amount == c.secured_amount && term_end == c.debt_term_end {
            return Err(LedgerError::refused(
                Refusal::NOTHING_TO_CHANGE,
                "the requested values are the pledge's current values",
            )
            .with("pledgeId", self.id));
        }
        if term_end < c.debt_term_start {
            return Err(LedgerError::invalid_field(
                "debtTermEnd",
                format!("must not be before the debt term start {}", c.debt_term_start),
            ));
        }
        if let Some((right, last_day)) =
            c.rights.iter().find_map(|r| r.expiry.last_day().filter(|d| term_end > *d).map(|d| (r, d)))
        {
            return Err(LedgerError::refused(
                Refusal::TERM_EXCEEDS_RIGHT_EXPIRY,
                format!("the debt term would end {term_end}, after {} expires on {last_day}", right.number),
            )
            .with("right", &right.number)
            .with("expiresOn", last_day));
        }
        if self.changes.len() >= CHANGES_PER_PLEDGE_MAX {
            return Err(LedgerError::refused(
                Refusal::CHANGES_LIMIT_REACHED,
                format!("a pledge keeps at most {CHANGES_PER_PLEDGE_MAX} changes; register a new pledge"),
            )
            .with("pledgeId", self.id));
        }
        let earliest = self.changes.last().map_or(c.registered_on, |last| last.effective_on.max(c.registered_on));
        let effective_on = amendment.effective_on.unwrap_or_else(|| china_date(now).max(earliest));
        if effective_on < earliest {
            return Err(LedgerError::invalid_field(
                "effectiveOn",
                format!("must not be before {earliest} (the registration or the previous change)"),
            ));
        }
        Ok(self.apply_change(&Change {
            request_id,
            at: now,
            by,
            effective_on,
            reason: amendment.reason.clone(),
            secured_amount: (c.secured_amount, amount),
            debt_term_end: (c.debt_term_end, term_end),
        }))
    }

    /// The pledge after a change that was accepted: how the journal's change entries are applied.
    pub fn apply_change(&self, change: &Change) -> Pledge {
        let mut next = self.clone();
        next.content.secured_amount = change.secured_amount.1;
        next.content.debt_term_end = change.debt_term_end.1;
        next.update_time = change.at;
        next.version += 1;
        next.changes.push(change.clone());
        next
    }

    /// The pledge after a release that was accepted.
    pub fn apply_release(&self, release: &Release, by: PrincipalName, at: Micros) -> Pledge {
        let mut next = self.clone();
        next.release = Some(release.clone());
        next.released_by = Some(by);
        next.update_time = at;
        next.version += 1;
        next
    }

    /// This pledge as it was right after the journal entry written at `at` that touched it (its
    /// registration, a change or its release): every version is in the record itself, since each
    /// change keeps the values before and after. `None` before its registration.
    pub fn as_at(&self, at: Micros) -> Option<Pledge> {
        if at < self.create_time {
            return None;
        }
        let kept = self.changes.iter().take_while(|c| c.at <= at).count();
        let mut version = self.clone();
        if let Some(first) = self.changes.first() {
            version.content.secured_amount = first.secured_amount.0;
            version.content.debt_term_end = first.debt_term_end.0;
        }
        version.changes.clear();
        version.version = 1;
        version.update_time = self.create_time;
        version.release = None;
        version.released_by = None;
        let mut version = self.changes[..kept].iter().fold(version, |p, c| p.apply_change(c));
        if let (Some(release), Some(by)) = (&self.release, &self.released_by)
            && self.update_time <= at
        {
            version = version.apply_release(release, by.clone(), self.update_time);
        }
        Some(version)
    }

    /// The amount it was registered with, before any change.
    pub fn registered_amount(&self) -> Money {
        self.changes.first().map_or(self.content.secured_amount, |c| c.secured_amount.0)
    }

    /// The pledge after its release, or why it cannot be released.
    pub fn release(&self, release: Release, by: PrincipalName, now: Micros) -> Result<Pledge, LedgerError> {
        self.ensure_active()?;
        if release.released_on < self.content.registered_on {
            return Err(LedgerError::invalid_field(
                "releasedOn",
                format!("must not be before the registration on {}", self.content.registered_on),
            ));
        }
        if let Some(last) = self.changes.last()
            && release.released_on < last.effective_on
        {
            return Err(LedgerError::invalid_field(
                "releasedOn",
                format!("must not be before the last change took effect on {}", last.effective_on),
            ));
        }
        Ok(self.apply_release(&release, by, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::text::parse_date;

    fn party(name: &str, code: &str) -> Party {
        Party { name: Name::parse(name).unwrap(), credit_code: CreditCode::parse(code).unwrap() }
    }

    fn right(kind: RightKind, number: &str, expires: &str) -> Right {
        let expires = (!expires.is_empty()).then(|| parse_date(expires).unwrap());
        Right::new(RightNumber::parse(number, kind).unwrap(), Note::parse("").unwrap(), expires)
    }

    fn draft(term_end: &str, rights: Vec<Right>) -> Result<NewPledge, LedgerError> {
        NewPledge::new(PledgeDraft {
            registration_number: None,
            pledgor: party("Pledgor", "91330100716105852F"),
            co_pledgors: Vec::new(),
            invalidation_pending_accepted: false,
            pledgee: party("Bank", "911100001000044477"),
            county: CountyCode::parse("330108").unwrap(),
            secured_amount: Money::parse_positive("100.00").unwrap(),
            debt_term_start: parse_date("2019-06-01").unwrap(),
            debt_term_end: parse_date(term_end).unwrap(),
            registered_on: parse_date("2019-06-05").unwrap(),
            rights,
            credit_line_id: None,
        })
    }

    fn check(result: Result<NewPledge, LedgerError>, expected: Result<(), (&str, &[&str])>) {
        let got = result.map(|_| ()).map_err(|e| match e {
            LedgerError::Invalid { reason, violations } => {
                (reason.as_str(), violations.into_iter().map(|v| v.field).collect::<Vec<_>>())
            }
            other => panic!("unexpected {other:?}"),
        });
        let expected = expected.map_err(|(r, f)| (r, f.iter().map(|s| s.to_string()).collect::<Vec<_>>()));
        assert_eq!(got, expected);
    }

    #[test]
    fn content_rules() {
        let patent = || right(RightKind::InventionPatent, "ZL201811564288.X", "2038-12-01");
        check(draft("2022-05-31", vec![patent()]), Ok(()));
        check(draft("2022-05-31", vec![]), Err(("INVALID_FIELDS", &["rights"])));
        check(draft("2019-05-31", vec![patent()]), Err(("INVALID_FIELDS", &["debtTermEnd"])));
        check(draft("2039-01-01", vec![patent()]), Err(("TERM_EXCEEDS_RIGHT_EXPIRY", &["rights[0].expiresOn"])));
        let same = right(RightKind::InventionPatent, "ZL 2018 1 1564288.X", "2038-12-01");
        check(draft("2022-05-31", vec![patent(), same]), Err(("INVALID_FIELDS", &["rights[1].number"])));
        let utility = right(RightKind::UtilityModel, "ZL202322865413.3", "2040-01-01");
        check(draft("2022-05-31", vec![utility]), Err(("INVALID_FIELDS", &["rights[0].expiresOn"])));
        let expired = right(RightKind::Trademark, "1234567", "2019-01-01");
        check(draft("2019-05-31", vec![expired]), Err(("INVALID_FIELDS", &["debtTermEnd", "rights[0].expiresOn"])));
        // Without a date: a patent is bounded by its statutory term from the filing year.
        check(draft("2038-12-31", vec![right(RightKind::InventionPatent, "ZL201811564288.X", "")]), Ok(()));
        check(
            draft("2039-01-01", vec![right(RightKind::InventionPatent, "ZL201811564288.X", "")]),
            Err(("TERM_EXCEEDS_RIGHT_EXPIRY", &["rights[0].expiresOn"])),
        );
        let old_utility = right(RightKind::UtilityModel, "ZL200820012345.9", "");
        check(draft("2022-05-31", vec![old_utility]), Err(("INVALID_FIELDS", &["rights[0].expiresOn"])));
        // A trademark without a date: no term check applies.
        check(draft("2099-05-31", vec![right(RightKind::Trademark, "1234567", "")]), Ok(()));
    }

    #[test]
    fn an_expiry_left_out_is_bounded_by_the_statute_when_the_number_allows() {
        let check = |kind, number: &str, expected: Option<(&str, u8)>| {
            let got = right(kind, number, "").expiry;
            let expected = expected.map_or(Expiry::Unknown, |(day, term_years)| Expiry::StatutoryBound {
                last_day: parse_date(day).unwrap(),
                term_years,
            });
            assert_eq!(got, expected, "{number}");
        };
        check(RightKind::InventionPatent, "ZL201811564288.X", Some(("2038-12-31", 20)));
        check(RightKind::UtilityModel, "ZL202322865413.3", Some(("2033-12-31", 10)));
        check(RightKind::DesignPatent, "ZL202030123456.3", Some(("2030-12-31", 10)));
        check(RightKind::DesignPatent, "ZL202130123456.8", Some(("2036-12-31", 15)));
        check(RightKind::Trademark, "1234567", None);
    }

    #[test]
    fn every_version_of_a_pledge_is_in_its_record() {
        let content = draft("2022-05-31", vec![right(RightKind::Trademark, "1234567", "2030-01-01")]).unwrap();
        let me = || PrincipalName::parse("bank").unwrap();
        let amend = |amount: &str, end: &str| PledgeAmendment {
            secured_amount: Some(Money::parse_positive(amount).unwrap()),
            debt_term_end: Some(parse_date(end).unwrap()),
            reason: Reason::parse("renegotiated").unwrap(),
            effective_on: None,
        };
        let mut versions = vec![Pledge::register(
            Uuid::nil(),
            RegistrationNumber::assigned(content.registered_on, 7),
            content,
            me(),
            10,
        )];
        for (at, amount, end) in [(20, "150", "2023-01-01"), (30, "90", "2022-06-30"), (40, "400", "2025-01-01")] {
            let next =
                versions.last().unwrap().change(&amend(amount, end), Uuid::from_u128(at as u128), me(), at).unwrap();
            versions.push(next);
        }
        let release = Release {
            released_on: parse_date("2024-01-01").unwrap(),
            reason: ReleaseReason::Repaid,
            note: Note::parse("").unwrap(),
        };
        versions.push(versions.last().unwrap().release(release, me(), 50).unwrap());
        let last = versions.last().unwrap();
        assert_eq!(last.as_at(9), None);
        for version in &versions {
            assert_eq!(last.as_at(version.update_time).as_ref(), Some(version), "version {}", version.version);
            assert_eq!(last.as_at(version.update_time + 5).as_ref(), Some(version), "between entries");
        }
    }

    #[test]
    fn life_of_a_pledge() {
        let content = draft("2022-05-31", vec![right(RightKind::Trademark, "1234567", "2030-01-01")]).unwrap();
        let me = || PrincipalName::parse("bank").unwrap();
        let pledge =
            Pledge::register(Uuid::nil(), RegistrationNumber::assigned(content.registered_on, 1), content, me(), 10);
        assert_eq!(pledge.registration_number.as_str(), "IPL-2019-000000001");
        assert_eq!(pledge.registration_number.assigned_serial(), Some(1));
        let amend = |amount: &str, end: Option<&str>| PledgeAmendment {
            secured_amount: Some(Money::parse_positive(amount).unwrap()),
            debt_term_end: end.map(|e| parse_date(e).unwrap()),
            reason: Reason::parse("renegotiated").unwrap(),
            effective_on: None,
        };
        let changed = pledge.change(&amend("200", None), Uuid::nil(), me(), 11).unwrap();
        assert_eq!((changed.version, changed.changes.len()), (2, 1));
        assert_eq!(changed.content.secured_amount.to_string(), "200.00");
        assert_eq!(
            changed.change(&amend("200", None), Uuid::nil(), me(), 12).unwrap_err().reason(),
            "NOTHING_TO_CHANGE"
        );
        assert_eq!(
            changed.change(&amend("200", Some("2031-01-01")), Uuid::nil(), me(), 12).unwrap_err().reason(),
            "TERM_EXCEEDS_RIGHT_EXPIRY"
        );
        let release = Release {
            released_on: parse_date("2020-01-01").unwrap(),
            reason: ReleaseReason::Repaid,
            note: Note::parse("").unwrap(),
        };
        let released = changed.release(release.clone(), me(), 13).unwrap();
        assert!(!released.is_active());
        assert_eq!(released.release(release, me(), 14).unwrap_err().reason(), "PLEDGE_ALREADY_RELEASED");
        assert_eq!(
            released.change(&amend("300", None), Uuid::nil(), me(), 14).unwrap_err().reason(),
            "PLEDGE_ALREADY_RELEASED"
        );
    }
}

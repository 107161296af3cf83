//! Rights as records of their own: what an IP office's register says of a right today (holder,
//! legal status, a court's freeze, expiry). Offices and the admin record them from their registers;
//! registration then refuses a pledge the register contradicts, and an active pledge whose right
//! loses force or is frozen is flagged at risk (`RiskFlag`).
//!
//! A right the ledger has no record of is accepted as before: the register is the authority, and
//! the ledger knows only what an office has told it.
//!
//! A state is dated no later than the day it is recorded (China time): the register records what
//! happened, and a state dated ahead would fence every correction behind its date. A state recorded
//! in error is withdrawn (`RightRecord::withdraw`), never erased: it stays in the record, marked,
//! and no longer counts for anything. Withdrawn states make room when the record is full, so the
//! bound on a record never locks it against an office that may correct it.

use super::Reason;
use super::error::LedgerError;
use super::ident::CreditCode;
use super::ident::RightNumber;
use super::pledge::{NewPledge, Party};
use super::principal::PrincipalName;
use super::text::{Name, Note};
use super::{FieldViolation, Micros};
use chrono::NaiveDate;

/// A right's record keeps every state it had, so a retry gets the state its request recorded and
/// the history can be shown; this bounds the record (states in force and withdrawn ones together).
/// A right changes status a handful of times.
pub const STATES_PER_RIGHT_MAX: usize = 100;

/// The legal status of a right in its register (CNIPA's patent and trademark registers, the
/// copyright registration of the Copyright Protection Center).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RightStatus {
    /// Valid (有效).
    InForce,
    /// Lapsed: an annual fee not paid (patents), no renewal (trademarks) (终止 / 注销).
    Lapsed,
    /// Declared invalid, or a trademark revoked (宣告无效 / 撤销).
    Invalidated,
    /// The statutory term ran out (期限届满).
    Expired,
}

impl RightStatus {
    pub fn name(self) -> &'static str {
        match self {
            RightStatus::InForce => "IN_FORCE",
            RightStatus::Lapsed => "LAPSED",
            RightStatus::Invalidated => "INVALIDATED",
            RightStatus::Expired => "EXPIRED",
        }
    }
}

/// A court's preservation order on the right (财产保全 / 冻结): the right cannot be disposed of,
/// so the pledgee cannot enforce on it while it holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Freeze {
    /// The court's case number, e.g. (2024)粤0106财保123号.
    pub case_number: Name,
    pub court: Name,
    pub from: NaiveDate,
    /// The end of the preservation period (patents: 6 months, renewable), when the order names one.
    /// The flag follows the record: an office lifts a freeze by recording the right without it.
    pub until: Option<NaiveDate>,
}

/// What a register says of a right at one time: the content of one recording.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RightState {
    pub holder: Party,
    pub status: RightStatus,
    /// The day the status took effect (the gazette's date).
    pub status_since: NaiveDate,
    pub freeze: Option<Freeze>,
    /// The register's expiry date, when it gives one.
    pub expires_on: Option<NaiveDate>,
    pub note: Note,
}

impl RightState {
    /// Checks the state in itself; field paths are relative to the right (`freeze.until`).
    pub fn new(
        holder: Party,
        status: RightStatus,
        status_since: NaiveDate,
        freeze: Option<Freeze>,
        expires_on: Option<NaiveDate>,
        note: Note,
    ) -> Result<RightState, LedgerError> {
        let mut violations = Vec::new();
        if let Some(f) = &freeze
            && f.until.is_some_and(|until| until < f.from)
        {
            violations.push(FieldViolation::new("freeze.until", "must not be before freeze.from"));
        }
        if status == RightStatus::InForce && expires_on.is_some_and(|d| d < status_since) {
            violations.push(FieldViolation::new("expiresOn", "a right in force cannot have expired before its status"));
        }
        if !violations.is_empty() {
            return Err(LedgerError::invalid(violations));
        }
        Ok(RightState { holder, status, status_since, freeze, expires_on, note })
    }

    /// Why an active pledge of this right is at risk, if it is.
    pub fn risk(&self) -> Option<RiskFlag> {
        match (self.status, &self.freeze) {
            (RightStatus::InForce, None) => None,
            (RightStatus::InForce, Some(_)) => Some(RiskFlag::Frozen),
            (status, _) => Some(RiskFlag::NotInForce(status)),
        }
    }
}

impl RightState {
    /// Why an active pledge of this right is at risk at the end of `day`, this state being the one
    /// in effect then: as `risk`, but a court's freeze counts from its `from` (as of a date).
    pub fn risk_on(&self, day: NaiveDate) -> Option<RiskFlag> {
        match (self.status, &self.freeze) {
            (RightStatus::InForce, Some(f)) if day < f.from => None,
            _ => self.risk(),
        }
    }
}

/// Why a pledge's collateral is gone or blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RiskFlag {
    NotInForce(RightStatus),
    Frozen,
    /// The register names another holder than the pledge's pledgor: the right was transferred,
    /// or the pledge was registered against what the register says (a backfilled registration
    /// judged by its own day, which today's record contradicts).
    NotHolder,
}

impl RiskFlag {
    pub fn name(self) -> &'static str {
        match self {
            RiskFlag::NotInForce(status) => status.name(),
            RiskFlag::Frozen => "FROZEN",
            RiskFlag::NotHolder => "NOT_HOLDER",
        }
    }
}

/// One recording of a right's state: by whom and when (the journal entry's principal and time),
/// and its withdrawal when it was recorded in error.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Recorded {
    pub state: RightState,
    pub by: PrincipalName,
    pub at: Micros,
    pub withdrawn: Option<Withdrawal>,
}

impl Recorded {
    pub fn is_withdrawn(&self) -> bool {
        self.withdrawn.is_some()
    }
}

/// A state's withdrawal: by whom, when (the journal entry's), and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Withdrawal {
    pub by: PrincipalName,
    pub at: Micros,
    pub note: Note,
}

/// A right's record: its current state and every earlier one, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RightRecord {
    pub number: RightNumber,
    pub states: Vec<Recorded>,
}

impl RightRecord {
    /// The record after `state` is recorded on `today` (China time), or why it cannot be.
    pub fn record(
        before: Option<&RightRecord>,
        number: &RightNumber,
        state: RightState,
        (by, now, today): (PrincipalName, Micros, NaiveDate),
    ) -> Result<RightRecord, LedgerError> {
        let after_today =
            |field: &str| LedgerError::invalid_field(field, format!("must not be after today ({today}, China time)"));
        if state.status_since > today {
            return Err(after_today("state.statusSince"));
        }
        if state.freeze.as_ref().is_some_and(|f| f.from > today) {
            return Err(after_today("state.freeze.from"));
        }
        let mut record = before.cloned().unwrap_or_else(|| RightRecord { number: number.clone(), states: Vec::new() });
        if let Some(last) = record.current() {
            if last.state == state {
                return Err(LedgerError::refused(
                    Reason::NOTHING_TO_CHANGE,
                    "the register already says this of the right",
                )
                .with("right", number));
            }
            if state.status_since < last.state.status_since {
                return Err(LedgerError::invalid_field(
                    "state.statusSince",
                    format!(
                        "must not be before the status recorded last, from {} (withdraw that state to correct it)",
                        last.state.status_since
                    ),
                ));
            }
        }
        if record.effective().count() >= STATES_PER_RIGHT_MAX {
            return Err(LedgerError::refused(
                Reason::RIGHT_STATES_LIMIT_REACHED,
                format!("a right keeps at most {STATES_PER_RIGHT_MAX} states in force: withdraw one recorded in error"),
            )
            .with("right", number));
        }
        record.push(Recorded { state, by, at: now, withdrawn: None });
        Ok(record)
    }

    /// Appends a recording, dropping the oldest withdrawn state when the record is full (it counts
    /// for nothing; the journal keeps it). The projector applies recordings through this too, so
    /// the record it keeps is the one the decider judged.
    pub fn push(&mut self, recorded: Recorded) {
        if self.states.len() >= STATES_PER_RIGHT_MAX
            && let Some(oldest) = self.states.iter().position(Recorded::is_withdrawn)
        {
            self.states.remove(oldest);
        }
        self.states.push(recorded);
        debug_assert!(self.states.len() <= STATES_PER_RIGHT_MAX);
    }

    /// The record after the state recorded at `recorded_at` is withdrawn, or why it cannot be.
    pub fn withdraw(&self, recorded_at: Micros, withdrawal: Withdrawal) -> Result<RightRecord, LedgerError> {
        let mut record = self.clone();
        let Some(found) = record.states.iter_mut().find(|s| s.at == recorded_at) else {
            return Err(LedgerError::refused(
                Reason::RIGHT_STATE_NOT_FOUND,
                format!("{} has no state recorded at that time", self.number),
            )
            .with("right", &self.number));
        };
        if found.is_withdrawn() {
            return Err(LedgerError::refused(Reason::NOTHING_TO_CHANGE, "that state is already withdrawn")
                .with("right", &self.number));
        }
        found.withdrawn = Some(withdrawal);
        Ok(record)
    }

    /// The states in force (not withdrawn), oldest first.
    pub fn effective(&self) -> impl DoubleEndedIterator<Item = &Recorded> {
        self.states.iter().filter(|s| !s.is_withdrawn())
    }

    /// The state in force now: the last one recorded and not withdrawn (`None`: every state was
    /// withdrawn, and the ledger knows nothing of the right).
    pub fn current(&self) -> Option<&Recorded> {
        self.effective().next_back()
    }

    /// The state recorded at `at` (a recording's entry time), withdrawn or not.
    pub fn recorded_at(&self, at: Micros) -> Option<&Recorded> {
        self.states.iter().find(|s| s.at == at)
    }

    /// The record as it was right after the entry written at `at`; `None` before its first.
    pub fn as_at(&self, at: Micros) -> Option<RightRecord> {
        let states: Vec<Recorded> = self
            .states
            .iter()
            .filter(|s| s.at <= at)
            .map(|s| Recorded { withdrawn: s.withdrawn.clone().filter(|w| w.at <= at), ..s.clone() })
            .collect();
        (!states.is_empty()).then(|| RightRecord { number: self.number.clone(), states })
    }

    /// What the register said of the right on `date`: the last state in force recorded with a
    /// status from `date` or before (statuses are recorded in business order); `None` before the
    /// first.
    pub fn state_on(&self, date: NaiveDate) -> Option<&RightState> {
        self.effective().rev().map(|r| &r.state).find(|s| s.status_since <= date)
    }

    /// Why an active pledge of this right by `pledgor` is at risk now, by the state in force.
    pub fn flag_for(&self, pledgor: &CreditCode) -> Option<RiskFlag> {
        let state = &self.current()?.state;
        if state.holder.credit_code != *pledgor { Some(RiskFlag::NotHolder) } else { state.risk() }
    }

    /// Why an active pledge of this right by `pledgor` is at risk at the end of `day`, by the state
    /// in effect then (as of a date).
    pub fn flag_on(&self, pledgor: &CreditCode, day: NaiveDate) -> Option<RiskFlag> {
        let state = self.state_on(day)?;
        if state.holder.credit_code != *pledgor { Some(RiskFlag::NotHolder) } else { state.risk_on(day) }
    }

    /// The register's objection to pledging this right in `pledge`, if it has one, judged by what
    /// the register said on the registration date (a historical import is judged by its day, not
    /// by today's record): the pledgor is not the holder, the right is not in force or is frozen,
    /// or it expires before the debt term.
    pub fn refuses(&self, pledge: &NewPledge) -> Option<LedgerError> {
        let state = self.state_on(pledge.registered_on)?;
        let refused = |reason, message: String| {
            LedgerError::refused(reason, message)
                .with("right", &self.number)
                .with("rightKind", self.number.kind().name())
                .with("rightNumber", self.number.as_str())
        };
        if state.holder.credit_code != pledge.pledgor.credit_code {
            return Some(refused(
                Reason::PLEDGOR_NOT_HOLDER,
                format!("the register names another holder of {} than the pledgor", self.number),
            ));
        }
        match state.risk() {
            Some(RiskFlag::NotInForce(status)) => {
                return Some(
                    refused(
                        Reason::RIGHT_NOT_IN_FORCE,
                        format!("{} is {} since {}", self.number, status.name(), state.status_since),
                    )
                    .with("status", status.name()),
                );
            }
            Some(RiskFlag::Frozen) => {
                let freeze = state.freeze.as_ref().expect("a frozen right has a freeze");
                return Some(
                    refused(
                        Reason::RIGHT_FROZEN,
                        format!("{} is frozen by court order {}", self.number, freeze.case_number),
                    )
                    .with("caseNumber", &freeze.case_number),
                );
            }
            // `risk` speaks of the state alone; the holder was compared above.
            Some(RiskFlag::NotHolder) | None => {}
        }
        if let Some(expires_on) = state.expires_on
            && pledge.debt_term_end > expires_on
        {
            return Some(
                refused(
                    Reason::TERM_EXCEEDS_RIGHT_EXPIRY,
                    format!(
                        "the debt term ends {}, after {} expires on {expires_on}",
                        pledge.debt_term_end, self.number
                    ),
                )
                .with("expiresOn", expires_on),
            );
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ident::CreditCode;

    fn day(text: &str) -> NaiveDate {
        crate::domain::text::parse_date(text).unwrap()
    }

    /// The flag of a state on each of `days`: `None` or the flag's name.
    fn check(status: RightStatus, freeze_from: Option<&str>, days: &[(&str, Option<&str>)]) {
        let freeze = freeze_from.map(|from| Freeze {
            case_number: Name::parse("(2026)粤0106财保88号").unwrap(),
            court: Name::parse("广州市天河区人民法院").unwrap(),
            from: day(from),
            until: None,
        });
        let holder = Party {
            name: Name::parse("广州某某智能科技有限公司").unwrap(),
            credit_code: CreditCode::parse("91440106MA59C3K2XE").unwrap(),
        };
        let state = RightState::new(holder, status, day("2024-03-15"), freeze, None, Note::parse("").unwrap()).unwrap();
        for (on, expected) in days {
            assert_eq!(state.risk_on(day(on)).map(RiskFlag::name), *expected, "{status:?} on {on}");
        }
    }

    fn holder(code: &str) -> Party {
        Party { name: Name::parse("某某科技有限公司").unwrap(), credit_code: CreditCode::parse(code).unwrap() }
    }

    fn in_force(code: &str, since: &str) -> RightState {
        RightState::new(holder(code), RightStatus::InForce, day(since), None, None, Note::parse("").unwrap()).unwrap()
    }

    #[test]
    fn a_state_is_never_dated_ahead_withdrawn_states_count_for_nothing_and_make_room() {
        const A: &str = "91440106MA59C3K2XE";
        const B: &str = "91330100716105852F";
        let number = RightNumber::parse("ZL202210345678.8", crate::domain::ident::RightKind::InventionPatent).unwrap();
        let by = || PrincipalName::parse("office").unwrap();
        let today = day("2026-12-05");
        let ahead = RightRecord::record(None, &number, in_force(A, "2026-12-06"), (by(), 1, today));
        assert_eq!(ahead.unwrap_err().reason(), "INVALID_FIELDS");
        let mut record = RightRecord::record(None, &number, in_force(A, "2020-01-01"), (by(), 1, today)).unwrap();
        for i in 1..STATES_PER_RIGHT_MAX as i64 {
            let state = in_force(A, &(day("2020-01-01") + chrono::Days::new(i as u64)).to_string());
            record = RightRecord::record(Some(&record), &number, state, (by(), 1 + i, today)).unwrap();
        }
        let full = RightRecord::record(Some(&record), &number, in_force(B, "2026-01-01"), (by(), 500, today));
        assert_eq!(full.unwrap_err().reason(), "RIGHT_STATES_LIMIT_REACHED");
        // The last state withdrawn: the one before is current again, and the record has room.
        let withdrawal = Withdrawal { by: by(), at: 600, note: Note::parse("wrong date").unwrap() };
        let withdrawn = record.withdraw(100, withdrawal.clone()).unwrap();
        assert_eq!(withdrawn.current().map(|r| r.at), Some(99));
        assert_eq!(withdrawn.withdraw(100, withdrawal).unwrap_err().reason(), "NOTHING_TO_CHANGE");
        let after =
            RightRecord::record(Some(&withdrawn), &number, in_force(B, "2026-01-01"), (by(), 700, today)).unwrap();
        assert_eq!(after.states.len(), STATES_PER_RIGHT_MAX, "the withdrawn state made room");
        assert!(after.states.iter().all(|s| !s.is_withdrawn()));
        // Another holder than the pledgor flags a pledge, now and from the state's day.
        let pledgor = CreditCode::parse(A).unwrap();
        assert_eq!(after.flag_for(&pledgor), Some(RiskFlag::NotHolder));
        assert_eq!(after.flag_on(&pledgor, day("2025-12-31")), None);
        assert_eq!(after.flag_on(&pledgor, day("2026-01-01")), Some(RiskFlag::NotHolder));
        // As it was right after the withdrawal's entry, and before it.
        assert!(withdrawn.as_at(99).unwrap().states.iter().all(|s| s.withdrawn.is_none()));
        assert_eq!(withdrawn.as_at(600).unwrap().current().map(|r| r.at), Some(99));
    }

    #[test]
    fn a_freeze_flags_from_its_own_day_and_a_lost_status_from_the_state_s() {
        check(RightStatus::InForce, None, &[("2024-03-15", None), ("2030-01-01", None)]);
        check(
            RightStatus::InForce,
            Some("2026-05-20"),
            &[("2026-05-19", None), ("2026-05-20", Some("FROZEN")), ("2030-01-01", Some("FROZEN"))],
        );
        check(
            RightStatus::Lapsed,
            Some("2026-05-20"),
            &[("2026-05-19", Some("LAPSED")), ("2026-05-20", Some("LAPSED"))],
        );
        check(RightStatus::Invalidated, None, &[("2024-03-15", Some("INVALIDATED"))]);
    }
}

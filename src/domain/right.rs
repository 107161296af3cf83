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
use super::ident::RightNumber;
use super::pledge::{CO_PLEDGORS_MAX, NewPledge, Party};
use super::principal::PrincipalName;
use super::programme::Bp;
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

/// A right has a handful of co-owners at most (a university and its partners, a group's
/// companies); bounded with the pledge's co-pledgors (`pledge::CO_PLEDGORS_MAX`).
pub const CO_HOLDERS_MAX: usize = CO_PLEDGORS_MAX;

/// The statutory grace period for an annual or renewal fee: six months after the due date, with a
/// surcharge (Patent Law Implementing Rules (2023) Art. 115; Trademark Law Art. 40).
pub const FEE_GRACE_MONTHS: u32 = 6;

/// A co-owner of a right, with its share when the register gives shares.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CoHolder {
    pub party: Party,
    pub share: Option<Bp>,
}

/// An invalidation request under examination (无效宣告请求审查中): the right is in force, but may
/// be declared invalid.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InvalidationRequest {
    /// The request's case number at the reexamination and invalidation department.
    pub request_number: Name,
    pub filed_on: NaiveDate,
}

/// An annual (patents) or renewal (trademarks) fee not paid by its due date: the right stays in
/// force through the grace period and lapses after it unless the fee and a surcharge are paid.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FeeOverdue {
    pub due_on: NaiveDate,
    pub grace_ends_on: NaiveDate,
}

impl FeeOverdue {
    /// Overdue from the day after the due date.
    fn overdue_on(&self, day: NaiveDate) -> bool {
        day > self.due_on
    }
}

/// What a register says of a right at one time: the content of one recording.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RightState {
    /// The first holder the register names (the only one of most rights).
    pub holder: Party,
    /// The holder's share, when the register gives shares (then every co-holder has one too).
    pub holder_share: Option<Bp>,
    /// The other co-owners; empty for a right with one holder and in every state recorded before
    /// co-ownership.
    pub co_holders: Vec<CoHolder>,
    pub status: RightStatus,
    /// The day the status took effect (the gazette's date).
    pub status_since: NaiveDate,
    pub freeze: Option<Freeze>,
    /// The register's expiry date, when it gives one.
    pub expires_on: Option<NaiveDate>,
    pub note: Note,
    pub invalidation: Option<InvalidationRequest>,
    pub fee_overdue: Option<FeeOverdue>,
}

/// The holders' violations: a bound on their number, none named twice, shares for all or none,
/// each positive and all adding up to the whole.
fn holder_violations(state: &RightState, violations: &mut Vec<FieldViolation>) {
    if state.co_holders.len() > CO_HOLDERS_MAX {
        violations.push(FieldViolation::new("coHolders", format!("at most {CO_HOLDERS_MAX} co-holders")));
        return;
    }
    let mut seen = std::collections::HashMap::with_capacity(state.co_holders.len() + 1);
    seen.insert(&state.holder.credit_code, "holder".to_owned());
    for (i, co) in state.co_holders.iter().enumerate() {
        if let Some(first) = seen.insert(&co.party.credit_code, format!("coHolders[{i}]")) {
            violations.push(FieldViolation::new(
                format!("coHolders[{i}].creditCode"),
                format!("{} is named twice (also {first})", co.party.credit_code),
            ));
        }
    }
    let shares: Vec<Option<Bp>> =
        std::iter::once(state.holder_share).chain(state.co_holders.iter().map(|c| c.share)).collect();
    if shares.iter().all(Option::is_none) {
        return;
    }
    if shares.iter().any(Option::is_none) {
        violations.push(FieldViolation::new(
            "holderSharePercent",
            "give every holder's share or none (the register gives shares for all co-owners)",
        ));
    } else if shares.contains(&Some(Bp::ZERO)) {
        violations.push(FieldViolation::new("holderSharePercent", "every share must be positive"));
    } else {
        let total: u32 = shares.iter().flatten().map(|s| u32::from(s.get())).sum();
        if total != 10_000 {
            violations.push(FieldViolation::new(
                "holderSharePercent",
                format!("the holders' shares add up to {}.{:02}%, not 100%", total / 100, total % 100),
            ));
        }
    }
}

impl RightState {
    /// Checks the state in itself; field paths are relative to the right (`freeze.until`).
    pub fn new(draft: RightState) -> Result<RightState, LedgerError> {
        let mut violations = Vec::new();
        if let Some(f) = &draft.freeze
            && f.until.is_some_and(|until| until < f.from)
        {
            violations.push(FieldViolation::new("freeze.until", "must not be before freeze.from"));
        }
        if draft.status == RightStatus::InForce && draft.expires_on.is_some_and(|d| d < draft.status_since) {
            violations.push(FieldViolation::new("expiresOn", "a right in force cannot have expired before its status"));
        }
        holder_violations(&draft, &mut violations);
        if draft.status != RightStatus::InForce {
            // A right that lost force has no invalidation or fee left to watch: its status says it all.
            if draft.invalidation.is_some() {
                violations.push(FieldViolation::new("invalidation", "only a right in force can be under invalidation"));
            }
            if draft.fee_overdue.is_some() {
                violations.push(FieldViolation::new("feeOverdue", "only a right in force can have a fee overdue"));
            }
        }
        if let Some(fee) = &draft.fee_overdue {
            let latest = fee.due_on.checked_add_months(chrono::Months::new(FEE_GRACE_MONTHS));
            if fee.grace_ends_on <= fee.due_on {
                violations.push(FieldViolation::new("feeOverdue.graceEndsOn", "must be after feeOverdue.dueOn"));
            } else if latest.is_some_and(|latest| fee.grace_ends_on > latest) {
                violations.push(FieldViolation::new(
                    "feeOverdue.graceEndsOn",
                    format!("the grace period is {FEE_GRACE_MONTHS} months at most after the due date"),
                ));
            }
        }
        if !violations.is_empty() {
            return Err(LedgerError::invalid(violations));
        }
        Ok(draft)
    }

    /// Every holder the register names, the first holder first.
    pub fn holders(&self) -> impl Iterator<Item = &Party> {
        std::iter::once(&self.holder).chain(self.co_holders.iter().map(|c| &c.party))
    }

    /// The holders that are not among the pledge's pledgors.
    fn missing_holders(&self, pledge: &NewPledge) -> Vec<&Party> {
        self.holders().filter(|h| !pledge.is_pledgor(&h.credit_code)).collect()
    }

    /// Whether the register's holders are all among the pledge's pledgors.
    fn held_by(&self, pledge: &NewPledge) -> bool {
        self.holders().all(|h| pledge.is_pledgor(&h.credit_code))
    }

    /// Why an active pledge of this right is at risk, if it is: the status lost, then a freeze,
    /// an invalidation under examination, a fee overdue (the most serious first).
    pub fn risk(&self) -> Option<RiskFlag> {
        if self.status != RightStatus::InForce {
            return Some(RiskFlag::NotInForce(self.status));
        }
        if self.freeze.is_some() {
            Some(RiskFlag::Frozen)
        } else if self.invalidation.is_some() {
            Some(RiskFlag::InvalidationPending)
        } else if self.fee_overdue.is_some() {
            Some(RiskFlag::FeeOverdue)
        } else {
            None
        }
    }
}

impl RightState {
    /// The days after `status_since` on which `risk_on` may change: a freeze's start, an
    /// invalidation's filing, the day after a fee's due date.
    pub fn flag_days(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        let fee = self.fee_overdue.as_ref().and_then(|f| f.due_on.succ_opt());
        self.freeze
            .as_ref()
            .map(|f| f.from)
            .into_iter()
            .chain(self.invalidation.as_ref().map(|i| i.filed_on))
            .chain(fee)
    }

    /// Why an active pledge of this right is at risk at the end of `day`, this state being the one
    /// in effect then: as `risk`, but a freeze counts from its `from`, an invalidation from its
    /// filing and a fee from the day after it was due (as of a date).
    pub fn risk_on(&self, day: NaiveDate) -> Option<RiskFlag> {
        if self.status != RightStatus::InForce {
            return Some(RiskFlag::NotInForce(self.status));
        }
        if self.freeze.as_ref().is_some_and(|f| f.from <= day) {
            Some(RiskFlag::Frozen)
        } else if self.invalidation.as_ref().is_some_and(|i| i.filed_on <= day) {
            Some(RiskFlag::InvalidationPending)
        } else if self.fee_overdue.as_ref().is_some_and(|f| f.overdue_on(day)) {
            Some(RiskFlag::FeeOverdue)
        } else {
            None
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
    /// judged by its own day, which today's record contradicts); or a co-owner the register names
    /// is not among the pledgors.
    NotHolder,
    /// An invalidation request is under examination.
    InvalidationPending,
    /// An annual or renewal fee is overdue (within its grace period).
    FeeOverdue,
}

impl RiskFlag {
    pub fn name(self) -> &'static str {
        match self {
            RiskFlag::NotInForce(status) => status.name(),
            RiskFlag::Frozen => "FROZEN",
            RiskFlag::NotHolder => "NOT_HOLDER",
            RiskFlag::InvalidationPending => "INVALIDATION_PENDING",
            RiskFlag::FeeOverdue => "FEE_OVERDUE",
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
        if state.invalidation.as_ref().is_some_and(|i| i.filed_on > today) {
            return Err(after_today("state.invalidation.filedOn"));
        }
        // A fee is overdue from the day after its due date: recorded overdue, the due date has passed.
        if state.fee_overdue.as_ref().is_some_and(|f| f.due_on >= today) {
            return Err(LedgerError::invalid_field(
                "state.feeOverdue.dueOn",
                format!("must be before today ({today}, China time): a fee is overdue after its due date"),
            ));
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

    /// Why an active pledge of this right is at risk now, by the state in force: a holder the
    /// register names is not among its pledgors, or the state's own risk.
    pub fn flag_for(&self, pledge: &NewPledge) -> Option<RiskFlag> {
        let state = &self.current()?.state;
        if state.held_by(pledge) { state.risk() } else { Some(RiskFlag::NotHolder) }
    }

    /// Why an active pledge of this right is at risk at the end of `day`, by the state in effect
    /// then (as of a date).
    pub fn flag_on(&self, pledge: &NewPledge, day: NaiveDate) -> Option<RiskFlag> {
        let state = self.state_on(day)?;
        if state.held_by(pledge) { state.risk_on(day) } else { Some(RiskFlag::NotHolder) }
    }

    /// The register's objection to pledging this right in `pledge`, if it has one, judged by what
    /// the register said on the registration date (a historical import is judged by its day, not
    /// by today's record): a holder is not among the pledgors, the right is not in force, is
    /// frozen, has a fee overdue or an invalidation pending (unless the parties accept it), or it
    /// expires before the debt term.
    pub fn refuses(&self, pledge: &NewPledge) -> Option<LedgerError> {
        let state = self.state_on(pledge.registered_on)?;
        let refused = |reason, message: String| {
            LedgerError::refused(reason, message)
                .with("right", &self.number)
                .with("rightKind", self.number.kind().name())
                .with("rightNumber", self.number.as_str())
        };
        let missing = state.missing_holders(pledge);
        if missing.len() == state.holders().count() {
            return Some(refused(
                Reason::PLEDGOR_NOT_HOLDER,
                format!("the register names another holder of {} than the pledgors", self.number),
            ));
        }
        if !missing.is_empty() {
            let codes: Vec<&str> = missing.iter().map(|p| p.credit_code.as_str()).collect();
            return Some(
                refused(
                    Reason::CO_OWNER_MISSING,
                    format!(
                        "{} is co-owned and every co-owner must pledge it; not among the pledgors: {}",
                        self.number,
                        codes.join(", ")
                    ),
                )
                .with("missingCoOwners", codes.join(",")),
            );
        }
        if let Some(refusal) = state.status_refusal((&self.number, pledge), &refused) {
            return Some(refusal);
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

impl RightState {
    /// The refusal this state's status and proceedings give a registration on its date: not in
    /// force, frozen, a fee overdue (unpaid fees are a ground of refusal), an invalidation under
    /// examination unless both parties accept it (the guides let it proceed with their consent).
    fn status_refusal(
        &self,
        (right, pledge): (&RightNumber, &NewPledge),
        refused: &dyn Fn(Reason, String) -> LedgerError,
    ) -> Option<LedgerError> {
        if let RightStatus::Lapsed | RightStatus::Invalidated | RightStatus::Expired = self.status {
            return Some(
                refused(
                    Reason::RIGHT_NOT_IN_FORCE,
                    format!("{right} is {} since {}", self.status.name(), self.status_since),
                )
                .with("status", self.status.name()),
            );
        }
        if let Some(freeze) = &self.freeze {
            return Some(
                refused(Reason::RIGHT_FROZEN, format!("{right} is frozen by court order {}", freeze.case_number))
                    .with("caseNumber", &freeze.case_number),
            );
        }
        let day = pledge.registered_on;
        if let Some(fee) = self.fee_overdue.as_ref().filter(|f| f.overdue_on(day)) {
            return Some(
                refused(
                    Reason::RIGHT_FEE_OVERDUE,
                    format!("{right}'s fee due on {} is unpaid (grace period to {})", fee.due_on, fee.grace_ends_on),
                )
                .with("dueOn", fee.due_on)
                .with("graceEndsOn", fee.grace_ends_on),
            );
        }
        if let Some(request) = self.invalidation.as_ref().filter(|i| i.filed_on <= day)
            && !pledge.invalidation_pending_accepted
        {
            return Some(
                refused(
                    Reason::RIGHT_INVALIDATION_PENDING,
                    format!(
                        "{right} is under invalidation request {} since {}; register with \
                         invalidationPendingAccepted if both parties accept it",
                        request.request_number, request.filed_on
                    ),
                )
                .with("requestNumber", &request.request_number)
                .with("filedOn", request.filed_on),
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
        let state = RightState::new(RightState { freeze, ..plain(holder, status, day("2024-03-15")) }).unwrap();
        for (on, expected) in days {
            assert_eq!(state.risk_on(day(on)).map(RiskFlag::name), *expected, "{status:?} on {on}");
        }
    }

    fn holder(code: &str) -> Party {
        Party { name: Name::parse("某某科技有限公司").unwrap(), credit_code: CreditCode::parse(code).unwrap() }
    }

    fn in_force(code: &str, since: &str) -> RightState {
        RightState::new(plain(holder(code), RightStatus::InForce, day(since))).unwrap()
    }

    /// A state with one holder and nothing else recorded.
    fn plain(holder: Party, status: RightStatus, since: NaiveDate) -> RightState {
        RightState {
            holder,
            holder_share: None,
            co_holders: Vec::new(),
            status,
            status_since: since,
            freeze: None,
            expires_on: None,
            note: Note::parse("").unwrap(),
            invalidation: None,
            fee_overdue: None,
        }
    }

    /// A pledge of one patent by `pledgors` (the first the debtor), registered on `on`.
    fn pledge_by(pledgors: &[&str], on: &str, accepted: bool) -> NewPledge {
        let number = RightNumber::parse("ZL202210345678.8", crate::domain::ident::RightKind::InventionPatent).unwrap();
        NewPledge::new(crate::domain::pledge::PledgeDraft {
            registration_number: None,
            pledgor: holder(pledgors[0]),
            co_pledgors: pledgors[1..].iter().map(|c| holder(c)).collect(),
            invalidation_pending_accepted: accepted,
            pledgee: holder("911100001000044477"),
            county: crate::domain::region::CountyCode::parse("440106").unwrap(),
            secured_amount: crate::domain::money::Money::parse_positive("1000000").unwrap(),
            debt_term_start: day(on),
            debt_term_end: day(on) + chrono::Days::new(365),
            registered_on: day(on),
            rights: vec![crate::domain::pledge::Right::new(number, Note::parse("t").unwrap(), None)],
            credit_line_id: None,
        })
        .unwrap()
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
        let pledge = pledge_by(&[A], "2025-06-01", false);
        assert_eq!(after.flag_for(&pledge), Some(RiskFlag::NotHolder));
        assert_eq!(after.flag_on(&pledge, day("2025-12-31")), None);
        assert_eq!(after.flag_on(&pledge, day("2026-01-01")), Some(RiskFlag::NotHolder));
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

    fn record_of(state: RightState) -> RightRecord {
        let number = RightNumber::parse("ZL202210345678.8", crate::domain::ident::RightKind::InventionPatent).unwrap();
        let by = PrincipalName::parse("office").unwrap();
        RightRecord::record(None, &number, RightState::new(state).unwrap(), (by, 1, day("2026-12-05"))).unwrap()
    }

    #[test]
    fn a_co_owned_right_is_pledged_by_every_holder_and_flagged_when_one_is_missing() {
        const A: &str = "91440106MA59C3K2XE";
        const B: &str = "91330100716105852F";
        const C: &str = "914403001922038216";
        let share = |bp| Some(Bp::new(bp).unwrap());
        let co = |code: &str, bp: Option<Bp>| CoHolder { party: holder(code), share: bp };
        let state = RightState {
            holder_share: share(6000),
            co_holders: vec![co(B, share(4000))],
            ..plain(holder(A), RightStatus::InForce, day("2020-01-01"))
        };
        let record = record_of(state.clone());
        // Both owners pledge, in either order: accepted and not flagged.
        for pledgors in [&[A, B][..], &[B, A][..]] {
            let pledge = pledge_by(pledgors, "2026-03-01", false);
            assert!(record.refuses(&pledge).is_none(), "{pledgors:?}");
            assert_eq!(record.flag_for(&pledge), None);
        }
        // One owner alone: refused, naming the one missing; flagged if registered before the record.
        let alone = pledge_by(&[A], "2026-03-01", false);
        let refusal = record.refuses(&alone).unwrap();
        assert_eq!(refusal.reason(), "CO_OWNER_MISSING");
        assert!(refusal.to_string().contains(B), "{refusal}");
        assert_eq!(record.flag_for(&alone), Some(RiskFlag::NotHolder));
        // Neither owner: the pledgor is not a holder at all.
        assert_eq!(record.refuses(&pledge_by(&[C], "2026-03-01", false)).unwrap().reason(), "PLEDGOR_NOT_HOLDER");
        // A pledgor beyond the owners is no objection (it may own another pledged right).
        assert!(record.refuses(&pledge_by(&[A, B, C], "2026-03-01", false)).is_none());
        // Shares: all or none, positive, adding up to 100%.
        let bad = |holder_share, co_share| {
            let draft = RightState { holder_share, co_holders: vec![co(B, co_share)], ..state.clone() };
            RightState::new(draft).unwrap_err().reason()
        };
        assert_eq!(bad(share(6000), None), "INVALID_FIELDS");
        assert_eq!(bad(share(6000), share(3000)), "INVALID_FIELDS");
        assert_eq!(bad(share(10_000), share(0)), "INVALID_FIELDS");
        assert!(
            RightState::new(RightState { holder_share: None, co_holders: vec![co(B, None)], ..state.clone() }).is_ok()
        );
        let twice = RightState { co_holders: vec![co(A, share(4000))], ..state };
        assert_eq!(RightState::new(twice).unwrap_err().reason(), "INVALID_FIELDS");
    }

    #[test]
    fn an_invalidation_and_an_overdue_fee_flag_from_their_days_and_refuse_as_the_guides_say() {
        const A: &str = "91440106MA59C3K2XE";
        let invalidation =
            InvalidationRequest { request_number: Name::parse("4W112345").unwrap(), filed_on: day("2026-05-10") };
        let fee = FeeOverdue { due_on: day("2026-04-30"), grace_ends_on: day("2026-10-30") };
        let base = plain(holder(A), RightStatus::InForce, day("2020-01-01"));
        let pending = RightState { invalidation: Some(invalidation.clone()), ..base.clone() };
        assert_eq!(pending.risk_on(day("2026-05-09")), None);
        assert_eq!(pending.risk_on(day("2026-05-10")).map(RiskFlag::name), Some("INVALIDATION_PENDING"));
        let overdue = RightState { fee_overdue: Some(fee.clone()), ..base.clone() };
        assert_eq!(overdue.risk_on(day("2026-04-30")), None, "due that day: not yet overdue");
        assert_eq!(overdue.risk_on(day("2026-05-01")).map(RiskFlag::name), Some("FEE_OVERDUE"));
        // Both: the invalidation is the more serious; a freeze more serious still.
        let both = RightState { invalidation: Some(invalidation), fee_overdue: Some(fee.clone()), ..base.clone() };
        assert_eq!(both.risk().map(RiskFlag::name), Some("INVALIDATION_PENDING"));
        // A pending invalidation refuses unless both parties accept it; an overdue fee always.
        let record = record_of(pending);
        let refused = record.refuses(&pledge_by(&[A], "2026-06-01", false)).unwrap();
        assert_eq!(refused.reason(), "RIGHT_INVALIDATION_PENDING");
        assert!(record.refuses(&pledge_by(&[A], "2026-06-01", true)).is_none());
        assert!(record.refuses(&pledge_by(&[A], "2026-05-01", false)).is_none(), "before the request");
        let record = record_of(both);
        assert_eq!(record.refuses(&pledge_by(&[A], "2026-06-01", true)).unwrap().reason(), "RIGHT_FEE_OVERDUE");
        // The grace period: after the due date, six months at most; only a right in force.
        let grace = |ends: &str| {
            let fee = FeeOverdue { due_on: day("2026-04-30"), grace_ends_on: day(ends) };
            RightState::new(RightState { fee_overdue: Some(fee), ..base.clone() }).map(|_| ()).map_err(|e| e.reason())
        };
        assert_eq!(grace("2026-10-30"), Ok(()));
        assert_eq!(grace("2026-10-31"), Err("INVALID_FIELDS"));
        assert_eq!(grace("2026-04-30"), Err("INVALID_FIELDS"));
        let lapsed = RightState { status: RightStatus::Lapsed, fee_overdue: Some(fee), ..base };
        assert_eq!(RightState::new(lapsed).unwrap_err().reason(), "INVALID_FIELDS");
    }
}

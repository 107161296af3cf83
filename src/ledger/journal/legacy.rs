//! Journal format version 0: the entries written before the journal had a format of its own (up
//! to commit 84ac8ba). They were the postcard encoding of that release's own structs, with each
//! change carrying the whole pledge before and after. They are kept byte for byte (prefixed with
//! the version byte 0), so their hashes, which cover exactly those bytes, still verify and the
//! chain continues into version 1 unbroken.
//!
//! Every type here is a frozen copy of the release's shape (field for field, variant for variant,
//! in the same order: postcard is not self-describing, and the export's JSON names the fields and
//! variants), independent of today's domain: `V0Pledge` is what the release's `Pledge` was,
//! whatever `Pledge` becomes. Decoding builds today's domain types from them by the explicit
//! conversions below, which are the one place to fix when a domain struct changes. The form-0
//! request fingerprint is computed over the same frozen copies (`V0Command`).
//!
//! Leaves whose serde form is a single string or number stay domain types, since that form holds
//! whatever the struct behind it becomes: the texts `Name`, `Note`, `Reason` (a string),
//! `CreditCode`, `PrincipalName` and `RegistrationNumber` (a string), `Money` (an i128 of fen),
//! `NaiveDate` (a string), `Uuid` (16 bytes), `Micros` (an i64) and token hashes (32 bytes).
//! `RightNumber` and `Region` are serialised as pairs of an enum and a value, so they are mirrored
//! (`V0RightNumber`, `V0Region`) with their enums.
//!
//! The checked-in data directory and export of that release (tests/fixtures/release-84ac8ba) are
//! decoded by the tests; the unit test below pins the encoding of every event and command.

use super::format::Request;
use super::{Entry, Event, Hash, JournalError, RequestKey, Stored};
use crate::domain::Micros;
use crate::domain::credit_line::{CreditLine, NewCreditLine};
use crate::domain::ident::{CreditCode, RightKind, RightNumber};
use crate::domain::money::Money;
use crate::domain::pledge::{
    Change, Expiry, NewPledge, Party, Pledge, PledgeAmendment, RegistrationNumber, Release, ReleaseReason, Right,
};
use crate::domain::principal::{Principal, PrincipalName, Role, TokenHash};
use crate::domain::region::{CountyCode, Level, Region};
use crate::domain::text::{Name, Note, Reason};
use crate::ledger::principals::{CertificateBinding, PrincipalRecord};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub const VERSION: u8 = 0;

/// The release's event, variant for variant (postcard encodes the variant index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LegacyEvent {
    PledgeRegistered { pledge: V0Pledge },
    PledgeChanged { before: V0Pledge, after: V0Pledge },
    PledgeReleased { before: V0Pledge, after: V0Pledge },
    CreditLineCreated { line: V0CreditLine },
    PrincipalCreated { record: V0PrincipalRecord },
    PrincipalRevoked { before: V0PrincipalRecord, after: V0PrincipalRecord },
    CertificateBound { record: V0PrincipalRecord, binding: V0CertificateBinding },
}

/// The release's entry, field for field; also the line format of its `ipledger export`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyEntry {
    pub sequence: u64,
    pub at: Micros,
    pub principal: PrincipalName,
    pub request: Option<(Uuid, [u8; 32])>,
    pub event: LegacyEvent,
    pub prev_hash: Hash,
    pub hash: Hash,
}

/// The release's `ident::RightKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum V0RightKind {
    InventionPatent,
    UtilityModel,
    DesignPatent,
    Trademark,
    Copyright,
}

/// The release's `ident::RightNumber`, whose hand-written serde form is the pair (kind,
/// canonical number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V0RightNumber(pub V0RightKind, pub String);

/// The release's `region::Level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum V0Level {
    Country,
    Province,
    City,
    County,
}

/// The release's `region::Region`, whose hand-written serde form is the pair (level, code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct V0Region(pub V0Level, pub u32);

/// The release's `region::CountyCode`: a newtype of a region (transparent in postcard and JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct V0CountyCode(pub V0Region);

/// The release's `pledge::Party`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V0Party {
    pub name: Name,
    pub credit_code: CreditCode,
}

/// The release's `pledge::Right`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V0Right {
    pub number: V0RightNumber,
    pub title: Note,
    pub expires_on: NaiveDate,
}

/// The release's `pledge::NewPledge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V0NewPledge {
    pub registration_number: Option<RegistrationNumber>,
    pub pledgor: V0Party,
    pub pledgee: V0Party,
    pub county: V0CountyCode,
    pub secured_amount: Money,
    pub debt_term_start: NaiveDate,
    pub debt_term_end: NaiveDate,
    pub registered_on: NaiveDate,
    pub rights: Vec<V0Right>,
    pub credit_line_id: Option<Uuid>,
}

/// The release's `pledge::ReleaseReason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum V0ReleaseReason {
    Repaid,
    Enforced,
    Waived,
    ContractInvalid,
    Other,
}

/// The release's `pledge::Release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V0Release {
    pub released_on: NaiveDate,
    pub reason: V0ReleaseReason,
    pub note: Note,
}

/// The release's `pledge::Change`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V0Change {
    pub request_id: Uuid,
    pub at: Micros,
    pub by: PrincipalName,
    pub effective_on: NaiveDate,
    pub reason: Reason,
    pub secured_amount: (Money, Money),
    pub debt_term_end: (NaiveDate, NaiveDate),
}

/// The release's `pledge::PledgeAmendment` (only ever in a form-0 fingerprint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V0PledgeAmendment {
    pub secured_amount: Option<Money>,
    pub debt_term_end: Option<NaiveDate>,
    pub reason: Reason,
    pub effective_on: Option<NaiveDate>,
}

/// The release's `pledge::Pledge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V0Pledge {
    pub id: Uuid,
    pub registration_number: RegistrationNumber,
    pub content: V0NewPledge,
    pub release: Option<V0Release>,
    pub changes: Vec<V0Change>,
    pub created_by: PrincipalName,
    pub released_by: Option<PrincipalName>,
    pub create_time: Micros,
    pub update_time: Micros,
    pub version: u32,
}

/// The release's `credit_line::NewCreditLine`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V0NewCreditLine {
    pub bank: V0Party,
    pub region: V0Region,
    pub program: Note,
    pub limit: Money,
    pub valid_from: NaiveDate,
    pub valid_to: NaiveDate,
}

/// The release's `credit_line::CreditLine`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V0CreditLine {
    pub id: Uuid,
    pub content: V0NewCreditLine,
    pub drawn: Money,
    pub created_by: PrincipalName,
    pub create_time: Micros,
    pub update_time: Micros,
}

/// The release's `principal::Role`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum V0Role {
    Admin,
    Bank(CreditCode),
    Office(V0Region),
}

/// The release's `principal::Principal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V0Principal {
    pub name: PrincipalName,
    pub role: V0Role,
    pub create_time: Micros,
    pub revoke_time: Option<Micros>,
}

/// The release's `principals::PrincipalRecord`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V0PrincipalRecord {
    pub principal: V0Principal,
    pub token_hash: TokenHash,
}

/// The release's `principals::CertificateBinding` (derived serde, no hand-written form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum V0CertificateBinding {
    Subject(String),
    DnsName(String),
    Uri(String),
    Email(String),
}

/// The release's `command::Command` as far as a fingerprint goes: the commands with a request id,
/// which were its first four variants (postcard encodes the index, so they must stay first). The
/// others (principals, certificates) never had a fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum V0Command {
    RegisterPledge { request_id: Uuid, pledge: V0NewPledge },
    ChangePledge { request_id: Uuid, id: Uuid, amendment: V0PledgeAmendment },
    ReleasePledge { request_id: Uuid, id: Uuid, release: V0Release },
    CreateCreditLine { request_id: Uuid, line: V0NewCreditLine },
}

// Conversions from the release's shapes into today's domain types, used by `decode`. Each one
// destructures and builds field by field (never through serde), so a field added to a domain type
// fails to compile here, where its value for old entries is decided. The leaves the release
// validated on decoding (right numbers, regions) are validated here the same way.

impl V0RightKind {
    fn into_domain(self) -> RightKind {
        match self {
            V0RightKind::InventionPatent => RightKind::InventionPatent,
            V0RightKind::UtilityModel => RightKind::UtilityModel,
            V0RightKind::DesignPatent => RightKind::DesignPatent,
            V0RightKind::Trademark => RightKind::Trademark,
            V0RightKind::Copyright => RightKind::Copyright,
        }
    }

    fn of(kind: RightKind) -> V0RightKind {
        match kind {
            RightKind::InventionPatent => V0RightKind::InventionPatent,
            RightKind::UtilityModel => V0RightKind::UtilityModel,
            RightKind::DesignPatent => V0RightKind::DesignPatent,
            RightKind::Trademark => V0RightKind::Trademark,
            RightKind::Copyright => V0RightKind::Copyright,
        }
    }
}

impl V0RightNumber {
    /// As the release decoded a right number: parsed again for its kind.
    fn into_domain(self) -> Result<RightNumber, String> {
        let V0RightNumber(kind, text) = self;
        RightNumber::parse(&text, kind.into_domain()).map_err(|e| format!("right number {text:?}: {e}"))
    }

    fn of(number: &RightNumber) -> V0RightNumber {
        V0RightNumber(V0RightKind::of(number.kind()), number.as_str().to_owned())
    }
}

impl V0Level {
    fn into_domain(self) -> Level {
        match self {
            V0Level::Country => Level::Country,
            V0Level::Province => Level::Province,
            V0Level::City => Level::City,
            V0Level::County => Level::County,
        }
    }

    fn of(level: Level) -> V0Level {
        match level {
            Level::Country => V0Level::Country,
            Level::Province => V0Level::Province,
            Level::City => V0Level::City,
            Level::County => V0Level::County,
        }
    }
}

impl V0Region {
    /// As the release decoded a region: a region of the table at exactly that level. The table
    /// is reached through the parsers, which pick the level themselves (a code that is both a city
    /// and a county parses as the city), so the county level goes through `CountyCode`.
    fn into_domain(self) -> Result<Region, String> {
        let V0Region(level, code) = self;
        let text = format!("{code:06}");
        let unknown = || format!("region {text} at level {level:?} is not in the table");
        let region = match level {
            V0Level::Country if code == 0 => Region::COUNTRY,
            V0Level::Country => return Err(unknown()),
            V0Level::Province | V0Level::City => Region::parse(&text).map_err(|_| unknown())?,
            V0Level::County => CountyCode::parse(&text).map_err(|_| unknown())?.region(),
        };
        if region.level() != level.into_domain() {
            return Err(unknown());
        }
        Ok(region)
    }

    fn of(region: Region) -> V0Region {
        V0Region(V0Level::of(region.level()), region.code())
    }
}

impl V0CountyCode {
    fn into_domain(self) -> Result<CountyCode, String> {
        let V0CountyCode(V0Region(level, code)) = self;
        if level != V0Level::County {
            return Err(format!("county {code:06} at level {level:?}"));
        }
        CountyCode::parse(&format!("{code:06}")).map_err(|e| format!("county {code:06}: {e}"))
    }

    fn of(county: CountyCode) -> V0CountyCode {
        V0CountyCode(V0Region::of(county.region()))
    }
}

impl V0Party {
    fn into_domain(self) -> Party {
        let V0Party { name, credit_code } = self;
        Party { name, credit_code }
    }

    fn of(party: &Party) -> V0Party {
        let Party { name, credit_code } = party;
        V0Party { name: name.clone(), credit_code: credit_code.clone() }
    }
}

impl V0Right {
    fn into_domain(self) -> Result<Right, String> {
        let V0Right { number, title, expires_on } = self;
        Ok(Right { number: number.into_domain()?, title, expiry: Expiry::Given(expires_on) })
    }

    /// `None` for a right without a given expiry: the release required one, so no request of the
    /// release holds such a right.
    fn of(right: &Right) -> Option<V0Right> {
        let Right { number, title, expiry } = right;
        let Expiry::Given(expires_on) = *expiry else { return None };
        Some(V0Right { number: V0RightNumber::of(number), title: title.clone(), expires_on })
    }
}

impl V0NewPledge {
    fn into_domain(self) -> Result<NewPledge, String> {
        let V0NewPledge {
            registration_number,
            pledgor,
            pledgee,
            county,
            secured_amount,
            debt_term_start,
            debt_term_end,
            registered_on,
            rights,
            credit_line_id,
        } = self;
        Ok(NewPledge {
            registration_number,
            pledgor: pledgor.into_domain(),
            co_pledgors: Vec::new(),
            invalidation_pending_accepted: false,
            pledgee: pledgee.into_domain(),
            county: county.into_domain()?,
            secured_amount,
            debt_term_start,
            debt_term_end,
            registered_on,
            rights: rights.into_iter().map(V0Right::into_domain).collect::<Result<_, _>>()?,
            credit_line_id,
        })
    }

    fn of(pledge: &NewPledge) -> Option<V0NewPledge> {
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
        // Version 0 had one pledgor and no consent to a pending invalidation.
        if !co_pledgors.is_empty() || *invalidation_pending_accepted {
            return None;
        }
        Some(V0NewPledge {
            registration_number: registration_number.clone(),
            pledgor: V0Party::of(pledgor),
            pledgee: V0Party::of(pledgee),
            county: V0CountyCode::of(*county),
            secured_amount: *secured_amount,
            debt_term_start: *debt_term_start,
            debt_term_end: *debt_term_end,
            registered_on: *registered_on,
            rights: rights.iter().map(V0Right::of).collect::<Option<_>>()?,
            credit_line_id: *credit_line_id,
        })
    }
}

impl V0ReleaseReason {
    fn into_domain(self) -> ReleaseReason {
        match self {
            V0ReleaseReason::Repaid => ReleaseReason::Repaid,
            V0ReleaseReason::Enforced => ReleaseReason::Enforced,
            V0ReleaseReason::Waived => ReleaseReason::Waived,
            V0ReleaseReason::ContractInvalid => ReleaseReason::ContractInvalid,
            V0ReleaseReason::Other => ReleaseReason::Other,
        }
    }

    fn of(reason: ReleaseReason) -> V0ReleaseReason {
        match reason {
            ReleaseReason::Repaid => V0ReleaseReason::Repaid,
            ReleaseReason::Enforced => V0ReleaseReason::Enforced,
            ReleaseReason::Waived => V0ReleaseReason::Waived,
            ReleaseReason::ContractInvalid => V0ReleaseReason::ContractInvalid,
            ReleaseReason::Other => V0ReleaseReason::Other,
        }
    }
}

impl V0Release {
    fn into_domain(self) -> Release {
        let V0Release { released_on, reason, note } = self;
        Release { released_on, reason: reason.into_domain(), note }
    }

    fn of(release: &Release) -> V0Release {
        let Release { released_on, reason, note } = release;
        V0Release { released_on: *released_on, reason: V0ReleaseReason::of(*reason), note: note.clone() }
    }
}

impl V0Change {
    fn into_domain(self) -> Change {
        let V0Change { request_id, at, by, effective_on, reason, secured_amount, debt_term_end } = self;
        Change { request_id, at, by, effective_on, reason, secured_amount, debt_term_end }
    }
}

impl V0PledgeAmendment {
    fn of(amendment: &PledgeAmendment) -> V0PledgeAmendment {
        let PledgeAmendment { secured_amount, debt_term_end, reason, effective_on } = amendment;
        V0PledgeAmendment {
            secured_amount: *secured_amount,
            debt_term_end: *debt_term_end,
            reason: reason.clone(),
            effective_on: *effective_on,
        }
    }
}

impl V0Pledge {
    fn into_domain(self) -> Result<Pledge, String> {
        let V0Pledge {
            id,
            registration_number,
            content,
            release,
            changes,
            created_by,
            released_by,
            create_time,
            update_time,
            version,
        } = self;
        Ok(Pledge {
            id,
            registration_number,
            content: content.into_domain()?,
            release: release.map(V0Release::into_domain),
            changes: changes.into_iter().map(V0Change::into_domain).collect(),
            created_by,
            released_by,
            create_time,
            update_time,
            version,
        })
    }
}

impl V0NewCreditLine {
    fn into_domain(self) -> Result<NewCreditLine, String> {
        let V0NewCreditLine { bank, region, program, limit, valid_from, valid_to } = self;
        Ok(NewCreditLine {
            bank: bank.into_domain(),
            region: region.into_domain()?,
            program,
            limit,
            valid_from,
            valid_to,
        })
    }

    fn of(line: &NewCreditLine) -> V0NewCreditLine {
        let NewCreditLine { bank, region, program, limit, valid_from, valid_to } = line;
        V0NewCreditLine {
            bank: V0Party::of(bank),
            region: V0Region::of(*region),
            program: program.clone(),
            limit: *limit,
            valid_from: *valid_from,
            valid_to: *valid_to,
        }
    }
}

impl V0CreditLine {
    fn into_domain(self) -> Result<CreditLine, String> {
        let V0CreditLine { id, content, drawn, created_by, create_time, update_time } = self;
        Ok(CreditLine { id, content: content.into_domain()?, drawn, created_by, create_time, update_time })
    }
}

impl V0Role {
    fn into_domain(self) -> Result<Role, String> {
        Ok(match self {
            V0Role::Admin => Role::Admin,
            V0Role::Bank(code) => Role::Bank(code),
            V0Role::Office(region) => Role::Office(region.into_domain()?),
        })
    }
}

impl V0PrincipalRecord {
    fn into_domain(self) -> Result<PrincipalRecord, String> {
        let V0PrincipalRecord { principal: V0Principal { name, role, create_time, revoke_time }, token_hash } = self;
        Ok(PrincipalRecord {
            principal: Principal { name, role: role.into_domain()?, create_time, revoke_time },
            token_hash,
        })
    }
}

impl V0CertificateBinding {
    fn into_domain(self) -> CertificateBinding {
        match self {
            V0CertificateBinding::Subject(v) => CertificateBinding::Subject(v),
            V0CertificateBinding::DnsName(v) => CertificateBinding::DnsName(v),
            V0CertificateBinding::Uri(v) => CertificateBinding::Uri(v),
            V0CertificateBinding::Email(v) => CertificateBinding::Email(v),
        }
    }
}

impl V0Command {
    /// The request in the release's shape; `None` for requests the release did not have (the
    /// risk side's), which never had a form-0 fingerprint.
    fn of(request_id: Uuid, request: Request<'_>) -> Option<V0Command> {
        match request {
            Request::RegisterPledge(pledge) => {
                Some(V0Command::RegisterPledge { request_id, pledge: V0NewPledge::of(pledge)? })
            }
            Request::ChangePledge { id, amendment } => {
                Some(V0Command::ChangePledge { request_id, id, amendment: V0PledgeAmendment::of(amendment) })
            }
            Request::ReleasePledge { id, release } => {
                Some(V0Command::ReleasePledge { request_id, id, release: V0Release::of(release) })
            }
            Request::CreateCreditLine(line) => {
                Some(V0Command::CreateCreditLine { request_id, line: V0NewCreditLine::of(line) })
            }
            Request::RecordRight { .. }
            | Request::RecordDefault { .. }
            | Request::ResolveDefault { .. }
            | Request::RecordValuation { .. }
            | Request::CreateProgramme(_)
            | Request::FileClaim { .. }
            | Request::DecideClaim { .. }
            | Request::PayClaim { .. }
            | Request::WithdrawRightState { .. } => None,
        }
    }
}

impl LegacyEntry {
    /// The release's hash: SHA-256 over the previous hash and the postcard bytes of the rest.
    pub fn compute_hash(&self) -> Hash {
        let body = postcard::to_allocvec(&(self.sequence, self.at, &self.principal, &self.request, &self.event))
            .expect("in-memory encoding");
        let mut hasher = Sha256::new();
        hasher.update(self.prev_hash);
        hasher.update(&body);
        hasher.finalize().into()
    }

    /// The entry kept as version 0 of the journal.
    pub fn to_stored(&self) -> Stored {
        let mut bytes = vec![VERSION];
        bytes.extend(postcard::to_allocvec(self).expect("in-memory encoding"));
        Stored { sequence: self.sequence, hash: self.hash, bytes }
    }
}

/// Decodes a version-0 entry, checks its hash the release's way and converts it into today's types.
pub fn decode(stored: &Stored) -> Result<Entry, JournalError> {
    let corrupt = |what: String| JournalError::Corrupt(format!("entry {} (version 0): {what}", stored.sequence));
    let legacy: LegacyEntry = postcard::from_bytes(&stored.bytes[1..]).map_err(|e| corrupt(e.to_string()))?;
    if legacy.compute_hash() != legacy.hash {
        return Err(corrupt("its hash does not match its content".to_owned()));
    }
    let event = match legacy.event {
        LegacyEvent::PledgeRegistered { pledge } => {
            Event::PledgeRegistered { pledge: pledge.into_domain().map_err(corrupt)? }
        }
        LegacyEvent::PledgeChanged { after, .. } => {
            let change =
                after.changes.last().cloned().ok_or_else(|| corrupt("a change that lists no change".to_owned()))?;
            Event::PledgeChanged { id: after.id, change: change.into_domain() }
        }
        LegacyEvent::PledgeReleased { after, .. } => {
            let release = after.release.ok_or_else(|| corrupt("a release of a pledge not released".to_owned()))?;
            Event::PledgeReleased { id: after.id, release: release.into_domain() }
        }
        LegacyEvent::CreditLineCreated { line } => {
            Event::CreditLineCreated { line: line.into_domain().map_err(corrupt)? }
        }
        LegacyEvent::PrincipalCreated { record } => {
            Event::PrincipalCreated { record: record.into_domain().map_err(corrupt)? }
        }
        LegacyEvent::PrincipalRevoked { after, .. } => Event::PrincipalRevoked { name: after.principal.name },
        LegacyEvent::CertificateBound { record, binding } => {
            Event::CertificateBound { name: record.principal.name, binding: binding.into_domain() }
        }
    };
    Ok(Entry {
        sequence: legacy.sequence,
        at: legacy.at,
        principal: legacy.principal,
        request: legacy.request.map(|(id, fingerprint)| RequestKey { id, fingerprint, form: VERSION }),
        event,
        prev_hash: legacy.prev_hash,
        hash: legacy.hash,
        rules: 0,
    })
}

/// The release's request fingerprint (form 0): SHA-256 of the postcard bytes of the principal's
/// name and the command in the release's shape (`V0Command`). A retry, after the upgrade, of a
/// request first sent to the release is recognised by it. `None` for a command without a request
/// id, which has no fingerprint. It takes the request as the decider's canonical view of a command
/// (`format::Request`), so the journal needs nothing of the decider's types.
pub fn fingerprint(principal: &PrincipalName, request_id: Uuid, request: Request<'_>) -> Option<Hash> {
    let command = V0Command::of(request_id, request)?;
    let bytes = postcard::to_allocvec(&(principal, &command)).expect("in-memory encoding");
    Some(Sha256::digest(bytes).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::text::Text;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }
    fn text<const MIN: usize, const MAX: usize>(s: &str) -> Text<MIN, MAX> {
        Text::parse(s).unwrap()
    }
    fn name(s: &str) -> PrincipalName {
        PrincipalName::parse(s).unwrap()
    }
    fn yuan(y: i128) -> Money {
        Money::from_fen(y * 100).unwrap()
    }
    fn id(i: u128) -> Uuid {
        Uuid::from_u128(i)
    }
    fn code(s: &str) -> CreditCode {
        CreditCode::parse(s).unwrap()
    }
    fn registration() -> RegistrationNumber {
        RegistrationNumber::parse("Z-2019-0042").unwrap()
    }
    fn pledgor() -> V0Party {
        V0Party { name: text("Hangzhou Widget Co"), credit_code: code("91330100716105852F") }
    }
    fn bank() -> V0Party {
        V0Party { name: text("Bank of Shenzhen"), credit_code: code("914403001922038216") }
    }
    fn right(kind: V0RightKind, number: &str, title: &str, expires_on: NaiveDate) -> V0Right {
        V0Right { number: V0RightNumber(kind, number.to_owned()), title: text(title), expires_on }
    }
    fn new_pledge() -> V0NewPledge {
        V0NewPledge {
            registration_number: Some(registration()),
            pledgor: pledgor(),
            pledgee: bank(),
            county: V0CountyCode(V0Region(V0Level::County, 330108)),
            secured_amount: yuan(1_000_000),
            debt_term_start: date(2019, 3, 1),
            debt_term_end: date(2024, 2, 28),
            registered_on: date(2019, 3, 5),
            rights: vec![
                right(V0RightKind::InventionPatent, "ZL201811564288.X", "Widget", date(2038, 11, 1)),
                right(V0RightKind::UtilityModel, "ZL201820681122.5", "", date(2028, 6, 1)),
                right(V0RightKind::Trademark, "12345678", "WIDGET", date(2029, 1, 1)),
                right(V0RightKind::Copyright, "2019-R-11-0001", "Widget firmware", date(2069, 12, 31)),
            ],
            credit_line_id: Some(id(7)),
        }
    }
    fn change() -> V0Change {
        V0Change {
            request_id: id(22),
            at: 1_560_000_000_000_000,
            by: name("bank-a"),
            effective_on: date(2019, 6, 1),
            reason: text("Repaid in part"),
            secured_amount: (yuan(1_000_000), yuan(600_000)),
            debt_term_end: (date(2024, 2, 28), date(2023, 12, 31)),
        }
    }
    /// The pledge after registration (1), its change (2) and its release (3).
    fn pledge(stage: u32) -> V0Pledge {
        let mut content = new_pledge();
        if stage >= 2 {
            content.secured_amount = yuan(600_000);
            content.debt_term_end = date(2023, 12, 31);
        }
        V0Pledge {
            id: id(1),
            registration_number: registration(),
            content,
            release: (stage >= 3).then(|| V0Release {
                released_on: date(2020, 1, 2),
                reason: V0ReleaseReason::Waived,
                note: text("Settled"),
            }),
            changes: if stage >= 2 { vec![change()] } else { vec![] },
            created_by: name("bank-a"),
            released_by: (stage >= 3).then(|| name("bank-a")),
            create_time: 1_551_744_000_000_000,
            update_time: [0, 1_551_744_000_000_000, 1_560_000_000_000_000, 1_577_923_200_000_000][stage as usize],
            version: stage,
        }
    }
    fn new_line() -> V0NewCreditLine {
        V0NewCreditLine {
            bank: bank(),
            region: V0Region(V0Level::Province, 330000),
            program: text("Patent loans"),
            limit: yuan(50_000_000),
            valid_from: date(2019, 1, 1),
            valid_to: date(2021, 12, 31),
        }
    }
    fn record(who: &str, role: V0Role, revoked: bool) -> V0PrincipalRecord {
        V0PrincipalRecord {
            principal: V0Principal {
                name: name(who),
                role,
                create_time: 1_546_300_000_000_000,
                revoke_time: revoked.then_some(1_580_000_000_000_000),
            },
            token_hash: [7; 32],
        }
    }
    fn events() -> Vec<LegacyEvent> {
        let office = || V0Role::Office(V0Region(V0Level::City, 330100));
        vec![
            LegacyEvent::PledgeRegistered { pledge: pledge(1) },
            LegacyEvent::PledgeChanged { before: pledge(1), after: pledge(2) },
            LegacyEvent::PledgeReleased { before: pledge(2), after: pledge(3) },
            LegacyEvent::CreditLineCreated {
                line: V0CreditLine {
                    id: id(7),
                    content: new_line(),
                    drawn: yuan(1_000_000),
                    created_by: name("admin"),
                    create_time: 1_546_300_800_000_000,
                    update_time: 1_551_744_000_000_000,
                },
            },
            LegacyEvent::PrincipalCreated { record: record("bank-a", V0Role::Bank(code("914403001922038216")), false) },
            LegacyEvent::PrincipalRevoked {
                before: record("zj-office", office(), false),
                after: record("zj-office", office(), true),
            },
            LegacyEvent::CertificateBound {
                record: record("root", V0Role::Admin, false),
                binding: V0CertificateBinding::Uri("spiffe://ipledger/root".to_owned()),
            },
        ]
    }
    fn commands() -> Vec<V0Command> {
        vec![
            V0Command::RegisterPledge { request_id: id(21), pledge: new_pledge() },
            V0Command::ChangePledge {
                request_id: id(22),
                id: id(1),
                amendment: V0PledgeAmendment {
                    secured_amount: Some(yuan(600_000)),
                    debt_term_end: None,
                    reason: text("Repaid in part"),
                    effective_on: Some(date(2019, 6, 1)),
                },
            },
            V0Command::ReleasePledge {
                request_id: id(23),
                id: id(1),
                release: V0Release {
                    released_on: date(2020, 1, 2),
                    reason: V0ReleaseReason::ContractInvalid,
                    note: text(""),
                },
            },
            V0Command::CreateCreditLine { request_id: id(24), line: new_line() },
        ]
    }
    /// Today's command with the same content, through the conversions `decode` uses.
    /// The form-0 fingerprint of a release's command, through today's types.
    fn fingerprint_of(principal: &PrincipalName, v0: &V0Command) -> Option<Hash> {
        match v0.clone() {
            V0Command::RegisterPledge { request_id, pledge } => {
                fingerprint(principal, request_id, Request::RegisterPledge(&pledge.into_domain().unwrap()))
            }
            V0Command::ChangePledge { request_id, id, amendment } => {
                let V0PledgeAmendment { secured_amount, debt_term_end, reason, effective_on } = amendment;
                let amendment = PledgeAmendment { secured_amount, debt_term_end, reason, effective_on };
                fingerprint(principal, request_id, Request::ChangePledge { id, amendment: &amendment })
            }
            V0Command::ReleasePledge { request_id, id, release } => {
                fingerprint(principal, request_id, Request::ReleasePledge { id, release: &release.into_domain() })
            }
            V0Command::CreateCreditLine { request_id, line } => {
                fingerprint(principal, request_id, Request::CreateCreditLine(&line.into_domain().unwrap()))
            }
        }
    }
    fn digest<T: Serialize>(value: &T) -> String {
        super::super::hex(&Sha256::digest(postcard::to_allocvec(value).unwrap()))
    }

    // SHA-256 of the postcard bytes, computed once from the release's shapes (the domain types of
    // main at a5ab665, unchanged since 84ac8ba) with the same contents: the mirrors above must
    // give the very same bytes.
    const EVENTS: [&str; 7] = [
        "6a8e9a5beb49db91ecb494f9f5a1889e827fb31e679befe718bf7323e9098bd1",
        "5903bd1410f7498392c44e8adb19b63d4cef97faf106f93ba887af1edc1ab9ff",
        "dc270488650ff826048036a8ef7566e22e3af48b9cc7c22976db432d28e4113b",
        "45e26c57b497746e9bc55c5ccdf134378e3d387602fef917b45a704f73566c5d",
        "af38ffdae32d03181cdd8d011471dba2b70f8dca9247b681df74168c723421b8",
        "b9deaf3e67fe818685f5c82f4ddee34e405c73c2a800120c87e7daaa2236a663",
        "f42c82759cd83b2bbc63588c0652bea7b989b97c6f7b3e2e678eb8f1f1a1f985",
    ];
    /// The form-0 fingerprints of the four commands sent by `bank-a`.
    const FINGERPRINTS: [&str; 4] = [
        "097e355cff441e4bc942e51cd1af8f79ed73ad58b4ffa0a5fcb8daef3aa84a09",
        "bdfe01f28fb4e99c60b63b39b76b7554412274d4284aaa27d6b674b671958d2d",
        "dc23b9ee7f1d1e4f57268082843e02aac825c119cb55f4bba9e3a66fd0bb673a",
        "36199fda6e7e2f7833ae8541cb155f342bcc6752bb6c062946bd8189839ef919",
    ];
    const BINDINGS: &str = "7e8442bbde7098174ea7fcf36fb9335a1e08c5a61897e112b30a4b6b85f5a970";
    const REASONS: &str = "acc80a36036a3ded1a9442615e43a99bfe34d4feee3d60268ff3d7f1000c3957";
    const ROLES: &str = "12accae98a2e4b5e76b0759f44eb828b13fedb850519ffcf22e6bd1537b320ee";
    const ENTRY: &str = "767403b682d6486847165cb77cd5f5ce723cbd212335de9f417cdb3b1f8005a4";
    const ENTRY_HASH: &str = "1dc84d7a33564ec5fe12f36ba981bbe3b10138b962403744d2bce4356fd8e67b";
    const ENTRY_JSON: &str = "c845a50bce3a4d49f29162279d379dcbc70f59da68f6463307b939b8578b48de";

    #[test]
    fn the_frozen_types_encode_as_the_release_did() {
        for (event, expected) in events().iter().zip(EVENTS) {
            assert_eq!(digest(event), expected, "{event:?}");
        }
        let bindings = [
            V0CertificateBinding::Subject("CN=bank-a,O=Bank A".to_owned()),
            V0CertificateBinding::DnsName("bank-a.example".to_owned()),
            V0CertificateBinding::Uri("spiffe://x/y".to_owned()),
            V0CertificateBinding::Email("ops@bank-a.example".to_owned()),
        ];
        assert_eq!(digest(&bindings.to_vec()), BINDINGS);
        let reasons = [
            V0ReleaseReason::Repaid,
            V0ReleaseReason::Enforced,
            V0ReleaseReason::Waived,
            V0ReleaseReason::ContractInvalid,
            V0ReleaseReason::Other,
        ];
        assert_eq!(digest(&reasons.to_vec()), REASONS);
        let roles = vec![
            V0Role::Admin,
            V0Role::Bank(code("91330100716105852F")),
            V0Role::Office(V0Region(V0Level::Country, 0)),
            V0Role::Office(V0Region(V0Level::City, 441900)),
            V0Role::Office(V0Region(V0Level::County, 441900)),
        ];
        assert_eq!(digest(&roles), ROLES);
        let entry = LegacyEntry {
            sequence: 5,
            at: 1_551_744_000_000_000,
            principal: name("bank-a"),
            request: Some((id(21), [9; 32])),
            event: events().remove(0),
            prev_hash: [1; 32],
            hash: [2; 32],
        };
        assert_eq!(digest(&entry), ENTRY);
        assert_eq!(super::super::hex(&entry.compute_hash()), ENTRY_HASH);
        assert_eq!(super::super::hex(&Sha256::digest(serde_json::to_vec(&entry).unwrap())), ENTRY_JSON);
    }

    #[test]
    fn the_form_0_fingerprint_is_the_releases() {
        let bank_a = name("bank-a");
        for (v0, expected) in commands().iter().zip(FINGERPRINTS) {
            assert_eq!(digest(&(&bank_a, v0)), expected, "{v0:?}");
            assert_eq!(fingerprint_of(&bank_a, v0).map(|h| super::super::hex(&h)).as_deref(), Some(expected));
        }
        let programme = Request::FileClaim { programme_id: id(1), pledge_id: id(2), filed_on: date(2026, 1, 5) };
        assert_eq!(fingerprint(&bank_a, id(3), programme), None, "the release had no risk side, nor its fingerprints");
    }

    #[test]
    fn every_event_converts_into_todays_types() {
        for event in events() {
            let mut entry = LegacyEntry {
                sequence: 1,
                at: 1,
                principal: name("admin"),
                request: None,
                event,
                prev_hash: [0; 32],
                hash: [0; 32],
            };
            entry.hash = entry.compute_hash();
            decode(&entry.to_stored()).unwrap();
        }
        // Back and forth through today's types, a registration keeps every byte.
        assert_eq!(V0NewPledge::of(&new_pledge().into_domain().unwrap()), Some(new_pledge()));
    }

    #[test]
    fn every_region_of_the_table_converts_at_its_level() {
        let mut regions = vec![Region::COUNTRY];
        let mut i = 0;
        while let Some(region) = regions.get(i).copied() {
            regions.extend_from_slice(region.children());
            i += 1;
        }
        assert!(regions.len() > 3000);
        for region in regions {
            assert_eq!(V0Region::of(region).into_domain(), Ok(region));
        }
        assert!(V0Region(V0Level::City, 330108).into_domain().is_err(), "a county is no city");
        assert!(V0CountyCode(V0Region(V0Level::City, 441900)).into_domain().is_err());
    }
}

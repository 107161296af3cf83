//! Journal format version 1 (docs/journal-format.md is the specification): each entry is the
//! protobuf encoding of `ipledger.journal.v1.Entry` (proto/ipledger/journal/v1/journal.proto)
//! after a version byte 1. Protobuf is chosen for what a ledger's history needs: an open,
//! documented, language-neutral encoding that evolves additively (a decoder skips fields and event
//! kinds it does not know), with fields written in field-number order by the encoder used here.
//!
//! The bytes are authoritative: the hash covers them as stored and nothing is ever re-encoded, so
//! an encoder that orders fields otherwise could never change an existing entry's hash.
//!
//! Decoding parses every value again with the domain's own parsers, so an entry that does not hold
//! a valid pledge, amount, date or name is reported as corrupt, never used.

use super::{Entry, Event, Hash, JournalError, RequestKey, Stored};
use crate::domain::Micros;
use crate::domain::credit_line::{CreditLine, NewCreditLine};
use crate::domain::ident::{CreditCode, RightKind, RightNumber};
use crate::domain::money::Money;
use crate::domain::pledge::{
    Change, Expiry, NewPledge, Party, Pledge, RegistrationNumber, Release, ReleaseReason, Right,
};
use crate::domain::principal::{Principal, PrincipalName, Role};
use crate::domain::programme::{
    Bp, Claim, ClaimBasis, ClaimStatus, Compensation, Decision, FundCap, NewProgramme, Payment, Programme,
    ProgrammeDraft, Tier,
};
use crate::domain::region::{CountyCode, Region};
use crate::domain::right::{CoHolder, FeeOverdue, Freeze, InvalidationRequest, RightState, RightStatus};
use crate::domain::risk::{Method, NewDefault, NewResolution, NewValuation, Resolution, Valuation};
use crate::domain::text::{Name, Note, Reason};
use crate::ledger::principals::{CertificateBinding, PrincipalRecord};
use chrono::NaiveDate;
use prost::Message;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The generated messages of `ipledger.journal.v1`.
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/ipledger.journal.v1.rs"));
}

/// The version byte of this format.
pub const VERSION: u8 = 1;

/// The form tag of the canonical request encoding whose digest is a request's fingerprint.
pub const REQUEST_FORM: &str = "ipledger.request.v1";

/// Days from 0001-01-01 (chrono's day 1) to 1970-01-01.
const EPOCH_DAYS_FROM_CE: i32 = 719_163;

fn days(date: NaiveDate) -> i32 {
    use chrono::Datelike;
    date.num_days_from_ce() - EPOCH_DAYS_FROM_CE
}

fn fen(money: Money) -> i64 {
    i64::try_from(money.fen()).expect("amounts in entries are below the input maximum")
}

/// Builds the entry that follows `prev` and its stored form (bytes and hash).
pub fn seal(
    sequence: u64,
    prev_hash: Hash,
    at: Micros,
    principal: &PrincipalName,
    request: Option<RequestKey>,
    event: Event,
) -> (Entry, Stored) {
    let message = pb::Entry {
        sequence,
        prev_hash: prev_hash.to_vec(),
        at_micros: at,
        principal: principal.to_string(),
        request_id: request.map(|r| r.id.as_bytes().to_vec()).unwrap_or_default(),
        request_fingerprint: request.map(|r| r.fingerprint.to_vec()).unwrap_or_default(),
        rules: super::RULES,
        event: Some(event_to_pb(&event)),
    };
    let mut bytes = Vec::with_capacity(1 + message.encoded_len());
    bytes.push(VERSION);
    message.encode(&mut bytes).expect("a Vec grows as needed");
    let hash: Hash = Sha256::digest(&bytes).into();
    let entry =
        Entry { sequence, at, principal: principal.clone(), request, event, prev_hash, hash, rules: super::RULES };
    (entry, Stored { sequence, hash, bytes })
}

/// Decodes a version-1 entry; `Stored::decode` checks the hash against the bytes.
pub fn decode(stored: &Stored) -> Result<Entry, JournalError> {
    let corrupt = |what: String| JournalError::Corrupt(format!("entry {}: {what}", stored.sequence));
    let message = pb::Entry::decode(&stored.bytes[1..]).map_err(|e| corrupt(e.to_string()))?;
    let hash: Hash = Sha256::digest(&stored.bytes).into();
    let prev_hash: Hash =
        message.prev_hash.as_slice().try_into().map_err(|_| corrupt("prev_hash is not 32 bytes".to_owned()))?;
    let principal = PrincipalName::parse(&message.principal).map_err(|e| corrupt(format!("principal: {e}")))?;
    let request = match (message.request_id.as_slice(), message.request_fingerprint.as_slice()) {
        ([], []) => None,
        (id, fingerprint) => Some(RequestKey {
            id: Uuid::from_slice(id).map_err(|e| corrupt(format!("request_id: {e}")))?,
            fingerprint: fingerprint
                .try_into()
                .map_err(|_| corrupt("request_fingerprint is not 32 bytes".to_owned()))?,
            form: VERSION,
        }),
    };
    let event = message.event.ok_or_else(|| corrupt("no event of a kind this build knows".to_owned()))?;
    let event = event_from_pb(event, &principal, message.at_micros, request.map(|r| r.id)).map_err(corrupt)?;
    if message.rules > super::RULES {
        return Err(corrupt(format!(
            "decided under rules {}, which this build does not know (written by a newer build?)",
            message.rules
        )));
    }
    Ok(Entry {
        sequence: message.sequence,
        at: message.at_micros,
        principal,
        request,
        event,
        prev_hash,
        hash,
        rules: message.rules,
    })
}

/// A write request with an id, as its fingerprint sees it (the parsed command).
#[derive(Debug, Clone, Copy)]
pub enum Request<'a> {
    RegisterPledge(&'a NewPledge),
    ChangePledge { id: Uuid, amendment: &'a crate::domain::pledge::PledgeAmendment },
    ReleasePledge { id: Uuid, release: &'a Release },
    CreateCreditLine(&'a NewCreditLine),
    RecordRight { number: &'a RightNumber, state: &'a RightState },
    RecordDefault { id: Uuid, default: &'a NewDefault },
    ResolveDefault { id: Uuid, resolution: &'a NewResolution },
    RecordValuation { id: Uuid, valuation: &'a NewValuation },
    CreateProgramme(&'a NewProgramme),
    FileClaim { programme_id: Uuid, pledge_id: Uuid, filed_on: NaiveDate },
    DecideClaim { id: Uuid, approved: bool, decided_on: NaiveDate, note: &'a Note },
    PayClaim { id: Uuid, paid_on: NaiveDate, amount: Money },
    WithdrawRightState { number: &'a RightNumber, recorded_at: Micros, note: &'a Note },
}

/// The fingerprint of a request with an id: SHA-256 of the canonical encoding of `Request` (the
/// principal and the parsed command), stable across versions of the server.
pub fn fingerprint(principal: &PrincipalName, request: Request<'_>) -> Hash {
    use pb::request::Command as C;
    let command = match request {
        Request::RegisterPledge(pledge) => C::RegisterPledge(new_pledge_to_pb(pledge)),
        Request::ChangePledge { id, amendment } => C::ChangePledge(pb::ChangePledge {
            pledge_id: id.as_bytes().to_vec(),
            secured_amount_fen: amendment.secured_amount.map(fen),
            debt_term_end_days: amendment.debt_term_end.map(days),
            reason: amendment.reason.to_string(),
            effective_on_days: amendment.effective_on.map(days),
        }),
        Request::ReleasePledge { id, release } => C::ReleasePledge(pb::ReleasePledge {
            pledge_id: id.as_bytes().to_vec(),
            released_on_days: days(release.released_on),
            reason: release_reason_to_pb(release.reason) as i32,
            note: release.note.to_string(),
        }),
        Request::CreateCreditLine(line) => C::CreateCreditLine(new_line_to_pb(line)),
        Request::RecordRight { number, state } => C::RecordRight(right_state_to_pb(number, state)),
        Request::RecordDefault { id, default } => C::RecordDefault(new_default_to_pb(id, default)),
        Request::ResolveDefault { id, resolution } => C::ResolveDefault(resolution_to_pb(id, resolution)),
        Request::RecordValuation { id, valuation } => C::RecordValuation(new_valuation_to_pb(id, valuation)),
        Request::CreateProgramme(programme) => C::CreateProgramme(new_programme_to_pb(programme)),
        Request::FileClaim { programme_id, pledge_id, filed_on } => C::FileClaim(pb::FileClaim {
            programme_id: programme_id.as_bytes().to_vec(),
            pledge_id: pledge_id.as_bytes().to_vec(),
            filed_on_days: days(filed_on),
        }),
        Request::DecideClaim { id, approved, decided_on, note } => C::DecideClaim(pb::DecideClaim {
            claim_id: id.as_bytes().to_vec(),
            approved,
            decided_on_days: days(decided_on),
            note: note.to_string(),
        }),
        Request::PayClaim { id, paid_on, amount } => C::PayClaim(pb::PayClaim {
            claim_id: id.as_bytes().to_vec(),
            paid_on_days: days(paid_on),
            amount_fen: fen(amount),
        }),
        Request::WithdrawRightState { number, recorded_at, note } => {
            C::WithdrawRightState(withdrawal_to_pb(number, recorded_at, note))
        }
    };
    let request =
        pb::Request { form: REQUEST_FORM.to_owned(), principal: principal.to_string(), command: Some(command) };
    Sha256::digest(request.encode_to_vec()).into()
}

fn party_to_pb(p: &Party) -> pb::Party {
    pb::Party { name: p.name.to_string(), credit_code: p.credit_code.as_str().to_owned() }
}

fn kind_to_pb(kind: RightKind) -> pb::RightKind {
    match kind {
        RightKind::InventionPatent => pb::RightKind::InventionPatent,
        RightKind::UtilityModel => pb::RightKind::UtilityModel,
        RightKind::DesignPatent => pb::RightKind::DesignPatent,
        RightKind::Trademark => pb::RightKind::Trademark,
        RightKind::Copyright => pb::RightKind::Copyright,
    }
}

fn release_reason_to_pb(reason: ReleaseReason) -> pb::ReleaseReason {
    match reason {
        ReleaseReason::Repaid => pb::ReleaseReason::Repaid,
        ReleaseReason::Enforced => pb::ReleaseReason::Enforced,
        ReleaseReason::Waived => pb::ReleaseReason::Waived,
        ReleaseReason::ContractInvalid => pb::ReleaseReason::ContractInvalid,
        ReleaseReason::Other => pb::ReleaseReason::Other,
    }
}

fn new_pledge_to_pb(c: &NewPledge) -> pb::NewPledge {
    pb::NewPledge {
        registration_number: c.registration_number.as_ref().map(|n| n.as_str().to_owned()).unwrap_or_default(),
        pledgor: Some(party_to_pb(&c.pledgor)),
        co_pledgors: c.co_pledgors.iter().map(party_to_pb).collect(),
        invalidation_pending_accepted: c.invalidation_pending_accepted,
        pledgee: Some(party_to_pb(&c.pledgee)),
        county: c.county.region().code(),
        secured_amount_fen: fen(c.secured_amount),
        debt_term_start_days: days(c.debt_term_start),
        debt_term_end_days: days(c.debt_term_end),
        registered_on_days: days(c.registered_on),
        rights: c
            .rights
            .iter()
            .map(|r| {
                let (expires_on_days, expiry_basis, statutory_term_years) = match r.expiry {
                    Expiry::Given(day) => (days(day), pb::ExpiryBasis::Given, 0),
                    Expiry::StatutoryBound { last_day, term_years } => {
                        (days(last_day), pb::ExpiryBasis::StatutoryBound, u32::from(term_years))
                    }
                    Expiry::Unknown => (0, pb::ExpiryBasis::Unknown, 0),
                };
                pb::Right {
                    kind: kind_to_pb(r.kind()) as i32,
                    number: r.number.as_str().to_owned(),
                    title: r.title.to_string(),
                    expires_on_days,
                    expiry_basis: expiry_basis as i32,
                    statutory_term_years,
                }
            })
            .collect(),
        credit_line_id: c.credit_line_id.map(|id| id.as_bytes().to_vec()).unwrap_or_default(),
    }
}

fn new_line_to_pb(c: &NewCreditLine) -> pb::NewCreditLine {
    pb::NewCreditLine {
        bank: Some(party_to_pb(&c.bank)),
        region: c.region.code(),
        program: c.program.to_string(),
        limit_fen: fen(c.limit),
        valid_from_days: days(c.valid_from),
        valid_to_days: days(c.valid_to),
    }
}

fn role_to_pb(role: &Role) -> pb::Role {
    let role = match role {
        Role::Admin => pb::role::Role::Admin(true),
        Role::Bank(code) => pb::role::Role::Bank(code.as_str().to_owned()),
        Role::Office(region) => pb::role::Role::Office(region.code()),
    };
    pb::Role { role: Some(role) }
}

fn binding_to_pb(binding: &CertificateBinding) -> pb::CertificateBinding {
    use pb::certificate_binding::Binding as B;
    let binding = match binding {
        CertificateBinding::Subject(v) => B::Subject(v.clone()),
        CertificateBinding::DnsName(v) => B::DnsName(v.clone()),
        CertificateBinding::Uri(v) => B::Uri(v.clone()),
        CertificateBinding::Email(v) => B::Email(v.clone()),
    };
    pb::CertificateBinding { binding: Some(binding) }
}

fn right_status_to_pb(status: RightStatus) -> pb::RightStatus {
    match status {
        RightStatus::InForce => pb::RightStatus::InForce,
        RightStatus::Lapsed => pb::RightStatus::Lapsed,
        RightStatus::Invalidated => pb::RightStatus::Invalidated,
        RightStatus::Expired => pb::RightStatus::Expired,
    }
}

fn withdrawal_to_pb(number: &RightNumber, recorded_at: Micros, note: &Note) -> pb::WithdrawRightState {
    pb::WithdrawRightState {
        kind: kind_to_pb(number.kind()) as i32,
        number: number.as_str().to_owned(),
        recorded_at_micros: recorded_at,
        note: note.to_string(),
    }
}

fn withdrawal_from_pb(w: Option<pb::WithdrawRightState>) -> Result<Event, String> {
    let w = w.ok_or("withdrawal: missing")?;
    Ok(Event::RightStateWithdrawn {
        number: field("number", RightNumber::parse(&w.number, kind_from_pb(w.kind)?))?,
        recorded_at: w.recorded_at_micros,
        note: field("note", Note::parse(&w.note))?,
    })
}

fn right_state_to_pb(number: &RightNumber, s: &RightState) -> pb::RightState {
    pb::RightState {
        kind: kind_to_pb(number.kind()) as i32,
        number: number.as_str().to_owned(),
        holder: Some(party_to_pb(&s.holder)),
        status: right_status_to_pb(s.status) as i32,
        status_since_days: days(s.status_since),
        freeze: s.freeze.as_ref().map(|f| pb::Freeze {
            case_number: f.case_number.to_string(),
            court: f.court.to_string(),
            from_days: days(f.from),
            until_days: f.until.map(days),
        }),
        expires_on_days: s.expires_on.map(days),
        note: s.note.to_string(),
        holder_share_bp: s.holder_share.map(|b| u32::from(b.get())),
        co_holders: s
            .co_holders
            .iter()
            .map(|c| pb::CoHolder { party: Some(party_to_pb(&c.party)), share_bp: c.share.map(|b| u32::from(b.get())) })
            .collect(),
        invalidation: s.invalidation.as_ref().map(|i| pb::InvalidationRequest {
            request_number: i.request_number.to_string(),
            filed_on_days: days(i.filed_on),
        }),
        fee_overdue: s
            .fee_overdue
            .as_ref()
            .map(|f| pb::FeeOverdue { due_on_days: days(f.due_on), grace_ends_on_days: days(f.grace_ends_on) }),
    }
}

fn new_default_to_pb(id: Uuid, d: &NewDefault) -> pb::NewDefault {
    pb::NewDefault {
        pledge_id: id.as_bytes().to_vec(),
        defaulted_on_days: days(d.defaulted_on),
        outstanding_principal_fen: fen(d.outstanding_principal),
        loss_fen: d.loss.map(fen),
    }
}

fn resolution_to_pb(id: Uuid, r: &NewResolution) -> pb::ResolveDefault {
    let resolution = match r.resolution {
        Resolution::Recovered => pb::Resolution::Recovered,
        Resolution::WrittenOff => pb::Resolution::WrittenOff,
    };
    pb::ResolveDefault {
        pledge_id: id.as_bytes().to_vec(),
        resolved_on_days: days(r.resolved_on),
        resolution: resolution as i32,
        loss_fen: fen(r.loss),
        note: r.note.to_string(),
    }
}

fn new_valuation_to_pb(id: Uuid, v: &NewValuation) -> pb::NewValuation {
    let method = match v.method {
        Method::Income => pb::ValuationMethod::Income,
        Method::Market => pb::ValuationMethod::Market,
        Method::Cost => pb::ValuationMethod::Cost,
        Method::Other => pb::ValuationMethod::OtherMethod,
    };
    pb::NewValuation {
        pledge_id: id.as_bytes().to_vec(),
        appraiser: v.appraiser.to_string(),
        method: method as i32,
        value_fen: fen(v.value),
        valued_on_days: days(v.valued_on),
    }
}

fn new_programme_to_pb(p: &NewProgramme) -> pb::NewProgramme {
    pb::NewProgramme {
        name: p.name.to_string(),
        region: p.region.code(),
        budget_per_year_fen: fen(p.budget_per_year),
        tiers: p
            .tiers
            .iter()
            .map(|t| pb::Tier { loan_up_to_fen: fen(t.loan_up_to), fund_share_bp: u32::from(t.fund_share.get()) })
            .collect(),
        insurer_share_bp: u32::from(p.insurer_share.get()),
        guarantor_share_bp: u32::from(p.guarantor_share.get()),
        stop_line_bp: p.stop_line.map(|b| u32::from(b.get())),
        eligible_banks: p.eligible_banks.iter().map(|c| c.as_str().to_owned()).collect(),
        valid_from_days: days(p.valid_from),
        valid_to_days: days(p.valid_to),
        cap_per_loan_fen: p.cap_per_loan.map(fen),
        cap_per_borrower_per_year_fen: p.cap_per_borrower_per_year.map(fen),
        valuer_share_bp: u32::from(p.valuer_share.get()),
    }
}

fn fund_cap_to_pb(cap: Option<FundCap>) -> pb::FundCap {
    match cap {
        None => pb::FundCap::None,
        Some(FundCap::Loan) => pb::FundCap::Loan,
        Some(FundCap::BorrowerYear) => pb::FundCap::BorrowerYear,
        Some(FundCap::Budget) => pb::FundCap::Budget,
    }
}

/// The limit a claim entry names; an entry from before the caps names none, and its
/// `capped_by_budget` says whether the budget bound.
fn fund_cap_from_pb(value: i32, capped_by_budget: bool) -> Result<Option<FundCap>, String> {
    Ok(match pb::FundCap::try_from(value).map_err(|_| format!("capped_by: unknown limit {value}"))? {
        pb::FundCap::None if capped_by_budget => Some(FundCap::Budget),
        pb::FundCap::None => None,
        pb::FundCap::Loan => Some(FundCap::Loan),
        pb::FundCap::BorrowerYear => Some(FundCap::BorrowerYear),
        pb::FundCap::Budget => Some(FundCap::Budget),
    })
}

fn claim_filed_to_pb(c: &Claim) -> pb::ClaimFiled {
    let (b, m) = (&c.basis, &c.compensation);
    pb::ClaimFiled {
        claim_id: c.id.as_bytes().to_vec(),
        claim: Some(pb::FileClaim {
            programme_id: c.programme_id.as_bytes().to_vec(),
            pledge_id: c.pledge_id.as_bytes().to_vec(),
            filed_on_days: days(b.filed_on),
        }),
        bank: b.bank.as_str().to_owned(),
        loan_amount_fen: fen(b.loan_amount),
        loss_fen: fen(b.loss),
        committed_this_year_fen: fen(b.committed_this_year),
        bank_losses_this_year_fen: fen(b.bank_losses_this_year),
        bank_lending_this_year_fen: fen(b.bank_lending_this_year),
        fund_share_bp: u32::from(m.fund_share.get()),
        fund_fen: fen(m.fund),
        insurer_fen: fen(m.insurer),
        guarantor_fen: fen(m.guarantor),
        bank_fen: fen(m.bank),
        capped_by_budget: m.capped_by_budget,
        county: b.county.region().code(),
        registered_on_days: days(b.registered_on),
        compensated_elsewhere_fen: fen(b.compensated_elsewhere),
        valuer_fen: fen(m.valuer),
        capped_by: fund_cap_to_pb(m.capped_by) as i32,
        loan_fund_before_fen: fen(b.loan_fund_before),
        borrower_fund_this_year_fen: fen(b.borrower_fund_this_year),
    }
}

// Longer than ~70 lines: one arm per event of the journal format, the mirror of `event_from_pb`.
fn event_to_pb(event: &Event) -> pb::entry::Event {
    use pb::entry::Event as E;
    match event {
        Event::PledgeRegistered { pledge } => E::PledgeRegistered(pb::PledgeRegistered {
            pledge_id: pledge.id.as_bytes().to_vec(),
            registration_number: pledge.registration_number.as_str().to_owned(),
            content: Some(new_pledge_to_pb(&pledge.content)),
        }),
        Event::PledgeChanged { id, change } => E::PledgeChanged(pb::PledgeChanged {
            pledge_id: id.as_bytes().to_vec(),
            effective_on_days: days(change.effective_on),
            reason: change.reason.to_string(),
            secured_amount_before_fen: fen(change.secured_amount.0),
            secured_amount_after_fen: fen(change.secured_amount.1),
            debt_term_end_before_days: days(change.debt_term_end.0),
            debt_term_end_after_days: days(change.debt_term_end.1),
        }),
        Event::PledgeReleased { id, release } => E::PledgeReleased(pb::PledgeReleased {
            pledge_id: id.as_bytes().to_vec(),
            released_on_days: days(release.released_on),
            reason: release_reason_to_pb(release.reason) as i32,
            note: release.note.to_string(),
        }),
        Event::CreditLineCreated { line } => E::CreditLineCreated(pb::CreditLineCreated {
            credit_line_id: line.id.as_bytes().to_vec(),
            content: Some(new_line_to_pb(&line.content)),
        }),
        Event::PrincipalCreated { record } => E::PrincipalCreated(pb::PrincipalCreated {
            name: record.principal.name.to_string(),
            role: Some(role_to_pb(&record.principal.role)),
            token_hash: record.token_hash.to_vec(),
        }),
        Event::PrincipalRevoked { name } => E::PrincipalRevoked(pb::PrincipalRevoked { name: name.to_string() }),
        Event::TreeHeadCosigned { cosignature: c } => E::TreeHeadCosigned(pb::TreeHeadCosigned {
            tree_size: c.tree_size,
            root_hash: c.root_hash.to_vec(),
            witness: c.witness.to_string(),
            public_key: c.public_key.to_vec(),
            signature: c.signature.to_vec(),
        }),
        Event::DayOpened { day } => E::DayOpened(pb::DayOpened { day_days: days(*day) }),
        Event::AlertPolicySet { bank, policy: p } => E::AlertPolicySet(pb::AlertPolicySet {
            bank: bank.as_str().to_owned(),
            expiry_within_days: p.expiry_within_days,
            newly_at_risk_days: p.newly_at_risk_days,
            default_unresolved_days: p.default_unresolved_days,
            claim_undecided_days: p.claim_undecided_days,
            loan_to_value_max_bp: p.loan_to_value_max_bp,
        }),
        Event::CertificateBound { name, binding } => {
            E::CertificateBound(pb::CertificateBound { name: name.to_string(), binding: Some(binding_to_pb(binding)) })
        }
        Event::RightRecorded { number, state } => {
            E::RightRecorded(pb::RightRecorded { state: Some(right_state_to_pb(number, state)) })
        }
        Event::RightStateWithdrawn { number, recorded_at, note } => E::RightStateWithdrawn(pb::RightStateWithdrawn {
            withdrawal: Some(withdrawal_to_pb(number, *recorded_at, note)),
        }),
        Event::DefaultRecorded { id, default } => {
            E::DefaultRecorded(pb::DefaultRecorded { default: Some(new_default_to_pb(*id, default)) })
        }
        Event::DefaultResolved { id, resolution } => {
            E::DefaultResolved(pb::DefaultResolved { resolution: Some(resolution_to_pb(*id, resolution)) })
        }
        Event::ValuationRecorded { valuation } => E::ValuationRecorded(pb::ValuationRecorded {
            valuation_id: valuation.id.as_bytes().to_vec(),
            valuation: Some(new_valuation_to_pb(valuation.pledge_id, &valuation.content)),
        }),
        Event::ProgrammeCreated { programme } => E::ProgrammeCreated(pb::ProgrammeCreated {
            programme_id: programme.id.as_bytes().to_vec(),
            programme: Some(new_programme_to_pb(&programme.content)),
        }),
        Event::ClaimFiled { claim } => E::ClaimFiled(claim_filed_to_pb(claim)),
        Event::ClaimDecided { id, approved, decision } => E::ClaimDecided(pb::ClaimDecided {
            decision: Some(pb::DecideClaim {
                claim_id: id.as_bytes().to_vec(),
                approved: *approved,
                decided_on_days: days(decision.decided_on),
                note: decision.note.to_string(),
            }),
        }),
        Event::ClaimPaid { id, payment } => E::ClaimPaid(pb::ClaimPaid {
            payment: Some(pb::PayClaim {
                claim_id: id.as_bytes().to_vec(),
                paid_on_days: days(payment.paid_on),
                amount_fen: fen(payment.amount),
            }),
        }),
    }
}

// Decoding: every value parsed again; the error names the field.

fn field<T, E: std::fmt::Display>(name: &str, result: Result<T, E>) -> Result<T, String> {
    result.map_err(|e| format!("{name}: {e}"))
}

fn date(name: &str, days: i32) -> Result<NaiveDate, String> {
    NaiveDate::from_num_days_from_ce_opt(days.saturating_add(EPOCH_DAYS_FROM_CE))
        .ok_or_else(|| format!("{name}: day {days} out of range"))
}

fn money(name: &str, fen: i64) -> Result<Money, String> {
    Money::from_fen(i128::from(fen)).ok_or_else(|| format!("{name}: {fen} fen is not an amount"))
}

/// A region code as entries hold it: six digits, 0 for the country.
fn region(name: &str, code: u32) -> Result<Region, String> {
    if code == 0 {
        return Ok(Region::COUNTRY);
    }
    field(name, Region::parse(&format!("{code:06}")))
}

fn uuid(name: &str, bytes: &[u8]) -> Result<Uuid, String> {
    field(name, Uuid::from_slice(bytes))
}

fn party_from_pb(name: &str, p: Option<pb::Party>) -> Result<Party, String> {
    let p = p.ok_or_else(|| format!("{name}: missing"))?;
    Ok(Party {
        name: field(&format!("{name}.name"), Name::parse(&p.name))?,
        credit_code: field(&format!("{name}.credit_code"), CreditCode::parse(&p.credit_code))?,
    })
}

fn kind_from_pb(kind: i32) -> Result<RightKind, String> {
    Ok(match pb::RightKind::try_from(kind) {
        Ok(pb::RightKind::InventionPatent) => RightKind::InventionPatent,
        Ok(pb::RightKind::UtilityModel) => RightKind::UtilityModel,
        Ok(pb::RightKind::DesignPatent) => RightKind::DesignPatent,
        Ok(pb::RightKind::Trademark) => RightKind::Trademark,
        Ok(pb::RightKind::Copyright) => RightKind::Copyright,
        _ => return Err(format!("right kind {kind} unknown")),
    })
}

fn release_reason_from_pb(reason: i32) -> Result<ReleaseReason, String> {
    Ok(match pb::ReleaseReason::try_from(reason) {
        Ok(pb::ReleaseReason::Repaid) => ReleaseReason::Repaid,
        Ok(pb::ReleaseReason::Enforced) => ReleaseReason::Enforced,
        Ok(pb::ReleaseReason::Waived) => ReleaseReason::Waived,
        Ok(pb::ReleaseReason::ContractInvalid) => ReleaseReason::ContractInvalid,
        Ok(pb::ReleaseReason::Other) => ReleaseReason::Other,
        _ => return Err(format!("release reason {reason} unknown")),
    })
}

fn new_pledge_from_pb(c: Option<pb::NewPledge>) -> Result<NewPledge, String> {
    let c = c.ok_or("content: missing")?;
    let rights = c
        .rights
        .into_iter()
        .map(|r| {
            let kind = kind_from_pb(r.kind)?;
            let expiry = match pb::ExpiryBasis::try_from(r.expiry_basis) {
                Ok(pb::ExpiryBasis::Given) => Expiry::Given(date("right.expires_on", r.expires_on_days)?),
                Ok(pb::ExpiryBasis::StatutoryBound) => Expiry::StatutoryBound {
                    last_day: date("right.expires_on", r.expires_on_days)?,
                    term_years: field("right.statutory_term_years", u8::try_from(r.statutory_term_years))?,
                },
                Ok(pb::ExpiryBasis::Unknown) => Expiry::Unknown,
                Err(_) => return Err(format!("right.expiry_basis {} unknown", r.expiry_basis)),
            };
            Ok(Right {
                number: field("right.number", RightNumber::parse(&r.number, kind))?,
                title: field("right.title", Note::parse(&r.title))?,
                expiry,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(NewPledge {
        registration_number: match c.registration_number.as_str() {
            "" => None,
            n => Some(field("registration_number", RegistrationNumber::parse_recorded(n))?),
        },
        pledgor: party_from_pb("pledgor", c.pledgor)?,
        co_pledgors: c
            .co_pledgors
            .into_iter()
            .map(|p| party_from_pb("co_pledgors", Some(p)))
            .collect::<Result<_, _>>()?,
        invalidation_pending_accepted: c.invalidation_pending_accepted,
        pledgee: party_from_pb("pledgee", c.pledgee)?,
        county: field("county", CountyCode::parse(&format!("{:06}", c.county)))?,
        secured_amount: money("secured_amount", c.secured_amount_fen)?,
        debt_term_start: date("debt_term_start", c.debt_term_start_days)?,
        debt_term_end: date("debt_term_end", c.debt_term_end_days)?,
        registered_on: date("registered_on", c.registered_on_days)?,
        rights,
        credit_line_id: match c.credit_line_id.as_slice() {
            [] => None,
            id => Some(uuid("credit_line_id", id)?),
        },
    })
}

fn new_line_from_pb(c: Option<pb::NewCreditLine>) -> Result<NewCreditLine, String> {
    let c = c.ok_or("content: missing")?;
    Ok(NewCreditLine {
        bank: party_from_pb("bank", c.bank)?,
        region: region("region", c.region)?,
        program: field("program", Note::parse(&c.program))?,
        limit: money("limit", c.limit_fen)?,
        valid_from: date("valid_from", c.valid_from_days)?,
        valid_to: date("valid_to", c.valid_to_days)?,
    })
}

fn role_from_pb(role: Option<pb::Role>) -> Result<Role, String> {
    Ok(match role.and_then(|r| r.role).ok_or("role: missing")? {
        pb::role::Role::Admin(_) => Role::Admin,
        pb::role::Role::Bank(code) => Role::Bank(field("role.bank", CreditCode::parse(&code))?),
        pb::role::Role::Office(code) => Role::Office(field("role.office", Region::parse(&format!("{code:06}")))?),
    })
}

fn binding_from_pb(binding: Option<pb::CertificateBinding>) -> Result<CertificateBinding, String> {
    use pb::certificate_binding::Binding as B;
    let (kind, value): (fn(String) -> CertificateBinding, String) =
        match binding.and_then(|b| b.binding).ok_or("binding: missing")? {
            B::Subject(v) => (CertificateBinding::Subject, v),
            B::DnsName(v) => (CertificateBinding::DnsName, v),
            B::Uri(v) => (CertificateBinding::Uri, v),
            B::Email(v) => (CertificateBinding::Email, v),
        };
    field("binding", CertificateBinding::new(kind, &value))
}

fn right_state_from_pb(s: Option<pb::RightState>) -> Result<(RightNumber, RightState), String> {
    let s = s.ok_or("state: missing")?;
    let number = field("number", RightNumber::parse(&s.number, kind_from_pb(s.kind)?))?;
    let status = match pb::RightStatus::try_from(s.status) {
        Ok(pb::RightStatus::InForce) => RightStatus::InForce,
        Ok(pb::RightStatus::Lapsed) => RightStatus::Lapsed,
        Ok(pb::RightStatus::Invalidated) => RightStatus::Invalidated,
        Ok(pb::RightStatus::Expired) => RightStatus::Expired,
        _ => return Err(format!("right status {} unknown", s.status)),
    };
    let freeze = match s.freeze {
        None => None,
        Some(f) => Some(Freeze {
            case_number: field("freeze.case_number", Name::parse(&f.case_number))?,
            court: field("freeze.court", Name::parse(&f.court))?,
            from: date("freeze.from", f.from_days)?,
            until: f.until_days.map(|d| date("freeze.until", d)).transpose()?,
        }),
    };
    let share = |what: &str, value: Option<u32>| value.map(|v| bp(what, v)).transpose();
    let co_holders = s
        .co_holders
        .into_iter()
        .map(|c| {
            Ok(CoHolder { party: party_from_pb("co_holders", c.party)?, share: share("co_holders.share", c.share_bp)? })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let invalidation = match s.invalidation {
        None => None,
        Some(i) => Some(InvalidationRequest {
            request_number: field("invalidation.request_number", Name::parse(&i.request_number))?,
            filed_on: date("invalidation.filed_on", i.filed_on_days)?,
        }),
    };
    let fee_overdue = match s.fee_overdue {
        None => None,
        Some(f) => Some(FeeOverdue {
            due_on: date("fee_overdue.due_on", f.due_on_days)?,
            grace_ends_on: date("fee_overdue.grace_ends_on", f.grace_ends_on_days)?,
        }),
    };
    let state = RightState::new(RightState {
        holder: party_from_pb("holder", s.holder)?,
        holder_share: share("holder_share", s.holder_share_bp)?,
        co_holders,
        status,
        status_since: date("status_since", s.status_since_days)?,
        freeze,
        expires_on: s.expires_on_days.map(|d| date("expires_on", d)).transpose()?,
        note: field("note", Note::parse(&s.note))?,
        invalidation,
        fee_overdue,
    })
    .map_err(|e| e.to_string())?;
    Ok((number, state))
}

fn new_default_from_pb(d: Option<pb::NewDefault>) -> Result<(Uuid, NewDefault), String> {
    let d = d.ok_or("default: missing")?;
    Ok((
        uuid("pledge_id", &d.pledge_id)?,
        NewDefault {
            defaulted_on: date("defaulted_on", d.defaulted_on_days)?,
            outstanding_principal: money("outstanding_principal", d.outstanding_principal_fen)?,
            loss: d.loss_fen.map(|f| money("loss", f)).transpose()?,
        },
    ))
}

fn resolution_from_pb(r: Option<pb::ResolveDefault>) -> Result<(Uuid, NewResolution), String> {
    let r = r.ok_or("resolution: missing")?;
    let resolution = match pb::Resolution::try_from(r.resolution) {
        Ok(pb::Resolution::Recovered) => Resolution::Recovered,
        Ok(pb::Resolution::WrittenOff) => Resolution::WrittenOff,
        _ => return Err(format!("resolution {} unknown", r.resolution)),
    };
    Ok((
        uuid("pledge_id", &r.pledge_id)?,
        NewResolution {
            resolved_on: date("resolved_on", r.resolved_on_days)?,
            resolution,
            loss: money("loss", r.loss_fen)?,
            note: field("note", Note::parse(&r.note))?,
        },
    ))
}

fn new_valuation_from_pb(v: Option<pb::NewValuation>) -> Result<(Uuid, NewValuation), String> {
    let v = v.ok_or("valuation: missing")?;
    let method = match pb::ValuationMethod::try_from(v.method) {
        Ok(pb::ValuationMethod::Income) => Method::Income,
        Ok(pb::ValuationMethod::Market) => Method::Market,
        Ok(pb::ValuationMethod::Cost) => Method::Cost,
        Ok(pb::ValuationMethod::OtherMethod) => Method::Other,
        _ => return Err(format!("valuation method {} unknown", v.method)),
    };
    Ok((
        uuid("pledge_id", &v.pledge_id)?,
        NewValuation {
            appraiser: field("appraiser", Name::parse(&v.appraiser))?,
            method,
            value: money("value", v.value_fen)?,
            valued_on: date("valued_on", v.valued_on_days)?,
        },
    ))
}

fn bp(name: &str, value: u32) -> Result<Bp, String> {
    field(name, u16::try_from(value).map_err(|e| e.to_string()).and_then(Bp::new))
}

fn new_programme_from_pb(p: Option<pb::NewProgramme>) -> Result<NewProgramme, String> {
    let p = p.ok_or("programme: missing")?;
    let tiers = p
        .tiers
        .iter()
        .map(|t| {
            Ok(Tier {
                loan_up_to: money("tier.loan_up_to", t.loan_up_to_fen)?,
                fund_share: bp("tier.fund_share", t.fund_share_bp)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let banks = p
        .eligible_banks
        .iter()
        .map(|c| field("eligible_banks", CreditCode::parse(c)))
        .collect::<Result<Vec<_>, String>>()?;
    NewProgramme::new(ProgrammeDraft {
        name: field("name", Name::parse(&p.name))?,
        region: region("region", p.region)?,
        budget_per_year: money("budget_per_year", p.budget_per_year_fen)?,
        tiers,
        insurer_share: bp("insurer_share", p.insurer_share_bp)?,
        guarantor_share: bp("guarantor_share", p.guarantor_share_bp)?,
        valuer_share: bp("valuer_share", p.valuer_share_bp)?,
        cap_per_loan: p.cap_per_loan_fen.map(|c| money("cap_per_loan", c)).transpose()?,
        cap_per_borrower_per_year: p
            .cap_per_borrower_per_year_fen
            .map(|c| money("cap_per_borrower_per_year", c))
            .transpose()?,
        stop_line: p.stop_line_bp.map(|b| bp("stop_line", b)).transpose()?,
        eligible_banks: banks,
        valid_from: date("valid_from", p.valid_from_days)?,
        valid_to: date("valid_to", p.valid_to_days)?,
    })
    .map_err(|e| e.to_string())
}

fn claim_from_pb(c: pb::ClaimFiled, principal: &PrincipalName, at: Micros) -> Result<Claim, String> {
    let filed = c.claim.ok_or("claim: missing")?;
    let basis = ClaimBasis {
        bank: field("bank", CreditCode::parse(&c.bank))?,
        county: field("county", CountyCode::parse(&format!("{:06}", c.county)))?,
        registered_on: date("registered_on", c.registered_on_days)?,
        loan_amount: money("loan_amount", c.loan_amount_fen)?,
        loss: money("loss", c.loss_fen)?,
        filed_on: date("filed_on", filed.filed_on_days)?,
        committed_this_year: money("committed_this_year", c.committed_this_year_fen)?,
        bank_losses_this_year: money("bank_losses_this_year", c.bank_losses_this_year_fen)?,
        bank_lending_this_year: money("bank_lending_this_year", c.bank_lending_this_year_fen)?,
        compensated_elsewhere: money("compensated_elsewhere", c.compensated_elsewhere_fen)?,
        loan_fund_before: money("loan_fund_before", c.loan_fund_before_fen)?,
        borrower_fund_this_year: money("borrower_fund_this_year", c.borrower_fund_this_year_fen)?,
    };
    let compensation = Compensation {
        fund_share: bp("fund_share", c.fund_share_bp)?,
        fund: money("fund", c.fund_fen)?,
        insurer: money("insurer", c.insurer_fen)?,
        guarantor: money("guarantor", c.guarantor_fen)?,
        valuer: money("valuer", c.valuer_fen)?,
        bank: money("bank", c.bank_fen)?,
        capped_by_budget: c.capped_by_budget,
        capped_by: fund_cap_from_pb(c.capped_by, c.capped_by_budget)?,
    };
    let parts =
        [compensation.fund, compensation.insurer, compensation.guarantor, compensation.valuer, compensation.bank];
    if parts.iter().map(|m| m.fen()).sum::<i128>() != basis.loss.fen() {
        return Err("the parts of the claim's split do not add up to its loss".to_owned());
    }
    Ok(Claim {
        id: uuid("claim_id", &c.claim_id)?,
        programme_id: uuid("programme_id", &filed.programme_id)?,
        pledge_id: uuid("pledge_id", &filed.pledge_id)?,
        basis,
        compensation,
        status: ClaimStatus::Filed,
        decision: None,
        payments: Vec::new(),
        filed_by: principal.clone(),
        create_time: at,
        update_time: at,
        version: 1,
    })
}

fn name(label: &str, text: &str) -> Result<PrincipalName, String> {
    field(label, PrincipalName::parse(text))
}

// Longer than ~70 lines: one arm per event of the journal format, each a few lines of field
// mapping; the table reads best whole, beside `event_to_pb`.
fn event_from_pb(
    event: pb::entry::Event,
    principal: &PrincipalName,
    at: Micros,
    request_id: Option<Uuid>,
) -> Result<Event, String> {
    use pb::entry::Event as E;
    Ok(match event {
        E::PledgeRegistered(e) => {
            let number = field("registration_number", RegistrationNumber::parse_recorded(&e.registration_number))?;
            let pledge = Pledge::register(
                uuid("pledge_id", &e.pledge_id)?,
                number,
                new_pledge_from_pb(e.content)?,
                principal.clone(),
                at,
            );
            Event::PledgeRegistered { pledge }
        }
        E::PledgeChanged(e) => Event::PledgeChanged {
            id: uuid("pledge_id", &e.pledge_id)?,
            change: Change {
                request_id: request_id.ok_or("a change without a request id")?,
                at,
                by: principal.clone(),
                effective_on: date("effective_on", e.effective_on_days)?,
                reason: field("reason", Reason::parse(&e.reason))?,
                secured_amount: (
                    money("secured_amount_before", e.secured_amount_before_fen)?,
                    money("secured_amount_after", e.secured_amount_after_fen)?,
                ),
                debt_term_end: (
                    date("debt_term_end_before", e.debt_term_end_before_days)?,
                    date("debt_term_end_after", e.debt_term_end_after_days)?,
                ),
            },
        },
        E::PledgeReleased(e) => Event::PledgeReleased {
            id: uuid("pledge_id", &e.pledge_id)?,
            release: Release {
                released_on: date("released_on", e.released_on_days)?,
                reason: release_reason_from_pb(e.reason)?,
                note: field("note", Note::parse(&e.note))?,
            },
        },
        E::CreditLineCreated(e) => Event::CreditLineCreated {
            line: CreditLine::open(
                uuid("credit_line_id", &e.credit_line_id)?,
                new_line_from_pb(e.content)?,
                principal.clone(),
                at,
            ),
        },
        E::PrincipalCreated(e) => Event::PrincipalCreated {
            record: PrincipalRecord {
                principal: Principal {
                    name: name("name", &e.name)?,
                    role: role_from_pb(e.role)?,
                    create_time: at,
                    revoke_time: None,
                },
                token_hash: e.token_hash.as_slice().try_into().map_err(|_| "token_hash is not 32 bytes")?,
            },
        },
        E::PrincipalRevoked(e) => Event::PrincipalRevoked { name: name("name", &e.name)? },
        E::TreeHeadCosigned(e) => Event::TreeHeadCosigned {
            cosignature: super::TreeCosignature {
                tree_size: e.tree_size,
                root_hash: e.root_hash.as_slice().try_into().map_err(|_| "root_hash is not 32 bytes")?,
                witness: name("witness", &e.witness)?,
                public_key: e.public_key.as_slice().try_into().map_err(|_| "public_key is not 32 bytes")?,
                signature: e.signature.as_slice().try_into().map_err(|_| "signature is not 64 bytes")?,
            },
        },
        E::DayOpened(e) => Event::DayOpened { day: date("day_days", e.day_days)? },
        E::AlertPolicySet(e) => {
            let policy = crate::domain::alert::AlertPolicy {
                expiry_within_days: e.expiry_within_days,
                newly_at_risk_days: e.newly_at_risk_days,
                default_unresolved_days: e.default_unresolved_days,
                claim_undecided_days: e.claim_undecided_days,
                loan_to_value_max_bp: e.loan_to_value_max_bp,
            };
            field("alert_policy", policy.check())?;
            Event::AlertPolicySet { bank: field("bank", CreditCode::parse(&e.bank))?, policy }
        }
        E::CertificateBound(e) => {
            Event::CertificateBound { name: name("name", &e.name)?, binding: binding_from_pb(e.binding)? }
        }
        E::RightRecorded(e) => {
            let (number, state) = right_state_from_pb(e.state)?;
            Event::RightRecorded { number, state }
        }
        E::RightStateWithdrawn(e) => withdrawal_from_pb(e.withdrawal)?,
        E::DefaultRecorded(e) => {
            let (id, default) = new_default_from_pb(e.default)?;
            Event::DefaultRecorded { id, default }
        }
        E::DefaultResolved(e) => {
            let (id, resolution) = resolution_from_pb(e.resolution)?;
            Event::DefaultResolved { id, resolution }
        }
        E::ValuationRecorded(e) => {
            let (pledge_id, content) = new_valuation_from_pb(e.valuation)?;
            Event::ValuationRecorded {
                valuation: Valuation {
                    id: uuid("valuation_id", &e.valuation_id)?,
                    pledge_id,
                    content,
                    recorded_by: principal.clone(),
                    create_time: at,
                },
            }
        }
        E::ProgrammeCreated(e) => Event::ProgrammeCreated {
            programme: Programme {
                id: uuid("programme_id", &e.programme_id)?,
                content: new_programme_from_pb(e.programme)?,
                created_by: principal.clone(),
                create_time: at,
            },
        },
        E::ClaimFiled(e) => Event::ClaimFiled { claim: claim_from_pb(e, principal, at)? },
        E::ClaimDecided(e) => {
            let d = e.decision.ok_or("decision: missing")?;
            Event::ClaimDecided {
                id: uuid("claim_id", &d.claim_id)?,
                approved: d.approved,
                decision: Decision {
                    decided_on: date("decided_on", d.decided_on_days)?,
                    by: principal.clone(),
                    at,
                    note: field("note", Note::parse(&d.note))?,
                },
            }
        }
        E::ClaimPaid(e) => {
            let p = e.payment.ok_or("payment: missing")?;
            Event::ClaimPaid {
                id: uuid("claim_id", &p.claim_id)?,
                payment: Payment {
                    paid_on: date("paid_on", p.paid_on_days)?,
                    amount: money("amount", p.amount_fen)?,
                    by: principal.clone(),
                    at,
                },
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_with_a_field_of_a_later_version_still_decodes_and_verifies() {
        let name = PrincipalName::parse("bank-a").unwrap();
        let (entry, stored) = seal(1, [0; 32], 42, &name, None, Event::PrincipalRevoked { name: name.clone() });
        assert_eq!(stored.decode().unwrap(), entry);
        // A later version appends field 99 (a varint) to the entry: this build skips it.
        let mut bytes = stored.bytes.clone();
        bytes.extend_from_slice(&[0x98, 0x06, 0x07]);
        let later = Stored { sequence: 1, hash: Sha256::digest(&bytes).into(), bytes };
        let decoded = later.decode().unwrap();
        assert_eq!(decoded.event, entry.event);
        assert_eq!(decoded.hash, later.hash, "the hash covers the bytes as stored");
        // A flipped byte is caught.
        let mut bytes = stored.bytes.clone();
        *bytes.last_mut().unwrap() ^= 1;
        assert!(Stored { bytes, ..stored }.decode().is_err());
    }

    #[test]
    fn co_owners_and_the_states_before_a_lapse_round_trip_and_an_older_state_reads_without_them() {
        let party = |code: &str| Party {
            name: Name::parse("某某科技有限公司").unwrap(),
            credit_code: CreditCode::parse(code).unwrap(),
        };
        let day = |d: &str| crate::domain::text::parse_date(d).unwrap();
        let state = RightState {
            holder: party("91440106MA59C3K2XE"),
            holder_share: Some(Bp::new(6000).unwrap()),
            co_holders: vec![CoHolder { party: party("91330100716105852F"), share: Some(Bp::new(4000).unwrap()) }],
            status: RightStatus::InForce,
            status_since: day("2025-02-14"),
            freeze: None,
            expires_on: None,
            note: Note::parse("").unwrap(),
            invalidation: Some(InvalidationRequest {
                request_number: Name::parse("4W115678").unwrap(),
                filed_on: day("2026-10-12"),
            }),
            fee_overdue: Some(FeeOverdue { due_on: day("2026-10-31"), grace_ends_on: day("2027-04-30") }),
        };
        let number = RightNumber::parse("ZL202310567891.8", RightKind::InventionPatent).unwrap();
        let name = PrincipalName::parse("office").unwrap();
        let event = Event::RightRecorded { number: number.clone(), state: state.clone() };
        let (entry, stored) = seal(1, [0; 32], 42, &name, None, event);
        assert_eq!(stored.decode().unwrap(), entry);
        // The same state as an entry before issue 25 wrote it: one holder, nothing else.
        let older = RightState {
            holder_share: None,
            co_holders: Vec::new(),
            invalidation: None,
            fee_overdue: None,
            ..state.clone()
        };
        let mut pb = right_state_to_pb(&number, &state);
        (pb.holder_share_bp, pb.co_holders, pb.invalidation, pb.fee_overdue) = (None, Vec::new(), None, None);
        assert_eq!(right_state_from_pb(Some(pb)).unwrap(), (number, older));
    }

    /// A claim entry as written before the caps and the valuer (fields 1-17 only) decodes with no
    /// valuer's part, no cap fund parts, and the budget as its limit when it said so; one written
    /// now keeps them all.
    #[test]
    fn a_claim_entry_from_before_the_caps_decodes_with_a_valuer_of_nothing() {
        let by = PrincipalName::parse("bank-a").unwrap();
        let old = |capped_by_budget: bool| pb::ClaimFiled {
            claim_id: Uuid::from_u128(1).as_bytes().to_vec(),
            claim: Some(pb::FileClaim {
                programme_id: Uuid::from_u128(2).as_bytes().to_vec(),
                pledge_id: Uuid::from_u128(3).as_bytes().to_vec(),
                filed_on_days: 20_000,
            }),
            bank: "914401011905123458".to_owned(),
            loan_amount_fen: 400_000_000,
            loss_fen: 100_000_000,
            fund_share_bp: 4000,
            fund_fen: 30_000_000,
            bank_fen: 70_000_000,
            capped_by_budget,
            county: 440_106,
            registered_on_days: 19_900,
            ..Default::default()
        };
        for (capped, limit) in [(false, None), (true, Some(FundCap::Budget))] {
            let claim = claim_from_pb(old(capped), &by, 7).unwrap();
            let (b, m) = (&claim.basis, &claim.compensation);
            assert_eq!((m.valuer, m.capped_by, m.capped_by_budget), (Money::ZERO, limit, capped));
            assert_eq!((b.loan_fund_before, b.borrower_fund_this_year), (Money::ZERO, Money::ZERO));
        }
        let mut now = claim_from_pb(old(false), &by, 7).unwrap();
        now.compensation.valuer = Money::from_fen(10_000_000).unwrap();
        now.compensation.bank = Money::from_fen(60_000_000).unwrap();
        now.compensation.capped_by = Some(FundCap::BorrowerYear);
        now.basis.borrower_fund_this_year = Money::from_fen(1_000_000_000).unwrap();
        assert_eq!(claim_from_pb(claim_filed_to_pb(&now), &by, 7).unwrap(), now);
        // The parts must add up to the loss, the valuer's included.
        let mut wrong = claim_filed_to_pb(&now);
        wrong.valuer_fen += 1;
        assert!(claim_from_pb(wrong, &by, 7).is_err());
    }
}

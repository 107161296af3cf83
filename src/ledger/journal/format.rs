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
use crate::domain::pledge::{Change, NewPledge, Party, Pledge, RegistrationNumber, Release, ReleaseReason, Right};
use crate::domain::principal::{Principal, PrincipalName, Role};
use crate::domain::region::{CountyCode, Region};
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
        event: Some(event_to_pb(&event)),
    };
    let mut bytes = Vec::with_capacity(1 + message.encoded_len());
    bytes.push(VERSION);
    message.encode(&mut bytes).expect("a Vec grows as needed");
    let hash: Hash = Sha256::digest(&bytes).into();
    let entry = Entry { sequence, at, principal: principal.clone(), request, event, prev_hash, hash };
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
    Ok(Entry { sequence: message.sequence, at: message.at_micros, principal, request, event, prev_hash, hash })
}

/// A write request with an id, as its fingerprint sees it (the parsed command).
#[derive(Debug, Clone, Copy)]
pub enum Request<'a> {
    RegisterPledge(&'a NewPledge),
    ChangePledge { id: Uuid, amendment: &'a crate::domain::pledge::PledgeAmendment },
    ReleasePledge { id: Uuid, release: &'a Release },
    CreateCreditLine(&'a NewCreditLine),
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
        pledgee: Some(party_to_pb(&c.pledgee)),
        county: c.county.region().code(),
        secured_amount_fen: fen(c.secured_amount),
        debt_term_start_days: days(c.debt_term_start),
        debt_term_end_days: days(c.debt_term_end),
        registered_on_days: days(c.registered_on),
        rights: c
            .rights
            .iter()
            .map(|r| pb::Right {
                kind: kind_to_pb(r.kind()) as i32,
                number: r.number.as_str().to_owned(),
                title: r.title.to_string(),
                expires_on_days: days(r.expires_on),
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
        Event::CertificateBound { name, binding } => {
            E::CertificateBound(pb::CertificateBound { name: name.to_string(), binding: Some(binding_to_pb(binding)) })
        }
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
            Ok(Right {
                number: field("right.number", RightNumber::parse(&r.number, kind))?,
                title: field("right.title", Note::parse(&r.title))?,
                expires_on: date("right.expires_on", r.expires_on_days)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(NewPledge {
        registration_number: match c.registration_number.as_str() {
            "" => None,
            n => Some(field("registration_number", RegistrationNumber::parse_recorded(n))?),
        },
        pledgor: party_from_pb("pledgor", c.pledgor)?,
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
        region: field("region", Region::parse(&format!("{:06}", c.region)))?,
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

fn name(label: &str, text: &str) -> Result<PrincipalName, String> {
    field(label, PrincipalName::parse(text))
}

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
        E::CertificateBound(e) => {
            Event::CertificateBound { name: name("name", &e.name)?, binding: binding_from_pb(e.binding)? }
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
}

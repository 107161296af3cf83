//! Proto <-> domain conversion, in one place. Requests are parsed field by field into domain types;
//! every problem is collected as a field violation named by its JSON path, so a caller sees all of
//! them at once. Responses are rendered from domain records.

use crate::domain::credit_line::{CreditLine, NewCreditLine};
use crate::domain::ident::{CreditCode, RightKind, RightNumber};
use crate::domain::money::Money;
use crate::domain::pledge::{
    self, NewPledge, Party, Pledge, PledgeAmendment, RegistrationNumber, Release, ReleaseReason, Right,
};
use crate::domain::principal::{Principal, PrincipalName, Role};
use crate::domain::region::{CountyCode, Region};
use crate::domain::text::{Name, Note, Reason, parse_date};
use crate::domain::{FieldViolation, LedgerError, Micros};
use crate::ledger::Command;
use crate::ledger::events::Event;
use crate::ledger::journal::Entry;
use crate::ledger::query::{self, CreditLineFilter, Exposure, ExposureRow, GroupBy, PledgeFilter, StatusFilter};
use crate::proto as pb;
use std::fmt::Display;
use uuid::Uuid;

/// Collects field violations while a request is parsed.
#[derive(Debug, Default)]
struct Fields {
    violations: Vec<FieldViolation>,
}

impl Fields {
    fn check<T, E: Display>(&mut self, field: impl Into<String>, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.violations.push(FieldViolation::new(field, e));
                None
            }
        }
    }

    fn fail(&mut self, field: impl Into<String>, description: impl Display) {
        self.violations.push(FieldViolation::new(field, description));
    }

    fn finish(self) -> Result<(), LedgerError> {
        if self.violations.is_empty() { Ok(()) } else { Err(LedgerError::invalid(self.violations)) }
    }
}

fn uuid(text: &str) -> Result<Uuid, &'static str> {
    if text.trim().is_empty() {
        return Err("is required");
    }
    Uuid::parse_str(text.trim()).map_err(|_| "must be a UUID such as \"0190c8f2-8d1a-7cc0-b6a4-1f2e3d4c5b6a\"")
}

pub fn id(field: &str, text: &str) -> Result<Uuid, LedgerError> {
    uuid(text).map_err(|e| LedgerError::invalid_field(field, e))
}

fn right_kind(value: i32) -> Result<RightKind, &'static str> {
    match pb::RightKind::try_from(value) {
        Ok(pb::RightKind::InventionPatent) => Ok(RightKind::InventionPatent),
        Ok(pb::RightKind::UtilityModel) => Ok(RightKind::UtilityModel),
        Ok(pb::RightKind::DesignPatent) => Ok(RightKind::DesignPatent),
        Ok(pb::RightKind::Trademark) => Ok(RightKind::Trademark),
        Ok(pb::RightKind::Copyright) => Ok(RightKind::Copyright),
        Ok(pb::RightKind::Unspecified) | Err(_) => {
            Err("must be INVENTION_PATENT, UTILITY_MODEL, DESIGN_PATENT, TRADEMARK or COPYRIGHT")
        }
    }
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

fn party(fields: &mut Fields, path: &str, party: Option<&pb::Party>) -> Option<Party> {
    let Some(p) = party else {
        fields.fail(path, "is required");
        return None;
    };
    let name = fields.check(format!("{path}.name"), Name::parse(&p.name));
    let credit_code = fields.check(format!("{path}.creditCode"), CreditCode::parse(&p.credit_code));
    Some(Party { name: name?, credit_code: credit_code? })
}

fn optional_uuid(fields: &mut Fields, path: &str, text: &str) -> Option<Option<Uuid>> {
    if text.trim().is_empty() { Some(None) } else { fields.check(path, uuid(text)).map(Some) }
}

/// Parses a registration; `index` names the record of an import in messages.
pub fn register_command(request: &pb::RegisterPledgeRequest) -> Result<Command, LedgerError> {
    let mut f = Fields::default();
    let request_id = f.check("requestId", uuid(&request.request_id));
    let Some(p) = request.pledge.as_ref() else {
        f.fail("pledge", "is required");
        return Err(f.finish().expect_err("a violation was recorded"));
    };
    if p.rights.len() > pledge::RIGHTS_PER_PLEDGE_MAX {
        // Refuse before parsing: the limit bounds the work a request can cause.
        f.fail("pledge.rights", format!("at most {} rights per pledge", pledge::RIGHTS_PER_PLEDGE_MAX));
        return Err(f.finish().expect_err("a violation was recorded"));
    }
    let registration_number = if p.registration_number.trim().is_empty() {
        Some(None)
    } else {
        f.check("pledge.registrationNumber", RegistrationNumber::parse(&p.registration_number)).map(Some)
    };
    let pledgor = party(&mut f, "pledge.pledgor", p.pledgor.as_ref());
    let pledgee = party(&mut f, "pledge.pledgee", p.pledgee.as_ref());
    let county = f.check("pledge.countyCode", CountyCode::parse(&p.county_code));
    let secured_amount = f.check("pledge.securedAmount", Money::parse_positive(&p.secured_amount));
    let debt_term_start = f.check("pledge.debtTermStart", parse_date(&p.debt_term_start));
    let debt_term_end = f.check("pledge.debtTermEnd", parse_date(&p.debt_term_end));
    let registered_on = f.check("pledge.registeredOn", parse_date(&p.registered_on));
    let credit_line_id = optional_uuid(&mut f, "pledge.creditLineId", &p.credit_line_id);
    if p.rights.is_empty() {
        f.fail("pledge.rights", "a pledge needs at least one right");
    }
    let mut rights = Vec::with_capacity(p.rights.len());
    for (i, r) in p.rights.iter().enumerate() {
        let path = format!("pledge.rights[{i}]");
        let kind = f.check(format!("{path}.kind"), right_kind(r.kind));
        let number = kind.and_then(|k| f.check(format!("{path}.number"), RightNumber::parse(&r.number, k)));
        let title = f.check(format!("{path}.title"), Note::parse(&r.title));
        let expires_on = f.check(format!("{path}.expiresOn"), parse_date(&r.expires_on));
        if let (Some(number), Some(title), Some(expires_on)) = (number, title, expires_on) {
            rights.push(Right { number, title, expires_on });
        }
    }
    let parsed_all_rights = rights.len() == p.rights.len();
    f.finish()?;
    let (Some(request_id), Some(registration_number), Some(pledgor), Some(pledgee), Some(county), Some(secured_amount)) =
        (request_id, registration_number, pledgor, pledgee, county, secured_amount)
    else {
        unreachable!("every missing value recorded a violation");
    };
    let (Some(debt_term_start), Some(debt_term_end), Some(registered_on), Some(credit_line_id)) =
        (debt_term_start, debt_term_end, registered_on, credit_line_id)
    else {
        unreachable!("every missing value recorded a violation");
    };
    assert!(parsed_all_rights);
    let pledge = NewPledge::new(
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
    )
    .map_err(|e| prefix_fields(e, "pledge."))?;
    Ok(Command::RegisterPledge { request_id, pledge })
}

fn prefix_fields(error: LedgerError, prefix: &str) -> LedgerError {
    match error {
        LedgerError::Invalid { reason, violations } => LedgerError::Invalid {
            reason,
            violations: violations
                .into_iter()
                .map(|v| FieldViolation { field: format!("{prefix}{}", v.field), description: v.description })
                .collect(),
        },
        other => other,
    }
}

pub fn change_command(request: &pb::ChangePledgeRequest) -> Result<Command, LedgerError> {
    let mut f = Fields::default();
    let request_id = f.check("requestId", uuid(&request.request_id));
    let id = f.check("id", uuid(&request.id));
    let secured_amount = if request.secured_amount.trim().is_empty() {
        Some(None)
    } else {
        f.check("securedAmount", Money::parse_positive(&request.secured_amount)).map(Some)
    };
    let debt_term_end = if request.debt_term_end.trim().is_empty() {
        Some(None)
    } else {
        f.check("debtTermEnd", parse_date(&request.debt_term_end)).map(Some)
    };
    let reason = f.check("reason", Reason::parse(&request.reason));
    let effective_on = if request.effective_on.trim().is_empty() {
        Some(None)
    } else {
        f.check("effectiveOn", parse_date(&request.effective_on)).map(Some)
    };
    if request.secured_amount.trim().is_empty() && request.debt_term_end.trim().is_empty() {
        f.fail("securedAmount", "give securedAmount, debtTermEnd or both");
    }
    f.finish()?;
    let (Some(request_id), Some(id), Some(secured_amount), Some(debt_term_end), Some(reason), Some(effective_on)) =
        (request_id, id, secured_amount, debt_term_end, reason, effective_on)
    else {
        unreachable!("every missing value recorded a violation");
    };
    let amendment = PledgeAmendment { secured_amount, debt_term_end, reason, effective_on };
    Ok(Command::ChangePledge { request_id, id, amendment })
}

fn release_reason(value: i32) -> Result<ReleaseReason, &'static str> {
    match pb::ReleaseReason::try_from(value) {
        Ok(pb::ReleaseReason::Repaid) => Ok(ReleaseReason::Repaid),
        Ok(pb::ReleaseReason::Enforced) => Ok(ReleaseReason::Enforced),
        Ok(pb::ReleaseReason::Waived) => Ok(ReleaseReason::Waived),
        Ok(pb::ReleaseReason::ContractInvalid) => Ok(ReleaseReason::ContractInvalid),
        Ok(pb::ReleaseReason::Other) => Ok(ReleaseReason::Other),
        Ok(pb::ReleaseReason::Unspecified) | Err(_) => {
            Err("must be REPAID, ENFORCED, WAIVED, CONTRACT_INVALID or OTHER")
        }
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

pub fn release_command(request: &pb::ReleasePledgeRequest) -> Result<Command, LedgerError> {
    let mut f = Fields::default();
    let request_id = f.check("requestId", uuid(&request.request_id));
    let id = f.check("id", uuid(&request.id));
    let released_on = f.check("releasedOn", parse_date(&request.released_on));
    let reason = f.check("reason", release_reason(request.reason));
    let note = f.check("note", Note::parse(&request.note));
    f.finish()?;
    let (Some(request_id), Some(id), Some(released_on), Some(reason), Some(note)) =
        (request_id, id, released_on, reason, note)
    else {
        unreachable!("every missing value recorded a violation");
    };
    Ok(Command::ReleasePledge { request_id, id, release: Release { released_on, reason, note } })
}

pub fn create_credit_line_command(request: &pb::CreateCreditLineRequest) -> Result<Command, LedgerError> {
    let mut f = Fields::default();
    let request_id = f.check("requestId", uuid(&request.request_id));
    let Some(l) = request.credit_line.as_ref() else {
        f.fail("creditLine", "is required");
        return Err(f.finish().expect_err("a violation was recorded"));
    };
    let bank = party(&mut f, "creditLine.bank", l.bank.as_ref());
    let region = if l.region_code.trim().is_empty() {
        f.fail("creditLine.regionCode", "is required (a province, city or county code)");
        None
    } else {
        f.check("creditLine.regionCode", Region::parse(&l.region_code))
    };
    let program = f.check("creditLine.program", Note::parse(&l.program));
    let limit = f.check("creditLine.limit", Money::parse_positive(&l.limit));
    let valid_from = f.check("creditLine.validFrom", parse_date(&l.valid_from));
    let valid_to = f.check("creditLine.validTo", parse_date(&l.valid_to));
    f.finish()?;
    let (Some(request_id), Some(bank), Some(region), Some(program), Some(limit), Some(valid_from), Some(valid_to)) =
        (request_id, bank, region, program, limit, valid_from, valid_to)
    else {
        unreachable!("every missing value recorded a violation");
    };
    let line = NewCreditLine::new(bank, region, program, limit, valid_from, valid_to)
        .map_err(|e| prefix_fields(e, "creditLine."))?;
    Ok(Command::CreateCreditLine { request_id, line })
}

fn optional_region(f: &mut Fields, text: &str) -> Option<Option<Region>> {
    if text.trim().is_empty() { Some(None) } else { f.check("regionCode", Region::parse(text)).map(Some) }
}

fn optional_code(f: &mut Fields, field: &str, text: &str) -> Option<Option<CreditCode>> {
    if text.trim().is_empty() { Some(None) } else { f.check(field, CreditCode::parse(text)).map(Some) }
}

pub fn pledge_filter(request: &pb::ListPledgesRequest) -> Result<(PledgeFilter, usize), LedgerError> {
    let mut f = Fields::default();
    let page_size = f.check("pageSize", query::page_size(request.page_size).map_err(|_| "must not be negative"));
    let region = optional_region(&mut f, &request.region_code);
    let pledgee = optional_code(&mut f, "pledgeeCreditCode", &request.pledgee_credit_code);
    let pledgor = optional_code(&mut f, "pledgorCreditCode", &request.pledgor_credit_code);
    let right = if request.right_number.trim().is_empty() {
        if request.right_kind != 0 {
            f.fail("rightNumber", "is required with rightKind");
        }
        Some(None)
    } else if request.right_kind == 0 {
        f.check(
            "rightNumber",
            query::right_number_any_kind(&request.right_number).ok_or("is not a right number of any kind"),
        )
        .map(Some)
    } else {
        right_kind(request.right_kind)
            .map_err(|e| f.fail("rightKind", e))
            .ok()
            .and_then(|k| f.check("rightNumber", RightNumber::parse(&request.right_number, k)).map(Some))
    };
    let status = match pb::PledgeStatus::try_from(request.status) {
        Ok(pb::PledgeStatus::Unspecified) => Some(None),
        Ok(pb::PledgeStatus::Active) => Some(Some(StatusFilter::Active)),
        Ok(pb::PledgeStatus::Released) => Some(Some(StatusFilter::Released)),
        Err(_) => {
            f.fail("status", "must be ACTIVE or RELEASED");
            None
        }
    };
    f.finish()?;
    let (Some(page_size), Some(region), Some(pledgee), Some(pledgor), Some(right), Some(status)) =
        (page_size, region, pledgee, pledgor, right, status)
    else {
        unreachable!("every missing value recorded a violation");
    };
    Ok((PledgeFilter { region, pledgee, pledgor, right, status }, page_size))
}

pub fn credit_line_filter(request: &pb::ListCreditLinesRequest) -> Result<(CreditLineFilter, usize), LedgerError> {
    let mut f = Fields::default();
    let page_size = f.check("pageSize", query::page_size(request.page_size).map_err(|_| "must not be negative"));
    let region = optional_region(&mut f, &request.region_code);
    let bank = optional_code(&mut f, "bankCreditCode", &request.bank_credit_code);
    f.finish()?;
    let (Some(page_size), Some(region), Some(bank)) = (page_size, region, bank) else {
        unreachable!("every missing value recorded a violation");
    };
    Ok((CreditLineFilter { region, bank }, page_size))
}

pub fn exposure_query(
    request: &pb::GetExposureRequest,
) -> Result<(Region, GroupBy, Option<chrono::NaiveDate>), LedgerError> {
    let mut f = Fields::default();
    let region = f.check("regionCode", Region::parse(&request.region_code));
    let group_by = match pb::ExposureGroupBy::try_from(request.group_by) {
        Ok(pb::ExposureGroupBy::Unspecified) => Some(GroupBy::None),
        Ok(pb::ExposureGroupBy::ChildRegion) => Some(GroupBy::ChildRegion),
        Ok(pb::ExposureGroupBy::Pledgee) => Some(GroupBy::Pledgee),
        Ok(pb::ExposureGroupBy::RightKind) => Some(GroupBy::RightKind),
        Err(_) => {
            f.fail("groupBy", "must be CHILD_REGION, PLEDGEE or RIGHT_KIND");
            None
        }
    };
    let as_of = if request.as_of.trim().is_empty() {
        Some(None)
    } else {
        f.check("asOf", parse_date(&request.as_of)).map(Some)
    };
    f.finish()?;
    let (Some(region), Some(group_by), Some(as_of)) = (region, group_by, as_of) else {
        unreachable!("every missing value recorded a violation");
    };
    Ok((region, group_by, as_of))
}

fn timestamp(micros: Micros) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

fn party_to_pb(p: &Party) -> pb::Party {
    pb::Party { name: p.name.to_string(), credit_code: p.credit_code.to_string() }
}

pub fn pledge_to_pb(p: &Pledge) -> pb::Pledge {
    let c = &p.content;
    pb::Pledge {
        id: p.id.to_string(),
        registration_number: p.registration_number.as_str().to_owned(),
        pledgor: Some(party_to_pb(&c.pledgor)),
        pledgee: Some(party_to_pb(&c.pledgee)),
        county_code: c.county.to_string(),
        secured_amount: c.secured_amount.to_string(),
        debt_term_start: c.debt_term_start.to_string(),
        debt_term_end: c.debt_term_end.to_string(),
        registered_on: c.registered_on.to_string(),
        rights: c
            .rights
            .iter()
            .map(|r| pb::Right {
                kind: kind_to_pb(r.kind()) as i32,
                number: r.number.as_str().to_owned(),
                title: r.title.to_string(),
                expires_on: r.expires_on.to_string(),
            })
            .collect(),
        credit_line_id: c.credit_line_id.map(|id| id.to_string()).unwrap_or_default(),
        status: if p.is_active() { pb::PledgeStatus::Active } else { pb::PledgeStatus::Released } as i32,
        released_on: p.release.as_ref().map(|r| r.released_on.to_string()).unwrap_or_default(),
        release_reason: p.release.as_ref().map_or(pb::ReleaseReason::Unspecified, |r| release_reason_to_pb(r.reason))
            as i32,
        release_note: p.release.as_ref().map(|r| r.note.to_string()).unwrap_or_default(),
        changes: p
            .changes
            .iter()
            .map(|ch| pb::PledgeChange {
                request_id: ch.request_id.to_string(),
                change_time: Some(timestamp(ch.at)),
                reason: ch.reason.to_string(),
                secured_amount_before: ch.secured_amount.0.to_string(),
                secured_amount_after: ch.secured_amount.1.to_string(),
                debt_term_end_before: ch.debt_term_end.0.to_string(),
                debt_term_end_after: ch.debt_term_end.1.to_string(),
                changed_by: ch.by.to_string(),
                effective_on: ch.effective_on.to_string(),
            })
            .collect(),
        create_time: Some(timestamp(p.create_time)),
        update_time: Some(timestamp(p.update_time)),
        version: p.version,
        created_by: p.created_by.to_string(),
        released_by: p.released_by.as_ref().map(|b| b.to_string()).unwrap_or_default(),
    }
}

pub fn credit_line_to_pb(l: &CreditLine) -> pb::CreditLine {
    let c = &l.content;
    pb::CreditLine {
        id: l.id.to_string(),
        bank: Some(party_to_pb(&c.bank)),
        region_code: c.region.code_string(),
        program: c.program.to_string(),
        limit: c.limit.to_string(),
        drawn: l.drawn.to_string(),
        available: l.available().to_string(),
        valid_from: c.valid_from.to_string(),
        valid_to: c.valid_to.to_string(),
        create_time: Some(timestamp(l.create_time)),
        update_time: Some(timestamp(l.update_time)),
        created_by: l.created_by.to_string(),
    }
}

fn row_to_pb(key: String, name: String, row: &crate::domain::exposure::Row, has_credit: bool) -> pb::ExposureRow {
    pb::ExposureRow {
        key,
        name,
        secured_amount: row.secured_amount.to_string(),
        pledge_count: row.pledge_count,
        enterprise_count: row.enterprise_count,
        right_count: row.right_count,
        credit_limit: if has_credit { row.credit_limit.to_string() } else { String::new() },
        credit_drawn: if has_credit { row.credit_drawn.to_string() } else { String::new() },
    }
}

pub fn exposure_to_pb(e: Exposure) -> pb::GetExposureResponse {
    pb::GetExposureResponse {
        region_code: e.region.code_string(),
        region_name: e.region.name().to_owned(),
        total: Some(row_to_pb(String::new(), e.region.name().to_owned(), &e.total, e.has_credit)),
        rows: e
            .rows
            .into_iter()
            .map(|ExposureRow { key, name, row, has_credit }| row_to_pb(key, name, &row, has_credit))
            .collect(),
        rows_omitted: e.rows_omitted,
    }
}

fn optional_timestamp(micros: Option<Micros>) -> Option<prost_types::Timestamp> {
    micros.map(timestamp)
}

pub fn token_to_pb(p: &Principal) -> pb::Token {
    let (role, credit_code, region_code) = match &p.role {
        Role::Admin => (pb::TokenRole::Admin, String::new(), String::new()),
        Role::Bank(code) => (pb::TokenRole::Bank, code.to_string(), String::new()),
        Role::Office(region) => (pb::TokenRole::Office, String::new(), region.code_string()),
    };
    pb::Token {
        name: p.name.to_string(),
        role: role as i32,
        credit_code,
        region_code,
        create_time: Some(timestamp(p.create_time)),
        revoke_time: optional_timestamp(p.revoke_time),
        certificate_bindings: Vec::new(),
    }
}

/// Parses a token request into the principal's name and role.
pub fn token_request(request: &pb::CreateTokenRequest) -> Result<(PrincipalName, Role), LedgerError> {
    let mut f = Fields::default();
    let name = f.check("name", PrincipalName::parse_new(&request.name));
    let role = match pb::TokenRole::try_from(request.role) {
        Ok(pb::TokenRole::Admin) => Some(Role::Admin),
        Ok(pb::TokenRole::Bank) => f.check("creditCode", CreditCode::parse(&request.credit_code)).map(Role::Bank),
        Ok(pb::TokenRole::Office) => {
            if request.region_code.trim().is_empty() {
                f.fail("regionCode", "is required for an office (a province, city or county code)");
                None
            } else {
                f.check("regionCode", Region::parse(&request.region_code)).map(Role::Office)
            }
        }
        Ok(pb::TokenRole::Unspecified) | Err(_) => {
            f.fail("role", "must be ADMIN, BANK or OFFICE");
            None
        }
    };
    f.finish()?;
    let (Some(name), Some(role)) = (name, role) else {
        unreachable!("every missing value recorded a violation");
    };
    Ok((name, role))
}

pub fn journal_event_to_pb(entry: &Entry) -> pb::JournalEvent {
    let mut event = pb::JournalEvent {
        sequence: entry.sequence,
        time: Some(timestamp(entry.at)),
        principal: entry.principal.to_string(),
        request_id: entry.request.map(|(id, _)| id.to_string()).unwrap_or_default(),
        event: entry.event.name().to_owned(),
        hash: crate::ledger::journal::hex(&entry.hash),
        ..Default::default()
    };
    match &entry.event {
        Event::PledgeRegistered { pledge } => event.pledge = Some(pledge_to_pb(pledge)),
        Event::PledgeChanged { before, after } | Event::PledgeReleased { before, after } => {
            event.pledge = Some(pledge_to_pb(after));
            event.pledge_before = Some(pledge_to_pb(before));
        }
        Event::CreditLineCreated { line } => event.credit_line = Some(credit_line_to_pb(line)),
        Event::PrincipalCreated { record } => event.token = Some(token_to_pb(&record.principal)),
        Event::PrincipalRevoked { after, .. } => event.token = Some(token_to_pb(&after.principal)),
        Event::CertificateBound { record, binding } => {
            let mut token = token_to_pb(&record.principal);
            token.certificate_bindings.push(certificate_binding_to_pb(binding));
            event.token = Some(token);
        }
    }
    event
}

pub fn pledge_version_to_pb(entry: &Entry) -> Option<pb::PledgeVersion> {
    Some(pb::PledgeVersion {
        sequence: entry.sequence,
        time: Some(timestamp(entry.at)),
        principal: entry.principal.to_string(),
        request_id: entry.request.map(|(id, _)| id.to_string()).unwrap_or_default(),
        event: entry.event.name().to_owned(),
        pledge: Some(pledge_to_pb(entry.event.pledge()?)),
    })
}

pub fn verify_report_to_pb(report: &crate::ledger::journal::Report) -> pb::VerifyJournalResponse {
    pb::VerifyJournalResponse {
        ok: report.divergence.is_none(),
        entries: report.entries,
        head_hash: crate::ledger::journal::hex(&report.head),
        keys_compared: report.keys_compared,
        divergence: report.divergence.as_ref().map(|d| pb::Divergence {
            sequence: d.sequence,
            key: d.key.clone(),
            expected: d.expected.clone(),
            found: d.found.clone(),
        }),
    }
}

/// A parsed statistics request.
#[derive(Debug)]
pub struct StatisticsQuery {
    /// `None`: the caller's whole scope.
    pub region: Option<Region>,
    pub period: crate::domain::statistics::Period,
    pub grouping: crate::domain::statistics::Grouping,
    pub threshold: Money,
    pub ten_thousands: bool,
}

/// The inclusive-finance threshold used when a request names none: 10 million yuan.
const INCLUSIVE_THRESHOLD_DEFAULT: &str = "10000000.00";

pub fn statistics_query(request: &pb::GetStatisticsRequest) -> Result<StatisticsQuery, LedgerError> {
    use crate::domain::statistics::{Grouping, Period};
    let mut f = Fields::default();
    let region = optional_region(&mut f, &request.region_code);
    let from = f.check("from", parse_date(&request.from));
    let to = f.check("to", parse_date(&request.to));
    let period = match (from, to) {
        (Some(from), Some(to)) => f.check("to", Period::new(from, to)),
        _ => None,
    };
    let grouping = match pb::ExposureGroupBy::try_from(request.group_by) {
        Ok(pb::ExposureGroupBy::Unspecified) => Some(Grouping::None),
        Ok(pb::ExposureGroupBy::ChildRegion) => Some(Grouping::ChildRegion),
        Ok(pb::ExposureGroupBy::Pledgee) => Some(Grouping::Pledgee),
        Ok(pb::ExposureGroupBy::RightKind) => Some(Grouping::RightKind),
        Err(_) => {
            f.fail("groupBy", "must be CHILD_REGION, PLEDGEE or RIGHT_KIND");
            None
        }
    };
    let threshold_text = if request.inclusive_threshold.trim().is_empty() {
        INCLUSIVE_THRESHOLD_DEFAULT
    } else {
        request.inclusive_threshold.as_str()
    };
    let threshold = f.check("inclusiveThreshold", Money::parse_positive(threshold_text));
    let ten_thousands = match pb::AmountUnit::try_from(request.unit) {
        Ok(pb::AmountUnit::Unspecified | pb::AmountUnit::Yuan) => Some(false),
        Ok(pb::AmountUnit::TenThousandYuan) => Some(true),
        Err(_) => {
            f.fail("unit", "must be YUAN or TEN_THOUSAND_YUAN");
            None
        }
    };
    f.finish()?;
    let (Some(region), Some(period), Some(grouping), Some(threshold), Some(ten_thousands)) =
        (region, period, grouping, threshold, ten_thousands)
    else {
        unreachable!("every missing value recorded a violation");
    };
    Ok(StatisticsQuery { region, period, grouping, threshold, ten_thousands })
}

/// Formats fen as yuan (2 decimals) or as 10,000 yuan (6 decimals): both exact.
fn amount(fen: i128, ten_thousands: bool) -> String {
    if ten_thousands {
        rust_decimal::Decimal::from_i128_with_scale(fen, 6).to_string()
    } else {
        rust_decimal::Decimal::from_i128_with_scale(fen, 2).to_string()
    }
}

fn statistics_row(
    key: String,
    name: String,
    current: &crate::domain::statistics::Tally,
    previous: Option<&crate::domain::statistics::Tally>,
    ten_thousands: bool,
) -> pb::StatisticsRow {
    use crate::domain::statistics::growth_percent;
    let previous_fen = previous.map_or(0, |p| p.amount_fen);
    pb::StatisticsRow {
        key,
        name,
        registered_amount: amount(current.amount_fen, ten_thousands),
        registrations: current.registrations,
        enterprises: current.enterprises.len() as u64,
        patents: current.patents(),
        trademarks: current.rights[3],
        copyrights: current.rights[4],
        inclusive_registrations: current.inclusive,
        inclusive_share_percent: current.inclusive_share_percent().map(|p| p.to_string()).unwrap_or_default(),
        previous_registered_amount: amount(previous_fen, ten_thousands),
        previous_registrations: previous.map_or(0, |p| p.registrations),
        amount_growth_percent: growth_percent(current.amount_fen, previous_fen)
            .map(|p| p.to_string())
            .unwrap_or_default(),
    }
}

pub fn statistics_to_pb(
    region: Region,
    query: &StatisticsQuery,
    current: &crate::domain::statistics::Tallies,
    previous: &crate::domain::statistics::Tallies,
) -> pb::GetStatisticsResponse {
    use crate::domain::statistics::Grouping;
    let t = query.ten_thousands;
    let mut rows: Vec<pb::StatisticsRow> = current
        .rows
        .iter()
        .map(|(key, (name, tally))| {
            statistics_row(key.clone(), name.clone(), tally, previous.rows.get(key).map(|(_, p)| p), t)
        })
        .collect();
    // Every child region and right kind has a row, registrations or not, as published tables do.
    let fixed: Vec<(String, String)> = match query.grouping {
        Grouping::ChildRegion => region.children().iter().map(|c| (c.code_string(), c.name().to_owned())).collect(),
        Grouping::RightKind => RightKind::ALL.iter().map(|k| (k.name().to_owned(), k.name().to_owned())).collect(),
        Grouping::None | Grouping::Pledgee => Vec::new(),
    };
    for (key, name) in fixed {
        if !current.rows.contains_key(&key) {
            let empty = crate::domain::statistics::Tally::default();
            rows.push(statistics_row(key.clone(), name, &empty, previous.rows.get(&key).map(|(_, p)| p), t));
        }
    }
    match query.grouping {
        Grouping::Pledgee => rows.sort_by(|a, b| {
            let fen = |r: &pb::StatisticsRow| r.registered_amount.parse::<rust_decimal::Decimal>().unwrap_or_default();
            fen(b).cmp(&fen(a)).then_with(|| a.key.cmp(&b.key))
        }),
        Grouping::RightKind => {
            let order = |k: &str| RightKind::ALL.iter().position(|r| r.name() == k);
            rows.sort_by_key(|r| order(&r.key));
        }
        _ => rows.sort_by(|a, b| a.key.cmp(&b.key)),
    }
    pb::GetStatisticsResponse {
        region_code: region.code_string(),
        region_name: region.name().to_owned(),
        from: query.period.from.to_string(),
        to: query.period.to.to_string(),
        previous_from: query.period.previous().from.to_string(),
        previous_to: query.period.previous().to.to_string(),
        unit: if t { pb::AmountUnit::TenThousandYuan } else { pb::AmountUnit::Yuan } as i32,
        inclusive_threshold: query.threshold.to_string(),
        total: Some(statistics_row(String::new(), region.name().to_owned(), &current.total, Some(&previous.total), t)),
        rows,
    }
}

/// Parses a BindCertificate request: a principal's name and exactly one binding.
pub fn bind_certificate_request(
    request: &pb::BindCertificateRequest,
) -> Result<(PrincipalName, crate::ledger::principals::CertificateBinding), LedgerError> {
    use crate::ledger::principals::CertificateBinding;
    let mut f = Fields::default();
    let name = f.check("name", PrincipalName::parse(&request.name));
    let given = request.binding.clone().unwrap_or_default();
    type Kind = fn(String) -> CertificateBinding;
    let kinds: [(&str, &str, Kind); 4] = [
        ("binding.subject", &given.subject, CertificateBinding::Subject),
        ("binding.dnsName", &given.dns_name, CertificateBinding::DnsName),
        ("binding.uri", &given.uri, CertificateBinding::Uri),
        ("binding.email", &given.email, CertificateBinding::Email),
    ];
    let set: Vec<_> = kinds.iter().filter(|(_, value, _)| !value.trim().is_empty()).collect();
    let binding = match set.as_slice() {
        [(field, value, kind)] => f.check(*field, CertificateBinding::new(*kind, value)),
        _ => {
            f.fail("binding", "set exactly one of subject, dnsName, uri and email");
            None
        }
    };
    f.finish()?;
    let (Some(name), Some(binding)) = (name, binding) else {
        unreachable!("every missing value recorded a violation");
    };
    Ok((name, binding))
}

pub fn certificate_binding_to_pb(binding: &crate::ledger::principals::CertificateBinding) -> pb::CertificateBinding {
    use crate::ledger::principals::CertificateBinding;
    let mut answer = pb::CertificateBinding::default();
    let field = match binding {
        CertificateBinding::Subject(_) => &mut answer.subject,
        CertificateBinding::DnsName(_) => &mut answer.dns_name,
        CertificateBinding::Uri(_) => &mut answer.uri,
        CertificateBinding::Email(_) => &mut answer.email,
    };
    binding.value().clone_into(field);
    answer
}

//! Pledges: registrations (a `NewPledge`), changes, releases and listing filters in; pledges and
//! their versions out.

use super::*;
use crate::domain::ident::RightNumber;
use crate::domain::money::Money;
use crate::domain::pledge::{
    self, Expiry, NewPledge, Pledge, PledgeAmendment, PledgeDraft, RegistrationNumber, Release, ReleaseReason, Right,
};
use crate::domain::region::CountyCode;
use crate::domain::text::{Note, Reason, parse_date};
use crate::ledger::Command;
use crate::ledger::journal::Entry;
use crate::ledger::query::{self, PledgeFilter, StatusFilter};

/// A pledge to register, with its request id: the handler authorizes on the pledge itself.
// Longer than ~70 lines: it parses every field of a registration request and collects the
// violations into one answer.
pub fn registration(request: &pb::RegisterPledgeRequest) -> Result<(Uuid, NewPledge), LedgerError> {
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
    let co_pledgors = co_pledgors(&mut f, &p.co_pledgors);
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
        let expires_on = if r.expires_on.trim().is_empty() {
            Some(None)
        } else {
            f.check(format!("{path}.expiresOn"), parse_date(&r.expires_on)).map(Some)
        };
        if let (Some(number), Some(title), Some(expires_on)) = (number, title, expires_on) {
            rights.push(Right::new(number, title, expires_on));
        }
    }
    let parsed_all_rights = rights.len() == p.rights.len();
    f.finish()?;
    let (Some(request_id), Some(registration_number), Some(pledgor), Some(pledgee), Some(county), Some(secured_amount)) =
        (request_id, registration_number, pledgor, pledgee, county, secured_amount)
    else {
        return Err(unrecorded());
    };
    let (Some(debt_term_start), Some(debt_term_end), Some(registered_on), Some(credit_line_id), Some(co_pledgors)) =
        (debt_term_start, debt_term_end, registered_on, credit_line_id, co_pledgors)
    else {
        return Err(unrecorded());
    };
    assert!(parsed_all_rights);
    let pledge = NewPledge::new(PledgeDraft {
        registration_number,
        pledgor,
        co_pledgors,
        invalidation_pending_accepted: p.invalidation_pending_accepted,
        pledgee,
        county,
        secured_amount,
        debt_term_start,
        debt_term_end,
        registered_on,
        rights,
        credit_line_id,
    })
    .map_err(|e| prefix_fields(e, "pledge."))?;
    Ok((request_id, pledge))
}

/// The co-pledgors, each parsed; bounded before parsing so a huge list is refused cheaply.
fn co_pledgors(f: &mut Fields, list: &[pb::Party]) -> Option<Vec<Party>> {
    if list.len() > pledge::CO_PLEDGORS_MAX {
        f.fail("pledge.coPledgors", format!("at most {} co-pledgors per pledge", pledge::CO_PLEDGORS_MAX));
        return None;
    }
    let parsed: Vec<Party> =
        list.iter().enumerate().filter_map(|(i, p)| party(f, &format!("pledge.coPledgors[{i}]"), Some(p))).collect();
    (parsed.len() == list.len()).then_some(parsed)
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
        return Err(unrecorded());
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
        return Err(unrecorded());
    };
    Ok(Command::ReleasePledge { request_id, id, release: Release { released_on, reason, note } })
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
    } else {
        right_number(&mut f, &request.right_number, request.right_kind).map(Some)
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
        return Err(unrecorded());
    };
    Ok((PledgeFilter { region, pledgee, pledgor, right, status }, page_size))
}

/// A right number with an optional kind (unspecified: the kind the number itself says).
fn right_number(f: &mut Fields, number: &str, kind: i32) -> Option<RightNumber> {
    if kind == 0 {
        return f.check("rightNumber", query::right_number_any_kind(number).ok_or("is not a right number of any kind"));
    }
    right_kind(kind)
        .map_err(|e| f.fail("rightKind", e))
        .ok()
        .and_then(|k| f.check("rightNumber", RightNumber::parse(number, k)))
}

/// The right a public register lookup asks about.
pub fn right_lookup(request: &pb::LookupRightRequest) -> Result<RightNumber, LedgerError> {
    let mut f = Fields::default();
    let number = if request.right_number.trim().is_empty() {
        f.fail("rightNumber", "is required");
        None
    } else {
        right_number(&mut f, &request.right_number, request.right_kind)
    };
    f.finish()?;
    number.ok_or_else(|| LedgerError::Internal("a right number neither parsed nor refused".to_owned()))
}

/// What the public register shows of `number`: its active pledge's registration, date and
/// parties, nothing of amounts, credit lines or ids.
pub fn right_lookup_to_pb(number: &RightNumber, active: Option<&Pledge>) -> pb::LookupRightResponse {
    let mut answer = pb::LookupRightResponse {
        right_kind: kind_to_pb(number.kind()) as i32,
        right_number: number.as_str().to_owned(),
        ..Default::default()
    };
    if let Some(p) = active {
        answer.pledged = true;
        answer.registration_number = p.registration_number.as_str().to_owned();
        answer.registered_on = p.content.registered_on.to_string();
        answer.pledgor = Some(party_to_pb(&p.content.pledgor));
        answer.co_pledgors = p.content.co_pledgors.iter().map(party_to_pb).collect();
        answer.pledgee = Some(party_to_pb(&p.content.pledgee));
    }
    answer
}

pub fn pledge_to_pb(p: &Pledge) -> pb::Pledge {
    let c = &p.content;
    pb::Pledge {
        id: p.id.to_string(),
        registration_number: p.registration_number.as_str().to_owned(),
        pledgor: Some(party_to_pb(&c.pledgor)),
        co_pledgors: c.co_pledgors.iter().map(party_to_pb).collect(),
        invalidation_pending_accepted: c.invalidation_pending_accepted,
        pledgee: Some(party_to_pb(&c.pledgee)),
        county_code: c.county.to_string(),
        secured_amount: c.secured_amount.to_string(),
        debt_term_start: c.debt_term_start.to_string(),
        debt_term_end: c.debt_term_end.to_string(),
        registered_on: c.registered_on.to_string(),
        rights: c
            .rights
            .iter()
            .map(|r| {
                let (basis, term_years) = match r.expiry {
                    Expiry::Given(_) => (pb::ExpiryBasis::Given, 0),
                    Expiry::StatutoryBound { term_years, .. } => (pb::ExpiryBasis::StatutoryBound, term_years),
                    Expiry::Unknown => (pb::ExpiryBasis::Unknown, 0),
                };
                pb::Right {
                    kind: kind_to_pb(r.kind()) as i32,
                    number: r.number.as_str().to_owned(),
                    title: r.title.to_string(),
                    expires_on: r.expiry.last_day().map(|d| d.to_string()).unwrap_or_default(),
                    expiry_basis: basis as i32,
                    statutory_term_years: u32::from(term_years),
                }
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
        ..Default::default()
    }
}

/// One version of a pledge: the entry that made it and the pledge right after it.
pub fn pledge_version_to_pb(entry: &Entry, pledge: &crate::domain::pledge::Pledge) -> pb::PledgeVersion {
    pb::PledgeVersion {
        sequence: entry.sequence,
        time: Some(timestamp(entry.at)),
        principal: entry.principal.to_string(),
        request_id: entry.request.map(|r| r.id.to_string()).unwrap_or_default(),
        event: entry.event.name().to_owned(),
        pledge: Some(pledge_to_pb(pledge)),
    }
}

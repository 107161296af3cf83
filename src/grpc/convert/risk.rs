//! The risk side: rights' states, defaults, valuations, programmes and claims in (commands, field
//! by field), records out. Shares travel as percent strings ("40", "12.5") in the API and as basis
//! points inside, so no float ever touches a share.

use super::*;
use crate::domain::ident::RightNumber;
use crate::domain::money::Money;
use crate::domain::programme::{Bp, Claim, ClaimStatus, FundCap, NewProgramme, Programme, ProgrammeDraft, Tier};
use crate::domain::right::{
    CO_HOLDERS_MAX, CoHolder, FeeOverdue, Freeze, InvalidationRequest, RightRecord, RightState, RightStatus,
};
use crate::domain::risk::{
    self, Method, NewDefault, NewResolution, NewValuation, PledgeDefault, Resolution, Valuation,
};
use crate::domain::text::{Note, parse_date};
use crate::ledger::Command;
use crate::ledger::command::RiskCommand;
use crate::ledger::risk_projector::{PledgeRisk, ProgrammeYear};
use rust_decimal::Decimal;
use std::str::FromStr;

fn risk(request_id: Uuid, command: RiskCommand) -> Command {
    Command::Risk { request_id, command }
}

fn optional_date(f: &mut Fields, path: &str, text: &str) -> Option<Option<chrono::NaiveDate>> {
    if text.trim().is_empty() { Some(None) } else { f.check(path, parse_date(text)).map(Some) }
}

fn optional_money(f: &mut Fields, path: &str, text: &str) -> Option<Option<Money>> {
    if text.trim().is_empty() { Some(None) } else { f.check(path, Money::parse_non_negative(text)).map(Some) }
}

/// A share in percent with at most 2 decimals ("40", "12.5", "0.25") as basis points.
fn percent(text: &str) -> Result<Bp, String> {
    let syntax = || "must be a percent from 0 to 100 with at most 2 decimals, such as \"40\" or \"12.5\"".to_owned();
    let t = text.trim();
    if t.is_empty() || t.len() > 12 || !t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(syntax());
    }
    let value = Decimal::from_str(t).map_err(|_| syntax())? * Decimal::from(100);
    if value.fract() != Decimal::ZERO || value > Decimal::from(10_000) {
        return Err(syntax());
    }
    Bp::new(u16::try_from(value.mantissa() / 10i128.pow(value.scale())).map_err(|_| syntax())?)
}

/// An optional positive amount: empty is `None`.
fn optional_positive(f: &mut Fields, path: &str, text: &str) -> Option<Option<Money>> {
    if text.trim().is_empty() { Some(None) } else { f.check(path, Money::parse_positive(text)).map(Some) }
}

fn optional_percent(f: &mut Fields, path: &str, text: &str) -> Option<Option<Bp>> {
    if text.trim().is_empty() { Some(None) } else { f.check(path, percent(text)).map(Some) }
}

fn percent_to_string(bp: Bp) -> String {
    Decimal::new(i64::from(bp.get()), 2).normalize().to_string()
}

fn right_number(f: &mut Fields, kind: i32, number: &str) -> Option<RightNumber> {
    let kind = f.check("rightKind", right_kind(kind))?;
    f.check("rightNumber", RightNumber::parse(number, kind))
}

fn right_status(value: i32) -> Result<RightStatus, &'static str> {
    match pb::RightStatus::try_from(value) {
        Ok(pb::RightStatus::InForce) => Ok(RightStatus::InForce),
        Ok(pb::RightStatus::Lapsed) => Ok(RightStatus::Lapsed),
        Ok(pb::RightStatus::Invalidated) => Ok(RightStatus::Invalidated),
        Ok(pb::RightStatus::Expired) => Ok(RightStatus::Expired),
        _ => Err("must be IN_FORCE, LAPSED, INVALIDATED or EXPIRED"),
    }
}

fn right_status_to_pb(status: RightStatus) -> pb::RightStatus {
    match status {
        RightStatus::InForce => pb::RightStatus::InForce,
        RightStatus::Lapsed => pb::RightStatus::Lapsed,
        RightStatus::Invalidated => pb::RightStatus::Invalidated,
        RightStatus::Expired => pb::RightStatus::Expired,
    }
}

fn freeze(f: &mut Fields, freeze: Option<&pb::Freeze>) -> Option<Option<Freeze>> {
    let Some(z) = freeze else { return Some(None) };
    let case_number = f.check("state.freeze.caseNumber", Name::parse(&z.case_number));
    let court = f.check("state.freeze.court", Name::parse(&z.court));
    let from = f.check("state.freeze.from", parse_date(&z.from));
    let until = optional_date(f, "state.freeze.until", &z.until);
    Some(Some(Freeze { case_number: case_number?, court: court?, from: from?, until: until? }))
}

/// The co-holders, each parsed; bounded before parsing so a huge list is refused cheaply.
fn co_holders(f: &mut Fields, list: &[pb::CoHolder]) -> Option<Vec<CoHolder>> {
    if list.len() > CO_HOLDERS_MAX {
        f.fail("state.coHolders", format!("at most {CO_HOLDERS_MAX} co-holders"));
        return None;
    }
    let mut parsed = Vec::with_capacity(list.len());
    for (i, c) in list.iter().enumerate() {
        let path = format!("state.coHolders[{i}]");
        let name = f.check(format!("{path}.name"), Name::parse(&c.name));
        let credit_code = f.check(format!("{path}.creditCode"), CreditCode::parse(&c.credit_code));
        let share = optional_percent(f, &format!("{path}.sharePercent"), &c.share_percent);
        if let (Some(name), Some(credit_code), Some(share)) = (name, credit_code, share) {
            parsed.push(CoHolder { party: Party { name, credit_code }, share });
        }
    }
    (parsed.len() == list.len()).then_some(parsed)
}

fn invalidation(f: &mut Fields, request: Option<&pb::InvalidationRequest>) -> Option<Option<InvalidationRequest>> {
    let Some(r) = request else { return Some(None) };
    let request_number = f.check("state.invalidation.requestNumber", Name::parse(&r.request_number));
    let filed_on = f.check("state.invalidation.filedOn", parse_date(&r.filed_on));
    Some(Some(InvalidationRequest { request_number: request_number?, filed_on: filed_on? }))
}

fn fee_overdue(f: &mut Fields, fee: Option<&pb::FeeOverdue>) -> Option<Option<FeeOverdue>> {
    let Some(fee) = fee else { return Some(None) };
    let due_on = f.check("state.feeOverdue.dueOn", parse_date(&fee.due_on));
    let grace_ends_on = f.check("state.feeOverdue.graceEndsOn", parse_date(&fee.grace_ends_on));
    Some(Some(FeeOverdue { due_on: due_on?, grace_ends_on: grace_ends_on? }))
}

pub fn record_right(request: &pb::RecordRightRequest) -> Result<Command, LedgerError> {
    let mut f = Fields::default();
    let request_id = f.check("requestId", uuid(&request.request_id));
    let number = right_number(&mut f, request.right_kind, &request.right_number);
    let Some(s) = request.state.as_ref() else {
        f.fail("state", "is required");
        return Err(f.finish().expect_err("a violation was recorded"));
    };
    let holder = party(&mut f, "state.holder", s.holder.as_ref());
    let status = f.check("state.status", right_status(s.status));
    let status_since = f.check("state.statusSince", parse_date(&s.status_since));
    let freeze = freeze(&mut f, s.freeze.as_ref());
    let expires_on = optional_date(&mut f, "state.expiresOn", &s.expires_on);
    let note = f.check("state.note", Note::parse(&s.note));
    let holder_share = optional_percent(&mut f, "state.holderSharePercent", &s.holder_share_percent);
    let co_holders = co_holders(&mut f, &s.co_holders);
    let invalidation = invalidation(&mut f, s.invalidation.as_ref());
    let fee_overdue = fee_overdue(&mut f, s.fee_overdue.as_ref());
    f.finish()?;
    let (Some(request_id), Some(number), Some(holder), Some(status), Some(status_since)) =
        (request_id, number, holder, status, status_since)
    else {
        return Err(unrecorded());
    };
    let (Some(freeze), Some(expires_on), Some(note), Some(holder_share)) = (freeze, expires_on, note, holder_share)
    else {
        return Err(unrecorded());
    };
    let (Some(co_holders), Some(invalidation), Some(fee_overdue)) = (co_holders, invalidation, fee_overdue) else {
        return Err(unrecorded());
    };
    let state = RightState::new(RightState {
        holder,
        holder_share,
        co_holders,
        status,
        status_since,
        freeze,
        expires_on,
        note,
        invalidation,
        fee_overdue,
    })
    .map_err(|e| prefix_fields(e, "state."))?;
    Ok(risk(request_id, RiskCommand::RecordRight { number, state }))
}

pub fn get_right(request: &pb::GetRightRequest) -> Result<RightNumber, LedgerError> {
    let mut f = Fields::default();
    let number = right_number(&mut f, request.right_kind, &request.right_number);
    f.finish()?;
    Ok(number.expect("a violation was recorded otherwise"))
}

pub fn withdraw_right_state(request: &pb::WithdrawRightStateRequest) -> Result<Command, LedgerError> {
    let mut f = Fields::default();
    let request_id = f.check("requestId", uuid(&request.request_id));
    let number = right_number(&mut f, request.right_kind, &request.right_number);
    let recorded_at = match &request.record_time {
        None => {
            f.fail("recordTime", "is required: the recordTime of the state, as GetRight shows it");
            None
        }
        Some(t) => t
            .seconds
            .checked_mul(1_000_000)
            .and_then(|s| s.checked_add(i64::from(t.nanos) / 1000))
            .filter(|_| (0..1_000_000_000).contains(&t.nanos))
            .or_else(|| {
                f.fail("recordTime", "is not a valid timestamp");
                None
            }),
    };
    let note = f.check("note", Note::parse(&request.note));
    if note.as_ref().is_some_and(|n| n.to_string().is_empty()) {
        f.fail("note", "is required: say why the state is withdrawn");
    }
    f.finish()?;
    let (Some(request_id), Some(number), Some(recorded_at), Some(note)) = (request_id, number, recorded_at, note)
    else {
        return Err(unrecorded());
    };
    Ok(risk(request_id, RiskCommand::WithdrawRightState { number, recorded_at, note }))
}

fn right_state_to_pb(r: &crate::domain::right::Recorded) -> pb::RightState {
    let s = &r.state;
    pb::RightState {
        holder: Some(party_to_pb(&s.holder)),
        status: right_status_to_pb(s.status) as i32,
        status_since: s.status_since.to_string(),
        freeze: s.freeze.as_ref().map(|z| pb::Freeze {
            case_number: z.case_number.to_string(),
            court: z.court.to_string(),
            from: z.from.to_string(),
            until: z.until.map(|d| d.to_string()).unwrap_or_default(),
        }),
        expires_on: s.expires_on.map(|d| d.to_string()).unwrap_or_default(),
        note: s.note.to_string(),
        holder_share_percent: s.holder_share.map(percent_to_string).unwrap_or_default(),
        co_holders: s
            .co_holders
            .iter()
            .map(|c| pb::CoHolder {
                name: c.party.name.to_string(),
                credit_code: c.party.credit_code.to_string(),
                share_percent: c.share.map(percent_to_string).unwrap_or_default(),
            })
            .collect(),
        invalidation: s.invalidation.as_ref().map(|i| pb::InvalidationRequest {
            request_number: i.request_number.to_string(),
            filed_on: i.filed_on.to_string(),
        }),
        fee_overdue: s
            .fee_overdue
            .as_ref()
            .map(|x| pb::FeeOverdue { due_on: x.due_on.to_string(), grace_ends_on: x.grace_ends_on.to_string() }),
        recorded_by: r.by.to_string(),
        record_time: Some(timestamp(r.at)),
        withdrawal: r.withdrawn.as_ref().map(|w| pb::RightStateWithdrawal {
            withdrawn_by: w.by.to_string(),
            withdraw_time: Some(timestamp(w.at)),
            note: w.note.to_string(),
        }),
    }
}

pub fn right_record_to_pb(record: &RightRecord) -> pb::RightRecord {
    let current = record.current();
    pb::RightRecord {
        right_kind: kind_to_pb(record.number.kind()) as i32,
        right_number: record.number.as_str().to_owned(),
        state: current.map(right_state_to_pb),
        history: record.states.iter().filter(|s| current.is_none_or(|c| c.at != s.at)).map(right_state_to_pb).collect(),
        risk: current.and_then(|c| c.state.risk()).map(|flag| flag.name().to_owned()).unwrap_or_default(),
    }
}

pub fn record_default(request: &pb::RecordDefaultRequest) -> Result<Command, LedgerError> {
    let mut f = Fields::default();
    let request_id = f.check("requestId", uuid(&request.request_id));
    let id = f.check("pledgeId", uuid(&request.pledge_id));
    let defaulted_on = f.check("defaultedOn", parse_date(&request.defaulted_on));
    let outstanding = f.check("outstandingPrincipal", Money::parse_positive(&request.outstanding_principal));
    let loss = optional_money(&mut f, "loss", &request.loss);
    f.finish()?;
    let (Some(request_id), Some(id), Some(defaulted_on), Some(outstanding_principal), Some(loss)) =
        (request_id, id, defaulted_on, outstanding, loss)
    else {
        return Err(unrecorded());
    };
    let default = NewDefault { defaulted_on, outstanding_principal, loss };
    Ok(risk(request_id, RiskCommand::RecordDefault { id, default }))
}

fn resolution(value: i32) -> Result<Resolution, &'static str> {
    match pb::Resolution::try_from(value) {
        Ok(pb::Resolution::Recovered) => Ok(Resolution::Recovered),
        Ok(pb::Resolution::WrittenOff) => Ok(Resolution::WrittenOff),
        _ => Err("must be RECOVERED or WRITTEN_OFF"),
    }
}

pub fn resolve_default(request: &pb::ResolveDefaultRequest) -> Result<Command, LedgerError> {
    let mut f = Fields::default();
    let request_id = f.check("requestId", uuid(&request.request_id));
    let id = f.check("pledgeId", uuid(&request.pledge_id));
    let resolved_on = f.check("resolvedOn", parse_date(&request.resolved_on));
    let kind = f.check("resolution", resolution(request.resolution));
    let loss = f.check("loss", Money::parse_non_negative(&request.loss));
    let note = f.check("note", Note::parse(&request.note));
    f.finish()?;
    let (Some(request_id), Some(id), Some(resolved_on), Some(resolution), Some(loss), Some(note)) =
        (request_id, id, resolved_on, kind, loss, note)
    else {
        return Err(unrecorded());
    };
    let resolution = NewResolution { resolved_on, resolution, loss, note };
    Ok(risk(request_id, RiskCommand::ResolveDefault { id, resolution }))
}

pub fn default_to_pb(d: &PledgeDefault) -> pb::PledgeDefault {
    let resolved = d.resolution.as_ref();
    pb::PledgeDefault {
        pledge_id: d.pledge_id.to_string(),
        defaulted_on: d.content.defaulted_on.to_string(),
        outstanding_principal: d.content.outstanding_principal.to_string(),
        loss: d.loss().map(|m| m.to_string()).unwrap_or_default(),
        recorded_by: d.recorded_by.to_string(),
        record_time: Some(timestamp(d.create_time)),
        resolved_on: resolved.map(|(r, ..)| r.resolved_on.to_string()).unwrap_or_default(),
        resolution: resolved.map_or(pb::Resolution::Unspecified, |(r, ..)| match r.resolution {
            Resolution::Recovered => pb::Resolution::Recovered,
            Resolution::WrittenOff => pb::Resolution::WrittenOff,
        }) as i32,
        resolution_note: resolved.map(|(r, ..)| r.note.to_string()).unwrap_or_default(),
        resolved_by: resolved.map(|(_, by, _)| by.to_string()).unwrap_or_default(),
    }
}

fn method(value: i32) -> Result<Method, &'static str> {
    match pb::ValuationMethod::try_from(value) {
        Ok(pb::ValuationMethod::Income) => Ok(Method::Income),
        Ok(pb::ValuationMethod::Market) => Ok(Method::Market),
        Ok(pb::ValuationMethod::Cost) => Ok(Method::Cost),
        Ok(pb::ValuationMethod::OtherMethod) => Ok(Method::Other),
        _ => Err("must be INCOME, MARKET, COST or OTHER_METHOD"),
    }
}

pub fn record_valuation(request: &pb::RecordValuationRequest) -> Result<Command, LedgerError> {
    let mut f = Fields::default();
    let request_id = f.check("requestId", uuid(&request.request_id));
    let Some(v) = request.valuation.as_ref() else {
        f.fail("valuation", "is required");
        return Err(f.finish().expect_err("a violation was recorded"));
    };
    let id = f.check("valuation.pledgeId", uuid(&v.pledge_id));
    let appraiser = f.check("valuation.appraiser", Name::parse(&v.appraiser));
    let method = f.check("valuation.method", method(v.method));
    let value = f.check("valuation.value", Money::parse_positive(&v.value));
    let valued_on = f.check("valuation.valuedOn", parse_date(&v.valued_on));
    f.finish()?;
    let (Some(request_id), Some(id), Some(appraiser), Some(method), Some(value), Some(valued_on)) =
        (request_id, id, appraiser, method, value, valued_on)
    else {
        return Err(unrecorded());
    };
    let valuation = NewValuation { appraiser, method, value, valued_on };
    Ok(risk(request_id, RiskCommand::RecordValuation { id, valuation }))
}

pub fn valuation_to_pb(v: &Valuation) -> pb::Valuation {
    let method = match v.content.method {
        Method::Income => pb::ValuationMethod::Income,
        Method::Market => pb::ValuationMethod::Market,
        Method::Cost => pb::ValuationMethod::Cost,
        Method::Other => pb::ValuationMethod::OtherMethod,
    };
    pb::Valuation {
        id: v.id.to_string(),
        pledge_id: v.pledge_id.to_string(),
        appraiser: v.content.appraiser.to_string(),
        method: method as i32,
        value: v.content.value.to_string(),
        valued_on: v.content.valued_on.to_string(),
        recorded_by: v.recorded_by.to_string(),
        record_time: Some(timestamp(v.create_time)),
    }
}

/// The pledge's risk fields: flags, default, latest valuation and loan-to-value.
pub fn with_risk(mut pledge: pb::Pledge, secured: Money, risk: &PledgeRisk) -> pb::Pledge {
    pledge.at_risk = !risk.flags.is_empty();
    pledge.risk_flags = risk
        .flags
        .iter()
        .map(|(number, flag)| pb::RiskFlag {
            right_kind: kind_to_pb(number.kind()) as i32,
            right_number: number.as_str().to_owned(),
            reason: flag.name().to_owned(),
        })
        .collect();
    pledge.default = risk.default.as_ref().map(default_to_pb);
    let latest = risk::latest(&risk.valuations);
    pledge.latest_valuation = latest.map(valuation_to_pb);
    pledge.loan_to_value_percent = latest
        .and_then(|v| risk::loan_to_value_percent(secured, v.content.value))
        .map(|p| p.to_string())
        .unwrap_or_default();
    pledge
}

pub fn create_programme(request: &pb::CreateProgrammeRequest) -> Result<Command, LedgerError> {
    let mut f = Fields::default();
    let request_id = f.check("requestId", uuid(&request.request_id));
    let Some(p) = request.programme.as_ref() else {
        f.fail("programme", "is required");
        return Err(f.finish().expect_err("a violation was recorded"));
    };
    if p.tiers.len() > crate::domain::programme::TIERS_MAX {
        f.fail("programme.tiers", format!("at most {} tiers", crate::domain::programme::TIERS_MAX));
        return Err(f.finish().expect_err("a violation was recorded"));
    }
    if p.eligible_banks.len() > crate::domain::programme::ELIGIBLE_BANKS_MAX {
        let max = crate::domain::programme::ELIGIBLE_BANKS_MAX;
        f.fail("programme.eligibleBanks", format!("at most {max} banks"));
        return Err(f.finish().expect_err("a violation was recorded"));
    }
    let name = f.check("programme.name", Name::parse(&p.name));
    let region = f.check("programme.regionCode", Region::parse(&p.region_code));
    let budget = f.check("programme.budgetPerYear", Money::parse_positive(&p.budget_per_year));
    let tiers: Vec<Option<Tier>> = p
        .tiers
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let up_to = f.check(format!("programme.tiers[{i}].loanUpTo"), Money::parse_positive(&t.loan_up_to));
            let share = f.check(format!("programme.tiers[{i}].fundSharePercent"), percent(&t.fund_share_percent));
            Some(Tier { loan_up_to: up_to?, fund_share: share? })
        })
        .collect();
    let insurer = optional_percent(&mut f, "programme.insurerSharePercent", &p.insurer_share_percent);
    let guarantor = optional_percent(&mut f, "programme.guarantorSharePercent", &p.guarantor_share_percent);
    let stop_line = optional_percent(&mut f, "programme.stopLinePercent", &p.stop_line_percent);
    let valuer = optional_percent(&mut f, "programme.valuerSharePercent", &p.valuer_share_percent);
    let cap_per_loan = optional_positive(&mut f, "programme.capPerLoan", &p.cap_per_loan);
    let cap_per_borrower = optional_positive(&mut f, "programme.capPerBorrowerPerYear", &p.cap_per_borrower_per_year);
    let banks: Vec<Option<CreditCode>> = p
        .eligible_banks
        .iter()
        .enumerate()
        .map(|(i, c)| f.check(format!("programme.eligibleBanks[{i}]"), CreditCode::parse(c)))
        .collect();
    let valid_from = f.check("programme.validFrom", parse_date(&p.valid_from));
    let valid_to = f.check("programme.validTo", parse_date(&p.valid_to));
    f.finish()?;
    let zero = || Bp::new(0).expect("0 is a share");
    let (Some(request_id), Some(name), Some(region), Some(budget), Some(insurer), Some(guarantor), Some(stop_line)) =
        (request_id, name, region, budget, insurer, guarantor, stop_line)
    else {
        return Err(unrecorded());
    };
    let (Some(valid_from), Some(valid_to)) = (valid_from, valid_to) else {
        return Err(unrecorded());
    };
    let (Some(valuer), Some(cap_per_loan), Some(cap_per_borrower_per_year)) = (valuer, cap_per_loan, cap_per_borrower)
    else {
        return Err(unrecorded());
    };
    let programme = NewProgramme::new(ProgrammeDraft {
        name,
        region,
        budget_per_year: budget,
        tiers: tiers.into_iter().map(|t| t.expect("a violation was recorded otherwise")).collect(),
        insurer_share: insurer.unwrap_or_else(zero),
        guarantor_share: guarantor.unwrap_or_else(zero),
        valuer_share: valuer.unwrap_or_else(zero),
        cap_per_loan,
        cap_per_borrower_per_year,
        stop_line,
        eligible_banks: banks.into_iter().map(|b| b.expect("a violation was recorded otherwise")).collect(),
        valid_from,
        valid_to,
    })
    .map_err(|e| prefix_fields(e, "programme."))?;
    Ok(risk(request_id, RiskCommand::CreateProgramme { programme }))
}

pub fn programme_to_pb(p: &Programme, year: Option<(ProgrammeYear, Money)>) -> pb::Programme {
    let c = &p.content;
    let (year, left) = year.unzip();
    pb::Programme {
        id: p.id.to_string(),
        name: c.name.to_string(),
        region_code: c.region.code_string(),
        budget_per_year: c.budget_per_year.to_string(),
        tiers: c
            .tiers
            .iter()
            .map(|t| pb::Tier {
                loan_up_to: t.loan_up_to.to_string(),
                fund_share_percent: percent_to_string(t.fund_share),
            })
            .collect(),
        insurer_share_percent: percent_to_string(c.insurer_share),
        guarantor_share_percent: percent_to_string(c.guarantor_share),
        stop_line_percent: c.stop_line.map(percent_to_string).unwrap_or_default(),
        eligible_banks: c.eligible_banks.iter().map(|b| b.to_string()).collect(),
        valid_from: c.valid_from.to_string(),
        valid_to: c.valid_to.to_string(),
        created_by: p.created_by.to_string(),
        create_time: Some(timestamp(p.create_time)),
        committed_this_year: year.map(|y| y.committed.to_string()).unwrap_or_default(),
        paid_this_year: year.map(|y| y.paid.to_string()).unwrap_or_default(),
        budget_left_this_year: left.map(|m| m.to_string()).unwrap_or_default(),
        cap_per_loan: c.cap_per_loan.map(|m| m.to_string()).unwrap_or_default(),
        cap_per_borrower_per_year: c.cap_per_borrower_per_year.map(|m| m.to_string()).unwrap_or_default(),
        valuer_share_percent: percent_to_string(c.valuer_share),
    }
}

pub fn file_claim(request: &pb::FileClaimRequest) -> Result<Command, LedgerError> {
    let mut f = Fields::default();
    let request_id = f.check("requestId", uuid(&request.request_id));
    let programme_id = f.check("programmeId", uuid(&request.programme_id));
    let pledge_id = f.check("pledgeId", uuid(&request.pledge_id));
    let filed_on = f.check("filedOn", parse_date(&request.filed_on));
    f.finish()?;
    let (Some(request_id), Some(programme_id), Some(pledge_id), Some(filed_on)) =
        (request_id, programme_id, pledge_id, filed_on)
    else {
        return Err(unrecorded());
    };
    Ok(risk(request_id, RiskCommand::FileClaim { programme_id, pledge_id, filed_on }))
}

pub fn decide_claim(request: &pb::DecideClaimRequest) -> Result<Command, LedgerError> {
    let mut f = Fields::default();
    let request_id = f.check("requestId", uuid(&request.request_id));
    let id = f.check("id", uuid(&request.id));
    let decided_on = f.check("decidedOn", parse_date(&request.decided_on));
    let note = f.check("note", Note::parse(&request.note));
    f.finish()?;
    let (Some(request_id), Some(id), Some(decided_on), Some(note)) = (request_id, id, decided_on, note) else {
        return Err(unrecorded());
    };
    Ok(risk(request_id, RiskCommand::DecideClaim { id, approved: request.approve, decided_on, note }))
}

pub fn record_payment(request: &pb::RecordPaymentRequest) -> Result<Command, LedgerError> {
    let mut f = Fields::default();
    let request_id = f.check("requestId", uuid(&request.request_id));
    let id = f.check("id", uuid(&request.id));
    let paid_on = f.check("paidOn", parse_date(&request.paid_on));
    let amount = f.check("amount", Money::parse_positive(&request.amount));
    f.finish()?;
    let (Some(request_id), Some(id), Some(paid_on), Some(amount)) = (request_id, id, paid_on, amount) else {
        return Err(unrecorded());
    };
    Ok(risk(request_id, RiskCommand::PayClaim { id, paid_on, amount }))
}

pub fn claim_to_pb(c: &Claim) -> pb::Claim {
    let (b, m) = (&c.basis, &c.compensation);
    let decision = c.decision.as_ref();
    pb::Claim {
        id: c.id.to_string(),
        programme_id: c.programme_id.to_string(),
        pledge_id: c.pledge_id.to_string(),
        bank: b.bank.to_string(),
        filed_on: b.filed_on.to_string(),
        loan_amount: b.loan_amount.to_string(),
        loss: b.loss.to_string(),
        committed_before: b.committed_this_year.to_string(),
        bank_losses_before: b.bank_losses_this_year.to_string(),
        bank_lending: b.bank_lending_this_year.to_string(),
        fund_share_percent: percent_to_string(m.fund_share),
        fund_amount: m.fund.to_string(),
        insurer_amount: m.insurer.to_string(),
        guarantor_amount: m.guarantor.to_string(),
        bank_amount: m.bank.to_string(),
        capped_by_budget: m.capped_by_budget,
        status: match c.status {
            ClaimStatus::Filed => pb::ClaimStatus::Filed,
            ClaimStatus::Approved => pb::ClaimStatus::Approved,
            ClaimStatus::Rejected => pb::ClaimStatus::Rejected,
        } as i32,
        decided_on: decision.map(|d| d.decided_on.to_string()).unwrap_or_default(),
        decision_note: decision.map(|d| d.note.to_string()).unwrap_or_default(),
        decided_by: decision.map(|d| d.by.to_string()).unwrap_or_default(),
        payments: c
            .payments
            .iter()
            .map(|p| pb::Payment {
                paid_on: p.paid_on.to_string(),
                amount: p.amount.to_string(),
                paid_by: p.by.to_string(),
                record_time: Some(timestamp(p.at)),
            })
            .collect(),
        paid_amount: c.paid().to_string(),
        filed_by: c.filed_by.to_string(),
        create_time: Some(timestamp(c.create_time)),
        update_time: Some(timestamp(c.update_time)),
        version: c.version,
        compensated_elsewhere: b.compensated_elsewhere.to_string(),
        valuer_amount: m.valuer.to_string(),
        capped_by: match m.capped_by {
            None => pb::FundCap::Unspecified,
            Some(FundCap::Loan) => pb::FundCap::LoanCap,
            Some(FundCap::BorrowerYear) => pb::FundCap::BorrowerYearCap,
            Some(FundCap::Budget) => pb::FundCap::Budget,
        } as i32,
        loan_fund_before: b.loan_fund_before.to_string(),
        borrower_fund_before: b.borrower_fund_this_year.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_in_percent() {
        let check = |text: &str, expected: Option<u16>| {
            assert_eq!(percent(text).ok().map(Bp::get), expected, "{text:?}");
        };
        check("40", Some(4000));
        check("12.5", Some(1250));
        check("0.25", Some(25));
        check("100", Some(10_000));
        check("0", Some(0));
        check("100.01", None);
        check("0.125", None);
        check("-1", None);
        check("1e2", None);
        check("", None);
        assert_eq!(percent_to_string(Bp::new(1250).unwrap()), "12.5");
        assert_eq!(percent_to_string(Bp::new(4000).unwrap()), "40");
    }
}

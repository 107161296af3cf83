//! The writer's decisions on the risk side: who may record a right's state, a default, a
//! valuation, a programme or a claim (`authorize`), and what entry a command makes against the
//! current state (`decide`); also how a retried request's answer is rebuilt. What the entries then
//! change in derived state is `risk_projector`'s, one floor down.

use super::command::{Outcome, RiskCommand, load_pledge};
use super::journal::{Entry, Event};
use super::keys;
use super::records::Resource;
use super::risk_projector::{ProgrammeYear, broken, load_claim, load_programme, pledge_risk, resource};
use super::tx::Tx;
use crate::domain::Reason;
use crate::domain::ident::RightNumber;
use crate::domain::money::Money;
use crate::domain::pledge::Pledge;
use crate::domain::principal::{Principal, Role};
use crate::domain::programme::{Claim, ClaimBasis, ClaimRules, ClaimStatus, Decision, Payment, Programme};
use crate::domain::region::Region;
use crate::domain::right::{RightRecord, Withdrawal};
use crate::domain::risk::{PledgeDefault, Valuation};
use crate::domain::{LedgerError, Micros};
use chrono::Datelike;
use uuid::Uuid;

/// Programmes one region runs at most: budget-left reads list them.
pub const PROGRAMMES_PER_REGION_MAX: usize = 100;
/// Claims one pledge has at most (one per programme it may fall under).
pub const CLAIMS_PER_PLEDGE_MAX: usize = 10;
fn denied(actor: &Principal, what: String) -> LedgerError {
    LedgerError::PermissionDenied(format!("{} may not {what}", actor.name))
}

/// Scope checks that need state: a pledge's bank records its default, valuations and claims; an
/// office of the programme's region decides and pays its claims. As for changes (AIP-211), a
/// caller outside the scope learns nothing of the resource's existence.
pub fn authorize(tx: &Tx<'_>, actor: &Principal, command: &RiskCommand, rules: u32) -> Result<(), LedgerError> {
    let pledge_of_bank = |id: Uuid| match tx.get::<Pledge>(&keys::pledge(id))? {
        Some(pledge) => actor.may_amend(&pledge),
        None if actor.is_admin() => Ok(()),
        None => Err(denied(actor, format!("record risk of pledge {id}"))),
    };
    match command {
        // Before rules 1 every office recorded any right.
        RiskCommand::RecordRight { .. } if rules == 0 => actor.may_record_right(),
        RiskCommand::RecordRight { number, state } => may_record_right(tx, actor, number, &state.holder),
        RiskCommand::WithdrawRightState { number, recorded_at, .. } => {
            may_withdraw_right_state(tx, actor, number, *recorded_at)
        }
        RiskCommand::RecordDefault { id, .. }
        | RiskCommand::ResolveDefault { id, .. }
        | RiskCommand::RecordValuation { id, .. } => pledge_of_bank(*id),
        RiskCommand::FileClaim { pledge_id, .. } => pledge_of_bank(*pledge_id),
        RiskCommand::CreateProgramme { programme } => actor.may_run_programme(programme.region),
        RiskCommand::DecideClaim { id, .. } | RiskCommand::PayClaim { id, .. } => {
            let claim = tx.get::<Claim>(&keys::claim(*id))?;
            match claim.map(|c| load_programme(tx, c.programme_id)).transpose()? {
                Some(programme) => actor.may_run_programme(programme.content.region),
                None if actor.is_admin() => Ok(()),
                None => Err(denied(actor, format!("decide claim {id}"))),
            }
        }
    }
}

/// Who may say what about a right. CNIPA keeps the patent and trademark registers nationally and
/// local offices act for their region: the admin always; an office when an active pledge of the
/// right is in a county inside its region, or when the holder the ledger knows was registered
/// inside its region (a credit code's characters 3-8 name the registering authority's division).
/// The holder the ledger knows is the record's, else the active pledge's pledgor, else the one
/// this state names: naming a holder of one's own region gives no standing over a right the
/// ledger already knows another holder of. Banks never: a bank's word is not the register. The
/// refusal names no pledge: the caller may not read one outside its region.
fn may_record_right(
    tx: &Tx<'_>,
    actor: &Principal,
    number: &RightNumber,
    named: &crate::domain::pledge::Party,
) -> Result<(), LedgerError> {
    let region = match &actor.role {
        Role::Office(region) => *region,
        Role::Admin | Role::Bank(_) => return actor.may_record_right(),
    };
    let pledge = super::records::active_holder(tx, number)?.map(|id| load_pledge(tx, id)).transpose()?;
    if pledge.as_ref().is_some_and(|p| region.contains(p.content.county.region())) {
        return Ok(());
    }
    let record = tx.get::<RightRecord>(&keys::right_record(number))?;
    let holder = match (record.as_ref().and_then(RightRecord::current), &pledge) {
        (Some(current), _) => &current.state.holder,
        (None, Some(pledge)) => &pledge.content.pledgor,
        (None, None) => named,
    };
    if registered_inside(region, &holder.credit_code) {
        return Ok(());
    }
    Err(denied(
        actor,
        format!(
            "record the state of {number}: neither its holder nor an active pledge of it is inside region {region}"
        ),
    ))
}

/// Whether the authority that registered the entity with this credit code is inside `region`.
fn registered_inside(region: Region, code: &crate::domain::ident::CreditCode) -> bool {
    Region::parse(code.registration_region_code()).is_ok_and(|r| region.contains(r))
}

/// A state recorded in error is withdrawn by its author's authority (an office whose region
/// contains the recording office's, the recording office itself included) or by the admin.
fn may_withdraw_right_state(
    tx: &Tx<'_>,
    actor: &Principal,
    number: &RightNumber,
    recorded_at: Micros,
) -> Result<(), LedgerError> {
    let region = match &actor.role {
        Role::Admin => return Ok(()),
        Role::Bank(_) => return actor.may_record_right(),
        Role::Office(region) => *region,
    };
    let record = tx.get::<RightRecord>(&keys::right_record(number))?;
    // Records are public: a state that is not there is the decider's RIGHT_STATE_NOT_FOUND.
    let Some(recorded) = record.as_ref().and_then(|r| r.recorded_at(recorded_at)) else { return Ok(()) };
    let author = tx.get::<super::principals::PrincipalRecord>(&keys::principal(&recorded.by))?;
    match author.map(|a| a.principal.role) {
        Some(Role::Office(by)) if region.contains(by) => Ok(()),
        _ => Err(denied(actor, format!("withdraw a state of {number} that {} recorded", recorded.by))),
    }
}

/// Checks the rules that need state and builds the event and the response; writes nothing.
/// `(now, rules)`: the entry's time and the version of the rules it is decided under.
// Longer than ~70 lines: one arm per risk command, each a short rule; claims call out to
// `file_claim`.
pub fn decide(
    tx: &mut Tx<'_>,
    actor: &Principal,
    command: &RiskCommand,
    (now, rules): (Micros, u32),
) -> Result<(Event, Outcome), LedgerError> {
    let by = actor.name.clone();
    Ok(match command {
        RiskCommand::RecordRight { number, state } => {
            let before = tx.get::<RightRecord>(&keys::right_record(number))?;
            // Before rules 1 a state could be dated ahead.
            let today = if rules == 0 { chrono::NaiveDate::MAX } else { crate::domain::pledge::china_date(now) };
            let after = RightRecord::record(before.as_ref(), number, state.clone(), (by, now, today))?;
            (Event::RightRecorded { number: number.clone(), state: state.clone() }, Outcome::Right(after))
        }
        RiskCommand::WithdrawRightState { number, recorded_at, note } => {
            let record = tx.get::<RightRecord>(&keys::right_record(number))?.ok_or_else(|| {
                LedgerError::refused(Reason::RIGHT_STATE_NOT_FOUND, format!("{number} has no record"))
                    .with("right", number)
            })?;
            let after = record.withdraw(*recorded_at, Withdrawal { by, at: now, note: note.clone() })?;
            let event =
                Event::RightStateWithdrawn { number: number.clone(), recorded_at: *recorded_at, note: note.clone() };
            (event, Outcome::Right(after))
        }
        RiskCommand::RecordDefault { id, default } => {
            let pledge = load_pledge(tx, *id)?;
            let risk = pledge_risk(tx, *id)?;
            let recorded = PledgeDefault::record(&pledge, risk.default.as_ref(), default.clone(), by, now)?;
            (Event::DefaultRecorded { id: *id, default: recorded.content.clone() }, Outcome::Default(recorded))
        }
        RiskCommand::ResolveDefault { id, resolution } => {
            let risk = pledge_risk(tx, *id)?;
            let default = risk.default.ok_or_else(|| {
                LedgerError::refused(Reason::PLEDGE_NOT_DEFAULTED, format!("pledge {id} has no default recorded"))
                    .with("pledgeId", id)
            })?;
            let resolved = default.resolve(resolution.clone(), by, now)?;
            (Event::DefaultResolved { id: *id, resolution: resolution.clone() }, Outcome::Default(resolved))
        }
        RiskCommand::RecordValuation { id, valuation } => {
            let pledge = load_pledge(tx, *id)?;
            let risk = pledge_risk(tx, *id)?;
            let v = Valuation::record(Uuid::now_v7(), &pledge, risk.valuations.len(), valuation.clone(), by, now)?;
            (Event::ValuationRecorded { valuation: v.clone() }, Outcome::Valuation(v))
        }
        RiskCommand::CreateProgramme { programme } => {
            let count = tx.get::<u64>(&keys::programme_count(programme.region))?.unwrap_or(0);
            if count >= PROGRAMMES_PER_REGION_MAX as u64 {
                return Err(LedgerError::refused(
                    Reason::PROGRAMMES_LIMIT_REACHED,
                    format!("a region runs at most {PROGRAMMES_PER_REGION_MAX} programmes"),
                )
                .with("regionCode", programme.region));
            }
            let p = Programme { id: Uuid::now_v7(), content: programme.clone(), created_by: by, create_time: now };
            (Event::ProgrammeCreated { programme: p.clone() }, Outcome::Programme(p))
        }
        RiskCommand::FileClaim { programme_id, pledge_id, filed_on } => {
            let claim = file_claim(tx, (*programme_id, *pledge_id, *filed_on), actor, (now, claim_rules(rules)))?;
            (Event::ClaimFiled { claim: claim.clone() }, Outcome::Claim(claim))
        }
        RiskCommand::DecideClaim { id, approved, decided_on, note } => {
            let claim = load_claim(tx, *id)?;
            let decision = Decision { decided_on: *decided_on, by, at: now, note: note.clone() };
            let after = if *approved {
                claim.approve(decision.clone(), loss_now(tx, &claim, rules)?)?
            } else {
                claim.reject(decision.clone())?
            };
            (Event::ClaimDecided { id: *id, approved: *approved, decision }, Outcome::Claim(after))
        }
        RiskCommand::PayClaim { id, paid_on, amount } => {
            let claim = load_claim(tx, *id)?;
            let payment = Payment { paid_on: *paid_on, amount: *amount, by, at: now };
            let after = claim.pay(payment.clone(), loss_now(tx, &claim, rules)?)?;
            (Event::ClaimPaid { id: *id, payment }, Outcome::Claim(after))
        }
    })
}

/// The loss of the default a claim was filed on, as it is now: approvals and payments are checked
/// against it, so a restore that re-decides them checks the same. Before rules 1 they were not:
/// the claim's own loss stands in.
fn loss_now(tx: &Tx<'_>, claim: &Claim, rules: u32) -> Result<Option<Money>, LedgerError> {
    if claim_rules(rules) == ClaimRules::Original {
        return Ok(Some(claim.basis.loss));
    }
    Ok(pledge_risk(tx, claim.pledge_id)?.default.and_then(|d| d.loss()))
}

/// The claim rules of the ledger's rules version `rules` (`journal::RULES`).
fn claim_rules(rules: u32) -> ClaimRules {
    if rules == 0 { ClaimRules::Original } else { ClaimRules::Current }
}

/// A claim for a defaulted pledge under a programme, with the compensation its rules give. The
/// loan is the pledge as it defaulted, and the pledge's other claims not rejected count against
/// this one (`ClaimBasis::compensated_elsewhere`).
// Longer than ~70 lines: a claim's basis gathered from the pledge, its default, the programme and
// the bank's year, then the programme's rule: one sequence of reads.
fn file_claim(
    tx: &Tx<'_>,
    (programme_id, pledge_id, filed_on): (Uuid, Uuid, chrono::NaiveDate),
    actor: &Principal,
    (now, rules): (Micros, ClaimRules),
) -> Result<Claim, LedgerError> {
    let programme = load_programme(tx, programme_id)?;
    let pledge = load_pledge(tx, pledge_id)?;
    let risk = pledge_risk(tx, pledge_id)?;
    let refused = |reason, message: String| LedgerError::refused(reason, message).with("pledgeId", pledge_id);
    let default = risk
        .default
        .as_ref()
        .ok_or_else(|| refused(Reason::PLEDGE_NOT_DEFAULTED, format!("pledge {pledge_id} has no default recorded")))?;
    let loss = default.loss().ok_or_else(|| {
        refused(
            Reason::LOSS_NOT_DETERMINED,
            "the default's loss is not known yet: record it, or resolve the default".into(),
        )
    })?;
    if loss.is_zero() {
        return Err(refused(
            Reason::NO_LOSS,
            "the default was recovered in full: there is no loss to compensate".into(),
        ));
    }
    if filed_on < default.content.defaulted_on {
        return Err(LedgerError::invalid_field(
            "filedOn",
            format!("must not be before the default on {}", default.content.defaulted_on),
        ));
    }
    let mut compensated_elsewhere = Money::ZERO;
    for id in &risk.claims {
        let existing = load_claim(tx, *id)?;
        if existing.status == ClaimStatus::Rejected {
            continue;
        }
        if existing.programme_id == programme_id {
            return Err(refused(Reason::CLAIM_EXISTS, format!("claim {id} is already filed under this programme"))
                .with("claimId", id));
        }
        if rules == ClaimRules::Original {
            continue;
        }
        compensated_elsewhere = compensated_elsewhere
            .checked_add(existing.compensation.fund)
            .ok_or_else(|| broken(format!("compensation of pledge {pledge_id} out of range")))?;
    }
    if risk.claims.len() >= CLAIMS_PER_PLEDGE_MAX {
        return Err(refused(
            Reason::CLAIMS_LIMIT_REACHED,
            format!("a pledge has at most {CLAIMS_PER_PLEDGE_MAX} claims"),
        ));
    }
    // The loan that defaulted: a change of the pledge after its default does not move the tier.
    let at_default = match rules {
        ClaimRules::Current => pledge
            .as_at(default.create_time)
            .ok_or_else(|| broken(format!("pledge {pledge_id} defaulted before it was registered")))?,
        ClaimRules::Original => pledge.clone(),
    };
    let c = &pledge.content;
    let year = filed_on.year();
    let bank = c.pledgee.credit_code.clone();
    let region = programme.content.region;
    let basis = ClaimBasis {
        county: c.county,
        registered_on: c.registered_on,
        loan_amount: at_default.content.secured_amount,
        loss,
        filed_on,
        committed_this_year: tx
            .get::<ProgrammeYear>(&keys::programme_year(programme_id, year))?
            .unwrap_or_default()
            .committed,
        bank_losses_this_year: tx
            .get::<Money>(&keys::programme_bank_year(programme_id, &bank, year))?
            .unwrap_or(Money::ZERO),
        bank_lending_this_year: super::sums::lending(tx, &keys::lending(&bank, region, year))?,
        bank,
        compensated_elsewhere,
        // CLAIM_EXISTS above: no other claim of this programme on the pledge stands, so the cap
        // per loan bounds this one claim alone.
        loan_fund_before: Money::ZERO,
        borrower_fund_this_year: borrower_fund(tx, &programme, &c.pledgor.credit_code, year, rules)?,
    };
    Claim::file(Uuid::now_v7(), &programme, pledge_id, basis, actor.name.clone(), (now, rules))
}

/// The fund parts of the programme's claims of `year` on the borrower's loans, not rejected: read
/// only for a programme that caps them (under the current rules), so that a claim decided before
/// the caps has the basis it was decided on.
fn borrower_fund(
    tx: &Tx<'_>,
    programme: &Programme,
    borrower: &crate::domain::ident::CreditCode,
    year: i32,
    rules: ClaimRules,
) -> Result<Money, LedgerError> {
    if programme.content.cap_per_borrower_per_year.is_none() || rules == ClaimRules::Original {
        return Ok(Money::ZERO);
    }
    Ok(tx.get::<Money>(&keys::programme_borrower_year(programme.id, borrower, year))?.unwrap_or(Money::ZERO))
}

/// The response a committed risk request got: its resource right after its entry.
pub fn replayed_outcome(tx: &Tx<'_>, resource: &Resource, at: Micros) -> Result<Outcome, LedgerError> {
    let missing = |what: &str| LedgerError::Internal(format!("request record names missing {what}"));
    Ok(match resource {
        Resource::Pledge(_) | Resource::CreditLine(_) => unreachable!("answered by decider::replayed_outcome"),
        Resource::Right(number) => {
            let record = tx.get::<RightRecord>(&keys::right_record(number))?.ok_or_else(|| missing("right"))?;
            Outcome::Right(record.as_at(at).ok_or_else(|| missing("right state"))?)
        }
        Resource::Default(id) => {
            let default = pledge_risk(tx, *id)?.default.ok_or_else(|| missing("default"))?;
            Outcome::Default(default.as_at(at).ok_or_else(|| missing("default version"))?)
        }
        Resource::Valuation { pledge, id } => {
            let risk = pledge_risk(tx, *pledge)?;
            Outcome::Valuation(risk.valuations.into_iter().find(|v| v.id == *id).ok_or_else(|| missing("valuation"))?)
        }
        Resource::Programme(id) => Outcome::Programme(load_programme(tx, *id)?),
        Resource::Claim(id) => Outcome::Claim(load_claim(tx, *id)?.as_at(at).ok_or_else(|| missing("claim version"))?),
    })
}

/// The request a restored risk entry answered (`decider::validate` decides it again).
pub fn command_of(event: &Event) -> Result<RiskCommand, LedgerError> {
    Ok(match event {
        Event::RightRecorded { number, state } => {
            RiskCommand::RecordRight { number: number.clone(), state: state.clone() }
        }
        Event::DefaultRecorded { id, default } => RiskCommand::RecordDefault { id: *id, default: default.clone() },
        Event::DefaultResolved { id, resolution } => {
            RiskCommand::ResolveDefault { id: *id, resolution: resolution.clone() }
        }
        Event::ValuationRecorded { valuation } => {
            RiskCommand::RecordValuation { id: valuation.pledge_id, valuation: valuation.content.clone() }
        }
        Event::ProgrammeCreated { programme } => RiskCommand::CreateProgramme { programme: programme.content.clone() },
        Event::ClaimFiled { claim } => RiskCommand::FileClaim {
            programme_id: claim.programme_id,
            pledge_id: claim.pledge_id,
            filed_on: claim.basis.filed_on,
        },
        Event::ClaimDecided { id, approved, decision } => RiskCommand::DecideClaim {
            id: *id,
            approved: *approved,
            decided_on: decision.decided_on,
            note: decision.note.clone(),
        },
        Event::ClaimPaid { id, payment } => {
            RiskCommand::PayClaim { id: *id, paid_on: payment.paid_on, amount: payment.amount }
        }
        Event::RightStateWithdrawn { number, recorded_at, note } => {
            RiskCommand::WithdrawRightState { number: number.clone(), recorded_at: *recorded_at, note: note.clone() }
        }
        other => return Err(broken(format!("{} is not a risk entry", other.name()))),
    })
}

/// Whether the writer chose an id in this entry (valuations, programmes, claims).
pub fn assigns_id(event: &Event) -> bool {
    matches!(event, Event::ValuationRecorded { .. } | Event::ProgrammeCreated { .. } | Event::ClaimFiled { .. })
}

/// Whether a re-decided entry equals the recorded one but for the ids the writer chose, and the
/// recorded id is not taken.
pub fn same_but_ids(tx: &Tx<'_>, decided: &Event, recorded: &Event) -> Result<bool, LedgerError> {
    Ok(match (decided, recorded) {
        (Event::ValuationRecorded { valuation: d }, Event::ValuationRecorded { valuation: r }) => {
            d.content == r.content
                && d.pledge_id == r.pledge_id
                && !pledge_risk(tx, r.pledge_id)?.valuations.iter().any(|v| v.id == r.id)
        }
        (Event::ProgrammeCreated { programme: d }, Event::ProgrammeCreated { programme: r }) => {
            d.content == r.content && tx.get::<Programme>(&keys::programme(r.id))?.is_none()
        }
        (Event::ClaimFiled { claim: d }, Event::ClaimFiled { claim: r }) => {
            Claim { id: r.id, ..d.clone() } == *r && tx.get::<Claim>(&keys::claim(r.id))?.is_none()
        }
        _ => false,
    })
}

/// The risk resource an entry wrote, as it was right after it (the change feed shows it).
pub fn outcome_after(store: &dyn crate::store::Store, entry: &Entry) -> Result<Option<Outcome>, LedgerError> {
    let Some(resource) = resource(&entry.event) else { return Ok(None) };
    replayed_outcome(&Tx::new(store), &resource, entry.at).map(Some)
}

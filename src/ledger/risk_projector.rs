//! What the projector derives from the risk side's entries (rights' states, defaults, valuations,
//! programmes and claims): the records, and the risk columns of the exposure rows and as-of sums,
//! which move with the entry that moves them so that reading them never scans. The decisions that
//! make those entries are `risk_decider`'s, one floor up.
//!
//! A pledge's risk columns are a function of the pledge and its `PledgeRisk` (`contribution`);
//! every event that touches either adds the difference of that function before and after to each
//! row the pledge counts in. Claims' compensation is a flow: it stays in the rows when the pledge
//! is released.

use super::journal::{Entry, Event};
use super::keys;
use super::records::Resource;
use super::records::load_pledge;
use super::sums::{AsOfDelta, add_asof_delta, add_dated};
use super::tx::Tx;
use crate::domain::LedgerError;
use crate::domain::asof;
use crate::domain::asof_risk::{self, RiskInputs};
use crate::domain::exposure::{self, RowDelta};
use crate::domain::ident::RightNumber;
use crate::domain::money::Money;
use crate::domain::pledge::{Pledge, ReleaseReason};
use crate::domain::programme::{Claim, ClaimStatus, Programme};
use crate::domain::region::Region;
use crate::domain::right::{Recorded, RightRecord, RiskFlag, Withdrawal};
use crate::domain::risk::{self, PledgeDefault, Valuation};
use crate::domain::statistics::{RiskFact, RiskFlow};
use chrono::Datelike;
use uuid::Uuid;

/// Programmes one budget read adds up at most (the country's: every region's).
pub const PROGRAMMES_SCANNED_MAX: usize = 20_000;
/// Pledges one right is ever part of, released ones included: a recording of the right's state
/// recomputes the as-of risk columns of each, so this bounds the work of one write. A right is
/// pledged for loans of one to three years over a term of at most 20: a few dozen pledges in its
/// life is already far more than practice; a registration beyond it is refused.
pub const PLEDGES_PER_RIGHT_MAX: usize = 64;

/// A pledge's risk record.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PledgeRisk {
    /// The pledge's rights whose records say they lost force or are frozen, while it is active.
    pub flags: Vec<(RightNumber, RiskFlag)>,
    pub default: Option<PledgeDefault>,
    pub valuations: Vec<Valuation>,
    pub claims: Vec<Uuid>,
}

/// A programme's figures for one year.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProgrammeYear {
    /// Fund amounts of the year's claims not rejected: what counts against the budget.
    pub committed: Money,
    pub paid: Money,
}

pub fn pledge_risk(tx: &Tx<'_>, id: Uuid) -> Result<PledgeRisk, LedgerError> {
    Ok(tx.get(&keys::pledge_risk(id))?.unwrap_or_default())
}

/// What one pledge adds to the risk columns of each row it counts in. Stocks (at risk, defaulted,
/// appraised) count active pledges only, as the secured amount does.
pub fn contribution(pledge: &Pledge, risk: &PledgeRisk) -> RowDelta {
    if !pledge.is_active() {
        return RowDelta::default();
    }
    let secured = pledge.content.secured_amount.fen();
    let at_risk = !risk.flags.is_empty();
    let open_default = risk.default.as_ref().filter(|d| d.is_open());
    let latest = risk::latest(&risk.valuations);
    RowDelta {
        at_risk_fen: if at_risk { secured } else { 0 },
        at_risk_pledges: i64::from(at_risk),
        defaulted_fen: open_default.map_or(0, |d| d.content.outstanding_principal.fen()),
        defaulted_pledges: i64::from(open_default.is_some()),
        appraised_fen: latest.map_or(0, |v| v.content.value.fen()),
        appraised_secured_fen: if latest.is_some() { secured } else { 0 },
        ..RowDelta::default()
    }
}

/// Adds `delta` to every row `pledge` counts in.
pub fn add_to_rows(tx: &mut Tx<'_>, pledge: &Pledge, delta: &RowDelta) -> Result<(), LedgerError> {
    if delta.is_zero() {
        return Ok(());
    }
    for share in exposure::pledge_shares(pledge) {
        super::sums::update_row(tx, &share.bucket, delta)?;
    }
    Ok(())
}

/// Moves the rows from the pledge's contribution before to after, and stores its risk record.
fn move_pledge(
    tx: &mut Tx<'_>,
    before: (&Pledge, &PledgeRisk),
    after: (&Pledge, &PledgeRisk),
) -> Result<(), LedgerError> {
    let delta = contribution(after.0, after.1).minus(&contribution(before.0, before.1));
    add_to_rows(tx, after.0, &delta)?;
    tx.put(keys::pledge_risk(after.0.id), after.1);
    Ok(())
}

/// The pledge's contribution moves with a change of its amount or its release; the projector
/// calls this for those entries with the pledge before and after.
pub fn pledge_moved(tx: &mut Tx<'_>, before: &Pledge, after: &Pledge) -> Result<(), LedgerError> {
    add_lending(tx, after, lent(after).fen() - lent(before).fen())?;
    let Some(risk) = tx.get::<PledgeRisk>(&keys::pledge_risk(after.id))? else { return Ok(()) };
    let mut kept = risk.clone();
    if !after.is_active() {
        // A released pledge's collateral is no longer the ledger's concern: its flags go.
        kept.flags.clear();
    }
    move_pledge(tx, (before, &risk), (after, &kept))
}

/// A new registration adds to its bank's lending of the year in each of its regions (stop lines),
/// and is at risk at once when a right's record says it lost force or is frozen since (a
/// historical import is judged by its registration day, so a later status flags it).
pub fn pledge_registered(tx: &mut Tx<'_>, pledge: &Pledge) -> Result<(), LedgerError> {
    let mut flags = Vec::new();
    for right in &pledge.content.rights {
        // Judged at registration by the state on its date; flagged by the state in force now.
        if let Some(record) = tx.get::<RightRecord>(&keys::right_record(&right.number))?
            && let Some(flag) = record.flag_for(&pledge.content)
        {
            flags.push((right.number.clone(), flag));
        }
    }
    if !flags.is_empty() {
        let after = PledgeRisk { flags, ..PledgeRisk::default() };
        move_pledge(tx, (pledge, &PledgeRisk::default()), (pledge, &after))?;
    }
    add_lending(tx, pledge, lent(pledge).fen())
}

/// A release or a lowered amount this soon after the registration says that no loan (or not that
/// much) ran under the pledge (a quarter: IP-pledge loans run a year or more).
pub const LENDING_MIN_DAYS: i64 = 90;

/// What a pledge counts in its bank's lending of its registration year in each region it lies in,
/// the measure of a programme's stop line: its lowest secured amount in its first
/// `LENDING_MIN_DAYS` (by the changes' effective dates: registering high and lowering at once
/// lends nothing more; a repayment later was lent), and nothing when its release says no loan ran:
/// the contract void, or released within `LENDING_MIN_DAYS` other than by enforcement (which
/// follows a loan that ran into default).
pub fn lent(pledge: &Pledge) -> Money {
    let registered_on = pledge.content.registered_on;
    let early = |on: chrono::NaiveDate| (on - registered_on).num_days() < LENDING_MIN_DAYS;
    if let Some(release) = &pledge.release {
        let at_once = release.reason != ReleaseReason::Enforced && early(release.released_on);
        if release.reason == ReleaseReason::ContractInvalid || at_once {
            return Money::ZERO;
        }
    }
    let lowered = pledge.changes.iter().filter(|c| early(c.effective_on)).map(|c| c.secured_amount.1);
    lowered.fold(pledge.registered_amount(), Money::min)
}

/// Adds `delta_fen` to the lending of `pledge`'s bank in its registration year, in each region its
/// county lies in.
fn add_lending(tx: &mut Tx<'_>, pledge: &Pledge, delta_fen: i128) -> Result<(), LedgerError> {
    if delta_fen == 0 {
        return Ok(());
    }
    let c = &pledge.content;
    let year = c.registered_on.year();
    for region in c.county.region().with_ancestors() {
        // Blind: the sum is read only when a claim checks a stop line (`sums::lending`).
        tx.add(keys::lending(&c.pledgee.credit_code, region, year), super::sums::amount(delta_fen))?;
    }
    Ok(())
}

/// The pledges whose risk columns as of a date `event` may move: the pledge it names, or, for a
/// right's status, every pledge that ever held the right (its status may be dated back into their
/// time in force). A registration counts only when a right of it has a record: without one, and
/// with no risk recorded yet, its columns are zero on every day.
pub fn touched_pledges(tx: &Tx<'_>, event: &Event) -> Result<Vec<Uuid>, LedgerError> {
    Ok(match event {
        Event::PledgeRegistered { pledge } => {
            let mut recorded = false;
            for right in &pledge.content.rights {
                recorded |= tx.get_raw(&keys::right_record(&right.number))?.is_some();
            }
            if recorded { vec![pledge.id] } else { Vec::new() }
        }
        Event::PledgeChanged { id, .. }
        | Event::PledgeReleased { id, .. }
        | Event::DefaultRecorded { id, .. }
        | Event::DefaultResolved { id, .. } => vec![*id],
        Event::ValuationRecorded { valuation } => vec![valuation.pledge_id],
        Event::ClaimFiled { claim } => vec![claim.pledge_id],
        Event::ClaimDecided { id, .. } | Event::ClaimPaid { id, .. } => vec![load_claim(tx, *id)?.pledge_id],
        Event::RightRecorded { number, .. } | Event::RightStateWithdrawn { number, .. } => tx
            .keys_with_prefix(&keys::by_right_prefix(number))?
            .iter()
            .map(|key| keys::trailing_id(key).ok_or_else(|| broken("right index key without id".to_owned())))
            .collect::<Result<_, _>>()?,
        _ => Vec::new(),
    })
}

/// The pledge's risk columns as dated deltas (`asof_risk::points`), from what `tx` holds now;
/// none for a pledge not registered yet.
pub fn asof_points(tx: &Tx<'_>, id: Uuid) -> Result<asof_risk::Points, LedgerError> {
    Ok(asof_inputs(tx, id)?.map(|(_, points)| points).unwrap_or_default())
}

fn asof_inputs(tx: &Tx<'_>, id: Uuid) -> Result<Option<(Pledge, asof_risk::Points)>, LedgerError> {
    let Some(pledge) = tx.get::<Pledge>(&keys::pledge(id))? else { return Ok(None) };
    let risk = pledge_risk(tx, id)?;
    let mut rights = Vec::new();
    for right in &pledge.content.rights {
        rights.extend(tx.get::<RightRecord>(&keys::right_record(&right.number))?);
    }
    let claims = risk.claims.iter().map(|c| load_claim(tx, *c)).collect::<Result<Vec<_>, _>>()?;
    let inputs = RiskInputs {
        pledge: &pledge,
        rights: &rights,
        default: risk.default.as_ref(),
        valuations: &risk.valuations,
        claims: &claims,
    };
    let points = asof_risk::points(&inputs);
    Ok(Some((pledge, points)))
}

/// Adds to the pledge's as-of rows the difference between its risk columns now (after the entry)
/// and `before`.
pub fn move_asof(tx: &mut Tx<'_>, id: Uuid, before: &[(chrono::NaiveDate, RowDelta)]) -> Result<(), LedgerError> {
    let (pledge, after) = asof_inputs(tx, id)?.ok_or_else(|| broken(format!("pledge {id} is missing")))?;
    let moved = asof_risk::diff(before, &after);
    if moved.is_empty() {
        return Ok(());
    }
    for share in exposure::pledge_shares(&pledge) {
        for (day, delta) in &moved {
            add_asof_delta(tx, &share.bucket, asof::day(*day), &AsOfDelta::of(delta))?;
        }
    }
    Ok(())
}

/// Moves a programme's compensation committed as of a date by `fund_fen` from `day` on, within
/// the year `committed_in` whose budget the claim counts against (a claim rejected in a later
/// year stays committed in its filing year, whose dates are all before the rejection).
fn commit_asof(
    tx: &mut Tx<'_>,
    programme: Uuid,
    committed_in: i32,
    day: chrono::NaiveDate,
    fund_fen: i128,
) -> Result<(), LedgerError> {
    if day.year() != committed_in {
        return Ok(());
    }
    let delta = AsOfDelta::of(&RowDelta { claimed_fen: fund_fen, ..RowDelta::default() });
    add_dated(
        tx,
        |year| keys::programme_asof(programme, year),
        |year, month| keys::programme_asof_days(programme, year, month),
        asof::day(day),
        &delta,
    )
}

/// Records a risk event of `pledge` on its business day for statistics, under the pledge's county
/// (`keys::risk_fact`: tag, id, number).
fn put_risk_fact(
    tx: &mut Tx<'_>,
    pledge: &Pledge,
    on: chrono::NaiveDate,
    (tag, id, n): (u8, Uuid, u32),
    flow: RiskFlow,
) {
    let fact = RiskFact { on, pledge: super::records::registration_fact(pledge), flow };
    tx.put(keys::risk_fact(pledge.content.county, on, tag, id, n), &fact);
}

pub(crate) fn broken(what: String) -> LedgerError {
    LedgerError::Internal(what)
}

pub(crate) fn load_programme(tx: &Tx<'_>, id: Uuid) -> Result<Programme, LedgerError> {
    tx.get(&keys::programme(id))?.ok_or(LedgerError::NotFound { resource: "programme", id: id.to_string() })
}

pub(crate) fn load_claim(tx: &Tx<'_>, id: Uuid) -> Result<Claim, LedgerError> {
    tx.get(&keys::claim(id))?.ok_or(LedgerError::NotFound { resource: "claim", id: id.to_string() })
}

/// Writes every record derived from a risk entry.
// Longer than ~70 lines: one arm per risk event, each a few records; the larger ones call out
// (`right_changed`, `claim_filed`).
pub fn apply(tx: &mut Tx<'_>, entry: &Entry) -> Result<(), LedgerError> {
    match &entry.event {
        Event::RightRecorded { number, state } => {
            let mut record = tx
                .get::<RightRecord>(&keys::right_record(number))?
                .unwrap_or_else(|| RightRecord { number: number.clone(), states: Vec::new() });
            record.push(Recorded { state: state.clone(), by: entry.principal.clone(), at: entry.at, withdrawn: None });
            right_changed(tx, record)?;
        }
        Event::RightStateWithdrawn { number, recorded_at, note } => {
            let record = tx
                .get::<RightRecord>(&keys::right_record(number))?
                .ok_or_else(|| broken(format!("a withdrawal of {number}, which has no record")))?;
            let withdrawal = Withdrawal { by: entry.principal.clone(), at: entry.at, note: note.clone() };
            let record = record.withdraw(*recorded_at, withdrawal).map_err(|e| broken(e.to_string()))?;
            right_changed(tx, record)?;
        }
        Event::DefaultRecorded { id, default } => {
            let pledge = load_pledge(tx, *id)?;
            let before = pledge_risk(tx, *id)?;
            let recorded = PledgeDefault {
                pledge_id: *id,
                content: default.clone(),
                recorded_by: entry.principal.clone(),
                create_time: entry.at,
                resolution: None,
            };
            let after = PledgeRisk { default: Some(recorded), ..before.clone() };
            move_pledge(tx, (&pledge, &before), (&pledge, &after))?;
            let flow = RiskFlow::Default(default.outstanding_principal);
            put_risk_fact(tx, &pledge, default.defaulted_on, (b'd', *id, 0), flow);
        }
        Event::DefaultResolved { id, resolution } => {
            let pledge = load_pledge(tx, *id)?;
            let before = pledge_risk(tx, *id)?;
            let default = before.default.as_ref().ok_or_else(|| broken(format!("pledge {id} resolves no default")))?;
            let resolved = default.apply_resolution(resolution.clone(), entry.principal.clone(), entry.at);
            let after = PledgeRisk { default: Some(resolved), ..before.clone() };
            move_pledge(tx, (&pledge, &before), (&pledge, &after))?;
        }
        Event::ValuationRecorded { valuation } => {
            let id = valuation.pledge_id;
            let pledge = load_pledge(tx, id)?;
            let before = pledge_risk(tx, id)?;
            let mut after = before.clone();
            after.valuations.push(valuation.clone());
            move_pledge(tx, (&pledge, &before), (&pledge, &after))?;
        }
        Event::ProgrammeCreated { programme } => {
            tx.put(keys::programme(programme.id), programme);
            tx.put(keys::programme_by_region(programme.content.region, programme.id), &());
            let count = tx.get::<u64>(&keys::programme_count(programme.content.region))?.unwrap_or(0);
            tx.put(keys::programme_count(programme.content.region), &(count + 1));
        }
        Event::ClaimFiled { claim } => claim_filed(tx, claim)?,
        Event::ClaimDecided { id, approved, decision } => {
            let claim = load_claim(tx, *id)?;
            let status = if *approved { ClaimStatus::Approved } else { ClaimStatus::Rejected };
            let after = claim.apply_decision(status, decision.clone());
            if !approved {
                // A rejected claim no longer counts against the budget, the stop line or the rows.
                claim_counts(tx, &claim, -1)?;
                let fund = -claim.compensation.fund.fen();
                commit_asof(tx, claim.programme_id, claim.basis.filed_on.year(), decision.decided_on, fund)?;
                tx.delete(keys::risk_fact(claim.basis.county, claim.basis.filed_on, b'c', claim.id, 0));
            }
            tx.put(keys::claim(*id), &after);
        }
        Event::ClaimPaid { id, payment } => {
            let claim = load_claim(tx, *id)?;
            let after = claim.apply_payment(payment.clone());
            let year = claim.basis.filed_on.year();
            update_year(tx, claim.programme_id, year, |y| {
                y.paid.checked_add(payment.amount).map(|paid| ProgrammeYear { paid, ..y })
            })?;
            let pledge = load_pledge(tx, claim.pledge_id)?;
            add_to_rows(tx, &pledge, &RowDelta { paid_fen: payment.amount.fen(), ..RowDelta::default() })?;
            let n = u32::try_from(claim.payments.len()).map_err(|_| broken(format!("claim {id}'s payments")))?;
            put_risk_fact(tx, &pledge, payment.paid_on, (b'p', *id, n), RiskFlow::Payment(payment.amount));
            tx.put(keys::claim(*id), &after);
        }
        other => return Err(broken(format!("{} is not a risk entry", other.name()))),
    }
    Ok(())
}

/// Stores a right's record as changed, and flags its active pledge by the state in force now.
fn right_changed(tx: &mut Tx<'_>, record: RightRecord) -> Result<(), LedgerError> {
    let number = record.number.clone();
    tx.put(keys::right_record(&number), &record);
    let Some(id) = super::records::active_holder(tx, &number)? else { return Ok(()) };
    let pledge = load_pledge(tx, id)?;
    let before = pledge_risk(tx, id)?;
    let mut after = before.clone();
    after.flags.retain(|(n, _)| *n != number);
    if let Some(flag) = record.flag_for(&pledge.content) {
        after.flags.push((number, flag));
    }
    move_pledge(tx, (&pledge, &before), (&pledge, &after))
}

fn claim_filed(tx: &mut Tx<'_>, claim: &Claim) -> Result<(), LedgerError> {
    tx.put(keys::claim(claim.id), claim);
    tx.put(keys::claim_by_programme(claim.programme_id, claim.id), &());
    tx.put(keys::claim_by_bank(&claim.basis.bank, claim.id), &());
    let mut risk = pledge_risk(tx, claim.pledge_id)?;
    risk.claims.push(claim.id);
    tx.put(keys::pledge_risk(claim.pledge_id), &risk);
    let filed_on = claim.basis.filed_on;
    commit_asof(tx, claim.programme_id, filed_on.year(), filed_on, claim.compensation.fund.fen())?;
    let pledge = load_pledge(tx, claim.pledge_id)?;
    put_risk_fact(tx, &pledge, filed_on, (b'c', claim.id, 0), RiskFlow::Claim(claim.compensation.fund));
    claim_counts(tx, claim, 1)
}

/// Adds (`sign` 1) or removes (-1) a claim from its programme's year, its bank's losses, its
/// borrower's year and the compensation claimed in the rows of its pledge.
fn claim_counts(tx: &mut Tx<'_>, claim: &Claim, sign: i128) -> Result<(), LedgerError> {
    let year = claim.basis.filed_on.year();
    let fund = sign * claim.compensation.fund.fen();
    update_year(tx, claim.programme_id, year, |y| {
        y.committed.checked_apply(fund).map(|committed| ProgrammeYear { committed, ..y })
    })?;
    let key = keys::programme_bank_year(claim.programme_id, &claim.basis.bank, year);
    let losses = tx.get::<Money>(&key)?.unwrap_or(Money::ZERO);
    let losses = losses
        .checked_apply(sign * claim.basis.loss.fen())
        .ok_or_else(|| broken(format!("bank losses of claim {} out of range", claim.id)))?;
    tx.put(key, &losses);
    let pledge = load_pledge(tx, claim.pledge_id)?;
    // The borrower's year, for caps per borrower: one key per programme, borrower and year, moved
    // only by claims (rare). The pledgor never changes, so a rejection finds the filing's key.
    let key = keys::programme_borrower_year(claim.programme_id, &pledge.content.pledgor.credit_code, year);
    let borrower_fund = tx.get::<Money>(&key)?.unwrap_or(Money::ZERO);
    let borrower_fund = borrower_fund
        .checked_apply(fund)
        .ok_or_else(|| broken(format!("borrower's fund parts of claim {} out of range", claim.id)))?;
    if borrower_fund.is_zero() {
        tx.delete(key);
    } else {
        tx.put(key, &borrower_fund);
    }
    add_to_rows(tx, &pledge, &RowDelta { claimed_fen: fund, ..RowDelta::default() })
}

fn update_year(
    tx: &mut Tx<'_>,
    programme: Uuid,
    year: i32,
    change: impl FnOnce(ProgrammeYear) -> Option<ProgrammeYear>,
) -> Result<(), LedgerError> {
    let key = keys::programme_year(programme, year);
    let before = tx.get::<ProgrammeYear>(&key)?.unwrap_or_default();
    let after = change(before).ok_or_else(|| broken(format!("programme {programme}'s year {year} out of range")))?;
    tx.put(key, &after);
    Ok(())
}

/// The resource a risk entry's request id stands for.
pub fn resource(event: &Event) -> Option<Resource> {
    Some(match event {
        Event::RightRecorded { number, .. } | Event::RightStateWithdrawn { number, .. } => {
            Resource::Right(number.clone())
        }
        Event::DefaultRecorded { id, .. } | Event::DefaultResolved { id, .. } => Resource::Default(*id),
        Event::ValuationRecorded { valuation } => Resource::Valuation { pledge: valuation.pledge_id, id: valuation.id },
        Event::ProgrammeCreated { programme } => Resource::Programme(programme.id),
        Event::ClaimFiled { claim } => Resource::Claim(claim.id),
        Event::ClaimDecided { id, .. } | Event::ClaimPaid { id, .. } => Resource::Claim(*id),
        _ => return None,
    })
}

/// The budget a region's programmes have in `year`, and what is left of it now: the sums over the
/// programmes of the region and those inside it, each's commitments of the year as recorded.
pub fn budget_left(store: &dyn crate::store::Store, region: Region, year: i32) -> Result<(Money, Money), LedgerError> {
    budget_left_with(store, region, year, |id| {
        let figures: Option<ProgrammeYear> = Tx::new(store).get(&keys::programme_year(id, year))?;
        Ok(figures.unwrap_or_default().committed.fen())
    })
}

/// The budget of the programmes of `region` and those inside it in `year`, and what is left of it
/// when each programme has committed `committed_fen(id)` (now, or as of a date).
pub fn budget_left_with(
    store: &dyn crate::store::Store,
    region: Region,
    year: i32,
    mut committed_fen: impl FnMut(Uuid) -> Result<i128, LedgerError>,
) -> Result<(Money, Money), LedgerError> {
    let mut budget = Money::ZERO;
    let mut left = Money::ZERO;
    let scan = store
        .scan(&keys::programmes_in(region), None, PROGRAMMES_SCANNED_MAX)
        .map_err(|e| LedgerError::Unavailable(e.to_string()))?;
    let sum = |a: Money, b: Money| a.checked_add(b).ok_or_else(|| broken("budget out of range".to_owned()));
    for (key, _) in scan {
        let id = keys::trailing_id(&key).ok_or_else(|| broken("programme index key without id".to_owned()))?;
        let programme = Tx::new(store)
            .get::<Programme>(&keys::programme(id))?
            .ok_or_else(|| broken(format!("indexed programme {id} is missing")))?;
        budget = sum(budget, programme.budget_in(year))?;
        left = sum(left, programme.budget_left_in(year, committed_fen(id)?))?;
    }
    Ok((budget, left))
}

//! Alerts in derived state: who may set a bank's policy and the entry that sets it, and what the
//! projector keeps of each entry for alerts: the facts of the pledges it touched that can alert
//! (`alert::Watch`, kept only while one can: `Vw` by county, `Vx` by pledgee) and the alerts the
//! entry raised (`Vz`), which the change feed shows with the entry. A registration reads the
//! records of its rights (as the risk projector already did) and writes nothing unless a right
//! ends within `alert::EXPIRY_DAYS_MAX` after the term or is flagged: most registrations add no
//! key. The alerts of a day are a function of the watched facts, the bank's policy and the day
//! (`query::list_alerts`), so the passing of days rewrites nothing; the alerts that come due by the
//! passing of days reach the feed with a `DayOpened` entry the writer appends on their day
//! (`day_to_open`, `open_day`), which derives them from the watched pledges (`Vt`: the last day
//! opened).

use super::command::Outcome;
use super::journal::{Entry, Event};
use super::keys;
use super::records::load_pledge;
use super::risk_projector::{PledgeRisk, load_claim, pledge_risk};
use super::tx::Tx;
use crate::domain::alert::{self, Alert, AlertPolicy, Flagged, PolicyRecord, RightEnd, Watch};
use crate::domain::ident::CreditCode;
use crate::domain::pledge::{Pledge, china_date};
use crate::domain::principal::{Principal, PrincipalName, Role};
use crate::domain::programme::ClaimStatus;
use crate::domain::right::RightRecord;
use crate::domain::{LedgerError, Micros};
use chrono::NaiveDate;

/// A bank sets its own policy; the admin any bank's. Offices set none: the thresholds are a
/// bank's credit policy.
pub fn may_set_policy(actor: &Principal, bank: &CreditCode) -> Result<(), LedgerError> {
    match &actor.role {
        Role::Admin => Ok(()),
        Role::Bank(own) if own == bank => Ok(()),
        _ => Err(LedgerError::PermissionDenied(format!("{} may not set the alert policy of bank {bank}", actor.name))),
    }
}

/// The entry and answer of a policy set by `by` at `now`.
pub fn set_policy(bank: &CreditCode, policy: &AlertPolicy, (by, now): (&PrincipalName, Micros)) -> (Event, Outcome) {
    let record = PolicyRecord { bank: bank.clone(), policy: *policy, set: Some((by.clone(), now)) };
    (Event::AlertPolicySet { bank: bank.clone(), policy: *policy }, Outcome::AlertPolicy(record))
}

/// The name the writer opens business days under (reserved: no caller holds it).
pub const SYSTEM: &str = "system";

/// Watched pledges one day's opening examines at most: the family holds only pledges with a fact
/// that can alert, a small part of the book; beyond this the day's scan is refused (logged by the
/// writer) rather than hold the writer for long.
pub const WATCHES_SCANNED_MAX: usize = 1_000_000;

/// Only the writer opens a day, under `SYSTEM`.
pub fn may_open_day(actor: &Principal) -> Result<(), LedgerError> {
    if actor.name.as_str() == SYSTEM {
        Ok(())
    } else {
        Err(LedgerError::PermissionDenied(format!("{} may not open a business day", actor.name)))
    }
}

/// The entry that opens `day`: the entry's own day (China time), after the last one opened.
pub fn open_day(tx: &Tx<'_>, day: NaiveDate, now: Micros) -> Result<(Event, Outcome), LedgerError> {
    if day != china_date(now) {
        return Err(LedgerError::invalid_field("day", format!("{day} is not the entry's day, {}", china_date(now))));
    }
    if tx.get::<NaiveDate>(keys::DAY_OPENED)?.is_some_and(|last| last >= day) {
        return Err(LedgerError::invalid_field("day", format!("{day} is opened already")));
    }
    Ok((Event::DayOpened { day }, Outcome::DayOpened(day)))
}

/// The day the writer should open before its next write at `now`: today (China time) when an
/// alert came due by the passing of days since the last day opened; `None` otherwise (nothing
/// to carry: no entry, and the writer checks again the next day).
pub fn day_to_open(tx: &Tx<'_>, now: Micros) -> Result<Option<NaiveDate>, LedgerError> {
    let today = china_date(now);
    let last = tx.get::<NaiveDate>(keys::DAY_OPENED)?;
    if last.is_some_and(|l| l >= today) {
        return Ok(None);
    }
    Ok((!came_due(tx, last, today)?.is_empty()).then_some(today))
}

/// The alerts that came due in `(after, day]` by the passing of days, over every watched pledge.
fn came_due(tx: &Tx<'_>, after: Option<NaiveDate>, day: NaiveDate) -> Result<Vec<Alert>, LedgerError> {
    let keys = tx.keys_with_prefix(&keys::watches_in(crate::domain::region::Region::COUNTRY))?;
    if keys.len() > WATCHES_SCANNED_MAX {
        return Err(LedgerError::Internal(format!(
            "{} watched pledges: more than a day's opening examines ({WATCHES_SCANNED_MAX})",
            keys.len()
        )));
    }
    let mut policies = std::collections::HashMap::<CreditCode, AlertPolicy>::new();
    let mut due = Vec::new();
    for key in keys {
        let Some(watch) = tx.get::<Watch>(&key)? else { continue };
        if watch.defaulted_on.is_none() && watch.claims.is_empty() {
            continue;
        }
        let policy = match policies.get(&watch.pledgee) {
            Some(p) => *p,
            None => *policies.entry(watch.pledgee.clone()).or_insert(policy_of(tx, &watch.pledgee)?.policy),
        };
        due.extend(watch.came_due(&policy, after, day));
    }
    Ok(due)
}

/// A bank's policy as it stands: the defaults when it set none.
pub fn policy_of(tx: &Tx<'_>, bank: &CreditCode) -> Result<PolicyRecord, LedgerError> {
    Ok(tx.get(&keys::alert_policy(bank))?.unwrap_or_else(|| PolicyRecord {
        bank: bank.clone(),
        policy: AlertPolicy::default(),
        set: None,
    }))
}

/// Writes what `entry` changes of alerts: a policy, the watched facts of the pledges it touched,
/// and the alerts it raised on its day (China time).
pub fn apply_entry(tx: &mut Tx<'_>, entry: &Entry) -> Result<(), LedgerError> {
    let day = china_date(entry.at);
    let pledges = match &entry.event {
        Event::AlertPolicySet { bank, policy } => {
            let record =
                PolicyRecord { bank: bank.clone(), policy: *policy, set: Some((entry.principal.clone(), entry.at)) };
            tx.put(keys::alert_policy(bank), &record);
            return Ok(());
        }
        Event::DayOpened { day } => {
            let after = tx.get::<NaiveDate>(keys::DAY_OPENED)?;
            tx.put(keys::DAY_OPENED.to_vec(), day);
            let due = came_due(tx, after, *day)?;
            return put_raised(tx, entry.sequence, due);
        }
        Event::PledgeRegistered { pledge } => {
            // No watch before its registration: nothing to read.
            let raised = watch_pledge(tx, pledge, (None, true), day)?;
            return put_raised(tx, entry.sequence, raised);
        }
        Event::ClaimDecided { id, .. } | Event::ClaimPaid { id, .. } => vec![load_claim(tx, *id)?.pledge_id],
        Event::RightRecorded { number, .. } | Event::RightStateWithdrawn { number, .. } => {
            super::records::active_holder(tx, number)?.into_iter().collect()
        }
        other => other.pledge_id().into_iter().collect(),
    };
    let mut raised = Vec::new();
    for id in pledges {
        let pledge = load_pledge(tx, id)?;
        let before = tx.get::<Watch>(&keys::watch(pledge.content.county, id))?;
        raised.extend(watch_pledge(tx, &pledge, (before, false), day)?);
    }
    put_raised(tx, entry.sequence, raised)
}

fn put_raised(tx: &mut Tx<'_>, sequence: u64, raised: Vec<Alert>) -> Result<(), LedgerError> {
    if !raised.is_empty() {
        tx.put(keys::alerts_raised(sequence), &raised);
    }
    Ok(())
}

/// Stores the pledge's watch as it now is (or removes it), and answers the alerts that arose.
/// `registering`: the entry registers it (no risk record read: its flags come from its rights'
/// records, read here anyway).
fn watch_pledge(
    tx: &mut Tx<'_>,
    pledge: &Pledge,
    (before, registering): (Option<Watch>, bool),
    day: NaiveDate,
) -> Result<Vec<Alert>, LedgerError> {
    let after = watch_of(tx, pledge, (before.as_ref(), registering), day)?.filter(Watch::is_watched);
    let (county, pledgee, id) = (pledge.content.county, &pledge.content.pledgee.credit_code, pledge.id);
    match &after {
        Some(w) if before.as_ref() != Some(w) => {
            tx.put(keys::watch(county, id), w);
            tx.put(keys::watch_by_pledgee(pledgee, id), w);
        }
        None if before.is_some() => {
            tx.delete(keys::watch(county, id));
            tx.delete(keys::watch_by_pledgee(pledgee, id));
        }
        _ => {}
    }
    let Some(after) = after else { return Ok(Vec::new()) };
    let policy = policy_of(tx, pledgee)?.policy;
    Ok(alert::raised(before.as_ref(), &after, &policy, day))
}

/// The facts of an active pledge that can alert; `before`'s days are kept for facts that did not
/// move, so an alert's day is the day its fact arose.
fn watch_of(
    tx: &Tx<'_>,
    pledge: &Pledge,
    (before, registering): (Option<&Watch>, bool),
    day: NaiveDate,
) -> Result<Option<Watch>, LedgerError> {
    if !pledge.is_active() {
        return Ok(None);
    }
    let c = &pledge.content;
    let mut end: Option<RightEnd> = None;
    let mut flags_now = Vec::new();
    for right in &c.rights {
        let record = tx.get::<RightRecord>(&keys::right_record(&right.number))?;
        let recorded_end = record.as_ref().and_then(|r| r.current()).and_then(|s| s.state.expires_on);
        if registering && let Some(flag) = record.as_ref().and_then(|r| r.flag_for(c)) {
            // A registration: flagged by the state in force now, as `risk_projector` flags it.
            flags_now.push((right.number.clone(), flag));
        }
        let ends = [right.expiry.last_day(), recorded_end].into_iter().flatten().min();
        if let Some(ends_on) = ends
            && end.as_ref().is_none_or(|e| ends_on < e.ends_on)
        {
            end = Some(RightEnd { number: right.number.clone(), ends_on });
        }
    }
    let risk = if registering {
        PledgeRisk { flags: flags_now, ..PledgeRisk::default() }
    } else {
        pledge_risk(tx, pledge.id)?
    };
    let watched_until = c.debt_term_end.checked_add_days(chrono::Days::new(u64::from(alert::EXPIRY_DAYS_MAX)));
    let right_end = end.filter(|e| watched_until.is_none_or(|u| e.ends_on <= u)).map(|e| {
        let kept = before
            .and_then(|b| b.right_end.as_ref().filter(|(old, _)| *old == e && b.debt_term_end == c.debt_term_end))
            .map(|(_, since)| *since);
        (e, kept.unwrap_or(day))
    });
    let valuation = crate::domain::risk::latest(&risk.valuations).map(|v| {
        let value = v.content.value;
        let kept = before
            .and_then(|b| b.valuation.filter(|(old, _)| *old == value && b.secured == c.secured_amount))
            .map(|(_, since)| since);
        (value, kept.unwrap_or(day))
    });
    let flags = risk
        .flags
        .iter()
        .take(alert::ITEMS_PER_WATCH_MAX)
        .map(|(number, flag)| {
            let reason = flag.name().to_owned();
            let kept = before
                .and_then(|b| b.flags.iter().find(|f| f.number == *number && f.reason == reason))
                .map(|f| f.since);
            Flagged { number: number.clone(), reason, since: kept.unwrap_or(day) }
        })
        .collect();
    let mut claims = Vec::new();
    for id in risk.claims.iter().take(alert::ITEMS_PER_WATCH_MAX) {
        let claim = load_claim(tx, *id)?;
        if claim.status == ClaimStatus::Filed {
            claims.push((claim.id, claim.basis.filed_on, china_date(claim.create_time)));
        }
    }
    Ok(Some(Watch {
        pledge_id: pledge.id,
        pledgee: c.pledgee.credit_code.clone(),
        county: c.county,
        debt_term_end: c.debt_term_end,
        secured: c.secured_amount,
        right_end,
        valuation,
        flags,
        defaulted_on: risk
            .default
            .as_ref()
            .filter(|d| d.is_open())
            .map(|d| (d.content.defaulted_on, china_date(d.create_time))),
        claims,
    }))
}

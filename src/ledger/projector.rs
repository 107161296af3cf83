//! The projector: turns one journal entry into every record derived from it (the resource, its
//! indexes, exposure rows, as-of sums, statistics facts, history and idempotency records), both
//! when the writer accepts a write and when derived state is rebuilt by replaying the journal
//! (start after a checkpoint, `verify`, `restore`, a change of layout). One function for both is
//! what makes "derived state equals a replay of the journal" true by construction.

use super::journal::{Entry, Event};
use super::keys;
use super::principals::{CertificateBinding, PrincipalRecord};
use super::records::{
    CosignatureRecord, PledgorPledge, PledgorPledges, RequestRecord, Resource, RightHolding, broken, load_pledge,
    registration_fact,
};
use super::sums::{AsOfDelta, add_asof_delta_of_body, update_row};
use super::tx::Tx;
use crate::domain::LedgerError;
use crate::domain::asof;
use crate::domain::credit_line::CreditLine;
use crate::domain::exposure::{self, Bucket, RowDelta};
use crate::domain::ident::CreditCode;
use crate::domain::pledge::{Party, Pledge};
use crate::domain::principal::Role;
use uuid::Uuid;

/// Writes every record derived from `entry`.
pub fn apply_entry(tx: &mut Tx<'_>, entry: &Entry) -> Result<(), LedgerError> {
    // The risk columns as of a date: each pledge's function before the entry, to subtract after.
    let touched = super::risk_projector::touched_pledges(tx, &entry.event)?;
    let before = touched.iter().map(|id| super::risk_projector::asof_points(tx, *id)).collect::<Result<Vec<_>, _>>()?;
    apply_event(tx, entry)?;
    super::alerts::apply_entry(tx, entry)?;
    for (id, before) in touched.into_iter().zip(before) {
        super::risk_projector::move_asof(tx, id, &before)?;
    }
    // Rules only go up along the journal (`decider::validate`); written when they first do.
    if entry.rules > 0 && tx.get::<u32>(keys::META_RULES)? != Some(entry.rules) {
        tx.put(keys::META_RULES.to_vec(), &entry.rules);
    }
    if let Some(request) = entry.request {
        let resource = match &entry.event {
            Event::PledgeRegistered { pledge } => Resource::Pledge(pledge.id),
            Event::PledgeChanged { id, .. } | Event::PledgeReleased { id, .. } => Resource::Pledge(*id),
            Event::CreditLineCreated { line } => Resource::CreditLine(line.id),
            other => super::risk_projector::resource(other)
                .ok_or_else(|| broken(format!("a {} entry with a request id", other.name())))?,
        };
        let record = RequestRecord {
            fingerprint: request.fingerprint,
            form: request.form,
            sequence: entry.sequence,
            at: entry.at,
            resource,
        };
        tx.put(keys::request(&entry.principal, request.id), &record);
    }
    Ok(())
}

/// Writes the records `entry`'s event derives: one function per event of the pledges' side, the
/// risk side's in `risk_projector`.
fn apply_event(tx: &mut Tx<'_>, entry: &Entry) -> Result<(), LedgerError> {
    match &entry.event {
        Event::PledgeRegistered { pledge } => pledge_registered(tx, entry, pledge),
        Event::PledgeChanged { id, change } => {
            let before = load_pledge(tx, *id)?;
            let after = before.apply_change(change);
            pledge_changed(tx, entry, &before, &after)
        }
        Event::PledgeReleased { id, release } => {
            let before = load_pledge(tx, *id)?;
            let after = before.apply_release(release, entry.principal.clone(), entry.at);
            pledge_released(tx, entry, &before, &after)
        }
        Event::CreditLineCreated { line } => {
            let c = &line.content;
            tx.put(keys::credit_line(line.id), line);
            tx.put(keys::line_by_region(c.region, line.id), &());
            tx.put(keys::line_by_bank(&c.bank.credit_code, line.id), &());
            let delta = RowDelta { limit_fen: c.limit.fen(), ..RowDelta::default() };
            for bucket in exposure::credit_line_buckets(line) {
                update_row(tx, &bucket, &delta)?;
            }
            name_bank(tx, entry, &c.bank)
        }
        Event::PrincipalCreated { record } => {
            tx.put(keys::principal(&record.principal.name), record);
            tx.put(keys::token(&record.token_hash), &record.principal.name);
            Ok(())
        }
        Event::PrincipalRevoked { name } => {
            let mut after: PrincipalRecord = tx
                .get(&keys::principal(name))?
                .ok_or_else(|| broken(format!("revoked principal {name} is missing")))?;
            after.principal.revoke_time = Some(entry.at);
            tx.put(keys::principal(name), &after);
            tx.delete(keys::token(&after.token_hash));
            Ok(())
        }
        Event::CertificateBound { name, binding } => {
            tx.put(keys::certificate_binding(binding), &(name, binding));
            tx.update::<Vec<CertificateBinding>>(keys::certificate_bindings_of(name), |bindings| {
                bindings.push(binding.clone());
                true
            })
        }
        Event::TreeHeadCosigned { cosignature } => {
            let record = CosignatureRecord { cosignature: cosignature.clone(), record_time: entry.at };
            tx.put(keys::cosignature(cosignature.tree_size, &cosignature.public_key), &record);
            Ok(())
        }
        Event::AlertPolicySet { .. } | Event::DayOpened { .. } => Ok(()), // `alerts::apply_entry`
        _ => super::risk_projector::apply(tx, entry),
    }
}

/// A registration: its indexes (number, rights, county, banks, pledgor), the credit line's draw,
/// the rows and as-of sums it counts in, its statistics facts, its risk record, the pledge.
fn pledge_registered(tx: &mut Tx<'_>, entry: &Entry, pledge: &Pledge) -> Result<(), LedgerError> {
    let c = &pledge.content;
    let id = pledge.id;
    tx.put(keys::registration(&pledge.registration_number), &id);
    if let Some(serial) = pledge.registration_number.assigned_serial() {
        // The serial the next assigned number follows; derived, so replay restores it.
        let last = tx.get::<u64>(keys::META_REGISTRATION_SERIAL)?.unwrap_or(0);
        tx.put(keys::META_REGISTRATION_SERIAL.to_vec(), &last.max(serial));
    }
    for right in &c.rights {
        let key = keys::active_right(&right.number);
        let held = tx.get::<RightHolding>(&key)?.unwrap_or_default();
        if let Some(holder) = held.active {
            return Err(broken(format!("{} is held by {holder} and registered again by {id}", right.number)));
        }
        tx.put(key, &RightHolding { active: Some(id), pledges: held.pledges + 1 });
        tx.put(keys::by_right(&right.number, id), &());
    }
    tx.put(keys::by_county(c.county, id), &());
    tx.put(keys::by_pledgee(&c.pledgee.credit_code, id), &());
    tx.put(keys::by_pledgor(&c.pledgor.credit_code, id), &());
    if let Some(line_id) = c.credit_line_id {
        draw(tx, line_id, c.secured_amount.fen(), entry.at)?;
    }
    let intervals = pledgor_pledges(tx, pledge)?;
    add_pledge_exposure(tx, pledge, 1, &intervals)?;
    add_asof(tx, pledge, asof::registration_point(pledge), Some((pledge, intervals)))?;
    let fact = registration_fact(pledge);
    tx.put(keys::fact(c.county, c.registered_on, id), &fact);
    tx.put(keys::fact_by_pledgee(&c.pledgee.credit_code, c.registered_on, id), &fact);
    name_bank(tx, entry, &c.pledgee)?;
    super::risk_projector::pledge_registered(tx, pledge)?;
    tx.put(keys::pledge(id), pledge);
    tx.put(keys::history(id, entry.sequence), &());
    Ok(())
}

/// A change of amount or term: the draw and the rows by the difference, the as-of sums from its
/// effective date, the risk columns.
fn pledge_changed(tx: &mut Tx<'_>, entry: &Entry, before: &Pledge, after: &Pledge) -> Result<(), LedgerError> {
    let delta_fen = after.content.secured_amount.fen() - before.content.secured_amount.fen();
    if delta_fen != 0 {
        if let Some(line_id) = after.content.credit_line_id {
            draw(tx, line_id, delta_fen, entry.at)?;
        }
        let delta = RowDelta { secured_fen: delta_fen, ..RowDelta::default() };
        for share in exposure::pledge_shares(after) {
            update_row(tx, &share.bucket, &delta)?;
        }
    }
    if let Some(point) = asof::change_point(before, after) {
        add_asof(tx, after, point, None)?;
    }
    super::risk_projector::pledge_moved(tx, before, after)?;
    tx.put(keys::pledge(after.id), after);
    tx.put(keys::history(after.id, entry.sequence), &());
    Ok(())
}

/// A release: its rights free again, the credit line given back, out of the rows now and of the
/// as-of sums from its release date.
fn pledge_released(tx: &mut Tx<'_>, entry: &Entry, before: &Pledge, after: &Pledge) -> Result<(), LedgerError> {
    let id = after.id;
    for right in &after.content.rights {
        let key = keys::active_right(&right.number);
        let held = tx.get::<RightHolding>(&key)?.unwrap_or_default();
        if held.active != Some(id) {
            return Err(broken(format!(
                "active pledge {id} does not hold {} (index: {:?})",
                right.number, held.active
            )));
        }
        tx.put(key, &RightHolding { active: None, ..held });
    }
    if let Some(line_id) = after.content.credit_line_id {
        draw(tx, line_id, -after.content.secured_amount.fen(), entry.at)?;
    }
    // The pledgor never changes: before and after share one interval record.
    let intervals = pledgor_pledges(tx, before)?;
    add_pledge_exposure(tx, before, -1, &intervals)?;
    if let Some(point) = asof::release_point(after) {
        add_asof(tx, after, point, Some((after, intervals)))?;
    }
    super::risk_projector::pledge_moved(tx, before, after)?;
    tx.put(keys::pledge(id), after);
    tx.put(keys::history(id, entry.sequence), &());
    Ok(())
}

/// The pledgor's record, read once per event that moves one of its intervals.
fn pledgor_pledges(tx: &Tx<'_>, pledge: &Pledge) -> Result<PledgorPledges, LedgerError> {
    Ok(tx.get(&keys::asof_intervals(&pledge.content.pledgor.credit_code))?.unwrap_or_default())
}

/// Adds `point` to every row `pledge` counts in; with `interval_of` (the pledge whose interval
/// moves and its pledgor's record), also moves that interval in each row and adds the enterprise
/// points that follow, then stores the record.
fn add_asof(
    tx: &mut Tx<'_>,
    pledge: &Pledge,
    point: asof::Point,
    mut interval_of: Option<(&Pledge, PledgorPledges)>,
) -> Result<(), LedgerError> {
    let moved = interval_of.as_ref().map(|(p, all)| (PledgorPledge::of(p), all.iter().find(|x| x.id == p.id).cloned()));
    for share in exposure::pledge_shares(pledge) {
        let delta = AsOfDelta {
            secured_fen: point.secured_fen,
            pledges: point.pledges,
            rights: point.rights_sign * share.rights,
            ..AsOfDelta::default()
        };
        // Made once per row: the keys of its year and month are built from it.
        let body = keys::bucket_body(&share.bucket);
        add_asof_delta_of_body(tx, &body, point.day, &delta)?;
        if let (Some((_, all)), Some((now, was))) = (interval_of.as_ref(), moved.as_ref()) {
            let mut others: Vec<(asof::Day, asof::Day)> =
                all.iter().filter(|x| x.id != now.id && x.counts_in(&share.bucket)).map(|x| (x.start, x.end)).collect();
            let before = {
                let mut v = others.clone();
                v.extend(was.as_ref().map(|w| (w.start, w.end)));
                asof::union(&v)
            };
            others.push((now.start, now.end));
            for (day, enterprises) in asof::indicator_delta(&before, &asof::union(&others)) {
                add_asof_delta_of_body(tx, &body, day, &AsOfDelta { enterprises, ..AsOfDelta::default() })?;
            }
        }
    }
    if let (Some((_, all)), Some((now, _))) = (interval_of.as_mut(), moved) {
        match all.iter_mut().find(|x| x.id == now.id) {
            Some(existing) => *existing = now,
            None => all.push(now),
        }
        tx.put(keys::asof_intervals(&pledge.content.pledgor.credit_code), all);
    }
    Ok(())
}

/// Moves a credit line's drawn amount by `delta_fen` and its aggregates with it. The rules were
/// checked when the write was accepted; here a failure means the records are inconsistent.
fn draw(tx: &mut Tx<'_>, line_id: Uuid, delta_fen: i128, at: crate::domain::Micros) -> Result<(), LedgerError> {
    let line: CreditLine =
        tx.get(&keys::credit_line(line_id))?.ok_or_else(|| broken(format!("credit line {line_id} is missing")))?;
    let line = line.draw(delta_fen, at).map_err(|e| broken(format!("replaying a draw on {line_id}: {e}")))?;
    tx.put(keys::credit_line(line.id), &line);
    let delta = RowDelta { drawn_fen: delta_fen, ..RowDelta::default() };
    for bucket in exposure::credit_line_buckets(&line) {
        update_row(tx, &bucket, &delta)?;
    }
    Ok(())
}

/// Adds (`sign` 1) or removes (`sign` -1) an active pledge from every row it counts in.
fn add_pledge_exposure(
    tx: &mut Tx<'_>,
    pledge: &Pledge,
    sign: i64,
    intervals: &PledgorPledges,
) -> Result<(), LedgerError> {
    assert!(sign == 1 || sign == -1);
    let c = &pledge.content;
    for share in exposure::pledge_shares(pledge) {
        let active = intervals.iter().filter(|x| x.end == asof::OPEN && x.counts_in(&share.bucket)).count();
        let enterprises = count_enterprise(active, &share.bucket, &c.pledgor.credit_code, sign)?;
        let delta = RowDelta {
            secured_fen: i128::from(sign) * c.secured_amount.fen(),
            pledges: sign,
            enterprises,
            rights: sign * share.rights,
            ..RowDelta::default()
        };
        update_row(tx, &share.bucket, &delta)?;
    }
    Ok(())
}

/// The change in `bucket`'s distinct enterprises when one of the pledgor's pledges becomes active
/// (`sign` 1) or is released (`sign` -1): 1 when its first active pledge appears, -1 when its last
/// goes. The pledgor's active pledges in the bucket are its open in-force intervals, which the
/// as-of bookkeeping keeps anyway (and updates after this call), so no count of its own is stored.
fn count_enterprise(active: usize, bucket: &Bucket, pledgor: &CreditCode, sign: i64) -> Result<i64, LedgerError> {
    let active = active as i64;
    let next = active + sign;
    if next < 0 {
        return Err(broken(format!("enterprise count of {pledgor} in {bucket:?} below zero")));
    }
    Ok(match (active, next) {
        (0, _) => 1,
        (_, 0) => -1,
        _ => 0,
    })
}

/// Records the bank's name from `entry` when its principal is an authority on it: an admin, or
/// the bank's own principal. Anyone else's write (an office importing a historical pledge, another
/// bank) names nobody, so no caller can rename a bank in the exposure views. The principal's record
/// is in the state replay rebuilds too (it was created by an earlier entry), so the rule gives the
/// same directory on replay.
fn name_bank(tx: &mut Tx<'_>, entry: &Entry, bank: &Party) -> Result<(), LedgerError> {
    let key = keys::bank_name(&bank.credit_code);
    // Most writes repeat the name the bank already has: then whose write it is does not matter.
    if tx.get::<String>(&key)?.as_deref() == Some(bank.name.as_str()) {
        return Ok(());
    }
    let Some(record) = tx.get::<PrincipalRecord>(&keys::principal(&entry.principal))? else {
        return Ok(());
    };
    let authority = match &record.principal.role {
        Role::Admin => true,
        Role::Bank(code) => *code == bank.credit_code,
        Role::Office(_) => false,
    };
    if authority {
        tx.put(key, &bank.name.to_string());
    }
    Ok(())
}

/// A stored value for a divergence report: its length and first bytes in hex, or "absent".
pub fn describe(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "absent".to_owned(),
        Some(b) => {
            let hex: String = b.iter().take(64).map(|x| format!("{x:02x}")).collect();
            let more = if b.len() > 64 { "…" } else { "" };
            format!("{} bytes: {hex}{more}", b.len())
        }
    }
}

//! The ledger's state machine: executes one write command against the writer's view, enforcing
//! the rules that depend on the ledger's state (a right pledged once, credit available, idempotent
//! request ids) and keeping indexes and exposure aggregates in step with the records.

use super::keys;
use super::principals::PrincipalRecord;
use super::tx::Tx;
use crate::domain::credit_line::{CreditLine, NewCreditLine};
use crate::domain::exposure::{self, Bucket, Row, RowDelta};
use crate::domain::ident::CreditCode;
use crate::domain::pledge::{NewPledge, Pledge, PledgeAmendment, RegistrationNumber, Release};
use crate::domain::principal::{Principal, PrincipalName, Role, TokenHash};
use crate::domain::{LedgerError, Micros};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A write request, parsed and valid in itself.
#[derive(Debug, Clone, serde::Serialize)]
pub enum Command {
    RegisterPledge {
        request_id: Uuid,
        pledge: NewPledge,
    },
    ChangePledge {
        request_id: Uuid,
        id: Uuid,
        amendment: PledgeAmendment,
    },
    ReleasePledge {
        request_id: Uuid,
        id: Uuid,
        release: Release,
    },
    CreateCreditLine {
        request_id: Uuid,
        line: NewCreditLine,
    },
    /// Not idempotent by request id: the response holds nothing secret, but the token is only
    /// ever shown to the caller that created it.
    CreatePrincipal {
        name: PrincipalName,
        role: Role,
        token_hash: TokenHash,
    },
    RevokePrincipal {
        name: PrincipalName,
    },
}

impl Command {
    fn request_id(&self) -> Option<Uuid> {
        match self {
            Command::RegisterPledge { request_id, .. }
            | Command::ChangePledge { request_id, .. }
            | Command::ReleasePledge { request_id, .. }
            | Command::CreateCreditLine { request_id, .. } => Some(*request_id),
            Command::CreatePrincipal { .. } | Command::RevokePrincipal { .. } => None,
        }
    }

    /// SHA-256 of the principal's name and the canonical encoding: two requests with the same id
    /// are the same request exactly when this matches (so `ZL 2019 1 0123456.X` and
    /// `ZL201910123456.X` agree, and another principal can never replay someone else's request).
    fn fingerprint(&self, actor: &PrincipalName) -> [u8; 32] {
        let bytes = postcard::to_allocvec(&(actor, self)).expect("in-memory encoding");
        Sha256::digest(bytes).into()
    }
}

/// What a write produced: the resource as it now is, and whether this was a replay of an earlier
/// request (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    Pledge(Pledge),
    CreditLine(CreditLine),
    Principal(PrincipalRecord),
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct RequestRecord {
    fingerprint: [u8; 32],
    outcome: Outcome,
}

/// Executes `command` for `actor` at `now`; on `Ok((outcome, replayed))` the writes are in `tx`
/// for the caller to accept. Rules that depend on the content alone (may this bank register a
/// pledge to that pledgee) were checked before; rules that depend on state are checked here.
pub fn execute(
    tx: &mut Tx<'_>,
    actor: &Principal,
    command: &Command,
    now: Micros,
) -> Result<(Outcome, bool), LedgerError> {
    authorize(tx, actor, command)?;
    let Some(request_id) = command.request_id() else {
        return execute_unrecorded(tx, actor, command, now).map(|o| (o, false));
    };
    let request_key = keys::request(request_id);
    let fingerprint = command.fingerprint(&actor.name);
    if let Some(record) = tx.get::<RequestRecord>(&request_key)? {
        if record.fingerprint != fingerprint {
            return Err(LedgerError::RequestIdReused { request_id: request_id.to_string() });
        }
        return Ok((record.outcome, true));
    }
    let by = actor.name.clone();
    let outcome = match command {
        Command::RegisterPledge { pledge, .. } => Outcome::Pledge(register(tx, pledge, by, now)?),
        Command::ChangePledge { request_id, id, amendment } => {
            Outcome::Pledge(change(tx, *id, amendment, *request_id, by, now)?)
        }
        Command::ReleasePledge { id, release, .. } => Outcome::Pledge(release_pledge(tx, *id, release, by, now)?),
        Command::CreateCreditLine { line, .. } => Outcome::CreditLine(create_line(tx, line, by, now)?),
        Command::CreatePrincipal { .. } | Command::RevokePrincipal { .. } => unreachable!("has no request id"),
    };
    tx.put(request_key, &RequestRecord { fingerprint, outcome: outcome.clone() });
    Ok((outcome, false))
}

/// Scope checks that need the ledger's state: changes and releases touch an existing pledge.
/// Following AIP-211, a principal outside a pledge's scope learns nothing of its existence.
fn authorize(tx: &Tx<'_>, actor: &Principal, command: &Command) -> Result<(), LedgerError> {
    match command {
        Command::ChangePledge { id, .. } | Command::ReleasePledge { id, .. } => {
            match tx.get::<Pledge>(&keys::pledge(*id))? {
                Some(pledge) => actor.may_amend(&pledge),
                None if actor.is_admin() => Ok(()),
                None => Err(LedgerError::PermissionDenied(format!("{} may not change pledge {id}", actor.name))),
            }
        }
        Command::RegisterPledge { .. } | Command::CreateCreditLine { .. } => Ok(()),
        Command::CreatePrincipal { .. } | Command::RevokePrincipal { .. } => actor.require_admin(),
    }
}

fn execute_unrecorded(
    tx: &mut Tx<'_>,
    _actor: &Principal,
    command: &Command,
    now: Micros,
) -> Result<Outcome, LedgerError> {
    match command {
        Command::CreatePrincipal { name, role, token_hash } => {
            if tx.get::<PrincipalRecord>(&keys::principal(name))?.is_some() {
                return Err(LedgerError::refused("PRINCIPAL_EXISTS", format!("a principal named {name} exists"))
                    .with("name", name));
            }
            let record = PrincipalRecord {
                principal: Principal { name: name.clone(), role: role.clone(), create_time: now, revoke_time: None },
                token_hash: *token_hash,
            };
            tx.put(keys::principal(name), &record);
            tx.put(keys::token(token_hash), name);
            Ok(Outcome::Principal(record))
        }
        Command::RevokePrincipal { name } => {
            let mut record = tx
                .get::<PrincipalRecord>(&keys::principal(name))?
                .ok_or_else(|| LedgerError::NotFound { resource: "principal", id: name.to_string() })?;
            if record.principal.revoke_time.is_none() {
                record.principal.revoke_time = Some(now);
                tx.put(keys::principal(name), &record);
                tx.delete(keys::token(&record.token_hash));
            }
            Ok(Outcome::Principal(record))
        }
        _ => unreachable!("recorded commands go through execute"),
    }
}

fn load_pledge(tx: &Tx<'_>, id: Uuid) -> Result<Pledge, LedgerError> {
    tx.get(&keys::pledge(id))?.ok_or(LedgerError::NotFound { resource: "pledge", id: id.to_string() })
}

fn load_line(tx: &Tx<'_>, id: Uuid) -> Result<Option<CreditLine>, LedgerError> {
    tx.get(&keys::credit_line(id))
}

fn register(tx: &mut Tx<'_>, content: &NewPledge, by: PrincipalName, now: Micros) -> Result<Pledge, LedgerError> {
    for right in &content.rights {
        if let Some(holder) = tx.get::<Uuid>(&keys::active_right(&right.number))? {
            return Err(LedgerError::refused(
                "RIGHT_ALREADY_PLEDGED",
                format!("{} is already pledged in active pledge {holder}", right.number),
            )
            .with("right", &right.number)
            .with("rightKind", right.kind().name())
            .with("rightNumber", right.number.as_str())
            .with("pledgeId", holder));
        }
    }
    if let Some(number) = &content.registration_number
        && let Some(holder) = tx.get::<Uuid>(&keys::registration(number))?
    {
        return Err(LedgerError::refused(
            "REGISTRATION_NUMBER_EXISTS",
            format!("registration number {} belongs to pledge {holder}", number.as_str()),
        )
        .with("registrationNumber", number.as_str())
        .with("pledgeId", holder));
    }
    if let Some(line_id) = content.credit_line_id {
        let line = load_line(tx, line_id)?.ok_or_else(|| {
            LedgerError::refused("CREDIT_LINE_NOT_FOUND", format!("credit line {line_id} does not exist"))
                .with("creditLineId", line_id)
        })?;
        line.admits(content)?;
        let line = line.draw(content.secured_amount.fen(), now)?;
        save_line_draw(tx, &line, content.secured_amount.fen())?;
    }
    let registration_number = match &content.registration_number {
        Some(n) => n.clone(),
        None => {
            let serial = tx.get::<u64>(keys::META_REGISTRATION_SERIAL)?.unwrap_or(0) + 1;
            tx.put(keys::META_REGISTRATION_SERIAL.to_vec(), &serial);
            RegistrationNumber::assigned(content.registered_on, serial)
        }
    };
    let id = Uuid::now_v7();
    let pledge = Pledge::register(id, registration_number, content.clone(), by, now);
    tx.put(keys::registration(&pledge.registration_number), &id);
    for right in &content.rights {
        tx.put(keys::active_right(&right.number), &id);
        tx.put(keys::by_right(&right.number, id), &());
    }
    tx.put(keys::by_county(content.county, id), &());
    tx.put(keys::by_pledgee(&content.pledgee.credit_code, id), &());
    tx.put(keys::by_pledgor(&content.pledgor.credit_code, id), &());
    add_pledge_exposure(tx, &pledge, 1)?;
    tx.put(keys::pledge(id), &pledge);
    Ok(pledge)
}

fn change(
    tx: &mut Tx<'_>,
    id: Uuid,
    amendment: &PledgeAmendment,
    request_id: Uuid,
    by: PrincipalName,
    now: Micros,
) -> Result<Pledge, LedgerError> {
    let before = load_pledge(tx, id)?;
    let after = before.change(amendment, request_id, by, now)?;
    let delta_fen = after.content.secured_amount.fen() - before.content.secured_amount.fen();
    if delta_fen != 0 {
        if let Some(line_id) = after.content.credit_line_id {
            let line = load_line(tx, line_id)?
                .ok_or_else(|| LedgerError::Internal(format!("pledge {id} draws on missing credit line {line_id}")))?;
            let line = line.draw(delta_fen, now)?;
            save_line_draw(tx, &line, delta_fen)?;
        }
        let delta = RowDelta { secured_fen: delta_fen, ..RowDelta::default() };
        for share in exposure::pledge_shares(&after) {
            update_row(tx, &share.bucket, &delta, None)?;
        }
    }
    tx.put(keys::pledge(id), &after);
    Ok(after)
}

fn release_pledge(
    tx: &mut Tx<'_>,
    id: Uuid,
    release: &Release,
    by: PrincipalName,
    now: Micros,
) -> Result<Pledge, LedgerError> {
    let before = load_pledge(tx, id)?;
    let after = before.release(release.clone(), by, now)?;
    for right in &after.content.rights {
        let key = keys::active_right(&right.number);
        let holder = tx.get::<Uuid>(&key)?;
        if holder != Some(id) {
            return Err(LedgerError::Internal(format!(
                "active pledge {id} does not hold {} (index says {holder:?})",
                right.number
            )));
        }
        tx.delete(key);
    }
    if let Some(line_id) = after.content.credit_line_id {
        let line = load_line(tx, line_id)?
            .ok_or_else(|| LedgerError::Internal(format!("pledge {id} draws on missing credit line {line_id}")))?;
        let give_back = -after.content.secured_amount.fen();
        let line = line.draw(give_back, now)?;
        save_line_draw(tx, &line, give_back)?;
    }
    add_pledge_exposure(tx, &before, -1)?;
    tx.put(keys::pledge(id), &after);
    Ok(after)
}

fn create_line(
    tx: &mut Tx<'_>,
    content: &NewCreditLine,
    by: PrincipalName,
    now: Micros,
) -> Result<CreditLine, LedgerError> {
    let id = Uuid::now_v7();
    let line = CreditLine::open(id, content.clone(), by, now);
    tx.put(keys::credit_line(id), &line);
    tx.put(keys::line_by_region(content.region, id), &());
    tx.put(keys::line_by_bank(&content.bank.credit_code, id), &());
    let delta = RowDelta { limit_fen: content.limit.fen(), ..RowDelta::default() };
    for bucket in exposure::credit_line_buckets(&line) {
        update_row(tx, &bucket, &delta, Some(content.bank.name.as_str()))?;
    }
    Ok(line)
}

/// Stores a line after a draw of `delta_fen` and moves its drawn amount in the aggregates.
fn save_line_draw(tx: &mut Tx<'_>, line: &CreditLine, delta_fen: i128) -> Result<(), LedgerError> {
    tx.put(keys::credit_line(line.id), line);
    let delta = RowDelta { drawn_fen: delta_fen, ..RowDelta::default() };
    for bucket in exposure::credit_line_buckets(line) {
        update_row(tx, &bucket, &delta, None)?;
    }
    Ok(())
}

/// Adds (`sign` 1) or removes (`sign` -1) an active pledge from every row it counts in.
fn add_pledge_exposure(tx: &mut Tx<'_>, pledge: &Pledge, sign: i64) -> Result<(), LedgerError> {
    assert!(sign == 1 || sign == -1);
    let c = &pledge.content;
    for share in exposure::pledge_shares(pledge) {
        let enterprises = count_enterprise(tx, &share.bucket, &c.pledgor.credit_code, sign)?;
        let delta = RowDelta {
            secured_fen: i128::from(sign) * c.secured_amount.fen(),
            pledges: sign,
            enterprises,
            rights: sign * share.rights,
            ..RowDelta::default()
        };
        update_row(tx, &share.bucket, &delta, Some(c.pledgee.name.as_str()))?;
    }
    Ok(())
}

/// Moves the pledgor's count of active pledges in `bucket` by `sign`; returns the change in the
/// bucket's distinct enterprises (1 when the first appears, -1 when the last goes).
fn count_enterprise(tx: &mut Tx<'_>, bucket: &Bucket, pledgor: &CreditCode, sign: i64) -> Result<i64, LedgerError> {
    let key = keys::enterprise_ref(bucket, pledgor);
    let count = tx.get::<u64>(&key)?.unwrap_or(0);
    let next = count
        .checked_add_signed(sign)
        .ok_or_else(|| LedgerError::Internal(format!("enterprise count of {pledgor} in {bucket:?} below zero")))?;
    if next == 0 {
        tx.delete(key);
    } else {
        tx.put(key, &next);
    }
    Ok(match (count, next) {
        (0, _) => 1,
        (_, 0) => -1,
        _ => 0,
    })
}

fn update_row(tx: &mut Tx<'_>, bucket: &Bucket, delta: &RowDelta, name: Option<&str>) -> Result<(), LedgerError> {
    let key = keys::exposure(bucket);
    let row: Row = tx.get(&key)?.unwrap_or_default();
    let mut next = row.apply(delta)?;
    if let (Some(name), exposure::Dimension::Pledgee(_)) = (name, &bucket.dimension) {
        name.clone_into(&mut next.name);
    }
    if next.is_empty() {
        tx.delete(key);
    } else {
        tx.put(key, &next);
    }
    Ok(())
}

//! The ledger's state machine: decides whether one write command is accepted against the writer's
//! view, enforcing the rules that depend on the ledger's state (a right pledged once, credit
//! available, idempotent request ids, the caller's scope), and turns an accepted one into an event
//! that the journal appends and `events::apply_entry` applies.

use super::events::{Event, Outcome, RequestRecord};
use super::journal;
use super::keys;
use super::principals::{BINDINGS_PER_PRINCIPAL_MAX, CertificateBinding, PrincipalRecord};
use super::tx::Tx;
use crate::domain::credit_line::{CreditLine, NewCreditLine};
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
    /// Binds client certificates matching `binding` to a live principal.
    BindCertificate {
        name: PrincipalName,
        binding: CertificateBinding,
    },
}

impl Command {
    fn request_id(&self) -> Option<Uuid> {
        match self {
            Command::RegisterPledge { request_id, .. }
            | Command::ChangePledge { request_id, .. }
            | Command::ReleasePledge { request_id, .. }
            | Command::CreateCreditLine { request_id, .. } => Some(*request_id),
            Command::CreatePrincipal { .. } | Command::RevokePrincipal { .. } | Command::BindCertificate { .. } => None,
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

/// Executes `command` for `actor` at `now`; on `Ok((outcome, replayed))` the writes (the journal
/// entry and everything derived from it) are in `tx` for the caller to accept. Rules that depend on
/// the content alone (may this bank register a pledge to that pledgee) were checked before.
pub fn execute(
    tx: &mut Tx<'_>,
    actor: &Principal,
    command: &Command,
    now: Micros,
) -> Result<(Outcome, bool), LedgerError> {
    authorize(tx, actor, command)?;
    let request = command.request_id().map(|id| (id, command.fingerprint(&actor.name)));
    if let Some((request_id, fingerprint)) = request
        && let Some(record) = tx.get::<RequestRecord>(&keys::request(&actor.name, request_id))?
    {
        if record.fingerprint != fingerprint {
            return Err(LedgerError::RequestIdReused { request_id: request_id.to_string() });
        }
        return Ok((record.outcome, true));
    }
    let event = decide(tx, actor, command, now)?;
    let entry = journal::append(tx, now, &actor.name, request, event)?;
    Ok((entry.event.outcome(), false))
}

/// Scope checks that need the ledger's state: changes and releases touch an existing pledge.
/// Following AIP-211, a principal outside a pledge's scope learns nothing of its existence. This
/// runs before the request id is looked up, so nobody can replay a request they could not make.
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
        Command::CreatePrincipal { .. } | Command::RevokePrincipal { .. } | Command::BindCertificate { .. } => {
            actor.require_admin()
        }
    }
}

/// Checks the state-dependent rules and builds the event; writes nothing but serial numbers.
fn decide(tx: &mut Tx<'_>, actor: &Principal, command: &Command, now: Micros) -> Result<Event, LedgerError> {
    let by = actor.name.clone();
    match command {
        Command::RegisterPledge { pledge, .. } => {
            Ok(Event::PledgeRegistered { pledge: register(tx, actor, pledge, now)? })
        }
        Command::ChangePledge { request_id, id, amendment } => {
            let before = load_pledge(tx, *id)?;
            let after = before.change(amendment, *request_id, by, now)?;
            let delta_fen = after.content.secured_amount.fen() - before.content.secured_amount.fen();
            if delta_fen != 0
                && let Some(line_id) = after.content.credit_line_id
            {
                let line = load_line(tx, line_id)?.ok_or_else(|| {
                    LedgerError::Internal(format!("pledge {id} draws on missing credit line {line_id}"))
                })?;
                line.draw(delta_fen, now)?;
            }
            Ok(Event::PledgeChanged { before, after })
        }
        Command::ReleasePledge { id, release, .. } => {
            let before = load_pledge(tx, *id)?;
            let after = before.release(release.clone(), by, now)?;
            Ok(Event::PledgeReleased { before, after })
        }
        Command::CreateCreditLine { line, .. } => {
            Ok(Event::CreditLineCreated { line: CreditLine::open(Uuid::now_v7(), line.clone(), by, now) })
        }
        Command::CreatePrincipal { name, role, token_hash } => {
            if tx.get::<PrincipalRecord>(&keys::principal(name))?.is_some() {
                return Err(LedgerError::refused("PRINCIPAL_EXISTS", format!("a principal named {name} exists"))
                    .with("name", name));
            }
            let principal = Principal { name: name.clone(), role: role.clone(), create_time: now, revoke_time: None };
            Ok(Event::PrincipalCreated { record: PrincipalRecord { principal, token_hash: *token_hash } })
        }
        Command::RevokePrincipal { name } => {
            let before = tx
                .get::<PrincipalRecord>(&keys::principal(name))?
                .ok_or_else(|| LedgerError::NotFound { resource: "principal", id: name.to_string() })?;
            if before.principal.revoke_time.is_some() {
                return Err(LedgerError::refused("PRINCIPAL_ALREADY_REVOKED", format!("{name} is already revoked"))
                    .with("name", name));
            }
            let mut after = before.clone();
            after.principal.revoke_time = Some(now);
            Ok(Event::PrincipalRevoked { before, after })
        }
        Command::BindCertificate { name, binding } => {
            let record = tx
                .get::<PrincipalRecord>(&keys::principal(name))?
                .ok_or_else(|| LedgerError::NotFound { resource: "principal", id: name.to_string() })?;
            if record.principal.revoke_time.is_some() {
                return Err(
                    LedgerError::refused("PRINCIPAL_ALREADY_REVOKED", format!("{name} is revoked")).with("name", name)
                );
            }
            // One owner per binding, or a certificate would stand for whoever was bound last.
            if let Some((owner, _)) =
                tx.get::<(PrincipalName, CertificateBinding)>(&keys::certificate_binding(binding))?
            {
                return Err(LedgerError::refused(
                    "CERTIFICATE_ALREADY_BOUND",
                    format!("{binding} is already bound to {owner}"),
                )
                .with("name", &owner));
            }
            let bound = tx.get::<Vec<CertificateBinding>>(&keys::certificate_bindings_of(name))?.unwrap_or_default();
            if bound.len() >= BINDINGS_PER_PRINCIPAL_MAX {
                return Err(LedgerError::refused(
                    "TOO_MANY_BINDINGS",
                    format!("{name} has {BINDINGS_PER_PRINCIPAL_MAX} certificate bindings, the most it may have"),
                )
                .with("name", name));
            }
            Ok(Event::CertificateBound { record, binding: binding.clone() })
        }
    }
}

fn load_pledge(tx: &Tx<'_>, id: Uuid) -> Result<Pledge, LedgerError> {
    tx.get(&keys::pledge(id))?.ok_or(LedgerError::NotFound { resource: "pledge", id: id.to_string() })
}

fn load_line(tx: &Tx<'_>, id: Uuid) -> Result<Option<CreditLine>, LedgerError> {
    tx.get(&keys::credit_line(id))
}

/// The pledge `holder` when `actor` may read it: only then may a refusal name it. The right or
/// number that collided was in the caller's own request, so naming that reveals nothing.
fn readable_holder(tx: &Tx<'_>, actor: &Principal, holder: Uuid) -> Result<Option<Uuid>, LedgerError> {
    // The index names a pledge that must exist: a missing one is a broken invariant, not the
    // caller's NOT_FOUND.
    let pledge: Pledge = tx
        .get(&keys::pledge(holder))?
        .ok_or_else(|| LedgerError::Internal(format!("an index names missing pledge {holder}")))?;
    Ok(actor.may_read_pledge(&pledge).then_some(holder))
}

fn register(tx: &mut Tx<'_>, actor: &Principal, content: &NewPledge, now: Micros) -> Result<Pledge, LedgerError> {
    for right in &content.rights {
        if let Some(holder) = tx.get::<Uuid>(&keys::active_right(&right.number))? {
            let holder = readable_holder(tx, actor, holder)?;
            let message = match holder {
                Some(id) => format!("{} is already pledged in active pledge {id}", right.number),
                None => format!("{} is already pledged in an active pledge", right.number),
            };
            let error = LedgerError::refused("RIGHT_ALREADY_PLEDGED", message)
                .with("right", &right.number)
                .with("rightKind", right.kind().name())
                .with("rightNumber", right.number.as_str());
            return Err(match holder {
                Some(id) => error.with("pledgeId", id),
                None => error,
            });
        }
    }
    if let Some(number) = &content.registration_number
        && let Some(holder) = tx.get::<Uuid>(&keys::registration(number))?
    {
        let holder = readable_holder(tx, actor, holder)?;
        let message = match holder {
            Some(id) => format!("registration number {} belongs to pledge {id}", number.as_str()),
            None => format!("registration number {} belongs to another pledge", number.as_str()),
        };
        let error =
            LedgerError::refused("REGISTRATION_NUMBER_EXISTS", message).with("registrationNumber", number.as_str());
        return Err(match holder {
            Some(id) => error.with("pledgeId", id),
            None => error,
        });
    }
    if let Some(line_id) = content.credit_line_id {
        // A line the caller may not read answers as a missing one: neither its details (bank,
        // region, dates, what is available) nor its existence reach the caller. This is also what
        // keeps an office's imports on the lines of its own region.
        let line = load_line(tx, line_id)?.filter(|line| actor.may_read_line(line)).ok_or_else(|| {
            LedgerError::refused("CREDIT_LINE_NOT_FOUND", format!("credit line {line_id} does not exist"))
                .with("creditLineId", line_id)
        })?;
        line.admits(content)?;
        line.draw(content.secured_amount.fen(), now)?;
    }
    let registration_number = match &content.registration_number {
        Some(n) => n.clone(),
        None => {
            let serial = tx.get::<u64>(keys::META_REGISTRATION_SERIAL)?.unwrap_or(0) + 1;
            tx.put(keys::META_REGISTRATION_SERIAL.to_vec(), &serial);
            RegistrationNumber::assigned(content.registered_on, serial)
        }
    };
    Ok(Pledge::register(Uuid::now_v7(), registration_number, content.clone(), actor.name.clone(), now))
}

//! The decider, the ledger's state machine: decides whether one write command is accepted
//! against the writer's view, enforcing the rules that depend on the ledger's state (a right
//! pledged once, credit available, idempotent request ids, the caller's scope), and turns an
//! accepted one into a journal entry (sealed after the group's head) whose derived records
//! `projector::apply_entry` writes.

use super::command::{Channel, Command, Executed, Outcome, load_pledge};
use super::journal::{self, Entry, Event, Head, RequestKey};
use super::keys;
use super::principals::{BINDINGS_PER_PRINCIPAL_MAX, CertificateBinding, PrincipalRecord};
use super::records::{CosignatureRecord, RequestRecord, Resource};
use super::tx::Tx;
use crate::domain::Reason;
use crate::domain::credit_line::{CreditLine, NewCreditLine};
use crate::domain::pledge::{NewPledge, Pledge, PledgeAmendment, PledgeDraft, RegistrationNumber};
use crate::domain::principal::{Principal, PrincipalName, Role};
use crate::domain::right::RightRecord;
use crate::domain::{LedgerError, Micros};
use uuid::Uuid;

/// Executes `command` for `actor` at `now` against the state after `head`: authorizes it, replays a
/// committed request, or decides it.
pub fn execute(
    tx: &mut Tx<'_>,
    actor: &Principal,
    command: &Command,
    now: Micros,
    head: Head,
) -> Result<Executed, LedgerError> {
    authorize(tx, actor, command, journal::RULES)?;
    if let Command::Cosign { cosignature: c } = command
        && let Some(recorded) = tx.get(&keys::cosignature(c.tree_size, &c.public_key))?
    {
        // One cosignature per witness and head: the same again is answered as recorded.
        return Ok(Executed::Replayed(Outcome::Cosigned(recorded)));
    }
    let request = match (command.request_id(), command.canonical()) {
        (Some(id), Some(canonical)) => Some(RequestKey {
            id,
            fingerprint: journal::format::fingerprint(&actor.name, canonical),
            form: journal::format::VERSION,
        }),
        _ => None,
    };
    if let Some(request) = request
        && let Some(record) = tx.get::<RequestRecord>(&keys::request(&actor.name, request.id))?
    {
        let same = match record.form {
            journal::legacy::VERSION => {
                let canonical = command.canonical().expect("a command with a request id has a canonical form");
                journal::legacy::fingerprint(&actor.name, request.id, canonical) == Some(record.fingerprint)
            }
            _ => record.fingerprint == request.fingerprint,
        };
        if !same {
            return Err(LedgerError::RequestIdReused { request_id: request.id.to_string() });
        }
        return Ok(Executed::Replayed(replayed_outcome(tx, &record)?));
    }
    let (event, mut outcome) = decide(tx, actor, command, (now, journal::RULES))?;
    let (entry, stored) = journal::format::seal(head.sequence + 1, head.hash, now, &actor.name, request, event);
    super::projector::apply_entry(tx, &entry)?;
    if let Outcome::Pledge(pledge, risk) = &mut outcome {
        // The answer shows the pledge's risk as the entry left it (a registration may be flagged).
        **risk = super::risk_projector::pledge_risk(tx, pledge.id)?;
    }
    Ok(Executed::Appended { outcome, entry: Box::new(entry), stored })
}

/// The response a committed request got: its resource as it was right after its entry.
fn replayed_outcome(tx: &Tx<'_>, record: &RequestRecord) -> Result<Outcome, LedgerError> {
    let missing = |what: &str| LedgerError::Internal(format!("request record names missing {what}"));
    match &record.resource {
        &Resource::Pledge(id) => {
            let pledge = load_pledge(tx, id)?;
            let version = pledge.as_at(record.at).ok_or_else(|| missing("pledge version"))?;
            Ok(Outcome::Pledge(version, Box::new(super::risk_projector::pledge_risk(tx, id)?)))
        }
        &Resource::CreditLine(id) => {
            let line = load_line(tx, id)?.ok_or_else(|| missing("credit line"))?;
            // A line's content never changes; what its creation returned had nothing drawn yet.
            Ok(Outcome::CreditLine(CreditLine {
                drawn: crate::domain::money::Money::ZERO,
                update_time: line.create_time,
                ..line
            }))
        }
        other => super::risk_decider::replayed_outcome(tx, other, record.at),
    }
}

/// Who may make this write: the one place a write's scope is checked (a request's content by the
/// caller's role and region; changes and releases against the pledge they touch, where, following
/// AIP-211, a principal outside a pledge's scope learns nothing of its existence). This runs
/// before the request id is looked up, so nobody can replay a request they could not make. What a
/// registration's date may be (`may_date_registration`) is a rule of "today", decided with the
/// registration itself, after the lookup: a retry on a later day replays what was recorded.
fn authorize(tx: &Tx<'_>, actor: &Principal, command: &Command, rules: u32) -> Result<(), LedgerError> {
    match command {
        Command::ChangePledge { id, .. } | Command::ReleasePledge { id, .. } => {
            match tx.get::<Pledge>(&keys::pledge(*id))? {
                Some(pledge) => actor.may_amend(&pledge),
                None if actor.is_admin() => Ok(()),
                None => Err(LedgerError::PermissionDenied(format!("{} may not change pledge {id}", actor.name))),
            }
        }
        Command::RegisterPledge { pledge, channel: Channel::Import, .. } => actor.may_import(pledge),
        Command::RegisterPledge { pledge, channel: Channel::Call, .. } => actor.may_register(pledge),
        Command::CreateCreditLine { line, .. } => actor.may_create_line(line),
        Command::Risk { command, .. } => super::risk_decider::authorize(tx, actor, command, rules),
        Command::CreatePrincipal { .. } | Command::RevokePrincipal { .. } | Command::BindCertificate { .. } => {
            actor.require_admin()
        }
        // The witness's signature is what vouches for a cosignature, whoever hands it in.
        Command::Cosign { .. } => Ok(()),
        Command::SetAlertPolicy { bank, .. } => super::alerts::may_set_policy(actor, bank),
        Command::OpenDay { .. } => super::alerts::may_open_day(actor),
    }
}

/// Checks the state-dependent rules and builds the event and the response; writes nothing.
/// `(now, rules)`: the entry's time and the version of the rules it is decided under
/// (`journal::RULES` for a new entry; a restored or followed entry's own).
// Longer than ~70 lines: one arm per command, each a few lines that call out to a function when
// they grow (`register`, `risk_decider::decide`).
fn decide(
    tx: &mut Tx<'_>,
    actor: &Principal,
    command: &Command,
    (now, rules): (Micros, u32),
) -> Result<(Event, Outcome), LedgerError> {
    let by = actor.name.clone();
    match command {
        Command::Risk { command, .. } => super::risk_decider::decide(tx, actor, command, (now, rules)),
        Command::Cosign { cosignature } => cosign(cosignature, now),
        Command::SetAlertPolicy { bank, policy } => Ok(super::alerts::set_policy(bank, policy, (&by, now))),
        Command::OpenDay { day } => super::alerts::open_day(tx, *day, now),
        Command::RegisterPledge { pledge, .. } => {
            let pledge = register(tx, actor, pledge, (now, rules))?;
            Ok((Event::PledgeRegistered { pledge: pledge.clone() }, Outcome::Pledge(pledge, Box::default())))
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
            let change = after.changes.last().cloned().expect("a change appends a change");
            Ok((Event::PledgeChanged { id: *id, change }, Outcome::Pledge(after, Box::default())))
        }
        Command::ReleasePledge { id, release, .. } => {
            let before = load_pledge(tx, *id)?;
            let after = before.release(release.clone(), by, now)?;
            Ok((Event::PledgeReleased { id: *id, release: release.clone() }, Outcome::Pledge(after, Box::default())))
        }
        Command::CreateCreditLine { line, .. } => {
            let line = CreditLine::open(Uuid::now_v7(), line.clone(), by, now);
            Ok((Event::CreditLineCreated { line: line.clone() }, Outcome::CreditLine(line)))
        }
        Command::CreatePrincipal { name, role, token_hash } => {
            if tx.get::<PrincipalRecord>(&keys::principal(name))?.is_some() {
                return Err(LedgerError::refused(Reason::PRINCIPAL_EXISTS, format!("a principal named {name} exists"))
                    .with("name", name));
            }
            let principal = Principal { name: name.clone(), role: role.clone(), create_time: now, revoke_time: None };
            let record = PrincipalRecord { principal, token_hash: *token_hash };
            Ok((Event::PrincipalCreated { record: record.clone() }, Outcome::Principal(record)))
        }
        Command::RevokePrincipal { name } => {
            let before = tx
                .get::<PrincipalRecord>(&keys::principal(name))?
                .ok_or_else(|| LedgerError::NotFound { resource: "principal", id: name.to_string() })?;
            if before.principal.revoke_time.is_some() {
                return Err(LedgerError::refused(
                    Reason::PRINCIPAL_ALREADY_REVOKED,
                    format!("{name} is already revoked"),
                )
                .with("name", name));
            }
            let mut after = before;
            after.principal.revoke_time = Some(now);
            Ok((Event::PrincipalRevoked { name: name.clone() }, Outcome::Principal(after)))
        }
        Command::BindCertificate { name, binding } => {
            let record = tx
                .get::<PrincipalRecord>(&keys::principal(name))?
                .ok_or_else(|| LedgerError::NotFound { resource: "principal", id: name.to_string() })?;
            if record.principal.revoke_time.is_some() {
                return Err(LedgerError::refused(Reason::PRINCIPAL_ALREADY_REVOKED, format!("{name} is revoked"))
                    .with("name", name));
            }
            // One owner per binding, or a certificate would stand for whoever was bound last.
            if let Some((owner, _)) =
                tx.get::<(PrincipalName, CertificateBinding)>(&keys::certificate_binding(binding))?
            {
                return Err(LedgerError::refused(
                    Reason::CERTIFICATE_ALREADY_BOUND,
                    format!("{binding} is already bound to {owner}"),
                )
                .with("name", &owner));
            }
            let bound = tx.get::<Vec<CertificateBinding>>(&keys::certificate_bindings_of(name))?.unwrap_or_default();
            if bound.len() >= BINDINGS_PER_PRINCIPAL_MAX {
                return Err(LedgerError::refused(
                    Reason::TOO_MANY_BINDINGS,
                    format!("{name} has {BINDINGS_PER_PRINCIPAL_MAX} certificate bindings, the most it may have"),
                )
                .with("name", name));
            }
            Ok((Event::CertificateBound { name: name.clone(), binding: binding.clone() }, Outcome::Principal(record)))
        }
    }
}

/// A witness's cosignature: its signature must verify. That the head is this ledger's and the
/// witness one it knows is checked before the command is made (`Ledger::add_cosignature`): the
/// tree and the server's configuration are not the state a restore decides entries against.
fn cosign(c: &journal::TreeCosignature, now: Micros) -> Result<(Event, Outcome), LedgerError> {
    let message = super::signing::cosignature_message(c.tree_size, &c.root_hash);
    if c.tree_size == 0 || !super::signing::verify_signature(&c.public_key, &message, &c.signature) {
        return Err(LedgerError::refused(
            Reason::COSIGNATURE_INVALID,
            format!("the cosignature of the tree head of size {} does not verify", c.tree_size),
        )
        .with("treeSize", c.tree_size));
    }
    let record = CosignatureRecord { cosignature: c.clone(), record_time: now };
    Ok((Event::TreeHeadCosigned { cosignature: c.clone() }, Outcome::Cosigned(record)))
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

// Longer than ~70 lines: the registration rules in the order they are checked (number, rights,
// standing, dates, line), each short; splitting would scatter the order that the refusals depend
// on.
fn register(
    tx: &mut Tx<'_>,
    actor: &Principal,
    content: &NewPledge,
    (now, rules): (Micros, u32),
) -> Result<Pledge, LedgerError> {
    let today = crate::domain::pledge::china_date(now);
    match (rules, &actor.role) {
        (0, Role::Office(_)) if content.registered_on > today => {
            return Err(LedgerError::invalid_field("pledge.registeredOn", "must not be after today"));
        }
        (0, _) => {}
        _ => actor.may_date_registration(content.registered_on, today)?,
    }
    for right in &content.rights {
        let holding = tx.get::<super::records::RightHolding>(&keys::active_right(&right.number))?.unwrap_or_default();
        let pledged = if rules == 0 { 0 } else { holding.pledges };
        if pledged as usize >= super::risk_projector::PLEDGES_PER_RIGHT_MAX {
            return Err(LedgerError::refused(
                Reason::RIGHT_PLEDGES_LIMIT_REACHED,
                format!(
                    "{} was pledged {pledged} times: the ledger keeps at most that many pledges of a right",
                    right.number
                ),
            )
            .with("right", &right.number));
        }
        // A right the register has told the ledger of must be the pledgor's, in force, not frozen.
        if let Some(record) = tx.get::<RightRecord>(&keys::right_record(&right.number))?
            && let Some(refusal) = record.refuses(content)
        {
            return Err(refusal);
        }
        if let Some(holder) = holding.active {
            let holder = readable_holder(tx, actor, holder)?;
            let message = match holder {
                Some(id) => format!("{} is already pledged in active pledge {id}", right.number),
                None => format!("{} is already pledged in an active pledge", right.number),
            };
            let error = LedgerError::refused(Reason::RIGHT_ALREADY_PLEDGED, message)
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
        let error = LedgerError::refused(Reason::REGISTRATION_NUMBER_EXISTS, message)
            .with("registrationNumber", number.as_str());
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
            LedgerError::refused(Reason::CREDIT_LINE_NOT_FOUND, format!("credit line {line_id} does not exist"))
                .with("creditLineId", line_id)
        })?;
        line.admits(content)?;
        line.draw(content.secured_amount.fen(), now)?;
    }
    let registration_number = match &content.registration_number {
        Some(n) => n.clone(),
        None => {
            // The projector records the serial with the pledge, so the next one follows it.
            let serial = tx.get::<u64>(keys::META_REGISTRATION_SERIAL)?.unwrap_or(0) + 1;
            RegistrationNumber::assigned(content.registered_on, serial)
        }
    };
    Ok(Pledge::register(Uuid::now_v7(), registration_number, content.clone(), actor.name.clone(), now))
}

/// Decides a restored entry again under the ledger's rules, as its principal at its time, against
/// the state the entries before it built: a dump whose entries the rules would have refused (a
/// principal created by a bank, a pledge moved by another bank, a right pledged twice, a credit
/// line overdrawn, content the parsers refuse) is refused entry by entry, whatever its hashes say.
pub fn validate(tx: &mut Tx<'_>, entry: &Entry) -> Result<(), LedgerError> {
    let refused = |why: String| {
        LedgerError::refused(Reason::ENTRY_REFUSED, format!("entry {}: {why}", entry.sequence))
            .with("sequence", entry.sequence)
    };
    let actor = match tx.get::<PrincipalRecord>(&keys::principal(&entry.principal))? {
        Some(record) if record.principal.revoke_time.is_none() => record.principal,
        Some(_) => return Err(refused(format!("{} was revoked before it", entry.principal))),
        // The names the ledger itself writes under (the first admin's creation, the offline token
        // commands; the writer opening a business day), reserved so that no caller can hold them:
        // they manage principals and open days only.
        None if crate::domain::principal::RESERVED_NAMES.contains(&entry.principal.as_str())
            && matches!(
                entry.event,
                Event::PrincipalCreated { .. }
                    | Event::PrincipalRevoked { .. }
                    | Event::CertificateBound { .. }
                    | Event::DayOpened { .. }
            ) =>
        {
            Principal { name: entry.principal.clone(), role: Role::Admin, create_time: 0, revoke_time: None }
        }
        None => return Err(refused(format!("{} is not a principal", entry.principal))),
    };
    let request_id = entry.request.map(|r| r.id);
    let takes_request = !matches!(
        entry.event,
        Event::PrincipalCreated { .. }
            | Event::PrincipalRevoked { .. }
            | Event::CertificateBound { .. }
            | Event::TreeHeadCosigned { .. }
            | Event::AlertPolicySet { .. }
            | Event::DayOpened { .. }
    );
    if takes_request != request_id.is_some() {
        return Err(refused("a request id on an entry of a kind that has none, or none where one belongs".to_owned()));
    }
    let command = command_of(entry, request_id).map_err(|e| refused(e.to_string()))?;
    authorize(tx, &actor, &command, entry.rules).map_err(|e| refused(e.to_string()))?;
    let floor = tx.get::<u32>(keys::META_RULES)?.unwrap_or(0);
    if entry.rules < floor {
        return Err(refused(format!("decided under rules {}, after entries decided under rules {floor}", entry.rules)));
    }
    let (event, _) = decide(tx, &actor, &command, (entry.at, entry.rules)).map_err(|e| refused(e.to_string()))?;
    // Ids and assigned numbers are the writer's choice: the entry's stand, if not taken.
    let same = match (&event, &entry.event) {
        (Event::PledgeRegistered { pledge: decided }, Event::PledgeRegistered { pledge: recorded }) => {
            decided.content == recorded.content
                && (recorded.content.registration_number.is_none()
                    || decided.registration_number == recorded.registration_number)
                && tx.get::<Uuid>(&keys::registration(&recorded.registration_number))?.is_none()
                && tx.get::<Pledge>(&keys::pledge(recorded.id))?.is_none()
        }
        (Event::CreditLineCreated { line: decided }, Event::CreditLineCreated { line: recorded }) => {
            decided.content == recorded.content && tx.get::<CreditLine>(&keys::credit_line(recorded.id))?.is_none()
        }
        (decided, recorded) if super::risk_decider::assigns_id(recorded) => {
            super::risk_decider::same_but_ids(tx, decided, recorded)?
        }
        (decided, recorded) => decided == recorded,
    };
    if !same {
        return Err(refused("it is not what the rules decide for its request".to_owned()));
    }
    Ok(())
}

/// The request an entry answered.
fn command_of(entry: &Entry, request_id: Option<Uuid>) -> Result<Command, LedgerError> {
    let id = || {
        request_id
            .ok_or_else(|| LedgerError::invalid_field("request", "a pledge or credit-line entry has a request id"))
    };
    Ok(match &entry.event {
        Event::PledgeRegistered { pledge } => {
            // The content rules again, as a request's content is checked.
            let content = NewPledge::new(PledgeDraft::from(pledge.content.clone()))?;
            Command::RegisterPledge { request_id: id()?, pledge: content, channel: Channel::Import }
        }
        Event::PledgeChanged { id: pledge, change } => Command::ChangePledge {
            request_id: id()?,
            id: *pledge,
            amendment: PledgeAmendment {
                secured_amount: Some(change.secured_amount.1),
                debt_term_end: Some(change.debt_term_end.1),
                reason: change.reason.clone(),
                effective_on: Some(change.effective_on),
            },
        },
        Event::PledgeReleased { id: pledge, release } => {
            Command::ReleasePledge { request_id: id()?, id: *pledge, release: release.clone() }
        }
        Event::CreditLineCreated { line } => {
            let c = line.content.clone();
            let content = NewCreditLine::new(c.bank, c.region, c.program, c.limit, c.valid_from, c.valid_to)?;
            Command::CreateCreditLine { request_id: id()?, line: content }
        }
        Event::PrincipalCreated { record } => Command::CreatePrincipal {
            name: record.principal.name.clone(),
            role: record.principal.role.clone(),
            token_hash: record.token_hash,
        },
        Event::PrincipalRevoked { name } => Command::RevokePrincipal { name: name.clone() },
        Event::TreeHeadCosigned { cosignature } => Command::Cosign { cosignature: cosignature.clone() },
        Event::AlertPolicySet { bank, policy } => Command::SetAlertPolicy { bank: bank.clone(), policy: *policy },
        Event::DayOpened { day } => Command::OpenDay { day: *day },
        Event::CertificateBound { name, binding } => {
            Command::BindCertificate { name: name.clone(), binding: binding.clone() }
        }
        risk => Command::Risk { request_id: id()?, command: super::risk_decider::command_of(risk)? },
    })
}

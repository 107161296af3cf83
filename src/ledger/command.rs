//! What the decider takes and gives: a `Command` (a caller's write, parsed), the `Outcome` it
//! answers with, and the lookup of a pledge a command names. Below the deciders (`apply` and
//! `risk_decider` both use it) and above the records; the journal knows none of it.

use super::journal::{self, Entry, Stored};
use super::keys;
use super::principals::{CertificateBinding, PrincipalRecord};
use super::tx::Tx;
use crate::domain::credit_line::{CreditLine, NewCreditLine};
use crate::domain::ident::RightNumber;
use crate::domain::money::Money;
use crate::domain::pledge::{NewPledge, Pledge, PledgeAmendment, Release};
use crate::domain::principal::{PrincipalName, Role, TokenHash};
use crate::domain::programme::{Claim, NewProgramme, Programme};
use crate::domain::right::{RightRecord, RightState};
use crate::domain::risk::{NewDefault, NewResolution, NewValuation, PledgeDefault, Valuation};
use crate::domain::text::Note;
use crate::domain::{LedgerError, Micros};
use chrono::NaiveDate;
use uuid::Uuid;

/// How a registration reached the ledger, which decides who may make it: a call registers a bank's
/// own new pledge; an import stream also carries an office's historical pledges of its region. An
/// entry decided again (a restore, a follower) counts as imported: the journal keeps no channel,
/// and an office's entries came from imports. Not part of the request's fingerprint: the same
/// registration sent both ways is one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Call,
    Import,
}

/// A write request, parsed and valid in itself. The form-0 request fingerprint of entries written
/// before the journal format is computed over a frozen copy of its shape in `journal::legacy`.
#[derive(Debug, Clone)]
pub enum Command {
    RegisterPledge {
        request_id: Uuid,
        pledge: NewPledge,
        channel: Channel,
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
    /// The risk side (`risk_decider`): rights' states, defaults, valuations, programmes, claims.
    Risk {
        request_id: Uuid,
        command: RiskCommand,
    },
    /// Records a witness's cosignature of a tree head. Idempotent by the head and the witness's
    /// key, not by a request id: the same cosignature again is answered as recorded.
    Cosign {
        cosignature: journal::TreeCosignature,
    },
    /// Sets a bank's alert thresholds. Not idempotent by request id: setting the same policy again
    /// leaves the same state (a PUT), so a retry needs no record.
    SetAlertPolicy {
        bank: crate::domain::ident::CreditCode,
        policy: crate::domain::alert::AlertPolicy,
    },
    /// Opens business day `day`: the writer's own, never a caller's (`alerts::day_to_open`).
    OpenDay {
        day: NaiveDate,
    },
}

/// A risk-side write, parsed and valid in itself; each is idempotent by its request id.
#[derive(Debug, Clone)]
pub enum RiskCommand {
    RecordRight {
        number: RightNumber,
        state: RightState,
    },
    RecordDefault {
        id: Uuid,
        default: NewDefault,
    },
    ResolveDefault {
        id: Uuid,
        resolution: NewResolution,
    },
    RecordValuation {
        id: Uuid,
        valuation: NewValuation,
    },
    CreateProgramme {
        programme: NewProgramme,
    },
    FileClaim {
        programme_id: Uuid,
        pledge_id: Uuid,
        filed_on: NaiveDate,
    },
    DecideClaim {
        id: Uuid,
        approved: bool,
        decided_on: NaiveDate,
        note: Note,
    },
    PayClaim {
        id: Uuid,
        paid_on: NaiveDate,
        amount: Money,
    },
    /// Withdraws the state of right `number` recorded at `recorded_at` (its entry's time).
    WithdrawRightState {
        number: RightNumber,
        recorded_at: Micros,
        note: Note,
    },
}

impl RiskCommand {
    fn canonical(&self) -> journal::format::Request<'_> {
        use journal::format::Request as R;
        match self {
            RiskCommand::RecordRight { number, state } => R::RecordRight { number, state },
            RiskCommand::RecordDefault { id, default } => R::RecordDefault { id: *id, default },
            RiskCommand::ResolveDefault { id, resolution } => R::ResolveDefault { id: *id, resolution },
            RiskCommand::RecordValuation { id, valuation } => R::RecordValuation { id: *id, valuation },
            RiskCommand::CreateProgramme { programme } => R::CreateProgramme(programme),
            RiskCommand::FileClaim { programme_id, pledge_id, filed_on } => {
                R::FileClaim { programme_id: *programme_id, pledge_id: *pledge_id, filed_on: *filed_on }
            }
            RiskCommand::DecideClaim { id, approved, decided_on, note } => {
                R::DecideClaim { id: *id, approved: *approved, decided_on: *decided_on, note }
            }
            RiskCommand::PayClaim { id, paid_on, amount } => {
                R::PayClaim { id: *id, paid_on: *paid_on, amount: *amount }
            }
            RiskCommand::WithdrawRightState { number, recorded_at, note } => {
                R::WithdrawRightState { number, recorded_at: *recorded_at, note }
            }
        }
    }
}

impl Command {
    /// The command as its fingerprint sees it; `None` for commands without a request id.
    pub(crate) fn canonical(&self) -> Option<journal::format::Request<'_>> {
        use journal::format::Request;
        match self {
            Command::RegisterPledge { pledge, .. } => Some(Request::RegisterPledge(pledge)),
            Command::ChangePledge { id, amendment, .. } => Some(Request::ChangePledge { id: *id, amendment }),
            Command::ReleasePledge { id, release, .. } => Some(Request::ReleasePledge { id: *id, release }),
            Command::CreateCreditLine { line, .. } => Some(Request::CreateCreditLine(line)),
            Command::Risk { command, .. } => Some(command.canonical()),
            Command::CreatePrincipal { .. }
            | Command::RevokePrincipal { .. }
            | Command::BindCertificate { .. }
            | Command::Cosign { .. }
            | Command::SetAlertPolicy { .. }
            | Command::OpenDay { .. } => None,
        }
    }

    pub(crate) fn request_id(&self) -> Option<Uuid> {
        match self {
            Command::RegisterPledge { request_id, .. }
            | Command::ChangePledge { request_id, .. }
            | Command::ReleasePledge { request_id, .. }
            | Command::CreateCreditLine { request_id, .. }
            | Command::Risk { request_id, .. } => Some(*request_id),
            Command::CreatePrincipal { .. }
            | Command::RevokePrincipal { .. }
            | Command::BindCertificate { .. }
            | Command::Cosign { .. }
            | Command::SetAlertPolicy { .. }
            | Command::OpenDay { .. } => None,
        }
    }
}

/// What a write produced: the resource as it now is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The pledge with its risk record (flags, default, valuations) as the write left them.
    Pledge(Pledge, Box<super::risk_projector::PledgeRisk>),
    CreditLine(CreditLine),
    Principal(PrincipalRecord),
    Right(RightRecord),
    Default(PledgeDefault),
    Valuation(Valuation),
    Programme(Programme),
    Claim(Claim),
    Cosigned(super::records::CosignatureRecord),
    AlertPolicy(crate::domain::alert::PolicyRecord),
    DayOpened(NaiveDate),
}

/// The resource one kind of write answers with, taken out of its `Outcome` by `Ledger::write_as`:
/// a handler names the type it renders and never matches on outcomes. That every command gives
/// the outcome of its own kind is the decider's invariant; a break of it is one `Internal` error,
/// in `write_as`.
pub trait Answer: Sized {
    /// The resource's name, for that error.
    const RESOURCE: &'static str;
    fn from_outcome(outcome: Outcome) -> Option<Self>;
}

/// A pledge write's answer: the pledge and its risk record as the write left them.
pub type PledgeAnswer = (Pledge, Box<super::risk_projector::PledgeRisk>);

impl Answer for PledgeAnswer {
    const RESOURCE: &'static str = "pledge";
    fn from_outcome(outcome: Outcome) -> Option<Self> {
        match outcome {
            Outcome::Pledge(pledge, risk) => Some((pledge, risk)),
            _ => None,
        }
    }
}

/// `Answer` for the outcomes that hold one resource.
macro_rules! answer {
    ($($variant:ident($type:ty) = $name:literal),* $(,)?) => {$(
        impl Answer for $type {
            const RESOURCE: &'static str = $name;
            fn from_outcome(outcome: Outcome) -> Option<Self> {
                match outcome {
                    Outcome::$variant(resource) => Some(resource),
                    _ => None,
                }
            }
        }
    )*};
}

answer! {
    CreditLine(CreditLine) = "credit line",
    Principal(PrincipalRecord) = "principal",
    Right(RightRecord) = "right",
    Default(PledgeDefault) = "default",
    Valuation(Valuation) = "valuation",
    Programme(Programme) = "programme",
    Claim(Claim) = "claim",
    Cosigned(super::records::CosignatureRecord) = "cosignature",
    AlertPolicy(crate::domain::alert::PolicyRecord) = "alert policy",
}

/// The result of an executed command.
#[derive(Debug)]
pub enum Executed {
    /// A retry of a committed request: its response again, nothing written.
    Replayed(Outcome),
    /// Accepted: the entry to append (sealed after the head given to `execute`), its derived
    /// records in the transaction.
    Appended { outcome: Outcome, entry: Box<Entry>, stored: Stored },
}

pub(crate) fn load_pledge(tx: &Tx<'_>, id: Uuid) -> Result<Pledge, LedgerError> {
    tx.get(&keys::pledge(id))?.ok_or(LedgerError::NotFound { resource: "pledge", id: id.to_string() })
}

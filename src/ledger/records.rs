//! The records derived state holds that more than one floor reads: what a request id stands for
//! (`RequestRecord`), a right's holding, a pledgor's pledges, a pledge's registration fact. The
//! projector writes them, the decider and the queries read them; this module imports neither.

use super::keys;
use super::tx::Tx;
use crate::domain::LedgerError;
use crate::domain::asof;
use crate::domain::exposure::Bucket;
use crate::domain::ident::CreditCode;
use crate::domain::pledge::Pledge;
use crate::domain::statistics::Fact;
use uuid::Uuid;

/// What a request id stands for once its write is committed: the fingerprint of the request
/// (in the canonical form `form`), the entry it wrote, and the resource, whose state right after
/// that entry is the response a retry gets again (`decider::replayed_outcome`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RequestRecord {
    pub fingerprint: [u8; 32],
    pub form: u8,
    pub sequence: u64,
    pub at: crate::domain::Micros,
    pub resource: Resource,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Resource {
    Pledge(Uuid),
    CreditLine(Uuid),
    Right(crate::domain::ident::RightNumber),
    /// The default of a pledge.
    Default(Uuid),
    Valuation {
        pledge: Uuid,
        id: Uuid,
    },
    Programme(Uuid),
    Claim(Uuid),
}

pub(crate) fn broken(what: String) -> LedgerError {
    LedgerError::Internal(what)
}

/// The pledge an entry changes: derived state holds it, or the journal is inconsistent.
pub(crate) fn load_pledge(tx: &Tx<'_>, id: Uuid) -> Result<Pledge, LedgerError> {
    tx.get(&keys::pledge(id))?.ok_or_else(|| broken(format!("an entry changes pledge {id}, which is missing")))
}

/// A right's holding (`keys::active_right`): the active pledge holding it, if any ("one active
/// pledge per right"), and how many pledges it has been part of, which bounds the work of a
/// recording of its state (`risk::PLEDGES_PER_RIGHT_MAX`). One key per right, written by its
/// registrations and releases only: the count costs no key of its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RightHolding {
    pub active: Option<Uuid>,
    pub pledges: u32,
}

/// The active pledge holding `number`, if any.
pub(crate) fn active_holder(
    tx: &Tx<'_>,
    number: &crate::domain::ident::RightNumber,
) -> Result<Option<Uuid>, LedgerError> {
    Ok(tx.get::<RightHolding>(&keys::active_right(number))?.and_then(|h| h.active))
}

/// One of a pledgor's pledges as its distinct-enterprise counts need it: its in-force interval
/// and what decides the rows it counts in (county, pledgee, right kinds; none of them changes
/// after registration). The pledgor's record (`keys::asof_intervals`) lists them in journal
/// order: ~45 bytes per pledge, where an interval list per row cost ~20 times that (the largest
/// family of a checkpoint at 1M, bench/RESULTS.md 2026-12-05).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PledgorPledge {
    pub id: Uuid,
    pub start: asof::Day,
    pub end: asof::Day,
    pub county: crate::domain::region::CountyCode,
    pub pledgee: CreditCode,
    /// Bit `RightKind::tag()` for each kind among its rights.
    pub kinds: u8,
}

impl PledgorPledge {
    pub(crate) fn of(p: &Pledge) -> PledgorPledge {
        let (start, end) = asof::interval(p);
        let kinds = p.content.rights.iter().fold(0u8, |bits, r| bits | (1 << r.kind().tag()));
        PledgorPledge {
            id: p.id,
            start,
            end,
            county: p.content.county,
            pledgee: p.content.pledgee.credit_code.clone(),
            kinds,
        }
    }

    /// Whether the pledge counts in `bucket`: the rows `exposure::pledge_shares` names, by the
    /// domain's one predicate.
    pub(crate) fn counts_in(&self, bucket: &Bucket) -> bool {
        let holds = |kind: crate::domain::ident::RightKind| self.kinds & (1 << kind.tag()) != 0;
        crate::domain::exposure::counts_in(bucket, self.county.region(), &self.pledgee, holds)
    }
}

/// A pledgor's pledges, in journal order.
pub(crate) type PledgorPledges = Vec<PledgorPledge>;

pub(crate) fn registration_fact(pledge: &Pledge) -> Fact {
    let c = &pledge.content;
    let mut rights = [0u32; 5];
    for right in &c.rights {
        let i = crate::domain::ident::RightKind::ALL.iter().position(|k| *k == right.kind()).expect("a known kind");
        rights[i] += 1;
    }
    Fact {
        county: c.county,
        registered_on: c.registered_on,
        amount: c.secured_amount,
        pledgor: c.pledgor.credit_code.clone(),
        pledgee: c.pledgee.credit_code.clone(),
        rights,
    }
}

/// A witness's cosignature of a tree head (`keys::cosignature`), and when the journal recorded it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CosignatureRecord {
    pub cosignature: super::journal::TreeCosignature,
    pub record_time: crate::domain::Micros,
}

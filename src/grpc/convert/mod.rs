//! Proto <-> domain conversion, in one place, by service. Requests are parsed field by field into
//! domain values (a `NewPledge`, a `NewCreditLine`, a filter) that the handlers authorize on and
//! turn into commands; every problem is collected as a field violation named by its JSON path, so
//! a caller sees all of them at once. Responses are rendered from domain records. This module
//! holds what the services share: the violation collector and the common field parsers.

mod admin;
mod alerts;
mod credit_lines;
mod exposure;
mod pledges;
mod risk;
mod transparency;

pub use admin::*;
pub use alerts::*;
pub use credit_lines::*;
pub use exposure::*;
pub use pledges::*;
pub use risk::*;
pub use transparency::*;

use crate::domain::ident::{CreditCode, RightKind};
use crate::domain::pledge::Party;
use crate::domain::region::Region;
use crate::domain::text::Name;
use crate::domain::{FieldViolation, LedgerError, Micros};
use crate::proto as pb;
use std::fmt::Display;
use uuid::Uuid;

/// Collects field violations while a request is parsed.
#[derive(Debug, Default)]
struct Fields {
    violations: Vec<FieldViolation>,
}

impl Fields {
    fn check<T, E: Display>(&mut self, field: impl Into<String>, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.violations.push(FieldViolation::new(field, e));
                None
            }
        }
    }

    fn fail(&mut self, field: impl Into<String>, description: impl Display) {
        self.violations.push(FieldViolation::new(field, description));
    }

    fn finish(self) -> Result<(), LedgerError> {
        if self.violations.is_empty() { Ok(()) } else { Err(LedgerError::invalid(self.violations)) }
    }
}

/// A value missing after `Fields::finish` found no violation: a parser here that forgot to record
/// one. Answered INTERNAL (and logged by the status table), never a panic on a request's path.
fn unrecorded() -> LedgerError {
    LedgerError::Internal("a request field is missing without a recorded violation".to_owned())
}

fn uuid(text: &str) -> Result<Uuid, &'static str> {
    if text.trim().is_empty() {
        return Err("is required");
    }
    Uuid::parse_str(text.trim()).map_err(|_| "must be a UUID such as \"0190c8f2-8d1a-7cc0-b6a4-1f2e3d4c5b6a\"")
}

pub fn id(field: &str, text: &str) -> Result<Uuid, LedgerError> {
    uuid(text).map_err(|e| LedgerError::invalid_field(field, e))
}

fn right_kind(value: i32) -> Result<RightKind, &'static str> {
    match pb::RightKind::try_from(value) {
        Ok(pb::RightKind::InventionPatent) => Ok(RightKind::InventionPatent),
        Ok(pb::RightKind::UtilityModel) => Ok(RightKind::UtilityModel),
        Ok(pb::RightKind::DesignPatent) => Ok(RightKind::DesignPatent),
        Ok(pb::RightKind::Trademark) => Ok(RightKind::Trademark),
        Ok(pb::RightKind::Copyright) => Ok(RightKind::Copyright),
        Ok(pb::RightKind::Unspecified) | Err(_) => {
            Err("must be INVENTION_PATENT, UTILITY_MODEL, DESIGN_PATENT, TRADEMARK or COPYRIGHT")
        }
    }
}

fn kind_to_pb(kind: RightKind) -> pb::RightKind {
    match kind {
        RightKind::InventionPatent => pb::RightKind::InventionPatent,
        RightKind::UtilityModel => pb::RightKind::UtilityModel,
        RightKind::DesignPatent => pb::RightKind::DesignPatent,
        RightKind::Trademark => pb::RightKind::Trademark,
        RightKind::Copyright => pb::RightKind::Copyright,
    }
}

fn party(fields: &mut Fields, path: &str, party: Option<&pb::Party>) -> Option<Party> {
    let Some(p) = party else {
        fields.fail(path, "is required");
        return None;
    };
    let name = fields.check(format!("{path}.name"), Name::parse(&p.name));
    let credit_code = fields.check(format!("{path}.creditCode"), CreditCode::parse(&p.credit_code));
    Some(Party { name: name?, credit_code: credit_code? })
}

fn optional_uuid(fields: &mut Fields, path: &str, text: &str) -> Option<Option<Uuid>> {
    if text.trim().is_empty() { Some(None) } else { fields.check(path, uuid(text)).map(Some) }
}

fn prefix_fields(error: LedgerError, prefix: &str) -> LedgerError {
    match error {
        LedgerError::Invalid { reason, violations } => LedgerError::Invalid {
            reason,
            violations: violations
                .into_iter()
                .map(|v| FieldViolation { field: format!("{prefix}{}", v.field), description: v.description })
                .collect(),
        },
        other => other,
    }
}

fn optional_region(f: &mut Fields, text: &str) -> Option<Option<Region>> {
    if text.trim().is_empty() { Some(None) } else { f.check("regionCode", Region::parse(text)).map(Some) }
}

fn optional_code(f: &mut Fields, field: &str, text: &str) -> Option<Option<CreditCode>> {
    if text.trim().is_empty() { Some(None) } else { f.check(field, CreditCode::parse(text)).map(Some) }
}

fn timestamp(micros: Micros) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

fn party_to_pb(p: &Party) -> pb::Party {
    pb::Party { name: p.name.to_string(), credit_code: p.credit_code.to_string() }
}

fn optional_timestamp(micros: Option<Micros>) -> Option<prost_types::Timestamp> {
    micros.map(timestamp)
}

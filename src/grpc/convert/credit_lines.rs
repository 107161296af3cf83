//! Credit lines: creation (a `NewCreditLine`) and listing filters in; credit lines out.

use super::*;
use crate::domain::credit_line::{CreditLine, NewCreditLine};
use crate::domain::money::Money;
use crate::domain::text::{Note, parse_date};
use crate::ledger::query::{self, CreditLineFilter};

/// A credit line to create, with its request id: the handler authorizes on the line itself.
pub fn credit_line_creation(request: &pb::CreateCreditLineRequest) -> Result<(Uuid, NewCreditLine), LedgerError> {
    let mut f = Fields::default();
    let request_id = f.check("requestId", uuid(&request.request_id));
    let Some(l) = request.credit_line.as_ref() else {
        f.fail("creditLine", "is required");
        return Err(f.finish().expect_err("a violation was recorded"));
    };
    let bank = party(&mut f, "creditLine.bank", l.bank.as_ref());
    let region = if l.region_code.trim().is_empty() {
        f.fail("creditLine.regionCode", "is required (a province, city or county code)");
        None
    } else {
        f.check("creditLine.regionCode", Region::parse(&l.region_code))
    };
    let program = f.check("creditLine.program", Note::parse(&l.program));
    let limit = f.check("creditLine.limit", Money::parse_positive(&l.limit));
    let valid_from = f.check("creditLine.validFrom", parse_date(&l.valid_from));
    let valid_to = f.check("creditLine.validTo", parse_date(&l.valid_to));
    f.finish()?;
    let (Some(request_id), Some(bank), Some(region), Some(program), Some(limit), Some(valid_from), Some(valid_to)) =
        (request_id, bank, region, program, limit, valid_from, valid_to)
    else {
        return Err(unrecorded());
    };
    let line = NewCreditLine::new(bank, region, program, limit, valid_from, valid_to)
        .map_err(|e| prefix_fields(e, "creditLine."))?;
    Ok((request_id, line))
}

pub fn credit_line_filter(request: &pb::ListCreditLinesRequest) -> Result<(CreditLineFilter, usize), LedgerError> {
    let mut f = Fields::default();
    let page_size = f.check("pageSize", query::page_size(request.page_size).map_err(|_| "must not be negative"));
    let region = optional_region(&mut f, &request.region_code);
    let bank = optional_code(&mut f, "bankCreditCode", &request.bank_credit_code);
    f.finish()?;
    let (Some(page_size), Some(region), Some(bank)) = (page_size, region, bank) else {
        return Err(unrecorded());
    };
    Ok((CreditLineFilter { region, bank }, page_size))
}

pub fn credit_line_to_pb(l: &CreditLine) -> pb::CreditLine {
    let c = &l.content;
    pb::CreditLine {
        id: l.id.to_string(),
        bank: Some(party_to_pb(&c.bank)),
        region_code: c.region.code_string(),
        program: c.program.to_string(),
        limit: c.limit.to_string(),
        drawn: l.drawn.to_string(),
        available: l.available().to_string(),
        valid_from: c.valid_from.to_string(),
        valid_to: c.valid_to.to_string(),
        create_time: Some(timestamp(l.create_time)),
        update_time: Some(timestamp(l.update_time)),
        created_by: l.created_by.to_string(),
    }
}

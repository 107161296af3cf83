//! Aggregates as counters: where each figure of an exposure row and of an as-of delta sits in the
//! `store::Counters` the projector adds to (blind, `Tx::add`) and the queries read.
//!
//! The layout is part of the derived layout (`DERIVED_LAYOUT`): changing an index misreads every
//! stored aggregate, so it changes only with a layout bump (a rebuild from the journal).
//!
//! | record | cells |
//! |---|---|
//! | exposure row (`keys::exposure`) | `RowDelta`'s fields in order, 0-13 |
//! | year sums (`keys::asof`, `keys::programme_asof`) | the year's total at 0-15, month `m` (0-11) at `16 (1 + m)` + field |
//! | month days (`keys::asof_days`, `keys::programme_asof_days`) | day of the year `d` at `16 d` + field |
//! | a bank's lending (`keys::lending`) | fen at 0 |
//!
//! An as-of delta's fields: 0 secured, 1 pledges, 2 rights, 3 enterprises, then the risk columns
//! 4-11 in `RiskAsOf`'s order; 12-15 are free.

use super::projector::{AsOfDelta, RiskAsOf};
use crate::domain::LedgerError;
use crate::domain::exposure::{Row, RowDelta};
use crate::domain::money::Money;
use crate::store::Counters;

/// Cells per as-of delta.
pub const STRIDE: u32 = 16;
const ASOF_FIELDS: u32 = 12;
const _: () = assert!(ASOF_FIELDS <= STRIDE);

fn broken(what: impl std::fmt::Display) -> LedgerError {
    LedgerError::Internal(format!("stored aggregate: {what}"))
}

fn asof_fields(d: &AsOfDelta) -> [i128; ASOF_FIELDS as usize] {
    let r = d.risk.as_deref().copied().unwrap_or_default();
    [
        d.secured_fen,
        d.pledges.into(),
        d.rights.into(),
        d.enterprises.into(),
        r.at_risk_fen,
        r.at_risk_pledges.into(),
        r.defaulted_fen,
        r.defaulted_pledges.into(),
        r.appraised_fen,
        r.appraised_secured_fen,
        r.claimed_fen,
        r.paid_fen,
    ]
}

/// A delta's cells, on the stack: the projector adds tens of these per registration, and a
/// vector each was a tenth of the writer's allocations.
pub struct Cells {
    cells: [(u32, i128); 2 * ASOF_FIELDS as usize],
    len: usize,
}

impl Cells {
    fn new() -> Cells {
        Cells { cells: [(0, 0); 2 * ASOF_FIELDS as usize], len: 0 }
    }

    /// The fields of `d` that are not zero, at `base` + field; called with ascending bases.
    fn push_asof(&mut self, base: u32, d: &AsOfDelta) {
        for (i, v) in asof_fields(d).into_iter().enumerate() {
            if v != 0 {
                self.cells[self.len] = (base + i as u32, v);
                self.len += 1;
            }
        }
    }

    /// In the canonical form (`Counters::from_sorted`).
    pub fn as_slice(&self) -> &[(u32, i128)] {
        &self.cells[..self.len]
    }
}

/// What a dated delta adds to its year's sums: the total and the month's.
pub fn year_cells(month: u8, d: &AsOfDelta) -> Cells {
    debug_assert!(month < 12);
    let mut cells = Cells::new();
    cells.push_asof(0, d);
    cells.push_asof(STRIDE * (1 + u32::from(month)), d);
    cells
}

/// What a dated delta adds to its month's days.
pub fn days_cells(day_of_year: u16, d: &AsOfDelta) -> Cells {
    debug_assert!(day_of_year < 366);
    let mut cells = Cells::new();
    cells.push_asof(STRIDE * u32::from(day_of_year), d);
    cells
}

/// The cells of a year's total.
pub const YEAR_TOTAL: std::ops::Range<u32> = 0..STRIDE;

/// The cells of the months before `month` of a year's sums.
pub fn months_before(month: u8) -> std::ops::Range<u32> {
    STRIDE..STRIDE * (1 + u32::from(month))
}

/// The cells of the days of a month's record up to `day_of_year`, included.
pub fn days_through(day_of_year: u16) -> std::ops::Range<u32> {
    0..STRIDE * (1 + u32::from(day_of_year))
}

fn narrow(v: i128) -> Result<i64, LedgerError> {
    i64::try_from(v).map_err(|_| broken(format!("a count of {v}")))
}

/// Adds the cells of `range` to `sum`, each to its field.
pub fn add_cells(sum: &mut AsOfDelta, cells: &[(u32, i128)], range: std::ops::Range<u32>) -> Result<(), LedgerError> {
    let mut fields = [0i128; ASOF_FIELDS as usize];
    let mut any = false;
    for (index, v) in cells.iter().filter(|(i, _)| range.contains(i)) {
        let field = (index % STRIDE) as usize;
        let slot = fields.get_mut(field).ok_or_else(|| broken(format!("cell {index}")))?;
        *slot = slot.checked_add(*v).ok_or_else(|| broken("a sum beyond i128"))?;
        any = true;
    }
    if any {
        let risk = RiskAsOf {
            at_risk_fen: fields[4],
            at_risk_pledges: narrow(fields[5])?,
            defaulted_fen: fields[6],
            defaulted_pledges: narrow(fields[7])?,
            appraised_fen: fields[8],
            appraised_secured_fen: fields[9],
            claimed_fen: fields[10],
            paid_fen: fields[11],
        };
        sum.add(&AsOfDelta {
            secured_fen: fields[0],
            pledges: narrow(fields[1])?,
            rights: narrow(fields[2])?,
            enterprises: narrow(fields[3])?,
            risk: (risk != RiskAsOf::default()).then(|| Box::new(risk)),
        });
    }
    Ok(())
}

/// Decodes stored counters for the cells of `range` only (a year's total skips its months).
pub fn decode_range(key: &[u8], bytes: &[u8], range: std::ops::Range<u32>) -> Result<Vec<(u32, i128)>, LedgerError> {
    let cells = Counters::decode_below(bytes, range.end)
        .map_err(|e| broken(format!("{} at {}", e, String::from_utf8_lossy(key))))?;
    Ok(cells.into_iter().filter(|(i, _)| range.contains(i)).collect())
}

fn row_fields(d: &RowDelta) -> [i128; 14] {
    [
        d.secured_fen,
        d.pledges.into(),
        d.enterprises.into(),
        d.rights.into(),
        d.limit_fen,
        d.drawn_fen,
        d.at_risk_fen,
        d.at_risk_pledges.into(),
        d.defaulted_fen,
        d.defaulted_pledges.into(),
        d.appraised_fen,
        d.appraised_secured_fen,
        d.claimed_fen,
        d.paid_fen,
    ]
}

/// What a row delta adds to its row.
pub fn row_delta(d: &RowDelta) -> Counters {
    Counters::from_sorted(
        row_fields(d).into_iter().enumerate().filter(|(_, v)| *v != 0).map(|(i, v)| (i as u32, v)).collect(),
    )
}

/// The row stored at `key`: its counters, checked against the row's ranges (a count or amount
/// below zero means the aggregates no longer match the records).
pub fn row(key: &[u8], bytes: &[u8]) -> Result<Row, LedgerError> {
    let counters = Counters::decode(bytes).map_err(|e| broken(format!("{e} at {}", String::from_utf8_lossy(key))))?;
    let mut f = [0i128; 14];
    for (index, v) in counters.cells() {
        *f.get_mut(*index as usize).ok_or_else(|| broken(format!("row cell {index}")))? = *v;
    }
    let delta = RowDelta {
        secured_fen: f[0],
        pledges: narrow(f[1])?,
        enterprises: narrow(f[2])?,
        rights: narrow(f[3])?,
        limit_fen: f[4],
        drawn_fen: f[5],
        at_risk_fen: f[6],
        at_risk_pledges: narrow(f[7])?,
        defaulted_fen: f[8],
        defaulted_pledges: narrow(f[9])?,
        appraised_fen: f[10],
        appraised_secured_fen: f[11],
        claimed_fen: f[12],
        paid_fen: f[13],
    };
    Row::default().apply(&delta).map_err(|_| broken(format!("row out of range at {}", String::from_utf8_lossy(key))))
}

/// What an amount adds to a one-amount record (a bank's lending).
pub fn amount(delta_fen: i128) -> Counters {
    [(0, delta_fen)].into_iter().collect()
}

/// The amount at `key` (zero when none), as the writer sees it.
pub fn lending(tx: &super::tx::Tx<'_>, key: &[u8]) -> Result<Money, LedgerError> {
    let Some(bytes) = tx.get_raw(key)? else { return Ok(Money::ZERO) };
    let counters = Counters::decode(&bytes).map_err(|e| broken(format!("{e} at {}", String::from_utf8_lossy(key))))?;
    match counters.cells() {
        [(0, fen)] => Money::from_fen(*fen).ok_or_else(|| broken(format!("lending of {fen} fen"))),
        other => Err(broken(format!("lending cells {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_dated_sums_round_trip_through_their_cells() {
        let d =
            RowDelta { secured_fen: 12_345, pledges: 2, rights: 3, enterprises: 1, paid_fen: 7, ..RowDelta::default() };
        let row = row(b"A", &row_delta(&d).encode()).unwrap();
        assert_eq!(row, Row::default().apply(&d).unwrap());
        let negative = RowDelta { pledges: -1, ..RowDelta::default() };
        assert!(super::row(b"A", &row_delta(&negative).encode()).is_err(), "a count below zero is broken state");

        let a = AsOfDelta { secured_fen: 500, pledges: 1, rights: 2, enterprises: 1, risk: None };
        let b = AsOfDelta::of(&RowDelta { secured_fen: -200, pledges: -1, claimed_fen: 9, ..RowDelta::default() });
        let counters = |cells: Cells| Counters::from_sorted(cells.as_slice().to_vec());
        let mut year = counters(year_cells(3, &a));
        year.add_cells(year_cells(7, &b).as_slice()).unwrap();
        let bytes = year.encode();
        let total = |range: std::ops::Range<u32>| {
            let mut sum = AsOfDelta::default();
            add_cells(&mut sum, &decode_range(b"X", &bytes, range.clone()).unwrap(), range).unwrap();
            sum
        };
        let mut both = a.clone();
        both.add(&b);
        assert_eq!(total(YEAR_TOTAL), both);
        assert_eq!(total(months_before(3)), AsOfDelta::default());
        assert_eq!(total(months_before(4)), a);
        assert_eq!(total(months_before(8)), both);
        let mut days = counters(days_cells(40, &a));
        days.add_cells(days_cells(45, &b).as_slice()).unwrap();
        let mut sum = AsOfDelta::default();
        add_cells(&mut sum, days.cells(), days_through(44)).unwrap();
        assert_eq!(sum, a);
    }
}

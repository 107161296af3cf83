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

use super::keys;
use super::tx::Tx;
use crate::domain::LedgerError;
use crate::domain::asof;
use crate::domain::exposure::Bucket;
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

/// A dated delta of an as-of row, summed per year, month and day: the pledges in force, and the
/// risk columns (`asof_risk`) when any moved.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AsOfDelta {
    pub secured_fen: i128,
    pub pledges: i64,
    pub rights: i64,
    pub enterprises: i64,
    /// `None` when zero, which it is for almost every delta: eight zeros in each of the millions of
    /// day and month entries would cost a quarter more disk per pledge, and inline they would
    /// triple the size of the year sums the writer copies for every command that touches a hot
    /// row (15% of import throughput, measured). Never `Some` of zeros, so a rebuild writes the
    /// same bytes.
    pub risk: Option<Box<RiskAsOf>>,
}

/// The risk columns' part of an as-of delta.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RiskAsOf {
    pub at_risk_fen: i128,
    pub at_risk_pledges: i64,
    pub defaulted_fen: i128,
    pub defaulted_pledges: i64,
    pub appraised_fen: i128,
    pub appraised_secured_fen: i128,
    pub claimed_fen: i128,
    pub paid_fen: i128,
}

impl RiskAsOf {
    fn add(&mut self, other: &RiskAsOf) {
        self.at_risk_fen += other.at_risk_fen;
        self.at_risk_pledges += other.at_risk_pledges;
        self.defaulted_fen += other.defaulted_fen;
        self.defaulted_pledges += other.defaulted_pledges;
        self.appraised_fen += other.appraised_fen;
        self.appraised_secured_fen += other.appraised_secured_fen;
        self.claimed_fen += other.claimed_fen;
        self.paid_fen += other.paid_fen;
    }

    /// `None` for zeros: the one encoding of "nothing moved".
    fn non_zero(self) -> Option<Box<RiskAsOf>> {
        (self != RiskAsOf::default()).then(|| Box::new(self))
    }
}

impl AsOfDelta {
    /// Field by field, in place: queries fold many of these per answer.
    pub fn add(&mut self, other: &AsOfDelta) {
        self.secured_fen += other.secured_fen;
        self.pledges += other.pledges;
        self.rights += other.rights;
        self.enterprises += other.enterprises;
        if let Some(more) = &other.risk {
            let mut risk = self.risk.as_deref().copied().unwrap_or_default();
            risk.add(more);
            self.risk = risk.non_zero();
        }
    }

    /// The delta of the fields an as-of row has (no credit lines: they are not dated).
    pub fn of(d: &RowDelta) -> AsOfDelta {
        let risk = RiskAsOf {
            at_risk_fen: d.at_risk_fen,
            at_risk_pledges: d.at_risk_pledges,
            defaulted_fen: d.defaulted_fen,
            defaulted_pledges: d.defaulted_pledges,
            appraised_fen: d.appraised_fen,
            appraised_secured_fen: d.appraised_secured_fen,
            claimed_fen: d.claimed_fen,
            paid_fen: d.paid_fen,
        };
        AsOfDelta {
            secured_fen: d.secured_fen,
            pledges: d.pledges,
            rights: d.rights,
            enterprises: d.enterprises,
            risk: risk.non_zero(),
        }
    }

    pub fn row_delta(&self) -> RowDelta {
        let risk = self.risk.as_deref().copied().unwrap_or_default();
        RowDelta {
            secured_fen: self.secured_fen,
            pledges: self.pledges,
            rights: self.rights,
            enterprises: self.enterprises,
            at_risk_fen: risk.at_risk_fen,
            at_risk_pledges: risk.at_risk_pledges,
            defaulted_fen: risk.defaulted_fen,
            defaulted_pledges: risk.defaulted_pledges,
            appraised_fen: risk.appraised_fen,
            appraised_secured_fen: risk.appraised_secured_fen,
            claimed_fen: risk.claimed_fen,
            paid_fen: risk.paid_fen,
            ..RowDelta::default()
        }
    }
}

pub(crate) fn add_asof_delta(
    tx: &mut Tx<'_>,
    bucket: &Bucket,
    day: asof::Day,
    delta: &AsOfDelta,
) -> Result<(), LedgerError> {
    add_asof_delta_of_body(tx, &keys::bucket_body(bucket), day, delta)
}

/// `add_asof_delta` of the bucket whose `keys::bucket_body` is `body`.
pub(crate) fn add_asof_delta_of_body(
    tx: &mut Tx<'_>,
    body: &[u8],
    day: asof::Day,
    delta: &AsOfDelta,
) -> Result<(), LedgerError> {
    add_dated(
        tx,
        |year| keys::asof_of_body(body, year),
        |year, month| keys::asof_days_of_body(body, year, month),
        day,
        delta,
    )
}

/// Adds `delta` on `day` to the year sums at `year_key(year)` and to the days of its month at
/// `days_key(year, month)` (`sums` has their cells), blind.
pub(crate) fn add_dated(
    tx: &mut Tx<'_>,
    year_key: impl FnOnce(u32) -> Vec<u8>,
    days_key: impl FnOnce(u32, u8) -> Vec<u8>,
    day: asof::Day,
    delta: &AsOfDelta,
) -> Result<(), LedgerError> {
    let (year, month, day_of_year) = asof::calendar(day);
    tx.add_cells(&year_key(year), super::sums::year_cells(month, delta).as_slice())?;
    tx.add_cells(&days_key(year, month), super::sums::days_cells(day_of_year, delta).as_slice())
}

/// Adds `delta` to the bucket's row, blind. Its ranges are checked when it is read
/// (`sums::row`): the projector's deltas keep them by construction, and `verify` compares the
/// rows with a rebuild.
pub(crate) fn update_row(tx: &mut Tx<'_>, bucket: &Bucket, delta: &RowDelta) -> Result<(), LedgerError> {
    tx.add(keys::exposure(bucket), super::sums::row_delta(delta))
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

//! As-of exposure in business time: a pledge is in force at the end of day `d` when it was
//! registered on `d` or before and not released by `d`; its secured amount then is the one set by
//! the last change effective on `d` or before. Each pledge event becomes dated deltas (points);
//! summing the points up to `d` gives the exposure as of `d`. Distinct enterprises are not
//! additive, so each (row, pledgor) keeps its pledges' in-force intervals, and a change of their
//! union becomes +1/-1 enterprise points.

use super::pledge::Pledge;
use chrono::{Datelike, NaiveDate};

/// Days are numbered from 1 January of year 1 (chrono's `num_days_from_ce`).
pub type Day = u32;

/// An interval without an end: a pledge not released.
pub const OPEN: Day = Day::MAX;

pub fn day(date: NaiveDate) -> Day {
    Day::try_from(date.num_days_from_ce()).expect("dates are after year 1")
}

/// A dated change to a row: amount in fen, pledges, and rights (scaled by the row's share).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub day: Day,
    pub secured_fen: i128,
    pub pledges: i64,
    /// +1 when the pledge's rights enter, -1 when they leave, 0 for amount changes.
    pub rights_sign: i64,
}

/// The pledge comes into force with the amount it was registered with.
pub fn registration_point(p: &Pledge) -> Point {
    Point { day: day(p.content.registered_on), secured_fen: p.registered_amount().fen(), pledges: 1, rights_sign: 1 }
}

/// The latest change of `after` (absent from `before`) moves the amount from its effective date.
pub fn change_point(before: &Pledge, after: &Pledge) -> Option<Point> {
    let change = after.changes.last()?;
    let delta = after.content.secured_amount.fen() - before.content.secured_amount.fen();
    (delta != 0).then(|| Point { day: day(change.effective_on), secured_fen: delta, pledges: 0, rights_sign: 0 })
}

/// The pledge leaves force on its release date with the amount in effect then.
pub fn release_point(after: &Pledge) -> Option<Point> {
    let release = after.release.as_ref()?;
    Some(Point {
        day: day(release.released_on),
        secured_fen: -after.content.secured_amount.fen(),
        pledges: -1,
        rights_sign: -1,
    })
}

/// The in-force interval `[registered, released)` of a pledge, in days.
pub fn interval(p: &Pledge) -> (Day, Day) {
    (day(p.content.registered_on), p.release.as_ref().map_or(OPEN, |r| day(r.released_on)))
}

/// The union of intervals as disjoint, sorted, non-adjacent intervals.
pub fn union(intervals: &[(Day, Day)]) -> Vec<(Day, Day)> {
    let mut sorted: Vec<(Day, Day)> = intervals.iter().copied().filter(|(a, b)| a < b).collect();
    sorted.sort_unstable();
    let mut out: Vec<(Day, Day)> = Vec::with_capacity(sorted.len());
    for (a, b) in sorted {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// The +1/-1 points that turn the indicator of union `before` into that of union `after`.
pub fn indicator_delta(before: &[(Day, Day)], after: &[(Day, Day)]) -> Vec<(Day, i64)> {
    let mut points: Vec<(Day, i64)> = Vec::new();
    let mut add = |d: Day, v: i64| {
        if d != OPEN {
            points.push((d, v));
        }
    };
    for &(a, b) in after {
        add(a, 1);
        add(b, -1);
    }
    for &(a, b) in before {
        add(a, -1);
        add(b, 1);
    }
    points.sort_unstable();
    let mut merged: Vec<(Day, i64)> = Vec::with_capacity(points.len());
    for (d, v) in points {
        match merged.last_mut() {
            Some(last) if last.0 == d => last.1 += v,
            _ => merged.push((d, v)),
        }
    }
    merged.retain(|(_, v)| *v != 0);
    merged
}

/// Where a day falls for the as-of sums: its year, its month (0-11) and its day of the year
/// (0-365). As of `d` = the totals of the years before d's year + the totals of that year's months
/// before d's month + the days of d's month up to d: one stored value per year and row, however
/// long the history.
pub fn calendar(d: Day) -> (u32, u8, u16) {
    let date = NaiveDate::from_num_days_from_ce_opt(d as i32).expect("days come from dates");
    (date.year() as u32, date.month0() as u8, date.ordinal0() as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unions_and_their_deltas() {
        assert_eq!(union(&[(5, 10), (1, 3), (3, 4), (8, 12)]), [(1, 4), (5, 12)]);
        assert_eq!(union(&[(5, OPEN), (1, 3)]), [(1, 3), (5, OPEN)]);
        // A second pledge overlapping the first extends the union only past its end.
        assert_eq!(indicator_delta(&[(1, 10)], &union(&[(1, 10), (5, 20)])), [(10, 1), (20, -1)]);
        // Releasing one of two overlapping pledges changes nothing while the other stays.
        assert_eq!(indicator_delta(&union(&[(1, OPEN), (3, OPEN)]), &union(&[(1, OPEN), (3, 7)])), []);
        assert_eq!(indicator_delta(&[(1, OPEN)], &[(1, 7)]), [(7, -1)]);
        assert_eq!(indicator_delta(&[], &[(4, OPEN)]), [(4, 1)]);
    }
}

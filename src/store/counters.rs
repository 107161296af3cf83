//! Additive values: sparse vectors of signed counters, which every engine can fold without knowing
//! what they count.
//!
//! Why: exposure rows and as-of sums are changed only by adding deltas, and almost every write adds
//! to a dozen of them. Read-modify-write meant the writer read each one back from disk first (half
//! of its time at 1M pledges, bench/profiles/2026-12-05-runs-writer-1m-b13dc73.svg). An `Op::Add`
//! of `Counters` is written blind; the engine folds the deltas when the key is read or when its
//! runs are merged, the way a merge operator does in an LSM tree.
//!
//! A value is a list of (index, amount) cells, sorted by index, with no zero amount: one
//! encoding per value, so equal sums are equal bytes (`verify` compares bytes). Stored as postcard
//! `Vec<(u32, i128)>` (varint index, zigzag varint amount). The empty value is no key.

use super::StoreError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Sorted by index, unique, no zero amount.
    cells: Vec<(u32, i128)>,
}

/// An amount beyond i128: never from real money (bounded far below), so a sign of corrupt input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a counter left the range of i128")]
pub struct Overflow;

impl Counters {
    pub fn is_zero(&self) -> bool {
        self.cells.is_empty()
    }

    pub fn cells(&self) -> &[(u32, i128)] {
        &self.cells
    }

    /// The counters of `cells`, already in the one form (indexes ascending and unique, no zero
    /// amount): the projector's deltas are built so, and taking the vector saves building it again.
    pub fn from_sorted(cells: Vec<(u32, i128)>) -> Counters {
        assert!(
            cells.windows(2).all(|w| w[0].0 < w[1].0) && cells.iter().all(|(_, v)| *v != 0),
            "cells not in the canonical form"
        );
        Counters { cells }
    }

    /// Adds `amount` to the cell at `index`, dropping the cell when it comes to zero.
    pub fn add_cell(&mut self, index: u32, amount: i128) -> Result<(), Overflow> {
        if amount == 0 {
            return Ok(());
        }
        match self.cells.binary_search_by_key(&index, |(i, _)| *i) {
            Ok(at) => {
                let sum = self.cells[at].1.checked_add(amount).ok_or(Overflow)?;
                if sum == 0 {
                    self.cells.remove(at);
                } else {
                    self.cells[at].1 = sum;
                }
            }
            Err(at) => self.cells.insert(at, (index, amount)),
        }
        Ok(())
    }

    /// Adds every cell of `other`; on an error `self` is left as it was.
    pub fn add(&mut self, other: &Counters) -> Result<(), Overflow> {
        self.add_cells(&other.cells)
    }

    /// Adds cells in the canonical form (ascending unique indexes, no zero); on an error `self`
    /// is left as it was.
    pub fn add_cells(&mut self, cells: &[(u32, i128)]) -> Result<(), Overflow> {
        /// A delta this small goes in place, cell by cell (a command's delta to a group's sum of
        /// hundreds of cells: no new vector per add, the writer's largest cost after blind adds).
        const IN_PLACE_CELLS_MAX: usize = 8;
        debug_assert!(cells.windows(2).all(|w| w[0].0 < w[1].0), "cells ascend");
        if cells.is_empty() {
            return Ok(());
        }
        if self.cells.is_empty() {
            self.cells.extend_from_slice(cells);
            return Ok(());
        }
        if cells.len() <= IN_PLACE_CELLS_MAX {
            for (done, (index, amount)) in cells.iter().enumerate() {
                if let Err(e) = self.add_cell(*index, *amount) {
                    // Take back the cells added so far: exact, they were in range before.
                    for (index, amount) in &cells[..done] {
                        self.add_cell(*index, -amount).expect("undoing an add stays in range");
                    }
                    return Err(e);
                }
            }
            return Ok(());
        }
        // A merge of two sorted lists: linear, where one insert per cell would be quadratic.
        let mut out = Vec::with_capacity(self.cells.len() + cells.len());
        let (a, b) = (&self.cells, cells);
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            let next = match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) if x.0 == y.0 => {
                    i += 1;
                    j += 1;
                    (x.0, x.1.checked_add(y.1).ok_or(Overflow)?)
                }
                (Some(x), Some(y)) if x.0 < y.0 => {
                    i += 1;
                    *x
                }
                (_, Some(y)) => {
                    j += 1;
                    *y
                }
                (Some(x), None) => {
                    i += 1;
                    *x
                }
                (None, None) => unreachable!("the loop's condition"),
            };
            if next.1 != 0 {
                out.push(next);
            }
        }
        self.cells = out;
        Ok(())
    }

    /// The counters that take these back.
    pub fn negated(&self) -> Counters {
        Counters { cells: self.cells.iter().map(|(i, v)| (*i, -v)).collect() }
    }

    /// postcard's `Vec<(u32, i128)>`, written by hand (serde's generic path was a tenth of a
    /// query's time at 1M).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + 6 * self.cells.len());
        put_varint(&mut out, self.cells.len() as u128);
        for (index, amount) in &self.cells {
            put_varint(&mut out, u128::from(*index));
            // Zigzag: small amounts of either sign take few bytes.
            put_varint(&mut out, ((amount << 1) ^ (amount >> 127)) as u128);
        }
        out
    }

    /// The cells in `range` only.
    pub fn restricted(&self, range: &std::ops::Range<u32>) -> Counters {
        Counters { cells: self.cells.iter().filter(|(i, _)| range.contains(i)).copied().collect() }
    }

    pub fn decode(bytes: &[u8]) -> Result<Counters, StoreError> {
        let mut cells = Vec::new();
        let rest = decode_into(bytes, &ALL, &mut cells)?;
        if !rest.is_empty() {
            return Err(corrupt("bytes after the counters"));
        }
        let canonical = cells.windows(2).all(|w| w[0].0 < w[1].0) && cells.iter().all(|(_, v)| *v != 0);
        if !canonical {
            return Err(corrupt("counters out of order or with a zero cell"));
        }
        Ok(Counters { cells })
    }

    /// The sum of encoded counters (each canonical): each decoded once and merged in, linear in
    /// its cells (a month's days are hundreds of cells, and a read folds one per run).
    pub fn sum_of<'a>(
        encoded: impl IntoIterator<Item = &'a [u8]>,
        range: &std::ops::Range<u64>,
    ) -> Result<Counters, StoreError> {
        let mut sum = Counters::default();
        let mut next = Counters::default();
        for bytes in encoded {
            next.cells.clear();
            decode_into(bytes, range, &mut next.cells)?;
            sum.add(&next).map_err(|_| corrupt("a counter beyond i128"))?;
        }
        Ok(sum)
    }

    /// The cells of an encoded value whose index is below `end`, without decoding the rest:
    /// readers of a year's total skip its months.
    pub fn decode_below(bytes: &[u8], end: u32) -> Result<Vec<(u32, i128)>, StoreError> {
        let mut out = Vec::new();
        decode_into(bytes, &(0..u64::from(end)), &mut out)?;
        Ok(out)
    }
}

/// Every cell index.
const ALL: std::ops::Range<u64> = 0..u64::MAX;

fn put_varint(out: &mut Vec<u8>, mut value: u128) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("counters: {what}"))
}

/// One LEB128 varint (postcard's integer encoding) of at most `max_bytes`, and the rest.
fn varint(bytes: &[u8], max_bytes: usize) -> Result<(u128, &[u8]), StoreError> {
    let mut value: u128 = 0;
    for (i, byte) in bytes.iter().enumerate().take(max_bytes) {
        value |= u128::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, &bytes[i + 1..]));
        }
    }
    Err(corrupt("a number runs past its end"))
}

/// Appends the cells of encoded counters whose index is in `range` to `out` (postcard's
/// `Vec<(u32, i128)>`: a varint count, then varint indexes and zigzag varint amounts), and returns
/// what follows them. By hand: serde's generic path was a tenth of a query's time at 1M.
fn decode_into<'b>(
    bytes: &'b [u8],
    range: &std::ops::Range<u64>,
    out: &mut Vec<(u32, i128)>,
) -> Result<&'b [u8], StoreError> {
    let (n, mut rest) = varint(bytes, 10)?;
    let n = usize::try_from(n).map_err(|_| corrupt("a count beyond memory"))?;
    // Each cell takes two bytes at least: a count beyond that is not what a writer made.
    if n > rest.len() / 2 {
        return Err(corrupt("a count beyond the bytes"));
    }
    out.reserve(n);
    for _ in 0..n {
        let (index, tail) = varint(rest, 5)?;
        let index = u32::try_from(index).map_err(|_| corrupt("an index beyond u32"))?;
        let (zigzag, tail) = varint(tail, 19)?;
        if u64::from(index) >= range.end {
            return Ok(&[]);
        }
        rest = tail;
        if u64::from(index) < range.start {
            continue;
        }
        let amount = (zigzag >> 1) as i128 ^ -((zigzag & 1) as i128);
        out.push((index, amount));
    }
    Ok(rest)
}

impl FromIterator<(u32, i128)> for Counters {
    /// Cells in any order; amounts at one index add up.
    fn from_iter<I: IntoIterator<Item = (u32, i128)>>(iter: I) -> Counters {
        let mut counters = Counters::default();
        for (index, amount) in iter {
            counters.add_cell(index, amount).expect("cells built in memory stay in range");
        }
        counters
    }
}

/// Whether `bytes` encode the zero sum (no cell): postcard's empty vector, one byte.
fn is_zero_encoding(bytes: &[u8]) -> bool {
    bytes == [0]
}

/// What the layers above a key (newest first) said before an older layer is consulted: nothing
/// yet, or deltas (encoded) to fold over whatever the older layers hold.
#[derive(Debug)]
pub struct Pending {
    adds: Vec<Vec<u8>>,
    /// The cells the reader wants (`Pending::cells`); every cell by default.
    range: std::ops::Range<u64>,
}

impl Default for Pending {
    fn default() -> Pending {
        Pending { adds: Vec::new(), range: ALL }
    }
}

/// One layer's word on a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found<'a> {
    Value(&'a [u8]),
    Deleted,
    /// Encoded counters.
    Added(&'a [u8]),
}

impl Pending {
    /// A fold that keeps the cells of `range` only (every value is taken to be counters): a
    /// reader of a year's total decodes a few cells per layer, not the year's months.
    pub fn cells(range: std::ops::Range<u32>) -> Pending {
        Pending { adds: Vec::new(), range: u64::from(range.start)..u64::from(range.end) }
    }

    fn restricting(&self) -> bool {
        self.range != ALL
    }

    /// Takes the next older layer's word: `Some` with the key's value when it settles it.
    pub fn over(&mut self, found: Found<'_>) -> Result<Option<Option<Vec<u8>>>, StoreError> {
        match found {
            Found::Value(bytes) => Ok(Some(self.finish(Some(bytes))?)),
            Found::Deleted => Ok(Some(self.finish(None)?)),
            Found::Added(bytes) => {
                self.adds.push(bytes.to_vec());
                Ok(None)
            }
        }
    }

    /// The key's value once `base` (the oldest layer's, `None` when absent) is below the deltas.
    pub fn finish(&mut self, base: Option<&[u8]>) -> Result<Option<Vec<u8>>, StoreError> {
        match (self.adds.len(), base) {
            (0, base) if !self.restricting() => Ok(base.map(<[u8]>::to_vec)),
            // One delta over nothing is its own sum, already in its one encoding: most keys, once
            // merged, are read without decoding. Unless it is zero (deltas that cancelled in an
            // overlay, `Op::then`): a zero sum is no key, in every layer and every engine, or a
            // rebuild (where they may never meet) would differ. Found by tests/sim.rs: a key of
            // value zero in a checkpoint, absent from the rebuild `verify` compared it with.
            (1, None) if !self.restricting() => Ok(self.adds.pop().filter(|delta| !is_zero_encoding(delta))),
            (_, base) => {
                let sum = Counters::sum_of(self.adds.iter().map(Vec::as_slice).chain(base), &self.range)?;
                self.adds.clear();
                Ok((!sum.is_zero()).then(|| sum.encode()))
            }
        }
    }

    /// Whether deltas are waiting for an older layer.
    pub fn is_adding(&self) -> bool {
        !self.adds.is_empty()
    }

    /// The sum of the deltas gathered so far, encoded; `None` when it is zero (a merge of runs
    /// that are not the oldest keeps it as a delta).
    pub fn take_adds(&mut self) -> Result<Option<Vec<u8>>, StoreError> {
        self.finish(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_delta_that_cancelled_out_is_no_key() {
        // Deltas that cancel in an overlay (`Op::then`) leave an empty addition; folded over
        // nothing, or taken by a merge, it is no key, as a rebuild that never met them has none.
        let zero = Counters::default().encode();
        assert!(is_zero_encoding(&zero));
        let mut pending = Pending::default();
        assert_eq!(pending.over(Found::Added(&zero)).unwrap(), None);
        assert_eq!(pending.finish(None).unwrap(), None);
        let mut pending = Pending::default();
        pending.over(Found::Added(&zero)).unwrap();
        assert_eq!(pending.take_adds().unwrap(), None);
        assert_eq!(super::super::fold_op(None, super::super::Op::Add(Counters::default())).unwrap(), None);
        let one: Counters = [(3, 1)].into_iter().collect();
        let mut pending = Pending::default();
        pending.over(Found::Added(&one.encode())).unwrap();
        assert_eq!(pending.finish(None).unwrap(), Some(one.encode()), "a lone non-zero delta is its own sum");
    }

    #[test]
    fn sums_are_canonical_and_zeros_vanish() {
        let mut a: Counters = [(5, 2), (1, 3), (5, -2), (9, 7)].into_iter().collect();
        assert_eq!(a.cells(), [(1, 3), (9, 7)]);
        let b: Counters = [(1, -3), (2, 4), (9, 1), (12, 1)].into_iter().collect();
        a.add(&b).unwrap();
        assert_eq!(a.cells(), [(2, 4), (9, 8), (12, 1)]);
        a.add(&a.negated()).unwrap();
        assert!(a.is_zero());
        let big: Counters = [(0, i128::MAX)].into_iter().collect();
        let mut c = big.clone();
        assert_eq!(c.add(&big), Err(Overflow));
        assert_eq!(c, big, "a failed add changes nothing");
        let mut c: Counters = [(0, 1), (5, i128::MAX)].into_iter().collect();
        let before = c.clone();
        let two: Counters = [(0, 4), (5, 1)].into_iter().collect();
        assert_eq!(c.add(&two), Err(Overflow), "in place");
        assert_eq!(c, before, "a failed add in place changes nothing");
        let many: Counters = (0..20).map(|i| (i, 1)).collect();
        let mut d: Counters = [(0, -1), (30, 2)].into_iter().collect();
        d.add(&many).unwrap();
        assert_eq!(d.cells().len(), 20, "merged, the zero at 0 dropped: {d:?}");
    }

    #[test]
    fn encoding_round_trips_and_rejects_what_no_writer_makes() {
        let a: Counters = [(0, -1), (17, 1 << 100), (400, 3)].into_iter().collect();
        assert_eq!(Counters::decode(&a.encode()).unwrap(), a);
        assert_eq!(Counters::decode_below(&a.encode(), 17).unwrap(), [(0, -1)]);
        assert_eq!(Counters::decode_below(&a.encode(), 1000).unwrap(), a.cells());
        // The hand-written decoder reads what postcard writes, amounts of every size and sign.
        for amount in [0i128, 1, -1, 63, -64, 64, i128::from(i64::MAX), i128::MAX, i128::MIN] {
            let cells = vec![(0u32, amount), (u32::MAX, amount / 3)];
            let mut out = Vec::new();
            let bytes = postcard::to_stdvec(&cells).unwrap();
            let rest = decode_into(&bytes, &ALL, &mut out).unwrap();
            assert!(rest.is_empty());
            assert_eq!(out, cells);
        }
        let sum = Counters::sum_of([a.encode().as_slice(), &a.negated().encode(), &a.encode()], &ALL).unwrap();
        assert_eq!(sum, a);
        let part = Counters::sum_of([a.encode().as_slice(), &a.encode()], &(1..400)).unwrap();
        assert_eq!(part.cells(), [(17, 2 << 100)]);
        assert_eq!(a.restricted(&(1..400)).cells(), [(17, 1 << 100)]);
        assert_eq!(a.encode(), postcard::to_stdvec(&a.cells).unwrap(), "postcard's bytes");
        assert!(Counters::decode(&[5, 1]).is_err(), "a count beyond the bytes");
        let unsorted = postcard::to_stdvec(&vec![(3u32, 1i128), (1, 1)]).unwrap();
        assert!(Counters::decode(&unsorted).is_err());
        let zero = postcard::to_stdvec(&vec![(3u32, 0i128)]).unwrap();
        assert!(Counters::decode(&zero).is_err());
    }

    #[test]
    fn pending_deltas_fold_over_the_first_value_or_deletion_below_them() {
        let d = |cells: &[(u32, i128)]| cells.iter().copied().collect::<Counters>().encode();
        let mut p = Pending::default();
        assert_eq!(p.over(Found::Added(&d(&[(1, 2)]))).unwrap(), None);
        assert_eq!(p.over(Found::Added(&d(&[(1, 3), (2, 1)]))).unwrap(), None);
        let base = d(&[(2, -1), (4, 4)]);
        assert_eq!(p.over(Found::Value(&base)).unwrap(), Some(Some(d(&[(1, 5), (4, 4)]))));
        let mut p = Pending::default();
        p.over(Found::Added(&d(&[(1, 2)]))).unwrap();
        assert_eq!(p.over(Found::Deleted).unwrap(), Some(Some(d(&[(1, 2)]))));
        let mut p = Pending::default();
        p.over(Found::Added(&d(&[(1, 2)]))).unwrap();
        assert_eq!(p.finish(Some(&d(&[(1, -2)]))).unwrap(), None, "a zero sum is no key");
        p.over(Found::Added(&d(&[(1, 2)]))).unwrap();
        p.over(Found::Added(&d(&[(1, -2)]))).unwrap();
        assert_eq!(p.take_adds().unwrap(), None, "deltas that cancel out are none");
        assert_eq!(Pending::default().over(Found::Value(b"v")).unwrap(), Some(Some(b"v".to_vec())));
        let mut p = Pending::cells(2..3);
        p.over(Found::Added(&d(&[(1, 2), (2, 5)]))).unwrap();
        assert_eq!(p.over(Found::Value(&d(&[(2, 1), (4, 4)]))).unwrap(), Some(Some(d(&[(2, 6)]))));
        let mut p = Pending::cells(3..4);
        assert_eq!(p.over(Found::Value(&d(&[(2, 1)]))).unwrap(), Some(None), "nothing in the range is none");
    }
}

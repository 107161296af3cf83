//! The read path: point reads, filtered listings over secondary indexes with opaque page tokens,
//! and exposure answered from the aggregate rows (never by scanning pledges).

use super::codec;
use super::journal::{self, Entry, Journal};
use super::keys;
use super::principals::PrincipalRecord;
use super::risk_projector::{PledgeRisk, ProgrammeYear};
use super::sums;
use super::sums::AsOfDelta;
use crate::domain::LedgerError;
use crate::domain::Reason;
use crate::domain::credit_line::CreditLine;
use crate::domain::exposure::{Bucket, Dimension, Row};
use crate::domain::ident::{CreditCode, RightKind, RightNumber};
use crate::domain::money::Money;
use crate::domain::pledge::Pledge;
use crate::domain::programme::{Claim, Programme};
use crate::domain::region::Region;
use crate::domain::right::RightRecord;
use crate::store::Store;
use base64::Engine;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Page sizes: the default when none is asked, and the maximum any request is lowered to.
pub const PAGE_SIZE_DEFAULT: usize = 100;
pub const PAGE_SIZE_MAX: usize = 1000;
/// Index entries examined per page at most, so a selective filter over a large index answers in
/// bounded time (with a shorter page and a token to continue).
pub const SCAN_PER_PAGE_MAX: usize = 20_000;
/// Bytes of stored records loaded for one page at most (a page holds at least one record): a page
/// of large pledges (500 rights, 200 changes) is cut short, with a token to continue, long before
/// its answer nears the response size limit.
pub const PAGE_BYTES_MAX: usize = 8 << 20;
/// Pledgee rows returned by one exposure query at most (there are a few hundred banks): the
/// largest by secured amount; the answer counts the rows it left out (`rows_omitted`).
pub const EXPOSURE_ROWS_MAX: usize = 10_000;
/// Pledgee rows one exposure query examines at most. China has about 4,600 banking institutions, so
/// a region with more pledgee rows than this is not a book any answer can rank: the query fails
/// (EXPOSURE_TOO_LARGE) rather than rank a part of it.
pub const EXPOSURE_ROWS_SCANNED_MAX: usize = 200_000;

fn unavailable(e: crate::store::StoreError) -> LedgerError {
    LedgerError::Unavailable(e.to_string())
}

pub(crate) fn get<T: serde::de::DeserializeOwned>(store: &dyn Store, key: &[u8]) -> Result<Option<T>, LedgerError> {
    store.get(key).map_err(unavailable)?.map(|bytes| codec::decode(key, &bytes)).transpose()
}

/// A record and its stored size, which bounds the memory a page may take.
fn get_sized<T: serde::de::DeserializeOwned>(store: &dyn Store, key: &[u8]) -> Result<Option<(T, usize)>, LedgerError> {
    store.get(key).map_err(unavailable)?.map(|bytes| Ok((codec::decode(key, &bytes)?, bytes.len()))).transpose()
}

pub fn pledge(store: &dyn Store, id: Uuid) -> Result<Pledge, LedgerError> {
    get(store, &keys::pledge(id))?.ok_or(LedgerError::NotFound { resource: "pledge", id: id.to_string() })
}

/// The active pledge holding `number`, if any (the index behind "one active pledge per right").
pub fn active_pledge_of(store: &dyn Store, number: &RightNumber) -> Result<Option<Pledge>, LedgerError> {
    match get::<super::records::RightHolding>(store, &keys::active_right(number))?.and_then(|h| h.active) {
        Some(id) => pledge(store, id).map(Some),
        None => Ok(None),
    }
}

pub fn credit_line(store: &dyn Store, id: Uuid) -> Result<CreditLine, LedgerError> {
    get(store, &keys::credit_line(id))?.ok_or(LedgerError::NotFound { resource: "credit line", id: id.to_string() })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum StatusFilter {
    Active,
    Released,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PledgeFilter {
    pub region: Option<Region>,
    pub pledgee: Option<CreditCode>,
    pub pledgor: Option<CreditCode>,
    pub right: Option<RightNumber>,
    pub status: Option<StatusFilter>,
}

impl PledgeFilter {
    fn matches(&self, p: &Pledge) -> bool {
        let c = &p.content;
        self.region.is_none_or(|r| r.contains(c.county.region()))
            && self.pledgee.as_ref().is_none_or(|code| *code == c.pledgee.credit_code)
            && self.pledgor.as_ref().is_none_or(|code| *code == c.pledgor.credit_code)
            && self.right.as_ref().is_none_or(|n| c.rights.iter().any(|r| r.number == *n))
            && self.status.is_none_or(|s| (s == StatusFilter::Active) == p.is_active())
    }

    /// The most selective index for this filter: its key prefix.
    fn index_prefix(&self) -> Vec<u8> {
        if let Some(n) = &self.right {
            keys::by_right_prefix(n)
        } else if let Some(code) = &self.pledgor {
            keys::by_pledgor_prefix(code)
        } else if let Some(code) = &self.pledgee {
            keys::by_pledgee_prefix(code)
        } else if let Some(region) = self.region.filter(|r| r.level() != crate::domain::region::Level::Country) {
            keys::by_region_prefix(region)
        } else {
            keys::PLEDGES.to_vec()
        }
    }
}

/// Resolves a right number given without a kind: a patent's type digit decides its kind; other
/// all-digit numbers are trademarks; anything else is a copyright registration number.
pub fn right_number_any_kind(text: &str) -> Option<RightNumber> {
    [
        RightKind::InventionPatent,
        RightKind::UtilityModel,
        RightKind::DesignPatent,
        RightKind::Trademark,
        RightKind::Copyright,
    ]
    .into_iter()
    .find_map(|kind| RightNumber::parse(text, kind).ok())
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct PageToken {
    /// Ties a token to the filter it was issued for (AIP-158: filters must not change between pages).
    filter: [u8; 8],
    after: Vec<u8>,
}

fn filter_digest<F: serde::Serialize>(filter: &F) -> [u8; 8] {
    let digest = Sha256::digest(postcard::to_allocvec(filter).expect("in-memory encoding"));
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

fn decode_token(token: &str, filter: [u8; 8]) -> Result<Option<Vec<u8>>, LedgerError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || LedgerError::invalid_field("pageToken", "is not a token returned by this listing with these filters");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let t: PageToken = postcard::from_bytes(&bytes).map_err(|_| bad())?;
    if t.filter != filter {
        return Err(bad());
    }
    Ok(Some(t.after))
}

fn encode_token(filter: [u8; 8], after: Vec<u8>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(codec::encode(&PageToken { filter, after }))
}

/// Lowers any page size to the maximum (AIP-158) and maps 0 to the default.
pub fn page_size(requested: i32) -> Result<usize, LedgerError> {
    match requested {
        n if n < 0 => Err(LedgerError::invalid_field("pageSize", "must not be negative")),
        0 => Ok(PAGE_SIZE_DEFAULT),
        n => Ok((n as usize).min(PAGE_SIZE_MAX)),
    }
}

/// Walks the index under `prefix` from the token, loading and filtering records until a page is
/// full, the scan budget is spent, or the page's records reach `PAGE_BYTES_MAX` bytes. `load`
/// gives a kept record with its stored size.
fn scan_page<T>(
    store: &dyn Store,
    prefix: &[u8],
    token_filter: [u8; 8],
    page_token: &str,
    page_size: usize,
    load: impl Fn(&[u8], &[u8]) -> Result<Option<(T, usize)>, LedgerError>,
) -> Result<(Vec<T>, String), LedgerError> {
    assert!(page_size > 0);
    let mut after = decode_token(page_token, token_filter)?;
    let mut page = Vec::with_capacity(page_size);
    let mut examined = 0usize;
    let mut page_bytes = 0usize;
    let full = |page: &Vec<T>, examined: usize, page_bytes: usize| {
        page.len() == page_size || examined >= SCAN_PER_PAGE_MAX || page_bytes >= PAGE_BYTES_MAX
    };
    loop {
        let chunk = (page_size - page.len()).clamp(1, 1000);
        let entries = store.scan(prefix, after.as_deref(), chunk).map_err(unavailable)?;
        let exhausted = entries.len() < chunk;
        for (key, value) in entries {
            examined += 1;
            if let Some((item, bytes)) = load(&key, &value)? {
                page.push(item);
                page_bytes += bytes;
            }
            after = Some(key);
            if full(&page, examined, page_bytes) {
                break;
            }
        }
        if exhausted && !full(&page, examined, page_bytes) {
            return Ok((page, String::new()));
        }
        if full(&page, examined, page_bytes) {
            let last = after.expect("a full page or spent budget examined at least one entry");
            // Peek so the last page carries no token.
            let more = !store.scan(prefix, Some(&last), 1).map_err(unavailable)?.is_empty();
            let token = if more { encode_token(token_filter, last) } else { String::new() };
            return Ok((page, token));
        }
    }
}

pub fn list_pledges(
    store: &dyn Store,
    filter: &PledgeFilter,
    page_size: usize,
    page_token: &str,
) -> Result<(Vec<Pledge>, String), LedgerError> {
    let prefix = filter.index_prefix();
    let direct = prefix == keys::PLEDGES;
    scan_page(store, &prefix, filter_digest(filter), page_token, page_size, |key, value| {
        let (pledge, bytes): (Pledge, usize) = if direct {
            (codec::decode(key, value)?, value.len())
        } else {
            let id = keys::trailing_id(key).ok_or_else(|| LedgerError::Internal("index key without id".to_owned()))?;
            get_sized(store, &keys::pledge(id))?
                .ok_or_else(|| LedgerError::Internal(format!("index names missing pledge {id}")))?
        };
        Ok(filter.matches(&pledge).then_some((pledge, bytes)))
    })
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CreditLineFilter {
    pub region: Option<Region>,
    pub bank: Option<CreditCode>,
}

pub fn list_credit_lines(
    store: &dyn Store,
    filter: &CreditLineFilter,
    page_size: usize,
    page_token: &str,
) -> Result<(Vec<CreditLine>, String), LedgerError> {
    let prefix = match (&filter.bank, filter.region) {
        (Some(bank), _) => keys::line_by_bank_prefix(bank),
        (None, Some(region)) => keys::line_by_region_prefix(region),
        (None, None) => keys::CREDIT_LINES.to_vec(),
    };
    let direct = prefix == keys::CREDIT_LINES;
    scan_page(store, &prefix, filter_digest(filter), page_token, page_size, |key, value| {
        let (line, bytes): (CreditLine, usize) = if direct {
            (codec::decode(key, value)?, value.len())
        } else {
            let id = keys::trailing_id(key).ok_or_else(|| LedgerError::Internal("index key without id".to_owned()))?;
            get_sized(store, &keys::credit_line(id))?
                .ok_or_else(|| LedgerError::Internal(format!("index names missing credit line {id}")))?
        };
        let keep = filter.region.is_none_or(|r| r.contains(line.content.region))
            && filter.bank.as_ref().is_none_or(|b| *b == line.content.bank.credit_code);
        Ok(keep.then_some((line, bytes)))
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    None,
    ChildRegion,
    Pledgee,
    RightKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExposureRow {
    pub key: String,
    pub name: String,
    pub row: Row,
    /// False on right-kind rows: credit lines are not split by kind.
    pub has_credit: bool,
    /// Total and child-region rows now, for offices and admins: the yearly budget of the
    /// programmes of the region and those inside it, valid this year, and what is left of it.
    pub budget: Option<(Money, Money)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure {
    pub region: Region,
    pub total: Row,
    /// False as of a date: credit figures (and the risk columns) are not kept in business time.
    pub has_credit: bool,
    pub budget: Option<(Money, Money)>,
    pub rows: Vec<ExposureRow>,
    /// Rows that counted but were not listed (beyond `EXPOSURE_ROWS_MAX`, the smallest).
    pub rows_omitted: u64,
}

fn too_many_pledgees(region: Region) -> LedgerError {
    LedgerError::refused(
        Reason::EXPOSURE_TOO_LARGE,
        format!("region {region} has more than {EXPOSURE_ROWS_SCANNED_MAX} pledgee rows; ask for a smaller region"),
    )
    .with("regionCode", region.code_string())
    .with("rowsMax", EXPOSURE_ROWS_SCANNED_MAX)
}

/// Largest exposure first (what a dashboard's "top pledgees" shows), then by key.
fn by_amount(a: &ExposureRow, b: &ExposureRow) -> std::cmp::Ordering {
    b.row.secured_amount.cmp(&a.row.secured_amount).then_with(|| a.key.cmp(&b.key))
}

/// The `EXPOSURE_ROWS_MAX` largest of any number of rows, in memory bounded by twice that, and how
/// many it left out: every row offered is ranked, so no row is dropped for where its key sorts.
#[derive(Debug, Default)]
struct TopRows {
    rows: Vec<ExposureRow>,
    offered: u64,
}

impl TopRows {
    fn offer(&mut self, row: ExposureRow) {
        self.offered += 1;
        self.rows.push(row);
        if self.rows.len() >= 2 * EXPOSURE_ROWS_MAX {
            self.cut();
        }
    }

    fn cut(&mut self) {
        self.rows.sort_by(by_amount);
        self.rows.truncate(EXPOSURE_ROWS_MAX);
    }

    fn finish(mut self) -> (Vec<ExposureRow>, u64) {
        self.cut();
        let omitted = self.offered - self.rows.len() as u64;
        (self.rows, omitted)
    }
}

/// The name a bank is shown under: what the bank itself or an admin last wrote (the directory kept
/// from their writes), else its credit code. Never what any other writer called it.
fn bank_name(store: &dyn Store, code: &CreditCode) -> Result<String, LedgerError> {
    Ok(get::<String>(store, &keys::bank_name(code))?.unwrap_or_else(|| code.to_string()))
}

fn stored_code(code: &str) -> Result<CreditCode, LedgerError> {
    CreditCode::parse(code).map_err(|e| LedgerError::Internal(format!("stored pledgee code: {e}")))
}

fn row(store: &dyn Store, bucket: &Bucket) -> Result<Row, LedgerError> {
    let key = keys::exposure(bucket);
    match store.get(&key).map_err(unavailable)? {
        Some(bytes) => super::sums::row(&key, &bytes),
        None => Ok(Row::default()),
    }
}

/// One maintained exposure row (zero when nothing counts in it).
pub fn exposure_row(store: &dyn Store, bucket: &Bucket) -> Result<Row, LedgerError> {
    row(store, bucket)
}

/// Where a date falls in the as-of records: its year, month and day of the year.
#[derive(Debug, Clone, Copy)]
struct AsOfDate {
    year: u32,
    month: u8,
    day_of_year: u16,
}

impl AsOfDate {
    fn new(date: chrono::NaiveDate) -> AsOfDate {
        let (year, month, day_of_year) = crate::domain::asof::calendar(crate::domain::asof::day(date));
        AsOfDate { year, month, day_of_year }
    }

    /// Adds what the year record of `stored_year` contributes as of this date: the total of a past
    /// year, the months before the date's of its year, nothing of a later year. The days of the
    /// date's month are in a record of their own (`fold_days`).
    fn fold(&self, sum: &mut AsOfDelta, stored_year: u32, key: &[u8], value: &[u8]) -> Result<(), LedgerError> {
        let range = self.cells_of_year(stored_year);
        sums::add_cells(sum, &sums::decode_range(key, value, range.clone())?, range)
    }

    /// The cells of a year record this date needs: the total of a past year, the months before
    /// the date's of its year, none of a later year.
    fn cells_of_year(&self, stored_year: u32) -> std::ops::Range<u32> {
        match stored_year.cmp(&self.year) {
            std::cmp::Ordering::Less => sums::YEAR_TOTAL,
            std::cmp::Ordering::Equal => sums::months_before(self.month),
            std::cmp::Ordering::Greater => 0..0,
        }
    }

    /// The cells of a year record's key this date needs (every key under an as-of prefix ends in
    /// its year; a key that does not is not one, and none of it is read).
    fn cells_of_key(&self, key: &[u8]) -> std::ops::Range<u32> {
        stored_year(key).map_or(0..0, |year| self.cells_of_year(year))
    }

    /// Adds the days of the date's month up to the date, read at `days_key` (`keys::asof_days`).
    fn fold_days(&self, store: &dyn Store, sum: &mut AsOfDelta, days_key: &[u8]) -> Result<(), LedgerError> {
        let range = sums::days_through(self.day_of_year);
        let cells = &|_: &[u8]| range.clone();
        // A scan of the one key: the days after the date are not decoded, in any layer.
        let found = store.scan_cells(days_key, None, 1, cells).map_err(unavailable)?;
        if let Some((key, value)) = found.first()
            && key.as_slice() == days_key
        {
            sums::add_cells(sum, &sums::decode_range(days_key, value, range.clone())?, range)?;
        }
        Ok(())
    }
}

/// The year at the end of an as-of key.
fn stored_year(key: &[u8]) -> Result<u32, LedgerError> {
    key.len()
        .checked_sub(4)
        .and_then(|start| key[start..].try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| LedgerError::Internal("as-of key without year".to_owned()))
}

/// Every record under `prefix`, in key order, a chunk at a time, until `each` returns false; with
/// `cells`, only those cells of each (counters) sum.
fn scan_all(
    store: &dyn Store,
    prefix: &[u8],
    cells: Option<crate::store::CellsOf<'_>>,
    mut each: impl FnMut(&[u8], &[u8]) -> Result<bool, LedgerError>,
) -> Result<(), LedgerError> {
    const CHUNK: usize = 256;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let chunk = match cells {
            Some(cells) => store.scan_cells(prefix, after.as_deref(), CHUNK, cells),
            None => store.scan(prefix, after.as_deref(), CHUNK),
        }
        .map_err(unavailable)?;
        let done = chunk.len() < CHUNK;
        for (key, value) in &chunk {
            if !each(key, value)? {
                return Ok(());
            }
        }
        match chunk.into_iter().next_back() {
            Some((key, _)) if !done => after = Some(key),
            _ => return Ok(()),
        }
    }
}

fn as_of_row(sum: &AsOfDelta, bucket: &Bucket) -> Result<Row, LedgerError> {
    Row::default()
        .apply(&sum.row_delta())
        .map_err(|_| LedgerError::Internal(format!("as-of sums out of range in {bucket:?}: {sum:?}")))
}

/// A row as of the end of `date`: the totals of the years before, then from `date`'s year the
/// totals of the months before (one value per year read) and the days of its month up to `date`.
fn row_as_of(store: &dyn Store, bucket: &Bucket, date: chrono::NaiveDate) -> Result<Row, LedgerError> {
    let at = AsOfDate::new(date);
    let mut sum = AsOfDelta::default();
    scan_all(store, &keys::asof_prefix(bucket), Some(&|key| at.cells_of_key(key)), |key, value| {
        let year = stored_year(key)?;
        at.fold(&mut sum, year, key, value)?;
        Ok(year < at.year)
    })?;
    at.fold_days(store, &mut sum, &keys::asof_days(bucket, at.year, at.month))?;
    as_of_row(&sum, bucket)
}

/// Every pledgee row of `region` as of the end of `date`, in one pass over their year records and
/// one over the days of the date's month, handed to `each` one pledgee at a time in code order (at
/// most `EXPOSURE_ROWS_SCANNED_MAX` pledgees).
fn pledgee_rows_as_of(
    store: &dyn Store,
    region: Region,
    date: chrono::NaiveDate,
    mut each: impl FnMut(CreditCode, Row),
) -> Result<(), LedgerError> {
    let at = AsOfDate::new(date);
    // The days first: a pledgee whose year and months sum to zero may still have days that do not
    // (a pledge registered and released within the month), and no year record then.
    let mut days = pledgee_days_as_of(store, region, at)?;
    let mut current: Option<(String, AsOfDelta)> = None;
    let mut scanned = 0usize;
    let mut emit = |(code, mut sum): (String, AsOfDelta), days: &mut std::collections::BTreeMap<String, AsOfDelta>| {
        // Pledgees with days only, ahead of this one in code order.
        let before: Vec<String> = days.range(..code.clone()).map(|(c, _)| c.clone()).collect();
        for only in before {
            let sum = days.remove(&only).expect("listed above");
            emit_pledgee_row(region, only, sum, &mut each)?;
        }
        if let Some(d) = days.remove(&code) {
            sum.add(&d);
        }
        emit_pledgee_row(region, code, sum, &mut each)
    };
    scan_all(store, &keys::asof_pledgees_prefix(region), Some(&|key| at.cells_of_key(key)), |key, value| {
        let code =
            keys::asof_pledgee_code(key).ok_or_else(|| LedgerError::Internal("as-of key without pledgee".into()))?;
        if current.as_ref().is_none_or(|(last, _)| last != code) {
            scanned += 1;
            if scanned > EXPOSURE_ROWS_SCANNED_MAX {
                return Err(too_many_pledgees(region));
            }
            if let Some(done) = current.replace((code.to_owned(), AsOfDelta::default())) {
                emit(done, &mut days)?;
            }
        }
        let sum = &mut current.as_mut().expect("set above").1;
        at.fold(sum, stored_year(key)?, key, value)?;
        Ok(true)
    })?;
    if let Some(done) = current {
        emit(done, &mut days)?;
    }
    for (code, sum) in std::mem::take(&mut days) {
        emit_pledgee_row(region, code, sum, &mut each)?;
    }
    Ok(())
}

fn emit_pledgee_row(
    region: Region,
    code: String,
    sum: AsOfDelta,
    each: &mut impl FnMut(CreditCode, Row),
) -> Result<(), LedgerError> {
    let code = stored_code(&code)?;
    let row = as_of_row(&sum, &Bucket { region, dimension: Dimension::Pledgee(code.clone()) })?;
    each(code, row);
    Ok(())
}

/// The days of `at`'s month up to `at`, summed per pledgee row of `region`.
fn pledgee_days_as_of(
    store: &dyn Store,
    region: Region,
    at: AsOfDate,
) -> Result<std::collections::BTreeMap<String, AsOfDelta>, LedgerError> {
    let mut days = std::collections::BTreeMap::new();
    let through = sums::days_through(at.day_of_year);
    let cells = |_: &[u8]| through.clone();
    scan_all(store, &keys::asof_days_pledgees_prefix(region, at.year, at.month), Some(&cells), |key, value| {
        let code = keys::asof_days_pledgee_code(key)
            .ok_or_else(|| LedgerError::Internal("as-of days key without pledgee".into()))?;
        if days.len() >= EXPOSURE_ROWS_SCANNED_MAX && !days.contains_key(code) {
            return Err(too_many_pledgees(region));
        }
        let range = sums::days_through(at.day_of_year);
        let cells = sums::decode_range(key, value, range.clone())?;
        sums::add_cells(days.entry(code.to_owned()).or_default(), &cells, range)?;
        Ok(true)
    })?;
    Ok(days)
}

/// The budget of `region`'s programmes in `date`'s year and what was left of it at the end of
/// `date`: the programmes' commitments of that year by the dates of their claims (`keys::
/// programme_asof`), as `risk::budget_left` computes them now.
fn budget_left_as_of(
    store: &dyn Store,
    region: Region,
    date: chrono::NaiveDate,
) -> Result<(Money, Money), LedgerError> {
    let at = AsOfDate::new(date);
    super::risk_projector::budget_left_with(store, region, chrono::Datelike::year(&date), |id| {
        let mut committed = AsOfDelta::default();
        let sums_key = keys::programme_asof(id, at.year);
        if let Some(value) = store.get(&sums_key).map_err(unavailable)? {
            at.fold(&mut committed, at.year, &sums_key, &value)?;
        }
        at.fold_days(store, &mut committed, &keys::programme_asof_days(id, at.year, at.month))?;
        Ok(committed.row_delta().claimed_fen)
    })
}

/// Exposure of `region`; with `bank`, of that bank's book only (its pledgee rows), so a bank never
/// sees another bank's figures. `today` (China's date, decided by the caller at the edge: a read
/// reads no clock) names the year whose budget is left now.
// Longer than ~70 lines: the four groupings of one exposure read (total, child regions, pledgees,
// right kinds) now and as of a date, sharing the scope and the rows read.
pub fn exposure(
    store: &dyn Store,
    region: Region,
    group_by: GroupBy,
    bank: Option<&CreditCode>,
    as_of: Option<chrono::NaiveDate>,
    today: chrono::NaiveDate,
) -> Result<Exposure, LedgerError> {
    let total_of = |region: Region| match bank {
        None => Bucket { region, dimension: Dimension::Total },
        Some(code) => Bucket { region, dimension: Dimension::Pledgee(code.clone()) },
    };
    // Now: the maintained rows. As of a date: sums of dated deltas, without credit figures.
    let row = |store: &dyn Store, bucket: &Bucket| match as_of {
        None => row(store, bucket),
        Some(date) => row_as_of(store, bucket, date),
    };
    let has_credit = as_of.is_none();
    let year = chrono::Datelike::year(&today);
    let budget = |region: Region| match (as_of, bank) {
        (None, None) => super::risk_projector::budget_left(store, region, year).map(Some),
        (Some(date), None) => budget_left_as_of(store, region, date).map(Some),
        (_, Some(_)) => Ok(None),
    };
    let total = row(store, &total_of(region))?;
    let mut rows_omitted = 0;
    let rows = match group_by {
        GroupBy::None => Vec::new(),
        GroupBy::ChildRegion => region
            .children()
            .iter()
            .map(|child| {
                Ok(ExposureRow {
                    key: child.code_string(),
                    name: child.name().to_owned(),
                    row: row(store, &total_of(*child))?,
                    has_credit,
                    budget: budget(*child)?,
                })
            })
            .collect::<Result<_, LedgerError>>()?,
        GroupBy::RightKind => RightKind::ALL
            .into_iter()
            .map(|kind| {
                let dimension = match bank {
                    None => Dimension::Kind(kind),
                    Some(code) => Dimension::PledgeeKind(code.clone(), kind),
                };
                Ok(ExposureRow {
                    key: kind.name().to_owned(),
                    name: kind.name().to_owned(),
                    row: row(store, &Bucket { region, dimension })?,
                    has_credit: false,
                    budget: None,
                })
            })
            .collect::<Result<_, LedgerError>>()?,
        GroupBy::Pledgee => {
            let mut top = TopRows::default();
            // A pledgee that counts in nothing (as of a date, or a bank's own empty book) is no row.
            let mut offer = |code: CreditCode, value: Row| {
                let counts = !value.is_empty() || !value.secured_amount.is_zero();
                if counts {
                    top.offer(ExposureRow {
                        key: code.to_string(),
                        name: String::new(),
                        row: value,
                        has_credit,
                        budget: None,
                    });
                }
            };
            match (bank, as_of) {
                (Some(code), _) => offer(code.clone(), row(store, &total_of(region))?),
                (None, None) => {
                    // Every stored pledgee row is ranked: rows are deleted when they count nothing.
                    let mut scanned = 0usize;
                    scan_all(store, &keys::exposure_pledgees_prefix(region), None, |key, value| {
                        scanned += 1;
                        if scanned > EXPOSURE_ROWS_SCANNED_MAX {
                            return Err(too_many_pledgees(region));
                        }
                        let code = keys::exposure_pledgee_code(key)
                            .ok_or_else(|| LedgerError::Internal("pledgee row key without code".into()))?;
                        offer(stored_code(code)?, sums::row(key, value)?);
                        Ok(true)
                    })?;
                }
                (None, Some(date)) => pledgee_rows_as_of(store, region, date, &mut offer)?,
            }
            let (mut rows, omitted) = top.finish();
            for r in &mut rows {
                r.name = bank_name(store, &stored_code(&r.key)?)?;
            }
            rows_omitted = omitted;
            rows
        }
    };
    Ok(Exposure { region, total, has_credit, budget: budget(region)?, rows, rows_omitted })
}

/// A principal by name, revoked or not.
pub fn principal(
    store: &dyn Store,
    name: &crate::domain::principal::PrincipalName,
) -> Result<Option<crate::domain::principal::Principal>, LedgerError> {
    Ok(get::<PrincipalRecord>(store, &keys::principal(name))?.map(|r| r.principal))
}

pub fn list_principals(
    store: &dyn Store,
    page_size: usize,
    page_token: &str,
) -> Result<(Vec<PrincipalRecord>, String), LedgerError> {
    scan_page(store, keys::PRINCIPALS, filter_digest(&"principals"), page_token, page_size, |key, value| {
        codec::decode(key, value).map(|record| Some((record, value.len())))
    })
}

/// Journal entries from `from` (inclusive) to `to` (inclusive), at most `limit`, decoded.
pub fn journal_entries(journal: &dyn Journal, from: u64, to: u64, limit: usize) -> Result<Vec<Entry>, LedgerError> {
    if from > to {
        return Ok(Vec::new());
    }
    let limit = limit.min(usize::try_from(to - from + 1).unwrap_or(usize::MAX));
    journal.read(from, limit)?.iter().map(|stored| Ok(stored.decode()?)).collect()
}

/// The pledge an entry is about, as it was right after the entry (from the pledge's record, which
/// keeps every version), or `None` for other entries.
pub fn pledge_after(store: &dyn Store, entry: &Entry) -> Result<Option<Pledge>, LedgerError> {
    let Some(id) = entry.event.pledge_id() else { return Ok(None) };
    let current = pledge(store, id)?;
    current
        .as_at(entry.at)
        .map(Some)
        .ok_or_else(|| LedgerError::Internal(format!("pledge {id} has no version at entry {}", entry.sequence)))
}

/// A page of a pledge's journal entries, oldest first (registration, every change, release), each
/// with the pledge as it was right after it.
pub fn pledge_history(
    store: &dyn Store,
    journal: &dyn Journal,
    id: Uuid,
    page_size: usize,
    page_token: &str,
) -> Result<(Vec<(Entry, Pledge)>, String), LedgerError> {
    let prefix = keys::history_prefix(id);
    let token_filter = filter_digest(&("history", id));
    let (current, current_bytes) = get_sized::<Pledge>(store, &keys::pledge(id))?
        .ok_or(LedgerError::NotFound { resource: "pledge", id: id.to_string() })?;
    scan_page(store, &prefix, token_filter, page_token, page_size, |key, _| {
        let sequence = keys::history_sequence(key)
            .ok_or_else(|| LedgerError::Internal("history key without sequence".to_owned()))?;
        let stored = journal::read_one(journal, sequence)?
            .ok_or_else(|| LedgerError::Internal(format!("history names missing journal entry {sequence}")))?;
        let entry = stored.decode()?;
        let version = current
            .as_at(entry.at)
            .ok_or_else(|| LedgerError::Internal(format!("pledge {id} has no version at entry {sequence}")))?;
        Ok(Some(((entry, version), stored.bytes.len() + current_bytes)))
    })
}

/// Versions of one pledge at most: registration, every change, release.
pub const HISTORY_MAX: usize = crate::domain::pledge::CHANGES_PER_PLEDGE_MAX + 2;

/// Every county-level division inside `region`.
fn counties(region: Region) -> Vec<crate::domain::region::CountyCode> {
    use crate::domain::region::{CountyCode, Level};
    if region.level() == Level::County {
        return CountyCode::parse(&region.code_string()).into_iter().collect();
    }
    region.children().iter().flat_map(|child| counties(*child)).collect()
}

/// Facts scanned per statistics request at most: a country's registrations over ten years.
pub const FACTS_MAX: usize = 5_000_000;

/// Tallies the registrations in `period` inside `region` (of `bank`'s book only, when given), and
/// the risk side's flows of the period (defaults, claims, payments on their business days).
pub fn statistics(
    store: &dyn Store,
    region: Region,
    period: crate::domain::statistics::Period,
    grouping: crate::domain::statistics::Grouping,
    threshold: crate::domain::money::Money,
    kinds: crate::domain::statistics::KindFilter,
    bank: Option<&CreditCode>,
) -> Result<crate::domain::statistics::Tallies, LedgerError> {
    use crate::domain::statistics::{Fact, Grouping, RiskFact, Tallies};
    let mut tallies = Tallies::default();
    let mut scanned = 0usize;
    // The kind filter after the scan limit: it narrows what is counted, not what is read.
    let counts = |fact: &Fact| {
        region.contains(fact.county.region()) && bank.is_none_or(|b| *b == fact.pledgee) && kinds.keeps(fact)
    };
    // Filter by scope before scanning: a bank's statistics read only its own facts (by pledgee,
    // then date), everyone else's the facts of the region's counties (by county, then date).
    let ranges: Vec<(Vec<u8>, Vec<u8>)> = match bank {
        Some(code) => vec![keys::pledgee_facts_from(code, period.from)],
        None => counties(region).into_iter().map(|county| keys::facts_from(county, period.from)).collect(),
    };
    scan_facts(
        store,
        ranges,
        period,
        &mut scanned,
        |fact: &Fact| fact.registered_on,
        |fact| {
            if counts(&fact) {
                tallies.add(&fact, region, grouping, threshold);
            }
        },
    )?;
    // Risk facts are few (defaults are rare): a bank's are read by county too, then filtered.
    let ranges = counties(region).into_iter().map(|county| keys::risk_facts_from(county, period.from)).collect();
    scan_facts(
        store,
        ranges,
        period,
        &mut scanned,
        |fact: &RiskFact| fact.on,
        |fact| {
            if counts(&fact.pledge) {
                tallies.add_risk(&fact, region, grouping);
            }
        },
    )?;
    if grouping == Grouping::Pledgee {
        for (code, (name, _)) in tallies.rows.iter_mut() {
            *name = bank_name(store, &stored_code(code)?)?;
        }
    }
    Ok(tallies)
}

/// Hands every fact of `ranges` (each: the key after which to start, and its prefix) dated
/// (`date_of`) up to the end of `period` to `each`; `scanned` counts them against `FACTS_MAX`
/// across calls.
fn scan_facts<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
    period: crate::domain::statistics::Period,
    scanned: &mut usize,
    date_of: impl Fn(&T) -> chrono::NaiveDate,
    mut each: impl FnMut(T),
) -> Result<(), LedgerError> {
    const CHUNK: usize = 1000;
    for (mut after, prefix) in ranges {
        'range: loop {
            let chunk = store.scan(&prefix, Some(&after), CHUNK).map_err(unavailable)?;
            let done = chunk.len() < CHUNK;
            for (key, value) in chunk {
                let fact: T = codec::decode(&key, &value)?;
                // Facts are in date order under their prefix: the first one after the period ends it.
                if date_of(&fact) > period.to {
                    break 'range;
                }
                *scanned += 1;
                if *scanned > FACTS_MAX {
                    return Err(LedgerError::invalid_field(
                        "from",
                        format!("the period holds more than {FACTS_MAX} registrations; ask for a shorter one"),
                    ));
                }
                each(fact);
                after = key;
            }
            if done {
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::money::Money;
    use crate::domain::region::CountyCode;
    use crate::domain::statistics::{Fact, Grouping, KindFilter, Period};
    use crate::store::{Batch, MemoryStore, StoreError};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A store that counts the entries its scans return: what a query read.
    #[derive(Default)]
    struct Counting {
        inner: MemoryStore,
        scanned: AtomicUsize,
    }

    impl Store for Counting {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(key)
        }
        fn scan(
            &self,
            prefix: &[u8],
            after: Option<&[u8]>,
            limit: usize,
        ) -> Result<Vec<crate::store::Entry>, StoreError> {
            let entries = self.inner.scan(prefix, after, limit)?;
            self.scanned.fetch_add(entries.len(), Ordering::Relaxed);
            Ok(entries)
        }
        fn commit(&self, batch: Batch) -> Result<(), StoreError> {
            self.inner.commit(batch)
        }
        fn size_on_disk(&self) -> Result<u64, StoreError> {
            self.inner.size_on_disk()
        }
    }

    /// `own` facts of bank A and `others` of bank B, all in one county on one day, stored under
    /// both fact families as `events::apply_entry` stores them.
    fn store_with_facts(own: u32, others: u32) -> (Counting, CreditCode) {
        let a = CreditCode::parse("91330100716105852F").unwrap();
        let b = CreditCode::parse("914403001922038216").unwrap();
        let county = CountyCode::parse("330108").unwrap();
        let on = chrono::NaiveDate::from_ymd_opt(2024, 3, 1).unwrap();
        let mut batch = Batch::default();
        for i in 0..own + others {
            let pledgee = if i < own { a.clone() } else { b.clone() };
            let fact = Fact {
                county,
                registered_on: on,
                amount: Money::from_fen(100).unwrap(),
                pledgor: CreditCode::complete(&format!("91330100{i:09}")).unwrap(),
                pledgee: pledgee.clone(),
                rights: [1, 0, 0, 0, 0],
            };
            let id = Uuid::from_u128(u128::from(i) + 1);
            batch.put(keys::fact(county, on, id), codec::encode(&fact));
            batch.put(keys::fact_by_pledgee(&pledgee, on, id), codec::encode(&fact));
        }
        let store = Counting::default();
        store.commit(batch).unwrap();
        (store, a)
    }

    #[test]
    fn top_rows_rank_every_row_offered() {
        let check = |n: u64| {
            // Amounts that repeat, so ties are broken by key, offered in key order.
            let rows: Vec<ExposureRow> = (0..n)
                .map(|i| ExposureRow {
                    key: format!("{i:08}"),
                    name: String::new(),
                    row: Row {
                        secured_amount: Money::from_fen(i128::from(i * 7919 % 1000)).unwrap(),
                        ..Row::default()
                    },
                    has_credit: true,
                    budget: None,
                })
                .collect();
            let mut top = TopRows::default();
            rows.iter().cloned().for_each(|r| top.offer(r));
            let (got, omitted) = top.finish();
            let mut expected = rows;
            expected.sort_by(by_amount);
            expected.truncate(EXPOSURE_ROWS_MAX);
            assert_eq!(got, expected, "{n} rows");
            assert_eq!(omitted, n.saturating_sub(EXPOSURE_ROWS_MAX as u64), "{n} rows");
        };
        for n in [
            0,
            1,
            999,
            EXPOSURE_ROWS_MAX as u64,
            EXPOSURE_ROWS_MAX as u64 + 1,
            2 * EXPOSURE_ROWS_MAX as u64 + 5,
            45_001,
        ] {
            check(n);
        }
    }

    #[test]
    fn a_banks_statistics_read_only_its_own_facts() {
        let check = |own: u32, others: u32| {
            let (store, a) = store_with_facts(own, others);
            let from = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
            let period = Period::new(from, chrono::NaiveDate::from_ymd_opt(2024, 12, 31).unwrap()).unwrap();
            let region = Region::parse("330000").unwrap();
            let tallies =
                statistics(&store, region, period, Grouping::Pledgee, Money::ZERO, KindFilter::ALL, Some(&a)).unwrap();
            assert_eq!(tallies.total.registrations, u64::from(own));
            assert_eq!(store.scanned.load(Ordering::Relaxed), own as usize, "{own} own facts, {others} others");
            let everyone =
                statistics(&store, region, period, Grouping::None, Money::ZERO, KindFilter::ALL, None).unwrap();
            assert_eq!(everyone.total.registrations, u64::from(own + others));
        };
        check(0, 0);
        check(3, 0);
        check(0, 500);
        check(2, 3000);
    }
}

// The risk side's reads.

/// A right's record, if an office recorded the right.
pub fn right_record(store: &dyn Store, number: &RightNumber) -> Result<RightRecord, LedgerError> {
    get(store, &keys::right_record(number))?
        .ok_or_else(|| LedgerError::NotFound { resource: "right", id: number.to_string() })
}

/// The risk record of a pledge (empty when nothing was recorded).
pub fn pledge_risk(store: &dyn Store, id: Uuid) -> Result<PledgeRisk, LedgerError> {
    Ok(get(store, &keys::pledge_risk(id))?.unwrap_or_default())
}

/// A programme with its figures of a year: committed, paid, and the budget left.
pub type ProgrammeFigures = (Programme, ProgrammeYear, Money);

/// A programme with its figures of `year`.
pub fn programme(store: &dyn Store, id: Uuid, year: i32) -> Result<ProgrammeFigures, LedgerError> {
    let programme: Programme =
        get(store, &keys::programme(id))?.ok_or(LedgerError::NotFound { resource: "programme", id: id.to_string() })?;
    let figures: ProgrammeYear = get(store, &keys::programme_year(id, year))?.unwrap_or_default();
    let left = programme.budget_left_in(year, figures.committed.fen());
    Ok((programme, figures, left))
}

/// A page of the programmes of `region` and the regions inside it (all: the country).
pub fn list_programmes(
    store: &dyn Store,
    region: Region,
    year: i32,
    page_size: usize,
    page_token: &str,
) -> Result<(Vec<ProgrammeFigures>, String), LedgerError> {
    let prefix = keys::programmes_in(region);
    scan_page(store, &prefix, filter_digest(&("programmes", region.code())), page_token, page_size, |key, _| {
        let id = keys::trailing_id(key).ok_or_else(|| LedgerError::Internal("index key without id".to_owned()))?;
        Ok(Some((programme(store, id, year)?, 256)))
    })
}

pub fn claim(store: &dyn Store, id: Uuid) -> Result<Claim, LedgerError> {
    get(store, &keys::claim(id))?.ok_or(LedgerError::NotFound { resource: "claim", id: id.to_string() })
}

/// Which claims a listing walks: one programme's, one bank's, or all.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClaimFilter {
    pub programme: Option<Uuid>,
    pub bank: Option<CreditCode>,
}

/// A page of claims under `filter`, kept by `keep` (the caller's scope).
pub fn list_claims(
    store: &dyn Store,
    filter: &ClaimFilter,
    page_size: usize,
    page_token: &str,
    keep: impl Fn(&Claim) -> bool,
) -> Result<(Vec<Claim>, String), LedgerError> {
    let prefix = match (&filter.programme, &filter.bank) {
        (Some(programme), _) => keys::claims_of_programme(*programme),
        (None, Some(bank)) => keys::claims_of_bank(bank),
        (None, None) => keys::CLAIMS_BY_PROGRAMME.to_vec(),
    };
    scan_page(store, &prefix, filter_digest(filter), page_token, page_size, |key, _| {
        let id = keys::trailing_id(key).ok_or_else(|| LedgerError::Internal("index key without id".to_owned()))?;
        let (c, bytes) = get_sized::<Claim>(store, &keys::claim(id))?
            .ok_or_else(|| LedgerError::Internal(format!("index names missing claim {id}")))?;
        let matches = filter.programme.is_none_or(|p| p == c.programme_id)
            && filter.bank.as_ref().is_none_or(|b| *b == c.basis.bank)
            && keep(&c);
        Ok(matches.then_some((c, bytes)))
    })
}

/// A bank's alert policy as it stands (the defaults when it set none).
pub fn alert_policy(store: &dyn Store, bank: &CreditCode) -> Result<crate::domain::alert::PolicyRecord, LedgerError> {
    let found: Option<crate::domain::alert::PolicyRecord> = get(store, &keys::alert_policy(bank))?;
    Ok(found.unwrap_or_else(|| crate::domain::alert::PolicyRecord {
        bank: bank.clone(),
        policy: crate::domain::alert::AlertPolicy::default(),
        set: None,
    }))
}

/// Which alerts a listing walks: one bank's watched pledges (`Vx`) when a pledgee is given, else
/// a region's (`Vw`, the country's when none), each kept by kind and region.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertFilter {
    pub kind: Option<crate::domain::alert::AlertKind>,
    pub region: Option<Region>,
    pub pledgee: Option<CreditCode>,
}

/// A page of the alerts of `today`: the alerts of at most `page_size` watched pledges under
/// `filter` (a pledge's alerts are never split across pages), each under its bank's policy. A page
/// token is a position in the watched pledges, good on a later day as well.
pub fn list_alerts(
    store: &dyn Store,
    filter: &AlertFilter,
    today: chrono::NaiveDate,
    page_size: usize,
    page_token: &str,
) -> Result<(Vec<crate::domain::alert::Alert>, String), LedgerError> {
    use crate::domain::alert::{AlertPolicy, Watch};
    let prefix = match (&filter.pledgee, filter.region) {
        (Some(bank), _) => keys::watches_of_pledgee(bank),
        (None, Some(region)) => keys::watches_in(region),
        (None, None) => keys::watches_in(Region::COUNTRY),
    };
    // Banks' policies, read once per page.
    let policies = std::cell::RefCell::new(std::collections::HashMap::<CreditCode, AlertPolicy>::new());
    let (pages, token) = scan_page(store, &prefix, filter_digest(filter), page_token, page_size, |key, value| {
        let watch: Watch = codec::decode(key, value)?;
        if filter.region.is_some_and(|r| !r.contains(watch.county.region())) {
            return Ok(None);
        }
        let cached = policies.borrow().get(&watch.pledgee).copied();
        let policy = match cached {
            Some(p) => p,
            None => {
                let p = alert_policy(store, &watch.pledgee)?.policy;
                policies.borrow_mut().insert(watch.pledgee.clone(), p);
                p
            }
        };
        let alerts: Vec<_> =
            watch.alerts(&policy, today).into_iter().filter(|a| filter.kind.is_none_or(|k| a.kind == k)).collect();
        Ok((!alerts.is_empty()).then_some((alerts, value.len())))
    })?;
    Ok((pages.into_iter().flatten().collect(), token))
}

/// The alerts the entry of `sequence` raised (none: it raised none).
pub fn alerts_raised(store: &dyn Store, sequence: u64) -> Result<Vec<crate::domain::alert::Alert>, LedgerError> {
    Ok(get(store, &keys::alerts_raised(sequence))?.unwrap_or_default())
}

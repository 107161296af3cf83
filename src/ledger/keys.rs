//! The key layout of derived state inside one ordered key space. The first byte names the family;
//! fixed-width parts come first so that prefix scans select exactly one family and one region.
//! Every family here is derived from the journal (which lives apart, behind `journal::Journal`)
//! except `M`, the metadata of derived state itself. `DERIVED` lists the families `verify`
//! compares; a test checks that it names every family the projector writes.
//!
//! | key | value |
//! |---|---|
//! | `P` id(16) | pledge |
//! | `C` id(16) | credit line |
//! | `Q` principal name 0x00 request id(16) | idempotency record: fingerprint and response (ids are per principal) |
//! | `R` kind(1) number | id of the active pledge holding the right |
//! | `N` registration number | pledge id |
//! | `Ic` county(6 ASCII digits) id(16) | pledges by county (a province or city is a prefix) |
//! | `Ie` / `Io` credit code(18) id(16) | pledges by pledgee / pledgor |
//! | `Ir` kind(1) number 0x00 id(16) | pledges by right, active or not |
//! | `Jr` region(6 ASCII digits) id(16) | credit lines by region |
//! | `Jb` credit code(18) id(16) | credit lines by bank |
//! | `A` bucket | exposure row |
//! | `U` principal name | principal and its token hash |
//! | `T` token hash(32) | principal name (live tokens only) |
//! | `Kb` kind(1) value | certificate binding: its principal's name and the binding |
//! | `Kp` principal name | the certificate bindings of a principal |
//! | `G` county(6) day(4) id(16) | registration fact, for statistics |
//! | `Gb` pledgee(18) day(4) id(16) | the same fact by pledgee, so a bank's statistics read only its own |
//! | `Gr` county(6) day(4) tag(1) id(16) n(4) | risk fact: a default, claim or payment on its business day, for statistics |
//! | `D` credit code(18) | a bank's name, as the bank itself or an admin last wrote it (exposure, statistics) |
//! | `X` bucket year(4) | as-of sums of a row for one year (pledges in force and risk columns): the year's and its months' totals |
//! | `W` year(4) month(1) bucket | the deltas of the days of that month of the row |
//! | `Y` pledgor(18) | the pledgor's pledges: in-force interval, county, pledgee and right kinds of each (`projector::PledgorPledge`), for distinct enterprise counts |
//! | `H` pledge id(16) sequence(8) | the journal entries of a pledge |
//! | `Vr` kind(1) number | a right's record: every state an office recorded |
//! | `Vp` pledge id(16) | the pledge's risk: at-risk flags of its rights, default, valuations, claims |
//! | `Vl` bank(18) region(6) year(4) | what the bank registered that year in the region (programmes' stop lines) |
//! | `Vg` id(16) | risk-compensation programme |
//! | `Vi` region(6) id(16) | programmes by region (a province or city is a prefix) |
//! | `Vn` region(6) | how many programmes the region runs |
//! | `Vy` programme(16) year(4) | a programme's year: compensation committed and paid |
//! | `Vb` programme(16) bank(18) year(4) | losses of a bank's claims under a programme in a year |
//! | `Vq` programme(16) borrower(18) year(4) | fund parts of a programme's claims on one borrower's loans in a year (its cap per borrower) |
//! | `Vk` programme(16) year(4) | compensation committed that year and in its months (budget left as of a date) |
//! | `Vm` programme(16) year(4) month(1) | the same by the days of that month |
//! | `Vc` id(16) | claim |
//! | `Vd` programme(16) id(16) / `Ve` bank(18) id(16) | claims by programme / by bank |
//! | `Vw` county(6 ASCII digits) id(16) | a watched pledge's alert facts (`alert::Watch`): only pledges that have one (`alerts`) |
//! | `Vx` pledgee(18) id(16) | the same record by pledgee, so a bank's alerts are one range |
//! | `Vo` bank(18) | a bank's alert policy (`alert::PolicyRecord`); none: the defaults |
//! | `Vt` | the last business day the writer opened (`alerts::open_day`) |
//! | `Vz` sequence(8) | the alerts an entry raised (the change feed shows them); only entries that raised one |
//! | `L` level(1) index(8) | the journal's Merkle tree: the hash of each subtree of height 8, 16, … (`tree`; leaves are the journal's) |
//! | `S` tree size(8) witness key(32) | a witness's cosignature of the tree head of that size (`transparency::Cosignature`) |
//! | `M` name | metadata of derived state: its layout, the journal head its checkpoint reflects, the last assigned registration serial |

use crate::domain::exposure::{Bucket, Dimension};
use crate::domain::ident::{CreditCode, RightNumber};
use crate::domain::pledge::RegistrationNumber;
use crate::domain::region::{CountyCode, Level, Region};
use uuid::Uuid;

fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

pub fn pledge(id: Uuid) -> Vec<u8> {
    key(&[b"P", id.as_bytes()])
}

pub const PLEDGES: &[u8] = b"P";

pub fn credit_line(id: Uuid) -> Vec<u8> {
    key(&[b"C", id.as_bytes()])
}

pub const CREDIT_LINES: &[u8] = b"C";

/// A request id is scoped to the principal that sent it (as payment APIs scope idempotency keys
/// per account): one principal's ids never collide with another's. Names hold no 0x00.
pub fn request(principal: &crate::domain::principal::PrincipalName, id: Uuid) -> Vec<u8> {
    key(&[b"Q", principal.as_str().as_bytes(), &[0], id.as_bytes()])
}

/// The name a bank is shown under in exposure and statistics.
pub fn bank_name(code: &CreditCode) -> Vec<u8> {
    key(&[b"D", code.as_str().as_bytes()])
}

/// A right's holding (`projector::RightHolding`): its active pledge, if any, and how many pledges
/// it has been part of. Kept after a release.
pub fn active_right(number: &RightNumber) -> Vec<u8> {
    key(&[b"R", &[number.kind().tag()], number.as_str().as_bytes()])
}

pub fn registration(number: &RegistrationNumber) -> Vec<u8> {
    key(&[b"N", number.as_str().as_bytes()])
}

/// The digits of a region that every county inside it starts with: "33" for 330000, "3301" for
/// 330100, all six for a county, nothing for the country.
pub fn region_prefix(region: Region) -> String {
    let digits = format!("{:06}", region.code());
    match region.level() {
        Level::Country => String::new(),
        Level::Province => digits[..2].to_owned(),
        Level::City => digits[..4].to_owned(),
        Level::County => digits,
    }
}

pub fn by_county(county: CountyCode, id: Uuid) -> Vec<u8> {
    key(&[b"Ic", county.to_string().as_bytes(), id.as_bytes()])
}

pub fn by_region_prefix(region: Region) -> Vec<u8> {
    key(&[b"Ic", region_prefix(region).as_bytes()])
}

pub fn by_pledgee(code: &CreditCode, id: Uuid) -> Vec<u8> {
    key(&[b"Ie", code.as_str().as_bytes(), id.as_bytes()])
}

pub fn by_pledgee_prefix(code: &CreditCode) -> Vec<u8> {
    key(&[b"Ie", code.as_str().as_bytes()])
}

pub fn by_pledgor(code: &CreditCode, id: Uuid) -> Vec<u8> {
    key(&[b"Io", code.as_str().as_bytes(), id.as_bytes()])
}

pub fn by_pledgor_prefix(code: &CreditCode) -> Vec<u8> {
    key(&[b"Io", code.as_str().as_bytes()])
}

pub fn by_right_prefix(number: &RightNumber) -> Vec<u8> {
    key(&[b"Ir", &[number.kind().tag()], number.as_str().as_bytes(), &[0]])
}

pub fn by_right(number: &RightNumber, id: Uuid) -> Vec<u8> {
    key(&[&by_right_prefix(number), id.as_bytes()])
}

pub fn line_by_region(region: Region, id: Uuid) -> Vec<u8> {
    key(&[b"Jr", format!("{:06}", region.code()).as_bytes(), id.as_bytes()])
}

pub fn line_by_region_prefix(region: Region) -> Vec<u8> {
    key(&[b"Jr", region_prefix(region).as_bytes()])
}

pub fn line_by_bank(code: &CreditCode, id: Uuid) -> Vec<u8> {
    key(&[b"Jb", code.as_str().as_bytes(), id.as_bytes()])
}

pub fn line_by_bank_prefix(code: &CreditCode) -> Vec<u8> {
    key(&[b"Jb", code.as_str().as_bytes()])
}

/// The id at the end of an index key.
pub fn trailing_id(key: &[u8]) -> Option<Uuid> {
    let start = key.len().checked_sub(16)?;
    Uuid::from_slice(&key[start..]).ok()
}

/// The bytes that name a row: level, region code and dimension.
pub fn bucket_body(bucket: &Bucket) -> Vec<u8> {
    let mut k = vec![bucket.region.level().tag()];
    k.extend_from_slice(&bucket.region.code().to_be_bytes());
    match &bucket.dimension {
        Dimension::Total => k.push(b'T'),
        Dimension::Pledgee(code) => {
            k.push(b'B');
            k.extend_from_slice(code.as_str().as_bytes());
        }
        Dimension::Kind(kind) => {
            k.push(b'K');
            k.push(kind.tag());
        }
        Dimension::PledgeeKind(code, kind) => {
            k.push(b'P');
            k.extend_from_slice(code.as_str().as_bytes());
            k.push(kind.tag());
        }
    }
    k
}

pub fn exposure(bucket: &Bucket) -> Vec<u8> {
    key(&[b"A", &bucket_body(bucket)])
}

/// The keys of `family` for every pledgee row of one region: the family, then the start of
/// `bucket_body` of a pledgee bucket.
fn pledgees_prefix(family: u8, region: Region) -> Vec<u8> {
    let mut k = vec![family, region.level().tag()];
    k.extend_from_slice(&region.code().to_be_bytes());
    k.push(b'B');
    k
}

/// The credit code that follows a pledgees prefix in a key.
fn pledgee_code_after_prefix(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key.get(7..25)?).ok()
}

/// All pledgee rows of one region.
pub fn exposure_pledgees_prefix(region: Region) -> Vec<u8> {
    pledgees_prefix(b'A', region)
}

/// The pledgee credit code of a pledgee row's key.
pub fn exposure_pledgee_code(key: &[u8]) -> Option<&str> {
    pledgee_code_after_prefix(key)
}

/// The as-of sums of one row: one key per year (the year's total, its months' totals and its
/// days' deltas in one value), so a dated event writes one key per row, not three.
pub fn asof_prefix(bucket: &Bucket) -> Vec<u8> {
    key(&[b"X", &bucket_body(bucket)])
}

pub fn asof(bucket: &Bucket, year: u32) -> Vec<u8> {
    asof_of_body(&bucket_body(bucket), year)
}

/// `asof` of the bucket whose `bucket_body` is `body` (the writer makes the body once per row).
pub fn asof_of_body(body: &[u8], year: u32) -> Vec<u8> {
    key(&[b"X", body, &year.to_be_bytes()])
}

/// The days of one month (0-11) of a row's year: a family apart from the years', so that a scan of
/// a row's (or a region's pledgees') years reads no days. The month comes first: an as-of read gets
/// the one month it needs, and the pledgee rows of a region for one month are one contiguous scan.
pub fn asof_days(bucket: &Bucket, year: u32, month: u8) -> Vec<u8> {
    asof_days_of_body(&bucket_body(bucket), year, month)
}

/// `asof_days` of the bucket whose `bucket_body` is `body`.
pub fn asof_days_of_body(body: &[u8], year: u32, month: u8) -> Vec<u8> {
    assert!(month < 12, "a month of the year");
    key(&[b"W", &year.to_be_bytes(), &[month], body])
}

/// The days of one month of every pledgee row of a region.
pub fn asof_days_pledgees_prefix(region: Region, year: u32, month: u8) -> Vec<u8> {
    key(&[b"W", &year.to_be_bytes(), &[month], &pledgees_prefix(b'W', region)[1..]])
}

/// The pledgee code in a key under `asof_days_pledgees_prefix`.
pub fn asof_days_pledgee_code(key: &[u8]) -> Option<&str> {
    // The year and month (5 bytes) sit between the family and the bucket's body.
    pledgee_code_after_prefix(key.get(5..)?)
}

/// The yearly sums of every pledgee row of a region (to list the pledgees of any date).
pub fn asof_pledgees_prefix(region: Region) -> Vec<u8> {
    pledgees_prefix(b'X', region)
}

/// The pledgee code in a key under `asof_pledgees_prefix`.
pub fn asof_pledgee_code(key: &[u8]) -> Option<&str> {
    pledgee_code_after_prefix(key)
}

/// One pledgor's pledges, each with its in-force interval and what decides the rows it counts in
/// (distinct enterprises now and as of a date): one key per pledgor, so a registration writes one key.
pub fn asof_intervals(pledgor: &CreditCode) -> Vec<u8> {
    key(&[b"Y", pledgor.as_str().as_bytes()])
}

/// A principal by name: its record and token hash.
pub fn principal(name: &crate::domain::principal::PrincipalName) -> Vec<u8> {
    key(&[b"U", name.as_str().as_bytes()])
}

pub const PRINCIPALS: &[u8] = b"U";

/// The name of the live principal a token hash authenticates.
pub fn token(hash: &crate::domain::principal::TokenHash) -> Vec<u8> {
    key(&[b"T", hash])
}

/// A certificate binding: whose it is.
pub fn certificate_binding(binding: &crate::domain::principal::CertificateBinding) -> Vec<u8> {
    key(&[b"Kb", &[binding.kind_byte()], binding.value().as_bytes()])
}

pub const CERTIFICATE_BINDINGS: &[u8] = b"Kb";

/// The certificate bindings of a principal, in the order they were made.
pub fn certificate_bindings_of(name: &crate::domain::principal::PrincipalName) -> Vec<u8> {
    key(&[b"Kp", name.as_str().as_bytes()])
}

/// The sequence in a history key.
pub fn history_sequence(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(17..25)?.try_into().ok()?))
}

/// The journal entries that touched a pledge, by sequence.
pub fn history(id: Uuid, sequence: u64) -> Vec<u8> {
    key(&[b"H", id.as_bytes(), &sequence.to_be_bytes()])
}

pub fn history_prefix(id: Uuid) -> Vec<u8> {
    key(&[b"H", id.as_bytes()])
}

fn day_number(date: chrono::NaiveDate) -> u32 {
    use chrono::Datelike;
    u32::try_from(date.num_days_from_ce()).expect("dates are after year 1")
}

/// The registration fact of a pledge, by county and registration date (statistics).
pub fn fact(county: CountyCode, registered_on: chrono::NaiveDate, id: Uuid) -> Vec<u8> {
    key(&[b"G", county.to_string().as_bytes(), &day_number(registered_on).to_be_bytes(), id.as_bytes()])
}

/// The registration fact of a pledge, by pledgee and registration date (a bank's statistics).
pub fn fact_by_pledgee(pledgee: &CreditCode, registered_on: chrono::NaiveDate, id: Uuid) -> Vec<u8> {
    key(&[b"Gb", pledgee.as_str().as_bytes(), &day_number(registered_on).to_be_bytes(), id.as_bytes()])
}

/// The key after which the facts under `prefix` (a county's or a pledgee's) from `from` on begin.
fn facts_after(prefix: Vec<u8>, from: chrono::NaiveDate) -> (Vec<u8>, Vec<u8>) {
    let before = day_number(from).saturating_sub(1);
    (key(&[&prefix, &before.to_be_bytes(), &[0xff; 16]]), prefix)
}

/// The key after which a county's facts from `from` on begin, and the county's prefix.
pub fn facts_from(county: CountyCode, from: chrono::NaiveDate) -> (Vec<u8>, Vec<u8>) {
    facts_after(key(&[b"G", county.to_string().as_bytes()]), from)
}

/// The key after which a pledgee's facts from `from` on begin, and the pledgee's prefix.
pub fn pledgee_facts_from(pledgee: &CreditCode, from: chrono::NaiveDate) -> (Vec<u8>, Vec<u8>) {
    facts_after(key(&[b"Gb", pledgee.as_str().as_bytes()]), from)
}

/// A risk fact (`statistics::RiskFact`): `tag` b'd' a pledge's default (`id` the pledge), b'c' a
/// claim, b'p' the claim's payment number `n`.
pub fn risk_fact(county: CountyCode, on: chrono::NaiveDate, tag: u8, id: Uuid, n: u32) -> Vec<u8> {
    key(&[b"Gr", county.to_string().as_bytes(), &day_number(on).to_be_bytes(), &[tag], id.as_bytes(), &n.to_be_bytes()])
}

/// The key after which a county's risk facts from `from` on begin, and the county's prefix.
pub fn risk_facts_from(county: CountyCode, from: chrono::NaiveDate) -> (Vec<u8>, Vec<u8>) {
    facts_after(key(&[b"Gr", county.to_string().as_bytes()]), from)
}

/// The families derived from the journal, compared by `verify` and cleared by a rebuild.
pub const DERIVED: &[&[u8]] = &[
    b"A", b"C", b"D", b"G", b"H", b"I", b"J", b"K", b"L", b"N", b"P", b"Q", b"R", b"S", b"T", b"U", b"V", b"W", b"X",
    b"Y",
];

/// The hash of the tree's perfect subtree of height `level` (8, 16, …) and index `index`: the
/// tree's only stored keys (`tree`).
pub fn tree_node(level: u32, index: u64) -> Vec<u8> {
    let level = u8::try_from(level).expect("a tree's height fits a byte");
    assert!(level > 0, "leaves are not stored: the journal has the entries");
    key(&[b"L", &[level], &index.to_be_bytes()])
}

/// A witness's cosignature of the tree head of `size` entries.
pub fn cosignature(size: u64, witness_key: &[u8; 32]) -> Vec<u8> {
    key(&[b"S", &size.to_be_bytes(), witness_key])
}

pub fn cosignatures_of(size: u64) -> Vec<u8> {
    key(&[b"S", &size.to_be_bytes()])
}

pub fn right_record(number: &RightNumber) -> Vec<u8> {
    key(&[b"Vr", &[number.kind().tag()], number.as_str().as_bytes()])
}

pub fn pledge_risk(id: Uuid) -> Vec<u8> {
    key(&[b"Vp", id.as_bytes()])
}

fn year_bytes(year: i32) -> [u8; 4] {
    // Years are 1985..=2200 (text::DATE_YEAR_MIN..MAX): big-endian keeps them in order.
    u32::try_from(year).expect("a date's year is positive").to_be_bytes()
}

pub fn lending(bank: &CreditCode, region: Region, year: i32) -> Vec<u8> {
    key(&[b"Vl", bank.as_str().as_bytes(), format!("{:06}", region.code()).as_bytes(), &year_bytes(year)])
}

pub fn programme(id: Uuid) -> Vec<u8> {
    key(&[b"Vg", id.as_bytes()])
}

pub fn programme_by_region(region: Region, id: Uuid) -> Vec<u8> {
    key(&[b"Vi", format!("{:06}", region.code()).as_bytes(), id.as_bytes()])
}

/// How many programmes a region runs (exactly that region).
pub fn programme_count(region: Region) -> Vec<u8> {
    key(&[b"Vn", format!("{:06}", region.code()).as_bytes()])
}

/// Programmes of `region` and every region inside it.
pub fn programmes_in(region: Region) -> Vec<u8> {
    key(&[b"Vi", region_prefix(region).as_bytes()])
}

pub fn programme_year(id: Uuid, year: i32) -> Vec<u8> {
    key(&[b"Vy", id.as_bytes(), &year_bytes(year)])
}

/// A programme's compensation committed (claims filed and not rejected) as dated deltas in the
/// year sums of `projector::YearSums` (its `claimed_fen`), for the budget left as of a date.
pub fn programme_asof(id: Uuid, year: u32) -> Vec<u8> {
    key(&[b"Vk", id.as_bytes(), &year.to_be_bytes()])
}

/// The days of one month (0-11) of a programme's year of commitments.
pub fn programme_asof_days(id: Uuid, year: u32, month: u8) -> Vec<u8> {
    assert!(month < 12, "a month of the year");
    key(&[b"Vm", id.as_bytes(), &year.to_be_bytes(), &[month]])
}

pub fn programme_bank_year(id: Uuid, bank: &CreditCode, year: i32) -> Vec<u8> {
    key(&[b"Vb", id.as_bytes(), bank.as_str().as_bytes(), &year_bytes(year)])
}

/// The fund parts of a programme's claims filed in `year` on the loans of one borrower (the
/// pledges' pledgor), not rejected: the programme's cap per borrower and year.
pub fn programme_borrower_year(id: Uuid, borrower: &CreditCode, year: i32) -> Vec<u8> {
    key(&[b"Vq", id.as_bytes(), borrower.as_str().as_bytes(), &year_bytes(year)])
}

pub fn claim(id: Uuid) -> Vec<u8> {
    key(&[b"Vc", id.as_bytes()])
}

pub fn claim_by_programme(programme: Uuid, id: Uuid) -> Vec<u8> {
    key(&[b"Vd", programme.as_bytes(), id.as_bytes()])
}

/// Every claim, by programme.
pub const CLAIMS_BY_PROGRAMME: &[u8] = b"Vd";

pub fn claims_of_programme(programme: Uuid) -> Vec<u8> {
    key(&[b"Vd", programme.as_bytes()])
}

pub fn claim_by_bank(bank: &CreditCode, id: Uuid) -> Vec<u8> {
    key(&[b"Ve", bank.as_str().as_bytes(), id.as_bytes()])
}

pub fn claims_of_bank(bank: &CreditCode) -> Vec<u8> {
    key(&[b"Ve", bank.as_str().as_bytes()])
}

/// A watched pledge's alert facts, by county (a region's alerts are one range).
pub fn watch(county: CountyCode, id: Uuid) -> Vec<u8> {
    key(&[b"Vw", county.to_string().as_bytes(), id.as_bytes()])
}

/// The watched pledges of `region` and every region inside it.
pub fn watches_in(region: Region) -> Vec<u8> {
    key(&[b"Vw", region_prefix(region).as_bytes()])
}

/// A watched pledge's alert facts, by pledgee.
pub fn watch_by_pledgee(pledgee: &CreditCode, id: Uuid) -> Vec<u8> {
    key(&[b"Vx", pledgee.as_str().as_bytes(), id.as_bytes()])
}

pub fn watches_of_pledgee(pledgee: &CreditCode) -> Vec<u8> {
    key(&[b"Vx", pledgee.as_str().as_bytes()])
}

pub fn alert_policy(bank: &CreditCode) -> Vec<u8> {
    key(&[b"Vo", bank.as_str().as_bytes()])
}

/// The last business day opened (`Event::DayOpened`).
pub const DAY_OPENED: &[u8] = b"Vt";

/// The alerts the entry of `sequence` raised.
pub fn alerts_raised(sequence: u64) -> Vec<u8> {
    key(&[b"Vz", &sequence.to_be_bytes()])
}

pub const META_REGISTRATION_SERIAL: &[u8] = b"Mregistration_serial";
/// The journal head (sequence, hash) the checkpointed derived state reflects.
pub const META_DERIVED_THROUGH: &[u8] = b"Mderived_through";
/// The highest version of the rules (`journal::RULES`) an applied entry was decided under: a later
/// entry decided under older rules is refused by `decider::validate`.
pub const META_RULES: &[u8] = b"Mrules";

/// The layout version of the derived records (`ledger::DERIVED_LAYOUT`) the store holds.
pub const META_DERIVED_LAYOUT: &[u8] = b"Mderived_layout";

//! China's administrative divisions (GB/T 2260): the country, its 31 provinces, 342 prefecture-level
//! cities and 2,978 county-level divisions, shipped inside the binary from `src/domain/regions/` (source
//! and licence there).
//!
//! `RegionCode` holds only a code that exists in the table; `CountyCode` only a county-level one.
//! A few prefecture-level cities have no county level (Dongguan 441900, Zhongshan 442000, Danzhou
//! 460400): the table lists each as its own county-level division, so the same code is both a city
//! and a county, and `Region::level` tells which one a caller means.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Level {
    Country,
    Province,
    City,
    County,
}

impl Level {
    pub fn tag(self) -> u8 {
        match self {
            Level::Country => b'0',
            Level::Province => b'1',
            Level::City => b'2',
            Level::County => b'3',
        }
    }
}

/// A region of the table at one level. The country is code 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Region {
    level: Level,
    code: u32,
}

#[derive(Debug)]
struct Entry {
    name: String,
    children: Vec<Region>,
}

#[derive(Debug)]
struct Table {
    entries: HashMap<Region, Entry>,
}

const PROVINCES_CSV: &str = include_str!("regions/provinces.csv");
const CITIES_CSV: &str = include_str!("regions/cities.csv");
const AREAS_CSV: &str = include_str!("regions/areas.csv");

const COUNTRY_NAME: &str = "全国";

/// Splits a row of the shipped CSV files: plain fields, names in double quotes without commas.
fn rows(csv: &str) -> impl Iterator<Item = Vec<&str>> {
    csv.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(',').map(|f| f.trim().trim_matches('"')).collect())
}

fn code(field: &str, pad: u32) -> u32 {
    let value: u32 = field.parse().expect("region table: numeric code");
    value * pad
}

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    let mut entries: HashMap<Region, Entry> = HashMap::new();
    let country = Region { level: Level::Country, code: 0 };
    entries.insert(country, Entry { name: COUNTRY_NAME.to_owned(), children: Vec::new() });
    let mut add = |region: Region, name: &str, parent: Region| {
        let previous = entries.insert(region, Entry { name: name.to_owned(), children: Vec::new() });
        assert!(previous.is_none(), "region table: duplicate {region:?}");
        entries.get_mut(&parent).expect("region table: parent listed first").children.push(region);
    };
    for row in rows(PROVINCES_CSV) {
        add(Region { level: Level::Province, code: code(row[0], 10_000) }, row[1], country);
    }
    for row in rows(CITIES_CSV) {
        let parent = Region { level: Level::Province, code: code(row[2], 10_000) };
        add(Region { level: Level::City, code: code(row[0], 100) }, row[1], parent);
    }
    for row in rows(AREAS_CSV) {
        let parent = Region { level: Level::City, code: code(row[2], 100) };
        add(Region { level: Level::County, code: code(row[0], 1) }, row[1], parent);
    }
    for entry in entries.values_mut() {
        entry.children.sort();
    }
    Table { entries }
});

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    #[error("must be a 6-digit region code such as \"330108\"")]
    Syntax,
    #[error("is not a region code in the GB/T 2260 table")]
    Unknown,
    #[error("is a {0} code; a county-level code is required")]
    NotCounty(&'static str),
}

fn parse_digits(text: &str) -> Result<u32, RegionError> {
    if text.len() != 6 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RegionError::Syntax);
    }
    text.parse().map_err(|_| RegionError::Syntax)
}

impl Region {
    pub const COUNTRY: Region = Region { level: Level::Country, code: 0 };

    /// Parses a province, city or county code; the highest level wins where a code is both a city
    /// and a county (441900 is the city of Dongguan). The empty string is the country.
    pub fn parse(text: &str) -> Result<Region, RegionError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Region::COUNTRY);
        }
        let code = parse_digits(text)?;
        [Level::Province, Level::City, Level::County]
            .into_iter()
            .map(|level| Region { level, code })
            .find(|r| TABLE.entries.contains_key(r))
            .ok_or(RegionError::Unknown)
    }

    pub fn level(self) -> Level {
        self.level
    }

    pub fn code(self) -> u32 {
        self.code
    }

    /// The 6-digit code; empty for the country.
    pub fn code_string(self) -> String {
        if self.level == Level::Country { String::new() } else { format!("{:06}", self.code) }
    }

    pub fn name(self) -> &'static str {
        &TABLE.entries[&self].name
    }

    pub fn children(self) -> &'static [Region] {
        &TABLE.entries[&self].children
    }

    pub fn parent(self) -> Option<Region> {
        let (level, code) = match self.level {
            Level::Country => return None,
            Level::Province => (Level::Country, 0),
            Level::City => (Level::Province, self.code / 10_000 * 10_000),
            Level::County => (Level::City, self.code / 100 * 100),
        };
        Some(Region { level, code })
    }

    /// This region and every region above it, up to the country.
    pub fn with_ancestors(self) -> impl Iterator<Item = Region> {
        std::iter::successors(Some(self), |r| r.parent())
    }

    /// Whether `other` is this region or lies inside it.
    pub fn contains(self, other: Region) -> bool {
        other.with_ancestors().any(|r| r == self)
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.level == Level::Country { f.write_str("country") } else { write!(f, "{:06}", self.code) }
    }
}

impl serde::Serialize for Region {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.level, self.code).serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Region {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (level, code) = <(Level, u32)>::deserialize(d)?;
        let region = Region { level, code };
        if TABLE.entries.contains_key(&region) { Ok(region) } else { Err(serde::de::Error::custom("unknown region")) }
    }
}

/// A county-level division: where a pledgor is registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct CountyCode(Region);

impl CountyCode {
    pub fn parse(text: &str) -> Result<CountyCode, RegionError> {
        let code = parse_digits(text.trim())?;
        let county = Region { level: Level::County, code };
        if TABLE.entries.contains_key(&county) {
            return Ok(CountyCode(county));
        }
        match Region::parse(text)?.level {
            Level::Province => Err(RegionError::NotCounty("province")),
            Level::City => Err(RegionError::NotCounty("city")),
            Level::Country | Level::County => Err(RegionError::Unknown),
        }
    }

    pub fn region(self) -> Region {
        self.0
    }
}

impl fmt::Display for CountyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06}", self.0.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_complete() {
        assert_eq!(Region::COUNTRY.children().len(), 31);
        let cities: usize = Region::COUNTRY.children().iter().map(|p| p.children().len()).sum();
        assert_eq!(cities, 342);
        let counties: usize =
            Region::COUNTRY.children().iter().flat_map(|p| p.children()).map(|c| c.children().len()).sum();
        assert_eq!(counties, 2978);
    }

    fn check(input: &str, expected: Result<(Level, &str), RegionError>) {
        let got = Region::parse(input).map(|r| (r.level(), r.name()));
        assert_eq!(got, expected, "input {input:?}");
    }

    #[test]
    fn parses_every_level() {
        check("", Ok((Level::Country, "全国")));
        check("330000", Ok((Level::Province, "浙江省")));
        check("330100", Ok((Level::City, "杭州市")));
        check("330108", Ok((Level::County, "滨江区")));
        check("441900", Ok((Level::City, "东莞市")));
        check("330199", Err(RegionError::Unknown));
        check("33010", Err(RegionError::Syntax));
        check("33010x", Err(RegionError::Syntax));
    }

    #[test]
    fn counties_are_county_level() {
        assert!(CountyCode::parse("330108").is_ok());
        assert!(CountyCode::parse("441900").is_ok(), "Dongguan has no counties");
        assert_eq!(CountyCode::parse("330100"), Err(RegionError::NotCounty("city")));
        assert_eq!(CountyCode::parse("330000"), Err(RegionError::NotCounty("province")));
        assert_eq!(CountyCode::parse("999999"), Err(RegionError::Unknown));
    }

    #[test]
    fn ancestry() {
        let county = CountyCode::parse("330108").unwrap().region();
        let chain: Vec<String> = county.with_ancestors().map(|r| r.to_string()).collect();
        assert_eq!(chain, ["330108", "330100", "330000", "country"]);
        assert!(Region::parse("330000").unwrap().contains(county));
        assert!(!Region::parse("320000").unwrap().contains(county));
        let dongguan = CountyCode::parse("441900").unwrap().region();
        let chain: Vec<String> = dongguan.with_ancestors().map(|r| format!("{:?}", r.level())).collect();
        assert_eq!(chain, ["County", "City", "Province", "Country"]);
    }
}

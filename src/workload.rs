//! Realistic generated pledges, for the benchmark and tests: real county codes (skewed toward a
//! few provinces, as registrations are), valid credit codes and patent numbers, skewed amounts,
//! 1 to 10 rights of mixed kinds, and a fixed seed so every run generates the same data.

use crate::domain::ident::{CreditCode, PatentNumber};
use crate::domain::region::{Level, Region};
use crate::proto as pb;

/// A small deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Provinces weighted by their share of pledge financing (coastal provinces dominate).
const PROVINCE_WEIGHTS: [(&str, u64); 8] = [
    ("330000", 22),
    ("320000", 18),
    ("440000", 16),
    ("370000", 10),
    ("110000", 8),
    ("310000", 8),
    ("510000", 6),
    ("420000", 5),
];

#[derive(Debug)]
pub struct Workload {
    rng: Rng,
    counties: Vec<Vec<String>>,
    banks: Vec<(String, String)>,
    serial: u64,
    /// This workload's prefix (0..=9): its patents' serials start at `prefix` millions.
    prefix: u64,
    /// Patents numbered so far per filing year (2015 + index) and kind (invention, utility model).
    patents: [[u64; 2]; 9],
}

/// Patents a workload numbers per filing year and kind under each type digit: a 7-digit serial
/// holds ten prefixes of a million.
const PATENTS_PER_DIGIT: u64 = 1_000_000;

/// The 12 digits of the next patent of `kind_index` (0 invention, 1 utility model) filed in `year`:
/// the year, the type digit (the national one, then its PCT twin: 1 or 8, 2 or 9), and a serial
/// unique to the workload's prefix. Unique for up to two million patents per year and kind, so for
/// ten million pledges and more (a serial drawn from the pledge's number wrapped past one million).
fn patent_digits(year: u64, kind_index: usize, prefix: u64, numbered: u64) -> String {
    let (national, pct) = [('1', '8'), ('2', '9')][kind_index];
    let (digit, serial) = match numbered / PATENTS_PER_DIGIT {
        0 => (national, numbered),
        1 => (pct, numbered - PATENTS_PER_DIGIT),
        _ => panic!("the workload numbers at most {} patents per year and kind", 2 * PATENTS_PER_DIGIT),
    };
    format!("{year}{digit}{:07}", prefix * PATENTS_PER_DIGIT + serial)
}

/// A bank is named after its index; its credit code is valid and stable across runs.
fn bank(i: u64) -> (String, String) {
    let code = CreditCode::complete(&format!("91110000{:09}", 500_000_000 + i)).expect("valid alphabet");
    (format!("Bank {i}"), code.as_str().to_owned())
}

fn counties_of(region: Region) -> Vec<String> {
    if region.level() == Level::County {
        return vec![region.code_string()];
    }
    region.children().iter().flat_map(|c| counties_of(*c)).collect()
}

impl Workload {
    /// `seed` decides everything generated; `prefix` (0..=9) keeps the patents and enterprises of
    /// different workloads apart.
    pub fn new(seed: u64, prefix: u64) -> Workload {
        let counties = PROVINCE_WEIGHTS
            .iter()
            .map(|(code, _)| counties_of(Region::parse(code).expect("a province of the table")))
            .collect();
        Workload {
            rng: Rng::new(seed),
            counties,
            banks: (0..40).map(bank).collect(),
            serial: prefix.min(9) * 100_000_000,
            prefix: prefix.min(9),
            patents: [[0; 2]; 9],
        }
    }

    fn county(&mut self) -> String {
        let total: u64 = PROVINCE_WEIGHTS.iter().map(|(_, w)| w).sum();
        let mut pick = self.rng.below(total);
        let mut province = 0;
        for (i, (_, w)) in PROVINCE_WEIGHTS.iter().enumerate() {
            if pick < *w {
                province = i;
                break;
            }
            pick -= w;
        }
        let list = &self.counties[province];
        // Skew within a province too: the first counties (the capital's districts) take more.
        let i = (self.rng.below(list.len() as u64) * self.rng.below(list.len() as u64)) / list.len() as u64;
        list[i as usize].clone()
    }

    /// Amounts from 100 thousand to ~500 million yuan, most of them small (log-uniform-ish).
    fn amount(&mut self) -> String {
        let magnitude = 5 + self.rng.below(4) as u32; // 10^5 .. 10^8
        let base = 10u64.pow(magnitude);
        let yuan = base + self.rng.below(base * 4);
        format!("{yuan}.{:02}", self.rng.below(100))
    }

    /// The next pledge registration (`request_id` is left to the caller).
    pub fn pledge(&mut self) -> pb::Pledge {
        self.serial += 1;
        let n = self.serial;
        let pledgor = CreditCode::complete(&format!("91330100{:09}", n)).expect("valid alphabet");
        // Skewed: a few large banks hold most pledges.
        let bound = self.rng.below(self.banks.len() as u64) + 1;
        let (bank_name, bank_code) = self.banks[self.rng.below(bound) as usize].clone();
        let rights_n = 1 + (self.rng.below(10) * self.rng.below(10)) / 10;
        let year = 2015 + self.rng.below(9);
        let mut rights = Vec::new();
        for r in 0..rights_n {
            // A patent of `kind` (type digit `type_digit`) filed in `year`, lapsing `term` years on.
            let mut patent = |kind: pb::RightKind, kind_index: usize, label: &str, term: u64| {
                let numbered = &mut self.patents[(year - 2015) as usize][kind_index];
                let digits = patent_digits(year, kind_index, self.prefix, *numbered);
                *numbered += 1;
                pb::Right {
                    kind: kind as i32,
                    number: PatentNumber::complete(&digits).expect("12 digits"),
                    title: format!("{label} {n}-{r}"),
                    expires_on: format!("{}-12-31", year + term),
                    ..Default::default()
                }
            };
            let right = match self.rng.below(10) {
                0..=5 => patent(pb::RightKind::InventionPatent, 0, "Invention", 19),
                6..=7 => patent(pb::RightKind::UtilityModel, 1, "Utility model", 9),
                8 => pb::Right {
                    kind: pb::RightKind::Trademark as i32,
                    number: format!("{}", 10_000_000 + (n * 10 + r) % 90_000_000),
                    title: format!("Mark {n}-{r}"),
                    expires_on: format!("{}-12-31", year + 10),
                    ..Default::default()
                },
                _ => pb::Right {
                    kind: pb::RightKind::Copyright as i32,
                    number: format!("{year}SR{:09}", n * 10 + r),
                    title: format!("Software {n}-{r}"),
                    expires_on: format!("{}-12-31", year + 50),
                    ..Default::default()
                },
            };
            rights.push(right);
        }
        let month = 1 + self.rng.below(12);
        let day = 1 + self.rng.below(28);
        pb::Pledge {
            pledgor: Some(pb::Party { name: format!("Enterprise {n}"), credit_code: pledgor.as_str().to_owned() }),
            pledgee: Some(pb::Party { name: bank_name, credit_code: bank_code }),
            county_code: self.county(),
            secured_amount: self.amount(),
            debt_term_start: format!("{year}-{month:02}-{day:02}"),
            debt_term_end: format!("{}-{month:02}-{day:02}", year + 1 + self.rng.below(3)),
            registered_on: format!("{year}-{month:02}-{day:02}"),
            rights,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patent_numbers_stay_unique_past_a_million_per_year_and_kind() {
        let mut seen = std::collections::HashSet::new();
        for prefix in [1, 2] {
            for kind in [0, 1] {
                for numbered in (0..10).chain(999_990..1_000_010).chain(1_999_990..2_000_000) {
                    let digits = patent_digits(2019, kind, prefix, numbered);
                    assert!(PatentNumber::complete(&digits).is_some(), "{digits}");
                    assert!(seen.insert(digits.clone()), "{digits} twice");
                }
            }
        }
        assert!(seen.contains("201981999999"), "the PCT twin past a million");
    }

    #[test]
    fn every_generated_pledge_is_valid() {
        let mut w = Workload::new(7, 1);
        for i in 0..2000 {
            let request =
                pb::RegisterPledgeRequest { request_id: uuid::Uuid::new_v4().to_string(), pledge: Some(w.pledge()) };
            if let Err(e) = crate::grpc::convert::registration(&request) {
                panic!("pledge {i} is invalid: {e}: {request:?}");
            }
        }
    }
}

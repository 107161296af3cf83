//! Regulator statistics equal a brute-force recomputation over randomly generated histories,
//! unfiltered and filtered by the kinds of right a registration involves.

use crate::helpers::*;
use ipledger::domain::ident::PatentNumber;
use ipledger::proto::exposure_service_client::ExposureServiceClient;
use ipledger::proto::*;
use std::collections::{BTreeMap, BTreeSet};

/// A small deterministic generator (xorshift): every run tests the same histories.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    pub fn date(&mut self, from_year: i32, years: u64) -> String {
        let start = chrono::NaiveDate::from_ymd_opt(from_year, 1, 1).unwrap();
        (start + chrono::Days::new(self.below(365 * years))).to_string()
    }
}

pub const COUNTIES: [&str; 7] = ["330108", "330106", "330205", "320106", "441900", "110105", "330110"];

/// Registers `n` random pledges (random county, date, amount, kinds, pledgor among a few, pledgee
/// A or B), and changes or releases some. Returns every pledge as it now is.
pub async fn random_history(server: &TestServer, rng: &mut Rng, n: usize) -> Vec<Pledge> {
    let mut client = server.pledges().await;
    let enterprises: Vec<String> = (0..9).map(|_| credit_code(unique())).collect();
    let mut ids = Vec::new();
    for _ in 0..n {
        let mut p = pledge(
            COUNTIES[rng.below(COUNTIES.len() as u64) as usize],
            &format!("{}.{:02}", 1 + rng.below(30_000_000), rng.below(100)),
        );
        p.registered_on = rng.date(2019, 3);
        p.debt_term_start = p.registered_on.clone();
        p.debt_term_end = "2025-12-31".into();
        p.pledgor = Some(party("E", &enterprises[rng.below(9) as usize]));
        if rng.below(2) == 0 {
            p.pledgee = Some(party("Bank B", BANK_B));
        }
        if rng.below(3) == 0 {
            p.rights.push(Right {
                kind: RightKind::Trademark as i32,
                number: format!("{}", 10_000_000 + unique()),
                title: String::new(),
                expires_on: "2030-01-01".into(),
                ..Default::default()
            });
        }
        if rng.below(5) == 0 {
            p.rights.push(Right {
                kind: RightKind::Copyright as i32,
                number: format!("2019SR{:07}", unique()),
                title: String::new(),
                expires_on: "2060-01-01".into(),
                ..Default::default()
            });
        }
        let got = client.register_pledge(register(p)).await.unwrap().into_inner();
        match rng.below(4) {
            0 => {
                let on = if got.registered_on.as_str() < "2022-01-01" {
                    "2022-01-01".to_owned()
                } else {
                    got.registered_on.clone()
                };
                client.release_pledge(release(got.id.clone(), &on)).await.unwrap();
            }
            1 => {
                let change = ChangePledgeRequest {
                    request_id: request_id(),
                    id: got.id.clone(),
                    secured_amount: format!("{}.00", 1 + rng.below(1000)),
                    reason: "x".into(),
                    ..Default::default()
                };
                client.change_pledge(change).await.unwrap();
            }
            _ => {}
        }
        ids.push(got.id);
    }
    let mut all = Vec::new();
    for id in ids {
        all.push(client.get_pledge(GetPledgeRequest { id }).await.unwrap().into_inner());
    }
    all
}

pub fn within(region: &str, county: &str) -> bool {
    match region {
        "" => true,
        r if r.ends_with("0000") => county[..2] == r[..2],
        r if r.ends_with("00") => county[..4] == r[..4],
        r => county == r,
    }
}

/// An amount string in fen, exactly.
pub fn fen(amount: &str) -> i128 {
    let (whole, frac) = amount.split_once('.').unwrap_or((amount, "0"));
    whole.parse::<i128>().unwrap() * 100 + format!("{frac:0<2}")[..2].parse::<i128>().unwrap()
}

/// The amount a pledge was registered with, before any change.
fn registered_fen(p: &Pledge) -> i128 {
    p.changes.first().map_or_else(|| fen(&p.secured_amount), |c| fen(&c.secured_amount_before))
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Expected {
    fen: i128,
    registrations: u64,
    enterprises: BTreeSet<String>,
    patents: u64,
    trademarks: u64,
    copyrights: u64,
    inclusive: u64,
}

fn tally<'a>(pledges: impl Iterator<Item = &'a Pledge>, threshold_fen: i128) -> Expected {
    let mut e = Expected::default();
    for p in pledges {
        e.fen += registered_fen(p);
        e.registrations += 1;
        e.enterprises.insert(p.pledgor.as_ref().unwrap().credit_code.clone());
        for r in &p.rights {
            match RightKind::try_from(r.kind).unwrap() {
                RightKind::Trademark => e.trademarks += 1,
                RightKind::Copyright => e.copyrights += 1,
                _ => e.patents += 1,
            }
        }
        if registered_fen(p) <= threshold_fen {
            e.inclusive += 1;
        }
    }
    e
}

fn check_row(row: &StatisticsRow, e: &Expected, previous: &Expected, context: &str) {
    assert_eq!(fen(&row.registered_amount), e.fen, "{context} amount");
    assert_eq!(row.registrations, e.registrations, "{context} registrations");
    assert_eq!(row.enterprises, e.enterprises.len() as u64, "{context} enterprises");
    assert_eq!(
        (row.patents, row.trademarks, row.copyrights),
        (e.patents, e.trademarks, e.copyrights),
        "{context} rights"
    );
    assert_eq!(row.inclusive_registrations, e.inclusive, "{context} inclusive");
    assert_eq!(fen(&row.previous_registered_amount), previous.fen, "{context} previous");
    if previous.fen > 0 {
        let growth = (e.fen - previous.fen) as f64 * 100.0 / previous.fen as f64;
        let got: f64 = row.amount_growth_percent.parse().unwrap();
        assert!((got - growth).abs() <= 0.005 + 1e-9, "{context} growth {got} vs {growth}");
    } else {
        assert_eq!(row.amount_growth_percent, "", "{context} growth without a base");
    }
}

/// Whether `p` counts under a request's right kinds: every pledge when none is listed, else a
/// pledge with at least one right of a listed kind.
pub fn involves(p: &Pledge, kinds: &[i32]) -> bool {
    kinds.is_empty() || p.rights.iter().any(|r| kinds.contains(&r.kind))
}

/// Asks `request` (in yuan, then in 10,000 yuan) and compares the total and every row with a
/// recount of `pledges`, the history the server holds.
async fn check_statistics(
    exposure: &mut ExposureServiceClient<Authed>,
    pledges: &[Pledge],
    request: GetStatisticsRequest,
    context: &str,
) {
    let region = request.region_code.as_str();
    let threshold_fen = fen(&request.inclusive_threshold);
    let got = exposure.get_statistics(request.clone()).await.unwrap().into_inner();
    let in_period = |p: &&Pledge, from: &str, to: &str| {
        within(region, &p.county_code)
            && p.registered_on.as_str() >= from
            && p.registered_on.as_str() <= to
            && involves(p, &request.right_kinds)
    };
    let current: Vec<&Pledge> = pledges.iter().filter(|p| in_period(p, &request.from, &request.to)).collect();
    let previous: Vec<&Pledge> =
        pledges.iter().filter(|p| in_period(p, &got.previous_from, &got.previous_to)).collect();
    let context = format!("{context} {request:?}");
    check_row(
        got.total.as_ref().unwrap(),
        &tally(current.iter().copied(), threshold_fen),
        &tally(previous.iter().copied(), threshold_fen),
        &context,
    );
    // Rows: group the brute force the same way.
    let key_of = |p: &Pledge| -> Vec<String> {
        match ExposureGroupBy::try_from(request.group_by).unwrap() {
            ExposureGroupBy::Unspecified => vec![],
            ExposureGroupBy::Pledgee => vec![p.pledgee.as_ref().unwrap().credit_code.clone()],
            ExposureGroupBy::RightKind => {
                let kinds: BTreeSet<String> =
                    p.rights.iter().map(|r| RightKind::try_from(r.kind).unwrap().as_str_name().to_owned()).collect();
                kinds.into_iter().collect()
            }
            ExposureGroupBy::ChildRegion => {
                let c = &p.county_code;
                match region {
                    "" => vec![format!("{}0000", &c[..2])],
                    r if r.ends_with("0000") => vec![format!("{}00", &c[..4])],
                    r if r.ends_with("00") => vec![c.clone()],
                    _ => vec![], // a county has no children
                }
            }
        }
    };
    let mut groups: BTreeMap<String, (Vec<&Pledge>, Vec<&Pledge>)> = BTreeMap::new();
    for p in &current {
        for k in key_of(p) {
            groups.entry(k).or_default().0.push(p);
        }
    }
    for p in &previous {
        for k in key_of(p) {
            groups.entry(k).or_default().1.push(p);
        }
    }
    for (key, (cur, prev)) in &groups {
        if cur.is_empty() && request.group_by == ExposureGroupBy::Pledgee as i32 {
            continue; // pledgee rows list the period's pledgees
        }
        let row = got
            .rows
            .iter()
            .find(|r| &r.key == key)
            .unwrap_or_else(|| panic!("{context}: no row {key} in {:?}", got.rows));
        check_row(
            row,
            &tally(cur.iter().copied(), threshold_fen),
            &tally(prev.iter().copied(), threshold_fen),
            &format!("{context} row {key}"),
        );
    }
    // Rows with nothing in either period are empty: a filtered-out pledge left no trace.
    for row in &got.rows {
        if !groups.contains_key(&row.key) {
            check_row(row, &Expected::default(), &Expected::default(), &format!("{context} row {}", row.key));
        }
    }
    // In 10,000-yuan units the same figures, exactly.
    let wan = exposure
        .get_statistics(GetStatisticsRequest { unit: AmountUnit::TenThousandYuan as i32, ..request.clone() })
        .await
        .unwrap()
        .into_inner();
    let total = got.total.as_ref().unwrap();
    let wan_total = wan.total.as_ref().unwrap();
    // fen / 10^6 with 6 decimals has the same digits as yuan with 2.
    let digits = |s: &str| s.replace('.', "").trim_start_matches('0').to_owned();
    assert_eq!(digits(&wan_total.registered_amount), digits(&total.registered_amount), "{context} units");
    assert_eq!(wan_total.registered_amount.split_once('.').map(|(_, f)| f.len()), Some(6), "{context} units");
}

/// A random period of up to 400 days starting in 2020 or 2021.
fn random_period(rng: &mut Rng) -> (String, String) {
    let from = rng.date(2020, 2);
    let to =
        (chrono::NaiveDate::parse_from_str(&from, "%Y-%m-%d").unwrap() + chrono::Days::new(rng.below(400))).to_string();
    (from, to)
}

#[tokio::test]
async fn statistics_equal_a_brute_force_recomputation() {
    for seed in [0x9e37_79b9_7f4a_7c15u64, 0xdead_beef_1234_5678] {
        let server = TestServer::start().await;
        let mut rng = Rng(seed);
        let pledges = random_history(&server, &mut rng, 160).await;
        let mut exposure = server.exposure().await;
        for _ in 0..12 {
            let region = ["", "330000", "330100", "330108", "440000", "320000"][rng.below(6) as usize];
            let (from, to) = random_period(&mut rng);
            let threshold_fen = (1 + rng.below(30_000_000)) as i128 * 100;
            let request = GetStatisticsRequest {
                region_code: region.into(),
                from,
                to,
                group_by: rng.below(4) as i32,
                inclusive_threshold: format!("{}.00", threshold_fen / 100),
                unit: AmountUnit::Yuan as i32,
                right_kinds: Vec::new(),
            };
            check_statistics(&mut exposure, &pledges, request, &format!("seed {seed:x}")).await;
        }
        server.stop().await;
    }
}

/// The right kinds a dashboard asks for: patents (the three kinds), trademarks, copyrights, and
/// some other sets.
const KIND_FILTERS: [&[RightKind]; 6] = [
    &[RightKind::InventionPatent, RightKind::UtilityModel, RightKind::DesignPatent],
    &[RightKind::Trademark],
    &[RightKind::Copyright],
    &[RightKind::Trademark, RightKind::Copyright],
    &[RightKind::UtilityModel],
    &[RightKind::DesignPatent, RightKind::Copyright],
];

#[tokio::test]
async fn statistics_filtered_by_right_kind_equal_a_recount() {
    let server = TestServer::start().await;
    let mut rng = Rng(0x5151_2024_0a0b_0c0d);
    let mut pledges = random_history(&server, &mut rng, 60).await;
    // The random history pledges an invention patent every time: add pledges without one (a
    // utility model, a design, a trademark or a copyright alone, or a trademark and a copyright).
    let mut client = server.pledges().await;
    for i in 0..40u64 {
        let n = unique();
        let mut p =
            pledge(COUNTIES[rng.below(COUNTIES.len() as u64) as usize], &format!("{}.00", 1 + rng.below(30_000_000)));
        p.registered_on = rng.date(2019, 3);
        p.debt_term_start = p.registered_on.clone();
        p.debt_term_end = "2025-12-31".into();
        let patent = |kind: RightKind, code: u64| Right {
            kind: kind as i32,
            number: PatentNumber::complete(&format!("2019{code}{n:07}")).unwrap(),
            title: "A device".into(),
            expires_on: "2029-05-31".into(),
            ..Default::default()
        };
        let other = |kind: RightKind, number: String| Right {
            kind: kind as i32,
            number,
            expires_on: "2060-01-01".into(),
            ..Default::default()
        };
        let trademark = other(RightKind::Trademark, format!("{}", 20_000_000 + n));
        let copyright = other(RightKind::Copyright, format!("2019SR{n:07}"));
        p.rights = match i % 5 {
            0 => vec![patent(RightKind::UtilityModel, 2)],
            1 => vec![patent(RightKind::DesignPatent, 3)],
            2 => vec![trademark],
            3 => vec![copyright],
            _ => vec![trademark, copyright],
        };
        let got = client.register_pledge(register(p)).await.unwrap().into_inner();
        pledges.push(got);
    }
    let mut exposure = server.exposure().await;
    for (i, kinds) in KIND_FILTERS.iter().enumerate() {
        for _ in 0..3 {
            let region = ["", "330000", "330100", "320000"][rng.below(4) as usize];
            let (from, to) = random_period(&mut rng);
            let request = GetStatisticsRequest {
                region_code: region.into(),
                from,
                to,
                group_by: rng.below(4) as i32,
                inclusive_threshold: "10000000.00".into(),
                unit: AmountUnit::Yuan as i32,
                right_kinds: kinds.iter().map(|k| *k as i32).collect(),
            };
            check_statistics(&mut exposure, &pledges, request, &format!("filter {i}")).await;
        }
    }
    // The filter changes the figures: patents and trademarks together are not everything.
    let year = |kinds: &[RightKind]| GetStatisticsRequest {
        from: "2019-01-01".into(),
        to: "2021-12-31".into(),
        right_kinds: kinds.iter().map(|k| *k as i32).collect(),
        ..Default::default()
    };
    let registrations = |r: GetStatisticsResponse| r.total.unwrap().registrations;
    let all = registrations(exposure.get_statistics(year(&[])).await.unwrap().into_inner());
    let copyrights = registrations(exposure.get_statistics(year(&[RightKind::Copyright])).await.unwrap().into_inner());
    let expected = pledges.iter().filter(|p| involves(p, &[RightKind::Copyright as i32])).count() as u64;
    assert_eq!((all, copyrights), (pledges.len() as u64, expected));
    assert!(0 < copyrights && copyrights < all, "{copyrights} of {all}");
    server.stop().await;
}

#[tokio::test]
async fn statistics_refuse_an_unspecified_right_kind() {
    let server = TestServer::start().await;
    let mut exposure = server.exposure().await;
    let request = GetStatisticsRequest {
        from: "2019-01-01".into(),
        to: "2019-12-31".into(),
        right_kinds: vec![RightKind::Trademark as i32, RightKind::Unspecified as i32, 99],
        ..Default::default()
    };
    let (code, reason, fields) = failure(exposure.get_statistics(request).await.unwrap_err());
    assert_eq!(
        (code, reason.as_str(), fields),
        (tonic::Code::InvalidArgument, "INVALID_FIELDS", vec!["rightKinds[1]".to_owned(), "rightKinds[2]".to_owned()])
    );
    server.stop().await;
}

#[tokio::test]
async fn statistics_reject_bad_periods_and_stay_in_scope() {
    let server = TestServer::start().await;
    let mut exposure = server.exposure().await;
    let bad = GetStatisticsRequest { from: "2021-01-01".into(), to: "2020-01-01".into(), ..Default::default() };
    assert_eq!(failure(exposure.get_statistics(bad).await.unwrap_err()).2, ["to"]);
    let missing = GetStatisticsRequest::default();
    assert_eq!(failure(exposure.get_statistics(missing).await.unwrap_err()).2, ["from", "to"]);
    let office = server.token("office-hz", TokenRole::Office, "", "330100").await;
    let mut as_office = server.exposure_as(Bearer::new(&office)).await;
    let outside = GetStatisticsRequest {
        region_code: "320000".into(),
        from: "2019-01-01".into(),
        to: "2019-12-31".into(),
        ..Default::default()
    };
    assert_eq!(as_office.get_statistics(outside).await.unwrap_err().code(), tonic::Code::PermissionDenied);
    let mut p = pledge("320106", "5");
    p.registered_on = "2019-07-01".into();
    server.pledges().await.register_pledge(register(p)).await.unwrap();
    let mut p = pledge("330108", "7");
    p.registered_on = "2019-07-01".into();
    server.pledges().await.register_pledge(register(p)).await.unwrap();
    let mine = GetStatisticsRequest { from: "2019-01-01".into(), to: "2019-12-31".into(), ..Default::default() };
    let got = as_office.get_statistics(mine).await.unwrap().into_inner();
    assert_eq!((got.region_code.as_str(), got.total.unwrap().registered_amount.as_str()), ("330100", "7.00"));
    server.stop().await;
}

//! As-of exposure equals a brute-force recomputation from the pledges' business dates over
//! randomly generated histories, at every level and grouping.

use crate::helpers::*;
use crate::statistics::{Rng, fen, random_history, within};
use ipledger::proto::*;
use std::collections::{BTreeMap, BTreeSet};

/// The secured amount in force at the end of `d`, if the pledge is in force then.
pub fn amount_on(p: &Pledge, d: &str) -> Option<i128> {
    if p.registered_on.as_str() > d || (!p.released_on.is_empty() && p.released_on.as_str() <= d) {
        return None;
    }
    let registered = p.changes.first().map_or_else(|| fen(&p.secured_amount), |c| fen(&c.secured_amount_before));
    Some(p.changes.iter().rfind(|c| c.effective_on.as_str() <= d).map_or(registered, |c| fen(&c.secured_amount_after)))
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Expected {
    fen: i128,
    pledges: u64,
    enterprises: BTreeSet<String>,
    rights: u64,
}

impl Expected {
    fn add(&mut self, p: &Pledge, fen: i128, rights: u64) {
        self.fen += fen;
        self.pledges += 1;
        self.enterprises.insert(p.pledgor.as_ref().unwrap().credit_code.clone());
        self.rights += rights;
    }
}

fn check(row: &ExposureRow, e: &Expected, context: &str) {
    assert_eq!(
        (fen(&row.secured_amount), row.pledge_count, row.enterprise_count, row.right_count),
        (e.fen, e.pledges, e.enterprises.len() as u64, e.rights),
        "{context}"
    );
    assert_eq!(
        (row.credit_limit.as_str(), row.credit_drawn.as_str()),
        ("", ""),
        "{context}: no credit figures as of a date"
    );
}

#[tokio::test]
async fn as_of_exposure_equals_a_brute_force_recomputation() {
    for seed in [0x1234_5678_9abc_def1u64, 0x0f0f_f0f0_5555_aaaa] {
        let server = TestServer::start().await;
        let mut rng = Rng(seed);
        let pledges = random_history(&server, &mut rng, 150).await;
        let mut exposure = server.exposure().await;
        let mut dates: Vec<String> = (0..14).map(|_| rng.date(2018, 6)).collect();
        dates.extend(["2019-01-01", "2022-01-01", "2023-03-01", "2023-06-29", "2023-06-30"].map(str::to_owned));
        for date in dates {
            for region in ["", "330000", "330100", "330108", "440000", "441900", "110105"] {
                for group_by in [ExposureGroupBy::ChildRegion, ExposureGroupBy::Pledgee, ExposureGroupBy::RightKind] {
                    let request = GetExposureRequest {
                        region_code: region.into(),
                        group_by: group_by as i32,
                        as_of: date.clone(),
                    };
                    let got = exposure.get_exposure(request.clone()).await.unwrap().into_inner();
                    let context = format!("seed {seed:x} {request:?}");
                    let mut total = Expected::default();
                    let mut rows: BTreeMap<String, Expected> = BTreeMap::new();
                    for p in pledges.iter().filter(|p| within(region, &p.county_code)) {
                        let Some(amount) = amount_on(p, &date) else { continue };
                        total.add(p, amount, p.rights.len() as u64);
                        match group_by {
                            ExposureGroupBy::Pledgee => rows
                                .entry(p.pledgee.as_ref().unwrap().credit_code.clone())
                                .or_default()
                                .add(p, amount, p.rights.len() as u64),
                            ExposureGroupBy::RightKind => {
                                for kind in p.rights.iter().map(|r| r.kind).collect::<BTreeSet<_>>() {
                                    let n = p.rights.iter().filter(|r| r.kind == kind).count() as u64;
                                    let name = RightKind::try_from(kind).unwrap().as_str_name().to_owned();
                                    rows.entry(name).or_default().add(p, amount, n);
                                }
                            }
                            _ => {
                                let c = &p.county_code;
                                let key = match region {
                                    "" => format!("{}0000", &c[..2]),
                                    r if r.ends_with("0000") => format!("{}00", &c[..4]),
                                    r if r.ends_with("00") => c.clone(),
                                    _ => continue,
                                };
                                rows.entry(key).or_default().add(p, amount, p.rights.len() as u64);
                            }
                        }
                    }
                    check(got.total.as_ref().unwrap(), &total, &format!("{context} total"));
                    for row in &got.rows {
                        let empty = Expected::default();
                        check(row, rows.get(&row.key).unwrap_or(&empty), &format!("{context} row {}", row.key));
                    }
                    for key in rows.keys() {
                        assert!(got.rows.iter().any(|r| &r.key == key), "{context}: missing row {key}");
                    }
                }
            }
        }
        // Today, as of a date after every business date equals the active pledges now.
        let now = exposure.get_exposure(GetExposureRequest::default()).await.unwrap().into_inner().total.unwrap();
        let later = GetExposureRequest { as_of: "2199-12-31".into(), ..Default::default() };
        let later = exposure.get_exposure(later).await.unwrap().into_inner().total.unwrap();
        assert_eq!(
            (now.secured_amount, now.pledge_count, now.enterprise_count),
            (later.secured_amount, later.pledge_count, later.enterprise_count)
        );
        // And a rebuild from the journal reproduces every as-of sum.
        let report = ipledger::proto::journal_service_client::JournalServiceClient::with_interceptor(
            server.channel().await,
            Bearer::new(&server.admin_token),
        )
        .verify_journal(VerifyJournalRequest {})
        .await
        .unwrap()
        .into_inner();
        assert!(report.ok, "{:?}", report.divergence);
        server.stop().await;
    }
}

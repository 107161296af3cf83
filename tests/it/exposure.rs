//! Exposure is exact at every level and grouping, counts only active pledges, and matches a
//! recomputation from the listed pledges.

use crate::credit_lines::line;
use crate::helpers::*;
use ipledger::proto::*;

async fn exposure(server: &TestServer, region: &str, group_by: ExposureGroupBy) -> GetExposureResponse {
    let mut client = server.exposure().await;
    client
        .get_exposure(GetExposureRequest {
            region_code: region.into(),
            group_by: group_by as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

fn row<'a>(e: &'a GetExposureResponse, key: &str) -> &'a ExposureRow {
    e.rows.iter().find(|r| r.key == key).unwrap_or_else(|| panic!("no row {key} in {e:?}"))
}

fn totals(r: &ExposureRow) -> (&str, u64, u64, u64) {
    (r.secured_amount.as_str(), r.pledge_count, r.enterprise_count, r.right_count)
}

#[tokio::test]
async fn exposure_is_exact_at_every_level() {
    let server = TestServer::start().await;
    let mut pledges = server.pledges().await;
    let mut lines = server.credit_lines().await;
    lines.create_credit_line(line("330100", "1000000.00", BANK_A)).await.unwrap();
    lines.create_credit_line(line("330000", "500.00", BANK_B)).await.unwrap();

    let enterprise = credit_code(unique());
    let mut send = Vec::new();
    // Hangzhou Binjiang: two pledges of one enterprise (one enterprise), 0.10 + 0.20.
    for amount in ["0.10", "0.20"] {
        let mut p = pledge("330108", amount);
        p.pledgor = Some(party("Same", &enterprise));
        send.push(p);
    }
    // Hangzhou Xihu: a trademark and a patent for bank B.
    let mut p = pledge("330106", "1000000.55");
    p.pledgee = Some(party("Bank B", BANK_B));
    p.rights.push(Right {
        kind: RightKind::Trademark as i32,
        number: format!("{}", 10_000_000 + unique()),
        title: "Mark".into(),
        expires_on: "2030-01-01".into(),
        ..Default::default()
    });
    send.push(p);
    // Ningbo and Nanjing.
    send.push(pledge("330205", "7"));
    send.push(pledge("320106", "11"));
    let mut ids = Vec::new();
    for p in send {
        ids.push(pledges.register_pledge(register(p)).await.unwrap().into_inner().id);
    }
    // A released pledge counts nowhere.
    let gone = pledges.register_pledge(register(pledge("330108", "99999"))).await.unwrap().into_inner();
    pledges.release_pledge(release(gone.id, "2020-01-01")).await.unwrap();

    let county = exposure(&server, "330108", ExposureGroupBy::Unspecified).await;
    assert_eq!(totals(county.total.as_ref().unwrap()), ("0.30", 2, 1, 2));
    assert_eq!(county.region_name, "滨江区");
    let city = exposure(&server, "330100", ExposureGroupBy::ChildRegion).await;
    assert_eq!(totals(city.total.as_ref().unwrap()), ("1000000.85", 3, 2, 4));
    assert_eq!(city.total.as_ref().unwrap().credit_limit, "1000000.00");
    assert_eq!(totals(row(&city, "330108")), ("0.30", 2, 1, 2));
    assert_eq!(totals(row(&city, "330106")), ("1000000.55", 1, 1, 2));
    assert_eq!(totals(row(&city, "330102")), ("0.00", 0, 0, 0));
    let province = exposure(&server, "330000", ExposureGroupBy::ChildRegion).await;
    assert_eq!(totals(province.total.as_ref().unwrap()), ("1000007.85", 4, 3, 5));
    assert_eq!(province.total.as_ref().unwrap().credit_limit, "1000500.00");
    assert_eq!(totals(row(&province, "330200")), ("7.00", 1, 1, 1));
    assert_eq!(row(&province, "330200").credit_limit, "0.00");
    let country = exposure(&server, "", ExposureGroupBy::ChildRegion).await;
    assert_eq!(country.rows.len(), 31);
    assert_eq!(totals(country.total.as_ref().unwrap()), ("1000018.85", 5, 4, 6));
    assert_eq!(totals(row(&country, "320000")), ("11.00", 1, 1, 1));

    let by_bank = exposure(&server, "330000", ExposureGroupBy::Pledgee).await;
    assert_eq!(by_bank.rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), [BANK_B, BANK_A], "largest first");
    assert_eq!(totals(row(&by_bank, BANK_A)), ("7.30", 3, 2, 3));
    assert_eq!(
        (row(&by_bank, BANK_A).credit_limit.as_str(), row(&by_bank, BANK_B).credit_limit.as_str()),
        ("1000000.00", "500.00")
    );
    let by_kind = exposure(&server, "330100", ExposureGroupBy::RightKind).await;
    assert_eq!(by_kind.rows.len(), 5);
    assert_eq!(totals(row(&by_kind, "INVENTION_PATENT")), ("1000000.85", 3, 2, 3));
    assert_eq!(totals(row(&by_kind, "TRADEMARK")), ("1000000.55", 1, 1, 1));
    assert_eq!(row(&by_kind, "TRADEMARK").credit_limit, "", "credit lines are not split by kind");

    // Moving an amount moves every level.
    let change = ChangePledgeRequest {
        request_id: request_id(),
        id: ids[0].clone(),
        secured_amount: "1.10".into(),
        reason: "x".into(),
        ..Default::default()
    };
    pledges.change_pledge(change).await.unwrap();
    let country = exposure(&server, "", ExposureGroupBy::Unspecified).await;
    assert_eq!(totals(country.total.as_ref().unwrap()), ("1000019.85", 5, 4, 6));
    // Releasing one of the enterprise's two pledges keeps it counted once.
    pledges.release_pledge(release(ids[1].clone(), "2020-01-01")).await.unwrap();
    let county = exposure(&server, "330108", ExposureGroupBy::Unspecified).await;
    assert_eq!(totals(county.total.as_ref().unwrap()), ("1.10", 1, 1, 1));

    let mut client = server.exposure().await;
    let bad = client
        .get_exposure(GetExposureRequest { region_code: "339999".into(), group_by: 0, ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(failure(bad).2, ["regionCode"]);
    server.stop().await;
}

/// Random pledges, releases and changes; the aggregates equal a recomputation from the pledges.
#[tokio::test]
async fn exposure_equals_a_recomputation() {
    let server = TestServer::start().await;
    let mut pledges = server.pledges().await;
    let counties = ["330108", "330106", "330205", "320106", "441900", "110105"];
    let enterprises: Vec<String> = (0..7).map(|_| credit_code(unique())).collect();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut registered = Vec::new();
    for _ in 0..120 {
        let mut p = pledge(
            counties[next(counties.len() as u64) as usize],
            &format!("{}.{:02}", next(1_000_000) + 1, next(100)),
        );
        p.pledgor = Some(party("E", &enterprises[next(enterprises.len() as u64) as usize]));
        if next(2) == 0 {
            p.pledgee = Some(party("Bank B", BANK_B));
        }
        let got = pledges.register_pledge(register(p)).await.unwrap().into_inner();
        match next(4) {
            0 => {
                let r = release(got.id.clone(), "2020-01-01");
                pledges.release_pledge(r).await.unwrap();
            }
            1 => {
                let c = ChangePledgeRequest {
                    request_id: request_id(),
                    id: got.id.clone(),
                    secured_amount: format!("{}.01", next(1000) + 1),
                    reason: "x".into(),
                    ..Default::default()
                };
                pledges.change_pledge(c).await.unwrap();
            }
            _ => {}
        }
        registered.push(got.id);
    }
    let mut all = Vec::new();
    let mut request = ListPledgesRequest { page_size: 50, status: PledgeStatus::Active as i32, ..Default::default() };
    loop {
        let page = pledges.list_pledges(request.clone()).await.unwrap().into_inner();
        all.extend(page.pledges);
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    let within = |p: &Pledge, region: &str| match region {
        "" => true,
        r if r.ends_with("0000") => p.county_code[..2] == r[..2],
        r if r.ends_with("00") => p.county_code[..4] == r[..4],
        r => p.county_code == r,
    };
    for region in ["", "330000", "330100", "330108", "440000", "441900", "110000", "110105"] {
        let ps: Vec<&Pledge> = all.iter().filter(|p| within(p, region)).collect();
        let fen: i128 = ps.iter().map(|p| (p.secured_amount.parse::<f64>().unwrap() * 100.0).round() as i128).sum();
        let mut pledgors: Vec<&str> = ps.iter().map(|p| p.pledgor.as_ref().unwrap().credit_code.as_str()).collect();
        pledgors.sort();
        pledgors.dedup();
        let e = exposure(&server, region, ExposureGroupBy::Pledgee).await;
        let total = e.total.as_ref().unwrap();
        assert_eq!(total.secured_amount, format!("{}.{:02}", fen / 100, fen % 100), "region {region}");
        assert_eq!(total.pledge_count, ps.len() as u64, "region {region}");
        assert_eq!(total.enterprise_count, pledgors.len() as u64, "region {region}");
        let rows_pledges: u64 = e.rows.iter().map(|r| r.pledge_count).sum();
        assert_eq!(rows_pledges, ps.len() as u64, "pledgee rows add up in {region}");
    }
    server.stop().await;
}

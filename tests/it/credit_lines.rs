//! Credit lines: pledges draw on them within their limit, bank and region; release and changes
//! give back or draw the difference.

use crate::helpers::*;
use ipledger::proto::*;
use tonic::Code;

pub fn line(region: &str, limit: &str, bank: &str) -> CreateCreditLineRequest {
    CreateCreditLineRequest {
        request_id: request_id(),
        credit_line: Some(CreditLine {
            bank: Some(party("Bank", bank)),
            region_code: region.into(),
            program: "Hangzhou IP financing programme".into(),
            limit: limit.into(),
            valid_from: "2019-01-01".into(),
            valid_to: "2021-12-31".into(),
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn pledges_draw_on_credit_lines() {
    let server = TestServer::start().await;
    let mut lines = server.credit_lines().await;
    let mut pledges = server.pledges().await;
    let created = lines.create_credit_line(line("330100", "1000.00", BANK_A)).await.unwrap().into_inner();
    assert_eq!(
        (created.limit.as_str(), created.drawn.as_str(), created.available.as_str()),
        ("1000.00", "0.00", "1000.00")
    );

    let mut p = pledge("330108", "600");
    p.credit_line_id = created.id.clone();
    let drawn = pledges.register_pledge(register(p)).await.unwrap().into_inner();
    let after = lines.get_credit_line(GetCreditLineRequest { id: created.id.clone() }).await.unwrap().into_inner();
    assert_eq!((after.drawn.as_str(), after.available.as_str()), ("600.00", "400.00"));

    let refuse = |county: &str, amount: &str, bank: &str, registered_on: &str| {
        let mut p = pledge(county, amount);
        p.pledgee = Some(party("Bank", bank));
        p.credit_line_id = created.id.clone();
        p.registered_on = registered_on.into();
        register(p)
    };
    let cases = [
        ("exhausted", refuse("330108", "400.01", BANK_A, "2019-06-05"), "CREDIT_LINE_EXHAUSTED"),
        ("other bank", refuse("330108", "1", BANK_B, "2019-06-05"), "CREDIT_LINE_BANK_MISMATCH"),
        ("other city", refuse("330205", "1", BANK_A, "2019-06-05"), "CREDIT_LINE_REGION_MISMATCH"),
        ("expired line", refuse("330108", "1", BANK_A, "2022-01-01"), "CREDIT_LINE_NOT_IN_FORCE"),
    ];
    for (name, request, expected) in cases {
        let (code, reason, _) = failure(pledges.register_pledge(request).await.expect_err(name));
        assert_eq!((code, reason.as_str()), (Code::FailedPrecondition, expected), "{name}");
    }
    let mut p = pledge("330108", "1");
    p.credit_line_id = uuid::Uuid::new_v4().to_string();
    assert_eq!(failure(pledges.register_pledge(register(p)).await.unwrap_err()).1, "CREDIT_LINE_NOT_FOUND");
    // Exactly the available amount is fine.
    let mut p = pledge("330108", "400");
    p.credit_line_id = created.id.clone();
    let full = pledges.register_pledge(register(p)).await.unwrap().into_inner();

    // A change draws the difference, or is refused when the line lacks it.
    let up = ChangePledgeRequest {
        request_id: request_id(),
        id: drawn.id.clone(),
        secured_amount: "600.01".into(),
        reason: "more".into(),
        ..Default::default()
    };
    assert_eq!(failure(pledges.change_pledge(up).await.unwrap_err()).1, "CREDIT_LINE_EXHAUSTED");
    let down = ChangePledgeRequest {
        request_id: request_id(),
        id: drawn.id.clone(),
        secured_amount: "500".into(),
        reason: "less".into(),
        ..Default::default()
    };
    pledges.change_pledge(down).await.unwrap();
    let after = lines.get_credit_line(GetCreditLineRequest { id: created.id.clone() }).await.unwrap().into_inner();
    assert_eq!((after.drawn.as_str(), after.available.as_str()), ("900.00", "100.00"));

    pledges.release_pledge(release(full.id, "2020-01-01")).await.unwrap();
    let after = lines.get_credit_line(GetCreditLineRequest { id: created.id.clone() }).await.unwrap().into_inner();
    assert_eq!((after.drawn.as_str(), after.available.as_str()), ("500.00", "500.00"));
    server.stop().await;
}

#[tokio::test]
async fn credit_lines_are_validated_listed_and_idempotent() {
    let server = TestServer::start().await;
    let mut lines = server.credit_lines().await;
    let mut bad = line("330199", "-1", "x");
    bad.credit_line.as_mut().unwrap().valid_to = "2018-01-01".into();
    let (code, _, fields) = failure(lines.create_credit_line(bad).await.unwrap_err());
    assert_eq!(code, Code::InvalidArgument);
    assert_eq!(fields, ["creditLine.bank.creditCode", "creditLine.regionCode", "creditLine.limit"]);
    let reversed = {
        let mut l = line("330100", "1", BANK_A);
        l.credit_line.as_mut().unwrap().valid_to = "2018-01-01".into();
        l
    };
    assert_eq!(failure(lines.create_credit_line(reversed).await.unwrap_err()).2, ["creditLine.validTo"]);

    let request = line("330100", "2600000000.00", BANK_A);
    let a = lines.create_credit_line(request.clone()).await.unwrap().into_inner();
    assert_eq!(lines.create_credit_line(request).await.unwrap().into_inner(), a);
    let b = lines.create_credit_line(line("330000", "5", BANK_B)).await.unwrap().into_inner();
    let c = lines.create_credit_line(line("320100", "5", BANK_A)).await.unwrap().into_inner();
    let ids = |r: ListCreditLinesResponse| {
        let mut v: Vec<String> = r.credit_lines.into_iter().map(|l| l.id).collect();
        v.sort();
        v
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let all = lines.list_credit_lines(ListCreditLinesRequest::default()).await.unwrap().into_inner();
    assert_eq!(ids(all), sorted(vec![a.id.clone(), b.id.clone(), c.id.clone()]));
    let zj = lines
        .list_credit_lines(ListCreditLinesRequest { region_code: "330000".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(zj), sorted(vec![a.id.clone(), b.id.clone()]));
    let hz = lines
        .list_credit_lines(ListCreditLinesRequest { region_code: "330100".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(hz), vec![a.id.clone()]);
    let bank_a = lines
        .list_credit_lines(ListCreditLinesRequest {
            bank_credit_code: BANK_A.into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bank_a.credit_lines.len(), 1);
    assert!(!bank_a.next_page_token.is_empty());
    assert_eq!(
        lines.get_credit_line(GetCreditLineRequest { id: uuid::Uuid::new_v4().to_string() }).await.unwrap_err().code(),
        Code::NotFound
    );
    server.stop().await;
}

//! The risk side through the real server (issue 13): expiry left out of a registration, rights'
//! records and the refusals they cause, at-risk flags that follow a right's status, defaults,
//! valuations, and a risk-compensation programme's full cycle with the risk columns of exposure.

use crate::helpers::*;
use chrono::Datelike;
use ipledger::proto::journal_service_client::JournalServiceClient;
use ipledger::proto::risk_service_client::RiskServiceClient;
use ipledger::proto::*;
use std::collections::{BTreeMap, BTreeSet};
use tonic::Code;

/// What an office records of a patent held by `holder`, in effect from 2019-01-01 (before the
/// helpers' registrations of 2019-06-05).
fn right_state(number: &str, holder: &str, status: RightStatus, freeze: Option<Freeze>) -> RecordRightRequest {
    RecordRightRequest {
        request_id: request_id(),
        right_kind: RightKind::InventionPatent as i32,
        right_number: number.to_owned(),
        state: Some(RightState {
            holder: Some(party("Holder", holder)),
            status: status as i32,
            status_since: "2019-01-01".to_owned(),
            freeze,
            ..Default::default()
        }),
    }
}

fn freeze() -> Freeze {
    Freeze {
        case_number: "(2024)浙0106财保123号".to_owned(),
        court: "杭州市西湖区人民法院".to_owned(),
        from: "2024-03-01".to_owned(),
        until: "2024-09-01".to_owned(),
    }
}

/// The total row of `region` as `token` sees it.
async fn total(server: &TestServer, token: &str, region: &str) -> ExposureRow {
    let request = GetExposureRequest { region_code: region.to_owned(), ..Default::default() };
    server.exposure_as(Bearer::new(token)).await.get_exposure(request).await.unwrap().into_inner().total.unwrap()
}

fn pledgor_code(p: &Pledge) -> String {
    p.pledgor.as_ref().unwrap().credit_code.clone()
}

#[tokio::test]
async fn an_expiry_left_out_is_bounded_by_the_statute_or_left_unknown() {
    let server = TestServer::start().await;
    let mut pledges = server.pledges().await;
    let mut p = pledge("330108", "1000000");
    p.rights[0].expires_on = String::new();
    p.rights.push(Right {
        kind: RightKind::Trademark as i32,
        number: format!("{}", 30_000_000 + unique()),
        title: "Mark".to_owned(),
        ..Default::default()
    });
    let request = register(p.clone());
    let registered = pledges.register_pledge(request.clone()).await.unwrap().into_inner();
    let patent = &registered.rights[0];
    assert_eq!(
        (patent.expires_on.as_str(), patent.expiry_basis(), patent.statutory_term_years),
        ("2039-12-31", ExpiryBasis::StatutoryBound, 20),
        "an invention filed in 2019: 20 years"
    );
    let mark = &registered.rights[1];
    assert_eq!((mark.expires_on.as_str(), mark.expiry_basis()), ("", ExpiryBasis::Unknown));
    // A retry of the same request is recognised (its fingerprint holds the expiry left out).
    let again = pledges.register_pledge(request).await.unwrap().into_inner();
    assert_eq!(again, registered);
    // The bound is a bound: a debt term past it is refused, as past a given date.
    let mut late = pledge("330108", "1000000");
    late.rights[0].expires_on = String::new();
    late.debt_term_end = "2040-01-01".to_owned();
    let refused = pledges.register_pledge(register(late)).await.unwrap_err();
    assert_eq!(
        failure(refused),
        (Code::InvalidArgument, "TERM_EXCEEDS_RIGHT_EXPIRY".to_owned(), vec!["pledge.rights[0].expiresOn".to_owned()])
    );
    // A changed debt term too.
    let change = ChangePledgeRequest {
        request_id: request_id(),
        id: registered.id.clone(),
        debt_term_end: "2040-06-30".to_owned(),
        reason: "extended".to_owned(),
        ..Default::default()
    };
    let refused = pledges.change_pledge(change).await.unwrap_err();
    assert_eq!(failure(refused).1, "TERM_EXCEEDS_RIGHT_EXPIRY");
}

#[tokio::test]
async fn registration_follows_what_the_register_says_of_a_right() {
    let server = TestServer::start().await;
    let office = server.token("office-zj", TokenRole::Office, "", "330000").await;
    let mut as_office = risk_as(&server, &office).await;
    // Registrations of 2019 judged by the record on their day: the admin's backfill (a bank dates
    // its own within 30 days before today).
    let mut as_bank = server.pledges().await;
    let refusing = as_bank.clone();
    let refusal = |p: Pledge| {
        let mut client = refusing.clone();
        async move { failure(client.register_pledge(register(p)).await.unwrap_err()) }
    };

    // Held by the pledgor and in force: accepted.
    let p = pledge("330108", "500000");
    let number = p.rights[0].number.clone();
    let recorded = as_office.record_right(right_state(&number, &pledgor_code(&p), RightStatus::InForce, None)).await;
    assert_eq!(recorded.unwrap().into_inner().risk, "");
    as_bank.register_pledge(register(p)).await.unwrap();

    // Held by someone else than the pledgor.
    let p = pledge("330108", "500000");
    let someone = credit_code(unique());
    as_office.record_right(right_state(&p.rights[0].number, &someone, RightStatus::InForce, None)).await.unwrap();
    assert_eq!(refusal(p).await, (Code::FailedPrecondition, "PLEDGOR_NOT_HOLDER".to_owned(), vec![]));

    // Not in force, each status.
    for status in [RightStatus::Lapsed, RightStatus::Invalidated, RightStatus::Expired] {
        let p = pledge("330108", "500000");
        as_office.record_right(right_state(&p.rights[0].number, &pledgor_code(&p), status, None)).await.unwrap();
        assert_eq!(refusal(p).await.1, "RIGHT_NOT_IN_FORCE", "{status:?}");
    }

    // Frozen by a court.
    let p = pledge("330108", "500000");
    let frozen = right_state(&p.rights[0].number, &pledgor_code(&p), RightStatus::InForce, Some(freeze()));
    assert_eq!(as_office.record_right(frozen).await.unwrap().into_inner().risk, "FROZEN");
    assert_eq!(refusal(p).await.1, "RIGHT_FROZEN");

    // The register's expiry date before the debt term's end.
    let p = pledge("330108", "500000");
    let mut early = right_state(&p.rights[0].number, &pledgor_code(&p), RightStatus::InForce, None);
    early.state.as_mut().unwrap().expires_on = "2021-12-31".to_owned();
    early.state.as_mut().unwrap().status_since = "2019-01-01".to_owned();
    as_office.record_right(early).await.unwrap();
    assert_eq!(refusal(p).await.1, "TERM_EXCEEDS_RIGHT_EXPIRY");

    // A right nobody recorded is accepted as before.
    as_bank.register_pledge(register(pledge("330108", "500000"))).await.unwrap();

    // The same state again changes nothing; a malformed freeze names its field.
    let p = pledge("330108", "500000");
    let state = right_state(&p.rights[0].number, &pledgor_code(&p), RightStatus::InForce, None);
    as_office.record_right(state.clone()).await.unwrap();
    let again = RecordRightRequest { request_id: request_id(), ..state.clone() };
    assert_eq!(failure(as_office.record_right(again).await.unwrap_err()).1, "NOTHING_TO_CHANGE");
    let mut bad = right_state(&p.rights[0].number, &pledgor_code(&p), RightStatus::InForce, Some(freeze()));
    bad.state.as_mut().unwrap().freeze.as_mut().unwrap().until = "2024-01-01".to_owned();
    assert_eq!(
        failure(as_office.record_right(bad).await.unwrap_err()),
        (Code::InvalidArgument, "INVALID_FIELDS".to_owned(), vec!["state.freeze.until".to_owned()])
    );

    // Banks read the registers, but do not write them.
    let bank = server.token("bank-a", TokenRole::Bank, BANK_A, "").await;
    let mut bank_risk = risk_as(&server, &bank).await;
    let read = bank_risk
        .get_right(GetRightRequest { right_kind: RightKind::InventionPatent as i32, right_number: number.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.state.unwrap().status(), RightStatus::InForce);
    let denied = bank_risk.record_right(right_state(&number, BANK_A, RightStatus::Lapsed, None)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let unknown =
        GetRightRequest { right_kind: RightKind::InventionPatent as i32, right_number: invention_patent(unique()) };
    assert_eq!(bank_risk.get_right(unknown).await.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn a_pledge_is_at_risk_while_its_right_is_not_in_force_or_frozen() {
    let server = TestServer::start().await;
    let admin = server.admin_token.clone();
    let mut risk = risk_as(&server, &admin).await;
    let mut pledges = server.pledges().await;
    let p = pledge("330108", "2000000");
    let number = p.rights[0].number.clone();
    let holder = pledgor_code(&p);
    risk.record_right(right_state(&number, &holder, RightStatus::InForce, None)).await.unwrap();
    let registered = pledges.register_pledge(register(p)).await.unwrap().into_inner();
    // Another pledge in the same county that stays sound.
    pledges.register_pledge(register(pledge("330108", "700000"))).await.unwrap();
    let at_risk_everywhere = |amount: &'static str, count: u64| {
        let server = &server;
        let admin = admin.clone();
        async move {
            for region in ["330108", "330100", "330000", ""] {
                let row = total(server, &admin, region).await;
                assert_eq!((row.at_risk_amount.as_str(), row.at_risk_count), (amount, count), "region {region:?}");
            }
        }
    };
    at_risk_everywhere("0.00", 0).await;

    let mut invalid = right_state(&number, &holder, RightStatus::Invalidated, None);
    invalid.state.as_mut().unwrap().status_since = "2024-06-01".to_owned();
    risk.record_right(invalid).await.unwrap();
    let shown = pledges.get_pledge(GetPledgeRequest { id: registered.id.clone() }).await.unwrap().into_inner();
    assert!(shown.at_risk);
    assert_eq!(shown.risk_flags.iter().map(|f| f.reason.as_str()).collect::<Vec<_>>(), ["INVALIDATED"]);
    at_risk_everywhere("2000000.00", 1).await;

    // The amount at risk follows a change of the secured amount.
    let change = ChangePledgeRequest {
        request_id: request_id(),
        id: registered.id.clone(),
        secured_amount: "1500000".to_owned(),
        reason: "partly repaid".to_owned(),
        effective_on: "2024-07-01".to_owned(),
        ..Default::default()
    };
    let changed = pledges.change_pledge(change).await.unwrap().into_inner();
    assert!(changed.at_risk, "a mutation returns the pledge as it now is, risk included");
    at_risk_everywhere("1500000.00", 1).await;

    // Back in force (an invalidation overturned), then frozen: the flag follows the record.
    let mut restored = right_state(&number, &holder, RightStatus::InForce, None);
    restored.state.as_mut().unwrap().status_since = "2024-09-01".to_owned();
    risk.record_right(restored).await.unwrap();
    at_risk_everywhere("0.00", 0).await;
    let mut frozen = right_state(&number, &holder, RightStatus::InForce, Some(freeze()));
    frozen.state.as_mut().unwrap().status_since = "2024-09-01".to_owned();
    risk.record_right(frozen).await.unwrap();
    let shown = pledges.get_pledge(GetPledgeRequest { id: registered.id.clone() }).await.unwrap().into_inner();
    assert_eq!(shown.risk_flags.iter().map(|f| f.reason.as_str()).collect::<Vec<_>>(), ["FROZEN"]);
    at_risk_everywhere("1500000.00", 1).await;

    // Released: no longer in the exposure, so no longer at risk.
    pledges.release_pledge(release(registered.id.clone(), "2024-10-01")).await.unwrap();
    at_risk_everywhere("0.00", 0).await;
    let report = JournalServiceClient::with_interceptor(server.channel().await, Bearer::new(&admin))
        .verify_journal(VerifyJournalRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(report.ok, "derived state equals a replay of the journal: {:?}", report.divergence);
}

#[tokio::test]
async fn defaults_and_valuations_of_a_bank_s_own_pledges() {
    let server = TestServer::start().await;
    let bank = server.token("bank-a", TokenRole::Bank, BANK_A, "").await;
    let other = server.token("bank-b", TokenRole::Bank, BANK_B, "").await;
    let mut pledges = server.pledges_as(Bearer::new(&bank)).await;
    let mut risk = risk_as(&server, &bank).await;
    // Bank A's pledges of 2019, backfilled by the admin (a bank dates its own within 30 days).
    let mut backfill = server.pledges().await;
    let id = backfill.register_pledge(register(pledge("330108", "4000000"))).await.unwrap().into_inner().id;

    let valuation = |value: &str, on: &str| RecordValuationRequest {
        request_id: request_id(),
        valuation: Some(Valuation {
            pledge_id: id.clone(),
            appraiser: "中联资产评估集团有限公司".to_owned(),
            method: ValuationMethod::Income as i32,
            value: value.to_owned(),
            valued_on: on.to_owned(),
            ..Default::default()
        }),
    };
    risk.record_valuation(valuation("10000000", "2024-01-15")).await.unwrap();
    // An older appraisal recorded later does not replace the latest.
    risk.record_valuation(valuation("12000000", "2023-06-30")).await.unwrap();
    let shown = pledges.get_pledge(GetPledgeRequest { id: id.clone() }).await.unwrap().into_inner();
    assert_eq!(shown.latest_valuation.unwrap().value, "10000000.00");
    assert_eq!(shown.loan_to_value_percent, "40.00");
    let row = total(&server, &bank, "330100").await;
    assert_eq!((row.appraised_value.as_str(), row.loan_to_value_percent.as_str()), ("10000000.00", "40.00"));

    // Another bank may not touch this book, and learns nothing of it.
    let mut intruder = risk_as(&server, &other).await;
    let default = RecordDefaultRequest {
        request_id: request_id(),
        pledge_id: id.clone(),
        defaulted_on: "2024-03-01".to_owned(),
        outstanding_principal: "3000000".to_owned(),
        loss: String::new(),
    };
    assert_eq!(intruder.record_default(default.clone()).await.unwrap_err().code(), Code::PermissionDenied);
    let too_much = RecordDefaultRequest { outstanding_principal: "4000000.01".to_owned(), ..default.clone() };
    assert_eq!(failure(risk.record_default(too_much).await.unwrap_err()).2, ["outstandingPrincipal"]);

    let recorded = risk.record_default(default.clone()).await.unwrap().into_inner();
    assert_eq!((recorded.outstanding_principal.as_str(), recorded.loss.as_str()), ("3000000.00", ""));
    let again = risk.record_default(RecordDefaultRequest { request_id: request_id(), ..default.clone() });
    assert_eq!(failure(again.await.unwrap_err()).1, "PLEDGE_ALREADY_DEFAULTED");
    // A retry of the same request gets the same answer.
    assert_eq!(risk.record_default(default).await.unwrap().into_inner(), recorded);
    let row = total(&server, &bank, "330000").await;
    assert_eq!(
        (row.defaulted_amount.as_str(), row.defaulted_count, row.non_performing_percent.as_str()),
        ("3000000.00", 1, "75.00")
    );

    let resolve = |loss: &str| ResolveDefaultRequest {
        request_id: request_id(),
        pledge_id: id.clone(),
        resolved_on: "2024-12-20".to_owned(),
        resolution: Resolution::WrittenOff as i32,
        loss: loss.to_owned(),
        note: "拍卖专利后核销".to_owned(),
    };
    assert_eq!(failure(risk.resolve_default(resolve("3000000.01")).await.unwrap_err()).2, ["loss"]);
    let resolved = risk.resolve_default(resolve("1200000")).await.unwrap().into_inner();
    assert_eq!((resolved.loss.as_str(), resolved.resolution()), ("1200000.00", Resolution::WrittenOff));
    assert_eq!(failure(risk.resolve_default(resolve("1")).await.unwrap_err()).1, "DEFAULT_ALREADY_RESOLVED");
    let row = total(&server, &bank, "330000").await;
    assert_eq!((row.defaulted_amount.as_str(), row.defaulted_count), ("0.00", 0), "resolved: no longer non-performing");
    // The pledge keeps its whole history, the default with it.
    let shown = pledges.get_pledge(GetPledgeRequest { id: id.clone() }).await.unwrap().into_inner();
    assert_eq!(shown.default.unwrap().resolved_on, "2024-12-20");

    // No default to resolve; no default on a released pledge.
    let fresh = backfill.register_pledge(register(pledge("330108", "100"))).await.unwrap().into_inner().id;
    let none = ResolveDefaultRequest { pledge_id: fresh.clone(), ..resolve("0") };
    assert_eq!(failure(risk.resolve_default(none).await.unwrap_err()).1, "PLEDGE_NOT_DEFAULTED");
    pledges.release_pledge(release(fresh.clone(), "2024-01-01")).await.unwrap();
    let late = RecordDefaultRequest {
        request_id: request_id(),
        pledge_id: fresh,
        defaulted_on: "2024-03-01".to_owned(),
        outstanding_principal: "100".to_owned(),
        loss: String::new(),
    };
    assert_eq!(failure(risk.record_default(late).await.unwrap_err()).1, "PLEDGE_ALREADY_RELEASED");
}

/// The programme's figures in yuan as strings, for comparison.
fn claim_split(c: &Claim) -> (&str, &str, &str, bool) {
    (c.fund_amount.as_str(), c.insurer_amount.as_str(), c.bank_amount.as_str(), c.capped_by_budget)
}

#[tokio::test]
async fn a_programme_s_full_cycle_under_tiers_budget_and_stop_line() {
    let server = TestServer::start().await;
    // The cycle runs from 5 January to 1 March of one year, all of it past (no business date
    // is in the future): this year once 1 March has passed in China, else last year.
    let today = chrono::NaiveDate::parse_from_str(&china_day(0), "%Y-%m-%d").unwrap();
    let this_year = today.year();
    let year =
        if today > chrono::NaiveDate::from_ymd_opt(this_year, 3, 1).unwrap() { this_year } else { this_year - 1 };
    let day = |md: &str| format!("{year}-{md}");
    let province = server.token("office-gd", TokenRole::Office, "", "440000").await;
    let elsewhere = server.token("office-zj", TokenRole::Office, "", "330000").await;
    let bank = server.token("bank-a", TokenRole::Bank, BANK_A, "").await;
    let bank_b = server.token("bank-b", TokenRole::Bank, BANK_B, "").await;
    let mut office = risk_as(&server, &province).await;
    let mut as_bank = risk_as(&server, &bank).await;

    // Guangzhou's 2025 tiers; a budget small enough to run out; a 3% stop line; bank A only.
    let tier =
        |up_to: &str, percent: &str| Tier { loan_up_to: up_to.to_owned(), fund_share_percent: percent.to_owned() };
    let programme = Programme {
        name: "广州市知识产权质押融资风险补偿".to_owned(),
        region_code: "440100".to_owned(),
        budget_per_year: "1500000".to_owned(),
        tiers: vec![tier("5000000", "40"), tier("15000000", "30"), tier("30000000", "20")],
        insurer_share_percent: "10".to_owned(),
        stop_line_percent: "3".to_owned(),
        eligible_banks: vec![BANK_A.to_owned()],
        valid_from: format!("{}-01-01", year - 1),
        valid_to: format!("{}-12-31", year + 1),
        ..Default::default()
    };
    let create = CreateProgrammeRequest { request_id: request_id(), programme: Some(programme.clone()) };
    // A bank does not run programmes; nor does an office of another province.
    assert_eq!(as_bank.create_programme(create.clone()).await.unwrap_err().code(), Code::PermissionDenied);
    let mut zj = risk_as(&server, &elsewhere).await;
    assert_eq!(zj.create_programme(create.clone()).await.unwrap_err().code(), Code::PermissionDenied);
    let mut bad = programme.clone();
    bad.tiers = vec![tier("15000000", "30"), tier("5000000", "40")];
    let refused = office.create_programme(CreateProgrammeRequest { request_id: request_id(), programme: Some(bad) });
    assert_eq!(failure(refused.await.unwrap_err()).2, ["programme.tiers[1].loanUpTo"]);
    let created = office.create_programme(create).await.unwrap().into_inner();
    let programme_id = created.id.clone();

    // Bank A's book in Guangzhou (Tianhe, 440106) this year: what it lends sets its stop line.
    // Dated from January: the admin's backfill (a bank dates its own within 30 days).
    let pledges = server.pledges().await;
    let lend = |county: &'static str, amount: &'static str| {
        let mut p = pledge(county, amount);
        p.registered_on = day("01-05");
        p.debt_term_start = day("01-01");
        p.debt_term_end = format!("{}-12-31", year + 2);
        let mut client = pledges.clone();
        async move { client.register_pledge(register(p)).await.unwrap().into_inner().id }
    };
    let _large = lend("440106", "200000000").await;
    let p1 = lend("440106", "4000000").await;
    let p2 = lend("440106", "10000000").await;
    let p3 = lend("440106", "31000000").await;
    let p4 = lend("440106", "20000000").await;
    let p5 = lend("440106", "2000000").await;
    let p6 = lend("440106", "3000000").await;
    let outside = lend("330108", "1000000").await;
    let undetermined = lend("440106", "1000000").await;
    let sound = lend("440106", "1000000").await;
    let lent = 200_000_000 + 4_000_000 + 10_000_000 + 31_000_000 + 20_000_000 + 2_000_000 + 3_000_000 + 2_000_000;

    let default = |id: &str, outstanding: &str, loss: &str| RecordDefaultRequest {
        request_id: request_id(),
        pledge_id: id.to_owned(),
        defaulted_on: day("01-10"),
        outstanding_principal: outstanding.to_owned(),
        loss: loss.to_owned(),
    };
    for (id, outstanding, loss) in [
        (&p1, "3000000", "1000000"),
        (&p2, "8000000", "3000000"),
        (&p3, "20000000", "1000000"),
        (&p4, "15000000", "5000000"),
        (&p5, "2000000", "1000000"),
        (&p6, "3000000", "1000000"),
        (&outside, "1000000", "500000"),
        (&undetermined, "1000000", ""),
    ] {
        as_bank.record_default(default(id, outstanding, loss)).await.unwrap();
    }
    let file = |pledge: &str| FileClaimRequest {
        request_id: request_id(),
        programme_id: programme_id.clone(),
        pledge_id: pledge.to_owned(),
        filed_on: day("01-20"),
    };
    let refusing = as_bank.clone();
    let refusal = |pledge: &str| {
        let mut client = refusing.clone();
        let request = file(pledge);
        async move { failure(client.file_claim(request).await.unwrap_err()).1 }
    };

    // Tier 1: 40% of the loss to the fund, 10% to the insurer, the rest the bank's.
    let c1 = as_bank.file_claim(file(&p1)).await.unwrap().into_inner();
    assert_eq!(claim_split(&c1), ("400000.00", "100000.00", "500000.00", false));
    assert_eq!((c1.fund_share_percent.as_str(), c1.status()), ("40", ClaimStatus::Filed));
    // Tier 2: 30%. A retry of the filing is the same claim.
    let request = file(&p2);
    let c2 = as_bank.file_claim(request.clone()).await.unwrap().into_inner();
    assert_eq!(claim_split(&c2), ("900000.00", "300000.00", "1800000.00", false));
    assert_eq!(as_bank.file_claim(request).await.unwrap().into_inner(), c2);
    // Above the last tier; outside the region; no loss known yet; never defaulted; twice.
    assert_eq!(refusal(&p3).await, "LOAN_ABOVE_TIERS");
    assert_eq!(refusal(&outside).await, "OUTSIDE_PROGRAMME_REGION");
    assert_eq!(refusal(&undetermined).await, "LOSS_NOT_DETERMINED");
    assert_eq!(refusal(&sound).await, "PLEDGE_NOT_DEFAULTED");
    assert_eq!(refusal(&p1).await, "CLAIM_EXISTS");
    // The stop line: losses 1 M + 3 M so far; 5 M more would pass 3% of what bank A lent.
    assert!((1_000_000 + 3_000_000 + 5_000_000) * 100 > 3 * lent);
    assert_eq!(refusal(&p4).await, "STOP_LINE_REACHED");
    // The budget: 1.5 M less 1.3 M committed leaves 200,000 for a 400,000 share.
    let c5 = as_bank.file_claim(file(&p5)).await.unwrap().into_inner();
    assert_eq!(claim_split(&c5), ("200000.00", "100000.00", "700000.00", true));
    assert_eq!(refusal(&p6).await, "BUDGET_EXHAUSTED");
    let shown = office.get_programme(GetProgrammeRequest { id: programme_id.clone() }).await.unwrap().into_inner();
    assert_eq!((shown.committed_this_year.as_str(), shown.budget_left_this_year.as_str()), ("1500000.00", "0.00"));

    // The office decides: a rejection frees its share of the budget.
    let decide = |id: &str, approve: bool| DecideClaimRequest {
        request_id: request_id(),
        id: id.to_owned(),
        approve,
        decided_on: day("02-01"),
        note: "审核".to_owned(),
    };
    assert_eq!(zj.decide_claim(decide(&c1.id, true)).await.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(as_bank.decide_claim(decide(&c1.id, true)).await.unwrap_err().code(), Code::PermissionDenied);
    let rejected = office.decide_claim(decide(&c2.id, false)).await.unwrap().into_inner();
    assert_eq!(rejected.status(), ClaimStatus::Rejected);
    let c6 = as_bank.file_claim(file(&p6)).await.unwrap().into_inner();
    assert_eq!(claim_split(&c6), ("400000.00", "100000.00", "500000.00", false));
    let approved = office.decide_claim(decide(&c1.id, true)).await.unwrap().into_inner();
    assert_eq!(approved.status(), ClaimStatus::Approved);
    assert_eq!(failure(office.decide_claim(decide(&c1.id, false)).await.unwrap_err()).1, "CLAIM_ALREADY_DECIDED");

    // Payments: only on an approved claim, never beyond its compensation.
    let pay = |id: &str, amount: &str| RecordPaymentRequest {
        request_id: request_id(),
        id: id.to_owned(),
        paid_on: day("03-01"),
        amount: amount.to_owned(),
    };
    assert_eq!(failure(office.record_payment(pay(&c5.id, "1")).await.unwrap_err()).1, "CLAIM_NOT_APPROVED");
    office.record_payment(pay(&c1.id, "150000")).await.unwrap();
    let paid = office.record_payment(pay(&c1.id, "250000")).await.unwrap().into_inner();
    assert_eq!((paid.paid_amount.as_str(), paid.payments.len()), ("400000.00", 2));
    let over = office.record_payment(pay(&c1.id, "0.01")).await.unwrap_err();
    assert_eq!(failure(over).1, "PAYMENT_EXCEEDS_COMPENSATION");

    // Not eligible: bank B's defaulted pledge in Guangzhou.
    let mut p = pledge("440106", "1000000");
    p.pledgee = Some(party("Bank B", BANK_B));
    // Dated 2019: the admin's backfill (a bank dates its own within 30 days).
    let b_pledge = server.pledges().await.register_pledge(register(p)).await.unwrap();
    let b_id = b_pledge.into_inner().id;
    let mut as_b = risk_as(&server, &bank_b).await;
    as_b.record_default(default(&b_id, "1000000", "100000")).await.unwrap();
    assert_eq!(failure(as_b.file_claim(file(&b_id)).await.unwrap_err()).1, "BANK_NOT_ELIGIBLE");

    // The risk columns: claimed (not rejected: 400,000 + 200,000 + 400,000), paid, the budget.
    for region in ["440106", "440100", "440000", ""] {
        let row = total(&server, &server.admin_token, region).await;
        assert_eq!(
            (row.compensation_claimed.as_str(), row.compensation_paid.as_str()),
            ("1000000.00", "400000.00"),
            "region {region:?}"
        );
    }
    let city = total(&server, &province, "440100").await;
    assert_eq!((city.programme_budget.as_str(), city.programme_budget_left.as_str()), ("1500000.00", "500000.00"));
    let child = child_rows(&server, &province, "440000").await;
    let guangzhou = child.iter().find(|r| r.key == "440100").unwrap();
    assert_eq!(guangzhou.programme_budget_left, "500000.00");
    assert_eq!(child.iter().find(|r| r.key == "440300").unwrap().programme_budget, "0.00");

    // Claims are read by their bank and their region's offices, listed per programme.
    let listed = office
        .list_claims(ListClaimsRequest { programme_id: programme_id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.claims.len(), 4);
    let own = as_b.list_claims(ListClaimsRequest::default()).await.unwrap().into_inner();
    assert!(own.claims.is_empty(), "bank B filed nothing that was accepted");
    assert_eq!(as_b.get_claim(GetClaimRequest { id: c1.id.clone() }).await.unwrap_err().code(), Code::PermissionDenied);

    // The change feed carries the new events, each with its resource; bank B sees only its own.
    let mut feed = JournalServiceClient::with_interceptor(server.channel().await, Bearer::new(&server.admin_token))
        .watch_events(WatchEventsRequest { from_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut kinds = std::collections::BTreeSet::new();
    while let Ok(Some(event)) = tokio::time::timeout(std::time::Duration::from_secs(2), feed.message()).await.unwrap() {
        match event.event.as_str() {
            "CLAIM_FILED" | "CLAIM_DECIDED" | "CLAIM_PAID" => assert!(event.claim.is_some()),
            "PROGRAMME_CREATED" => assert_eq!(event.programme.as_ref().unwrap().id, programme_id),
            "DEFAULT_RECORDED" => assert!(event.default.is_some() && event.pledge.is_some()),
            _ => {}
        }
        kinds.insert(event.event.clone());
        if event.event == "DEFAULT_RECORDED" && event.pledge.as_ref().unwrap().id == b_id {
            break;
        }
    }
    for kind in ["PROGRAMME_CREATED", "DEFAULT_RECORDED", "CLAIM_FILED", "CLAIM_DECIDED", "CLAIM_PAID"] {
        assert!(kinds.contains(kind), "{kind} in {kinds:?}");
    }
    let report = JournalServiceClient::with_interceptor(server.channel().await, Bearer::new(&server.admin_token))
        .verify_journal(VerifyJournalRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(report.ok, "derived state equals a replay of the journal: {:?}", report.divergence);
}

/// Child-region rows of exposure, as `token` sees them.
async fn child_rows(server: &TestServer, token: &str, region: &str) -> Vec<ExposureRow> {
    let request = GetExposureRequest {
        region_code: region.to_owned(),
        group_by: ExposureGroupBy::ChildRegion as i32,
        ..Default::default()
    };
    server.exposure_as(Bearer::new(token)).await.get_exposure(request).await.unwrap().into_inner().rows
}

/// What the test itself knows of one pledge's risk, with its business dates, to recompute the
/// columns by brute force on any day (`NOW`: the columns now).
#[derive(Debug, Default, Clone)]
struct Known {
    /// (defaulted on, outstanding principal, resolved on)
    default: Option<(String, i128, Option<String>)>,
    /// (valued on, order recorded, value): the latest by date, then by order, counts.
    valuations: Vec<(String, usize, i128)>,
    claims: Vec<KnownClaim>,
}

#[derive(Debug, Clone)]
struct KnownClaim {
    filed_on: String,
    fund: i128,
    rejected_on: Option<String>,
    payments: Vec<(String, i128)>,
}

impl KnownClaim {
    fn counts_on(&self, day: &str) -> bool {
        self.filed_on.as_str() <= day && self.rejected_on.as_deref().is_none_or(|r| r > day)
    }
}

/// The register as the test recorded it: each right's statuses (from, whether the status flags a
/// pledge from that day on, the day a proceeding starts to flag it: a court's freeze from its
/// `from`, an invalidation request from its filing, a fee from the day after its due date).
type Register = BTreeMap<String, Vec<(String, bool, Option<String>)>>;

/// A day after every business date: the brute force of the columns now.
const NOW: &str = "9999-12-31";

#[derive(Debug, Default, PartialEq, Eq)]
struct Columns {
    at_risk_fen: i128,
    at_risk: u64,
    defaulted_fen: i128,
    defaulted: u64,
    appraised_fen: i128,
    appraised_secured_fen: i128,
    claimed_fen: i128,
    paid_fen: i128,
}

impl Columns {
    /// Adds what `p` counts at the end of `day`: flows of every claim filed by then, and the
    /// stocks of a pledge in force then, by the register's status in effect then.
    fn add(&mut self, p: &Pledge, k: &Known, register: &Register, day: &str) {
        for claim in &k.claims {
            if claim.counts_on(day) {
                self.claimed_fen += claim.fund;
            }
            self.paid_fen += claim.payments.iter().filter(|(on, _)| on.as_str() <= day).map(|(_, a)| a).sum::<i128>();
        }
        let Some(secured) = crate::asof::amount_on(p, day) else { return };
        let in_effect = |number: &String| {
            register.get(number).and_then(|states| states.iter().rfind(|(since, ..)| since.as_str() <= day))
        };
        let flags = |(_, lost, flagged_from): &(String, bool, Option<String>)| {
            *lost || flagged_from.as_deref().is_some_and(|from| from <= day)
        };
        if p.rights.iter().any(|r| in_effect(&r.number).is_some_and(flags)) {
            self.at_risk_fen += secured;
            self.at_risk += 1;
        }
        if let Some((on, outstanding, resolved)) = &k.default
            && on.as_str() <= day
            && resolved.as_ref().is_none_or(|r| day < r.as_str())
        {
            self.defaulted_fen += outstanding;
            self.defaulted += 1;
        }
        let known = k.valuations.iter().filter(|(on, ..)| on.as_str() <= day);
        if let Some((.., value)) = known.max_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1))) {
            self.appraised_fen += value;
            self.appraised_secured_fen += secured;
        }
    }

    fn of(row: &ExposureRow) -> Columns {
        let fen = crate::statistics::fen;
        Columns {
            at_risk_fen: fen(&row.at_risk_amount),
            at_risk: row.at_risk_count,
            defaulted_fen: fen(&row.defaulted_amount),
            defaulted: row.defaulted_count,
            appraised_fen: fen(&row.appraised_value),
            // Loan-to-value is checked below against the expected sums; keep it out of equality.
            appraised_secured_fen: 0,
            claimed_fen: fen(&row.compensation_claimed),
            paid_fen: fen(&row.compensation_paid),
        }
    }
}

/// The expected loan-to-value percent string of a row: secured over appraised, 2 decimals.
fn ltv(secured_fen: i128, value_fen: i128) -> String {
    if value_fen == 0 {
        return String::new();
    }
    // Half away from zero, as the server rounds: (2 * 10000 * s + v) / (2 * v).
    let hundredths = (2 * 10_000 * secured_fen + value_fen) / (2 * value_fen);
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

/// The keys of the rows `p` counts in below `region` under `group_by` (none without a grouping).
fn row_keys(p: &Pledge, region: &str, group_by: ExposureGroupBy) -> Vec<String> {
    match group_by {
        ExposureGroupBy::Pledgee => vec![p.pledgee.as_ref().unwrap().credit_code.clone()],
        ExposureGroupBy::RightKind => p
            .rights
            .iter()
            .map(|r| RightKind::try_from(r.kind).unwrap().as_str_name().to_owned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        ExposureGroupBy::ChildRegion => {
            let c = &p.county_code;
            match region {
                "" => vec![format!("{}0000", &c[..2])],
                r if r.ends_with("0000") => vec![format!("{}00", &c[..4])],
                r if r.ends_with("00") => vec![c.clone()],
                _ => vec![],
            }
        }
        _ => vec![],
    }
}

/// A business date `0..days` after `from`, never after `LAST_DAY` (dates must not be in the future).
fn later(rng: &mut crate::statistics::Rng, from: &str, days: u64) -> String {
    const LAST_DAY: &str = "2026-06-30";
    let from = chrono::NaiveDate::parse_from_str(from, "%Y-%m-%d").unwrap();
    (from + chrono::Days::new(rng.below(days))).to_string().min(LAST_DAY.to_owned())
}

/// Pledges again the patent of some released pledges, from their release on: a right's status
/// then reaches both, each in its own time in force.
async fn pledge_again(server: &TestServer, rng: &mut crate::statistics::Rng, pledges: &mut Vec<Pledge>) {
    let mut client = server.pledges().await;
    let released: Vec<Pledge> = pledges.iter().filter(|p| p.status() != PledgeStatus::Active).cloned().collect();
    for old in &released {
        if rng.below(2) == 0 {
            continue;
        }
        let mut p = pledge(&old.county_code, &format!("{}.00", 1 + rng.below(20_000_000)));
        p.pledgor = old.pledgor.clone();
        p.registered_on = later(rng, &old.released_on, 400);
        p.debt_term_start = p.registered_on.clone();
        p.debt_term_end = "2026-12-31".into();
        p.rights = vec![Right {
            kind: old.rights[0].kind,
            number: old.rights[0].number.clone(),
            expires_on: old.rights[0].expires_on.clone(),
            ..Default::default()
        }];
        pledges.push(client.register_pledge(register(p)).await.unwrap().into_inner());
    }
}

/// Records what the register says of `p`'s patent, the first time the patent comes up: up to three
/// statuses from random days, in business order.
async fn record_statuses(
    risk: &mut RiskServiceClient<Authed>,
    rng: &mut crate::statistics::Rng,
    p: &Pledge,
    register: &mut Register,
) {
    let number = &p.rights[0].number;
    if register.contains_key(number) {
        return;
    }
    let mut days: Vec<String> = (0..rng.below(4)).map(|_| later(rng, "2019-01-01", 365 * 8)).collect();
    days.sort();
    days.dedup();
    let states = register.entry(number.clone()).or_default();
    for since in days {
        let mut state = right_state(number, &pledgor_code(p), RightStatus::InForce, None);
        let s = state.state.as_mut().unwrap();
        s.status_since = since.clone();
        // A proceeding starts on a day of its own, before or after the state's status.
        let from = later(rng, "2019-01-01", 365 * 8);
        let day_after =
            |d: &str| (chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap().succ_opt().unwrap()).to_string();
        let (lost, flagged_from) = match rng.below(7) {
            0 => (false, None),
            1 | 2 => {
                let status = if rng.below(2) == 0 { RightStatus::Lapsed } else { RightStatus::Invalidated };
                s.status = status as i32;
                (true, None)
            }
            3 => {
                s.freeze = Some(Freeze { from: from.clone(), until: String::new(), ..freeze() });
                (false, Some(from))
            }
            4 => {
                s.invalidation =
                    Some(InvalidationRequest { request_number: "4W112345".to_owned(), filed_on: from.clone() });
                (false, Some(from))
            }
            5 => {
                let due_on = from.min("2026-06-29".to_owned());
                let grace_ends_on = day_after(&due_on);
                s.fee_overdue = Some(FeeOverdue { due_on: due_on.clone(), grace_ends_on });
                (false, Some(day_after(&due_on)))
            }
            // The register names a co-owner that is not among the pledgors: flagged NOT_HOLDER.
            _ => {
                s.co_holders = vec![CoHolder {
                    name: "Co-owner".to_owned(),
                    credit_code: credit_code(unique()),
                    share_percent: String::new(),
                }];
                (true, None)
            }
        };
        risk.record_right(state).await.unwrap();
        states.push((since, lost, flagged_from));
    }
}

#[tokio::test]
async fn risk_columns_now_as_of_any_date_and_in_statistics_equal_a_brute_force_recomputation() {
    use crate::statistics::{Rng, random_history, within};
    for seed in [0x2545_f491_4f6c_dd1du64, 0x9e37_79b9_7f4a_7c15] {
        let server = TestServer::start().await;
        let mut rng = Rng(seed);
        let mut pledges = random_history(&server, &mut rng, 100).await;
        pledge_again(&server, &mut rng, &mut pledges).await;
        let admin = server.admin_token.clone();
        let mut risk = risk_as(&server, &admin).await;
        let mut client = server.pledges().await;
        let programme = Programme {
            name: "全国".to_owned(),
            region_code: String::new(),
            budget_per_year: "100000000000".to_owned(),
            tiers: vec![Tier { loan_up_to: "1000000000".to_owned(), fund_share_percent: "50".to_owned() }],
            valid_from: "2019-01-01".to_owned(),
            valid_to: "2030-12-31".to_owned(),
            ..Default::default()
        };
        let create = CreateProgrammeRequest { request_id: request_id(), programme: Some(programme) };
        let programme_id = risk.create_programme(create).await.unwrap().into_inner().id;
        let mut known: Vec<Known> = vec![Known::default(); pledges.len()];
        let mut register = Register::new();
        let mut order = 0usize;
        let yuan = |fen: i128| format!("{}.{:02}", fen / 100, fen % 100);
        for (i, p) in pledges.iter_mut().enumerate() {
            record_statuses(&mut risk, &mut rng, p, &mut register).await;
            if p.status() != PledgeStatus::Active {
                continue;
            }
            let secured = crate::statistics::fen(&p.secured_amount);
            for _ in 0..rng.below(3) {
                let value = 1 + rng.below(50_000_000);
                let valued_on = later(&mut rng, "2019-01-01", 365 * 8);
                let request = RecordValuationRequest {
                    request_id: request_id(),
                    valuation: Some(Valuation {
                        pledge_id: p.id.clone(),
                        appraiser: "A".to_owned(),
                        method: ValuationMethod::Market as i32,
                        value: format!("{value}"),
                        valued_on: valued_on.clone(),
                        ..Default::default()
                    }),
                };
                risk.record_valuation(request).await.unwrap();
                order += 1;
                known[i].valuations.push((valued_on, order, i128::from(value) * 100));
            }
            if rng.below(3) == 0 {
                let outstanding = 1 + i128::from(rng.below(u64::try_from(secured).unwrap()));
                let loss = (rng.below(2) == 0).then(|| i128::from(rng.below(u64::try_from(outstanding).unwrap())) + 1);
                let defaulted_on = later(&mut rng, &p.registered_on, 365 * 5);
                let default = RecordDefaultRequest {
                    request_id: request_id(),
                    pledge_id: p.id.clone(),
                    defaulted_on: defaulted_on.clone(),
                    outstanding_principal: yuan(outstanding),
                    loss: loss.map(yuan).unwrap_or_default(),
                };
                risk.record_default(default).await.unwrap();
                let mut last = defaulted_on.clone();
                if let Some(loss) = loss {
                    let filed_on = later(&mut rng, &defaulted_on, 200);
                    let file = FileClaimRequest {
                        request_id: request_id(),
                        programme_id: programme_id.clone(),
                        pledge_id: p.id.clone(),
                        filed_on: filed_on.clone(),
                    };
                    let claim = risk.file_claim(file).await.unwrap().into_inner();
                    let fund = loss / 2;
                    assert_eq!(crate::statistics::fen(&claim.fund_amount), fund);
                    let mut known_claim =
                        KnownClaim { filed_on: filed_on.clone(), fund, rejected_on: None, payments: vec![] };
                    let decided_on = later(&mut rng, &filed_on, 200);
                    last = decided_on.clone();
                    let decide = |approve| DecideClaimRequest {
                        request_id: request_id(),
                        id: claim.id.clone(),
                        approve,
                        decided_on: decided_on.clone(),
                        note: String::new(),
                    };
                    match rng.below(3) {
                        0 => {
                            risk.decide_claim(decide(false)).await.unwrap();
                            known_claim.rejected_on = Some(decided_on.clone());
                        }
                        1 if fund > 0 => {
                            risk.decide_claim(decide(true)).await.unwrap();
                            let paid = 1 + i128::from(rng.below(u64::try_from(fund).unwrap()));
                            let paid_on = later(&mut rng, &decided_on, 200);
                            let pay = RecordPaymentRequest {
                                request_id: request_id(),
                                id: claim.id.clone(),
                                paid_on: paid_on.clone(),
                                amount: yuan(paid),
                            };
                            risk.record_payment(pay).await.unwrap();
                            known_claim.payments.push((paid_on.clone(), paid));
                            last = paid_on;
                        }
                        _ => {}
                    }
                    known[i].claims.push(known_claim);
                }
                let mut resolved = None;
                if rng.below(3) == 0 {
                    let resolved_on = later(&mut rng, &last, 300);
                    let resolve = ResolveDefaultRequest {
                        request_id: request_id(),
                        pledge_id: p.id.clone(),
                        resolved_on: resolved_on.clone(),
                        resolution: Resolution::Recovered as i32,
                        loss: "0".to_owned(),
                        note: String::new(),
                    };
                    risk.resolve_default(resolve).await.unwrap();
                    resolved = Some(resolved_on);
                }
                known[i].default = Some((defaulted_on, outstanding, resolved));
            }
            // Afterwards: some pledges change amount (at-risk and appraised amounts follow), and
            // some are released (their stocks leave the rows, their compensation stays).
            // Business dates after the pledge's last change (random histories change "today").
            let after_last =
                |date: &str| p.changes.last().map_or(date.to_owned(), |c| c.effective_on.clone().max(date.to_owned()));
            match rng.below(5) {
                0 => {
                    let change = ChangePledgeRequest {
                        request_id: request_id(),
                        id: p.id.clone(),
                        secured_amount: format!("{}.00", 1 + rng.below(5_000_000)),
                        reason: "x".into(),
                        effective_on: after_last(&later(&mut rng, &p.registered_on, 365 * 5)),
                        ..Default::default()
                    };
                    *p = client.change_pledge(change).await.unwrap().into_inner();
                }
                1 => {
                    let on = after_last(&later(&mut rng, &p.registered_on, 365 * 5));
                    *p = client.release_pledge(release(p.id.clone(), &on)).await.unwrap().into_inner();
                }
                _ => {}
            }
        }
        // Now, random days, and the days around the risk events' dates.
        let mut days: Vec<String> = vec![NOW.to_owned()];
        days.extend((0..6).map(|_| later(&mut rng, "2019-01-01", 365 * 8)));
        for k in known.iter().filter(|k| !k.claims.is_empty()).take(3) {
            let filed = chrono::NaiveDate::parse_from_str(&k.claims[0].filed_on, "%Y-%m-%d").unwrap();
            days.extend([filed.pred_opt().unwrap().to_string(), filed.to_string()]);
        }
        let mut exposure = server.exposure().await;
        for day in &days {
            for region in ["", "330000", "330100", "330108", "320000", "441900", "110105"] {
                for group_by in [
                    ExposureGroupBy::Unspecified,
                    ExposureGroupBy::ChildRegion,
                    ExposureGroupBy::Pledgee,
                    ExposureGroupBy::RightKind,
                ] {
                    let as_of = if day == NOW { String::new() } else { day.clone() };
                    let request = GetExposureRequest { region_code: region.into(), group_by: group_by as i32, as_of };
                    let got = exposure.get_exposure(request.clone()).await.unwrap().into_inner();
                    let context = format!("seed {seed:x} {request:?}");
                    let mut total = Columns::default();
                    let mut rows: BTreeMap<String, Columns> = BTreeMap::new();
                    for (p, k) in pledges.iter().zip(&known).filter(|(p, _)| within(region, &p.county_code)) {
                        total.add(p, k, &register, day);
                        for key in row_keys(p, region, group_by) {
                            rows.entry(key).or_default().add(p, k, &register, day);
                        }
                    }
                    let check = |row: &ExposureRow, expected: &Columns, what: &str| {
                        let secured = expected.appraised_secured_fen;
                        let expected = Columns { appraised_secured_fen: 0, ..*expected };
                        assert_eq!(Columns::of(row), expected, "{context} {what}");
                        assert_eq!(row.loan_to_value_percent, ltv(secured, expected.appraised_fen), "{context} {what}");
                    };
                    check(got.total.as_ref().unwrap(), &total, "total");
                    for row in &got.rows {
                        check(row, rows.get(&row.key).unwrap_or(&Columns::default()), &format!("row {}", row.key));
                    }
                    if region.is_empty() {
                        // The country's programme: its budget of the day's year, less the claims
                        // of that year filed by then and not rejected by then.
                        // The server's year now: China time.
                        let this_year = || (chrono::Utc::now() + chrono::Duration::hours(8)).format("%Y").to_string();
                        let year = if day == NOW { this_year() } else { day[..4].to_owned() };
                        let committed: i128 = known
                            .iter()
                            .flat_map(|k| &k.claims)
                            .filter(|c| c.filed_on.starts_with(&year) && c.counts_on(day))
                            .map(|c| c.fund)
                            .sum();
                        let total = got.total.as_ref().unwrap();
                        let budget = crate::statistics::fen(&total.programme_budget);
                        assert_eq!(budget, 10_000_000_000_000, "{context}");
                        let left = crate::statistics::fen(&total.programme_budget_left);
                        assert_eq!(left, budget - committed, "{context}: budget left");
                    }
                }
            }
        }
        check_statistics(&server, &mut rng, &pledges, &known, seed).await;
        let report = JournalServiceClient::with_interceptor(server.channel().await, Bearer::new(&admin))
            .verify_journal(VerifyJournalRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(report.ok, "{:?}", report.divergence);
        server.stop().await;
    }
}

/// The risk side's flows of a period in statistics: (defaults, defaulted, claimed, paid) in fen.
type Flows = (u64, i128, i128, i128);

fn flows_in(k: &Known, from: &str, to: &str) -> Flows {
    let within = |day: &str| from <= day && day <= to;
    let mut flows = Flows::default();
    if let Some((on, outstanding, _)) = &k.default
        && within(on)
    {
        flows.0 += 1;
        flows.1 += outstanding;
    }
    for claim in &k.claims {
        if within(&claim.filed_on) && claim.counts_on(NOW) {
            flows.2 += claim.fund;
        }
        flows.3 += claim.payments.iter().filter(|(on, _)| within(on)).map(|(_, a)| a).sum::<i128>();
    }
    flows
}

fn add_flows(sum: &mut Flows, more: Flows) {
    *sum = (sum.0 + more.0, sum.1 + more.1, sum.2 + more.2, sum.3 + more.3);
}

/// `GetStatistics`' risk columns for every year and a random period, at every level and grouping,
/// against the flows the test recorded, attributed to each pledge's rows.
async fn check_statistics(
    server: &TestServer,
    rng: &mut crate::statistics::Rng,
    pledges: &[Pledge],
    known: &[Known],
    seed: u64,
) {
    use crate::statistics::{fen, within};
    let mut exposure = server.exposure().await;
    let mut periods: Vec<(String, String)> =
        (2019..=2026).map(|y| (format!("{y}-01-01"), format!("{y}-12-31"))).collect();
    let from = later(rng, "2019-01-01", 365 * 4);
    periods.push((from.clone(), later(rng, &from, 365 * 3)));
    for (from, to) in &periods {
        for region in ["", "330000", "330100", "330108", "441900"] {
            for group_by in [ExposureGroupBy::ChildRegion, ExposureGroupBy::Pledgee, ExposureGroupBy::RightKind] {
                let request = GetStatisticsRequest {
                    region_code: region.into(),
                    from: from.clone(),
                    to: to.clone(),
                    group_by: group_by as i32,
                    ..Default::default()
                };
                let got = exposure.get_statistics(request.clone()).await.unwrap().into_inner();
                let context = format!("seed {seed:x} {request:?}");
                let mut total = Flows::default();
                let mut rows: BTreeMap<String, Flows> = BTreeMap::new();
                for (p, k) in pledges.iter().zip(known).filter(|(p, _)| within(region, &p.county_code)) {
                    let flows = flows_in(k, from, to);
                    add_flows(&mut total, flows);
                    for key in row_keys(p, region, group_by) {
                        add_flows(rows.entry(key).or_default(), flows);
                    }
                }
                let of = |row: &StatisticsRow| {
                    (
                        row.defaults,
                        fen(&row.defaulted_amount),
                        fen(&row.compensation_claimed),
                        fen(&row.compensation_paid),
                    )
                };
                assert_eq!(of(got.total.as_ref().unwrap()), total, "{context} total");
                for row in &got.rows {
                    assert_eq!(of(row), rows.get(&row.key).copied().unwrap_or_default(), "{context} row {}", row.key);
                }
                for (key, flows) in rows.iter().filter(|(_, f)| **f != Flows::default()) {
                    assert!(got.rows.iter().any(|r| &r.key == key), "{context}: missing row {key} with {flows:?}");
                }
            }
        }
    }
}

#[tokio::test]
async fn every_limit_and_the_remaining_refusals_of_the_risk_side() {
    let server = TestServer::start().await;
    let admin = server.admin_token.clone();
    let mut risk = risk_as(&server, &admin).await;
    let mut pledges = server.pledges().await;
    let year = chrono::Utc::now().year();

    // A right keeps at most 100 recorded states.
    let p = pledge("330108", "100");
    let number = p.rights[0].number.clone();
    for i in 0..100 {
        let mut state = right_state(&number, &pledgor_code(&p), RightStatus::InForce, None);
        state.state.as_mut().unwrap().note = format!("gazette {i}");
        risk.record_right(state).await.unwrap();
    }
    let one_more = right_state(&number, &pledgor_code(&p), RightStatus::Lapsed, None);
    assert_eq!(failure(risk.record_right(one_more).await.unwrap_err()).1, "RIGHT_STATES_LIMIT_REACHED");
    // A status may not go back in time.
    let p = pledge("330108", "100");
    let mut later = right_state(&p.rights[0].number, &pledgor_code(&p), RightStatus::InForce, None);
    later.state.as_mut().unwrap().status_since = "2024-05-01".to_owned();
    risk.record_right(later).await.unwrap();
    let earlier = right_state(&p.rights[0].number, &pledgor_code(&p), RightStatus::Lapsed, None);
    assert_eq!(failure(risk.record_right(earlier).await.unwrap_err()).2, ["state.statusSince"]);

    // A pledge keeps at most 50 valuations.
    let id = pledges.register_pledge(register(pledge("330108", "1000"))).await.unwrap().into_inner().id;
    let valuation = || RecordValuationRequest {
        request_id: request_id(),
        valuation: Some(Valuation {
            pledge_id: id.clone(),
            appraiser: "A".to_owned(),
            method: ValuationMethod::Cost as i32,
            value: "5000".to_owned(),
            valued_on: "2024-01-01".to_owned(),
            ..Default::default()
        }),
    };
    for _ in 0..50 {
        risk.record_valuation(valuation()).await.unwrap();
    }
    assert_eq!(failure(risk.record_valuation(valuation()).await.unwrap_err()).1, "VALUATIONS_LIMIT_REACHED");

    // A region runs at most 100 programmes; a pledge has at most 10 claims.
    let programme = |region: &str, from: i32| CreateProgrammeRequest {
        request_id: request_id(),
        programme: Some(Programme {
            name: "补偿".to_owned(),
            region_code: region.to_owned(),
            budget_per_year: "100000000".to_owned(),
            tiers: vec![Tier { loan_up_to: "10000000".to_owned(), fund_share_percent: "10".to_owned() }],
            valid_from: format!("{from}-01-01"),
            valid_to: format!("{}-12-31", year + 1),
            ..Default::default()
        }),
    };
    let mut ids = Vec::new();
    for _ in 0..100 {
        ids.push(risk.create_programme(programme("330108", year - 1)).await.unwrap().into_inner().id);
    }
    let refused = risk.create_programme(programme("330108", year - 1)).await.unwrap_err();
    assert_eq!(failure(refused).1, "PROGRAMMES_LIMIT_REACHED");
    let listed = risk
        .list_programmes(ListProgrammesRequest {
            region_code: "330100".to_owned(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((listed.programmes.len(), listed.next_page_token.is_empty()), (100, true), "a page size is lowered");

    let mut loan = pledge("330108", "1000000");
    loan.registered_on = format!("{year}-01-02");
    loan.debt_term_start = format!("{year}-01-01");
    loan.debt_term_end = format!("{}-12-31", year + 1);
    let loan_id = pledges.register_pledge(register(loan)).await.unwrap().into_inner().id;
    let default = |pledge_id: &str, loss: &str| RecordDefaultRequest {
        request_id: request_id(),
        pledge_id: pledge_id.to_owned(),
        defaulted_on: format!("{year}-02-01"),
        outstanding_principal: "1000000".to_owned(),
        loss: loss.to_owned(),
    };
    risk.record_default(default(&loan_id, "500000")).await.unwrap();
    let file = |programme_id: &str, pledge_id: &str, on: &str| FileClaimRequest {
        request_id: request_id(),
        programme_id: programme_id.to_owned(),
        pledge_id: pledge_id.to_owned(),
        filed_on: on.to_owned(),
    };
    // Filed before the default: malformed.
    let early = risk.file_claim(file(&ids[0], &loan_id, &format!("{year}-01-15"))).await.unwrap_err();
    assert_eq!(failure(early).2, ["filedOn"]);
    let on = format!("{year}-03-01");
    let mut claims = Vec::new();
    for programme_id in &ids[..10] {
        claims.push(risk.file_claim(file(programme_id, &loan_id, &on)).await.unwrap().into_inner());
    }
    assert_eq!(failure(risk.file_claim(file(&ids[10], &loan_id, &on)).await.unwrap_err()).1, "CLAIMS_LIMIT_REACHED");

    // At most 20 payments per claim.
    let claim = &claims[0];
    assert_eq!(claim.fund_amount, "50000.00");
    let decide = DecideClaimRequest {
        request_id: request_id(),
        id: claim.id.clone(),
        approve: true,
        decided_on: on.clone(),
        note: String::new(),
    };
    risk.decide_claim(decide).await.unwrap();
    let pay = || RecordPaymentRequest {
        request_id: request_id(),
        id: claim.id.clone(),
        paid_on: on.clone(),
        amount: "1".to_owned(),
    };
    for _ in 0..20 {
        risk.record_payment(pay()).await.unwrap();
    }
    assert_eq!(failure(risk.record_payment(pay()).await.unwrap_err()).1, "PAYMENTS_LIMIT_REACHED");

    // A loan registered before the programme's validity; a default recovered in full.
    let recent = risk.create_programme(programme("330100", year)).await.unwrap().into_inner().id;
    let mut old = pledge("330108", "1000000");
    old.registered_on = format!("{}-06-01", year - 1);
    old.debt_term_start = format!("{}-06-01", year - 1);
    old.debt_term_end = format!("{}-12-31", year + 1);
    let old_id = pledges.register_pledge(register(old)).await.unwrap().into_inner().id;
    risk.record_default(default(&old_id, "100")).await.unwrap();
    let refused = risk.file_claim(file(&recent, &old_id, &on)).await.unwrap_err();
    assert_eq!(failure(refused).1, "LOAN_OUTSIDE_PROGRAMME_VALIDITY");
    let mut recovered = pledge("330108", "1000000");
    recovered.registered_on = format!("{year}-01-02");
    recovered.debt_term_start = format!("{year}-01-01");
    recovered.debt_term_end = format!("{}-12-31", year + 1);
    let recovered_id = pledges.register_pledge(register(recovered)).await.unwrap().into_inner().id;
    risk.record_default(default(&recovered_id, "")).await.unwrap();
    let resolve = ResolveDefaultRequest {
        request_id: request_id(),
        pledge_id: recovered_id.clone(),
        resolved_on: format!("{year}-02-10"),
        resolution: Resolution::Recovered as i32,
        loss: "0".to_owned(),
        note: String::new(),
    };
    risk.resolve_default(resolve).await.unwrap();
    assert_eq!(failure(risk.file_claim(file(&recent, &recovered_id, &on)).await.unwrap_err()).1, "NO_LOSS");

    // Claims' scopes: an office elsewhere reads none; an office lists one programme's.
    let office_js = server.token("office-js", TokenRole::Office, "", "320000").await;
    let mut js = risk_as(&server, &office_js).await;
    let denied = js.get_claim(GetClaimRequest { id: claim.id.clone() }).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let unscoped = js.list_claims(ListClaimsRequest::default()).await.unwrap_err();
    assert_eq!(failure(unscoped).2, ["programmeId"]);
    let none = js.list_claims(ListClaimsRequest { programme_id: ids[0].clone(), ..Default::default() }).await;
    assert!(none.unwrap().into_inner().claims.is_empty(), "the claim's county lies outside Jiangsu");
}

#[tokio::test]
async fn a_historical_import_is_judged_by_what_the_register_said_on_its_day() {
    let server = TestServer::start().await;
    let office = server.token("office-zj", TokenRole::Office, "", "330000").await;
    let mut risk = risk_as(&server, &office).await;
    let record = |p: &Pledge, status: RightStatus, since: &str| {
        let mut state = right_state(&p.rights[0].number, &pledgor_code(p), status, None);
        state.state.as_mut().unwrap().status_since = since.to_owned();
        state
    };
    // Registered 2019-06-05 (helpers' pledge): in force then, lapsed since 2024.
    let lapsed_later = pledge("330108", "800000");
    risk.record_right(record(&lapsed_later, RightStatus::InForce, "2015-01-01")).await.unwrap();
    risk.record_right(record(&lapsed_later, RightStatus::Lapsed, "2024-03-01")).await.unwrap();
    // Lapsed before the registration: the register would have refused it then.
    let lapsed_before = pledge("330108", "800000");
    risk.record_right(record(&lapsed_before, RightStatus::Lapsed, "2018-03-01")).await.unwrap();
    // Recorded only from after the registration: nothing was said of it on the day.
    let recorded_after = pledge("330108", "800000");
    risk.record_right(record(&recorded_after, RightStatus::Invalidated, "2023-01-01")).await.unwrap();

    let requests = [lapsed_later, lapsed_before, recorded_after].map(register);
    let mut client = server.pledges_as(Bearer::new(&office)).await;
    let summary = client.import_pledges(tokio_stream::iter(requests)).await.unwrap().into_inner();
    assert_eq!((summary.registered, summary.rejected), (2, 1));
    assert_eq!((summary.rejections[0].index, summary.rejections[0].reason.as_str()), (1, "RIGHT_NOT_IN_FORCE"));
    // Both imported pledges are at risk at once: the register says so today.
    let row = total(&server, &office, "330108").await;
    assert_eq!((row.at_risk_amount.as_str(), row.at_risk_count), ("1600000.00", 2));
    let report = JournalServiceClient::with_interceptor(server.channel().await, Bearer::new(&server.admin_token))
        .verify_journal(VerifyJournalRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(report.ok, "{:?}", report.divergence);
}

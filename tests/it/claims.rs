//! Claims decided on facts the bank cannot move after the default (issue 21, finding 3): the
//! filing day is not in the future nor after the programme, the loan is the secured amount at the
//! default, a claim is approved and paid on the loss it was filed with, one loss is compensated at
//! most once across nested programmes, and a pledge registered and released at once lends nothing
//! for a stop line.

use crate::helpers::*;
use chrono::{Datelike, Days, NaiveDate};
use ipledger::proto::risk_service_client::RiskServiceClient;
use ipledger::proto::*;
use tonic::Code;

/// The admin's clients: the admin registers for bank A, runs programmes and decides claims.
struct Admin {
    pledges: ipledger::proto::pledge_service_client::PledgeServiceClient<Authed>,
    risk: RiskServiceClient<Authed>,
}

async fn admin(server: &TestServer) -> Admin {
    admin_with(server, &server.admin_token).await
}

/// The admin's clients with `token` (a restored ledger keeps its principals and writes no token).
async fn admin_with(server: &TestServer, token: &str) -> Admin {
    let risk = RiskServiceClient::with_interceptor(server.channel().await, Bearer::new(token));
    Admin { pledges: server.pledges_as(Bearer::new(token)).await, risk }
}

/// Today in China (UTC+8), where claims are dated.
fn china_today() -> NaiveDate {
    chrono::Utc::now().with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap()).date_naive()
}

fn days_before(day: NaiveDate, days: u64) -> String {
    (day - Days::new(days)).to_string()
}

/// Last year (China time), whose every day is past: `last("03-01")`.
fn last(md: &str) -> String {
    format!("{}-{md}", china_today().year() - 1)
}

/// A programme of `region` paying `percent` of the loss on loans up to 5 M and `lower` percent up
/// to 30 M, in force from `from` to `to`.
async fn programme(a: &mut Admin, region: &str, percent: &str, (from, to): (&str, &str), stop_line: &str) -> String {
    let tier =
        |up_to: &str, percent: &str| Tier { loan_up_to: up_to.to_owned(), fund_share_percent: percent.to_owned() };
    let programme = Programme {
        name: format!("{region} 风险补偿 {percent}%"),
        region_code: region.to_owned(),
        budget_per_year: "1000000000".to_owned(),
        tiers: vec![tier("5000000", percent), tier("30000000", "20")],
        stop_line_percent: stop_line.to_owned(),
        valid_from: from.to_owned(),
        valid_to: to.to_owned(),
        ..Default::default()
    };
    let create = CreateProgrammeRequest { request_id: request_id(), programme: Some(programme) };
    a.risk.create_programme(create).await.unwrap().into_inner().id
}

/// A pledge of bank A in Tianhe, Guangzhou, registered on `on`.
async fn lend(a: &mut Admin, amount: &str, on: &str) -> Pledge {
    let mut p = pledge("440106", amount);
    p.registered_on = on.to_owned();
    p.debt_term_start = on.to_owned();
    p.debt_term_end = format!("{}-12-31", china_today().year() + 2);
    a.pledges.register_pledge(register(p)).await.unwrap().into_inner()
}

async fn default(a: &mut Admin, pledge: &Pledge, on: &str, outstanding: &str, loss: &str) {
    let request = RecordDefaultRequest {
        request_id: request_id(),
        pledge_id: pledge.id.clone(),
        defaulted_on: on.to_owned(),
        outstanding_principal: outstanding.to_owned(),
        loss: loss.to_owned(),
    };
    a.risk.record_default(request).await.unwrap();
}

async fn resolve(a: &mut Admin, pledge: &Pledge, on: &str, resolution: Resolution, loss: &str) {
    let request = ResolveDefaultRequest {
        request_id: request_id(),
        pledge_id: pledge.id.clone(),
        resolved_on: on.to_owned(),
        resolution: resolution as i32,
        loss: loss.to_owned(),
        note: "处置完毕".to_owned(),
    };
    a.risk.resolve_default(request).await.unwrap();
}

async fn file(a: &mut Admin, programme_id: &str, pledge: &Pledge, on: &str) -> Result<Claim, tonic::Status> {
    let request = FileClaimRequest {
        request_id: request_id(),
        programme_id: programme_id.to_owned(),
        pledge_id: pledge.id.clone(),
        filed_on: on.to_owned(),
    };
    a.risk.file_claim(request).await.map(tonic::Response::into_inner)
}

async fn decide(a: &mut Admin, claim: &Claim, approve: bool, on: &str) -> Result<Claim, tonic::Status> {
    let request = DecideClaimRequest {
        request_id: request_id(),
        id: claim.id.clone(),
        approve,
        decided_on: on.to_owned(),
        note: "审核".to_owned(),
    };
    a.risk.decide_claim(request).await.map(tonic::Response::into_inner)
}

async fn pay(a: &mut Admin, claim: &Claim, amount: &str, on: &str) -> Result<Claim, tonic::Status> {
    let request = RecordPaymentRequest {
        request_id: request_id(),
        id: claim.id.clone(),
        paid_on: on.to_owned(),
        amount: amount.to_owned(),
    };
    a.risk.record_payment(request).await.map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_claim_is_filed_on_a_day_that_has_come_while_its_programme_is_in_force() {
    let server = TestServer::start().await;
    let mut a = admin(&server).await;
    let today = china_today();
    let open =
        programme(&mut a, "440100", "40", (&days_before(today, 800), &format!("{}-12-31", today.year() + 5)), "").await;
    let ended = programme(&mut a, "440100", "40", (&days_before(today, 800), &days_before(today, 10)), "").await;

    // Tomorrow, and five years ahead: not yet a day the bank can file on.
    let p = lend(&mut a, "4000000", &days_before(today, 300)).await;
    default(&mut a, &p, &days_before(today, 200), "4000000", "1000000").await;
    for ahead in [today + Days::new(1), today + Days::new(5 * 365)] {
        let refused = file(&mut a, &open, &p, &ahead.to_string()).await.unwrap_err();
        assert_eq!(failure(refused), (Code::InvalidArgument, "INVALID_FIELDS".to_owned(), vec!["filedOn".to_owned()]));
    }
    let filed = file(&mut a, &open, &p, &today.to_string()).await.unwrap();
    assert_eq!((filed.filed_on.as_str(), filed.fund_amount.as_str()), (today.to_string().as_str(), "400000.00"));

    // A programme that has ended takes no claims; one filed while it was in force stands.
    let q = lend(&mut a, "4000000", &days_before(today, 300)).await;
    default(&mut a, &q, &days_before(today, 200), "4000000", "1000000").await;
    let refused = file(&mut a, &ended, &q, &days_before(today, 9)).await.unwrap_err();
    assert_eq!(failure(refused), (Code::FailedPrecondition, "PROGRAMME_EXPIRED".to_owned(), vec![]));
    let within = file(&mut a, &ended, &q, &days_before(today, 10)).await.unwrap();
    assert_eq!(within.fund_amount, "400000.00");
}

#[tokio::test]
async fn the_loan_of_a_claim_is_the_secured_amount_at_the_default() {
    let server = TestServer::start().await;
    let mut a = admin(&server).await;
    let gz =
        programme(&mut a, "440100", "40", (&last("01-01"), &format!("{}-12-31", china_today().year() + 1)), "").await;
    // A loan of 6 M falls in the 20% tier; lowered to 4 M after the default it would fall in 40%.
    let p = lend(&mut a, "6000000", &last("01-05")).await;
    default(&mut a, &p, &last("03-01"), "5000000", "1000000").await;
    let change = ChangePledgeRequest {
        request_id: request_id(),
        id: p.id.clone(),
        secured_amount: "4000000".to_owned(),
        reason: "部分还款".to_owned(),
        effective_on: last("03-02"),
        ..Default::default()
    };
    a.pledges.change_pledge(change).await.unwrap();
    let claim = file(&mut a, &gz, &p, &last("04-01")).await.unwrap();
    assert_eq!(
        (claim.loan_amount.as_str(), claim.fund_share_percent.as_str(), claim.fund_amount.as_str()),
        ("6000000.00", "20", "200000.00")
    );
}

#[tokio::test]
async fn a_claim_is_approved_and_paid_on_the_loss_it_was_filed_with() {
    let server = TestServer::start().await;
    let mut a = admin(&server).await;
    let gz =
        programme(&mut a, "440100", "40", (&last("01-01"), &format!("{}-12-31", china_today().year() + 1)), "").await;

    // Claimed on a loss of 1 M, then recovered in full: nothing to approve; the office rejects
    // it, and a new filing finds no loss.
    let p = lend(&mut a, "4000000", &last("01-05")).await;
    default(&mut a, &p, &last("02-01"), "4000000", "1000000").await;
    let claim = file(&mut a, &gz, &p, &last("03-01")).await.unwrap();
    assert_eq!(claim.fund_amount, "400000.00");
    resolve(&mut a, &p, &last("04-01"), Resolution::Recovered, "0").await;
    let refused = decide(&mut a, &claim, true, &last("05-01")).await.unwrap_err();
    assert_eq!(failure(refused), (Code::FailedPrecondition, "CLAIM_BASIS_CHANGED".to_owned(), vec![]));
    let rejected = decide(&mut a, &claim, false, &last("05-01")).await.unwrap();
    assert_eq!(rejected.status(), ClaimStatus::Rejected);
    assert_eq!(failure(file(&mut a, &gz, &p, &last("05-02")).await.unwrap_err()).1, "NO_LOSS");

    // Approved on 1 M, then recovered in full: nothing is paid.
    let q = lend(&mut a, "4000000", &last("01-05")).await;
    default(&mut a, &q, &last("02-01"), "4000000", "1000000").await;
    let claim = file(&mut a, &gz, &q, &last("03-01")).await.unwrap();
    decide(&mut a, &claim, true, &last("03-10")).await.unwrap();
    resolve(&mut a, &q, &last("04-01"), Resolution::Recovered, "0").await;
    let refused = pay(&mut a, &claim, "600000", &last("05-01")).await.unwrap_err();
    assert_eq!(failure(refused).1, "CLAIM_BASIS_CHANGED");
    let refused = pay(&mut a, &claim, "1", &last("05-01")).await.unwrap_err();
    assert_eq!(failure(refused).1, "CLAIM_BASIS_CHANGED");

    // The loss falls from 1 M to 500,000 before the decision: re-filed, the claim follows it.
    let r = lend(&mut a, "4000000", &last("01-05")).await;
    default(&mut a, &r, &last("02-01"), "4000000", "1000000").await;
    let stale = file(&mut a, &gz, &r, &last("03-01")).await.unwrap();
    resolve(&mut a, &r, &last("04-01"), Resolution::WrittenOff, "500000").await;
    assert_eq!(failure(decide(&mut a, &stale, true, &last("05-01")).await.unwrap_err()).1, "CLAIM_BASIS_CHANGED");
    decide(&mut a, &stale, false, &last("05-01")).await.unwrap();
    let claim = file(&mut a, &gz, &r, &last("05-02")).await.unwrap();
    assert_eq!((claim.loss.as_str(), claim.fund_amount.as_str()), ("500000.00", "200000.00"));
    decide(&mut a, &claim, true, &last("05-03")).await.unwrap();
    let paid = pay(&mut a, &claim, "200000", &last("05-04")).await.unwrap();
    assert_eq!(paid.paid_amount, "200000.00");

    // Written off at more than recorded after approval: the approved part is still owed.
    let s = lend(&mut a, "4000000", &last("01-05")).await;
    default(&mut a, &s, &last("02-01"), "4000000", "500000").await;
    let claim = file(&mut a, &gz, &s, &last("03-01")).await.unwrap();
    decide(&mut a, &claim, true, &last("03-10")).await.unwrap();
    resolve(&mut a, &s, &last("04-01"), Resolution::WrittenOff, "1000000").await;
    assert_eq!(pay(&mut a, &claim, "200000", &last("05-01")).await.unwrap().paid_amount, "200000.00");
}

/// The fund parts of the claims not rejected add up to at most the loss.
fn compensated(claims: &[&Claim]) -> i128 {
    claims.iter().filter(|c| c.status() != ClaimStatus::Rejected).map(|c| crate::statistics::fen(&c.fund_amount)).sum()
}

#[tokio::test]
async fn one_loss_is_compensated_once_across_a_city_s_and_its_province_s_programmes() {
    let server = TestServer::start().await;
    let mut a = admin(&server).await;
    let valid = (last("01-01"), format!("{}-12-31", china_today().year() + 1));
    let valid = (valid.0.as_str(), valid.1.as_str());
    let city_60 = programme(&mut a, "440100", "60", valid, "").await;
    let province_60 = programme(&mut a, "440000", "60", valid, "").await;
    let province_40 = programme(&mut a, "440000", "40", valid, "").await;

    // 60% and 60% of one loss of 1 M: 600,000 in all, not 1,200,000.
    let p = lend(&mut a, "4000000", &last("01-05")).await;
    default(&mut a, &p, &last("02-01"), "4000000", "1000000").await;
    let city = file(&mut a, &city_60, &p, &last("03-01")).await.unwrap();
    let province = file(&mut a, &province_60, &p, &last("03-02")).await.unwrap();
    assert_eq!((city.fund_amount.as_str(), province.fund_amount.as_str()), ("600000.00", "0.00"));
    assert_eq!((city.compensated_elsewhere.as_str(), province.compensated_elsewhere.as_str()), ("0.00", "600000.00"));
    assert_eq!(compensated(&[&city, &province]), 600_000 * 100);

    // The province's 40% first: the city's 60% tops it up to 600,000.
    let q = lend(&mut a, "4000000", &last("01-05")).await;
    default(&mut a, &q, &last("02-01"), "4000000", "1000000").await;
    let province = file(&mut a, &province_40, &q, &last("03-01")).await.unwrap();
    let city = file(&mut a, &city_60, &q, &last("03-02")).await.unwrap();
    assert_eq!((province.fund_amount.as_str(), city.fund_amount.as_str()), ("400000.00", "200000.00"));
    assert_eq!(city.compensated_elsewhere, "400000.00");
    assert_eq!(compensated(&[&province, &city]), 600_000 * 100);
    assert!(compensated(&[&province, &city]) <= 1_000_000 * 100);
}

#[tokio::test]
async fn a_pledge_registered_and_released_at_once_lends_nothing_for_the_stop_line() {
    let server = TestServer::start().await;
    let mut a = admin(&server).await;
    let gz =
        programme(&mut a, "440100", "40", (&last("01-01"), &format!("{}-12-31", china_today().year() + 1)), "3").await;
    // Bank A lends 4 M in Guangzhou last year and loses 1 M of it: 25%, above the 3% line.
    let p = lend(&mut a, "4000000", &last("01-05")).await;
    default(&mut a, &p, &last("03-01"), "4000000", "1000000").await;
    let refused = file(&mut a, &gz, &p, &last("06-01")).await.unwrap_err();
    assert_eq!(failure(refused.clone()).1, "STOP_LINE_REACHED");
    assert_eq!(metadata(&refused, "bankLending").as_deref(), Some("4000000.00"));

    // 100 M registered and released the next day as repaid; 100 M lowered to 1 yuan the next day;
    // 30 M released months later as a void contract: none of it was lent.
    let big = lend(&mut a, "100000000", &last("01-05")).await;
    a.pledges.release_pledge(release(big.id.clone(), &last("01-06"))).await.unwrap();
    let lowered = lend(&mut a, "100000000", &last("01-05")).await;
    let change = ChangePledgeRequest {
        request_id: request_id(),
        id: lowered.id.clone(),
        secured_amount: "1".to_owned(),
        reason: "登记有误".to_owned(),
        effective_on: last("01-06"),
        ..Default::default()
    };
    a.pledges.change_pledge(change).await.unwrap();
    let void = lend(&mut a, "30000000", &last("01-05")).await;
    let mut invalid = release(void.id.clone(), &last("05-01"));
    invalid.reason = ReleaseReason::ContractInvalid as i32;
    a.pledges.release_pledge(invalid).await.unwrap();
    let refused = file(&mut a, &gz, &p, &last("06-01")).await.unwrap_err();
    assert_eq!(failure(refused.clone()).1, "STOP_LINE_REACHED");
    assert_eq!(metadata(&refused, "bankLending").as_deref(), Some("4000001.00"));

    // 40 M lent from January and repaid in May was lent, and so were 10 M lowered in May by a
    // partial repayment: 1 M of 54 M is under 3%.
    let repaid = lend(&mut a, "40000000", &last("01-05")).await;
    a.pledges.release_pledge(release(repaid.id.clone(), &last("05-20"))).await.unwrap();
    let amortised = lend(&mut a, "10000000", &last("01-05")).await;
    let change = ChangePledgeRequest {
        request_id: request_id(),
        id: amortised.id.clone(),
        secured_amount: "5000000".to_owned(),
        reason: "部分还款".to_owned(),
        effective_on: last("05-20"),
        ..Default::default()
    };
    a.pledges.change_pledge(change).await.unwrap();
    let claim = file(&mut a, &gz, &p, &last("06-01")).await.unwrap();
    assert_eq!((claim.bank_lending.as_str(), claim.fund_amount.as_str()), ("54000001.00", "400000.00"));
}

/// Every claim as the admin lists it.
async fn all_claims(a: &mut Admin) -> Vec<Claim> {
    let request = ListClaimsRequest { page_size: 100, ..Default::default() };
    a.risk.list_claims(request).await.unwrap().into_inner().claims
}

// The CLI is a blocking child process talking to the in-process server: two worker threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_decides_every_claim_again_on_the_basis_its_entries_keep() {
    let server = TestServer::start().await;
    let mut a = admin(&server).await;
    let valid = (last("01-01"), format!("{}-12-31", china_today().year() + 1));
    let valid = (valid.0.as_str(), valid.1.as_str());
    let city = programme(&mut a, "440100", "60", valid, "3").await;
    let province = programme(&mut a, "440000", "40", valid, "").await;
    // Lending the stop line counts (a pledge released at once does not), two claims on one loss,
    // a loan lowered after its default, an approval and a payment on the loss they were filed on,
    // and a loss that changed after filing.
    let quick = lend(&mut a, "100000000", &last("01-05")).await;
    a.pledges.release_pledge(release(quick.id.clone(), &last("01-06"))).await.unwrap();
    lend(&mut a, "60000000", &last("01-05")).await;
    let p = lend(&mut a, "6000000", &last("01-05")).await;
    default(&mut a, &p, &last("02-01"), "6000000", "1000000").await;
    let change = ChangePledgeRequest {
        request_id: request_id(),
        id: p.id.clone(),
        secured_amount: "4000000".to_owned(),
        reason: "部分还款".to_owned(),
        effective_on: last("02-02"),
        ..Default::default()
    };
    a.pledges.change_pledge(change).await.unwrap();
    let by_province = file(&mut a, &province, &p, &last("03-01")).await.unwrap();
    let by_city = file(&mut a, &city, &p, &last("03-02")).await.unwrap();
    assert_eq!((by_province.fund_amount.as_str(), by_province.loan_amount.as_str()), ("200000.00", "6000000.00"));
    assert_eq!((by_city.fund_amount.as_str(), by_city.compensated_elsewhere.as_str()), ("0.00", "200000.00"));
    // 60 M, and the 6 M loan at its lowest, 4 M; the 100 M released the next day lent nothing.
    assert_eq!(by_city.bank_lending, "64000000.00");
    decide(&mut a, &by_province, true, &last("03-10")).await.unwrap();
    pay(&mut a, &by_province, "200000", &last("03-20")).await.unwrap();
    let q = lend(&mut a, "4000000", &last("01-05")).await;
    default(&mut a, &q, &last("02-01"), "4000000", "500000").await;
    let stale = file(&mut a, &province, &q, &last("03-01")).await.unwrap();
    resolve(&mut a, &q, &last("04-01"), Resolution::WrittenOff, "400000").await;
    assert_eq!(failure(decide(&mut a, &stale, true, &last("04-02")).await.unwrap_err()).1, "CLAIM_BASIS_CHANGED");
    decide(&mut a, &stale, false, &last("04-02")).await.unwrap();
    file(&mut a, &province, &q, &last("04-03")).await.unwrap();
    let before = all_claims(&mut a).await;
    assert_eq!(before.len(), 4);

    let temp = tempfile::tempdir().unwrap();
    let dump = temp.path().join("journal.jsonl");
    let out = export_cli(&server, &dump);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = server.dir.join(ipledger::ledger::signing::PUBLIC_KEY_FILE);
    let restored = temp.path().join("restored");
    let (ok, text) = restore_cli(&dump, &restored, &["--trusted-key", key.to_str().unwrap()]);
    assert!(ok, "{text}");
    let again = TestServer::start_in(&restored).await;
    let after = all_claims(&mut admin_with(&again, &server.admin_token).await).await;
    assert_eq!(after, before, "the restored claims are the claims as filed, decided and paid");
    again.stop().await;
    server.stop().await;
}

/// A pledge of bank A in Tianhe, Guangzhou, registered on `on` for `borrower`.
async fn lend_to(a: &mut Admin, borrower: &Party, amount: &str, on: &str) -> Pledge {
    let mut p = pledge("440106", amount);
    p.pledgor = Some(borrower.clone());
    p.registered_on = on.to_owned();
    p.debt_term_start = on.to_owned();
    p.debt_term_end = format!("{}-12-31", china_today().year() + 2);
    a.pledges.register_pledge(register(p)).await.unwrap().into_inner()
}

/// A defaulted loan of `borrower` whose whole `amount` is lost, registered and defaulted last year.
async fn lost(a: &mut Admin, borrower: &Party, amount: &str) -> Pledge {
    let p = lend_to(a, borrower, amount, &last("01-05")).await;
    default(a, &p, &last("02-01"), amount, amount).await;
    p
}

/// A claim's split as one line: fund, valuer, bank, the limit that bound, and the fund parts the
/// caps were checked against.
fn split_of(c: &Claim) -> String {
    format!(
        "fund {} valuer {} bank {} {:?} budget {} loan {} borrower {}",
        c.fund_amount,
        c.valuer_amount,
        c.bank_amount,
        c.capped_by(),
        c.capped_by_budget,
        c.loan_fund_before,
        c.borrower_fund_before
    )
}

/// The programme's figures of last year (claims were filed then), from its claims.
async fn claims_of(a: &mut Admin, programme: &str) -> Vec<Claim> {
    let request = ListClaimsRequest { programme_id: programme.to_owned(), page_size: 100, ..Default::default() };
    a.risk.list_claims(request).await.unwrap().into_inner().claims
}

/// Stops the server, removes its derived state and starts it again: every record, the borrowers'
/// years included, is rebuilt from the journal.
async fn rebuilt(server: TestServer) -> (TestServer, tempfile::TempDir) {
    let dir = server.dir.clone();
    let temp = server.stop().await.expect("the test's own directory");
    std::fs::remove_dir_all(dir.join(ipledger::datadir::DERIVED_DIR)).unwrap();
    (TestServer::start_in(&dir).await, temp)
}

// Longer than ~70 lines: one programme's claims walked through every cap, a rebuild and a restore.
// The CLI is a blocking child process talking to the in-process server: two worker threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guangzhou_2023_caps_per_loan_borrower_and_year_with_a_valuer() {
    let server = TestServer::start().await;
    let mut a = admin(&server).await;
    // Guangzhou 2023's 50% and caps (10 M a loan, 20 M a borrower a year), a valuer's 10%, and a
    // budget of 25 M so that the year's budget binds too.
    let content = Programme {
        name: "广州 2023 风险补偿（上限）".to_owned(),
        region_code: "440100".to_owned(),
        budget_per_year: "25000000".to_owned(),
        tiers: vec![Tier { loan_up_to: "100000000".to_owned(), fund_share_percent: "50".to_owned() }],
        cap_per_loan: "10000000".to_owned(),
        cap_per_borrower_per_year: "20000000".to_owned(),
        valuer_share_percent: "10".to_owned(),
        valid_from: last("01-01"),
        valid_to: format!("{}-12-31", china_today().year() + 1),
        ..Default::default()
    };
    let create = CreateProgrammeRequest { request_id: request_id(), programme: Some(content.clone()) };
    let created = a.risk.create_programme(create).await.unwrap().into_inner();
    assert_eq!(
        (
            created.cap_per_loan.as_str(),
            created.cap_per_borrower_per_year.as_str(),
            created.valuer_share_percent.as_str()
        ),
        ("10000000.00", "20000000.00", "10")
    );
    let gz = created.id;
    // Caps out of order are refused field by field.
    let bad = Programme { cap_per_loan: "30000000".to_owned(), cap_per_borrower_per_year: "0".to_owned(), ..content };
    let refused = a.risk.create_programme(CreateProgrammeRequest { request_id: request_id(), programme: Some(bad) });
    let (code, _, fields) = failure(refused.await.unwrap_err());
    assert_eq!((code, fields), (Code::InvalidArgument, vec!["programme.capPerBorrowerPerYear".to_owned()]));

    let x = party("借款企业甲", &credit_code(unique()));
    let y = party("借款企业乙", &credit_code(unique()));
    // 30 M lost: 50% is 15 M, the loan's cap pays 10 M; the valuer bears 3 M, the bank the rest.
    let x1 = lost(&mut a, &x, "30000000").await;
    let c1 = file(&mut a, &gz, &x1, &last("03-01")).await.unwrap();
    assert_eq!(
        split_of(&c1),
        "fund 10000000.00 valuer 3000000.00 bank 17000000.00 LoanCap budget false loan 0.00 borrower 0.00"
    );
    // The same borrower's second loan: 10 M left of its year, as much as the loan's cap.
    let x2 = lost(&mut a, &x, "30000000").await;
    let c2 = file(&mut a, &gz, &x2, &last("03-02")).await.unwrap();
    let spent = "fund 10000000.00 valuer 3000000.00 bank 17000000.00 BorrowerYearCap budget false loan 0.00 borrower 10000000.00";
    assert_eq!(split_of(&c2), spent);
    let x3 = lost(&mut a, &x, "1000000").await;
    let refused = file(&mut a, &gz, &x3, &last("03-03")).await.unwrap_err();
    assert_eq!(failure(refused.clone()), (Code::FailedPrecondition, "BORROWER_CAP_REACHED".to_owned(), vec![]));
    assert_eq!(metadata(&refused, "borrowerFund").as_deref(), Some("20000000.00"));

    // Rebuilt from the journal, the borrower's year is still spent.
    let before = claims_of(&mut a, &gz).await;
    let (server, _dir) = rebuilt(server).await;
    let mut a = admin(&server).await;
    assert_eq!(claims_of(&mut a, &gz).await, before);
    let refused = file(&mut a, &gz, &x3, &last("03-03")).await.unwrap_err();
    assert_eq!(failure(refused).1, "BORROWER_CAP_REACHED");

    // A rejected claim frees its part of the borrower's year: 50% of 1 M fits.
    decide(&mut a, &c2, false, &last("03-10")).await.unwrap();
    let c3 = file(&mut a, &gz, &x3, &last("03-11")).await.unwrap();
    assert_eq!(
        split_of(&c3),
        "fund 500000.00 valuer 100000.00 bank 400000.00 Unspecified budget false loan 0.00 borrower 10000000.00"
    );
    // Another borrower: 10 M by the loan's cap, then the 4.5 M left of the 25 M budget.
    let y1 = lost(&mut a, &y, "30000000").await;
    let c4 = file(&mut a, &gz, &y1, &last("04-01")).await.unwrap();
    assert_eq!(c4.fund_amount, "10000000.00");
    let y2 = lost(&mut a, &y, "30000000").await;
    let c5 = file(&mut a, &gz, &y2, &last("04-02")).await.unwrap();
    assert_eq!(
        split_of(&c5),
        "fund 4500000.00 valuer 3000000.00 bank 22500000.00 Budget budget true loan 0.00 borrower 10000000.00"
    );
    let z = party("借款企业丙", &credit_code(unique()));
    let z1 = lost(&mut a, &z, "1000000").await;
    assert_eq!(failure(file(&mut a, &gz, &z1, &last("04-03")).await.unwrap_err()).1, "BUDGET_EXHAUSTED");

    // Restored from an export, every claim is decided again from its entry: the same splits.
    let before = all_claims(&mut a).await;
    let temp = tempfile::tempdir().unwrap();
    let dump = temp.path().join("journal.jsonl");
    let out = export_cli(&server, &dump);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = server.dir.join(ipledger::ledger::signing::PUBLIC_KEY_FILE);
    let restored = temp.path().join("restored");
    let (ok, text) = restore_cli(&dump, &restored, &["--trusted-key", key.to_str().unwrap()]);
    assert!(ok, "{text}");
    let again = TestServer::start_in(&restored).await;
    let mut b = admin_with(&again, &server.admin_token).await;
    assert_eq!(all_claims(&mut b).await, before, "the restored claims are the claims as filed");
    assert_eq!(failure(file(&mut b, &gz, &z1, &last("04-03")).await.unwrap_err()).1, "BUDGET_EXHAUSTED");
    again.stop().await;
    server.stop().await;
}

//! Alerts before a pledge goes bad (issue 25): each kind arises from the write or the age that
//! makes it and is listed, under the bank's policy (defaults, then its own); filters and scopes
//! (a bank its own, an office its region, the admin all); paging; the change feed carries the
//! alerts each entry raised, to those who may read them; a restart and a rebuild give the same.

use crate::helpers::*;
use chrono::{Days, NaiveDate};
use ipledger::proto::journal_service_client::JournalServiceClient;
use ipledger::proto::*;
use std::collections::BTreeMap;
use tonic::Code;

fn china_today() -> NaiveDate {
    chrono::Utc::now().with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap()).date_naive()
}

fn before(days: u64) -> String {
    (china_today() - Days::new(days)).to_string()
}

fn after(days: u64) -> String {
    (china_today() + Days::new(days)).to_string()
}

async fn journal_as(server: &TestServer, token: &str) -> JournalServiceClient<Authed> {
    JournalServiceClient::with_interceptor(server.channel().await, Bearer::new(token))
}

/// A pledge of `bank` in `county` registered 300 days ago, its term ending in 700 days.
fn loan(county: &str, bank: &str, amount: &str) -> Pledge {
    let mut p = pledge(county, amount);
    p.pledgee = Some(party("Bank", bank));
    p.registered_on = before(300);
    p.debt_term_start = before(300);
    p.debt_term_end = after(700);
    p
}

/// The pledges of the scenario, by the kind each should alert with.
struct Book {
    expiry: Pledge,
    ltv: Pledge,
    at_risk: Pledge,
    defaulted: Pledge,
    claimed: Pledge,
    claim_id: String,
    bank_b: Pledge,
}

/// Writes one pledge for each kind as the admin (bank A's, in Tianhe, Guangzhou), one of bank B's
/// in Hangzhou whose right ends near its term, and one that alerts for nothing.
async fn book(server: &TestServer, bank_a: &str) -> Book {
    let mut pledges = server.pledges().await;
    let mut risk = risk_as(server, &server.admin_token).await;
    let mut own = risk_as(server, bank_a).await;
    let policy = AlertPolicy {
        pledgee_credit_code: BANK_A.to_owned(),
        expiry_within_days: 180,
        newly_at_risk_days: 30,
        default_unresolved_days: 90,
        claim_undecided_days: 60,
        loan_to_value_max_percent: "70".to_owned(),
        ..Default::default()
    };
    own.set_alert_policy(SetAlertPolicyRequest { policy: Some(policy) }).await.unwrap();
    let mut register_one = async |p: Pledge| pledges.register_pledge(register(p)).await.unwrap().into_inner();

    // The right ends 100 days after the term: within the default 180.
    let mut e = loan("440106", BANK_A, "1000000");
    e.rights[0].expires_on = after(800);
    let expiry = register_one(e).await;
    let ltv = register_one(loan("440106", BANK_A, "8000000")).await;
    let at_risk = register_one(loan("440106", BANK_A, "1000000")).await;
    let defaulted = register_one(loan("440106", BANK_A, "1000000")).await;
    let claimed = register_one(loan("440106", BANK_A, "4000000")).await;
    let mut b = loan("330108", BANK_B, "2000000");
    b.rights[0].expires_on = after(750);
    let bank_b = register_one(b).await;
    register_one(loan("440106", BANK_A, "1000000")).await;

    let valuation = Valuation {
        pledge_id: ltv.id.clone(),
        appraiser: "中联资产评估".to_owned(),
        method: ValuationMethod::Income as i32,
        value: "10000000".to_owned(),
        valued_on: before(5),
        ..Default::default()
    };
    risk.record_valuation(RecordValuationRequest { request_id: request_id(), valuation: Some(valuation) })
        .await
        .unwrap();
    let right = &at_risk.rights[0];
    let lapsed = RecordRightRequest {
        request_id: request_id(),
        right_kind: right.kind,
        right_number: right.number.clone(),
        state: Some(RightState {
            holder: at_risk.pledgor.clone(),
            status: RightStatus::Lapsed as i32,
            status_since: before(1),
            ..Default::default()
        }),
    };
    risk.record_right(lapsed).await.unwrap();
    let default = |p: &Pledge, on: String| RecordDefaultRequest {
        request_id: request_id(),
        pledge_id: p.id.clone(),
        defaulted_on: on,
        outstanding_principal: "1000000".to_owned(),
        loss: "500000".to_owned(),
    };
    risk.record_default(default(&defaulted, before(100))).await.unwrap();
    risk.record_default(default(&claimed, before(80))).await.unwrap();
    let programme = Programme {
        name: "广州市知识产权质押融资风险补偿".to_owned(),
        region_code: "440100".to_owned(),
        budget_per_year: "100000000".to_owned(),
        tiers: vec![Tier { loan_up_to: "30000000".to_owned(), fund_share_percent: "40".to_owned() }],
        valid_from: before(800),
        valid_to: after(800),
        ..Default::default()
    };
    let create = CreateProgrammeRequest { request_id: request_id(), programme: Some(programme) };
    let programme_id = risk.create_programme(create).await.unwrap().into_inner().id;
    let file = FileClaimRequest {
        request_id: request_id(),
        programme_id,
        pledge_id: claimed.id.clone(),
        filed_on: before(70),
    };
    let claim_id = risk.file_claim(file).await.unwrap().into_inner().id;
    Book { expiry, ltv, at_risk, defaulted, claimed, claim_id, bank_b }
}

/// Every alert `token` may list under `request`, page by page (`page_size` per page).
async fn all_alerts(server: &TestServer, token: &str, request: ListAlertsRequest) -> Vec<Alert> {
    let mut risk = risk_as(server, token).await;
    let mut out = Vec::new();
    let mut page_token = String::new();
    for _ in 0..100 {
        let page = ListAlertsRequest { page_token: page_token.clone(), ..request.clone() };
        let page = risk.list_alerts(page).await.unwrap().into_inner();
        assert!(request.page_size == 0 || page.alerts.len() <= request.page_size as usize);
        out.extend(page.alerts);
        if page.next_page_token.is_empty() {
            return out;
        }
        page_token = page.next_page_token;
    }
    panic!("more than 100 pages");
}

fn ids(alerts: &[Alert]) -> Vec<&str> {
    alerts.iter().map(|a| a.pledge_id.as_str()).collect()
}

fn by_pledge(alerts: &[Alert]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for a in alerts {
        out.entry(a.pledge_id.clone()).or_default().push(a.kind.clone());
    }
    out
}

fn expected(book: &Book, with_b: bool) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = [
        (&book.expiry, "RIGHT_EXPIRES_NEAR_TERM"),
        (&book.ltv, "LOAN_TO_VALUE_ABOVE_POLICY"),
        (&book.at_risk, "NEWLY_AT_RISK"),
        (&book.defaulted, "DEFAULT_UNRESOLVED"),
        (&book.claimed, "CLAIM_UNDECIDED"),
    ]
    .into_iter()
    .map(|(p, kind)| (p.id.clone(), vec![kind.to_owned()]))
    .collect();
    if with_b {
        out.insert(book.bank_b.id.clone(), vec!["RIGHT_EXPIRES_NEAR_TERM".to_owned()]);
    }
    out
}

fn list(kind: &str, region: &str, pledgee: &str) -> ListAlertsRequest {
    ListAlertsRequest {
        kind: kind.to_owned(),
        region_code: region.to_owned(),
        pledgee_credit_code: pledgee.to_owned(),
        ..Default::default()
    }
}

#[tokio::test]
async fn each_kind_arises_and_is_listed_with_its_figures_in_its_scope() {
    let server = TestServer::start().await;
    let bank_a = server.token("bank-a", TokenRole::Bank, BANK_A, "").await;
    let bank_b = server.token("bank-b", TokenRole::Bank, BANK_B, "").await;
    let office_gd = server.token("office-gd", TokenRole::Office, "", "440000").await;
    let office_zj = server.token("office-zj", TokenRole::Office, "", "330000").await;
    let book = Box::pin(book(&server, &bank_a)).await;
    let admin = &server.admin_token;

    let everything = all_alerts(&server, admin, ListAlertsRequest::default()).await;
    assert_eq!(by_pledge(&everything), expected(&book, true));
    let find = |kind: &str| everything.iter().find(|a| a.kind == kind).unwrap().clone();
    let today = china_today().to_string();
    let e = everything.iter().find(|a| a.pledge_id == book.expiry.id).unwrap();
    assert_eq!(
        (e.expires_on.as_str(), e.debt_term_end.as_str(), e.right_number.as_str(), e.county_code.as_str()),
        (after(800).as_str(), after(700).as_str(), book.expiry.rights[0].number.as_str(), "440106")
    );
    assert_eq!((e.pledgee_credit_code.as_str(), e.arose_on.as_str()), (BANK_A, today.as_str()));
    let l = find("LOAN_TO_VALUE_ABOVE_POLICY");
    assert_eq!((l.loan_to_value_percent.as_str(), l.threshold_percent.as_str()), ("80.00", "70"));
    let r = find("NEWLY_AT_RISK");
    assert_eq!((r.reason.as_str(), r.right_number.as_str()), ("LAPSED", book.at_risk.rights[0].number.as_str()));
    let d = find("DEFAULT_UNRESOLVED");
    assert_eq!(
        (d.defaulted_on.as_str(), d.age_days, d.arose_on.as_str()),
        (before(100).as_str(), 100, before(10).as_str())
    );
    let c = find("CLAIM_UNDECIDED");
    assert_eq!(
        (c.claim_id.as_str(), c.filed_on.as_str(), c.age_days),
        (book.claim_id.as_str(), before(70).as_str(), 70)
    );
    assert_eq!(c.arose_on, before(10));

    // Filters: a kind, a region, a bank.
    let defaults = all_alerts(&server, admin, list("DEFAULT_UNRESOLVED", "", "")).await;
    assert_eq!(ids(&defaults), [book.defaulted.id.as_str()]);
    assert_eq!(by_pledge(&all_alerts(&server, admin, list("", "440100", "")).await), expected(&book, false));
    assert_eq!(all_alerts(&server, admin, list("", "330108", "")).await.len(), 1);
    assert_eq!(by_pledge(&all_alerts(&server, admin, list("", "", BANK_A)).await), expected(&book, false));
    assert!(all_alerts(&server, admin, list("", "330000", BANK_A)).await.is_empty());

    // Scopes: a bank its own, an office its region.
    assert_eq!(by_pledge(&all_alerts(&server, &bank_a, ListAlertsRequest::default()).await), expected(&book, false));
    let own_b = all_alerts(&server, &bank_b, ListAlertsRequest::default()).await;
    assert_eq!(ids(&own_b), [book.bank_b.id.as_str()]);
    assert_eq!(by_pledge(&all_alerts(&server, &office_gd, ListAlertsRequest::default()).await), expected(&book, false));
    let zj = all_alerts(&server, &office_zj, ListAlertsRequest::default()).await;
    assert_eq!(ids(&zj), [book.bank_b.id.as_str()]);
    let denied = risk_as(&server, &bank_b).await.list_alerts(list("", "", BANK_A)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let denied = risk_as(&server, &office_zj).await.list_alerts(list("", "440000", "")).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let bad = risk_as(&server, admin).await.list_alerts(list("SOON", "99", "x")).await.unwrap_err();
    let (code, reason, mut fields) = failure(bad);
    fields.sort();
    assert_eq!(
        (code, reason.as_str(), fields),
        (
            Code::InvalidArgument,
            "INVALID_FIELDS",
            vec!["kind".to_owned(), "pledgeeCreditCode".to_owned(), "regionCode".to_owned()]
        )
    );

    // Paging: two pledges a page, every alert once.
    let paged = all_alerts(&server, admin, ListAlertsRequest { page_size: 2, ..Default::default() }).await;
    assert_eq!(paged, everything);
    let mut risk = risk_as(&server, admin).await;
    let first = risk.list_alerts(ListAlertsRequest { page_size: 2, ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(first.alerts.len(), 2);
    assert!(!first.next_page_token.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_bank_s_policy_moves_its_alerts_and_only_it_or_the_admin_sets_it() {
    let server = TestServer::start().await;
    let bank_a = server.token("bank-a", TokenRole::Bank, BANK_A, "").await;
    let bank_b = server.token("bank-b", TokenRole::Bank, BANK_B, "").await;
    let office = server.token("office-gd", TokenRole::Office, "", "440000").await;
    let mut own = risk_as(&server, &bank_a).await;

    // Unset: the documented defaults.
    let b_policy = risk_as(&server, &bank_b).await.get_alert_policy(GetAlertPolicyRequest::default()).await.unwrap();
    let b_policy = b_policy.into_inner();
    assert_eq!(
        (b_policy.expiry_within_days, b_policy.newly_at_risk_days, b_policy.default_unresolved_days),
        (180, 30, 90)
    );
    assert_eq!((b_policy.claim_undecided_days, b_policy.loan_to_value_max_percent.as_str()), (60, ""));
    assert_eq!((b_policy.set_by.as_str(), b_policy.update_time), ("", None));

    let book = Box::pin(book(&server, &bank_a)).await;
    let stricter = AlertPolicy {
        pledgee_credit_code: BANK_A.to_owned(),
        expiry_within_days: 30,
        newly_at_risk_days: 30,
        default_unresolved_days: 120,
        claim_undecided_days: 60,
        loan_to_value_max_percent: "85.5".to_owned(),
        ..Default::default()
    };
    let set = own.set_alert_policy(SetAlertPolicyRequest { policy: Some(stricter.clone()) }).await.unwrap();
    let set = set.into_inner();
    assert_eq!((set.set_by.as_str(), set.loan_to_value_max_percent.as_str()), ("bank-a", "85.5"));
    let read = own.get_alert_policy(GetAlertPolicyRequest::default()).await.unwrap().into_inner();
    assert_eq!(read, set);
    let mut left = expected(&book, false);
    for gone in [&book.expiry, &book.ltv, &book.defaulted] {
        left.remove(&gone.id);
    }
    assert_eq!(by_pledge(&all_alerts(&server, &bank_a, ListAlertsRequest::default()).await), left);
    // Bank B's policy is its own: its pledge still alerts under the defaults.
    let b = all_alerts(&server, &server.admin_token, list("", "", BANK_B)).await;
    assert_eq!(b.len(), 1);

    // Who may: the bank itself and the admin; neither another bank nor an office.
    for token in [&bank_b, &office] {
        let mut risk = risk_as(&server, token).await;
        let refused = risk.set_alert_policy(SetAlertPolicyRequest { policy: Some(stricter.clone()) }).await;
        assert_eq!(refused.unwrap_err().code(), Code::PermissionDenied);
        let get = GetAlertPolicyRequest { pledgee_credit_code: BANK_A.to_owned() };
        assert_eq!(risk.get_alert_policy(get).await.unwrap_err().code(), Code::PermissionDenied);
    }
    let by_admin = AlertPolicy { pledgee_credit_code: BANK_B.to_owned(), ..stricter.clone() };
    let mut risk = risk_as(&server, &server.admin_token).await;
    let set = risk.set_alert_policy(SetAlertPolicyRequest { policy: Some(by_admin) }).await.unwrap();
    assert_eq!(set.into_inner().pledgee_credit_code, BANK_B);
    assert!(all_alerts(&server, &bank_b, ListAlertsRequest::default()).await.is_empty(), "750 days: past 30");

    // A policy is validated field by field, within its limits.
    let bad = AlertPolicy {
        pledgee_credit_code: BANK_A.to_owned(),
        expiry_within_days: 731,
        newly_at_risk_days: 0,
        default_unresolved_days: 90,
        claim_undecided_days: -1,
        loan_to_value_max_percent: "12.345".to_owned(),
        ..Default::default()
    };
    let refused = own.set_alert_policy(SetAlertPolicyRequest { policy: Some(bad) }).await.unwrap_err();
    let (code, _, mut fields) = failure(refused);
    fields.sort();
    assert_eq!(
        (code, fields),
        (
            Code::InvalidArgument,
            vec![
                "policy.claimUndecidedDays".to_owned(),
                "policy.expiryWithinDays".to_owned(),
                "policy.loanToValueMaxPercent".to_owned(),
                "policy.newlyAtRiskDays".to_owned(),
            ]
        )
    );
    let missing = own.set_alert_policy(SetAlertPolicyRequest { policy: None }).await.unwrap_err();
    assert_eq!(failure(missing).2, ["policy"]);
    server.stop().await;
}

/// The feed's events from the start to the head as `token` sees them: (event, alerts as (kind,
/// pledge)). The head must be an entry every principal sees (a programme's creation).
async fn feed(server: &TestServer, token: &str) -> Vec<(String, Vec<(String, String)>)> {
    let head = journal_as(server, &server.admin_token).await.get_signed_head(GetSignedHeadRequest {}).await;
    let head = head.unwrap().into_inner().sequence;
    let request = WatchEventsRequest { from_sequence: 0 };
    let mut stream = journal_as(server, token).await.watch_events(request).await.unwrap().into_inner();
    let mut out = Vec::new();
    loop {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message()).await;
        let event = next.unwrap().unwrap().unwrap();
        let alerts = event.alerts.iter().map(|a| (a.kind.clone(), a.pledge_id.clone())).collect();
        out.push((event.event.clone(), alerts));
        if event.sequence >= head {
            return out;
        }
    }
}

/// The alerts of the events named `event` in a feed.
fn raised_by(feed: &[(String, Vec<(String, String)>)], event: &str) -> Vec<(String, String)> {
    feed.iter().filter(|(e, _)| e == event).flat_map(|(_, alerts)| alerts.clone()).collect()
}

fn alert(kind: &str, p: &Pledge) -> (String, String) {
    (kind.to_owned(), p.id.clone())
}

#[tokio::test]
async fn the_feed_carries_each_alert_with_the_entry_that_raised_it_and_a_restart_replays_the_same() {
    let server = TestServer::start().await;
    let bank_a = server.token("bank-a", TokenRole::Bank, BANK_A, "").await;
    let bank_b = server.token("bank-b", TokenRole::Bank, BANK_B, "").await;
    let office_zj = server.token("office-zj", TokenRole::Office, "", "330000").await;
    let book = Box::pin(book(&server, &bank_a)).await;
    // Last, an entry every watcher sees, so each feed ends at the head.
    let programme = Programme {
        name: "杭州市知识产权质押融资风险补偿".to_owned(),
        region_code: "330100".to_owned(),
        budget_per_year: "100000000".to_owned(),
        tiers: vec![Tier { loan_up_to: "30000000".to_owned(), fund_share_percent: "40".to_owned() }],
        valid_from: before(10),
        valid_to: after(800),
        ..Default::default()
    };
    let create = CreateProgrammeRequest { request_id: request_id(), programme: Some(programme) };
    risk_as(&server, &server.admin_token).await.create_programme(create).await.unwrap();

    let a = feed(&server, &bank_a).await;
    assert_eq!(raised_by(&a, "PLEDGE_REGISTERED"), [alert("RIGHT_EXPIRES_NEAR_TERM", &book.expiry)]);
    assert_eq!(raised_by(&a, "VALUATION_RECORDED"), [alert("LOAN_TO_VALUE_ABOVE_POLICY", &book.ltv)]);
    assert_eq!(raised_by(&a, "RIGHT_RECORDED"), [alert("NEWLY_AT_RISK", &book.at_risk)]);
    // A default recorded 100 days after it happened is unresolved beyond 90 days at once; the one
    // of 80 days is not yet.
    assert_eq!(raised_by(&a, "DEFAULT_RECORDED"), [alert("DEFAULT_UNRESOLVED", &book.defaulted)]);
    assert_eq!(raised_by(&a, "CLAIM_FILED"), [alert("CLAIM_UNDECIDED", &book.claimed)]);
    assert!(a.iter().any(|(e, _)| e == "ALERT_POLICY_SET"), "a bank sees its own policy set");
    // Bank B sees its own registration's alert only; an office of Zhejiang sees the public right
    // record without Guangdong's alert on it.
    let b = feed(&server, &bank_b).await;
    assert_eq!(raised_by(&b, "PLEDGE_REGISTERED"), [alert("RIGHT_EXPIRES_NEAR_TERM", &book.bank_b)]);
    assert!(b.iter().all(|(e, _)| e != "ALERT_POLICY_SET"), "not another bank's policy");
    let zj = feed(&server, &office_zj).await;
    assert!(zj.iter().any(|(e, _)| e == "RIGHT_RECORDED"));
    let zj_alerts: Vec<_> = zj.iter().flat_map(|(_, alerts)| alerts.clone()).collect();
    assert_eq!(zj_alerts, [alert("RIGHT_EXPIRES_NEAR_TERM", &book.bank_b)]);
    let admin_feed = feed(&server, &server.admin_token).await;
    assert_eq!(admin_feed.iter().map(|(_, a)| a.len()).sum::<usize>(), 6);

    // A rebuild from the journal gives the same watched pledges, policies and raised alerts.
    let report = journal_as(&server, &server.admin_token).await.verify_journal(VerifyJournalRequest {}).await;
    let report = report.unwrap().into_inner();
    assert!(report.ok, "{:?}", report.divergence);
    let listed = all_alerts(&server, &server.admin_token, ListAlertsRequest::default()).await;
    let admin_token = server.admin_token.clone();
    let temp = server.stop().await.unwrap();
    let mut server = TestServer::start_in(&temp.path().join("data")).await;
    server.admin_token = admin_token;
    assert_eq!(all_alerts(&server, &server.admin_token, ListAlertsRequest::default()).await, listed);
    assert_eq!(feed(&server, &bank_a).await, a);
    server.stop().await;
}

//! One principal's writes and errors against another's book (issue 10, findings 4 and 5): what an
//! office may import, who names a bank in exposure, what refusals reveal, whose request ids collide,
//! and that no pledgee grouping is cut short.

use crate::credit_lines::line;
use crate::helpers::*;
use ipledger::proto::*;
use tonic::Code;

/// Tokens of the principals these tests play: two banks, a province office, a county office inside
/// it, and an office of another province.
struct Cast {
    bank_a: String,
    bank_b: String,
    office_zj: String,
    office_binjiang: String,
    office_js: String,
}

async fn cast(server: &TestServer) -> Cast {
    Cast {
        bank_a: server.token("bank-a", TokenRole::Bank, BANK_A, "").await,
        bank_b: server.token("bank-b", TokenRole::Bank, BANK_B, "").await,
        office_zj: server.token("office-zj", TokenRole::Office, "", "330000").await,
        office_binjiang: server.token("office-binjiang", TokenRole::Office, "", "330108").await,
        office_js: server.token("office-js", TokenRole::Office, "", "320000").await,
    }
}

/// Imports one record as `token` and returns the summary's (registered, rejection reason, message).
async fn import_one(server: &TestServer, token: &str, request: RegisterPledgeRequest) -> (u64, String, String) {
    let mut client = server.pledges_as(Bearer::new(token)).await;
    let summary = client.import_pledges(tokio_stream::iter([request])).await.unwrap().into_inner();
    let rejection = summary.rejections.first();
    (
        summary.registered,
        rejection.map(|r| r.reason.clone()).unwrap_or_default(),
        rejection.map(|r| r.message.clone()).unwrap_or_default(),
    )
}

/// A pledge in `county` to `pledgee` (named `name`), with a fresh pledgor and right.
fn pledge_to(county: &str, amount: &str, pledgee: &str, name: &str) -> Pledge {
    let mut p = pledge(county, amount);
    p.pledgee = Some(party(name, pledgee));
    p
}

fn pledgee_row_name(rows: &[ExposureRow], code: &str) -> Option<String> {
    rows.iter().find(|r| r.key == code).map(|r| r.name.clone())
}

#[tokio::test]
async fn only_a_bank_or_an_admin_names_the_bank() {
    let server = TestServer::start().await;
    let cast = cast(&server).await;
    let mut as_a = server.pledges_as(Bearer::new(&cast.bank_a)).await;
    as_a.register_pledge(register(recent(pledge_to("330108", "10", BANK_A, "Bank A")))).await.unwrap();
    // An office imports (its right) a pledge to bank A under another name, and one to bank B,
    // which never wrote itself.
    let renamed = pledge_to("330106", "20", BANK_A, "Renamed by an office");
    assert_eq!(import_one(&server, &cast.office_zj, register(renamed)).await.0, 1);
    let named = pledge_to("330106", "30", BANK_B, "Named by an office");
    assert_eq!(import_one(&server, &cast.office_zj, register(named)).await.0, 1);

    let mut exposure = server.exposure().await;
    for (region, as_of) in [("", ""), ("330000", ""), ("330100", ""), ("", "2020-01-01"), ("330000", "2020-01-01")] {
        let request = GetExposureRequest {
            region_code: region.into(),
            group_by: ExposureGroupBy::Pledgee as i32,
            as_of: as_of.into(),
        };
        let rows = exposure.get_exposure(request).await.unwrap().into_inner().rows;
        assert_eq!(pledgee_row_name(&rows, BANK_A).as_deref(), Some("Bank A"), "{region:?} as of {as_of:?}");
        assert_eq!(pledgee_row_name(&rows, BANK_B).as_deref(), Some(BANK_B), "{region:?} as of {as_of:?}");
    }
    let statistics = GetStatisticsRequest {
        from: "2019-01-01".into(),
        to: "2019-12-31".into(),
        group_by: ExposureGroupBy::Pledgee as i32,
        ..Default::default()
    };
    let rows = exposure.get_statistics(statistics.clone()).await.unwrap().into_inner().rows;
    let mut names: Vec<(&str, &str)> = rows.iter().map(|r| (r.key.as_str(), r.name.as_str())).collect();
    names.sort_unstable();
    assert_eq!(names, [(BANK_A, "Bank A"), (BANK_B, BANK_B)]);

    // The bank itself (or an admin) may rename it, in every view at once.
    let mut admin = server.pledges().await;
    admin.register_pledge(register(pledge_to("320106", "1", BANK_B, "Bank B"))).await.unwrap();
    let request = GetExposureRequest { group_by: ExposureGroupBy::Pledgee as i32, ..Default::default() };
    let rows = exposure.get_exposure(request).await.unwrap().into_inner().rows;
    assert_eq!(pledgee_row_name(&rows, BANK_B).as_deref(), Some("Bank B"));
    let rows = exposure.get_statistics(statistics).await.unwrap().into_inner().rows;
    assert_eq!(rows.iter().find(|r| r.key == BANK_B).map(|r| r.name.as_str()), Some("Bank B"));
    // The directory is derived state: a replay of the journal rebuilds it byte for byte.
    let mut journal = ipledger::proto::journal_service_client::JournalServiceClient::with_interceptor(
        server.channel().await,
        Bearer::new(&server.admin_token),
    );
    let report = journal.verify_journal(VerifyJournalRequest {}).await.unwrap().into_inner();
    assert!(report.ok && report.divergence.is_none(), "{report:?}");
    server.stop().await;
}

/// Today's date in China (UTC+8), `days` later.
fn china_day(days: i64) -> String {
    let now = chrono::Utc::now() + chrono::Duration::hours(8) + chrono::Duration::days(days);
    now.date_naive().to_string()
}

#[tokio::test]
async fn imports_are_dated_no_later_than_today_in_china() {
    let server = TestServer::start().await;
    let cast = cast(&server).await;
    let dated = |on: &str| {
        let mut p = pledge("330108", "10");
        p.registered_on = on.into();
        p.debt_term_start = on.into();
        p.debt_term_end = "2038-12-31".into();
        register(p)
    };
    let (registered, reason, _) = import_one(&server, &cast.office_binjiang, dated(&china_day(2))).await;
    assert_eq!((registered, reason.as_str()), (0, "INVALID_FIELDS"), "a registration dated after today");
    let mut client = server.pledges_as(Bearer::new(&cast.office_binjiang)).await;
    let summary = client.import_pledges(tokio_stream::iter([dated(&china_day(2))])).await.unwrap().into_inner();
    assert_eq!(summary.rejections[0].field_violations[0].field, "pledge.registeredOn");
    assert_eq!(import_one(&server, &cast.office_binjiang, dated(&china_day(-1))).await.0, 1, "yesterday");
    assert_eq!(import_one(&server, &cast.bank_a, dated(&china_day(3))).await.1, "INVALID_FIELDS", "a bank too");
    server.stop().await;
}

#[tokio::test]
async fn offices_draw_only_on_lines_they_can_read() {
    let server = TestServer::start().await;
    let cast = cast(&server).await;
    // A line of the whole province: the province office may draw on it, the county office (which
    // cannot read it) learns nothing of it.
    let province_line =
        server.credit_lines().await.create_credit_line(line("330000", "100", BANK_A)).await.unwrap().into_inner();
    let on_line = || {
        let mut p = pledge("330108", "10");
        p.credit_line_id = province_line.id.clone();
        register(p)
    };
    let (registered, reason, message) = import_one(&server, &cast.office_binjiang, on_line()).await;
    assert_eq!((registered, reason.as_str()), (0, "CREDIT_LINE_NOT_FOUND"));
    assert!(!message.contains("330000"), "{message}");
    assert_eq!(import_one(&server, &cast.office_zj, on_line()).await.0, 1);
    let line = server
        .credit_lines()
        .await
        .get_credit_line(GetCreditLineRequest { id: province_line.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(line.drawn, "10.00");
    server.stop().await;
}

/// Bank A's pledge with a given registration number: what it sent and what it got.
async fn held_by_bank_a(server: &TestServer, cast: &Cast) -> (Pledge, Pledge) {
    let mut held = recent(pledge("330108", "10"));
    held.registration_number = "Y2022980000123".into();
    let mut as_a = server.pledges_as(Bearer::new(&cast.bank_a)).await;
    let got = as_a.register_pledge(register(held.clone())).await.unwrap().into_inner();
    (held, got)
}

#[tokio::test]
async fn a_pledged_right_names_its_pledge_only_to_who_may_read_it() {
    let server = TestServer::start().await;
    let cast = cast(&server).await;
    let mut as_a = server.pledges_as(Bearer::new(&cast.bank_a)).await;
    let mut as_b = server.pledges_as(Bearer::new(&cast.bank_b)).await;
    let (held, a_pledge) = held_by_bank_a(&server, &cast).await;
    let right = held.rights[0].number.clone();

    // Bank B pledges the same right: it is named (B sent it), A's pledge is not.
    let mut same_right = recent(pledge_to("330108", "10", BANK_B, "Bank B"));
    same_right.rights = held.rights.clone();
    let status = as_b.register_pledge(register(same_right.clone())).await.unwrap_err();
    assert_eq!(failure(status.clone()).1, "RIGHT_ALREADY_PLEDGED");
    assert_eq!(metadata(&status, "rightNumber"), Some(right.clone()));
    assert_eq!(metadata(&status, "pledgeId"), None);
    assert!(!status.message().contains(&a_pledge.id), "{}", status.message());
    // Bank A, who may read its pledge, is told which one holds the right.
    let mut again = held.clone();
    again.registration_number = String::new();
    let status = as_a.register_pledge(register(again)).await.unwrap_err();
    assert_eq!(metadata(&status, "pledgeId"), Some(a_pledge.id.clone()));
    // An office of another province, through an import.
    let mut js = pledge("320106", "10");
    js.rights = held.rights.clone();
    let (_, reason, message) = import_one(&server, &cast.office_js, register(js)).await;
    assert_eq!(reason, "RIGHT_ALREADY_PLEDGED");
    assert!(!message.contains(&a_pledge.id), "{message}");
    server.stop().await;
}

#[tokio::test]
async fn a_taken_registration_number_names_its_pledge_only_to_who_may_read_it() {
    let server = TestServer::start().await;
    let cast = cast(&server).await;
    let mut as_a = server.pledges_as(Bearer::new(&cast.bank_a)).await;
    let mut as_b = server.pledges_as(Bearer::new(&cast.bank_b)).await;
    let (held, a_pledge) = held_by_bank_a(&server, &cast).await;
    let mut mine = recent(pledge("330108", "10"));
    mine.registration_number = held.registration_number.clone();
    let status = as_a.register_pledge(register(mine)).await.unwrap_err();
    assert_eq!(metadata(&status, "pledgeId"), Some(a_pledge.id.clone()));
    let mut same_number = recent(pledge_to("330108", "10", BANK_B, "Bank B"));
    same_number.registration_number = held.registration_number.clone();
    let status = as_b.register_pledge(register(same_number)).await.unwrap_err();
    assert_eq!(failure(status.clone()).1, "REGISTRATION_NUMBER_EXISTS");
    assert_eq!(metadata(&status, "pledgeId"), None);
    assert!(!status.message().contains(&a_pledge.id), "{}", status.message());
    server.stop().await;
}

#[tokio::test]
async fn a_line_the_caller_may_not_read_answers_as_a_missing_one() {
    let server = TestServer::start().await;
    let cast = cast(&server).await;
    let mut as_a = server.pledges_as(Bearer::new(&cast.bank_a)).await;
    let mut as_b = server.pledges_as(Bearer::new(&cast.bank_b)).await;
    // In force until well after today: bank A's registration on it is recent.
    let mut request = line("330100", "100", BANK_A);
    request.credit_line.as_mut().unwrap().valid_to = "2099-12-31".into();
    let a_line = server.credit_lines().await.create_credit_line(request).await.unwrap();
    let a_line = a_line.into_inner().id;
    let missing = uuid::Uuid::new_v4().to_string();
    for line_id in [a_line.clone(), missing] {
        let mut p = recent(pledge_to("330108", "10", BANK_B, "Bank B"));
        p.credit_line_id = line_id.clone();
        let status = as_b.register_pledge(register(p)).await.unwrap_err();
        assert_eq!(failure(status.clone()).1, "CREDIT_LINE_NOT_FOUND", "bank B on {line_id}");
        assert_eq!(metadata(&status, "bankCreditCode"), None);
        let mut p = pledge("320106", "10");
        p.credit_line_id = line_id.clone();
        let (_, reason, message) = import_one(&server, &cast.office_js, register(p)).await;
        assert_eq!(reason, "CREDIT_LINE_NOT_FOUND", "office-js on {line_id}");
        assert!(!message.contains("330100"), "{message}");
    }
    // Those who may read the line still get its details.
    let mut p = recent(pledge("330108", "200"));
    p.credit_line_id = a_line.clone();
    let status = as_a.register_pledge(register(p)).await.unwrap_err();
    assert_eq!(failure(status.clone()).1, "CREDIT_LINE_EXHAUSTED");
    assert_eq!(metadata(&status, "available").as_deref(), Some("100.00"));
    let mut p = pledge_to("330106", "10", BANK_B, "Bank B");
    p.credit_line_id = a_line;
    let (_, reason, _) = import_one(&server, &cast.office_zj, register(p)).await;
    assert_eq!(reason, "CREDIT_LINE_BANK_MISMATCH");
    server.stop().await;
}

#[tokio::test]
async fn request_ids_belong_to_their_principal() {
    let server = TestServer::start().await;
    let cast = cast(&server).await;
    let mut as_a = server.pledges_as(Bearer::new(&cast.bank_a)).await;
    let mut as_b = server.pledges_as(Bearer::new(&cast.bank_b)).await;
    // Bank B takes the id bank A is going to use first.
    let id = request_id();
    let b_request =
        RegisterPledgeRequest { request_id: id.clone(), pledge: Some(recent(pledge_to("330108", "1", BANK_B, "B"))) };
    let b_pledge = as_b.register_pledge(b_request.clone()).await.unwrap().into_inner();
    let a_request = RegisterPledgeRequest { request_id: id.clone(), pledge: Some(recent(pledge("330108", "2"))) };
    let a_pledge = as_a.register_pledge(a_request.clone()).await.unwrap().into_inner();
    assert_ne!(a_pledge.id, b_pledge.id);
    assert_eq!(a_pledge.secured_amount, "2.00");
    // Retries answer each principal with its own write; a different request under one's own id
    // is still refused.
    assert_eq!(as_a.register_pledge(a_request).await.unwrap().into_inner().id, a_pledge.id);
    assert_eq!(as_b.register_pledge(b_request).await.unwrap().into_inner().id, b_pledge.id);
    let other =
        RegisterPledgeRequest { request_id: id.clone(), pledge: Some(recent(pledge_to("330108", "3", BANK_B, "B"))) };
    let status = as_b.register_pledge(other).await.unwrap_err();
    assert_eq!((status.code(), failure(status).1.as_str()), (Code::AlreadyExists, "REQUEST_ID_REUSED"));
    // An office importing under the same id registers its own record.
    let office = RegisterPledgeRequest { request_id: id, pledge: Some(pledge("330106", "4")) };
    assert_eq!(import_one(&server, &cast.office_zj, office).await.0, 1);
    server.stop().await;
}

/// More pledgees than an exposure answer lists, all sorting before bank A: A's larger book is
/// still listed first, and the answer says how many rows it left out.
#[tokio::test]
async fn no_pledgee_grouping_is_cut_short() {
    const PLEDGEES: u64 = 10_001;
    let server = TestServer::start().await;
    let records: Vec<RegisterPledgeRequest> = (0..PLEDGEES)
        .map(|i| {
            let code = credit_code(1_000_000 + i);
            assert!(code.as_str() < BANK_A);
            register(pledge_to("330108", "1", &code, "Fake"))
        })
        .collect();
    let summary = server.pledges().await.import_pledges(tokio_stream::iter(records)).await.unwrap().into_inner();
    assert_eq!(summary.registered, PLEDGEES);
    server.pledges().await.register_pledge(register(pledge("330106", "1000000"))).await.unwrap();
    let mut exposure = server.exposure().await;
    for as_of in ["", "2020-01-01"] {
        let request =
            GetExposureRequest { group_by: ExposureGroupBy::Pledgee as i32, as_of: as_of.into(), ..Default::default() };
        let answer = exposure.get_exposure(request).await.unwrap().into_inner();
        assert_eq!(answer.rows[0].key, BANK_A, "as of {as_of:?}");
        assert_eq!(answer.rows[0].secured_amount, "1000000.00");
        assert_eq!(answer.rows.len() as u64 + answer.rows_omitted, PLEDGEES + 1, "as of {as_of:?}");
        assert!(answer.rows_omitted > 0);
    }
    server.stop().await;
}

/// The public register (LookupRight): a pledged right shows its registration, date and parties to
/// every principal, and nothing of the book (the answer has no field for an amount, a credit line
/// or an id); a released or unknown right shows as not pledged.
#[tokio::test]
async fn the_public_register_shows_a_pledged_right_to_everyone_and_nothing_of_the_book() {
    let server = TestServer::start().await;
    let cast = cast(&server).await;
    let given = recent(pledge("330106", "1234567.89"));
    let asked = given.rights[0].number.clone();
    let mut bank_a = server.pledges_as(Bearer::new(&cast.bank_a)).await;
    let registered = bank_a.register_pledge(register(given)).await.unwrap().into_inner();
    let lookup =
        |number: &str, kind: RightKind| LookupRightRequest { right_number: number.into(), right_kind: kind as i32 };
    let shown = LookupRightResponse {
        right_kind: RightKind::InventionPatent as i32,
        right_number: registered.rights[0].number.clone(),
        pledged: true,
        registration_number: registered.registration_number.clone(),
        registered_on: registered.registered_on.clone(),
        pledgor: registered.pledgor.clone(),
        pledgee: registered.pledgee.clone(),
        co_pledgors: registered.co_pledgors.clone(),
    };
    // Another bank, an office of another province, the pledgee and the admin: the same answer,
    // whichever spelling of the number they give.
    for token in [&cast.bank_b, &cast.office_js, &cast.bank_a, &server.admin_token] {
        let mut client = server.pledges_as(Bearer::new(token)).await;
        for request in
            [lookup(&asked, RightKind::Unspecified), lookup(&registered.rights[0].number, RightKind::InventionPatent)]
        {
            assert_eq!(client.lookup_right(request).await.unwrap().into_inner(), shown);
        }
    }
    // Released: free to be pledged again, and the register says nothing more of it.
    bank_a.release_pledge(release(registered.id.clone(), &china_day(0))).await.unwrap();
    let mut bank_b = server.pledges_as(Bearer::new(&cast.bank_b)).await;
    let free = bank_b.lookup_right(lookup(&asked, RightKind::Unspecified)).await.unwrap().into_inner();
    let not_pledged = LookupRightResponse {
        right_kind: shown.right_kind,
        right_number: shown.right_number.clone(),
        ..Default::default()
    };
    assert_eq!(free, not_pledged);
    // A right the ledger never saw, too.
    let unknown = invention_patent(unique());
    let answer = bank_b.lookup_right(lookup(&unknown, RightKind::Unspecified)).await.unwrap().into_inner();
    assert!(!answer.pledged && answer.registration_number.is_empty() && answer.pledgee.is_none());
    // Malformed: the field is named; no token: refused.
    let status = bank_b.lookup_right(lookup("ZL2019101234", RightKind::InventionPatent)).await.unwrap_err();
    assert_eq!(failure(status), (Code::InvalidArgument, "INVALID_FIELDS".to_owned(), vec!["rightNumber".to_owned()]));
    let status = bank_b.lookup_right(lookup("", RightKind::Unspecified)).await.unwrap_err();
    assert_eq!(failure(status).2, vec!["rightNumber".to_owned()]);
    let mut anonymous = server.pledges_as(Bearer::none()).await;
    let status = anonymous.lookup_right(lookup(&asked, RightKind::Unspecified)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

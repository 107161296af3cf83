//! Access control: every role and scope against every RPC. Reads return exactly what the scope
//! covers, everything else is PERMISSION_DENIED; bad credentials are UNAUTHENTICATED; every
//! accepted write names its principal.

use crate::credit_lines::line;
use crate::helpers::*;
use ipledger::proto::*;
use std::collections::BTreeSet;
use tonic::Code;

/// The fixed book: four pledges with amounts 1, 2, 4 and 8, so every sum names its set.
struct Book {
    /// (id, pledgee, county, amount)
    pledges: Vec<(String, &'static str, &'static str, u64)>,
    /// (id, bank, region)
    lines: Vec<(String, &'static str, &'static str)>,
}

#[derive(Clone)]
struct Who {
    name: &'static str,
    token: String,
    /// Which pledge (pledgee, county) and line (bank, region) it may read.
    scope: Scope,
}

#[derive(Clone, Copy, Debug)]
enum Scope {
    Admin,
    Bank(&'static str),
    Office(&'static str),
}

fn within(region: &str, code: &str) -> bool {
    let prefix = if region.ends_with("0000") {
        &region[..2]
    } else if region.ends_with("00") {
        &region[..4]
    } else {
        region
    };
    code.starts_with(prefix)
}

impl Scope {
    fn reads_pledge(self, pledgee: &str, county: &str) -> bool {
        match self {
            Scope::Admin => true,
            Scope::Bank(code) => code == pledgee,
            Scope::Office(region) => within(region, county),
        }
    }

    fn reads_line(self, bank: &str, region: &str) -> bool {
        match self {
            Scope::Admin => true,
            Scope::Bank(code) => code == bank,
            Scope::Office(scope) => within(scope, region),
        }
    }
}

async fn setup(server: &TestServer) -> (Book, Vec<Who>) {
    let mut pledges = server.pledges().await;
    let mut book = Book { pledges: Vec::new(), lines: Vec::new() };
    for (pledgee, county, amount) in
        [(BANK_A, "330108", 1), (BANK_A, "320106", 2), (BANK_B, "330106", 4), (BANK_B, "330205", 8)]
    {
        let mut p = pledge(county, &amount.to_string());
        p.pledgee = Some(party("Bank", pledgee));
        let got = pledges.register_pledge(register(p)).await.unwrap().into_inner();
        assert_eq!(got.created_by, "admin");
        book.pledges.push((got.id, pledgee, county, amount));
    }
    let mut lines = server.credit_lines().await;
    for (bank, region) in [(BANK_A, "330100"), (BANK_B, "330000"), (BANK_A, "320000")] {
        // In force from 2019 until well after today: the banks' registrations are recent.
        let mut request = line(region, "100", bank);
        request.credit_line.as_mut().unwrap().valid_to = "2099-12-31".into();
        let got = lines.create_credit_line(request).await.unwrap().into_inner();
        book.lines.push((got.id, bank, region));
    }
    let mut who = vec![Who { name: "admin", token: server.admin_token.clone(), scope: Scope::Admin }];
    for (name, scope) in [
        ("bank-a", Scope::Bank(BANK_A)),
        ("bank-b", Scope::Bank(BANK_B)),
        ("office-zj", Scope::Office("330000")),
        ("office-hz", Scope::Office("330100")),
        ("office-binjiang", Scope::Office("330108")),
        ("office-js", Scope::Office("320000")),
    ] {
        let token = match scope {
            Scope::Bank(code) => server.token(name, TokenRole::Bank, code, "").await,
            Scope::Office(region) => server.token(name, TokenRole::Office, "", region).await,
            Scope::Admin => unreachable!(),
        };
        who.push(Who { name, token, scope });
    }
    (book, who)
}

fn code(result: Result<impl Sized, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

fn code_ref<T>(result: &Result<T, tonic::Status>) -> Code {
    result.as_ref().map_or_else(|s| s.code(), |_| Code::Ok)
}

fn allowed(yes: bool) -> Code {
    if yes { Code::Ok } else { Code::PermissionDenied }
}

async fn list_pledge_ids(
    server: &TestServer,
    who: &Who,
    mut request: ListPledgesRequest,
) -> Result<BTreeSet<String>, Code> {
    let mut client = server.pledges_as(Bearer::new(&who.token)).await;
    let mut ids = BTreeSet::new();
    loop {
        let page = client.list_pledges(request.clone()).await.map_err(|s| s.code())?.into_inner();
        ids.extend(page.pledges.into_iter().map(|p| p.id));
        if page.next_page_token.is_empty() {
            return Ok(ids);
        }
        request.page_token = page.next_page_token;
    }
}

#[tokio::test]
async fn reads_stay_inside_every_scope() {
    let server = TestServer::start().await;
    let (book, who) = setup(&server).await;
    for w in &who {
        let mut pledges = server.pledges_as(Bearer::new(&w.token)).await;
        let mut lines = server.credit_lines_as(Bearer::new(&w.token)).await;
        for (id, pledgee, county, _) in &book.pledges {
            let got = code(pledges.get_pledge(GetPledgeRequest { id: id.clone() }).await);
            assert_eq!(got, allowed(w.scope.reads_pledge(pledgee, county)), "{} GetPledge {county} {pledgee}", w.name);
        }
        for (id, bank, region) in &book.lines {
            let got = code(lines.get_credit_line(GetCreditLineRequest { id: id.clone() }).await);
            assert_eq!(got, allowed(w.scope.reads_line(bank, region)), "{} GetCreditLine {region} {bank}", w.name);
        }
        // An id that does not exist: only an admin learns that.
        let missing = uuid::Uuid::new_v4().to_string();
        let expected = if matches!(w.scope, Scope::Admin) { Code::NotFound } else { Code::PermissionDenied };
        assert_eq!(code(pledges.get_pledge(GetPledgeRequest { id: missing.clone() }).await), expected, "{}", w.name);
        assert_eq!(code(lines.get_credit_line(GetCreditLineRequest { id: missing }).await), expected, "{}", w.name);

        // Listings, with every filter, page by page: exactly the visible part of what matches.
        let visible = |f: &dyn Fn(&str, &str) -> bool| -> BTreeSet<String> {
            book.pledges
                .iter()
                .filter(|(_, pledgee, county, _)| w.scope.reads_pledge(pledgee, county) && f(pledgee, county))
                .map(|(id, ..)| id.clone())
                .collect()
        };
        let all = list_pledge_ids(&server, w, ListPledgesRequest { page_size: 1, ..Default::default() }).await;
        assert_eq!(all, Ok(visible(&|_, _| true)), "{} lists", w.name);
        for region in ["330000", "330100", "330108", "320000"] {
            let request = ListPledgesRequest { region_code: region.into(), page_size: 1, ..Default::default() };
            let got = list_pledge_ids(&server, w, request).await;
            let expected = match w.scope {
                Scope::Office(scope) if !within(scope, region) => Err(Code::PermissionDenied),
                _ => Ok(visible(&|_, county| within(region, county))),
            };
            assert_eq!(got, expected, "{} lists region {region}", w.name);
        }
        for bank in [BANK_A, BANK_B] {
            let request = ListPledgesRequest { pledgee_credit_code: bank.into(), ..Default::default() };
            let got = list_pledge_ids(&server, w, request).await;
            let expected = match w.scope {
                Scope::Bank(own) if own != bank => Err(Code::PermissionDenied),
                _ => Ok(visible(&|pledgee, _| pledgee == bank)),
            };
            assert_eq!(got, expected, "{} lists pledgee {bank}", w.name);
        }
        // A page token from a wider listing does not widen this one.
        let admin_page = server
            .pledges()
            .await
            .list_pledges(ListPledgesRequest { page_size: 1, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        let replay = ListPledgesRequest { page_size: 1, page_token: admin_page.next_page_token, ..Default::default() };
        let got = code(pledges.list_pledges(replay).await);
        let expected = if matches!(w.scope, Scope::Admin) { Code::Ok } else { Code::InvalidArgument };
        assert_eq!(got, expected, "{} replays an admin page token", w.name);

        let lines_listed: BTreeSet<String> = lines
            .list_credit_lines(ListCreditLinesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .credit_lines
            .into_iter()
            .map(|l| l.id)
            .collect();
        let expected: BTreeSet<String> =
            book.lines.iter().filter(|(_, b, r)| w.scope.reads_line(b, r)).map(|(id, ..)| id.clone()).collect();
        assert_eq!(lines_listed, expected, "{} lists credit lines", w.name);
        let other_bank = ListCreditLinesRequest { bank_credit_code: BANK_B.into(), ..Default::default() };
        let expected = if matches!(w.scope, Scope::Bank(BANK_A)) { Code::PermissionDenied } else { Code::Ok };
        assert_eq!(code(lines.list_credit_lines(other_bank).await), expected, "{} lists bank B's lines", w.name);
    }
    server.stop().await;
}

#[tokio::test]
async fn exposure_covers_exactly_the_scope() {
    let server = TestServer::start().await;
    let (book, who) = setup(&server).await;
    let groupings = [
        ExposureGroupBy::Unspecified,
        ExposureGroupBy::ChildRegion,
        ExposureGroupBy::Pledgee,
        ExposureGroupBy::RightKind,
    ];
    for w in &who {
        let mut exposure = server.exposure_as(Bearer::new(&w.token)).await;
        for region in ["", "330000", "330100", "330108", "320000", "440000"] {
            for group_by in groupings {
                let request =
                    GetExposureRequest { region_code: region.into(), group_by: group_by as i32, ..Default::default() };
                let result = exposure.get_exposure(request).await;
                let effective = match (w.scope, region) {
                    (Scope::Office(scope), "") => scope,
                    (Scope::Office(scope), r) if !within(scope, r) => {
                        assert_eq!(code(result), Code::PermissionDenied, "{} exposure {region}", w.name);
                        continue;
                    }
                    (_, r) => r,
                };
                let e =
                    result.unwrap_or_else(|s| panic!("{} exposure {region:?} {group_by:?}: {s}", w.name)).into_inner();
                assert_eq!(e.region_code, effective);
                let expected: u64 = book
                    .pledges
                    .iter()
                    .filter(|(_, pledgee, county, _)| {
                        w.scope.reads_pledge(pledgee, county) && (effective.is_empty() || within(effective, county))
                    })
                    .map(|(.., amount)| amount)
                    .sum();
                let total = e.total.clone().unwrap();
                assert_eq!(
                    total.secured_amount,
                    format!("{expected}.00"),
                    "{} exposure {region:?} {group_by:?}",
                    w.name
                );
                if group_by == ExposureGroupBy::Pledgee {
                    let sum: u64 = e.rows.iter().map(|r| r.secured_amount.parse::<f64>().unwrap() as u64).sum();
                    assert_eq!(sum, expected, "{} pledgee rows {region:?}", w.name);
                    if let Scope::Bank(own) = w.scope {
                        assert!(e.rows.iter().all(|r| r.key == own), "{} sees another bank: {:?}", w.name, e.rows);
                    }
                }
                if group_by == ExposureGroupBy::ChildRegion && effective.len() == 6 && !effective.ends_with("00") {
                    assert!(e.rows.is_empty());
                } else if group_by == ExposureGroupBy::ChildRegion {
                    let sum: u64 = e.rows.iter().map(|r| r.secured_amount.parse::<f64>().unwrap() as u64).sum();
                    assert_eq!(sum, expected, "{} child rows {region:?}", w.name);
                }
                if group_by == ExposureGroupBy::RightKind {
                    let patents = e.rows.iter().find(|r| r.key == "INVENTION_PATENT").unwrap();
                    assert_eq!(patents.secured_amount, format!("{expected}.00"), "{} kind rows {region:?}", w.name);
                }
                // A bank's credit figures are its own lines only.
                if let Scope::Bank(own) = w.scope {
                    let limit: u64 = book
                        .lines
                        .iter()
                        .filter(|(_, bank, r)| *bank == own && (effective.is_empty() || within(effective, r)))
                        .count() as u64
                        * 100;
                    assert_eq!(total.credit_limit, format!("{limit}.00"), "{} credit {region:?}", w.name);
                }
            }
        }
    }
    server.stop().await;
}

/// `p` dated as `scope` may date it: a bank's registrations within 30 days before today, an
/// office's and the admin's backfill of 2019 as they are.
fn as_written_by(scope: &Scope, p: Pledge) -> Pledge {
    if matches!(scope, Scope::Bank(_)) { recent(p) } else { p }
}

#[tokio::test]
async fn writes_stay_inside_every_scope_and_name_their_principal() {
    let server = TestServer::start().await;
    let (book, who) = setup(&server).await;
    let by_name = |name: &str| who.iter().find(|w| w.name == name).unwrap().clone();
    for w in &who {
        let mut pledges = server.pledges_as(Bearer::new(&w.token)).await;
        for (bank, county) in [(BANK_A, "330108"), (BANK_B, "320106")] {
            let mut p = as_written_by(&w.scope, pledge(county, "1"));
            p.pledgee = Some(party("Bank", bank));
            let got = pledges.register_pledge(register(p.clone())).await;
            let may = match w.scope {
                Scope::Admin => true,
                Scope::Bank(own) => own == bank,
                Scope::Office(_) => false,
            };
            assert_eq!(code_ref(&got), allowed(may), "{} registers for {bank} in {county}", w.name);
            if let Ok(p) = got {
                assert_eq!(p.into_inner().created_by, w.name);
            }
            // Import: offices inside their region too; refusals are per record.
            p.rights = vec![patent_right(&invention_patent(unique()))];
            let summary = pledges.import_pledges(tokio_stream::iter([register(p)])).await.unwrap().into_inner();
            let may = match w.scope {
                Scope::Admin => true,
                Scope::Bank(own) => own == bank,
                Scope::Office(region) => within(region, county),
            };
            assert_eq!(summary.registered, u64::from(may), "{} imports for {bank} in {county}", w.name);
            if !may {
                assert_eq!(summary.rejections[0].reason, "PERMISSION_DENIED");
            }
        }
        // Drawing on a credit line: only on a line the writer may read; one it may not read
        // answers as a missing line.
        let (line_id, line_bank, line_region) = &book.lines[0];
        let mut p = as_written_by(&w.scope, pledge("330108", "1"));
        p.pledgee = Some(party("Bank", line_bank));
        p.credit_line_id = line_id.clone();
        let summary = pledges.import_pledges(tokio_stream::iter([register(p)])).await.unwrap().into_inner();
        let expected = match w.scope {
            Scope::Bank(own) if own != *line_bank => "PERMISSION_DENIED",
            Scope::Office(region) if !within(region, "330108") => "PERMISSION_DENIED",
            scope if !scope.reads_line(line_bank, line_region) => "CREDIT_LINE_NOT_FOUND",
            _ => "",
        };
        let got = summary.rejections.first().map(|r| r.reason.as_str()).unwrap_or_default();
        assert_eq!(got, expected, "{} imports on a line of {line_bank} in {line_region}", w.name);
        assert_eq!(summary.registered, u64::from(expected.is_empty()));
        let mut lines = server.credit_lines_as(Bearer::new(&w.token)).await;
        for region in ["330100", "320000"] {
            let got = lines.create_credit_line(line(region, "5", BANK_A)).await;
            let may = match w.scope {
                Scope::Admin => true,
                Scope::Bank(_) => false,
                Scope::Office(scope) => within(scope, region),
            };
            assert_eq!(code_ref(&got), allowed(may), "{} creates a line in {region}", w.name);
            if let Ok(l) = got {
                assert_eq!(l.into_inner().created_by, w.name);
            }
        }
        let mut admin = server.admin_as(Bearer::new(&w.token)).await;
        let may = matches!(w.scope, Scope::Admin);
        assert_eq!(
            code(admin.list_tokens(ListTokensRequest::default()).await),
            allowed(may),
            "{} lists tokens",
            w.name
        );
        let create =
            CreateTokenRequest { name: format!("x-{}", w.name), role: TokenRole::Admin as i32, ..Default::default() };
        assert_eq!(code(admin.create_token(create).await), allowed(may), "{} creates a token", w.name);
        let revoke = RevokeTokenRequest { name: "office-js".into() };
        if !may {
            assert_eq!(code(admin.revoke_token(revoke).await), Code::PermissionDenied, "{} revokes", w.name);
        }
    }
    // Change and release: the pledgee bank (or an admin), nobody else.
    let bank_a = by_name("bank-a");
    for w in &who {
        let mut pledges = server.pledges_as(Bearer::new(&w.token)).await;
        for (id, pledgee, ..) in &book.pledges {
            let change = ChangePledgeRequest {
                request_id: request_id(),
                id: id.clone(),
                debt_term_end: format!("2022-06-{:02}", 1 + unique() % 28),
                reason: "x".into(),
                effective_on: "2019-12-01".into(),
                ..Default::default()
            };
            let got = pledges.change_pledge(change).await;
            let may = match w.scope {
                Scope::Admin => true,
                Scope::Bank(own) => own == *pledgee,
                Scope::Office(_) => false,
            };
            assert_eq!(code_ref(&got), allowed(may), "{} changes a pledge of {pledgee}", w.name);
            if let Ok(p) = got {
                assert_eq!(p.into_inner().changes.last().unwrap().changed_by, w.name);
            }
        }
        let missing = ChangePledgeRequest {
            request_id: request_id(),
            id: uuid::Uuid::new_v4().to_string(),
            secured_amount: "1".into(),
            reason: "x".into(),
            ..Default::default()
        };
        let expected = if matches!(w.scope, Scope::Admin) { Code::NotFound } else { Code::PermissionDenied };
        assert_eq!(code(pledges.change_pledge(missing).await), expected, "{}", w.name);
    }
    let mut as_b = server.pledges_as(Bearer::new(&by_name("bank-b").token)).await;
    let (a_pledge, ..) = &book.pledges[0];
    assert_eq!(code(as_b.release_pledge(release(a_pledge.clone(), "2020-01-01")).await), Code::PermissionDenied);
    let mut as_a = server.pledges_as(Bearer::new(&bank_a.token)).await;
    let released = as_a.release_pledge(release(a_pledge.clone(), "2020-01-01")).await.unwrap().into_inner();
    assert_eq!(released.released_by, "bank-a");
    server.stop().await;
}

#[tokio::test]
async fn bad_credentials_are_unauthenticated_everywhere() {
    let server = TestServer::start().await;
    let bank = server.token("bank-a", TokenRole::Bank, BANK_A, "").await;
    let forged = format!("ipl_{}", "A".repeat(43));
    for (what, bearer) in [
        ("missing", Bearer::none()),
        ("not bearer", Bearer::raw(&format!("Basic {}", server.admin_token))),
        ("malformed", Bearer::raw("Bearer not-a-token")),
        ("unknown", Bearer::new(&forged)),
    ] {
        check_unauthenticated(&server, what, bearer).await;
    }
    // A revoked token stops working as soon as the revocation returns.
    let mut pledges = server.pledges_as(Bearer::new(&bank)).await;
    pledges.list_pledges(ListPledgesRequest::default()).await.unwrap();
    let revoked =
        server.admin().await.revoke_token(RevokeTokenRequest { name: "bank-a".into() }).await.unwrap().into_inner();
    assert!(revoked.revoke_time.is_some());
    check_unauthenticated(&server, "revoked", Bearer::new(&bank)).await;
    let listed = server.admin().await.list_tokens(ListTokensRequest::default()).await.unwrap().into_inner();
    let names: Vec<&str> = listed.tokens.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["admin", "bank-a"]);
    // Names are unique.
    let again = CreateTokenRequest {
        name: "bank-a".into(),
        role: TokenRole::Bank as i32,
        credit_code: BANK_A.into(),
        ..Default::default()
    };
    assert_eq!(failure(server.admin().await.create_token(again).await.unwrap_err()).1, "PRINCIPAL_EXISTS");
    server.stop().await;
}

async fn check_unauthenticated(server: &TestServer, what: &str, bearer: Bearer) {
    let id = uuid::Uuid::new_v4().to_string();
    let mut p = server.pledges_as(bearer.clone()).await;
    let mut l = server.credit_lines_as(bearer.clone()).await;
    let mut e = server.exposure_as(bearer.clone()).await;
    let mut a = server.admin_as(bearer.clone()).await;
    let results = [
        ("RegisterPledge", code(p.register_pledge(register(pledge("330108", "1"))).await)),
        ("ImportPledges", code(p.import_pledges(tokio_stream::iter([register(pledge("330108", "1"))])).await)),
        ("GetPledge", code(p.get_pledge(GetPledgeRequest { id: id.clone() }).await)),
        ("ListPledges", code(p.list_pledges(ListPledgesRequest::default()).await)),
        ("ChangePledge", code(p.change_pledge(ChangePledgeRequest { id: id.clone(), ..Default::default() }).await)),
        ("ReleasePledge", code(p.release_pledge(release(id.clone(), "2020-01-01")).await)),
        ("CreateCreditLine", code(l.create_credit_line(line("330100", "1", BANK_A)).await)),
        ("GetCreditLine", code(l.get_credit_line(GetCreditLineRequest { id: id.clone() }).await)),
        ("ListCreditLines", code(l.list_credit_lines(ListCreditLinesRequest::default()).await)),
        ("GetExposure", code(e.get_exposure(GetExposureRequest::default()).await)),
        ("CreateToken", code(a.create_token(CreateTokenRequest::default()).await)),
        ("ListTokens", code(a.list_tokens(ListTokensRequest::default()).await)),
        ("RevokeToken", code(a.revoke_token(RevokeTokenRequest::default()).await)),
    ];
    for (method, got) in results {
        assert_eq!(got, Code::Unauthenticated, "{what} token on {method}");
    }
    let mut reflection = tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::with_interceptor(
        server.channel().await,
        bearer,
    );
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    // Reflection shows only the published schema: it answers whatever the credentials (issue 10).
    assert!(reflection.server_reflection_info(tokio_stream::iter([request])).await.is_ok(), "{what} on reflection");
}

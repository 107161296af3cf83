//! Registration, validation, the one-active-pledge-per-right rule, idempotency, change, release
//! and listing.

use crate::helpers::*;
use ipledger::proto::*;
use tonic::Code;

#[tokio::test]
async fn register_returns_the_recorded_pledge() {
    let server = TestServer::start().await;
    let mut client = server.pledges().await;
    let mut p = pledge("330108", "15000000");
    let n = unique();
    let digits = &invention_patent(n)[2..];
    // A spaced written form is stored in canonical form.
    p.rights[0].number = format!("ZL {} {} {}", &digits[..4], &digits[4..5], &digits[5..]);
    let got = client.register_pledge(register(p.clone())).await.unwrap().into_inner();
    assert!(uuid::Uuid::parse_str(&got.id).is_ok());
    assert_eq!(got.status, PledgeStatus::Active as i32);
    assert_eq!(got.secured_amount, "15000000.00");
    assert_eq!(got.registration_number, format!("IPL-2019-{:09}", 1));
    assert_eq!(got.rights[0].number, invention_patent(n));
    assert_eq!(got.county_code, "330108");
    assert_eq!(got.pledgor, p.pledgor);
    assert_eq!(got.version, 1);
    let fetched = client.get_pledge(GetPledgeRequest { id: got.id.clone() }).await.unwrap().into_inner();
    assert_eq!(fetched, got);
    let second = client.register_pledge(register(pledge("330108", "1"))).await.unwrap().into_inner();
    assert_eq!(second.registration_number, format!("IPL-2019-{:09}", 2));
    let mut given = pledge("330108", "1");
    given.registration_number = "Y2022980000123".to_owned();
    let third = client.register_pledge(register(given.clone())).await.unwrap().into_inner();
    assert_eq!(third.registration_number, "Y2022980000123");
    given.rights = pledge("330108", "1").rights;
    let err = client.register_pledge(register(given)).await.unwrap_err();
    assert_eq!(failure(err).1, "REGISTRATION_NUMBER_EXISTS");
    server.stop().await;
}

/// Breaks one thing in a valid request.
type Mutation = Box<dyn Fn(&mut RegisterPledgeRequest)>;

/// One malformed field per case: the call fails with INVALID_ARGUMENT naming exactly that field.
#[tokio::test]
async fn malformed_requests_name_their_fields() {
    let server = TestServer::start().await;
    let mut client = server.pledges().await;
    let cases: Vec<(&str, Mutation, &[&str])> = vec![
        ("no request id", Box::new(|r| r.request_id.clear()), &["requestId"]),
        ("request id not a uuid", Box::new(|r| r.request_id = "abc".into()), &["requestId"]),
        ("no pledge", Box::new(|r| r.pledge = None), &["pledge"]),
        ("zero amount", Box::new(|r| pl(r).secured_amount = "0.00".into()), &["pledge.securedAmount"]),
        ("negative amount", Box::new(|r| pl(r).secured_amount = "-5".into()), &["pledge.securedAmount"]),
        ("three decimals", Box::new(|r| pl(r).secured_amount = "1.005".into()), &["pledge.securedAmount"]),
        ("float syntax", Box::new(|r| pl(r).secured_amount = "1e6".into()), &["pledge.securedAmount"]),
        ("unknown county", Box::new(|r| pl(r).county_code = "330199".into()), &["pledge.countyCode"]),
        ("city as county", Box::new(|r| pl(r).county_code = "330100".into()), &["pledge.countyCode"]),
        ("province as county", Box::new(|r| pl(r).county_code = "330000".into()), &["pledge.countyCode"]),
        (
            "bad credit code",
            Box::new(|r| pl(r).pledgor.as_mut().unwrap().credit_code = "91330100716105852G".into()),
            &["pledge.pledgor.creditCode"],
        ),
        (
            "blank pledgee name",
            Box::new(|r| pl(r).pledgee.as_mut().unwrap().name = " ".into()),
            &["pledge.pledgee.name"],
        ),
        ("no pledgee", Box::new(|r| pl(r).pledgee = None), &["pledge.pledgee"]),
        (
            "pledgee is pledgor",
            Box::new(|r| {
                let p = pl(r);
                p.pledgee = p.pledgor.clone();
            }),
            &["pledge.pledgee.creditCode"],
        ),
        ("bad date", Box::new(|r| pl(r).registered_on = "2019-02-30".into()), &["pledge.registeredOn"]),
        ("term reversed", Box::new(|r| pl(r).debt_term_end = "2019-01-01".into()), &["pledge.debtTermEnd"]),
        ("no rights", Box::new(|r| pl(r).rights.clear()), &["pledge.rights"]),
        (
            "duplicate rights",
            Box::new(|r| {
                let p = pl(r);
                let dup = p.rights[0].clone();
                p.rights.push(dup);
            }),
            &["pledge.rights[1].number"],
        ),
        (
            "patent check digit",
            Box::new(|r| pl(r).rights[0].number = "ZL202310123456.7".into()),
            &["pledge.rights[0].number"],
        ),
        (
            "patent kind mismatch",
            Box::new(|r| pl(r).rights[0].kind = RightKind::UtilityModel as i32),
            &["pledge.rights[0].number"],
        ),
        ("unspecified kind", Box::new(|r| pl(r).rights[0].kind = 0), &["pledge.rights[0].kind"]),
        (
            "trademark letters",
            Box::new(|r| {
                let p = pl(r);
                p.rights[0].kind = RightKind::Trademark as i32;
                p.rights[0].number = "TM12".into();
            }),
            &["pledge.rights[0].number"],
        ),
        ("credit line not a uuid", Box::new(|r| pl(r).credit_line_id = "x".into()), &["pledge.creditLineId"]),
        (
            "reserved registration number",
            Box::new(|r| pl(r).registration_number = "IPL-2019-000000001".into()),
            &["pledge.registrationNumber"],
        ),
        (
            "too many rights",
            Box::new(|r| {
                let p = pl(r);
                p.rights = (0..501).map(|_| patent_right(&invention_patent(unique()))).collect();
            }),
            &["pledge.rights"],
        ),
        (
            "two problems at once",
            Box::new(|r| {
                let p = pl(r);
                p.county_code = "1".into();
                p.secured_amount = "x".into();
            }),
            &["pledge.countyCode", "pledge.securedAmount"],
        ),
    ];
    for (name, mutate, fields) in cases {
        let mut request = register(pledge("330108", "100.00"));
        mutate(&mut request);
        let status = client.register_pledge(request).await.expect_err(name);
        let (code, reason, got) = failure(status);
        assert_eq!(code, Code::InvalidArgument, "{name}");
        assert_eq!(reason, "INVALID_FIELDS", "{name}");
        assert_eq!(got, fields.iter().map(|f| f.to_string()).collect::<Vec<_>>(), "{name}");
    }
    server.stop().await;
}

fn pl(r: &mut RegisterPledgeRequest) -> &mut Pledge {
    r.pledge.as_mut().unwrap()
}

#[tokio::test]
async fn debt_term_must_end_before_every_right_expires() {
    let server = TestServer::start().await;
    let mut client = server.pledges().await;
    let mut p = pledge("330108", "100");
    p.rights[0].expires_on = "2022-05-30".into();
    let (code, reason, fields) = failure(client.register_pledge(register(p)).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (Code::InvalidArgument, "TERM_EXCEEDS_RIGHT_EXPIRY"));
    assert_eq!(fields, ["pledge.rights[0].expiresOn"]);
    // A change of the term that would outlive a right is refused by the pledge's state.
    let ok = client.register_pledge(register(pledge("330108", "100"))).await.unwrap().into_inner();
    let change = ChangePledgeRequest {
        request_id: request_id(),
        id: ok.id,
        debt_term_end: "2040-01-01".into(),
        reason: "extension".into(),
        ..Default::default()
    };
    let (code, reason, _) = failure(client.change_pledge(change).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (Code::FailedPrecondition, "TERM_EXCEEDS_RIGHT_EXPIRY"));
    server.stop().await;
}

#[tokio::test]
async fn a_right_is_in_one_active_pledge_at_most() {
    let server = TestServer::start().await;
    let mut client = server.pledges().await;
    let first = client.register_pledge(register(pledge("330108", "100"))).await.unwrap().into_inner();
    // The same patent written another way, pledged by the same enterprise to another bank.
    let mut again = pledge("320106", "50");
    again.pledgee = Some(party("Bank B", BANK_B));
    again.rights = vec![patent_right(&first.rights[0].number[2..]), patent_right(&invention_patent(unique()))];
    let status = client.register_pledge(register(again.clone())).await.unwrap_err();
    assert_eq!(metadata(&status, "pledgeId").as_deref(), Some(first.id.as_str()));
    assert_eq!(metadata(&status, "rightNumber").as_deref(), Some(first.rights[0].number.as_str()));
    let (code, reason, _) = failure(status);
    assert_eq!((code, reason.as_str()), (Code::FailedPrecondition, "RIGHT_ALREADY_PLEDGED"));
    // Nothing of the refused pledge was written: its other patent is still free.
    let mut other = pledge("330108", "1");
    other.rights = vec![again.rights[1].clone()];
    client.register_pledge(register(other)).await.unwrap();
    // After release the right is free again.
    client.release_pledge(release(first.id.clone(), "2020-01-01")).await.unwrap();
    again.rights.truncate(1);
    let second = client.register_pledge(register(again)).await.unwrap().into_inner();
    assert_ne!(second.id, first.id);
    server.stop().await;
}

#[tokio::test]
async fn racing_clients_pledge_one_patent_exactly_once() {
    let server = TestServer::start().await;
    let patent = invention_patent(unique());
    let mut tasks = Vec::new();
    for i in 0..64 {
        let mut client = server.pledges().await;
        let mut p = pledge(if i % 2 == 0 { "330108" } else { "110105" }, "1000");
        p.rights = vec![patent_right(&patent)];
        tasks.push(tokio::spawn(async move { client.register_pledge(register(p)).await }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(status) => assert_eq!(failure(status).1, "RIGHT_ALREADY_PLEDGED"),
        }
    }
    assert_eq!(won, 1);
    let mut client = server.pledges().await;
    let listed = client
        .list_pledges(ListPledgesRequest { right_number: patent, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.pledges.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn retries_are_idempotent() {
    let server = TestServer::start().await;
    let mut client = server.pledges().await;
    let request = register(pledge("330108", "100"));
    let first = client.register_pledge(request.clone()).await.unwrap().into_inner();
    let again = client.register_pledge(request.clone()).await.unwrap().into_inner();
    assert_eq!(first, again);
    // Same content in another written form is the same request.
    let mut respelled = request.clone();
    respelled.pledge.as_mut().unwrap().secured_amount = "100.00".into();
    assert_eq!(client.register_pledge(respelled).await.unwrap().into_inner(), first);
    let mut different = request.clone();
    different.pledge.as_mut().unwrap().secured_amount = "101".into();
    let (code, reason, _) = failure(client.register_pledge(different).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (Code::AlreadyExists, "REQUEST_ID_REUSED"));
    let mut exposure = server.exposure().await;
    let e = exposure
        .get_exposure(GetExposureRequest { region_code: "330108".into(), group_by: 0, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(e.total.unwrap().pledge_count, 1);
    // Releases and changes replay too, returning the original result.
    let repaid = release(first.id.clone(), "2020-01-01");
    let released = client.release_pledge(repaid.clone()).await.unwrap().into_inner();
    assert_eq!(client.release_pledge(repaid).await.unwrap().into_inner(), released);
    server.stop().await;
}

#[tokio::test]
async fn change_keeps_before_and_after_and_release_ends_the_pledge() {
    let server = TestServer::start().await;
    let mut client = server.pledges().await;
    let p = client.register_pledge(register(pledge("330108", "100"))).await.unwrap().into_inner();
    let change = ChangePledgeRequest {
        request_id: request_id(),
        id: p.id.clone(),
        secured_amount: "150.50".into(),
        debt_term_end: "2023-05-31".into(),
        reason: "top-up".into(),
        effective_on: "2020-06-01".into(),
    };
    let changed = client.change_pledge(change).await.unwrap().into_inner();
    assert_eq!(changed.secured_amount, "150.50");
    assert_eq!(changed.debt_term_end, "2023-05-31");
    assert_eq!(changed.version, 2);
    let record = &changed.changes[0];
    assert_eq!((record.secured_amount_before.as_str(), record.secured_amount_after.as_str()), ("100.00", "150.50"));
    assert_eq!(
        (record.debt_term_end_before.as_str(), record.debt_term_end_after.as_str()),
        ("2022-05-31", "2023-05-31")
    );
    assert_eq!(record.reason, "top-up");
    assert_eq!(record.effective_on, "2020-06-01");
    let nothing =
        ChangePledgeRequest { request_id: request_id(), id: p.id.clone(), reason: "none".into(), ..Default::default() };
    assert_eq!(failure(client.change_pledge(nothing).await.unwrap_err()).2, ["securedAmount"]);
    let same = ChangePledgeRequest {
        request_id: request_id(),
        id: p.id.clone(),
        secured_amount: "150.5".into(),
        reason: "same".into(),
        ..Default::default()
    };
    assert_eq!(failure(client.change_pledge(same).await.unwrap_err()).1, "NOTHING_TO_CHANGE");

    let early = release(p.id.clone(), "2019-01-01");
    assert_eq!(failure(client.release_pledge(early).await.unwrap_err()).2, ["releasedOn"]);
    let no_reason = ReleasePledgeRequest {
        request_id: request_id(),
        id: p.id.clone(),
        released_on: "2021-01-01".into(),
        reason: 0,
        note: String::new(),
    };
    assert_eq!(failure(client.release_pledge(no_reason).await.unwrap_err()).2, ["reason"]);
    let enforced = ReleasePledgeRequest {
        request_id: request_id(),
        id: p.id.clone(),
        released_on: "2021-01-01".into(),
        reason: ReleaseReason::Enforced as i32,
        note: "auction".into(),
    };
    let released = client.release_pledge(enforced).await.unwrap().into_inner();
    assert_eq!(released.status, PledgeStatus::Released as i32);
    assert_eq!(
        (released.released_on.as_str(), released.release_reason),
        ("2021-01-01", ReleaseReason::Enforced as i32)
    );
    let twice = release(p.id.clone(), "2021-01-02");
    let (code, reason, _) = failure(client.release_pledge(twice).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (Code::FailedPrecondition, "PLEDGE_ALREADY_RELEASED"));
    let after = ChangePledgeRequest {
        request_id: request_id(),
        id: p.id.clone(),
        secured_amount: "1".into(),
        reason: "late".into(),
        ..Default::default()
    };
    assert_eq!(failure(client.change_pledge(after).await.unwrap_err()).1, "PLEDGE_ALREADY_RELEASED");

    let unknown = uuid::Uuid::new_v4().to_string();
    assert_eq!(client.get_pledge(GetPledgeRequest { id: unknown.clone() }).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(client.release_pledge(release(unknown, "2021-01-01")).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(
        client.get_pledge(GetPledgeRequest { id: "nope".into() }).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    server.stop().await;
}

async fn list_all(
    client: &mut pledge_service_client::PledgeServiceClient<Authed>,
    mut request: ListPledgesRequest,
) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let page = client.list_pledges(request.clone()).await.unwrap().into_inner();
        let page_size = if request.page_size == 0 { 100 } else { request.page_size.min(1000) };
        assert!(page.pledges.len() <= page_size as usize);
        ids.extend(page.pledges.into_iter().map(|p| p.id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        request.page_token = page.next_page_token;
    }
}

#[tokio::test]
async fn listing_filters_and_pages() {
    let server = TestServer::start().await;
    let mut client = server.pledges().await;
    let mut ids_by_county: std::collections::HashMap<&str, Vec<String>> = Default::default();
    let shared_pledgor = credit_code(unique());
    let mut by_pledgor = Vec::new();
    let mut released = Vec::new();
    for (i, county) in ["330108", "330106", "330102", "320106", "440305"].iter().cycle().take(23).enumerate() {
        let mut p = pledge(county, "10");
        if i % 4 == 0 {
            p.pledgor = Some(party("Shared", &shared_pledgor));
        }
        if i % 3 == 0 {
            p.pledgee = Some(party("Bank B", BANK_B));
        }
        let got = client.register_pledge(register(p)).await.unwrap().into_inner();
        if i % 4 == 0 {
            by_pledgor.push(got.id.clone());
        }
        if i % 5 == 0 {
            client.release_pledge(release(got.id.clone(), "2020-01-01")).await.unwrap();
            released.push(got.id.clone());
        }
        ids_by_county.entry(county).or_default().push(got.id);
    }
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let all = list_all(&mut client, ListPledgesRequest { page_size: 2, ..Default::default() }).await;
    assert_eq!(all.len(), 23);
    assert_eq!(sorted(all.clone()).len(), {
        let mut d = all.clone();
        d.sort();
        d.dedup();
        d.len()
    });
    let zhejiang: Vec<String> = ["330108", "330106", "330102"].iter().flat_map(|c| ids_by_county[c].clone()).collect();
    let got =
        list_all(&mut client, ListPledgesRequest { page_size: 3, region_code: "330000".into(), ..Default::default() })
            .await;
    assert_eq!(sorted(got), sorted(zhejiang.clone()));
    let got =
        list_all(&mut client, ListPledgesRequest { page_size: 3, region_code: "330100".into(), ..Default::default() })
            .await;
    assert_eq!(sorted(got), sorted(zhejiang));
    let got = list_all(&mut client, ListPledgesRequest { region_code: "330108".into(), ..Default::default() }).await;
    assert_eq!(sorted(got), sorted(ids_by_county["330108"].clone()));
    let got = list_all(
        &mut client,
        ListPledgesRequest { page_size: 1, pledgor_credit_code: shared_pledgor.clone(), ..Default::default() },
    )
    .await;
    assert_eq!(sorted(got), sorted(by_pledgor));
    let got =
        list_all(&mut client, ListPledgesRequest { status: PledgeStatus::Released as i32, ..Default::default() }).await;
    assert_eq!(sorted(got), sorted(released.clone()));
    let bank_b = list_all(
        &mut client,
        ListPledgesRequest { page_size: 2, pledgee_credit_code: BANK_B.into(), ..Default::default() },
    )
    .await;
    assert_eq!(bank_b.len(), 8);
    let active_b = list_all(
        &mut client,
        ListPledgesRequest {
            pledgee_credit_code: BANK_B.into(),
            status: PledgeStatus::Active as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(active_b.len(), bank_b.iter().filter(|id| !released.contains(id)).count());
    // A page size above the maximum is lowered, not refused.
    let big = client
        .list_pledges(ListPledgesRequest { page_size: 1_000_000, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(big.pledges.len(), 23);
    // A token only continues the listing it came from.
    let first =
        client.list_pledges(ListPledgesRequest { page_size: 1, ..Default::default() }).await.unwrap().into_inner();
    let misuse = ListPledgesRequest {
        page_size: 1,
        page_token: first.next_page_token,
        region_code: "330000".into(),
        ..Default::default()
    };
    assert_eq!(failure(client.list_pledges(misuse).await.unwrap_err()).2, ["pageToken"]);
    let negative = ListPledgesRequest { page_size: -1, ..Default::default() };
    assert_eq!(failure(client.list_pledges(negative).await.unwrap_err()).2, ["pageSize"]);
    server.stop().await;
}

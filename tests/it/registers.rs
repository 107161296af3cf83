//! The registers as they really are (issue 25): co-owned rights pledged by every owner, and the
//! states before a lapse (an invalidation under examination, a fee overdue) that refuse or flag a
//! pledge, through the real server and again after a restart (the journal replayed).

use crate::helpers::*;
use ipledger::proto::*;
use tonic::Code;

/// What an office records of `number`, in force from 2019-01-01 (before the helpers'
/// registrations of 2019-06-05), held by `holder` with the co-holders given.
fn recorded(number: &str, holder: &str, co_holders: &[(&str, &str)], holder_share: &str) -> RecordRightRequest {
    RecordRightRequest {
        request_id: request_id(),
        right_kind: RightKind::InventionPatent as i32,
        right_number: number.to_owned(),
        state: Some(RightState {
            holder: Some(party("Holder", holder)),
            holder_share_percent: holder_share.to_owned(),
            co_holders: co_holders
                .iter()
                .map(|(code, share)| CoHolder {
                    name: "Co-owner".to_owned(),
                    credit_code: (*code).to_owned(),
                    share_percent: (*share).to_owned(),
                })
                .collect(),
            status: RightStatus::InForce as i32,
            status_since: "2019-01-01".to_owned(),
            ..Default::default()
        }),
    }
}

fn reasons(p: &Pledge) -> Vec<&str> {
    p.risk_flags.iter().map(|f| f.reason.as_str()).collect()
}

async fn get(server: &TestServer, id: &str) -> Pledge {
    server.pledges().await.get_pledge(GetPledgeRequest { id: id.to_owned() }).await.unwrap().into_inner()
}

#[tokio::test]
async fn a_co_owned_right_is_pledged_by_every_owner_and_counted_once_as_its_debtor() {
    let server = TestServer::start().await;
    let admin = server.admin_token.clone();
    let mut office = risk_as(&server, &admin).await;
    let mut bank = server.pledges().await;
    let p = pledge("330108", "3000000");
    let (debtor, number) = (p.pledgor.clone().unwrap().credit_code, p.rights[0].number.clone());
    let co_owner = credit_code(unique());
    let right = office.record_right(recorded(&number, &debtor, &[(&co_owner, "40")], "60")).await.unwrap();
    let state = right.into_inner().state.unwrap();
    assert_eq!((state.holder_share_percent.as_str(), state.co_holders[0].share_percent.as_str()), ("60", "40"));

    // The debtor alone: refused, naming the co-owner missing.
    let status = bank.register_pledge(register(p.clone())).await.unwrap_err();
    assert_eq!(failure(status.clone()), (Code::FailedPrecondition, "CO_OWNER_MISSING".to_owned(), vec![]));
    assert_eq!(metadata(&status, "missingCoOwners"), Some(co_owner.clone()));
    // The debtor named again as a co-pledgor, and the pledgee as one: malformed.
    let mut twice = p.clone();
    twice.co_pledgors = vec![party("Again", &debtor), party("Bank", BANK_A)];
    let status = bank.register_pledge(register(twice)).await.unwrap_err();
    assert_eq!(
        failure(status).2,
        ["pledge.coPledgors[0].creditCode", "pledge.coPledgors[1].creditCode"].map(str::to_owned).to_vec()
    );
    // Both owners: registered, the co-pledgor shown on the pledge and on the public lookup.
    let mut both = p.clone();
    both.co_pledgors = vec![party("Co-owner", &co_owner)];
    let registered = bank.register_pledge(register(both)).await.unwrap().into_inner();
    assert_eq!(registered.co_pledgors, vec![party("Co-owner", &co_owner)]);
    assert!(!registered.at_risk);
    let lookup = LookupRightRequest { right_kind: RightKind::InventionPatent as i32, right_number: number.clone() };
    let shown = bank.lookup_right(lookup).await.unwrap().into_inner();
    assert_eq!(shown.co_pledgors, vec![party("Co-owner", &co_owner)]);

    // Another pledge by the same debtor (a right it owns alone): the enterprises count the
    // debtor once, and never the co-owner (statistics and exposure alike).
    let mut second = pledge("330108", "1000000");
    second.pledgor = p.pledgor.clone();
    bank.register_pledge(register(second)).await.unwrap();
    let exposure = GetExposureRequest { region_code: "330108".to_owned(), ..Default::default() };
    let row = server.exposure().await.get_exposure(exposure).await.unwrap().into_inner().total.unwrap();
    assert_eq!((row.pledge_count, row.enterprise_count), (2, 1));
    let stats = GetStatisticsRequest {
        region_code: "330108".to_owned(),
        from: "2019-01-01".to_owned(),
        to: "2019-12-31".to_owned(),
        ..Default::default()
    };
    let stats = server.exposure().await.get_statistics(stats).await.unwrap().into_inner();
    let total = stats.total.unwrap();
    assert_eq!((total.registrations, total.enterprises), (2, 1));

    // The co-owner's share passes to a third company: the register no longer matches the
    // pledgors, and the pledge is flagged, now and after a restart (the journal replayed).
    let third = credit_code(unique());
    let mut transferred = recorded(&number, &debtor, &[(&third, "40")], "60");
    transferred.state.as_mut().unwrap().status_since = "2024-03-01".to_owned();
    office.record_right(transferred).await.unwrap();
    assert_eq!(reasons(&get(&server, &registered.id).await), ["NOT_HOLDER"]);
    let temp = server.stop().await.unwrap();
    let server = TestServer::start_in(&temp.path().join("data")).await;
    assert_eq!(reasons(&get(&server, &registered.id).await), ["NOT_HOLDER"]);
}

#[tokio::test]
async fn an_invalidation_under_examination_and_an_overdue_fee_refuse_or_flag_a_pledge() {
    let server = TestServer::start().await;
    let admin = server.admin_token.clone();
    let mut office = risk_as(&server, &admin).await;
    let mut bank = server.pledges().await;

    // An invalidation request filed before the registration: refused unless both parties accept it.
    let p = pledge("330108", "2000000");
    let (debtor, number) = (p.pledgor.clone().unwrap().credit_code, p.rights[0].number.clone());
    let mut pending = recorded(&number, &debtor, &[], "");
    pending.state.as_mut().unwrap().invalidation =
        Some(InvalidationRequest { request_number: "4W112345".to_owned(), filed_on: "2019-03-01".to_owned() });
    let right = office.record_right(pending).await.unwrap().into_inner();
    assert_eq!(right.risk, "INVALIDATION_PENDING");
    let status = bank.register_pledge(register(p.clone())).await.unwrap_err();
    assert_eq!(failure(status.clone()).1, "RIGHT_INVALIDATION_PENDING");
    assert_eq!(metadata(&status, "requestNumber").as_deref(), Some("4W112345"));
    let accepted = Pledge { invalidation_pending_accepted: true, ..p };
    let registered = bank.register_pledge(register(accepted)).await.unwrap().into_inner();
    assert!(registered.invalidation_pending_accepted);
    assert_eq!(reasons(&registered), ["INVALIDATION_PENDING"]);

    // A fee overdue at the registration: refused, whatever the parties accept.
    let p = pledge("330108", "1000000");
    let (debtor, number) = (p.pledgor.clone().unwrap().credit_code, p.rights[0].number.clone());
    let mut overdue = recorded(&number, &debtor, &[], "");
    overdue.state.as_mut().unwrap().fee_overdue =
        Some(FeeOverdue { due_on: "2019-04-30".to_owned(), grace_ends_on: "2019-10-30".to_owned() });
    assert_eq!(office.record_right(overdue).await.unwrap().into_inner().risk, "FEE_OVERDUE");
    let status = bank.register_pledge(register(Pledge { invalidation_pending_accepted: true, ..p })).await;
    assert_eq!(failure(status.unwrap_err()).1, "RIGHT_FEE_OVERDUE");

    // A pledge registered first, then its fee recorded overdue: flagged, and counted at risk from
    // the day after the due date in as-of exposure; then the lapse the grace period ends in.
    let p = pledge("330108", "500000");
    let (debtor, number) = (p.pledgor.clone().unwrap().credit_code, p.rights[0].number.clone());
    let sound = bank.register_pledge(register(p)).await.unwrap().into_inner();
    let mut overdue = recorded(&number, &debtor, &[], "");
    overdue.state.as_mut().unwrap().status_since = "2024-01-01".to_owned();
    overdue.state.as_mut().unwrap().fee_overdue =
        Some(FeeOverdue { due_on: "2024-05-31".to_owned(), grace_ends_on: "2024-11-30".to_owned() });
    office.record_right(overdue).await.unwrap();
    assert_eq!(reasons(&get(&server, &sound.id).await), ["FEE_OVERDUE"]);
    let at_risk_on = |day: &'static str| {
        let server = &server;
        async move {
            let request =
                GetExposureRequest { region_code: "330108".to_owned(), as_of: day.to_owned(), ..Default::default() };
            let row = server.exposure().await.get_exposure(request).await.unwrap().into_inner().total.unwrap();
            (row.at_risk_count, row.at_risk_amount)
        }
    };
    // On 2024-05-31 only the accepted pledge under invalidation is at risk.
    assert_eq!(at_risk_on("2024-05-31").await, (1, "2000000.00".to_owned()));
    assert_eq!(at_risk_on("2024-06-01").await, (2, "2500000.00".to_owned()));
    let mut lapsed = recorded(&number, &debtor, &[], "");
    lapsed.state.as_mut().unwrap().status = RightStatus::Lapsed as i32;
    lapsed.state.as_mut().unwrap().status_since = "2024-12-01".to_owned();
    office.record_right(lapsed).await.unwrap();
    assert_eq!(reasons(&get(&server, &sound.id).await), ["LAPSED"]);

    // Malformed: a grace period beyond six months, a fee overdue on a lapsed right, a share
    // missing; dates ahead of today refused.
    let mut bad = recorded(&number, &debtor, &[(&credit_code(unique()), "")], "50");
    bad.state.as_mut().unwrap().fee_overdue =
        Some(FeeOverdue { due_on: "2024-05-31".to_owned(), grace_ends_on: "2024-12-31".to_owned() });
    let status = office.record_right(bad).await.unwrap_err();
    assert_eq!(
        failure(status),
        (
            Code::InvalidArgument,
            "INVALID_FIELDS".to_owned(),
            ["state.holderSharePercent", "state.feeOverdue.graceEndsOn"].map(str::to_owned).to_vec()
        )
    );
    let mut ahead = recorded(&number, &debtor, &[], "");
    ahead.state.as_mut().unwrap().status_since = "2024-12-02".to_owned();
    ahead.state.as_mut().unwrap().invalidation =
        Some(InvalidationRequest { request_number: "4W1".to_owned(), filed_on: china_day(1) });
    assert_eq!(failure(office.record_right(ahead).await.unwrap_err()).2, ["state.invalidation.filedOn"]);

    // Restarted: the same flags, from the journal.
    let temp = server.stop().await.unwrap();
    let server = TestServer::start_in(&temp.path().join("data")).await;
    assert_eq!(reasons(&get(&server, &registered.id).await), ["INVALIDATION_PENDING"]);
    assert_eq!(reasons(&get(&server, &sound.id).await), ["LAPSED"]);
}

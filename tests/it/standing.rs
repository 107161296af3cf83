//! Who may say what about a right, and which dates a registration may carry (issue 21, findings
//! 1, 2 and 8), through the real server: an office records only the rights it has standing for,
//! never a state dated ahead; a state recorded in error is withdrawn by its author's authority; the
//! bound on a record never locks it; a bank cannot date a registration against the register; a
//! backfilled registration that today's record contradicts is flagged; a right's pledges are bounded.

use crate::helpers::*;
use ipledger::domain::ident::CreditCode;
use ipledger::proto::risk_service_client::RiskServiceClient;
use ipledger::proto::*;
use tonic::Code;

/// A credit code of an enterprise registered in Guangzhou (440100).
fn guangzhou_code(serial: u64) -> String {
    CreditCode::complete(&format!("91440100{serial:09}")).unwrap().as_str().to_owned()
}

/// A patent pledged in Guangzhou's Tianhe district by an enterprise registered in Guangzhou.
fn guangzhou_pledge() -> Pledge {
    let n = unique();
    Pledge {
        pledgor: Some(party(&format!("广州企业 {n}"), &guangzhou_code(n))),
        county_code: "440106".into(),
        ..pledge("440106", "800000")
    }
}

fn state(number: &str, holder: &str, status: RightStatus, since: &str) -> RecordRightRequest {
    RecordRightRequest {
        request_id: request_id(),
        right_kind: RightKind::InventionPatent as i32,
        right_number: number.to_owned(),
        state: Some(RightState {
            holder: Some(party("Holder", holder)),
            status: status as i32,
            status_since: since.to_owned(),
            ..Default::default()
        }),
    }
}

fn withdraw(number: &str, record_time: Option<prost_types::Timestamp>, note: &str) -> WithdrawRightStateRequest {
    WithdrawRightStateRequest {
        request_id: request_id(),
        right_kind: RightKind::InventionPatent as i32,
        right_number: number.to_owned(),
        record_time,
        note: note.to_owned(),
    }
}

async fn pledge_flags(server: &TestServer, id: &str) -> Vec<String> {
    let got = server.pledges().await.get_pledge(GetPledgeRequest { id: id.to_owned() }).await.unwrap().into_inner();
    got.risk_flags.into_iter().map(|f| f.reason).collect()
}

#[tokio::test]
async fn only_an_office_with_standing_records_a_right_never_ahead_and_its_authority_withdraws_it() {
    let server = TestServer::start().await;
    let zhejiang = server.token("office-zj", TokenRole::Office, "", "330000").await;
    let guangdong = server.token("office-gd", TokenRole::Office, "", "440000").await;
    let guangzhou = server.token("office-gz", TokenRole::Office, "", "440100").await;
    let p = guangzhou_pledge();
    let pledgor = p.pledgor.clone().unwrap().credit_code;
    let number = p.rights[0].number.clone();
    let registered = server.pledges().await.register_pledge(register(p)).await.unwrap().into_inner();

    // Finding 1: an office of another province has no standing for a right pledged and held in
    // Guangzhou: refused, and the pledge is not flagged.
    let mut as_zhejiang = risk_as(&server, &zhejiang).await;
    let refused = as_zhejiang.record_right(state(&number, &pledgor, RightStatus::Invalidated, "2026-01-10")).await;
    assert_eq!(refused.unwrap_err().code(), Code::PermissionDenied);
    assert!(pledge_flags(&server, &registered.id).await.is_empty());
    // Nor may it name a holder of its own province to gain standing: the record's holder counts.
    let local = credit_code(unique());
    let refused = as_zhejiang.record_right(state(&number, &local, RightStatus::InForce, "2026-01-10")).await;
    assert_eq!(refused.unwrap_err().code(), Code::PermissionDenied);

    // The province of the pledge's county has standing; no state is dated after today.
    let mut as_guangdong = risk_as(&server, &guangdong).await;
    let ahead = as_guangdong.record_right(state(&number, &pledgor, RightStatus::InForce, &china_day(1))).await;
    assert_eq!(
        failure(ahead.unwrap_err()),
        (Code::InvalidArgument, "INVALID_FIELDS".into(), vec!["state.statusSince".into()])
    );
    let mut frozen = state(&number, &pledgor, RightStatus::InForce, &china_day(0));
    frozen.state.as_mut().unwrap().freeze = Some(Freeze {
        case_number: "(2026)粤0106财保7号".into(),
        court: "广州市天河区人民法院".into(),
        from: china_day(2),
        until: String::new(),
    });
    let ahead = as_guangdong.record_right(frozen).await;
    assert_eq!(failure(ahead.unwrap_err()).2, vec!["state.freeze.from".to_owned()]);
    let invalidated = as_guangdong
        .record_right(state(&number, &pledgor, RightStatus::Invalidated, "2026-01-10"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(invalidated.risk, "INVALIDATED");
    assert_eq!(pledge_flags(&server, &registered.id).await, ["INVALIDATED"]);
    let record_time = invalidated.state.as_ref().unwrap().record_time;

    // Withdrawn by its author's authority only: not another province, not a city office below the
    // author; the author's own office may, and the admin always.
    let note = "recorded against the wrong patent";
    let refused = as_zhejiang.withdraw_right_state(withdraw(&number, record_time, note)).await;
    assert_eq!(refused.unwrap_err().code(), Code::PermissionDenied);
    let refused = risk_as(&server, &guangzhou).await.withdraw_right_state(withdraw(&number, record_time, note)).await;
    assert_eq!(refused.unwrap_err().code(), Code::PermissionDenied);
    let no_note = as_guangdong.withdraw_right_state(withdraw(&number, record_time, "")).await;
    assert_eq!(failure(no_note.unwrap_err()).2, vec!["note".to_owned()]);
    let request = withdraw(&number, record_time, note);
    let withdrawn = as_guangdong.withdraw_right_state(request.clone()).await.unwrap().into_inner();
    assert_eq!((withdrawn.state.as_ref(), withdrawn.risk.as_str()), (None, ""), "nothing else was recorded");
    let marked = &withdrawn.history[0];
    assert_eq!((marked.status(), marked.withdrawal.as_ref().unwrap().note.as_str()), (RightStatus::Invalidated, note));
    assert!(pledge_flags(&server, &registered.id).await.is_empty(), "the flag goes with the state");
    // A retry is answered as the first time; withdrawing again is nothing to change.
    assert_eq!(as_guangdong.withdraw_right_state(request).await.unwrap().into_inner(), withdrawn);
    let again = as_guangdong.withdraw_right_state(withdraw(&number, record_time, note)).await;
    assert_eq!(failure(again.unwrap_err()).1, "NOTHING_TO_CHANGE");
    let missing =
        as_guangdong.withdraw_right_state(withdraw(&number, Some(prost_types::Timestamp::default()), note)).await;
    assert_eq!(failure(missing.unwrap_err()).1, "RIGHT_STATE_NOT_FOUND");

    // The holder's office has standing too: an enterprise registered in Guangzhou.
    let recorded = risk_as(&server, &guangzhou)
        .await
        .record_right(state(&number, &pledgor, RightStatus::InForce, "2026-01-11"))
        .await;
    assert_eq!(recorded.unwrap().into_inner().risk, "");
}

#[tokio::test]
async fn the_bound_on_a_record_never_locks_it_against_the_competent_office() {
    let server = TestServer::start().await;
    let guangdong = server.token("office-gd", TokenRole::Office, "", "440000").await;
    let mut as_guangdong = risk_as(&server, &guangdong).await;
    let holder = guangzhou_code(unique());
    let number = invention_patent(unique());
    let first = chrono::NaiveDate::from_ymd_opt(2020, 1, 1).unwrap();
    let mut last = None;
    for i in 0..100 {
        let since = (first + chrono::Duration::days(i)).to_string();
        let recorded = as_guangdong.record_right(state(&number, &holder, RightStatus::InForce, &since)).await;
        last = recorded.unwrap().into_inner().state.unwrap().record_time;
    }
    let full = as_guangdong.record_right(state(&number, &holder, RightStatus::Lapsed, "2021-01-01")).await;
    assert_eq!(failure(full.unwrap_err()).1, "RIGHT_STATES_LIMIT_REACHED");
    // Withdrawing one recorded in error makes room, for the office and the admin alike.
    as_guangdong.withdraw_right_state(withdraw(&number, last, "a duplicate")).await.unwrap();
    let lapsed = as_guangdong.record_right(state(&number, &holder, RightStatus::Lapsed, "2021-01-01")).await;
    assert_eq!(lapsed.unwrap().into_inner().risk, "LAPSED");
    let mut as_admin = RiskServiceClient::with_interceptor(server.channel().await, Bearer::new(&server.admin_token));
    let lapsed = as_admin
        .get_right(GetRightRequest { right_kind: RightKind::InventionPatent as i32, right_number: number.clone() });
    let record = lapsed.await.unwrap().into_inner();
    // The withdrawn state made room: the record holds the 99 in force and the current one.
    assert_eq!(record.history.len(), 99);
    assert!(record.history.iter().all(|s| s.withdrawal.is_none()));
    let time = record.state.unwrap().record_time;
    as_admin.withdraw_right_state(withdraw(&number, time, "the lapse was not gazetted")).await.unwrap();
    let in_force = as_admin.record_right(state(&number, &holder, RightStatus::InForce, "2021-02-01")).await;
    assert_eq!(in_force.unwrap().into_inner().risk, "");
}

#[tokio::test]
async fn a_bank_cannot_date_a_registration_against_the_register_and_a_backfill_is_flagged() {
    let server = TestServer::start().await;
    let bank = server.token("bank-a", TokenRole::Bank, BANK_A, "").await;
    let office = server.token("office-zj", TokenRole::Office, "", "330000").await;
    let mut as_bank = server.pledges_as(Bearer::new(&bank)).await;
    let mut as_office_risk = risk_as(&server, &office).await;
    // The register says another enterprise holds the patent since 40 days ago.
    let mut p = pledge("330108", "600000");
    let number = p.rights[0].number.clone();
    let other = credit_code(unique());
    as_office_risk.record_right(state(&number, &other, RightStatus::InForce, &china_day(-40))).await.unwrap();

    // Finding 2: dated after the record's state, refused; dated before it (or any older day),
    // refused for a bank: its registrations are dated within 30 days before today.
    p.debt_term_start = china_day(-20);
    p.debt_term_end = china_day(300);
    p.registered_on = china_day(-10);
    let refused = as_bank.register_pledge(register(p.clone())).await.unwrap_err();
    assert_eq!(failure(refused).1, "PLEDGOR_NOT_HOLDER");
    p.debt_term_start = china_day(-60);
    p.registered_on = china_day(-41);
    let refused = as_bank.register_pledge(register(p.clone())).await.unwrap_err();
    assert_eq!(failure(refused), (Code::InvalidArgument, "INVALID_FIELDS".into(), vec!["pledge.registeredOn".into()]));
    let mut imported = as_bank.import_pledges(tokio_stream::iter([register(p.clone())])).await.unwrap().into_inner();
    assert_eq!((imported.registered, imported.rejected), (0, 1), "an import by a bank is held to the same window");
    // Nor after today.
    let mut ahead = pledge("330108", "600000");
    ahead.debt_term_start = china_day(-20);
    ahead.debt_term_end = china_day(300);
    ahead.registered_on = china_day(1);
    let refused = as_bank.register_pledge(register(ahead)).await.unwrap_err();
    assert_eq!(failure(refused).2, vec!["pledge.registeredOn".to_owned()]);

    // An office's backfill is judged by the record on its own day (none yet: accepted) and
    // flagged by today's record, which names another holder.
    let mut as_office = server.pledges_as(Bearer::new(&office)).await;
    imported = as_office.import_pledges(tokio_stream::iter([register(p)])).await.unwrap().into_inner();
    assert_eq!(imported.registered, 1, "{imported:?}");
    let listed = as_office
        .list_pledges(ListPledgesRequest { right_number: number.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let flags: Vec<_> = listed.pledges[0].risk_flags.iter().map(|f| f.reason.as_str()).collect();
    assert_eq!(flags, ["NOT_HOLDER"]);
    assert!(listed.pledges[0].at_risk);
    // The flag follows the record: the register corrected to the pledgor clears it.
    let pledgor = listed.pledges[0].pledgor.clone().unwrap().credit_code;
    as_office_risk.record_right(state(&number, &pledgor, RightStatus::InForce, &china_day(-1))).await.unwrap();
    assert!(pledge_flags(&server, &listed.pledges[0].id).await.is_empty());
}

#[tokio::test]
async fn a_right_is_part_of_a_bounded_number_of_pledges() {
    let server = TestServer::start().await;
    let mut pledges = server.pledges().await;
    let p = pledge("330108", "100000");
    for _ in 0..64 {
        let registered = pledges.register_pledge(register(p.clone())).await.unwrap().into_inner();
        pledges.release_pledge(release(registered.id, "2020-01-01")).await.unwrap();
    }
    let refused = pledges.register_pledge(register(p)).await.unwrap_err();
    assert_eq!(failure(refused).1, "RIGHT_PLEDGES_LIMIT_REACHED");
}

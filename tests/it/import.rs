//! ImportPledges: one summary for a stream of registrations; one bad record never aborts the rest.

use crate::helpers::*;
use ipledger::proto::*;

#[tokio::test]
async fn import_registers_counts_duplicates_and_rejects_with_reasons() {
    let server = TestServer::start().await;
    let mut client = server.pledges().await;
    let shared_patent = invention_patent(unique());
    let mut records = Vec::new();
    for i in 0..2000u64 {
        let mut r = register(pledge(["330108", "320106", "440305"][(i % 3) as usize], "1000.00"));
        match i {
            // Malformed: unknown county.
            7 => r.pledge.as_mut().unwrap().county_code = "999999".into(),
            // Two records of the same right: the second is refused by the state.
            10 | 11 => r.pledge.as_mut().unwrap().rights = vec![patent_right(&shared_patent)],
            _ => {}
        }
        records.push(r);
    }
    // A retried record (same request id, same content) is a duplicate, not a second pledge.
    records.push(records[5].clone());
    // The same request id with other content is refused.
    let mut reused = records[6].clone();
    reused.pledge.as_mut().unwrap().secured_amount = "1".into();
    records.push(reused);

    let summary = client.import_pledges(tokio_stream::iter(records.clone())).await.unwrap().into_inner();
    assert_eq!((summary.received, summary.registered, summary.duplicates, summary.rejected), (2002, 1998, 1, 3));
    assert_eq!(summary.rejections_max, 1000);
    let reasons: Vec<(u64, &str)> = summary.rejections.iter().map(|r| (r.index, r.reason.as_str())).collect();
    assert_eq!(reasons, [(7, "INVALID_FIELDS"), (11, "RIGHT_ALREADY_PLEDGED"), (2001, "REQUEST_ID_REUSED")]);
    assert_eq!(summary.rejections[0].field_violations[0].field, "pledge.countyCode");
    assert_eq!(summary.rejections[0].request_id, records[7].request_id);

    // Importing the same file again changes nothing.
    let again = client.import_pledges(tokio_stream::iter(records)).await.unwrap().into_inner();
    assert_eq!((again.registered, again.duplicates, again.rejected), (0, 1999, 3));
    let mut exposure = server.exposure().await;
    let total = exposure.get_exposure(GetExposureRequest::default()).await.unwrap().into_inner().total.unwrap();
    assert_eq!((total.pledge_count, total.secured_amount.as_str()), (1998, "1998000.00"));
    server.stop().await;
}

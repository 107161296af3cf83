//! Durability: a restart finds everything; `kill -9` right after acknowledgements loses none of them.

use crate::helpers::*;
use ipledger::proto::pledge_service_client::PledgeServiceClient;
use ipledger::proto::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_restart_finds_everything() {
    let server = TestServer::start().await;
    let mut client = server.pledges().await;
    let mut ids = Vec::new();
    for county in ["330108", "330106", "320106"] {
        ids.push(client.register_pledge(register(pledge(county, "12.34"))).await.unwrap().into_inner());
    }
    let mut exposure = server.exposure().await;
    let before = exposure
        .get_exposure(GetExposureRequest {
            region_code: "".into(),
            group_by: ExposureGroupBy::ChildRegion as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let dir = server.dir.clone();
    let temp = server.stop().await;

    let server = TestServer::start_in(&dir).await;
    let mut client = server.pledges().await;
    for p in &ids {
        assert_eq!(&client.get_pledge(GetPledgeRequest { id: p.id.clone() }).await.unwrap().into_inner(), p);
    }
    let mut exposure = server.exposure().await;
    let after = exposure
        .get_exposure(GetExposureRequest {
            region_code: "".into(),
            group_by: ExposureGroupBy::ChildRegion as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after, before);
    // The registration serial continues; it does not restart or jump.
    let next = client.register_pledge(register(pledge("330108", "1"))).await.unwrap().into_inner();
    assert_eq!(next.registration_number, "IPL-2019-000000004");
    // The rights stay pledged across the restart.
    let mut again = pledge("330108", "1");
    again.rights = ids[0].rights.clone();
    assert_eq!(failure(client.register_pledge(register(again)).await.unwrap_err()).1, "RIGHT_ALREADY_PLEDGED");
    server.stop().await;
    drop(temp);
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_binary(dir: &std::path::Path, port: u16) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_ipledger"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        // Checkpoints every few hundred writes: a kill lands before, during or after one.
        .env("IPLEDGER_CHECKPOINT_MIB", "1")
        .envs(crate::helpers::journal_for(dir).map(|url| ("IPLEDGER_JOURNAL", url)))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Process(child)
}

async fn connect(port: u16, dir: &std::path::Path) -> PledgeServiceClient<Authed> {
    let token = admin_token(dir).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(channel) =
            tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await
        {
            return PledgeServiceClient::with_interceptor(channel, Bearer::new(&token));
        }
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `writers` tasks, each registering up to `per_writer` pledges (county chosen by `county(writer,
/// i)`) until a call fails; every acknowledged pledge is recorded.
fn writer_swarm(
    client: &PledgeServiceClient<Authed>,
    writers: usize,
    per_writer: usize,
    county: fn(usize, usize) -> &'static str,
) -> (std::sync::Arc<std::sync::Mutex<Vec<Pledge>>>, Vec<tokio::task::JoinHandle<()>>) {
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let tasks = (0..writers)
        .map(|w| {
            let mut client = client.clone();
            let acknowledged = acknowledged.clone();
            tokio::spawn(async move {
                for i in 0..per_writer {
                    match client.register_pledge(register(pledge(county(w, i), "1.00"))).await {
                        Ok(p) => acknowledged.lock().unwrap().push(p.into_inner()),
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    (acknowledged, tasks)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn kill_9_after_acknowledgement_loses_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let port = free_port();
    let mut process = spawn_binary(&dir, port);
    let client = connect(port, &dir).await;
    // Many concurrent writers; the process is killed the moment the last one is acknowledged,
    // while others are still in flight.
    let (acknowledged, tasks) =
        writer_swarm(&client, 16, 200, |w, i| if (w + i) % 2 == 0 { "330108" } else { "440305" });
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.lock().unwrap().len() < 1000 {
        assert!(Instant::now() < deadline, "writes too slow");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    process.0.kill().unwrap(); // SIGKILL: no shutdown, no flush beyond what was acknowledged.
    process.0.wait().unwrap();
    for t in tasks {
        let _ = t.await;
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 1000);

    let port = free_port();
    let restarted = spawn_binary(&dir, port);
    let mut client = connect(port, &dir).await;
    for p in &acknowledged {
        let got = client.get_pledge(GetPledgeRequest { id: p.id.clone() }).await.unwrap().into_inner();
        assert_eq!(&got, p);
    }
    // The aggregates agree with the pledges that survived (acknowledged ones and perhaps a few
    // committed whose answer was lost with the process).
    let mut listed = 0u64;
    let mut request = ListPledgesRequest { page_size: 1000, ..Default::default() };
    loop {
        let page = client.list_pledges(request.clone()).await.unwrap().into_inner();
        listed += page.pledges.len() as u64;
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    assert!(listed >= acknowledged.len() as u64);
    let channel =
        tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await.unwrap();
    let mut exposure = ipledger::proto::exposure_service_client::ExposureServiceClient::with_interceptor(
        channel,
        Bearer::new(&admin_token(&dir).await),
    );
    let total = exposure.get_exposure(GetExposureRequest::default()).await.unwrap().into_inner().total.unwrap();
    assert_eq!(total.pledge_count, listed);
    assert_eq!(total.secured_amount, format!("{listed}.00"));
    // Derived state, rebuilt from the last checkpoint and the journal after it, equals a rebuild
    // from the journal alone.
    drop(restarted);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_ipledger"))
            .args(["verify", "--data-dir"])
            .arg(&dir)
            .envs(crate::helpers::journal_for(&dir).map(|url| ("IPLEDGER_JOURNAL", url)))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.starts_with("ok:"), "{text}{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn sigterm_finishes_in_flight_writes_then_exits() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let port = free_port();
    let mut process = spawn_binary(&dir, port);
    let client = connect(port, &dir).await;
    let (acknowledged, tasks) = writer_swarm(&client, 8, 500, |_, _| "330108");
    while acknowledged.lock().unwrap().len() < 200 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let pid = process.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::task::spawn_blocking(move || {
        let status = process.0.wait().unwrap();
        drop(process);
        status
    })
    .await
    .unwrap();
    assert!(status.success(), "graceful exit, got {status:?}");
    for t in tasks {
        t.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let port = free_port();
    let _restarted = spawn_binary(&dir, port);
    let mut client = connect(port, &dir).await;
    for p in &acknowledged {
        client.get_pledge(GetPledgeRequest { id: p.id.clone() }).await.unwrap();
    }
}

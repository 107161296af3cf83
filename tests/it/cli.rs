//! The command-line clients against a real server: `ipledger import` (JSON lines and CSV, a
//! report of rejected lines, resuming after a kill without double counting) and `ipledger
//! exposure` (a table, or JSON for scripts). Token-taking commands read the token from a file or
//! the environment, never from an argument, which every user of the machine can read.

use crate::helpers::*;
use ipledger::proto::*;
use ipledger::workload::Workload;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn cli(server: &TestServer, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ipledger"));
    command
        .args(args)
        .args(["--server", &format!("http://{}", server.addr)])
        .env("IPLEDGER_TOKEN", &server.admin_token)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    command
}

async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
}

fn json_line(p: &Pledge) -> String {
    let party = |p: &Option<Party>| {
        let p = p.as_ref().unwrap();
        serde_json::json!({"name": p.name, "creditCode": p.credit_code})
    };
    let rights: Vec<_> = p
        .rights
        .iter()
        .map(|r| {
            serde_json::json!({"kind": RightKind::try_from(r.kind).unwrap().as_str_name(), "number": r.number, "title": r.title, "expiresOn": r.expires_on})
        })
        .collect();
    serde_json::json!({"pledge": {
        "pledgor": party(&p.pledgor), "pledgee": party(&p.pledgee), "countyCode": p.county_code,
        "securedAmount": p.secured_amount, "debtTermStart": p.debt_term_start, "debtTermEnd": p.debt_term_end,
        "registeredOn": p.registered_on, "rights": rights,
    }})
    .to_string()
}

async fn total_pledges(server: &TestServer) -> u64 {
    let mut exposure = server.exposure().await;
    exposure.get_exposure(GetExposureRequest::default()).await.unwrap().into_inner().total.unwrap().pledge_count
}

fn counts(stdout: &str) -> (u64, u64, u64) {
    let last = stdout.lines().last().unwrap_or_default();
    let n: Vec<u64> =
        last.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
    assert_eq!(n.len(), 3, "{last}");
    (n[0], n[1], n[2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_reports_rejected_lines_and_resumes_after_a_kill_without_double_counting() {
    let server = TestServer::start().await;
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("history.jsonl");
    let mut w = Workload::new(11, 3);
    let mut out = std::fs::File::create(&file).unwrap();
    let records = 6000;
    for i in 1..=records {
        let line = match i {
            7 => "{not json".to_owned(),
            9 => {
                let mut p = w.pledge();
                p.county_code = "999999".into();
                json_line(&p)
            }
            _ => json_line(&w.pledge()),
        };
        writeln!(out, "{line}").unwrap();
    }
    drop(out);

    // Kill the import once some of it is acknowledged.
    let mut child =
        cli(&server, &["import", file.to_str().unwrap()]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let progress = temp.path().join("history.jsonl.progress");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = std::fs::read_to_string(&progress)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["lines_done"].as_u64())
            .unwrap_or(0);
        if done >= 2000 {
            break;
        }
        assert!(Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = total_pledges(&server).await;
    assert!(partial > 0 && partial < records - 2, "killed mid-way: {partial}");

    let output = run(cli(&server, &["import", file.to_str().unwrap()])).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("resuming after line"), "{stderr}");
    let (registered, duplicates, rejected) = counts(&stdout);
    assert_eq!(rejected, 2, "{stdout}");
    // Records committed but unacknowledged at the kill come back as duplicates: nothing twice.
    assert_eq!(registered + duplicates, records - 2, "{stdout}");
    assert!(duplicates <= 4000, "{stdout}");
    assert_eq!(total_pledges(&server).await, records - 2);
    assert!(stdout.contains("line 7: MALFORMED_RECORD"), "{stdout}");
    assert!(stdout.contains("line 9: INVALID_FIELDS: pledge.countyCode"), "{stdout}");
    assert!(!progress.exists(), "a finished import removes its checkpoint");

    // Importing the whole file again changes nothing.
    let output = run(cli(&server, &["import", file.to_str().unwrap()])).await;
    let (registered, duplicates, _) = counts(&String::from_utf8_lossy(&output.stdout));
    assert_eq!((registered, duplicates), (0, records - 2));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_reads_csv_and_exposure_prints_tables_and_json() {
    let server = TestServer::start().await;
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("history.csv");
    let p1 = invention_patent(unique());
    let p2 = invention_patent(unique());
    let rows = [
        "registrationNumber,pledgorName,pledgorCreditCode,pledgeeName,pledgeeCreditCode,countyCode,securedAmount,debtTermStart,debtTermEnd,registeredOn,rights".to_owned(),
        format!("Y2020980000001,杭州甲公司,{},银行,{BANK_A},330108,1000000.00,2020-01-01,2022-12-31,2020-01-05,INVENTION_PATENT:{p1}:2039-12-31:一种方法;TRADEMARK:12345678:2030-01-01", credit_code(unique())),
        format!("Y2020980000002,南京乙公司,{},银行,{BANK_A},320106,2500.50,2020-02-01,2022-12-31,2020-02-05,INVENTION_PATENT:{p2}:2039-12-31", credit_code(unique())),
        format!("Y2020980000003,坏公司,{},银行,{BANK_A},330108,0,2020-02-01,2022-12-31,2020-02-05,INVENTION_PATENT:{}:2039-12-31", credit_code(unique()), invention_patent(unique())),
    ];
    std::fs::write(&file, rows.join("\n")).unwrap();
    let output = run(cli(&server, &["import", file.to_str().unwrap()])).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(counts(&stdout), (2, 0, 1), "{stdout}");
    assert!(stdout.contains("line 4: INVALID_FIELDS: pledge.securedAmount"), "{stdout}");

    let output = run(cli(&server, &["exposure", "--region", "330000", "--group-by", "child-region", "--json"])).await;
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["total"]["securedAmount"], "1000000.00");
    assert_eq!(json["rows"].as_array().unwrap().len(), 11);
    let output = run(cli(&server, &["exposure", "--group-by", "right-kind"])).await;
    let table = String::from_utf8_lossy(&output.stdout);
    let total = table.lines().find(|l| l.starts_with("total")).unwrap_or_else(|| panic!("{table}"));
    assert!(total.contains("1002500.50") && total.split_whitespace().any(|c| c == "3"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("TRADEMARK")), "{table}");
    // The container health check: no token needed.
    let mut health = Command::new(env!("CARGO_BIN_EXE_ipledger"));
    health.args(["health", "--server", &format!("http://{}", server.addr)]);
    let output = run(health).await;
    assert!(output.status.success() && String::from_utf8_lossy(&output.stdout).trim() == "SERVING");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_come_from_a_file_or_the_environment_never_from_an_argument() {
    let server = TestServer::start().await;
    let address = format!("http://{}", server.addr);
    let bare = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ipledger"));
        command.args(args).args(["--server", &address]).env_remove("IPLEDGER_TOKEN").env_remove("IPLEDGER_TOKEN_FILE");
        command.env("RUST_LOG", "warn").stdin(Stdio::null());
        command
    };
    let temp = tempfile::tempdir().unwrap();
    let empty = temp.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    for args in [vec!["export"], vec!["exposure", "--json"], vec!["import", empty.to_str().unwrap()]] {
        let with_argument = [args.clone(), vec!["--token", &server.admin_token]].concat();
        let output = run(bare(&with_argument)).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains("'--token'"), "{args:?}: {stderr}");

        let output = run(bare(&args)).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains("IPLEDGER_TOKEN"), "{args:?}: {stderr}");

        let token_file = server.dir.join(ipledger::server::ADMIN_TOKEN_FILE);
        let mut command = bare(&args);
        command.arg("--token-file").arg(&token_file);
        let output = run(command).await;
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));

        let mut command = bare(&args);
        command.env("IPLEDGER_TOKEN", &server.admin_token);
        let output = run(command).await;
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    server.stop().await;
}

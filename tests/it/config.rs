//! `ipledger serve`'s configuration, through the real binary: every limit flag at 0, at 1 and
//! below the share it bounds either refuses to start (exit 2, naming the flag) or starts and
//! serves, never a panic; the other refusals at start exit 2 too; `--help` never prints a secret
//! given in the environment; a new data directory and every file the server writes into it are
//! its owner's only.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a server may take to say it serves.
const START_S_MAX: u64 = 60;

/// What `ipledger serve` did with some flags.
enum Outcome {
    /// It exited at once, with this code and these log lines.
    Refused(Option<i32>, String),
    /// It serves at this address; these were its log lines until then.
    Serving(Child, String, String),
}

fn serve(data_dir: &Path, flags: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ipledger"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(flags)
        // A small cache by default, which a flag overrides.
        .env("IPLEDGER_CACHE_MIB", "16")
        .env("IPLEDGER_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Starts `command` and reads its log until it serves or exits.
fn start(mut command: Command) -> Outcome {
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut log = String::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            log.push_str(&line);
            log.push('\n');
            let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if let Some(address) = event["fields"]["address"].as_str()
                && event["fields"]["message"].as_str().is_some_and(|m| m.starts_with("serving ipledger.v1"))
            {
                let _ = tx.send((Some(address.to_owned()), log.clone()));
            }
        }
        let _ = tx.send((None, log));
    });
    let (address, log) = rx.recv_timeout(Duration::from_secs(START_S_MAX)).expect("serve neither served nor exited");
    match address {
        Some(address) => Outcome::Serving(child, address, log),
        None => Outcome::Refused(child.wait().unwrap().code(), log),
    }
}

/// Stops a server this test started.
fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Whether the server at `address` answers the gRPC health check with SERVING.
fn health(address: &str) -> bool {
    Command::new(env!("CARGO_BIN_EXE_ipledger"))
        .args(["health", "--server", &format!("http://{address}")])
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn assert_no_panic(what: &str, log: &str) {
    assert!(!log.contains("panicked") && !log.contains("backtrace"), "{what}: a panic\n{log}");
}

/// Runs serve with `flag value`: a refusal exits 2 naming `flag`; a start serves. Returns whether
/// it started, and its log.
fn check(flag: &str, value: u64, also: &[&str]) -> (bool, String) {
    let temp = tempfile::tempdir().unwrap();
    let value = value.to_string();
    let what = format!("serve {flag} {value} {}", also.join(" "));
    let mut flags = vec![flag, value.as_str()];
    flags.extend_from_slice(also);
    match start(serve(&temp.path().join("data"), &flags)) {
        Outcome::Refused(code, log) => {
            assert_no_panic(&what, &log);
            assert_eq!(code, Some(2), "{what}: a configuration error exits 2\n{log}");
            assert!(log.contains(flag), "{what}: the refusal names {flag}\n{log}");
            (false, log)
        }
        Outcome::Serving(child, address, log) => {
            let serves = health(&address);
            stop(child);
            assert_no_panic(&what, &log);
            assert!(serves, "{what}: started but does not serve\n{log}");
            (true, log)
        }
    }
}

/// Each server bound and its per-principal share (the share's default).
const BOUNDS: &[(&str, &str, u64)] = &[
    ("--requests-max", "--principal-requests-max", 1024),
    ("--streams-max", "--principal-streams-max", 16),
    ("--watchers-max", "--principal-watchers-max", 16),
    ("--write-queue-bytes-max", "--principal-write-queue-bytes-max", 64 << 20),
];

/// Limits with no per-principal share.
const OTHER_LIMITS: &[&str] =
    &["--write-queue-max", "--call-timeout-ms", "--stream-idle-timeout-ms", "--cache-mib", "--checkpoint-mib"];

#[test]
fn every_limit_at_zero_one_or_below_its_share_is_refused_by_name_or_served_never_a_panic() {
    for &(server, principal, share) in BOUNDS {
        for flag in [server, principal] {
            let (started, log) = check(flag, 0, &[]);
            assert!(!started, "{flag} 0 is refused\n{log}");
            check(flag, 1, &[]);
        }
        // A server bound below the default share lowers the share, and says so.
        let (started, log) = check(server, share - 1, &[]);
        if started {
            assert!(log.contains(principal), "{server} {}: the log names the lowered {principal}\n{log}", share - 1);
        }
        // A share given above its server bound is a contradiction: refused naming both.
        let below = (share - 1).to_string();
        let (started, log) = check(principal, share, &[server, &below]);
        assert!(!started && log.contains(server), "{principal} above {server} is refused naming both\n{log}");
    }
    for &flag in OTHER_LIMITS {
        let (started, log) = check(flag, 0, &[]);
        assert!(!started, "{flag} 0 is refused\n{log}");
        check(flag, 1, &[]);
    }
}

#[test]
fn help_never_prints_a_secret_from_the_environment() {
    let password = "s3cret-Pa55word";
    let url = format!("postgres://ipledger:{password}@db.internal:5432/ledger");
    for command in [&["serve"][..], &["verify"], &["restore"], &["token", "create"], &["token", "list"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_ipledger"))
            .args(command)
            .arg("--help")
            .env("IPLEDGER_JOURNAL", &url)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{command:?} --help: {text}");
        assert!(text.contains("IPLEDGER_JOURNAL"), "{command:?} --help documents the variable: {text}");
        assert!(!text.contains(password), "{command:?} --help prints the journal's password: {text}");
    }
}

/// The mode bits of `path` that group and others have.
fn shared_bits(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o077
}

/// Every path under `dir`, depth first.
fn walk(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        found.push(path.clone());
        if path.is_dir() {
            walk(&path, found);
        }
    }
}

#[test]
fn a_new_data_directory_and_what_the_server_writes_there_are_the_owners_only() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("new").join("data");
    let Outcome::Serving(child, address, log) = start(serve(&dir, &[])) else { panic!("serve did not start") };
    let serves = health(&address);
    let admin_token = dir.join(ipledger::server::ADMIN_TOKEN_FILE);
    for _ in 0..(START_S_MAX * 10) {
        if std::fs::read_to_string(&admin_token).is_ok_and(|t| t.ends_with('\n')) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    let mut found = Vec::new();
    walk(&dir, &mut found);
    stop(child);
    assert!(serves, "{log}");
    assert_eq!(mode, 0o700, "the data directory is created {mode:o}");
    assert!(found.contains(&admin_token), "{found:?}");
    let shared: Vec<_> = found.iter().filter(|p| p.exists() && shared_bits(p) != 0).collect();
    assert!(shared.is_empty(), "readable by group or others: {shared:?}");
}

/// An embedding program's configuration is checked too: an error to handle, not a panic.
#[tokio::test]
async fn an_embedded_server_with_impossible_limits_answers_an_error() {
    use ipledger::server::{self, Config, Limits, ServeError};
    let temp = tempfile::tempdir().unwrap();
    let over = ipledger::grpc::limits::Quotas { calls_max: 32, ..Default::default() };
    let no_time = ipledger::grpc::Timeouts { call: Duration::ZERO, ..Default::default() };
    for (limits, named) in [
        (Limits { quotas: over, ..Limits::default() }, "calls"),
        (Limits { timeouts: no_time, ..Limits::default() }, "call timeout"),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = Config { limits, ..Config::new(temp.path().join("data")) };
        let result = server::serve(listener, config, std::future::pending()).await;
        assert!(matches!(&result, Err(ServeError::Config(why)) if why.contains(named)), "{result:?}");
    }
}

/// The other refusals at start are configuration errors too: exit 2, naming the flag to give.
#[test]
fn refusals_at_start_exit_2_naming_the_flag() {
    let cases: [(&[&str], &str); 2] = [
        (&["--listen", "0.0.0.0:0"], "--allow-plaintext"),
        (&["--listen", "127.0.0.1:0", "--metrics-listen", "0.0.0.0:0", "--allow-plaintext"], "--metrics-token-file"),
    ];
    for (flags, named) in cases {
        let temp = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_ipledger"))
            .arg("serve")
            .args(flags)
            .arg("--data-dir")
            .arg(temp.path().join("data"))
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert_no_panic(&format!("{flags:?}"), &log);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {log}");
        assert!(log.contains(named), "{flags:?} names {named}: {log}");
    }
}

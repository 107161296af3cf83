//! The high-availability layout on one machine, for trying and breaking it: 3 etcd members, 3
//! PostgreSQL 15 nodes under Patroni in strict synchronous mode, HAProxy, and 3 ipledger nodes
//! whose journal is in that PostgreSQL cluster (one writes, two follow and serve reads). It is the
//! code the HA test runs (`tests/it/ha_cluster.rs`, included here as it is), so what it starts is
//! what CI checks through every fault.
//!
//! ```sh
//! cargo build --release
//! cargo run --release --example ha_cluster                      # up until Ctrl-C
//! cargo run --release --example ha_cluster -- --for-seconds 60  # up for a minute
//! cargo run --release --example ha_cluster -- --check            # up, one write and one read, down (CI)
//! cargo run --release --example ha_cluster -- --postgres-only    # the PostgreSQL cluster alone (no ipledger node)
//! ```
//!
//! `--postgres-only` (with or without `--for-seconds N`) leaves the ipledger nodes out: a journal
//! for one's own `ipledger serve --journal URL` or `ipledger bench` (docs/operations.md).
//!
//! Everything runs on free loopback ports picked at start, from one temporary directory (every
//! process's log is there), printed once the cluster is up with example calls; Ctrl-C (or the end
//! of `--for-seconds`) stops every process and removes the directory. One machine is one failure
//! domain: production spreads the same pieces over three hosts (`deploy/ha/`).
//!
//! Needs etcd 3.4, Patroni 3, HAProxy 2.6, PostgreSQL 15 and openssl (`bash
//! tests/setup-and-test.sh` installs them), and the binary: `$IPLEDGER_BIN`, else
//! `target/release/ipledger`, else `target/debug/ipledger`. As root, PostgreSQL and Patroni run
//! as the `postgres` user.

// As in the tests: an unwrap in the harness is an assertion.
#![allow(clippy::unwrap_used)]

#[path = "../tests/support/tools.rs"]
mod tools;

// The HA test's cluster, as the test has it; its test-only helpers go unused here.
#[allow(dead_code)]
#[path = "../tests/it/ha_cluster.rs"]
mod ha_cluster;

use ha_cluster::{IpledgerBackend, PgHa};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The writer's lease of every node, as the HA test runs them.
const LEASE_MS: u64 = 3000;

fn ipledger_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("IPLEDGER_BIN") {
        return PathBuf::from(path);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    ["release", "debug"]
        .iter()
        .map(|profile| target.join(profile).join("ipledger"))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no ipledger binary: run `cargo build --release`, or set IPLEDGER_BIN"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// How long to stay up.
enum Run {
    UntilCtrlC,
    For(Duration),
    /// One registration through HAProxy's write port, then its exposure through the read port.
    Check,
}

/// How to stay up, and whether the ipledger nodes start (`--postgres-only`: they do not).
fn run_mode() -> (Run, bool) {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let postgres_only = args.iter().any(|a| a == "--postgres-only");
    args.retain(|a| a != "--postgres-only");
    let run = match args.as_slice() {
        [] => Run::UntilCtrlC,
        [flag] if flag == "--check" && !postgres_only => Run::Check,
        [flag, n] if flag == "--for-seconds" => Run::For(Duration::from_secs(n.parse().expect("a number of seconds"))),
        other => panic!("usage: ha_cluster [--postgres-only] [--for-seconds N | --check] (got {other:?})"),
    };
    (run, postgres_only)
}

/// `buf curl` of `method` at `address` with the admin token; the answer's JSON.
fn call(address: std::net::SocketAddr, token: &str, data: &str, method: &str) -> String {
    let bearer = format!("authorization: Bearer {token}");
    let output = Command::new(tools::require("buf", "@bufbuild/buf (npm)"))
        .args(["curl", "--protocol", "grpc", "--http2-prior-knowledge", "-H", &bearer, "--reflect-header", &bearer])
        .args(["-d", data, &format!("http://{address}/{method}")])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("buf curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{method}: {}{text}", String::from_utf8_lossy(&output.stderr));
    text
}

/// The check CI runs: a registration acknowledged by the writer through HAProxy, then visible in
/// the exposure a follower or the writer answers through the read port.
fn check(pg: &PgHa, token: &str) {
    let registered = call(
        pg.ipledger_write_addr(),
        token,
        "@tests/examples/register.json",
        "ipledger.v1.PledgeService/RegisterPledge",
    );
    assert!(registered.contains("\"ACTIVE\""), "registered: {registered}");
    let started = Instant::now();
    loop {
        let exposure = call(
            pg.ipledger_read_addr(),
            token,
            r#"{"regionCode": "330108"}"#,
            "ipledger.v1.ExposureService/GetExposure",
        );
        if exposure.contains("\"pledgeCount\": \"1\"") {
            println!("check: a registration through the write port, read back through the read port");
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the pledge never showed in the exposure: {exposure}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start_node(binary: &Path, dir: &Path, i: usize, port: u16, journal: &str) -> Child {
    let address = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join(format!("ipl{i}.log"))).expect("a node's log");
    Command::new(binary)
        .args(["serve", "--listen", &address, "--advertise", &address, "--data-dir"])
        .arg(dir.join(format!("ipl{i}")))
        .args(["--journal", journal, "--lease-ms", &LEASE_MS.to_string(), "--admin-token-file"])
        .arg(dir.join("admin.token"))
        .arg("--signing-key")
        .arg(dir.join("signing-key.p8"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()))
}

/// The node HAProxy routes writes to, once one answers `GET /healthz/writer`.
fn wait_for_writer(pg: &PgHa, timeout: Duration) -> Vec<String> {
    let started = Instant::now();
    loop {
        let up = pg.haproxy_servers_up("ipledger_write");
        if !up.is_empty() {
            return up;
        }
        assert!(
            started.elapsed() < timeout,
            "no ipledger node became the writer within {timeout:?}\n{}",
            pg.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The three ipledger nodes on the cluster's journal, once one of them writes; prints where they are.
fn start_nodes(pg: &PgHa, dir: &Path, ports: &[u16], started: Instant) -> Vec<Child> {
    let binary = ipledger_binary();
    // The cluster's signing key, as the deploy files make it: the nodes share it.
    let made = Command::new(tools::require("openssl", "openssl"))
        .args(["genpkey", "-algorithm", "ed25519", "-outform", "DER", "-out"])
        .arg(dir.join("signing-key.p8"))
        .status()
        .expect("openssl");
    assert!(made.success(), "openssl genpkey failed");
    let url = pg.url();
    let nodes: Vec<Child> =
        ports.iter().enumerate().map(|(i, &port)| start_node(&binary, dir, i, port, &url)).collect();
    let writer = wait_for_writer(pg, Duration::from_secs(60));
    println!("cluster up in {:.1?} (PostgreSQL leader {}, ipledger writer {writer:?})", started.elapsed(), pg.leader());
    println!("  ipledger writes (HAProxy):  {}", pg.ipledger_write_addr());
    println!("  ipledger reads (HAProxy):   {}", pg.ipledger_read_addr());
    for (i, port) in ports.iter().enumerate() {
        println!("  ipledger node ipl{i}:         127.0.0.1:{port} (pid {})", nodes[i].id());
    }
    println!("  PostgreSQL (HAProxy, rw):   {url}");
    println!("  admin token:                {}", dir.join("admin.token").display());
    println!("  logs:                       {}", dir.display());
    println!("Try: export TOKEN=$(cat {})", dir.join("admin.token").display());
    println!(
        "     buf curl --protocol grpc --http2-prior-knowledge -H \"authorization: Bearer $TOKEN\" --reflect-header \
         \"authorization: Bearer $TOKEN\" -d @tests/examples/register.json http://{}/ipledger.v1.PledgeService/RegisterPledge",
        pg.ipledger_write_addr()
    );
    println!("     kill -9 the writer's pid above: another node writes within a few seconds");
    nodes
}

fn main() {
    let (mode, postgres_only) = run_mode();
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    // Listening from the start: a Ctrl-C while the cluster comes up stops it once up, every
    // process with it, instead of killing this one and leaving them running.
    let mut interrupt = runtime
        .block_on(async { tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) })
        .expect("SIGINT");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ports: Vec<u16> = if postgres_only { Vec::new() } else { (0..3).map(|_| free_port()).collect() };
    let backends: Vec<IpledgerBackend> = ports.iter().map(|&grpc_port| IpledgerBackend { grpc_port }).collect();
    let pg = PgHa::start(&backends);
    let token = format!("ipl_{}", uuid::Uuid::new_v4().simple());
    std::fs::write(dir.path().join("admin.token"), &token).expect("the admin token");
    let mut nodes = if postgres_only {
        println!("cluster up in {:.1?} (PostgreSQL leader {}, no ipledger node)", started.elapsed(), pg.leader());
        println!("  PostgreSQL (HAProxy, rw):   {}", pg.url());
        Vec::new()
    } else {
        start_nodes(&pg, dir.path(), &ports, started)
    };
    match mode {
        Run::Check => check(&pg, &token),
        Run::For(time) => std::thread::sleep(time),
        Run::UntilCtrlC => {
            runtime.block_on(interrupt.recv());
        }
    }
    for node in &mut nodes {
        let _ = Command::new("kill").args(["-TERM", &node.id().to_string()]).status();
    }
    for node in &mut nodes {
        let _ = node.wait();
    }
    println!("stopped: every ipledger node, then the cluster (dropped)");
    drop(pg);
}

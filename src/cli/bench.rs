//! `ipledger bench`: starts a server on its own data directory, loads it with generated realistic
//! pledges over gRPC, and prints throughput and latency (p50/p99/max) for streaming import, unary
//! registration at each `--callers` level (1, 16 and 256 concurrent callers unless told otherwise),
//! and exposure queries at every region level and grouping (now and as of a date), then resident
//! memory, bytes on disk per pledge and restart-to-serving time. Every write is durable, as in
//! production.

use super::{Bearer, ClientError};
use futures::stream::{FuturesUnordered, StreamExt};
use ipledger::proto as pb;
use ipledger::proto::exposure_service_client::ExposureServiceClient;
use ipledger::proto::journal_service_client::JournalServiceClient;
use ipledger::proto::pledge_service_client::PledgeServiceClient;
use ipledger::workload::Workload;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Pledges loaded by the streaming import before the other measurements.
    #[arg(long, default_value_t = 100_000)]
    pub pledges: u64,
    /// Unary registrations per concurrency level (a tenth of them at 1 caller).
    #[arg(long, default_value_t = 20_000)]
    pub unary: u64,
    /// Concurrency levels of the unary RegisterPledge measurement, comma-separated: one run per
    /// level, in the order given (`bench/side-by-side.sh` asks for the levels it compares with
    /// pgbench's clients).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 16, 256],
          value_parser = clap::value_parser!(u64).range(1..))]
    pub callers: Vec<u64>,
    /// Exposure queries per region level, grouping and time.
    #[arg(long, default_value_t = 300)]
    pub queries: u64,
    /// Data directory of the benchmarked server (kept afterwards). If it exists (a ledger loaded
    /// by `ipledger import`, say), give `--pledges 0`: the bench then measures the start on it,
    /// exposure queries, memory and disk, and writes nothing.
    #[arg(long, default_value = "./ipledger-bench-data")]
    pub data_dir: PathBuf,
}

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, ClientError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_server(dir: &Path) -> Result<Server, ClientError> {
    let port = free_port()?;
    let child = Command::new(std::env::current_exe()?)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        // The server's own log filter, for profiling a run (default: warnings only).
        .env("RUST_LOG", std::env::var("IPLEDGER_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".to_owned()))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    Ok(Server { child, port })
}

type Client<T> = T;

async fn connect(port: u16, token: &str) -> Result<Channel, ClientError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let endpoint =
            Channel::from_shared(format!("http://127.0.0.1:{port}")).map_err(|e| ClientError::Usage(e.to_string()))?;
        match endpoint.tcp_nodelay(true).connect().await {
            Ok(channel) => {
                // Serving means answering an authenticated call.
                let mut exposure = ExposureServiceClient::with_interceptor(channel.clone(), bearer(token)?);
                if exposure.get_exposure(pb::GetExposureRequest::default()).await.is_ok() {
                    return Ok(channel);
                }
            }
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn bearer(token: &str) -> Result<Bearer, ClientError> {
    Ok(Bearer(format!("Bearer {token}").parse().map_err(|_| ClientError::Usage("bad token".to_owned()))?))
}

async fn admin_token(dir: &Path) -> Result<String, ClientError> {
    for _ in 0..6000 {
        if let Ok(t) = std::fs::read_to_string(dir.join(ipledger::server::ADMIN_TOKEN_FILE))
            && t.ends_with('\n')
        {
            return Ok(t.trim().to_owned());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(ClientError::Usage("the server wrote no admin token".to_owned()))
}

/// Latency percentiles of a set of samples.
struct Latencies(Vec<Duration>);

impl Latencies {
    fn at(&self, q: f64) -> Duration {
        let i = ((self.0.len() as f64 - 1.0) * q).round() as usize;
        self.0.get(i).copied().unwrap_or_default()
    }

    fn line(mut self, what: &str, elapsed: Duration) -> String {
        self.0.sort_unstable();
        let n = self.0.len();
        format!(
            "| {what} | {n} | {:.0}/s | {:.2} | {:.2} | {:.2} |",
            n as f64 / elapsed.as_secs_f64(),
            self.at(0.5).as_secs_f64() * 1000.0,
            self.at(0.99).as_secs_f64() * 1000.0,
            self.0.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
        )
    }
}

fn request(w: &mut Workload) -> pb::RegisterPledgeRequest {
    pb::RegisterPledgeRequest { request_id: uuid::Uuid::new_v4().to_string(), pledge: Some(w.pledge()) }
}

type Pledges = PledgeServiceClient<InterceptedService<Channel, Bearer>>;

async fn import(channels: &[Channel], token: &str, w: &mut Workload, n: u64) -> Result<(Duration, u64), ClientError> {
    const CHUNK: u64 = 10_000;
    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let mut sent = 0;
    let mut registered = 0;
    let mut k = 0;
    while sent < n || !in_flight.is_empty() {
        while sent < n && in_flight.len() < 4 {
            let size = CHUNK.min(n - sent);
            let records: Vec<_> = (0..size).map(|_| request(w)).collect();
            sent += size;
            let mut client: Pledges =
                PledgeServiceClient::with_interceptor(channels[k % channels.len()].clone(), bearer(token)?);
            k += 1;
            in_flight.push(async move { client.import_pledges(tokio_stream::iter(records)).await });
        }
        if let Some(result) = in_flight.next().await {
            let summary = result?.into_inner();
            if summary.rejected > 0 {
                return Err(ClientError::Usage(format!(
                    "generated records were rejected: {:?}",
                    summary.rejections.first()
                )));
            }
            registered += summary.registered;
        }
    }
    Ok((started.elapsed(), registered))
}

async fn unary(
    channels: &[Channel],
    token: &str,
    w: &mut Workload,
    callers: u64,
    total: u64,
) -> Result<String, ClientError> {
    let per_caller = (total / callers).max(1);
    let mut tasks = Vec::new();
    let started = Instant::now();
    for c in 0..callers {
        let mut client: Pledges =
            PledgeServiceClient::with_interceptor(channels[c as usize % channels.len()].clone(), bearer(token)?);
        let requests: Vec<_> = (0..per_caller).map(|_| request(w)).collect();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(requests.len());
            for r in requests {
                let t = Instant::now();
                client.register_pledge(r).await?;
                samples.push(t.elapsed());
            }
            Ok::<_, tonic::Status>(samples)
        }));
    }
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await.map_err(|e| ClientError::Usage(e.to_string()))??);
    }
    Ok(Latencies(samples).line(&format!("RegisterPledge, {callers} callers"), started.elapsed()))
}

/// Recordings of a right's state, timed one at a time, on a right that has been part of `pledges`
/// pledges (all but the last released): each recording moves the as-of risk columns of every one,
/// so this is the cost of one write at the bound (`risk::PLEDGES_PER_RIGHT_MAX`) against one pledge.
async fn right_recordings(
    channel: &Channel,
    token: &str,
    w: &mut Workload,
    pledges: usize,
) -> Result<String, ClientError> {
    const RECORDINGS: i64 = 60;
    let mut client: Pledges = PledgeServiceClient::with_interceptor(channel.clone(), bearer(token)?);
    let pledge = w.pledge();
    for i in 0..pledges {
        let registered = client.register_pledge(pb::RegisterPledgeRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            pledge: Some(pledge.clone()),
        });
        let id = registered.await?.into_inner().id;
        if i + 1 < pledges {
            let release = pb::ReleasePledgeRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                id,
                released_on: pledge.registered_on.clone(),
                reason: pb::ReleaseReason::Repaid as i32,
                ..Default::default()
            };
            client.release_pledge(release).await?;
        }
    }
    let mut risk = pb::risk_service_client::RiskServiceClient::with_interceptor(channel.clone(), bearer(token)?);
    let right = &pledge.rights[0];
    let first = chrono::NaiveDate::parse_from_str(&pledge.registered_on, "%Y-%m-%d")
        .map_err(|e| ClientError::Usage(format!("a generated registration date: {e}")))?;
    let mut samples = Vec::new();
    let started = Instant::now();
    for i in 0..RECORDINGS {
        let status = if i % 2 == 0 { pb::RightStatus::Lapsed } else { pb::RightStatus::InForce };
        let request = pb::RecordRightRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            right_kind: right.kind,
            right_number: right.number.clone(),
            state: Some(pb::RightState {
                holder: pledge.pledgor.clone(),
                status: status as i32,
                status_since: (first + chrono::Duration::days(i)).to_string(),
                ..Default::default()
            }),
        };
        let t = Instant::now();
        risk.record_right(request).await?;
        samples.push(t.elapsed());
    }
    Ok(Latencies(samples).line(&format!("RecordRight, a right of {pledges} pledges"), started.elapsed()))
}

async fn exposure(
    channel: &Channel,
    token: &str,
    region: &str,
    group_by: pb::ExposureGroupBy,
    as_of: &str,
    n: u64,
) -> Result<String, ClientError> {
    let mut client: Client<ExposureServiceClient<_>> =
        ExposureServiceClient::with_interceptor(channel.clone(), bearer(token)?);
    let request = pb::GetExposureRequest { region_code: region.into(), group_by: group_by as i32, as_of: as_of.into() };
    let mut samples = Vec::with_capacity(n as usize);
    let started = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        client.get_exposure(request.clone()).await?;
        samples.push(t.elapsed());
    }
    let when = if as_of.is_empty() { "now".to_owned() } else { format!("as of {as_of}") };
    let region = if region.is_empty() { "country" } else { region };
    Ok(Latencies(samples).line(&format!("GetExposure {region} {} {when}", group_by.as_str_name()), started.elapsed()))
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() { dir_bytes(&p) } else { e.metadata().map_or(0, |m| m.len()) }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// The active pledges the server holds (every pledge, when none was released).
async fn pledge_count(channel: &Channel, token: &str) -> Result<u64, ClientError> {
    let mut client = ExposureServiceClient::with_interceptor(channel.clone(), bearer(token)?);
    let answer = client.get_exposure(pb::GetExposureRequest::default()).await?.into_inner();
    Ok(answer.total.map_or(0, |t| t.pledge_count))
}

// Longer than ~70 lines: the benchmark's phases in order (load, unary writes, queries, restart,
// report), each printing its figures.
/// The journal's Merkle tree under reads (issue 24): signed tree heads, and inclusion and
/// consistency proofs of entries and sizes spread over the whole journal (each needs stored
/// subtree hashes and a full tile's entries hashed again). One proof of each kind is checked.
async fn proofs(channel: &Channel, token: &str, n: u64) -> Result<Vec<String>, ClientError> {
    use ipledger::ledger::journal::merkle;
    let mut client = JournalServiceClient::with_interceptor(channel.clone(), bearer(token)?);
    let head = client.get_signed_tree_head(pb::GetSignedTreeHeadRequest { tree_size: 0 }).await?.into_inner();
    let size = head.tree_size.max(1);
    let hash = |text: &str| -> Result<merkle::Hash, ClientError> {
        ipledger::grpc::convert::hex_array(text, "a hash the server sent").map_err(ClientError::Usage)
    };
    let root = hash(&head.root_hash)?;
    // Spread over the journal by a fixed stride (a large odd multiplier visits every residue).
    let pick = |i: u64| 1 + i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % size;
    let mut lines = Vec::new();
    let (mut samples, started) = (Vec::with_capacity(n as usize), Instant::now());
    for i in 0..n {
        let t = Instant::now();
        let request = pb::GetInclusionProofRequest { sequence: pick(i), tree_size: size };
        let proof = client.get_inclusion_proof(request).await?.into_inner();
        samples.push(t.elapsed());
        let hashes = proof.hashes.iter().map(|h| hash(h)).collect::<Result<Vec<_>, _>>()?;
        if !merkle::verify_inclusion(pick(i) - 1, size, &hash(&proof.leaf_hash)?, &hashes, &root) {
            return Err(ClientError::Usage(format!("the inclusion proof of entry {} does not verify", pick(i))));
        }
    }
    lines.push(Latencies(samples).line("GetInclusionProof, entries over the journal", started.elapsed()));
    let (mut samples, started) = (Vec::with_capacity(n as usize), Instant::now());
    for i in 0..n {
        let t = Instant::now();
        let request = pb::GetConsistencyProofRequest { from_size: pick(i), to_size: size };
        client.get_consistency_proof(request).await?;
        samples.push(t.elapsed());
    }
    lines.push(Latencies(samples).line("GetConsistencyProof, sizes over the journal", started.elapsed()));
    let (mut samples, started) = (Vec::with_capacity(n as usize), Instant::now());
    for _ in 0..n {
        let t = Instant::now();
        client.get_signed_tree_head(pb::GetSignedTreeHeadRequest { tree_size: 0 }).await?;
        samples.push(t.elapsed());
    }
    lines.push(Latencies(samples).line("GetSignedTreeHead", started.elapsed()));
    Ok(lines)
}

pub async fn run(args: BenchArgs) -> Result<(), ClientError> {
    let existing = args.data_dir.exists();
    if existing && (args.pledges > 0 || args.unary > 0) {
        let dir = args.data_dir.display();
        return Err(ClientError::Usage(format!(
            "{dir} exists: give a new --data-dir, or --pledges 0 --unary 0 to measure the ledger in it"
        )));
    }
    let started = Instant::now();
    let mut server = start_server(&args.data_dir)?;
    let token = admin_token(&args.data_dir).await?;
    let mut channels = Vec::new();
    for _ in 0..8 {
        channels.push(connect(server.port, &token).await?);
    }
    let first_start = started.elapsed();
    let mut w = Workload::new(42, 1);
    let mut out = vec![
        if existing {
            format!("ipledger bench on the existing ledger in {}", args.data_dir.display())
        } else {
            let levels: Vec<_> = args.callers.iter().map(u64::to_string).collect();
            format!(
                "ipledger bench: {} pledges imported, {} unary registrations per level (callers {})",
                args.pledges,
                args.unary,
                levels.join(", ")
            )
        },
        String::new(),
        "| operation | requests | throughput | p50 ms | p99 ms | max ms |".to_owned(),
        "|---|---|---|---|---|---|".to_owned(),
    ];
    if !existing {
        let (elapsed, registered) = import(&channels, &token, &mut w, args.pledges).await?;
        out.push(format!(
            "| ImportPledges (4 streams) | {registered} | {:.0}/s | | | {:.1} s total |",
            registered as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64()
        ));
        eprintln!("{}", out.last().map(String::as_str).unwrap_or_default());
        for &callers in &args.callers {
            let total = if callers == 1 { args.unary / 10 } else { args.unary };
            out.push(unary(&channels, &token, &mut w, callers, total).await?);
            eprintln!("{}", out.last().map(String::as_str).unwrap_or_default());
        }
        for pledges in [1, ipledger::ledger::risk_projector::PLEDGES_PER_RIGHT_MAX] {
            out.push(right_recordings(&channels[0], &token, &mut w, pledges).await?);
            eprintln!("{}", out.last().map(String::as_str).unwrap_or_default());
        }
    }
    for as_of in ["", "2020-06-30"] {
        for region in ["", "330000", "330100", "330106"] {
            for group_by in [
                pb::ExposureGroupBy::Unspecified,
                pb::ExposureGroupBy::ChildRegion,
                pb::ExposureGroupBy::Pledgee,
                pb::ExposureGroupBy::RightKind,
            ] {
                out.push(exposure(&channels[0], &token, region, group_by, as_of, args.queries).await?);
            }
        }
    }
    out.extend(proofs(&channels[0], &token, args.queries).await?);
    let pledges = pledge_count(&channels[0], &token).await?;
    let rss = rss_mib(server.child.id());
    drop(channels);
    // Restart: a graceful stop, then the time until an authenticated exposure query answers.
    let stop = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status()?;
    if !stop.success() {
        return Err(ClientError::Usage("could not stop the server".to_owned()));
    }
    let _ = server.child.wait();
    let bytes = dir_bytes(&args.data_dir);
    let started = Instant::now();
    server = start_server(&args.data_dir)?;
    let channel = connect(server.port, &token).await?;
    let restart = started.elapsed();
    let rss_after = rss_mib(server.child.id());
    drop(channel);
    out.push(String::new());
    out.push(format!("| pledges stored | {pledges} |"));
    out.push("|---|---|".to_owned());
    if existing {
        out.push(format!("| start to serving on the existing data (cold) | {:.2} s |", first_start.as_secs_f64()));
    }
    let load = if existing { "the queries" } else { "the load" };
    out.push(format!("| resident memory after {load} | {rss:.0} MiB |"));
    out.push(format!("| resident memory after restart | {rss_after:.0} MiB |"));
    out.push(format!(
        "| bytes on disk | {:.1} MiB ({:.0} bytes per pledge) |",
        bytes as f64 / 1048576.0,
        bytes as f64 / pledges as f64
    ));
    out.push(format!("| restart to serving | {:.2} s |", restart.as_secs_f64()));
    println!("{}", out.join("\n"));
    Ok(())
}

//! The `ipledger` command: `serve` runs the gRPC server on an embedded store; `token` manages
//! principals offline on a data directory (the server must be stopped: the store is
//! single-process; while it runs, use the AdminService RPCs).

mod cli;

/// glibc's allocator spends a fifth of the writer's time in malloc and free under the many small
/// allocations of a group commit; mimalloc keeps them per thread.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand, ValueEnum};
use ipledger::domain::Reason;
use ipledger::domain::principal::{PrincipalName, Role};
use ipledger::domain::region::Region;
use ipledger::domain::{LedgerError, ident::CreditCode};
use ipledger::grpc;
use ipledger::grpc::Timeouts;
use ipledger::grpc::limits::Quotas;
use ipledger::ledger::principals::CertificateBinding;
use ipledger::ledger::{query, tokens};
use ipledger::server::{self, Config, Limits, ServeError, Tls};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "ipledger", version, about = "System of record for intellectual-property pledge financing")]
struct Cli {
    /// Log lines for people (text) or for log collectors (json, one object per line).
    #[arg(long, global = true, env = "IPLEDGER_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum CertificateCommand {
    /// Verify a certificate without a server: the tree head's signature by the key you trust, each
    /// entry's inclusion proof, that the entries are the pledge's, the digest, and the cosignatures
    /// of the witnesses named. Exits 1, saying why, when anything does not hold.
    Verify(cli::certificate::VerifyArgs),
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the gRPC API (with reflection and health) on an embedded sled store.
    Serve(ServeArgs),
    /// Manage principals and their bearer tokens offline (stop the server first).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Verify a data directory offline: the journal's hash chain, and every derived record
    /// against a rebuild from the journal. Exits 1 on the first divergence, which it reports.
    Verify {
        #[command(flatten)]
        data: DataDir,
    },
    /// Write a consistent JSON-lines dump of a running server's journal to stdout (admin token).
    Export(ExportArgs),
    /// Stream a JSON-lines or CSV file of registrations to a server, resumably, with a progress
    /// bar and a report of every rejected line.
    Import(cli::import::ImportArgs),
    /// Print the exposure of a region as a table (or JSON).
    Exposure(ExposureArgs),
    /// Benchmark a server started on a new data directory: throughput and latency percentiles.
    Bench(cli::bench::BenchArgs),
    /// Pledge certificates (the JSON of GetPledgeCertificate), checked offline.
    Certificate {
        #[command(subcommand)]
        command: CertificateCommand,
    },
    /// Check that the ledger's signed tree head extends the last one this witness kept, keep it,
    /// and cosign it with --cosign-key. Exits 3 with both heads as evidence on a rewritten history.
    Witness(cli::witness::WitnessArgs),
    /// Make an Ed25519 key (PKCS#8, readable by its owner only) in FILE and its public half in
    /// FILE.pub: a witness's key, or a cluster's signing key.
    Keygen {
        /// The new key's file; must not exist.
        file: PathBuf,
    },
    /// Write realistic generated registrations as JSON lines (the format `import` reads) to
    /// stdout: for trying the service out, load tests and import rehearsals.
    Generate {
        /// How many registrations.
        #[arg(long, default_value_t = 1000)]
        pledges: u64,
        /// Decides everything generated: the same seed gives the same file.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// 0-9: files generated with different prefixes use disjoint rights and enterprises.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=9))]
        prefix: u64,
    },
    /// Exit 0 when the server answers the standard gRPC health check with SERVING (for container
    /// health checks; needs no token).
    Health {
        /// The server's address.
        #[arg(long, env = "IPLEDGER_SERVER", default_value = "http://127.0.0.1:50051")]
        server: String,
        /// A service name; empty for the server as a whole.
        #[arg(long, default_value = "")]
        service: String,
        /// PEM CA that signed the server's certificate (for an https:// server).
        #[arg(long, env = "IPLEDGER_CA_CERT")]
        ca_cert: Option<PathBuf>,
    },
    /// Build a new data directory from a dump (`-` reads stdin): checks every entry's bytes and
    /// chain, decides each again under the ledger's rules, checks the dump's signed head against a
    /// key you trust, then verifies the result. A failed restore leaves no data directory.
    Restore {
        #[command(flatten)]
        data: DataDir,
        /// The dump written by `ipledger export`.
        #[arg(long, default_value = "-")]
        input: PathBuf,
        /// A public key (64 hex digits, or a `signing-key.pub` file) whose signature on the dump's
        /// head you trust; repeatable.
        #[arg(long = "trusted-key")]
        trusted_keys: Vec<String>,
        /// Restore a dump without a signed head (written by a release before signed heads): its
        /// chain and rules are still checked, but nothing vouches for its head.
        #[arg(long)]
        allow_unsigned: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum GroupByArg {
    ChildRegion,
    Pledgee,
    RightKind,
}

#[derive(Debug, clap::Args)]
struct ExposureArgs {
    #[command(flatten)]
    connect: cli::Connect,
    /// Province, city or county code; empty for your whole scope.
    #[arg(long, default_value = "")]
    region: String,
    #[arg(long, value_enum)]
    group_by: Option<GroupByArg>,
    /// As of the end of this date (YYYY-MM-DD) by business dates.
    #[arg(long)]
    as_of: Option<String>,
    /// Print the answer as JSON for scripts.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct ExportArgs {
    /// The server, and an admin's token (from --token-file or IPLEDGER_TOKEN).
    #[command(flatten)]
    connect: cli::Connect,
}

#[derive(Debug, clap::Args)]
struct DataDir {
    /// Directory of the store; created if missing.
    #[arg(long, env = "IPLEDGER_DATA_DIR", default_value = "./ipledger-data")]
    data_dir: PathBuf,
    /// The journal in PostgreSQL (`postgres://user@host:port/db`, for high availability); without
    /// it, the journal is embedded in the data directory. Derived state stays in the data directory.
    /// The URL may hold a password: `--help` names the variable but never shows its value.
    #[arg(long, env = "IPLEDGER_JOURNAL", hide_env_values = true)]
    journal: Option<String>,
    /// With --journal: PEM CA certificates that PostgreSQL's certificate must chain to; the
    /// journal's connections then use TLS and verify the host name. Without it: plaintext
    /// (loopback or a private network).
    #[arg(long, env = "IPLEDGER_JOURNAL_CA", requires = "journal")]
    journal_ca: Option<PathBuf>,
    /// The key that signs journal heads and, with --journal, every group the writer appends
    /// (Ed25519, PKCS#8 DER: `openssl genpkey -algorithm ed25519 -outform DER -out FILE`). Every
    /// node of a cluster needs the same file: a node follows only groups signed by its key.
    /// Without it: the data directory's own key, made at the first start.
    #[arg(long, env = "IPLEDGER_SIGNING_KEY")]
    signing_key: Option<PathBuf>,
}

impl DataDir {
    fn target(&self) -> Result<Option<ipledger::ledger::journal::PostgresTarget>, ServeError> {
        server::journal_target(self.journal.as_deref(), self.journal_ca.as_deref())
    }
}

/// Sizes in MiB: at most 1 TiB, so that their bytes cannot overflow.
const MIB_MAX: u64 = 1 << 20;
/// Timeouts at most a day, in milliseconds: a deadline that far is as good as none.
const DAY_MS: u64 = 24 * 3600 * 1000;
/// The write queue's bound at most: a channel that large still fits tokio's bound with room.
const WRITE_QUEUE_MAX: u64 = 1 << 24;

/// A count of at least 1 and at most `max`: a limit of 0 would refuse all work, or cannot be built.
fn count_max(max: u64) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..=max)
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "IPLEDGER_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    #[command(flatten)]
    data: DataDir,
    /// With --journal: the address clients and the other nodes reach this node at (`host:port`),
    /// its name in the writer's lease and in NOT_WRITER answers. Default: the listen address.
    #[arg(long, env = "IPLEDGER_ADVERTISE")]
    advertise: Option<String>,
    /// With --journal: how long the writer's lease lasts without renewal (renewed every quarter
    /// of it); a writer that died is replaced after about this long.
    #[arg(long, env = "IPLEDGER_LEASE_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1000..=600_000))]
    lease_ms: u64,
    /// PEM certificate chain for TLS.
    #[arg(long, env = "IPLEDGER_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    #[arg(long, env = "IPLEDGER_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA for client certificates (mutual TLS): a verified client certificate authenticates as
    /// the principal an admin bound it to (`ipledger token bind` or BindCertificate), nothing else.
    #[arg(long, env = "IPLEDGER_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Serve without TLS on a non-loopback address.
    #[arg(long, env = "IPLEDGER_ALLOW_PLAINTEXT")]
    allow_plaintext: bool,
    /// On first start, create the admin with the token in this file (a mounted secret) instead of
    /// generating one into the data directory.
    #[arg(long, env = "IPLEDGER_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// Serve Prometheus metrics at this address (`GET /metrics`); off when not given. Over TLS with
    /// --tls-cert/--tls-key when given; plaintext only on loopback (or with --allow-plaintext).
    #[arg(long, env = "IPLEDGER_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// A file holding the bearer token every scrape must send (`authorization: Bearer <token>`, at
    /// least 16 characters); required when --metrics-listen is not a loopback address.
    #[arg(long, env = "IPLEDGER_METRICS_TOKEN_FILE")]
    metrics_token_file: Option<PathBuf>,
    /// A witness whose cosignatures of the journal's tree heads the server accepts and serves:
    /// NAME=KEY, KEY the witness's Ed25519 public key (64 hex digits, or a file holding them).
    /// Repeat for each (at most 32); in the variable, separate them with commas.
    #[arg(long = "witness", env = "IPLEDGER_WITNESSES", value_delimiter = ',', value_parser = parse_witness)]
    witnesses: Vec<ipledger::ledger::transparency::Witness>,
    /// Writes that may wait for the writer; beyond it writes get RESOURCE_EXHAUSTED.
    #[arg(long, env = "IPLEDGER_WRITE_QUEUE_MAX", value_parser = count_max(WRITE_QUEUE_MAX), default_value_t = Limits::default().write_queue_max)]
    write_queue_max: usize,
    /// Calls handled at once; beyond it calls get RESOURCE_EXHAUSTED.
    #[arg(long, env = "IPLEDGER_REQUESTS_MAX", value_parser = clap::value_parser!(u32).range(1..), default_value_t = Quotas::default().calls_max)]
    requests_max: u32,
    /// Calls one principal may have handled at once; at most --requests-max (left at its default,
    /// it is lowered to a smaller --requests-max).
    #[arg(long, env = "IPLEDGER_PRINCIPAL_REQUESTS_MAX", value_parser = clap::value_parser!(u32).range(1..), default_value_t = Quotas::default().principal_calls_max)]
    principal_requests_max: u32,
    /// Import and export streams open at once, and per principal (the share at most the bound).
    #[arg(long, env = "IPLEDGER_STREAMS_MAX", value_parser = clap::value_parser!(u32).range(1..), default_value_t = Quotas::default().streams_max)]
    streams_max: u32,
    #[arg(long, env = "IPLEDGER_PRINCIPAL_STREAMS_MAX", value_parser = clap::value_parser!(u32).range(1..), default_value_t = Quotas::default().principal_streams_max)]
    principal_streams_max: u32,
    /// Change feeds (WatchEvents) open at once, and per principal (the share at most the bound).
    #[arg(long, env = "IPLEDGER_WATCHERS_MAX", value_parser = clap::value_parser!(u32).range(1..), default_value_t = Quotas::default().watchers_max)]
    watchers_max: u32,
    #[arg(long, env = "IPLEDGER_PRINCIPAL_WATCHERS_MAX", value_parser = clap::value_parser!(u32).range(1..), default_value_t = Quotas::default().principal_watchers_max)]
    principal_watchers_max: u32,
    /// Bytes of write requests waiting for the writer, and per principal (the share at most the
    /// bound).
    #[arg(long, env = "IPLEDGER_WRITE_QUEUE_BYTES_MAX", value_parser = clap::value_parser!(u32).range(1..), default_value_t = Quotas::default().queued_bytes_max)]
    write_queue_bytes_max: u32,
    #[arg(long, env = "IPLEDGER_PRINCIPAL_WRITE_QUEUE_BYTES_MAX", value_parser = clap::value_parser!(u32).range(1..), default_value_t = Quotas::default().principal_queued_bytes_max)]
    principal_write_queue_bytes_max: u32,
    /// Deadline of every unary call, in milliseconds.
    #[arg(long, env = "IPLEDGER_CALL_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..=DAY_MS), default_value_t = Timeouts::default().call.as_millis() as u64)]
    call_timeout_ms: u64,
    /// An import stream that sends nothing for this long is ended, in milliseconds.
    #[arg(long, env = "IPLEDGER_STREAM_IDLE_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..=DAY_MS), default_value_t = Timeouts::default().stream_idle.as_millis() as u64)]
    stream_idle_timeout_ms: u64,
    /// Page cache of the store, in MiB.
    #[arg(long, env = "IPLEDGER_CACHE_MIB", value_parser = clap::value_parser!(u64).range(1..=MIB_MAX), default_value_t = Limits::default().cache_bytes / (1024 * 1024))]
    cache_mib: u64,
    /// Derived state kept in memory before a checkpoint writes it to disk, in MiB (bounds memory
    /// and the replay at the next start).
    #[arg(long, env = "IPLEDGER_CHECKPOINT_MIB", value_parser = count_max(MIB_MAX), default_value_t = Limits::default().checkpoint_bytes / (1024 * 1024))]
    checkpoint_mib: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    Admin,
    Bank,
    Office,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a principal and print its bearer token (shown this once only).
    Create {
        #[command(flatten)]
        data: DataDir,
        /// Unique name (a-z 0-9 . _ -).
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        /// For a bank: its Unified Social Credit Code.
        #[arg(long, required_if_eq("role", "bank"))]
        credit_code: Option<String>,
        /// For an office: its province, city or county code.
        #[arg(long, required_if_eq("role", "office"))]
        region_code: Option<String>,
    },
    /// List principals (never their tokens).
    List {
        #[command(flatten)]
        data: DataDir,
    },
    /// Revoke a principal's token (and with it its certificate bindings).
    Revoke {
        #[command(flatten)]
        data: DataDir,
        #[arg(long)]
        name: String,
    },
    /// Bind client certificates to a live principal (mutual TLS): a verified certificate whose
    /// subject or one of whose subject alternative names matches authenticates as it. Give one of
    /// --subject, --dns-name, --uri, --email.
    Bind {
        #[command(flatten)]
        data: DataDir,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        binding: BindingArgs,
    },
}

#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct BindingArgs {
    /// The certificate's whole subject, RFC 4514, exactly (`openssl x509 -noout -subject -nameopt
    /// RFC2253` prints it), e.g. "CN=bank-a,O=Bank A,C=CN".
    #[arg(long)]
    subject: Option<String>,
    /// A DNS name among the certificate's subject alternative names.
    #[arg(long)]
    dns_name: Option<String>,
    /// A URI among its subject alternative names (e.g. a SPIFFE id).
    #[arg(long)]
    uri: Option<String>,
    /// An email address among its subject alternative names.
    #[arg(long)]
    email: Option<String>,
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested: finishing in-flight requests");
}

/// The quotas of `serve`'s flags (`given`: how each was set). A per-principal share left at its
/// default is lowered to a server bound given below it, and the log says so; a share given above
/// its server bound is a contradiction, refused naming both flags.
fn quotas(args: &ServeArgs, given: &clap::ArgMatches) -> Result<Quotas, clap::Error> {
    let mut quotas = Quotas {
        calls_max: args.requests_max,
        principal_calls_max: args.principal_requests_max,
        streams_max: args.streams_max,
        principal_streams_max: args.principal_streams_max,
        watchers_max: args.watchers_max,
        principal_watchers_max: args.principal_watchers_max,
        queued_bytes_max: args.write_queue_bytes_max,
        principal_queued_bytes_max: args.principal_write_queue_bytes_max,
    };
    // (the bound's clap id, the share's, the bound, the share)
    let shares = [
        ("requests_max", "principal_requests_max", quotas.calls_max, &mut quotas.principal_calls_max),
        ("streams_max", "principal_streams_max", quotas.streams_max, &mut quotas.principal_streams_max),
        ("watchers_max", "principal_watchers_max", quotas.watchers_max, &mut quotas.principal_watchers_max),
        (
            "write_queue_bytes_max",
            "principal_write_queue_bytes_max",
            quotas.queued_bytes_max,
            &mut quotas.principal_queued_bytes_max,
        ),
    ];
    let command = serve_command();
    for (bound_id, share_id, bound, share) in shares {
        if *share <= bound {
            continue;
        }
        let (bound_flag, share_flag) = (flag(&command, bound_id), flag(&command, share_id));
        if given.value_source(share_id) != Some(clap::parser::ValueSource::DefaultValue) {
            let why = format!(
                "{share_flag} {share} exceeds {bound_flag} {bound}: a principal's share cannot be larger than the \
                 server's bound; lower the first or raise the second"
            );
            return Err(command.clone().error(clap::error::ErrorKind::ArgumentConflict, why));
        }
        tracing::warn!("{share_flag} is lowered from its default {share} to {bound_flag} {bound}");
        *share = bound;
    }
    assert!(quotas.check().is_ok(), "fitted quotas: {quotas:?}");
    Ok(quotas)
}

/// The flag of the argument `id` of `command`, with its environment variable: `--x (IPLEDGER_X)`.
fn flag(command: &clap::Command, id: &str) -> String {
    let arg = command.get_arguments().find(|a| a.get_id() == id);
    assert!(arg.is_some(), "serve has no argument {id}");
    let long = arg.and_then(clap::Arg::get_long).unwrap_or(id);
    match arg.and_then(clap::Arg::get_env) {
        Some(env) => format!("--{long} ({})", env.to_string_lossy()),
        None => format!("--{long}"),
    }
}

/// `ipledger serve`'s command, for errors in its usage.
fn serve_command() -> clap::Command {
    let mut cli = <Cli as clap::CommandFactory>::command();
    cli.find_subcommand_mut("serve").cloned().map_or(cli, |serve| serve.bin_name("ipledger serve"))
}

async fn serve(args: ServeArgs, quotas: Quotas) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let limits = Limits {
        write_queue_max: args.write_queue_max,
        quotas,
        timeouts: Timeouts {
            call: Duration::from_millis(args.call_timeout_ms),
            stream_idle: Duration::from_millis(args.stream_idle_timeout_ms),
            ..Timeouts::default()
        },
        cache_bytes: args.cache_mib * 1024 * 1024,
        checkpoint_bytes: args.checkpoint_mib.max(1) * 1024 * 1024,
        ..Limits::default()
    };
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(Tls { cert, key, client_ca: args.tls_client_ca }),
        _ => None,
    };
    let config = Config {
        data_dir: args.data.data_dir,
        journal: args.data.journal,
        journal_ca: args.data.journal_ca,
        signing_key: args.data.signing_key,
        advertise: args.advertise,
        lease: Duration::from_millis(args.lease_ms),
        limits,
        tls,
        allow_plaintext: args.allow_plaintext,
        admin_token_file: args.admin_token_file,
        metrics_listen: args.metrics_listen,
        metrics_token_file: args.metrics_token_file,
        witnesses: args.witnesses,
        engines: None,
    };
    server::serve(listener, config, shutdown_signal()).await
}

fn role(role: RoleArg, credit_code: Option<String>, region_code: Option<String>) -> Result<Role, LedgerError> {
    Ok(match role {
        RoleArg::Admin => Role::Admin,
        RoleArg::Bank => Role::Bank(
            CreditCode::parse(credit_code.as_deref().unwrap_or_default())
                .map_err(|e| LedgerError::invalid_field("--credit-code", e))?,
        ),
        RoleArg::Office => Role::Office(
            Region::parse(region_code.as_deref().unwrap_or_default())
                .map_err(|e| LedgerError::invalid_field("--region-code", e))?,
        ),
    })
}

fn certificate_binding(args: BindingArgs) -> Result<CertificateBinding, LedgerError> {
    let (flag, value, kind): (&str, Option<String>, fn(String) -> CertificateBinding) = match args {
        BindingArgs { subject: Some(v), .. } => ("--subject", Some(v), CertificateBinding::Subject),
        BindingArgs { dns_name: Some(v), .. } => ("--dns-name", Some(v), CertificateBinding::DnsName),
        BindingArgs { uri: Some(v), .. } => ("--uri", Some(v), CertificateBinding::Uri),
        BindingArgs { email, .. } => ("--email", email, CertificateBinding::Email),
    };
    CertificateBinding::new(kind, value.as_deref().unwrap_or_default()).map_err(|e| LedgerError::invalid_field(flag, e))
}

fn name(text: &str) -> Result<PrincipalName, LedgerError> {
    PrincipalName::parse(text).map_err(|e| LedgerError::invalid_field("--name", e))
}

/// Runs a token command on the data directory with the same single writer the server uses.
async fn token(command: TokenCommand) -> Result<(), ServeError> {
    let (dir, journal, key) = match &command {
        TokenCommand::Create { data, .. }
        | TokenCommand::List { data }
        | TokenCommand::Revoke { data, .. }
        | TokenCommand::Bind { data, .. } => (data.data_dir.clone(), data.target()?, data.signing_key.clone()),
    };
    let limits = Limits { cache_bytes: 64 * 1024 * 1024, ..Limits::default() };
    let (ledger, writer) =
        server::open_ledger(&dir, &limits, journal.as_ref(), key.as_deref(), &server::Node::offline()).await?;
    if journal.is_some() && !matches!(command, TokenCommand::List { .. }) {
        // In a cluster this tool writes only when no server holds the writer's lease.
        let mut role = ledger.role();
        let writes = tokio::time::timeout(server::LEASE_DEFAULT * 2, role.wait_for(|r| r.is_writer()))
            .await
            .is_ok_and(|waited| waited.is_ok());
        if !writes {
            let writer = match &*role.borrow() {
                ipledger::ledger::role::NodeRole::Follower { writer } => writer.clone(),
                ipledger::ledger::role::NodeRole::Writer { .. } => None,
            };
            return Err(LedgerError::NotWriter { writer }.into());
        }
    }
    let operator = ipledger::domain::principal::Principal {
        name: name("operator")?,
        role: Role::Admin,
        create_time: 0,
        revoke_time: None,
    };
    let result = match command {
        TokenCommand::Create { name: n, role: r, credit_code, region_code, .. } => {
            let (record, token) =
                tokens::create(&ledger, &operator, name(&n)?, role(r, credit_code, region_code)?).await?;
            let principal = grpc::convert::token_to_pb(&record.principal);
            eprintln!("created {} ({}); its token, shown this once:", principal.name, describe(&principal));
            println!("{token}");
            Ok(())
        }
        TokenCommand::List { .. } => {
            let (records, _) = ledger.read(|s| query::list_principals(s, query::PAGE_SIZE_MAX, "")).await?;
            for r in records {
                let p = grpc::convert::token_to_pb(&r.principal);
                let state = if r.principal.revoke_time.is_some() { "revoked" } else { "live" };
                println!("{}\t{}\t{}", p.name, describe(&p), state);
            }
            Ok(())
        }
        TokenCommand::Revoke { name: n, .. } => {
            let principal = tokens::revoke(&ledger, &operator, name(&n)?).await?.principal;
            eprintln!("revoked {}", principal.name);
            Ok(())
        }
        TokenCommand::Bind { name: n, binding, .. } => {
            let binding = certificate_binding(binding)?;
            let (record, bindings) = tokens::bind_certificate(&ledger, &operator, name(&n)?, binding).await?;
            eprintln!("{} is bound to:", record.principal.name);
            for b in bindings {
                println!("{b}");
            }
            Ok(())
        }
    };
    drop(ledger);
    tokio::task::spawn_blocking(move || writer.join()).await.map_err(|e| std::io::Error::other(e.to_string()))?;
    result
}

fn print_report(report: &ipledger::ledger::replay::Report) -> Result<(), ServeError> {
    use ipledger::ledger::journal::hex;
    match &report.divergence {
        None => {
            println!(
                "ok: {} entries, head {}, {} derived records match a rebuild from the journal",
                report.entries,
                hex(&report.head),
                report.keys_compared
            );
            Ok(())
        }
        Some(d) => {
            println!(
                "DIVERGENCE at sequence {}\n  key:      {}\n  expected: {}\n  found:    {}",
                d.sequence, d.key, d.expected, d.found
            );
            Err(ServeError::Ledger(LedgerError::refused(
                Reason::JOURNAL_DIVERGENCE,
                format!("divergence at sequence {}", d.sequence),
            )))
        }
    }
}

async fn verify(data: &DataDir) -> Result<(), ServeError> {
    let (dir, journal) = (&data.data_dir, data.target()?);
    let limits = Limits { cache_bytes: 256 * 1024 * 1024, ..Limits::default() };
    let (ledger, writer) =
        server::open_ledger(dir, &limits, journal.as_ref(), data.signing_key.as_deref(), &server::Node::offline())
            .await?;
    let scratch =
        ipledger::datadir::Scratch::create(dir).map_err(|e| ServeError::Io(std::io::Error::other(e.to_string())))?;
    let report = ledger.verify(scratch.store()).await;
    drop(scratch);
    drop(ledger);
    tokio::task::spawn_blocking(move || writer.join()).await.map_err(|e| std::io::Error::other(e.to_string()))?;
    print_report(&report?)
}

async fn export(args: ExportArgs) -> Result<(), cli::ClientError> {
    use std::io::Write;
    let mut stream =
        args.connect.journal().await?.export_journal(ipledger::proto::ExportJournalRequest {}).await?.into_inner();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut last = 0u64;
    while let Some(entry) = stream.message().await? {
        writeln!(out, "{}", entry.json)?;
        // The last line is the signed head, numbered with the head's sequence.
        last = entry.sequence;
    }
    out.flush()?;
    eprintln!("exported {last} journal entries and their signed head");
    Ok(())
}

async fn restore(
    data: &DataDir,
    input: &std::path::Path,
    trusted_keys: &[String],
    allow_unsigned: bool,
) -> Result<(), ServeError> {
    use std::io::BufRead;
    let (dir, journal) = (data.data_dir.as_path(), data.target()?);
    let usage = |what: String| ServeError::Ledger(LedgerError::invalid_field("restore", what));
    let trusted = trusted_keys
        .iter()
        .map(|k| ipledger::ledger::signing::parse_public_key(k))
        .collect::<Result<Vec<_>, _>>()
        .map_err(usage)?;
    if trusted.is_empty() && !allow_unsigned {
        return Err(usage(
            "name the key that signed the dump with --trusted-key (its signing-key.pub), or give --allow-unsigned for a dump of a release before signed heads".to_owned(),
        ));
    }
    let held = std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(false);
    if held {
        return Err(ServeError::Ledger(LedgerError::refused(
            Reason::DATA_DIR_NOT_EMPTY,
            "restore needs a new, empty data directory",
        )));
    }
    let reader: Box<dyn BufRead + Send> = if input.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(std::fs::File::open(input)?))
    };
    let target = dir.to_path_buf();
    let key = data.signing_key.clone();
    let restored =
        tokio::task::spawn_blocking(move || restore_blocking(&target, journal, key.as_deref(), reader, &trusted))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
    match restored {
        Ok((head, report)) => {
            eprintln!("restored {} journal entries into {}", head.sequence, dir.display());
            print_report(&report)
        }
        Err(e) => {
            // Nothing half-restored is left behind to be served by mistake.
            let _ = std::fs::remove_dir_all(dir);
            Err(e)
        }
    }
}

fn restore_blocking(
    dir: &std::path::Path,
    journal: Option<ipledger::ledger::journal::PostgresTarget>,
    signing_key: Option<&std::path::Path>,
    reader: Box<dyn std::io::BufRead + Send>,
    trusted: &[ipledger::ledger::signing::PublicKey],
) -> Result<(ipledger::ledger::journal::Head, ipledger::ledger::replay::Report), ServeError> {
    use ipledger::ledger::export::{self, Line};
    use std::io::BufRead;
    let opened = ipledger::datadir::open(dir, 256 << 20, journal.as_ref(), signing_key)?;
    ipledger::ledger::mark_layout(opened.derived.as_ref())?;
    let derived = ipledger::ledger::derived::Derived::new(
        opened.derived.clone(),
        ipledger::ledger::derived::CHECKPOINT_BYTES,
        opened.journal.as_ref(),
    )
    .map_err(|e| ServeError::Ledger(LedgerError::Unavailable(e.to_string())))?;
    let (mut signed, mut signed_tree) = (None, None);
    let entries = reader.lines().filter(|l| l.as_ref().map_or(true, |l| !l.trim().is_empty())).filter_map(|line| {
        let line = match line {
            Ok(line) => line,
            Err(e) => return Some(Err(e.to_string())),
        };
        match export::parse(&line) {
            Ok(Line::Entry(stored)) => Some(Ok(stored)),
            Ok(Line::Head(head)) => {
                signed = Some(head);
                signed_tree = export::tree_head(&line);
                None
            }
            Err(e) => Some(Err(e)),
        }
    });
    // A journal other nodes read gets the dump only once all of it is checked (`Staging`).
    let staging = match journal {
        Some(_) => Some(ipledger::ledger::replay::Staging::create(dir, opened.journal.as_ref())?),
        None => None,
    };
    let into = staging.as_ref().map_or(opened.journal.as_ref(), |s| s.journal());
    let head = ipledger::ledger::replay::restore(into, &derived, entries)?;
    let refused = |why: String| ServeError::Ledger(LedgerError::refused(Reason::DUMP_NOT_TRUSTED, why));
    match signed {
        Some(signed) => {
            signed.verify(trusted).map_err(refused)?;
            if signed.head() != head {
                use ipledger::ledger::journal::hex;
                return Err(refused(format!(
                    "the dump's entries end at {} (hash {}), its signed head is {} (hash {})",
                    head.sequence,
                    hex(&head.hash),
                    signed.sequence,
                    hex(&signed.hash)
                )));
            }
        }
        None if trusted.is_empty() => eprintln!("warning: the dump has no signed head (--allow-unsigned)"),
        None => return Err(refused("the dump has no signed head, and --trusted-key asks for one".to_owned())),
    }
    if let Some(tree) = signed_tree {
        // The restored tree must be the one the dump's tree head signed (dumps before the tree
        // have none).
        tree.verify(trusted).map_err(refused)?;
        let ours = derived.tree(into).and_then(|mut view| match view.size() == tree.tree_size {
            true => view.root_at(tree.tree_size).map(Some),
            false => Ok(None),
        });
        let ours = ours.map_err(|e| ServeError::Ledger(LedgerError::Unavailable(e.to_string())))?;
        if ours != Some(tree.root_hash) {
            return Err(refused(format!(
                "the restored Merkle tree is not the one the dump's tree head of size {} signed",
                tree.tree_size
            )));
        }
    }
    if let Some(staging) = staging {
        staging.commit(opened.journal.as_ref(), head)?;
    }
    let scratch =
        ipledger::datadir::Scratch::create(dir).map_err(|e| ServeError::Io(std::io::Error::other(e.to_string())))?;
    let report = ipledger::ledger::replay::verify(opened.journal.as_ref(), &derived, scratch.store())?;
    Ok((head, report))
}

async fn health(server: String, service: String, ca_cert: Option<PathBuf>) -> Result<(), cli::ClientError> {
    use tonic_health::pb::health_check_response::ServingStatus;
    let mut endpoint = tonic::transport::Channel::from_shared(server)
        .map_err(|e| cli::ClientError::Usage(e.to_string()))?
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(std::time::Duration::from_secs(3));
    if let Some(ca) = ca_cert {
        let ca = tonic::transport::Certificate::from_pem(std::fs::read(ca)?);
        endpoint = endpoint.tls_config(tonic::transport::ClientTlsConfig::new().ca_certificate(ca))?;
    }
    let channel = endpoint.connect().await?;
    let answer = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest { service })
        .await?
        .into_inner();
    if answer.status == ServingStatus::Serving as i32 {
        println!("SERVING");
        Ok(())
    } else {
        Err(cli::ClientError::Usage(format!("not serving: {:?}", ServingStatus::try_from(answer.status))))
    }
}

fn client_result(result: Result<(), cli::ClientError>) -> Result<(), ServeError> {
    result.map_err(|e| ServeError::Io(std::io::Error::other(e.to_string())))
}

async fn import(args: cli::import::ImportArgs) -> Result<(), cli::ClientError> {
    let progress = cli::import::run(args).await?;
    cli::import::report(&progress);
    Ok(())
}

async fn exposure(args: ExposureArgs) -> Result<(), cli::ClientError> {
    use ipledger::proto::ExposureGroupBy;
    let group_by = match args.group_by {
        None => ExposureGroupBy::Unspecified,
        Some(GroupByArg::ChildRegion) => ExposureGroupBy::ChildRegion,
        Some(GroupByArg::Pledgee) => ExposureGroupBy::Pledgee,
        Some(GroupByArg::RightKind) => ExposureGroupBy::RightKind,
    };
    let request = ipledger::proto::GetExposureRequest {
        region_code: args.region,
        group_by: group_by as i32,
        as_of: args.as_of.unwrap_or_default(),
    };
    let answer = args.connect.exposure().await?.get_exposure(request).await?.into_inner();
    if args.json {
        println!("{}", exposure_json(&answer));
    } else {
        cli::print_exposure(&answer);
    }
    Ok(())
}

fn exposure_json(e: &ipledger::proto::GetExposureResponse) -> serde_json::Value {
    let row = |r: &ipledger::proto::ExposureRow| {
        serde_json::json!({
            "key": r.key, "name": r.name, "securedAmount": r.secured_amount, "pledgeCount": r.pledge_count,
            "enterpriseCount": r.enterprise_count, "rightCount": r.right_count,
            "creditLimit": r.credit_limit, "creditDrawn": r.credit_drawn,
        })
    };
    serde_json::json!({
        "regionCode": e.region_code,
        "regionName": e.region_name,
        "total": e.total.as_ref().map(row),
        "rows": e.rows.iter().map(row).collect::<Vec<_>>(),
        "rowsOmitted": e.rows_omitted,
    })
}

fn describe(p: &ipledger::proto::Token) -> String {
    match ipledger::proto::TokenRole::try_from(p.role) {
        Ok(ipledger::proto::TokenRole::Bank) => format!("bank {}", p.credit_code),
        Ok(ipledger::proto::TokenRole::Office) => format!("office {}", p.region_code),
        _ => "admin".to_owned(),
    }
}

/// Everything ipledger creates (stores, keys, tokens, scratch rebuilds) is its owner's only,
/// whatever umask it was started with: the journal holds every bank's book.
fn private_files() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

fn main() -> ExitCode {
    private_files();
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // Colours only for a person at a terminal: a log file or a pipe gets plain text.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(false).init(),
    }
    // Configuration errors end here, before anything starts, the way clap ends its own (exit 2).
    let quotas = match (&cli.command, matches.subcommand_matches("serve")) {
        (Command::Serve(args), Some(given)) => Some(quotas(args, given).unwrap_or_else(|e| e.exit())),
        _ => None,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ipledger: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args, quotas.expect("serve's quotas are fitted above")).await,
            Command::Token { command } => token(command).await,
            Command::Verify { data } => verify(&data).await,
            Command::Export(args) => client_result(export(args).await),
            Command::Restore { data, input, trusted_keys, allow_unsigned } => {
                async { restore(&data, &input, &trusted_keys, allow_unsigned).await }.await
            }
            Command::Import(args) => client_result(import(args).await),
            Command::Exposure(args) => client_result(exposure(args).await),
            Command::Bench(args) => client_result(cli::bench::run(args).await),
            Command::Certificate { command: CertificateCommand::Verify(args) } => {
                // A stable word first, for scripts: what follows says why.
                cli::certificate::verify(&args)
                    .map_err(|e| ServeError::Io(std::io::Error::other(format!("CERTIFICATE_NOT_VERIFIED: {e}"))))
            }
            Command::Witness(args) => witness(args).await,
            Command::Keygen { file } => ipledger::ledger::signing::Signer::create_at(&file)
                .map(|signer| println!("{}", ipledger::ledger::journal::hex(&signer.public_key())))
                .map_err(|e| ServeError::Io(std::io::Error::other(e))),
            Command::Generate { pledges, seed, prefix } => generate(pledges, seed, prefix).map_err(ServeError::from),
            Command::Health { server, service, ca_cert } => client_result(health(server, service, ca_cert).await),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "ipledger failed");
            eprintln!("ipledger: {e}");
            if e.is_configuration() { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}

/// Streams generated registrations to stdout, one JSON object per line, without holding them.
fn generate(pledges: u64, seed: u64, prefix: u64) -> std::io::Result<()> {
    use std::io::Write;
    let mut workload = ipledger::workload::Workload::new(seed, prefix);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for _ in 0..pledges {
        let request =
            ipledger::proto::RegisterPledgeRequest { request_id: String::new(), pledge: Some(workload.pledge()) };
        writeln!(out, "{}", ipledger::protojson::to_json("RegisterPledgeRequest", &request))?;
    }
    out.flush()
}

fn parse_witness(text: &str) -> Result<ipledger::ledger::transparency::Witness, String> {
    ipledger::ledger::transparency::Witness::parse(text)
}

/// Runs the witness; a fork is printed as JSON evidence on stdout and exits `FORK_EXIT`.
async fn witness(args: cli::witness::WitnessArgs) -> Result<(), ServeError> {
    match cli::witness::run(&args).await {
        Ok(cli::witness::Outcome::Consistent { from, to, cosigned }) => {
            let cosigned = if cosigned { ", cosigned" } else { "" };
            match from {
                0 => println!("tree head of {to} entries kept (first run){cosigned}"),
                _ => println!("tree of {to} entries extends the tree of {from} entries kept: consistent{cosigned}"),
            }
            Ok(())
        }
        Ok(cli::witness::Outcome::Fork(fork)) => {
            println!("{}", serde_json::to_string_pretty(&fork).expect("in-memory encoding"));
            eprintln!("FORK: {}", fork.reason);
            std::process::exit(cli::witness::FORK_EXIT);
        }
        Err(e) => client_result(Err(e)),
    }
}

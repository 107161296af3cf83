//! The `ipledger` command: `serve` runs the gRPC server on an embedded store; `token` manages
//! principals offline on a data directory (the server must be stopped: the store is
//! single-process; while it runs, use the AdminService RPCs).

use clap::{Parser, Subcommand, ValueEnum};
use ipledger::domain::principal::{PrincipalName, Role};
use ipledger::domain::region::Region;
use ipledger::domain::{LedgerError, ident::CreditCode};
use ipledger::grpc;
use ipledger::ledger::query;
use ipledger::server::{self, Config, Limits, ServeError, Tls};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "ipledger", version, about = "System of record for intellectual-property pledge financing")]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
}

#[derive(Debug, clap::Args)]
struct DataDir {
    /// Directory of the store; created if missing.
    #[arg(long, env = "IPLEDGER_DATA_DIR", default_value = "./ipledger-data")]
    data_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "IPLEDGER_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    #[command(flatten)]
    data: DataDir,
    /// PEM certificate chain for TLS.
    #[arg(long, env = "IPLEDGER_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    #[arg(long, env = "IPLEDGER_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA for client certificates (mutual TLS): a verified client certificate whose subject
    /// common name is a principal's name authenticates as that principal.
    #[arg(long, env = "IPLEDGER_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Serve without TLS on a non-loopback address.
    #[arg(long, env = "IPLEDGER_ALLOW_PLAINTEXT")]
    allow_plaintext: bool,
    /// Writes that may wait for the writer; beyond it writes get RESOURCE_EXHAUSTED.
    #[arg(long, env = "IPLEDGER_WRITE_QUEUE_MAX", default_value_t = Limits::default().write_queue_max)]
    write_queue_max: usize,
    /// Requests handled at once; beyond it calls get RESOURCE_EXHAUSTED.
    #[arg(long, env = "IPLEDGER_REQUESTS_MAX", default_value_t = Limits::default().requests_max)]
    requests_max: usize,
    /// Deadline of every unary call, in milliseconds.
    #[arg(long, env = "IPLEDGER_CALL_TIMEOUT_MS", default_value_t = Limits::default().call_timeout.as_millis() as u64)]
    call_timeout_ms: u64,
    /// Page cache of the store, in MiB.
    #[arg(long, env = "IPLEDGER_CACHE_MIB", default_value_t = Limits::default().cache_bytes / (1024 * 1024))]
    cache_mib: u64,
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
        /// Unique name (a-z 0-9 . _ -); with mutual TLS, the client certificate's common name.
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
    /// Revoke a principal's token.
    Revoke {
        #[command(flatten)]
        data: DataDir,
        #[arg(long)]
        name: String,
    },
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

async fn serve(args: ServeArgs) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let limits = Limits {
        write_queue_max: args.write_queue_max,
        requests_max: args.requests_max,
        call_timeout: Duration::from_millis(args.call_timeout_ms),
        cache_bytes: args.cache_mib * 1024 * 1024,
        ..Limits::default()
    };
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(Tls { cert, key, client_ca: args.tls_client_ca }),
        _ => None,
    };
    let config = Config { data_dir: args.data.data_dir, limits, tls, allow_plaintext: args.allow_plaintext };
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

fn name(text: &str) -> Result<PrincipalName, LedgerError> {
    PrincipalName::parse(text).map_err(|e| LedgerError::invalid_field("--name", e))
}

/// Runs a token command on the data directory with the same single writer the server uses.
async fn token(command: TokenCommand) -> Result<(), ServeError> {
    let dir = match &command {
        TokenCommand::Create { data, .. } | TokenCommand::List { data } | TokenCommand::Revoke { data, .. } => {
            data.data_dir.clone()
        }
    };
    let limits = Limits { cache_bytes: 64 * 1024 * 1024, ..Limits::default() };
    let (ledger, writer) = server::open_ledger(&dir, &limits).await?;
    let operator = ipledger::domain::principal::Principal {
        name: name("operator")?,
        role: Role::Admin,
        create_time: 0,
        revoke_time: None,
    };
    let result = match command {
        TokenCommand::Create { name: n, role: r, credit_code, region_code, .. } => {
            let (principal, token) =
                grpc::create_token(&ledger, &operator, name(&n)?, role(r, credit_code, region_code)?).await?;
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
            let principal = grpc::revoke_token(&ledger, &operator, name(&n)?).await?;
            eprintln!("revoked {}", principal.name);
            Ok(())
        }
    };
    drop(ledger);
    tokio::task::spawn_blocking(move || writer.join()).await.map_err(|e| std::io::Error::other(e.to_string()))?;
    result
}

fn describe(p: &ipledger::proto::Token) -> String {
    match ipledger::proto::TokenRole::try_from(p.role) {
        Ok(ipledger::proto::TokenRole::Bank) => format!("bank {}", p.credit_code),
        Ok(ipledger::proto::TokenRole::Office) => format!("office {}", p.region_code),
        _ => "admin".to_owned(),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ipledger: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Token { command } => token(command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "ipledger failed");
            eprintln!("ipledger: {e}");
            ExitCode::FAILURE
        }
    }
}

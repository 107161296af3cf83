//! The `ipledger` command: `ipledger serve` runs the gRPC server on an embedded store.

use clap::{Parser, Subcommand};
use ipledger::server::{self, Limits};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

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
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "IPLEDGER_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Directory of the store; created if missing.
    #[arg(long, env = "IPLEDGER_DATA_DIR", default_value = "./ipledger-data")]
    data_dir: PathBuf,
    /// Writes that may wait for the writer; beyond it writes get RESOURCE_EXHAUSTED.
    #[arg(long, env = "IPLEDGER_WRITE_QUEUE_MAX", default_value_t = Limits::default().write_queue_max)]
    write_queue_max: usize,
    /// Page cache of the store, in MiB.
    #[arg(long, env = "IPLEDGER_CACHE_MIB", default_value_t = Limits::default().cache_bytes / (1024 * 1024))]
    cache_mib: u64,
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
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
            Command::Serve(args) => {
                let listener = tokio::net::TcpListener::bind(args.listen).await.map_err(server::ServeError::Io)?;
                let limits = Limits {
                    write_queue_max: args.write_queue_max,
                    cache_bytes: args.cache_mib * 1024 * 1024,
                    ..Limits::default()
                };
                server::serve(listener, args.data_dir, limits, shutdown_signal()).await
            }
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

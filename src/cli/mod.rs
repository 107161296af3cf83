//! The command-line clients: import files, print exposure, run the benchmark. They talk to a
//! running server over gRPC, as any bank system would.

pub mod bench;
pub mod certificate;
pub mod import;
pub mod witness;

use ipledger::proto::exposure_service_client::ExposureServiceClient;
use ipledger::proto::journal_service_client::JournalServiceClient;
use ipledger::proto::pledge_service_client::PledgeServiceClient;
use std::path::PathBuf;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

/// The environment variable a token-taking command reads its bearer token from, when it is given
/// no `--token-file`. Never an argument: arguments are in every user's process list.
pub const TOKEN_ENV: &str = "IPLEDGER_TOKEN";

/// Bytes of a token file read at most: a token is 47 bytes.
const TOKEN_FILE_BYTES_MAX: u64 = 4096;

/// Where the server is and who we are.
#[derive(Debug, Clone, clap::Args)]
pub struct Connect {
    /// The server's address.
    #[arg(long, env = "IPLEDGER_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// A file holding the bearer token (for example `ipledger-data/admin.token`); without it, the
    /// token is read from the IPLEDGER_TOKEN environment variable (never from an argument).
    #[arg(long, env = "IPLEDGER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM CA that signed the server's certificate (for an https:// server).
    #[arg(long, env = "IPLEDGER_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

/// Adds the bearer token to every call.
#[derive(Debug, Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

pub type Authed = InterceptedService<Channel, Bearer>;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Usage(String),
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl Connect {
    /// The bearer token: the file's content when `--token-file` is given, else `IPLEDGER_TOKEN`.
    pub fn token(&self) -> Result<String, ClientError> {
        let token = match &self.token_file {
            Some(path) => {
                use std::io::Read;
                let mut text = String::new();
                std::fs::File::open(path)
                    .and_then(|f| f.take(TOKEN_FILE_BYTES_MAX).read_to_string(&mut text))
                    .map_err(|e| ClientError::Usage(format!("--token-file {}: {e}", path.display())))?;
                text
            }
            None => std::env::var(TOKEN_ENV).map_err(|_| {
                ClientError::Usage(format!("give the bearer token with --token-file <file> or in {TOKEN_ENV}"))
            })?,
        };
        let token = token.trim();
        if token.is_empty() {
            return Err(ClientError::Usage("the bearer token is empty".to_owned()));
        }
        Ok(token.to_owned())
    }

    pub async fn channel(&self) -> Result<(Channel, Bearer), ClientError> {
        let mut endpoint =
            Channel::from_shared(self.server.clone()).map_err(|e| ClientError::Usage(format!("--server: {e}")))?;
        if let Some(ca) = &self.ca_cert {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(ca)?)))?;
        }
        let header = format!("Bearer {}", self.token()?)
            .parse()
            .map_err(|_| ClientError::Usage("the bearer token is not a valid header value".to_owned()))?;
        Ok((endpoint.tcp_nodelay(true).connect().await?, Bearer(header)))
    }

    pub async fn pledges(&self) -> Result<PledgeServiceClient<Authed>, ClientError> {
        let (channel, bearer) = self.channel().await?;
        Ok(PledgeServiceClient::with_interceptor(channel, bearer))
    }

    pub async fn journal(&self) -> Result<JournalServiceClient<Authed>, ClientError> {
        let (channel, bearer) = self.channel().await?;
        Ok(JournalServiceClient::with_interceptor(channel, bearer))
    }

    pub async fn exposure(&self) -> Result<ExposureServiceClient<Authed>, ClientError> {
        let (channel, bearer) = self.channel().await?;
        Ok(ExposureServiceClient::with_interceptor(channel, bearer))
    }
}

/// Prints an exposure answer as an aligned table.
pub fn print_exposure(e: &ipledger::proto::GetExposureResponse) {
    let header = ["key", "name", "secured amount", "pledges", "enterprises", "rights", "credit limit", "credit drawn"];
    let mut rows: Vec<[String; 8]> = Vec::new();
    let cells = |r: &ipledger::proto::ExposureRow, key: &str| {
        [
            key.to_owned(),
            r.name.clone(),
            r.secured_amount.clone(),
            r.pledge_count.to_string(),
            r.enterprise_count.to_string(),
            r.right_count.to_string(),
            r.credit_limit.clone(),
            r.credit_drawn.clone(),
        ]
    };
    for r in &e.rows {
        rows.push(cells(r, &r.key));
    }
    if let Some(t) = &e.total {
        rows.push(cells(t, "total"));
    }
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).chain([header[i].len()]).max().unwrap_or(0);
    let widths: Vec<usize> = (0..8).map(width).collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = widths[i].saturating_sub(c.chars().count());
                // Text left, numbers right.
                if i < 2 { format!("{c}{}", " ".repeat(pad)) } else { format!("{}{c}", " ".repeat(pad)) }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!("{} {}", if e.region_code.is_empty() { "country" } else { &e.region_code }, e.region_name);
    println!("{}", line(&header.map(str::to_owned)));
    for r in &rows {
        println!("{}", line(r));
    }
    if e.rows_omitted > 0 {
        println!("({} smaller rows are left out; the total counts them)", e.rows_omitted);
    }
}

//! The command-line clients: import files, print exposure, run the benchmark. They talk to a
//! running server over gRPC, as any bank system would.

pub mod bench;
pub mod import;

use ipledger::proto::exposure_service_client::ExposureServiceClient;
use ipledger::proto::pledge_service_client::PledgeServiceClient;
use std::path::PathBuf;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

/// Where the server is and who we are.
#[derive(Debug, Clone, clap::Args)]
pub struct Connect {
    /// The server's address.
    #[arg(long, env = "IPLEDGER_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// A bearer token (for example `$(cat ipledger-data/admin.token)`).
    #[arg(long, env = "IPLEDGER_TOKEN", hide_env_values = true)]
    pub token: String,
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
    pub async fn channel(&self) -> Result<(Channel, Bearer), ClientError> {
        let mut endpoint =
            Channel::from_shared(self.server.clone()).map_err(|e| ClientError::Usage(format!("--server: {e}")))?;
        if let Some(ca) = &self.ca_cert {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(ca)?)))?;
        }
        let header = format!("Bearer {}", self.token.trim())
            .parse()
            .map_err(|_| ClientError::Usage("--token is not a valid header value".to_owned()))?;
        Ok((endpoint.tcp_nodelay(true).connect().await?, Bearer(header)))
    }

    pub async fn pledges(&self) -> Result<PledgeServiceClient<Authed>, ClientError> {
        let (channel, bearer) = self.channel().await?;
        Ok(PledgeServiceClient::with_interceptor(channel, bearer))
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
}

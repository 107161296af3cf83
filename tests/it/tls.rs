//! TLS and mutual TLS with certificates generated here: a bearer token over TLS, a client
//! certificate standing for a principal, untrusted or unknown certificates refused, and plaintext
//! refused on non-loopback addresses.

use crate::helpers::*;
use ipledger::proto::pledge_service_client::PledgeServiceClient;
use ipledger::proto::*;
use ipledger::server::{self, Config, Limits, Tls};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::path::Path;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

pub(crate) struct Pki {
    pub(crate) ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub(crate) fn new(name: &str) -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Pki { ca_pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// A certificate and key (PEM) for `common_name`, valid for localhost and 127.0.0.1.
    pub(crate) fn issue(&self, common_name: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, common_name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

pub(crate) struct TlsServer {
    pub(crate) server: TestServer,
    pub(crate) pki: Pki,
    pub(crate) _temp: tempfile::TempDir,
}

pub(crate) async fn start(mutual: bool) -> TlsServer {
    let temp = tempfile::tempdir().unwrap();
    let pki = Pki::new("ipledger test ca");
    let (cert, key) = pki.issue("localhost");
    let write = |name: &str, text: &str| {
        let path = temp.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let tls = Tls {
        cert: write("server.pem", &cert),
        key: write("server.key", &key),
        client_ca: mutual.then(|| write("ca.pem", &pki.ca_pem)),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = Config {
        limits: Limits { cache_bytes: 16 * 1024 * 1024, ..Limits::default() },
        tls: Some(tls),
        ..Config::new(temp.path().join("data"))
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = TestServer::start_with(listener, config, tx, rx).await;
    TlsServer { server, pki, _temp: temp }
}

pub(crate) async fn tls_channel(
    s: &TlsServer,
    identity: Option<(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&s.pki.ca_pem)).domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://127.0.0.1:{}", s.server.addr.port()))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_carries_bearer_tokens_and_refuses_plaintext_clients() {
    let s = start(false).await;
    let channel = tls_channel(&s, None).await.unwrap();
    let mut client = PledgeServiceClient::with_interceptor(channel, Bearer::new(&s.server.admin_token));
    let p = client.register_pledge(register(pledge("330108", "1"))).await.unwrap().into_inner();
    assert_eq!(p.created_by, "admin");
    // The container health check speaks TLS with the CA.
    let ca = s._temp.path().join("client-ca.pem");
    std::fs::write(&ca, &s.pki.ca_pem).unwrap();
    let url = format!("https://localhost:{}", s.server.addr.port());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ipledger"))
            .args(["health", "--server", &url, "--ca-cert"])
            .arg(&ca)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The same server spoken to in plaintext gives nothing away.
    let plaintext = Channel::from_shared(format!("http://{}", s.server.addr)).unwrap().connect().await;
    if let Ok(channel) = plaintext {
        let mut client = PledgeServiceClient::with_interceptor(channel, Bearer::new(&s.server.admin_token));
        assert!(client.get_pledge(GetPledgeRequest { id: p.id }).await.is_err());
    }
    s.server.stop().await;
}

#[tokio::test]
async fn a_client_certificate_stands_for_its_principal() {
    let s = start(true).await;
    let mut admin_rpc = ipledger::proto::admin_service_client::AdminServiceClient::with_interceptor(
        tls_channel(&s, None).await.unwrap(),
        Bearer::new(&s.server.admin_token),
    );
    let create = CreateTokenRequest {
        name: "bank-a".into(),
        role: TokenRole::Bank as i32,
        credit_code: BANK_A.into(),
        ..Default::default()
    };
    admin_rpc.create_token(create).await.unwrap();
    let mut admin =
        PledgeServiceClient::with_interceptor(tls_channel(&s, None).await.unwrap(), Bearer::new(&s.server.admin_token));
    let own = admin.register_pledge(register(pledge("330108", "1"))).await.unwrap().into_inner();
    let mut other = pledge("330108", "2");
    other.pledgee = Some(party("Bank B", BANK_B));
    admin.register_pledge(register(other)).await.unwrap();

    // No token: the certificate's common name is the principal, with its scope.
    let channel = tls_channel(&s, Some(s.pki.issue("bank-a"))).await.unwrap();
    let mut bank = PledgeServiceClient::with_interceptor(channel, Bearer::none());
    let listed = bank.list_pledges(ListPledgesRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.pledges.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), [own.id.as_str()]);
    let written = bank.register_pledge(register(pledge("330108", "3"))).await.unwrap().into_inner();
    assert_eq!(written.created_by, "bank-a");

    // A certificate naming no principal authenticates nobody.
    let channel = tls_channel(&s, Some(s.pki.issue("stranger"))).await.unwrap();
    let mut stranger = PledgeServiceClient::with_interceptor(channel, Bearer::none());
    assert_eq!(stranger.list_pledges(ListPledgesRequest::default()).await.unwrap_err().code(), Code::Unauthenticated);

    // A certificate from another CA is refused in the handshake.
    let rogue = Pki::new("rogue ca").issue("bank-a");
    if let Ok(channel) = tls_channel(&s, Some(rogue)).await {
        let mut client = PledgeServiceClient::with_interceptor(channel, Bearer::none());
        assert!(client.list_pledges(ListPledgesRequest::default()).await.is_err());
    }

    // Revoking the principal stops its certificate too.
    admin_rpc.revoke_token(RevokeTokenRequest { name: "bank-a".into() }).await.unwrap();
    assert_eq!(bank.list_pledges(ListPledgesRequest::default()).await.unwrap_err().code(), Code::Unauthenticated);
    s.server.stop().await;
}

#[tokio::test]
async fn plaintext_is_refused_on_non_loopback_addresses() {
    let temp = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let result = server::serve(listener, Config::new(temp.path().join("data")), async {}).await;
    assert!(matches!(result, Err(server::ServeError::PlaintextRefused(_))), "{result:?}");
    assert!(!Path::new(&temp.path().join("data")).exists(), "nothing is created before the refusal");
}

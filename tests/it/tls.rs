//! TLS and mutual TLS with certificates generated here: a bearer token over TLS, a client
//! certificate standing for the principal an admin bound it to (by subject or subject alternative
//! name, never by a name that happens to match), untrusted, unbound or ambiguous certificates
//! refused, and plaintext refused on non-loopback addresses.

use crate::helpers::*;
use ipledger::proto::pledge_service_client::PledgeServiceClient;
use ipledger::proto::*;
use ipledger::server::{self, Config, Limits, Tls};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use std::path::Path;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// Registrations here are a bank's, dated as a bank may date them (`recent`).
fn pledge(county: &str, amount: &str) -> Pledge {
    recent(crate::helpers::pledge(county, amount))
}

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

    /// A client certificate and key (PEM) with this subject (in this order) and these SANs.
    pub(crate) fn client(&self, subject: &[(DnType, &str)], sans: Vec<SanType>) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        // Without rcgen's default common name, so the subject is exactly the one given.
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params.subject_alt_names = sans;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_stands_only_for_the_principal_it_is_bound_to() {
    let s = start(true).await;
    let mut admin_rpc = ipledger::proto::admin_service_client::AdminServiceClient::with_interceptor(
        tls_channel(&s, None).await.unwrap(),
        Bearer::new(&s.server.admin_token),
    );
    for (name, code) in [("bank-a", BANK_A), ("bank-b", BANK_B)] {
        let create = CreateTokenRequest {
            name: name.into(),
            role: TokenRole::Bank as i32,
            credit_code: code.into(),
            ..Default::default()
        };
        admin_rpc.create_token(create).await.unwrap();
    }
    let mut admin =
        PledgeServiceClient::with_interceptor(tls_channel(&s, None).await.unwrap(), Bearer::new(&s.server.admin_token));
    let own = admin.register_pledge(register(pledge("330108", "1"))).await.unwrap().into_inner();
    let mut other = pledge("330108", "2");
    other.pledgee = Some(party("Bank B", BANK_B));
    admin.register_pledge(register(other)).await.unwrap();
    let list = |cert: (String, String)| async {
        let channel = tls_channel(&s, Some(cert)).await.unwrap();
        let mut client = PledgeServiceClient::with_interceptor(channel, Bearer::none());
        client.list_pledges(ListPledgesRequest::default()).await.map(|r| r.into_inner())
    };
    let refused = |result: Result<ListPledgesResponse, tonic::Status>| result.map(|_| ()).map_err(|s| s.code());

    // A name that happens to equal a principal's is nobody: CN=admin is not the admin.
    for cn in ["admin", "bank-a"] {
        let cert = s.pki.client(&[(DnType::CommonName, cn)], vec![]);
        assert_eq!(refused(list(cert).await), Err(Code::Unauthenticated), "CN={cn} without a binding");
    }

    // Bound by its exact subject (RFC 4514: the last RDN first).
    let subject =
        [(DnType::CountryName, "CN"), (DnType::OrganizationName, "Bank A, Hangzhou"), (DnType::CommonName, "teller")];
    let bind =
        |name: &str, binding: CertificateBinding| BindCertificateRequest { name: name.into(), binding: Some(binding) };
    let by_subject = CertificateBinding { subject: "CN=teller,O=Bank A\\, Hangzhou,C=CN".into(), ..Default::default() };
    let token = admin_rpc.bind_certificate(bind("bank-a", by_subject.clone())).await.unwrap().into_inner();
    assert_eq!(token.certificate_bindings, std::slice::from_ref(&by_subject));
    let bank_a_cert = s.pki.client(&subject, vec![]);
    {
        use tokio_rustls::rustls::pki_types::{CertificateDer, pem::PemObject};
        let der = CertificateDer::from_pem_slice(bank_a_cert.0.as_bytes()).unwrap();
        let read = ipledger::grpc::auth::certificate_bindings(&der);
        assert_eq!(read, [ipledger::ledger::principals::CertificateBinding::Subject(by_subject.subject.clone())]);
    }
    let listed = list(bank_a_cert.clone()).await.unwrap();
    assert_eq!(listed.pledges.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), [own.id.as_str()]);
    let channel = tls_channel(&s, Some(bank_a_cert.clone())).await.unwrap();
    let mut bank = PledgeServiceClient::with_interceptor(channel, Bearer::none());
    let written = bank.register_pledge(register(pledge("330108", "3"))).await.unwrap().into_inner();
    assert_eq!(written.created_by, "bank-a");
    // Another subject, even one that differs only in order, is nobody.
    let reordered = s.pki.client(&[subject[2].clone(), subject[1].clone(), subject[0].clone()], vec![]);
    assert_eq!(refused(list(reordered).await), Err(Code::Unauthenticated));

    // Bound by a subject alternative name: a URI (SPIFFE id) and a DNS name.
    let uri = "spiffe://bank-b.example/teller";
    let by_uri = CertificateBinding { uri: uri.into(), ..Default::default() };
    admin_rpc.bind_certificate(bind("bank-b", by_uri)).await.unwrap();
    let by_dns = CertificateBinding { dns_name: "Teller.Bank-B.example".into(), ..Default::default() };
    let token = admin_rpc.bind_certificate(bind("bank-b", by_dns)).await.unwrap().into_inner();
    assert_eq!(token.certificate_bindings.len(), 2);
    let san = |s: &str| SanType::URI(s.try_into().unwrap());
    let dns = |s: &str| SanType::DnsName(s.try_into().unwrap());
    for sans in [vec![dns("x.example"), san(uri)], vec![dns("teller.bank-b.example")]] {
        let cert = s.pki.client(&[(DnType::CommonName, "bank-a")], sans);
        let listed = list(cert).await.unwrap();
        assert!(listed.pledges.iter().all(|p| p.pledgee.as_ref().unwrap().credit_code == BANK_B), "bank-b's book");
        assert_eq!(listed.pledges.len(), 1);
    }
    // Bindings of two principals in one certificate: nobody.
    let both = s.pki.client(&subject, vec![san(uri)]);
    assert_eq!(refused(list(both).await), Err(Code::Unauthenticated));
    // A binding belongs to one principal.
    let taken = admin_rpc.bind_certificate(bind("bank-b", by_subject)).await.unwrap_err();
    assert_eq!(failure(taken), (Code::FailedPrecondition, "CERTIFICATE_ALREADY_BOUND".to_owned(), vec![]));
    let empty = admin_rpc.bind_certificate(bind("bank-b", CertificateBinding::default())).await.unwrap_err();
    assert_eq!(failure(empty), (Code::InvalidArgument, "INVALID_FIELDS".to_owned(), vec!["binding".to_owned()]));
    // Only an admin binds.
    let channel = tls_channel(&s, Some(bank_a_cert.clone())).await.unwrap();
    let mut bank_admin =
        ipledger::proto::admin_service_client::AdminServiceClient::with_interceptor(channel, Bearer::none());
    let by_email = CertificateBinding { email: "teller@bank-a.example".into(), ..Default::default() };
    let denied = bank_admin.bind_certificate(bind("admin", by_email)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // A certificate from another CA is refused in the handshake.
    let rogue = Pki::new("rogue ca").client(&subject, vec![]);
    if let Ok(channel) = tls_channel(&s, Some(rogue)).await {
        let mut client = PledgeServiceClient::with_interceptor(channel, Bearer::none());
        assert!(client.list_pledges(ListPledgesRequest::default()).await.is_err());
    }

    // Revoking the principal stops its certificates too, on open connections as on new ones.
    admin_rpc.revoke_token(RevokeTokenRequest { name: "bank-a".into() }).await.unwrap();
    assert_eq!(bank.list_pledges(ListPledgesRequest::default()).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(refused(list(bank_a_cert).await), Err(Code::Unauthenticated));
    let dir = s.server.dir.clone();
    let temp = s.server.stop().await;

    // Bindings are derived from the journal (the verifier rebuilds them) and kept across runs.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ipledger"))
        .args(["verify", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let offline = std::process::Command::new(env!("CARGO_BIN_EXE_ipledger"))
        .args(["token", "bind", "--name", "bank-b", "--email", "teller@bank-b.example", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&offline.stdout);
    assert!(offline.status.success(), "{}", String::from_utf8_lossy(&offline.stderr));
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [&format!("uri:{uri}"), "dns:teller.bank-b.example", "email:teller@bank-b.example"]
    );
    drop(temp);
    drop(s._temp);
}

#[tokio::test]
async fn plaintext_is_refused_on_non_loopback_addresses() {
    let temp = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let result = server::serve(listener, Config::new(temp.path().join("data")), async {}).await;
    assert!(matches!(result, Err(server::ServeError::PlaintextRefused(_))), "{result:?}");
    assert!(!Path::new(&temp.path().join("data")).exists(), "nothing is created before the refusal");
}

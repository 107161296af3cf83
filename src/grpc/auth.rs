//! Authentication: every request (but health checks, which orchestrators send without
//! credentials, and reflection, which shows only the published schema) must carry a live bearer
//! token, or come over mutual TLS with a verified client certificate that an admin bound to a live
//! principal (`BindCertificate`: its exact RFC 4514 subject, or one of its subject alternative
//! names). A name inside a certificate means nothing by itself: a certificate with `CN=admin` is
//! nobody unless it was bound. The principal found is put into the request's extensions for the
//! handlers' scope checks.

use crate::domain::LedgerError;
use crate::domain::principal::{Principal, TOKEN_PREFIX, token_hash};
use crate::ledger::Ledger;
use crate::ledger::principals::CertificateBinding;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The interceptor in front of every ledger, admin and reflection service.
#[derive(Debug, Clone)]
pub struct Authenticate {
    pub ledger: Ledger,
    /// Whether client certificates may stand for principals (mutual TLS is configured).
    pub client_certificates: bool,
}

fn unauthenticated(message: &str) -> Status {
    super::status::to_status(LedgerError::Unauthenticated(message.to_owned()))
}

/// Subject alternative names read from one certificate at most.
const NAMES_MAX: usize = 256;

/// Everything of a certificate that a binding may match: its subject as an RFC 4514 string, and
/// its DNS, URI and email subject alternative names. Empty when the certificate does not parse.
pub fn certificate_bindings(der: &[u8]) -> Vec<CertificateBinding> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else { return Vec::new() };
    let mut found = Vec::new();
    if let Some(subject) = rfc4514(cert.subject()) {
        found.push(CertificateBinding::Subject(subject));
    }
    if let Ok(Some(names)) = cert.subject_alternative_name() {
        for name in names.value.general_names.iter().take(NAMES_MAX) {
            match name {
                GeneralName::DNSName(n) => found.push(CertificateBinding::DnsName(n.to_ascii_lowercase())),
                GeneralName::URI(u) => found.push(CertificateBinding::Uri((*u).to_owned())),
                GeneralName::RFC822Name(e) => found.push(CertificateBinding::Email((*e).to_owned())),
                _ => {}
            }
        }
    }
    found
}

/// RFC 4514: the RDNs from last to first joined by ",", the attributes of one RDN by "+", each
/// `TYPE=value` with the special characters escaped. `None` for values that are not strings.
fn rfc4514(name: &x509_parser::x509::X509Name<'_>) -> Option<String> {
    let mut rdns = Vec::new();
    for rdn in name.iter() {
        let mut attributes = Vec::new();
        for attribute in rdn.iter() {
            let oid = attribute.attr_type().to_id_string();
            let short = match oid.as_str() {
                "2.5.4.3" => "CN",
                "2.5.4.6" => "C",
                "2.5.4.7" => "L",
                "2.5.4.8" => "ST",
                "2.5.4.9" => "STREET",
                "2.5.4.10" => "O",
                "2.5.4.11" => "OU",
                "0.9.2342.19200300.100.1.25" => "DC",
                "0.9.2342.19200300.100.1.1" => "UID",
                other => other,
            };
            attributes.push(format!("{short}={}", escape_rfc4514(attribute.as_str().ok()?)));
        }
        rdns.push(attributes.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

fn escape_rfc4514(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let principal = self.principal(&request)?;
        request.extensions_mut().insert(principal);
        Ok(request)
    }
}

impl Authenticate {
    fn principal(&self, request: &Request<()>) -> Result<Principal, Status> {
        if let Some(found) = self.bearer(request.metadata()) {
            return found;
        }
        // The first certificate is the client's own (the rest is its chain), verified by TLS.
        if self.client_certificates
            && let Some(certs) = request.peer_certs()
            && let Some(leaf) = certs.first()
        {
            return self.ledger.principals().by_certificate(&certificate_bindings(leaf.as_ref())).ok_or_else(|| {
                unauthenticated("the client certificate is bound to no live principal (or to more than one)")
            });
        }
        Err(unauthenticated("missing `authorization: Bearer <token>` metadata"))
    }

    /// The principal of the `authorization: Bearer <token>` header, if there is one (also used by
    /// the HTTP JSON API, which has no client certificates).
    pub fn bearer(&self, metadata: &tonic::metadata::MetadataMap) -> Option<Result<Principal, Status>> {
        let value = metadata.get("authorization")?;
        let found = (|| {
            let value = value.to_str().map_err(|_| unauthenticated("the authorization header is not text"))?;
            let token = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .ok_or_else(|| unauthenticated("the authorization header must be `Bearer <token>`"))?
                .trim();
            if !token.starts_with(TOKEN_PREFIX) {
                return Err(unauthenticated("malformed bearer token"));
            }
            // Only the hash is compared; the token itself is never logged or stored.
            self.ledger
                .principals()
                .by_token(&token_hash(token))
                .ok_or_else(|| unauthenticated("unknown or revoked token"))
        })();
        Some(found)
    }
}

/// The principal the interceptor authenticated.
pub fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request.extensions().get::<Principal>().cloned().ok_or_else(|| unauthenticated("no principal on the request"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(value: &str, escaped: &str) {
        assert_eq!(escape_rfc4514(value), escaped);
    }

    #[test]
    fn rfc4514_escapes_what_would_change_the_name() {
        check("bank-a", "bank-a");
        check("Bank A, Hangzhou", "Bank A\\, Hangzhou");
        check("#1 +plus; <x> \"q\" \\", "\\#1 \\+plus\\; \\<x\\> \\\"q\\\" \\\\");
        check(" padded ", "\\ padded\\ ");
        check("杭州银行", "杭州银行");
    }
}

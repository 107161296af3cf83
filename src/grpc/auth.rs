//! Authentication: every request (but health checks, which orchestrators send without
//! credentials) must carry a live bearer token, or come over mutual TLS with a client certificate
//! whose subject common name is a principal's name. The principal found is put into the request's
//! extensions for the handlers' scope checks.

use crate::domain::LedgerError;
use crate::domain::principal::{Principal, PrincipalName, TOKEN_PREFIX, token_hash};
use crate::ledger::Ledger;
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

/// The common name of a certificate's subject.
fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_owned();
    Some(cn)
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
        if self.client_certificates
            && let Some(certs) = request.peer_certs()
            && let Some(cn) = certs.first().and_then(|c| common_name(c.as_ref()))
        {
            let name =
                PrincipalName::parse(&cn).map_err(|_| unauthenticated("the client certificate names no principal"))?;
            return self
                .ledger
                .principals()
                .by_name(&name)
                .ok_or_else(|| unauthenticated("the client certificate's principal is unknown or revoked"));
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

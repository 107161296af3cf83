//! The token use cases, shared by the AdminService and the offline `ipledger token` command: they
//! return domain records, so the CLI does not depend on the transport.

use super::principals::PrincipalRecord;
use super::{Command, Ledger, Outcome};
use crate::domain::LedgerError;
use crate::domain::principal::{Principal, PrincipalName, Role};

/// Creates a principal with a fresh random token; returns its record and the token (shown once).
pub async fn create(
    ledger: &Ledger,
    actor: &Principal,
    name: PrincipalName,
    role: Role,
) -> Result<(PrincipalRecord, String), LedgerError> {
    let token = crate::domain::principal::new_token().map_err(|e| LedgerError::Unavailable(e.to_string()))?;
    let token_hash = crate::domain::principal::token_hash(&token);
    let record = principal(ledger.write(actor, Command::CreatePrincipal { name, role, token_hash }).await?)?;
    Ok((record, token))
}

/// Revokes a principal: its token (and anything bound to it) stops working once this returns.
pub async fn revoke(ledger: &Ledger, actor: &Principal, name: PrincipalName) -> Result<PrincipalRecord, LedgerError> {
    principal(ledger.write(actor, Command::RevokePrincipal { name }).await?)
}

fn principal((outcome, _): (Outcome, bool)) -> Result<PrincipalRecord, LedgerError> {
    match outcome {
        Outcome::Principal(record) => Ok(record),
        _ => Err(LedgerError::Internal("a token write produced another resource".to_owned())),
    }
}

//! The token use cases, shared by the AdminService and the offline `ipledger token` command: they
//! return domain records, so the CLI does not depend on the transport.

use super::principals::{CertificateBinding, PrincipalRecord};
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

/// Binds client certificates matching `binding` to the live principal `name`; returns its record
/// and all its bindings.
pub async fn bind_certificate(
    ledger: &Ledger,
    actor: &Principal,
    name: PrincipalName,
    binding: CertificateBinding,
) -> Result<(PrincipalRecord, Vec<CertificateBinding>), LedgerError> {
    let record = principal(ledger.write(actor, Command::BindCertificate { name: name.clone(), binding }).await?)?;
    let bindings = ledger.read(move |store| super::principals::Principals::bindings(store, &name)).await?;
    Ok((record, bindings))
}

fn principal((outcome, _, _): (Outcome, bool, u64)) -> Result<PrincipalRecord, LedgerError> {
    match outcome {
        Outcome::Principal(record) => Ok(record),
        _ => Err(LedgerError::Internal("a token write produced another resource".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, Store};
    use std::sync::Arc;

    fn admin() -> Principal {
        Principal {
            name: PrincipalName::parse("operator").unwrap(),
            role: Role::Admin,
            create_time: 0,
            revoke_time: None,
        }
    }

    #[tokio::test]
    async fn bindings_authenticate_until_revoked_and_are_loaded_again_at_start() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let journal: Arc<dyn crate::ledger::journal::Journal> =
            Arc::new(crate::ledger::journal::MemoryJournal::default());
        let signer = || crate::ledger::signing::Signer::ephemeral().unwrap();
        let (ledger, writer) =
            Ledger::start(journal.clone(), store.clone(), signer(), crate::ledger::Options::small()).unwrap();
        let subject = CertificateBinding::Subject("CN=teller,O=Bank A".to_owned());
        let dns = CertificateBinding::DnsName("teller.bank-a.example".to_owned());
        for name in ["bank-a", "bank-b"] {
            create(&ledger, &admin(), PrincipalName::parse(name).unwrap(), Role::Admin).await.unwrap();
        }
        let bank_a = PrincipalName::parse("bank-a").unwrap();
        let (_, bound) = bind_certificate(&ledger, &admin(), bank_a.clone(), subject.clone()).await.unwrap();
        assert_eq!(bound, std::slice::from_ref(&subject));
        bind_certificate(&ledger, &admin(), PrincipalName::parse("bank-b").unwrap(), dns.clone()).await.unwrap();
        let found = |ledger: &Ledger, presented: &[CertificateBinding]| {
            ledger.principals().by_certificate(presented).map(|p| p.name.to_string())
        };
        assert_eq!(found(&ledger, std::slice::from_ref(&subject)).as_deref(), Some("bank-a"));
        assert_eq!(found(&ledger, &[subject.clone(), dns.clone()]), None, "two principals");
        assert_eq!(found(&ledger, &[CertificateBinding::Subject("CN=bank-a".to_owned())]), None);
        drop(ledger);
        writer.join();

        let (ledger, writer) = Ledger::start(journal, store, signer(), crate::ledger::Options::small()).unwrap();
        assert_eq!(found(&ledger, std::slice::from_ref(&subject)).as_deref(), Some("bank-a"), "loaded at start");
        revoke(&ledger, &admin(), bank_a).await.unwrap();
        assert_eq!(found(&ledger, &[subject]), None, "revoked");
        assert_eq!(found(&ledger, &[dns]).as_deref(), Some("bank-b"));
        drop(ledger);
        writer.join();
    }
}

//! Principals, tokens, certificate bindings and the journal: admin requests in; tokens, journal
//! events and verification reports out.

use super::*;
use crate::domain::principal::{Principal, PrincipalName, Role};
use crate::ledger::Outcome;
use crate::ledger::journal::Entry;
use crate::ledger::journal::Event;

pub fn token_to_pb(p: &Principal) -> pb::Token {
    let (role, credit_code, region_code) = match &p.role {
        Role::Admin => (pb::TokenRole::Admin, String::new(), String::new()),
        Role::Bank(code) => (pb::TokenRole::Bank, code.to_string(), String::new()),
        Role::Office(region) => (pb::TokenRole::Office, String::new(), region.code_string()),
    };
    pb::Token {
        name: p.name.to_string(),
        role: role as i32,
        credit_code,
        region_code,
        create_time: Some(timestamp(p.create_time)),
        revoke_time: optional_timestamp(p.revoke_time),
        certificate_bindings: Vec::new(),
    }
}

/// Parses a token request into the principal's name and role.
pub fn token_request(request: &pb::CreateTokenRequest) -> Result<(PrincipalName, Role), LedgerError> {
    let mut f = Fields::default();
    let name = f.check("name", PrincipalName::parse_new(&request.name));
    let role = match pb::TokenRole::try_from(request.role) {
        Ok(pb::TokenRole::Admin) => Some(Role::Admin),
        Ok(pb::TokenRole::Bank) => f.check("creditCode", CreditCode::parse(&request.credit_code)).map(Role::Bank),
        Ok(pb::TokenRole::Office) => {
            if request.region_code.trim().is_empty() {
                f.fail("regionCode", "is required for an office (a province, city or county code)");
                None
            } else {
                f.check("regionCode", Region::parse(&request.region_code)).map(Role::Office)
            }
        }
        Ok(pb::TokenRole::Unspecified) | Err(_) => {
            f.fail("role", "must be ADMIN, BANK or OFFICE");
            None
        }
    };
    f.finish()?;
    let (Some(name), Some(role)) = (name, role) else {
        return Err(unrecorded());
    };
    Ok((name, role))
}

/// A feed event: the entry, with the pledge it touched right after it and right before it (read
/// from the pledge's record by the caller), and the principal's record for principal events.
pub fn signed_head_to_pb(head: &crate::ledger::signing::SignedHead) -> pb::SignedHead {
    use crate::ledger::journal::hex;
    pb::SignedHead {
        sequence: head.sequence,
        hash: hex(&head.hash),
        public_key: hex(&head.public_key),
        signature: hex(&head.signature),
    }
}

/// Parses a signed head as the API returns it (for clients checking proofs).
pub fn signed_head_from_pb(head: &pb::SignedHead) -> Option<crate::ledger::signing::SignedHead> {
    use crate::ledger::signing::from_hex;
    Some(crate::ledger::signing::SignedHead {
        sequence: head.sequence,
        hash: from_hex(&head.hash)?.try_into().ok()?,
        public_key: from_hex(&head.public_key)?.try_into().ok()?,
        signature: from_hex(&head.signature)?.try_into().ok()?,
    })
}

pub fn journal_event_to_pb(entry: &Entry, pledges: &FeedPledges) -> pb::JournalEvent {
    let mut event = pb::JournalEvent {
        sequence: entry.sequence,
        time: Some(timestamp(entry.at)),
        principal: entry.principal.to_string(),
        request_id: entry.request.map(|r| r.id.to_string()).unwrap_or_default(),
        event: entry.event.name().to_owned(),
        hash: crate::ledger::journal::hex(&entry.hash),
        ..Default::default()
    };
    event.pledge = pledges.after.as_ref().map(pledge_to_pb);
    event.pledge_before = pledges.before.as_ref().map(pledge_to_pb);
    match &entry.event {
        Event::CreditLineCreated { line } => event.credit_line = Some(credit_line_to_pb(line)),
        Event::PrincipalCreated { record } => event.token = Some(token_to_pb(&record.principal)),
        Event::PrincipalRevoked { .. } => event.token = pledges.principal.as_ref().map(token_to_pb),
        Event::CertificateBound { binding, .. } => {
            event.token = pledges.principal.as_ref().map(|p| {
                let mut token = token_to_pb(p);
                token.certificate_bindings.push(certificate_binding_to_pb(binding));
                token
            });
        }
        _ => {}
    }
    match &pledges.risk {
        Some(Outcome::Right(r)) => event.right = Some(right_record_to_pb(r)),
        Some(Outcome::Default(d)) => event.default = Some(default_to_pb(d)),
        Some(Outcome::Valuation(v)) => event.valuation = Some(valuation_to_pb(v)),
        Some(Outcome::Programme(p)) => event.programme = Some(programme_to_pb(p, None)),
        Some(Outcome::Claim(c)) => event.claim = Some(claim_to_pb(c)),
        Some(
            Outcome::Pledge(..)
            | Outcome::CreditLine(_)
            | Outcome::Principal(_)
            | Outcome::Cosigned(_)
            | Outcome::AlertPolicy(_)
            | Outcome::DayOpened(_),
        )
        | None => {}
    }
    event
}

/// What a feed event shows besides its entry, read from derived state.
#[derive(Debug, Default)]
pub struct FeedPledges {
    pub after: Option<crate::domain::pledge::Pledge>,
    pub before: Option<crate::domain::pledge::Pledge>,
    /// The principal of a revocation or binding, as it was right after the entry.
    pub principal: Option<crate::domain::principal::Principal>,
    /// The risk side's resource of a risk entry, as it was right after the entry.
    pub risk: Option<crate::ledger::Outcome>,
    /// The alerts the entry raised (`ledger::alerts`), all of them: the feed keeps the watcher's.
    pub alerts: Vec<crate::domain::alert::Alert>,
}

pub fn verify_report_to_pb(report: &crate::ledger::replay::Report) -> pb::VerifyJournalResponse {
    pb::VerifyJournalResponse {
        ok: report.divergence.is_none(),
        entries: report.entries,
        head_hash: crate::ledger::journal::hex(&report.head),
        keys_compared: report.keys_compared,
        divergence: report.divergence.as_ref().map(|d| pb::Divergence {
            sequence: d.sequence,
            key: d.key.clone(),
            expected: d.expected.clone(),
            found: d.found.clone(),
        }),
    }
}

/// Parses a BindCertificate request: a principal's name and exactly one binding.
pub fn bind_certificate_request(
    request: &pb::BindCertificateRequest,
) -> Result<(PrincipalName, crate::ledger::principals::CertificateBinding), LedgerError> {
    use crate::ledger::principals::CertificateBinding;
    let mut f = Fields::default();
    let name = f.check("name", PrincipalName::parse(&request.name));
    let given = request.binding.clone().unwrap_or_default();
    type Kind = fn(String) -> CertificateBinding;
    let kinds: [(&str, &str, Kind); 4] = [
        ("binding.subject", &given.subject, CertificateBinding::Subject),
        ("binding.dnsName", &given.dns_name, CertificateBinding::DnsName),
        ("binding.uri", &given.uri, CertificateBinding::Uri),
        ("binding.email", &given.email, CertificateBinding::Email),
    ];
    let set: Vec<_> = kinds.iter().filter(|(_, value, _)| !value.trim().is_empty()).collect();
    let binding = match set.as_slice() {
        [(field, value, kind)] => f.check(*field, CertificateBinding::new(*kind, value)),
        _ => {
            f.fail("binding", "set exactly one of subject, dnsName, uri and email");
            None
        }
    };
    f.finish()?;
    let (Some(name), Some(binding)) = (name, binding) else {
        return Err(unrecorded());
    };
    Ok((name, binding))
}

pub fn certificate_binding_to_pb(binding: &crate::ledger::principals::CertificateBinding) -> pb::CertificateBinding {
    use crate::ledger::principals::CertificateBinding;
    let mut answer = pb::CertificateBinding::default();
    let field = match binding {
        CertificateBinding::Subject(_) => &mut answer.subject,
        CertificateBinding::DnsName(_) => &mut answer.dns_name,
        CertificateBinding::Uri(_) => &mut answer.uri,
        CertificateBinding::Email(_) => &mut answer.email,
    };
    binding.value().clone_into(field);
    answer
}

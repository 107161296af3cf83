//! Who may do what: principals (a bank bound to its credit code, an office bound to a region, an
//! admin), their bearer tokens (random, stored only as SHA-256 hashes), and the scope rules every
//! read and write is checked against.

use super::Micros;
use super::error::LedgerError;
use super::ident::CreditCode;
use super::region::Region;
use chrono::NaiveDate;
use sha2::{Digest, Sha256};
use std::fmt;

/// A principal's unique name: 1 to 64 of `a-z 0-9 . _ -`. It is what records say made a write,
/// and what a client certificate's common name maps to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct PrincipalName(String);

impl PrincipalName {
    pub fn parse(text: &str) -> Result<PrincipalName, &'static str> {
        let t = text.trim();
        let valid = !t.is_empty()
            && t.len() <= 64
            && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            Ok(PrincipalName(t.to_owned()))
        } else {
            Err("must be 1 to 64 characters of a-z, 0-9, '.', '_' or '-'")
        }
    }

    /// A name for a new principal: the names the ledger itself writes under are reserved, so the
    /// audit trail cannot confuse an operator's offline command with a caller.
    pub fn parse_new(text: &str) -> Result<PrincipalName, &'static str> {
        let name = PrincipalName::parse(text)?;
        if RESERVED_NAMES.contains(&name.as_str()) {
            return Err("is reserved (system, operator)");
        }
        Ok(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `system` bootstraps the first admin; `operator` is whoever runs `ipledger token` offline.
pub const RESERVED_NAMES: [&str; 2] = ["system", "operator"];

impl fmt::Display for PrincipalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for PrincipalName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PrincipalName::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Role {
    /// Everything, including managing principals.
    Admin,
    /// A bank's own book: pledges whose pledgee it is, credit lines it signed.
    Bank(CreditCode),
    /// An IP office's jurisdiction: everything inside the region.
    Office(Region),
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Admin => f.write_str("admin"),
            Role::Bank(code) => write!(f, "bank {code}"),
            Role::Office(region) => write!(f, "office {region}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Principal {
    pub name: PrincipalName,
    pub role: Role,
    pub create_time: Micros,
    /// Set once revoked; a revoked principal's token no longer authenticates.
    pub revoke_time: Option<Micros>,
}

/// SHA-256 of a bearer token: the only form in which a token is stored.
pub type TokenHash = [u8; 32];

/// Bearer tokens are `ipl_` followed by 43 URL-safe base64 characters: 256 random bits.
pub const TOKEN_PREFIX: &str = "ipl_";

/// A fresh bearer token from the operating system's random source.
pub fn new_token() -> Result<String, getrandom::Error> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
}

/// A token an operator made (for a secret store): `ipl_` and at least 22 URL-safe base64
/// characters, so it carries 128 random bits at least.
pub fn parse_given_token(token: &str) -> Result<&str, &'static str> {
    let Some(body) = token.strip_prefix(TOKEN_PREFIX) else {
        return Err("must start with ipl_");
    };
    if body.len() < 22 || body.len() > 256 || !body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("must be ipl_ followed by 22 to 256 URL-safe base64 characters (128 bits or more)");
    }
    Ok(token)
}

pub fn token_hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// Days before today a bank's registration may be dated: CNIPA decides a pledge registration
/// within days of the application and sends its notice electronically; a month covers the notice's
/// way to the bank and a month-end batch.
pub const BANK_REGISTRATION_DAYS_MAX: u64 = 30;

/// A refusal for want of permission (also used by `access`, the checks on pledges and lines).
pub(super) fn denied(message: String) -> LedgerError {
    LedgerError::PermissionDenied(message)
}

/// What a principal's role lets it do; each check returns PERMISSION_DENIED with the reason.
impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    pub fn require_admin(&self) -> Result<(), LedgerError> {
        if self.is_admin() { Ok(()) } else { Err(denied(format!("{} may not manage principals", self.name))) }
    }

    /// The date a registration may carry, decided by the writer with its own `today` (China time,
    /// where registrations are dated): never after today; a bank's within
    /// `BANK_REGISTRATION_DAYS_MAX` days before it, so that a bank cannot choose a date against a
    /// right's record, a programme's window or a year's lending. Older registrations are historical
    /// backfill, imported by an IP office or the admin from the register.
    pub fn may_date_registration(&self, registered_on: NaiveDate, today: NaiveDate) -> Result<(), LedgerError> {
        if registered_on > today {
            return Err(LedgerError::invalid_field(
                "pledge.registeredOn",
                format!("must not be after today ({today}, China time)"),
            ));
        }
        let earliest = today - chrono::Days::new(BANK_REGISTRATION_DAYS_MAX);
        if matches!(self.role, Role::Bank(_)) && registered_on < earliest {
            return Err(LedgerError::invalid_field(
                "pledge.registeredOn",
                format!(
                    "a bank records a registration within {BANK_REGISTRATION_DAYS_MAX} days of its date (from \
                     {earliest}); an IP office or the admin imports older ones from the register"
                ),
            ));
        }
        Ok(())
    }

    /// Reading the journal: its raw entries and verification are an admin's.
    pub fn require_admin_for(&self, what: &str) -> Result<(), LedgerError> {
        if self.is_admin() { Ok(()) } else { Err(denied(format!("{} may not {what}", self.name))) }
    }

    /// Recording a right's state from a register: offices (registers are national, and an office
    /// records what CNIPA's gazette says of any right) and admins; a bank's word is no register.
    pub fn may_record_right(&self) -> Result<(), LedgerError> {
        match &self.role {
            Role::Admin | Role::Office(_) => Ok(()),
            Role::Bank(_) => Err(denied(format!("bank {} may not record rights; an IP office does", self.name))),
        }
    }

    /// Creating and running (deciding claims, paying) a programme of `region`: the offices whose
    /// region contains it, and admins.
    pub fn may_run_programme(&self, region: Region) -> Result<(), LedgerError> {
        match &self.role {
            Role::Admin => Ok(()),
            Role::Office(scope) if scope.contains(region) => Ok(()),
            _ => Err(denied(format!("{} may not run programmes of region {region}", self.name))),
        }
    }

    /// Reading a claim: the bank that filed it, the offices whose region holds the pledge's county
    /// (which lies inside the programme's region, so the programme's offices are among them),
    /// admins.
    pub fn may_read_claim(&self, bank: &CreditCode, county: Region) -> bool {
        match &self.role {
            Role::Admin => true,
            Role::Bank(code) => code == bank,
            Role::Office(scope) => scope.contains(county),
        }
    }

    /// The region a listing or exposure query may cover: `requested` if it lies inside the
    /// principal's scope, the scope itself when nothing was requested.
    pub fn scope_region(&self, requested: Option<Region>) -> Result<Option<Region>, LedgerError> {
        match (&self.role, requested) {
            (Role::Office(scope), None) => Ok(Some(*scope)),
            (Role::Office(scope), Some(r)) if scope.contains(r) => Ok(Some(r)),
            (Role::Office(scope), Some(r)) => Err(denied(format!("region {r} lies outside office region {scope}"))),
            (_, requested) => Ok(requested),
        }
    }

    /// The pledgee (or bank) a listing may cover: a bank sees only itself.
    pub fn scope_bank(&self, requested: Option<CreditCode>) -> Result<Option<CreditCode>, LedgerError> {
        match (&self.role, requested) {
            (Role::Bank(own), None) => Ok(Some(own.clone())),
            (Role::Bank(own), Some(r)) if *own == r => Ok(Some(r)),
            (Role::Bank(own), Some(r)) => Err(denied(format!("bank {own} may not read bank {r}'s book"))),
            (_, requested) => Ok(requested),
        }
    }
}

/// What of a verified client certificate binds it to a principal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum CertificateBinding {
    /// The certificate's full subject as an RFC 4514 string (`CN=bank-a,O=Bank A,C=CN`), exactly.
    Subject(String),
    /// A DNS name among its subject alternative names (compared in lower case).
    DnsName(String),
    /// A URI among its subject alternative names (a SPIFFE id, for example), exactly.
    Uri(String),
    /// An email address (rfc822Name) among its subject alternative names, exactly.
    Email(String),
}

/// Characters of a binding's value at most.
pub const BINDING_CHARS_MAX: usize = 1024;
/// Bindings of one principal at most: a few certificates rotate, not thousands.
pub const BINDINGS_PER_PRINCIPAL_MAX: usize = 64;

impl CertificateBinding {
    /// Checks a binding's value: not empty, bounded, printable, with what its kind needs.
    pub fn new(kind: fn(String) -> CertificateBinding, value: &str) -> Result<CertificateBinding, &'static str> {
        let value = value.trim();
        if value.is_empty() || value.chars().count() > BINDING_CHARS_MAX || value.chars().any(char::is_control) {
            return Err("must be 1 to 1024 printable characters");
        }
        let binding = kind(value.to_owned());
        match &binding {
            CertificateBinding::Subject(v) if !v.contains('=') => {
                Err("must be an RFC 4514 name such as CN=bank-a,O=Bank A")
            }
            CertificateBinding::DnsName(v)
                if !v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'*')) =>
            {
                Err("must be a DNS name")
            }
            CertificateBinding::DnsName(v) => Ok(CertificateBinding::DnsName(v.to_ascii_lowercase())),
            CertificateBinding::Uri(v) | CertificateBinding::Email(v) if v.contains(char::is_whitespace) => {
                Err("must not contain spaces")
            }
            CertificateBinding::Email(v) if !v.contains('@') => Err("must be an email address"),
            _ => Ok(binding),
        }
    }

    /// One byte naming the kind, for keys.
    pub fn kind_byte(&self) -> u8 {
        match self {
            CertificateBinding::Subject(_) => b's',
            CertificateBinding::DnsName(_) => b'd',
            CertificateBinding::Uri(_) => b'u',
            CertificateBinding::Email(_) => b'e',
        }
    }

    pub fn value(&self) -> &str {
        match self {
            CertificateBinding::Subject(v)
            | CertificateBinding::DnsName(v)
            | CertificateBinding::Uri(v)
            | CertificateBinding::Email(v) => v,
        }
    }
}

impl std::fmt::Display for CertificateBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            CertificateBinding::Subject(_) => "subject",
            CertificateBinding::DnsName(_) => "dns",
            CertificateBinding::Uri(_) => "uri",
            CertificateBinding::Email(_) => "email",
        };
        write!(f, "{kind}:{}", self.value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(PrincipalName::parse("icbc-hangzhou.01").is_ok());
        assert!(PrincipalName::parse("").is_err());
        assert!(PrincipalName::parse("Upper").is_err());
        assert!(PrincipalName::parse(&"a".repeat(65)).is_err());
        assert!(PrincipalName::parse_new("operator").is_err());
        assert!(PrincipalName::parse_new("system").is_err());
    }

    #[test]
    fn given_tokens() {
        assert!(parse_given_token(&new_token().unwrap()).is_ok());
        assert!(parse_given_token("ipl_short").is_err());
        assert!(parse_given_token("abc_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").is_err());
        assert!(parse_given_token("ipl_AAAAAAAAAAAAAAAAAAAAAA+A").is_err());
    }

    #[test]
    fn scopes() {
        let principal =
            |role| Principal { name: PrincipalName::parse("p").unwrap(), role, create_time: 0, revoke_time: None };
        let zj = Region::parse("330000").unwrap();
        let hz = Region::parse("330100").unwrap();
        let js = Region::parse("320000").unwrap();
        let office = principal(Role::Office(zj));
        assert_eq!(office.scope_region(None).unwrap(), Some(zj));
        assert_eq!(office.scope_region(Some(hz)).unwrap(), Some(hz));
        assert!(office.scope_region(Some(js)).is_err());
        assert!(office.scope_region(Some(Region::COUNTRY)).is_err());
        let a = CreditCode::parse("91330100716105852F").unwrap();
        let b = CreditCode::parse("914403001922038216").unwrap();
        let bank = principal(Role::Bank(a.clone()));
        assert_eq!(bank.scope_bank(None).unwrap(), Some(a.clone()));
        assert!(bank.scope_bank(Some(b)).is_err());
        assert_eq!(bank.scope_region(Some(js)).unwrap(), Some(js));
    }
}

//! Who may touch which pledge and credit line: the permission checks that need those records,
//! kept apart from `principal` so that the types they check (`pledge`, `credit_line`, which name
//! principals) sit below them and no module of the domain imports one that imports it back.

use super::credit_line::{CreditLine, NewCreditLine};
use super::error::LedgerError;
use super::pledge::{NewPledge, Pledge};
use super::principal::{Principal, Role, denied};

/// The checks of a principal against pledges and credit lines; each refusal is PERMISSION_DENIED
/// with the reason.
impl Principal {
    /// Registering one pledge (unary): banks for their own book; admins.
    pub fn may_register(&self, pledge: &NewPledge) -> Result<(), LedgerError> {
        match &self.role {
            Role::Admin => Ok(()),
            Role::Bank(code) if *code == pledge.pledgee.credit_code => Ok(()),
            Role::Bank(code) => Err(denied(format!("bank {code} may only register pledges to itself"))),
            Role::Office(_) => {
                Err(denied(format!("office {} may import historical pledges, not register them", self.name)))
            }
        }
    }

    /// Importing a historical pledge: banks for their own book, offices inside their region (its
    /// date: `may_date_registration`). Which credit lines it may draw on depends on the ledger's
    /// state: the writer checks. An office may name any pledgee (its registers hold every bank's
    /// pledges), which is why a pledgee's name never comes from an office's write.
    pub fn may_import(&self, pledge: &NewPledge) -> Result<(), LedgerError> {
        match &self.role {
            Role::Office(region) if region.contains(pledge.county.region()) => Ok(()),
            Role::Office(region) => {
                Err(denied(format!("county {} lies outside office region {region}", pledge.county)))
            }
            _ => self.may_register(pledge),
        }
    }

    /// Changing or releasing an existing pledge: its pledgee bank, or an admin.
    pub fn may_amend(&self, pledge: &Pledge) -> Result<(), LedgerError> {
        match &self.role {
            Role::Admin => Ok(()),
            Role::Bank(code) if *code == pledge.content.pledgee.credit_code => Ok(()),
            _ => Err(denied(format!("{} may not change pledge {}", self.name, pledge.id))),
        }
    }

    pub fn may_read_pledge(&self, pledge: &Pledge) -> bool {
        match &self.role {
            Role::Admin => true,
            Role::Bank(code) => *code == pledge.content.pledgee.credit_code,
            Role::Office(region) => region.contains(pledge.content.county.region()),
        }
    }

    pub fn may_create_line(&self, line: &NewCreditLine) -> Result<(), LedgerError> {
        match &self.role {
            Role::Admin => Ok(()),
            Role::Office(region) if region.contains(line.region) => Ok(()),
            Role::Office(region) => Err(denied(format!("region {} lies outside office region {region}", line.region))),
            Role::Bank(_) => Err(denied(format!("bank {} may not create credit lines; an IP office does", self.name))),
        }
    }

    pub fn may_read_line(&self, line: &CreditLine) -> bool {
        match &self.role {
            Role::Admin => true,
            Role::Bank(code) => *code == line.content.bank.credit_code,
            Role::Office(region) => region.contains(line.content.region),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ident::CreditCode;
    use crate::domain::principal::PrincipalName;
    use crate::domain::region::Region;

    #[test]
    fn imports() {
        use crate::domain::pledge::Party;
        use crate::domain::text::{Name, parse_date};
        let a = "91330100716105852F";
        let party =
            |code: &str| Party { name: Name::parse("Party").unwrap(), credit_code: CreditCode::parse(code).unwrap() };
        let today = parse_date("2026-11-25").unwrap();
        // (role, county, registered on, the refusal's reason or OK)
        let check = |role: Role, county: &str, on: &str, expected: &str| {
            let pledge = NewPledge {
                registration_number: None,
                pledgor: party("914403001922038216"),
                co_pledgors: Vec::new(),
                invalidation_pending_accepted: false,
                pledgee: party(a),
                county: crate::domain::region::CountyCode::parse(county).unwrap(),
                secured_amount: crate::domain::money::Money::parse_positive("1").unwrap(),
                debt_term_start: parse_date("2019-01-01").unwrap(),
                debt_term_end: parse_date("2030-01-01").unwrap(),
                registered_on: parse_date(on).unwrap(),
                rights: Vec::new(),
                credit_line_id: None,
            };
            let principal =
                Principal { name: PrincipalName::parse("p").unwrap(), role, create_time: 0, revoke_time: None };
            let got = principal
                .may_import(&pledge)
                .and_then(|()| principal.may_date_registration(pledge.registered_on, today))
                .map_or_else(|e| e.reason(), |()| "OK");
            assert_eq!(got, expected, "{:?} imports {county} on {on}", principal.role);
        };
        let zj = || Role::Office(Region::parse("330000").unwrap());
        check(zj(), "330108", "2026-11-25", "OK");
        check(zj(), "330108", "2019-06-05", "OK");
        check(zj(), "330108", "2026-11-26", "INVALID_FIELDS");
        check(zj(), "320106", "2019-06-05", "PERMISSION_DENIED");
        check(Role::Bank(CreditCode::parse(a).unwrap()), "320106", "2026-11-25", "OK");
        check(Role::Bank(CreditCode::parse(a).unwrap()), "320106", "2027-01-01", "INVALID_FIELDS");
        // A bank's registration is dated within 30 days before today; an office's may be older.
        check(Role::Bank(CreditCode::parse(a).unwrap()), "320106", "2026-10-26", "OK");
        check(Role::Bank(CreditCode::parse(a).unwrap()), "320106", "2026-10-25", "INVALID_FIELDS");
        check(zj(), "330108", "2026-10-25", "OK");
        check(
            Role::Bank(CreditCode::parse("914403001922038216").unwrap()),
            "330108",
            "2019-06-05",
            "PERMISSION_DENIED",
        );
        check(Role::Admin, "330108", "2027-01-01", "INVALID_FIELDS");
    }
}

//! Alerts: a bank's policy in (field by field, with the limits of `domain::alert`) and out, the
//! filters of a listing, and alerts out. The loan-to-value threshold travels as a percent string
//! ("70", "85.5") and is basis points inside.

use super::*;
use crate::domain::alert::{self, Alert, AlertKind, AlertPolicy, Figures, PolicyRecord};
use crate::ledger::Command;
use rust_decimal::Decimal;
use std::str::FromStr;

/// A percent with at most 2 decimals, above 0 and at most `alert::LOAN_TO_VALUE_BP_MAX` / 100, as
/// basis points.
fn threshold_bp(text: &str) -> Result<u32, String> {
    let syntax = || {
        format!(
            "must be a percent above 0 and at most {} with at most 2 decimals, such as \"70\" or \"85.5\"",
            alert::LOAN_TO_VALUE_BP_MAX / 100
        )
    };
    let t = text.trim();
    if t.len() > 12 || !t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(syntax());
    }
    let value = Decimal::from_str(t).map_err(|_| syntax())? * Decimal::from(100);
    if value.fract() != Decimal::ZERO {
        return Err(syntax());
    }
    let bp = u32::try_from(value.mantissa() / 10i128.pow(value.scale())).map_err(|_| syntax())?;
    alert::loan_to_value_bp(bp).map_err(|_| syntax())
}

fn bp_to_percent(bp: u32) -> String {
    Decimal::new(i64::from(bp), 2).normalize().to_string()
}

/// A SetAlertPolicy request: the bank and every threshold (a window of 0 is refused: a policy is
/// set whole, so nothing is left to a default by omission).
pub fn set_alert_policy(request: &pb::SetAlertPolicyRequest) -> Result<Command, LedgerError> {
    let mut f = Fields::default();
    let Some(p) = request.policy.as_ref() else {
        f.fail("policy", "is required");
        return Err(f.finish().expect_err("a violation was recorded"));
    };
    let bank = f.check("policy.pledgeeCreditCode", CreditCode::parse(&p.pledgee_credit_code));
    let expiry = f.check("policy.expiryWithinDays", alert::window_days(p.expiry_within_days, alert::EXPIRY_DAYS_MAX));
    let at_risk = f.check("policy.newlyAtRiskDays", alert::window_days(p.newly_at_risk_days, alert::WINDOW_DAYS_MAX));
    let default =
        f.check("policy.defaultUnresolvedDays", alert::window_days(p.default_unresolved_days, alert::WINDOW_DAYS_MAX));
    let claim =
        f.check("policy.claimUndecidedDays", alert::window_days(p.claim_undecided_days, alert::WINDOW_DAYS_MAX));
    let ltv = match p.loan_to_value_max_percent.trim() {
        "" => Some(None),
        text => f.check("policy.loanToValueMaxPercent", threshold_bp(text)).map(Some),
    };
    f.finish()?;
    let (Some(bank), Some(expiry), Some(at_risk), Some(default), Some(claim), Some(ltv)) =
        (bank, expiry, at_risk, default, claim, ltv)
    else {
        return Err(unrecorded());
    };
    let policy = AlertPolicy {
        expiry_within_days: expiry,
        newly_at_risk_days: at_risk,
        default_unresolved_days: default,
        claim_undecided_days: claim,
        loan_to_value_max_bp: ltv,
    };
    Ok(Command::SetAlertPolicy { bank, policy })
}

fn days_to_pb(days: u32) -> i32 {
    i32::try_from(days).expect("a policy's windows are at most 3650 days")
}

pub fn alert_policy_to_pb(r: &PolicyRecord) -> pb::AlertPolicy {
    let p = &r.policy;
    pb::AlertPolicy {
        pledgee_credit_code: r.bank.as_str().to_owned(),
        expiry_within_days: days_to_pb(p.expiry_within_days),
        newly_at_risk_days: days_to_pb(p.newly_at_risk_days),
        default_unresolved_days: days_to_pb(p.default_unresolved_days),
        claim_undecided_days: days_to_pb(p.claim_undecided_days),
        loan_to_value_max_percent: p.loan_to_value_max_bp.map(bp_to_percent).unwrap_or_default(),
        set_by: r.set.as_ref().map(|(by, _)| by.to_string()).unwrap_or_default(),
        update_time: r.set.as_ref().map(|(_, at)| timestamp(*at)),
    }
}

/// An optional credit code.
pub fn optional_credit_code(field: &str, text: &str) -> Result<Option<CreditCode>, LedgerError> {
    match text.trim() {
        "" => Ok(None),
        code => CreditCode::parse(code).map(Some).map_err(|e| LedgerError::invalid_field(field, e)),
    }
}

/// What a ListAlerts request asks for: kind, region and pledgee (each optional; the caller's scope
/// is the handler's to apply).
pub fn list_alerts_filter(r: &pb::ListAlertsRequest) -> Result<crate::ledger::query::AlertFilter, LedgerError> {
    let mut f = Fields::default();
    let kind = match r.kind.trim() {
        "" => Some(None),
        text => f.check("kind", AlertKind::parse(text)).map(Some),
    };
    let region = match r.region_code.trim() {
        "" => Some(None),
        code => f.check("regionCode", Region::parse(code)).map(Some),
    };
    let pledgee = match r.pledgee_credit_code.trim() {
        "" => Some(None),
        code => f.check("pledgeeCreditCode", CreditCode::parse(code)).map(Some),
    };
    f.finish()?;
    let (Some(kind), Some(region), Some(pledgee)) = (kind, region, pledgee) else { return Err(unrecorded()) };
    Ok(crate::ledger::query::AlertFilter { kind, region, pledgee })
}

pub fn alert_to_pb(a: &Alert) -> pb::Alert {
    let mut out = pb::Alert {
        kind: a.kind.name().to_owned(),
        pledge_id: a.pledge_id.to_string(),
        pledgee_credit_code: a.pledgee.as_str().to_owned(),
        county_code: a.county.to_string(),
        arose_on: a.arose_on.to_string(),
        secured_amount: a.secured.to_string(),
        ..Default::default()
    };
    match &a.figures {
        Figures::Expiry { right, ends_on, debt_term_end } => {
            out.right_kind = kind_to_pb(right.kind()) as i32;
            out.right_number = right.as_str().to_owned();
            out.expires_on = ends_on.to_string();
            out.debt_term_end = debt_term_end.to_string();
        }
        Figures::LoanToValue { secured, value, threshold_bp } => {
            out.loan_to_value_percent =
                crate::domain::risk::loan_to_value_percent(*secured, *value).map(|p| p.to_string()).unwrap_or_default();
            out.threshold_percent = bp_to_percent(*threshold_bp);
            out.appraised_value = value.to_string();
        }
        Figures::AtRisk { right, reason } => {
            out.right_kind = kind_to_pb(right.kind()) as i32;
            out.right_number = right.as_str().to_owned();
            out.reason = reason.clone();
        }
        Figures::Default { defaulted_on, age_days } => {
            out.defaulted_on = defaulted_on.to_string();
            out.age_days = i32::try_from(*age_days).unwrap_or(i32::MAX);
        }
        Figures::Claim { claim_id, filed_on, age_days } => {
            out.claim_id = claim_id.to_string();
            out.filed_on = filed_on.to_string();
            out.age_days = i32::try_from(*age_days).unwrap_or(i32::MAX);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_in_percent() {
        assert_eq!(threshold_bp("70"), Ok(7000));
        assert_eq!(threshold_bp("85.5"), Ok(8550));
        assert_eq!(threshold_bp("150"), Ok(15000));
        assert!(threshold_bp("0").is_err());
        assert!(threshold_bp("1000.01").is_err());
        assert!(threshold_bp("12.345").is_err());
        assert!(threshold_bp("-5").is_err());
        assert_eq!(bp_to_percent(8550), "85.5");
    }
}

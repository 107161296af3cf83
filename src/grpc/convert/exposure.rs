//! Exposure and statistics: queries in; rows, totals and growth out.

use super::*;
use crate::domain::money::Money;
use crate::domain::text::parse_date;
use crate::ledger::query::{Exposure, ExposureRow, GroupBy};

pub fn exposure_query(
    request: &pb::GetExposureRequest,
) -> Result<(Region, GroupBy, Option<chrono::NaiveDate>), LedgerError> {
    let mut f = Fields::default();
    let region = f.check("regionCode", Region::parse(&request.region_code));
    let group_by = match pb::ExposureGroupBy::try_from(request.group_by) {
        Ok(pb::ExposureGroupBy::Unspecified) => Some(GroupBy::None),
        Ok(pb::ExposureGroupBy::ChildRegion) => Some(GroupBy::ChildRegion),
        Ok(pb::ExposureGroupBy::Pledgee) => Some(GroupBy::Pledgee),
        Ok(pb::ExposureGroupBy::RightKind) => Some(GroupBy::RightKind),
        Err(_) => {
            f.fail("groupBy", "must be CHILD_REGION, PLEDGEE or RIGHT_KIND");
            None
        }
    };
    let as_of = if request.as_of.trim().is_empty() {
        Some(None)
    } else {
        f.check("asOf", parse_date(&request.as_of)).map(Some)
    };
    f.finish()?;
    let (Some(region), Some(group_by), Some(as_of)) = (region, group_by, as_of) else {
        return Err(unrecorded());
    };
    Ok((region, group_by, as_of))
}

/// `part` over `whole` in percent, 2 decimals (half away from zero); empty without a whole.
fn percent_of(part: Money, whole: Money) -> String {
    crate::domain::statistics::percent(part.fen(), whole.fen()).map(|p| p.to_string()).unwrap_or_default()
}

fn row_to_pb(
    key: String,
    name: String,
    row: &crate::domain::exposure::Row,
    has_credit: bool,
    budget: Option<(Money, Money)>,
) -> pb::ExposureRow {
    pb::ExposureRow {
        key,
        name,
        secured_amount: row.secured_amount.to_string(),
        pledge_count: row.pledge_count,
        enterprise_count: row.enterprise_count,
        right_count: row.right_count,
        credit_limit: if has_credit { row.credit_limit.to_string() } else { String::new() },
        credit_drawn: if has_credit { row.credit_drawn.to_string() } else { String::new() },
        at_risk_amount: row.at_risk_amount.to_string(),
        at_risk_count: row.at_risk_count,
        defaulted_amount: row.defaulted_amount.to_string(),
        defaulted_count: row.defaulted_count,
        non_performing_percent: percent_of(row.defaulted_amount, row.secured_amount),
        appraised_value: row.appraised_value.to_string(),
        loan_to_value_percent: percent_of(row.appraised_secured, row.appraised_value),
        compensation_claimed: row.compensation_claimed.to_string(),
        compensation_paid: row.compensation_paid.to_string(),
        programme_budget: budget.map(|(b, _)| b.to_string()).unwrap_or_default(),
        programme_budget_left: budget.map(|(_, left)| left.to_string()).unwrap_or_default(),
    }
}

pub fn exposure_to_pb(e: Exposure) -> pb::GetExposureResponse {
    pb::GetExposureResponse {
        region_code: e.region.code_string(),
        region_name: e.region.name().to_owned(),
        total: Some(row_to_pb(String::new(), e.region.name().to_owned(), &e.total, e.has_credit, e.budget)),
        rows: e
            .rows
            .into_iter()
            .map(|ExposureRow { key, name, row, has_credit, budget }| row_to_pb(key, name, &row, has_credit, budget))
            .collect(),
        rows_omitted: e.rows_omitted,
    }
}

/// A parsed statistics request.
#[derive(Debug)]
pub struct StatisticsQuery {
    /// `None`: the caller's whole scope.
    pub region: Option<Region>,
    pub period: crate::domain::statistics::Period,
    pub grouping: crate::domain::statistics::Grouping,
    pub threshold: Money,
    pub ten_thousands: bool,
    pub kinds: crate::domain::statistics::KindFilter,
}

/// The inclusive-finance threshold used when a request names none: 10 million yuan.
const INCLUSIVE_THRESHOLD_DEFAULT: &str = "10000000.00";

pub fn statistics_query(request: &pb::GetStatisticsRequest) -> Result<StatisticsQuery, LedgerError> {
    use crate::domain::statistics::{Grouping, Period};
    let mut f = Fields::default();
    let region = optional_region(&mut f, &request.region_code);
    let from = f.check("from", parse_date(&request.from));
    let to = f.check("to", parse_date(&request.to));
    let period = match (from, to) {
        (Some(from), Some(to)) => f.check("to", Period::new(from, to)),
        _ => None,
    };
    let grouping = match pb::ExposureGroupBy::try_from(request.group_by) {
        Ok(pb::ExposureGroupBy::Unspecified) => Some(Grouping::None),
        Ok(pb::ExposureGroupBy::ChildRegion) => Some(Grouping::ChildRegion),
        Ok(pb::ExposureGroupBy::Pledgee) => Some(Grouping::Pledgee),
        Ok(pb::ExposureGroupBy::RightKind) => Some(Grouping::RightKind),
        Err(_) => {
            f.fail("groupBy", "must be CHILD_REGION, PLEDGEE or RIGHT_KIND");
            None
        }
    };
    let threshold_text = if request.inclusive_threshold.trim().is_empty() {
        INCLUSIVE_THRESHOLD_DEFAULT
    } else {
        request.inclusive_threshold.as_str()
    };
    let threshold = f.check("inclusiveThreshold", Money::parse_positive(threshold_text));
    let ten_thousands = match pb::AmountUnit::try_from(request.unit) {
        Ok(pb::AmountUnit::Unspecified | pb::AmountUnit::Yuan) => Some(false),
        Ok(pb::AmountUnit::TenThousandYuan) => Some(true),
        Err(_) => {
            f.fail("unit", "must be YUAN or TEN_THOUSAND_YUAN");
            None
        }
    };
    let kinds: Vec<_> = request
        .right_kinds
        .iter()
        .enumerate()
        .filter_map(|(i, kind)| f.check(format!("rightKinds[{i}]"), right_kind(*kind)))
        .collect();
    f.finish()?;
    let (Some(region), Some(period), Some(grouping), Some(threshold), Some(ten_thousands)) =
        (region, period, grouping, threshold, ten_thousands)
    else {
        return Err(unrecorded());
    };
    let kinds = crate::domain::statistics::KindFilter::of(&kinds);
    Ok(StatisticsQuery { region, period, grouping, threshold, ten_thousands, kinds })
}

/// Formats fen as yuan (2 decimals) or as 10,000 yuan (6 decimals): both exact.
fn amount(fen: i128, ten_thousands: bool) -> String {
    if ten_thousands {
        rust_decimal::Decimal::from_i128_with_scale(fen, 6).to_string()
    } else {
        rust_decimal::Decimal::from_i128_with_scale(fen, 2).to_string()
    }
}

fn statistics_row(
    key: String,
    name: String,
    current: &crate::domain::statistics::Tally,
    previous: Option<&crate::domain::statistics::Tally>,
    ten_thousands: bool,
) -> pb::StatisticsRow {
    use crate::domain::statistics::growth_percent;
    let previous_fen = previous.map_or(0, |p| p.amount_fen);
    pb::StatisticsRow {
        key,
        name,
        registered_amount: amount(current.amount_fen, ten_thousands),
        registrations: current.registrations,
        enterprises: current.enterprises.len() as u64,
        patents: current.patents(),
        trademarks: current.rights[3],
        copyrights: current.rights[4],
        inclusive_registrations: current.inclusive,
        inclusive_share_percent: current.inclusive_share_percent().map(|p| p.to_string()).unwrap_or_default(),
        previous_registered_amount: amount(previous_fen, ten_thousands),
        previous_registrations: previous.map_or(0, |p| p.registrations),
        amount_growth_percent: growth_percent(current.amount_fen, previous_fen)
            .map(|p| p.to_string())
            .unwrap_or_default(),
        defaults: current.defaults,
        defaulted_amount: amount(current.defaulted_fen, ten_thousands),
        compensation_claimed: amount(current.claimed_fen, ten_thousands),
        compensation_paid: amount(current.paid_fen, ten_thousands),
    }
}

pub fn statistics_to_pb(
    region: Region,
    query: &StatisticsQuery,
    current: &crate::domain::statistics::Tallies,
    previous: &crate::domain::statistics::Tallies,
) -> pb::GetStatisticsResponse {
    use crate::domain::statistics::Grouping;
    let t = query.ten_thousands;
    let mut rows: Vec<pb::StatisticsRow> = current
        .rows
        .iter()
        .map(|(key, (name, tally))| {
            statistics_row(key.clone(), name.clone(), tally, previous.rows.get(key).map(|(_, p)| p), t)
        })
        .collect();
    // Every child region and right kind has a row, registrations or not, as published tables do.
    let fixed: Vec<(String, String)> = match query.grouping {
        Grouping::ChildRegion => region.children().iter().map(|c| (c.code_string(), c.name().to_owned())).collect(),
        Grouping::RightKind => RightKind::ALL.iter().map(|k| (k.name().to_owned(), k.name().to_owned())).collect(),
        Grouping::None | Grouping::Pledgee => Vec::new(),
    };
    for (key, name) in fixed {
        if !current.rows.contains_key(&key) {
            let empty = crate::domain::statistics::Tally::default();
            rows.push(statistics_row(key.clone(), name, &empty, previous.rows.get(&key).map(|(_, p)| p), t));
        }
    }
    match query.grouping {
        Grouping::Pledgee => rows.sort_by(|a, b| {
            let fen = |r: &pb::StatisticsRow| r.registered_amount.parse::<rust_decimal::Decimal>().unwrap_or_default();
            fen(b).cmp(&fen(a)).then_with(|| a.key.cmp(&b.key))
        }),
        Grouping::RightKind => {
            let order = |k: &str| RightKind::ALL.iter().position(|r| r.name() == k);
            rows.sort_by_key(|r| order(&r.key));
        }
        _ => rows.sort_by(|a, b| a.key.cmp(&b.key)),
    }
    pb::GetStatisticsResponse {
        region_code: region.code_string(),
        region_name: region.name().to_owned(),
        from: query.period.from.to_string(),
        to: query.period.to.to_string(),
        previous_from: query.period.previous().from.to_string(),
        previous_to: query.period.previous().to.to_string(),
        unit: if t { pb::AmountUnit::TenThousandYuan } else { pb::AmountUnit::Yuan } as i32,
        inclusive_threshold: query.threshold.to_string(),
        total: Some(statistics_row(String::new(), region.name().to_owned(), &current.total, Some(&previous.total), t)),
        rows,
    }
}

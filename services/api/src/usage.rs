//! Usage Records: `GET …/Usage/Records.json` (all time) and
//! `…/Usage/Records/{AllTime|Daily|Monthly|Yearly|Today|Yesterday|ThisMonth|LastMonth}.json`,
//! with `Category`, `StartDate`, `EndDate` (`YYYY-MM-DD` or `-30days`-style offsets, UTC).

use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use dialtone_projections::billing::{
    self, format_day, format_usage_price, parse_day, periods, summarize_usage, Granularity,
    UsageRecord,
};
use dialtone_projections::replay::{billing_as_of, Until};
use serde_json::{json, Value};
use time::{Date, Duration, OffsetDateTime};

use crate::as_of;
use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::format::as_of;
use crate::paging::{page_of, Paging};
use crate::params::{encode_query, Params};
use crate::{ApiState, API_VERSION};

/// Most records one request may generate before paging (e.g. Daily over 27 years).
const MAX_RECORDS: usize = 30_000;

/// A named subresource of Usage/Records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    AllTime,
    Daily,
    Monthly,
    Yearly,
    Today,
    Yesterday,
    ThisMonth,
    LastMonth,
}

const PERIODS: &[(&str, Period)] = &[
    ("AllTime", Period::AllTime),
    ("Daily", Period::Daily),
    ("Monthly", Period::Monthly),
    ("Yearly", Period::Yearly),
    ("Today", Period::Today),
    ("Yesterday", Period::Yesterday),
    ("ThisMonth", Period::ThisMonth),
    ("LastMonth", Period::LastMonth),
];

fn period_name(period: Period) -> &'static str {
    PERIODS
        .iter()
        .find(|(_, p)| *p == period)
        .map(|(n, _)| *n)
        .unwrap_or("AllTime")
}

/// `YYYY-MM-DD` or a relative `+Ndays` / `-Ndays` from `today`.
fn parse_date(value: &str, today: Date) -> Option<Date> {
    if let Some(days) = value.strip_suffix("days") {
        let days: i64 = days.parse().ok()?;
        if days.abs() > 100_000 {
            return None;
        }
        return today.checked_add(Duration::days(days));
    }
    parse_day(value)
}

fn first_of_month(date: Date) -> Date {
    date.replace_day(1).unwrap_or(date)
}

/// Granularity and inclusive range of a request.
fn range(
    period: Period,
    params: &Params,
    today: Date,
    account_created: Date,
) -> Result<(Granularity, Date, Date), ApiError> {
    let date = |name: &str| -> Result<Option<Date>, ApiError> {
        params
            .non_empty(name)
            .map(|v| {
                parse_date(v, today).ok_or_else(|| {
                    ApiError::invalid(format!(
                        "{name} must be YYYY-MM-DD or a relative offset such as -30days"
                    ))
                })
            })
            .transpose()
    };
    let fixed = |start: Date, end: Date| Ok((Granularity::AllTime, start, end));
    let yesterday = today.previous_day().unwrap_or(today);
    match period {
        Period::Today => return fixed(today, today),
        Period::Yesterday => return fixed(yesterday, yesterday),
        Period::ThisMonth => return fixed(first_of_month(today), today),
        Period::LastMonth => {
            let last = first_of_month(today).previous_day().unwrap_or(today);
            return fixed(first_of_month(last), last);
        }
        _ => {}
    }
    let granularity = match period {
        Period::Daily => Granularity::Daily,
        Period::Monthly => Granularity::Monthly,
        Period::Yearly => Granularity::Yearly,
        _ => Granularity::AllTime,
    };
    let start = date("StartDate")?.unwrap_or(account_created.min(today));
    let end = date("EndDate")?.unwrap_or(today);
    if end < start {
        return Err(ApiError::invalid("EndDate must not be before StartDate"));
    }
    Ok((granularity, start, end))
}

fn description(category: &str) -> String {
    match category {
        billing::CALLS => "Voice Minutes".to_owned(),
        billing::CALLS_INBOUND => "Inbound Voice Minutes".to_owned(),
        billing::CALLS_OUTBOUND => "Outbound Voice Minutes".to_owned(),
        other => other.to_owned(),
    }
}

fn record_json(
    account: &str,
    period: Option<Period>,
    record: &UsageRecord,
    now: OffsetDateTime,
) -> Value {
    let base = format!("/{API_VERSION}/Accounts/{account}/Usage/Records");
    let category_query = encode_query(&[("Category".into(), record.category.clone())]);
    let sub = |name: &str| format!("{base}/{name}.json?{category_query}");
    let path = match period {
        None => format!("{base}.json"),
        Some(p) => format!("{base}/{}.json", period_name(p)),
    };
    let query = encode_query(&[
        ("Category".into(), record.category.clone()),
        ("StartDate".into(), format_day(record.start_date)),
        ("EndDate".into(), format_day(record.end_date)),
    ]);
    json!({
        "account_sid": account,
        "api_version": API_VERSION,
        "as_of": as_of(now),
        "category": record.category,
        "count": record.count.to_string(),
        "count_unit": "calls",
        "description": description(&record.category),
        "end_date": format_day(record.end_date),
        "price": format_usage_price(record.price_micros),
        "price_unit": record.currency.to_ascii_lowercase(),
        "start_date": format_day(record.start_date),
        "subresource_uris": {
            "all_time": sub("AllTime"),
            "daily": sub("Daily"),
            "last_month": sub("LastMonth"),
            "monthly": sub("Monthly"),
            "this_month": sub("ThisMonth"),
            "today": sub("Today"),
            "yearly": sub("Yearly"),
            "yesterday": sub("Yesterday"),
        },
        "uri": format!("{path}?{query}"),
        "usage": record.minutes.to_string(),
        "usage_unit": "minutes",
    })
}

/// Twilio's representations of a list: `.json` (a page) or `.csv` (every record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
}

/// The columns of `Usage/Records.csv`: the JSON fields, in this order.
const CSV_COLUMNS: &[&str] = &[
    "account_sid",
    "category",
    "description",
    "start_date",
    "end_date",
    "as_of",
    "count",
    "count_unit",
    "usage",
    "usage_unit",
    "price",
    "price_unit",
    "api_version",
];

fn csv_field(value: &Value) -> String {
    let text = match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn csv_body(records: &[Value]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    for record in records {
        let row: Vec<String> = CSV_COLUMNS.iter().map(|c| csv_field(&record[*c])).collect();
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

async fn records(
    state: ApiState,
    auth: Authenticated,
    period: Option<Period>,
    query: Option<String>,
    format: Format,
) -> Result<Response, ApiError> {
    let params = Params::from_query(query.as_deref());
    let paging = Paging::parse(&params)?;
    let mut now = OffsetDateTime::now_utc();
    let (granularity, start, end) = range(
        period.unwrap_or(Period::AllTime),
        &params,
        now.date(),
        auth.account.date_created.date(),
    )?;
    if periods(granularity, start, end).len().saturating_mul(3) > MAX_RECORDS {
        return Err(ApiError::invalid(
            "The date range is too large for this granularity",
        ));
    }
    let account = auth.sid().to_owned();
    let rows = match as_of::parse(&state, &params).await? {
        Some(until) => {
            if let Until::Time(t) = until {
                now = t;
            }
            let replay = billing_as_of(
                state.log.as_ref(),
                &state.rates,
                Some(&account),
                &until,
                |_| {},
            )
            .await?;
            billing::usage_rows(replay.connection(), &account, start, end)?
        }
        None => {
            state
                .read_models
                .read(move |c| billing::usage_rows(c, &account, start, end))
                .await?
        }
    };
    let all = summarize_usage(
        &rows,
        granularity,
        start,
        end,
        params.non_empty("Category"),
        &state.default_currency,
    );
    if format == Format::Csv {
        let records: Vec<Value> = all
            .iter()
            .map(|r| record_json(auth.sid(), period, r, now))
            .collect();
        return Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            csv_body(&records),
        )
            .into_response());
    }
    let base = format!("/{API_VERSION}/Accounts/{}/Usage/Records", auth.sid());
    let path = match period {
        None => format!("{base}.json"),
        Some(p) => format!("{base}/{}.json", period_name(p)),
    };
    Ok(Json(page_of(
        "usage_records",
        &all,
        |r| record_json(auth.sid(), period, r, now),
        &path,
        &params,
        &paging,
    ))
    .into_response())
}

#[utoipa::path(
    operation_id = "usage_all_time",
    get,
    path = "/2010-04-01/Accounts/{account_sid}/Usage/Records.json",
    tag = "Usage",
    summary = "Usage over all time, per category",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("Category" = Option<String>, Query, description = "calls, calls-inbound, calls-outbound"),
        ("StartDate" = Option<String>, Query, description = "YYYY-MM-DD or -30days"),
        ("EndDate" = Option<String>, Query, description = "YYYY-MM-DD or -30days"),
        ("AsOf" = Option<String>, Query, description = "RFC 3339 time or event position: usage as it stood then, replayed from the log"),
        ("PageSize" = Option<u32>, Query, description = "1–1000, default 50"),
        ("Page" = Option<u32>, Query, description = "Page index"),
        ("PageToken" = Option<String>, Query, description = "Opaque, from next_page_uri"),
    ),
    responses(
        (status = 200, description = "OK", body = crate::openapi::schemas::UsageRecordList),
        (status = 400, description = "Invalid parameter (error body names it)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn all_time(
    State(state): State<ApiState>,
    auth: Authenticated,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    records(state, auth, None, query, Format::Json).await
}

#[utoipa::path(
    operation_id = "usage_all_time_csv",
    get,
    path = "/2010-04-01/Accounts/{account_sid}/Usage/Records.csv",
    tag = "Usage",
    summary = "Usage over all time as CSV (every record)",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("Category" = Option<String>, Query, description = "calls, calls-inbound, calls-outbound"),
        ("StartDate" = Option<String>, Query, description = "YYYY-MM-DD or -30days"),
        ("EndDate" = Option<String>, Query, description = "YYYY-MM-DD or -30days"),
        ("AsOf" = Option<String>, Query, description = "RFC 3339 time or event position: usage as it stood then, replayed from the log"),
    ),
    responses(
        (status = 200, description = "CSV: a header line, then one line per record", content_type = "text/csv", body = String),
        (status = 400, description = "Invalid parameter (error body names it)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn all_time_csv(
    State(state): State<ApiState>,
    auth: Authenticated,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    records(state, auth, None, query, Format::Csv).await
}

#[utoipa::path(
    operation_id = "usage_by_period",
    get,
    path = "/2010-04-01/Accounts/{account_sid}/Usage/Records/{period}",
    tag = "Usage",
    summary = "Usage by period: AllTime, Daily, Monthly, Yearly, Today, Yesterday, ThisMonth, LastMonth (.json or .csv)",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("period" = String, Path, description = "e.g. Daily.json or Monthly.csv"),
        ("Category" = Option<String>, Query, description = "calls, calls-inbound, calls-outbound"),
        ("StartDate" = Option<String>, Query, description = "YYYY-MM-DD or -30days"),
        ("EndDate" = Option<String>, Query, description = "YYYY-MM-DD or -30days"),
        ("AsOf" = Option<String>, Query, description = "RFC 3339 time or event position: usage as it stood then, replayed from the log"),
        ("PageSize" = Option<u32>, Query, description = "1–1000, default 50"),
        ("Page" = Option<u32>, Query, description = "Page index"),
        ("PageToken" = Option<String>, Query, description = "Opaque, from next_page_uri"),
    ),
    responses(
        (status = 200, description = "The records (.json: a page; .csv: all of them)", content((crate::openapi::schemas::UsageRecordList = "application/json"), (String = "text/csv"))),
        (status = 400, description = "Invalid parameter (error body names it)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "Not found, or another account's (20404)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn by_period(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, segment)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (name, format) = match segment.strip_suffix(".csv") {
        Some(name) => (name, Format::Csv),
        None => (
            segment.strip_suffix(".json").unwrap_or(&segment),
            Format::Json,
        ),
    };
    let period = PERIODS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| *p)
        .ok_or_else(|| {
            ApiError::not_found(&format!(
                "/{API_VERSION}/Accounts/{}/Usage/Records/{segment}",
                auth.sid()
            ))
        })?;
    records(state, auth, Some(period), query, format).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn ranges_follow_twilio_periods() {
        let today = date!(2025 - 03 - 10);
        let created = date!(2025 - 01 - 15);
        let none = Params::default();
        assert_eq!(
            range(Period::AllTime, &none, today, created).unwrap(),
            (Granularity::AllTime, created, today)
        );
        assert_eq!(
            range(Period::LastMonth, &none, today, created).unwrap(),
            (
                Granularity::AllTime,
                date!(2025 - 02 - 01),
                date!(2025 - 02 - 28)
            )
        );
        assert_eq!(
            range(Period::Yesterday, &none, today, created).unwrap().1,
            date!(2025 - 03 - 09)
        );
        let relative = Params::parse(b"StartDate=-30days&EndDate=2025-03-01");
        assert_eq!(
            range(Period::Daily, &relative, today, created).unwrap(),
            (
                Granularity::Daily,
                date!(2025 - 02 - 08),
                date!(2025 - 03 - 01)
            )
        );
        let backwards = Params::parse(b"StartDate=2025-03-02&EndDate=2025-03-01");
        assert!(range(Period::Daily, &backwards, today, created).is_err());
        let bad = Params::parse(b"StartDate=yesterday");
        assert!(range(Period::AllTime, &bad, today, created).is_err());
    }
}

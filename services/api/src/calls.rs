//! Calls: list and fetch in Twilio's JSON shape. Create and update (call control) are in
//! `calls_write`.

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use dialtone_events::sid::CallSid;
use dialtone_projections::billing::{format_call_price, parse_day};
use dialtone_projections::calls::{self, parse_status, CallFilter, CallRecord, DateFilter};
use dialtone_projections::numbers::format_national;
use dialtone_projections::replay::call_as_of;
use serde_json::{json, Value};
use time::Date;

use crate::as_of;
use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::format::{rfc2822, rfc2822_opt, sid_segment};
use crate::paging::{envelope, keyset_links, Paging};
use crate::params::Params;
use crate::{ApiState, API_VERSION};

fn list_path(account: &str) -> String {
    format!("/{API_VERSION}/Accounts/{account}/Calls.json")
}

fn call_base(account: &str, sid: &str) -> String {
    format!("/{API_VERSION}/Accounts/{account}/Calls/{sid}")
}

/// Twilio's Call representation.
pub(crate) fn call_json(record: &CallRecord, default_currency: &str) -> Value {
    let call = &record.call;
    let base = call_base(&call.account_sid, &call.sid);
    let sub = |name: &str| format!("{base}/{name}.json");
    json!({
        "account_sid": call.account_sid,
        "annotation": null,
        "answered_by": null,
        "api_version": API_VERSION,
        "caller_name": null,
        "date_created": rfc2822(call.date_created),
        "date_updated": rfc2822(call.date_updated),
        "direction": call.direction.as_str(),
        "duration": call.duration_s.map(|d| d.to_string()),
        "end_time": rfc2822_opt(call.end_time),
        "forwarded_from": call.forwarded_from,
        "from": call.from,
        "from_formatted": format_national(&call.from),
        "group_sid": null,
        "parent_call_sid": call.parent_call_sid,
        "phone_number_sid": call.phone_number_sid,
        "price": record.price_micros.map(format_call_price),
        "price_unit": record.price_unit.as_deref().unwrap_or(default_currency),
        "queue_time": call.queue_time_ms.to_string(),
        "sid": call.sid,
        "start_time": rfc2822_opt(call.start_time),
        "status": call.status.as_str(),
        "subresource_uris": {
            "events": sub("Events"),
            "notifications": sub("Notifications"),
            "payments": sub("Payments"),
            "recordings": sub("Recordings"),
            "siprec": sub("Siprec"),
            "streams": sub("Streams"),
            "transcriptions": sub("Transcriptions"),
            "user_defined_message_subscriptions": sub("UserDefinedMessageSubscriptions"),
            "user_defined_messages": sub("UserDefinedMessages"),
        },
        "to": call.to,
        "to_formatted": format_national(&call.to),
        "trunk_sid": null,
        "uri": format!("{base}.json"),
    })
}

/// A date filter value: `YYYY-MM-DD`, or an ISO 8601 date-time of which the date counts
/// (what helper libraries send for datetime arguments).
fn filter_date(params: &Params, name: &str) -> Result<Option<Date>, ApiError> {
    params
        .non_empty(name)
        .map(|value| {
            value
                .get(..10)
                .and_then(parse_day)
                .ok_or_else(|| ApiError::invalid(format!("{name} must be a date (YYYY-MM-DD)")))
        })
        .transpose()
}

fn date_filter(params: &Params, name: &str) -> Result<DateFilter, ApiError> {
    Ok(DateFilter {
        on: filter_date(params, name)?,
        on_or_before: filter_date(params, &format!("{name}<"))?,
        on_or_after: filter_date(params, &format!("{name}>"))?,
    })
}

fn call_filter(params: &Params) -> Result<CallFilter, ApiError> {
    let status = params
        .non_empty("Status")
        .map(|s| {
            parse_status(s).ok_or_else(|| {
                ApiError::invalid(format!(
                    "Status must be one of queued, ringing, in-progress, completed, busy, failed, no-answer, canceled, not {s:?}"
                ))
            })
        })
        .transpose()?;
    Ok(CallFilter {
        to: params.non_empty("To").map(str::to_owned),
        from: params.non_empty("From").map(str::to_owned),
        status,
        parent_call_sid: params.non_empty("ParentCallSid").map(str::to_owned),
        start_time: date_filter(params, "StartTime")?,
        end_time: date_filter(params, "EndTime")?,
    })
}

#[utoipa::path(
    operation_id = "calls_list",
    get,
    path = "/2010-04-01/Accounts/{account_sid}/Calls.json",
    tag = "Calls",
    summary = "List calls, newest first",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("To" = Option<String>, Query, description = "Exact"),
        ("From" = Option<String>, Query, description = "Exact"),
        ("Status" = Option<String>, Query, description = "queued, ringing, in-progress, completed, busy, failed, no-answer, canceled"),
        ("ParentCallSid" = Option<String>, Query, description = "CA…"),
        ("StartTime" = Option<String>, Query, description = "YYYY-MM-DD (also StartTime< and StartTime>)"),
        ("EndTime" = Option<String>, Query, description = "YYYY-MM-DD (also EndTime< and EndTime>)"),
        ("PageSize" = Option<u32>, Query, description = "1–1000, default 50"),
        ("Page" = Option<u32>, Query, description = "Page index"),
        ("PageToken" = Option<String>, Query, description = "Opaque, from next_page_uri"),
    ),
    responses(
        (status = 200, description = "OK", body = crate::openapi::schemas::CallList),
        (status = 400, description = "Invalid parameter (error body names it)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    auth: Authenticated,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::from_query(query.as_deref());
    let paging = Paging::parse(&params)?;
    let filter = call_filter(&params)?;
    let account = auth.sid().to_owned();
    let request = paging.request();
    let page = state
        .read_models
        .read(move |c| calls::list_calls(c, &account, &filter, &request))
        .await?;
    let (next, previous) = keyset_links(&paging, &page, calls::call_sort_key);
    let items = page
        .items
        .iter()
        .map(|r| call_json(r, &state.default_currency))
        .collect();
    Ok(Json(envelope(
        "calls",
        items,
        &list_path(auth.sid()),
        &params,
        &paging,
        next,
        previous,
    )))
}

#[utoipa::path(
    operation_id = "calls_fetch",
    get,
    path = "/2010-04-01/Accounts/{account_sid}/Calls/{sid}",
    tag = "Calls",
    summary = "Fetch a call, now or as it stood at AsOf",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "CA…, optionally followed by .json"),
        ("AsOf" = Option<String>, Query, description = "RFC 3339 time or event position: the call as it stood then, replayed from the log"),
    ),
    responses(
        (status = 200, description = "OK", body = crate::openapi::schemas::Call),
        (status = 400, description = "Invalid parameter (error body names it)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "Not found, or another account's (20404)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn fetch(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, segment)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::from_query(query.as_deref());
    let path = format!(
        "{}.json",
        call_base(auth.sid(), segment.trim_end_matches(".json"))
    );
    let sid = sid_segment(&segment, CallSid::PREFIX, &path)?.to_owned();
    let account = auth.sid().to_owned();
    let record = match as_of::parse(&state, &params).await? {
        Some(until) => {
            call_as_of(
                state.log.as_ref(),
                &state.read_models,
                &state.rates,
                &account,
                &sid,
                &until,
            )
            .await?
        }
        None => {
            state
                .read_models
                .read(move |c| calls::get_call(c, &account, &sid))
                .await?
        }
    }
    .ok_or_else(|| ApiError::not_found(&path))?;
    Ok(Json(call_json(&record, &state.default_currency)))
}

//! Event Streams' Sinks and Subscriptions, per account: `/v1/Accounts/{AC}/Sinks[/{DG…}]`,
//! `/v1/Accounts/{AC}/Subscriptions[/{DF…}[/SubscribedEvents]]`, in the shapes of Twilio's
//! Events v1 API (fields, `meta` paging, ISO 8601 dates). Only `webhook` sinks exist here;
//! they are `active` from creation (a webhook needs no validation round trip). Every write is
//! an event on the sink's or subscription's stream; delivery is `dialtone-streams`' job.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use dialtone_events::payload::{
    HttpMethod, SinkCreated, SinkDeleted, SinkUpdated, SubscribedType, SubscriptionCreated,
    SubscriptionDeleted, SubscriptionUpdated,
};
use dialtone_events::sid::{SinkSid, SubscriptionSid};
use dialtone_events::{ExpectedVersion, NewEvent, Payload};
use dialtone_projections::sinks::{self, SinkRow, SubscriptionRow};
use dialtone_streams::TypePattern;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::auth::Authenticated;
use crate::error::{codes, ApiError};
use crate::params::{encode_query, is_http_url, Params};
use crate::ApiState;

/// ISO 8601 as Events v1 writes it: `2015-07-30T20:00:00Z`.
fn iso(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

fn sinks_path(account: &str) -> String {
    format!("/v1/Accounts/{account}/Sinks")
}

fn subscriptions_path(account: &str) -> String {
    format!("/v1/Accounts/{account}/Subscriptions")
}

fn sink_json(row: &SinkRow) -> Value {
    let url = format!("{}/{}", sinks_path(&row.account_sid), row.sid);
    json!({
        "account_sid": row.account_sid,
        "date_created": iso(row.date_created),
        "date_updated": iso(row.date_updated),
        "description": row.description,
        "sid": row.sid,
        "sink_configuration": {
            "destination": row.destination,
            "method": row.method,
            "batch_events": row.batch_events,
        },
        "sink_type": row.sink_type,
        "status": "active",
        "url": url,
        "links": {
            "sink_test": format!("{url}/Test"),
            "sink_validate": format!("{url}/Validate"),
        },
        "delivery": {
            "delivered_events": row.delivered_events,
            "failed_events": row.failed_events,
            "last_delivery_at": row.last_delivery_at.map(iso),
            "last_status": row.last_status,
            "last_error": row.last_error,
        },
    })
}

fn subscription_json(row: &SubscriptionRow) -> Value {
    let url = format!("{}/{}", subscriptions_path(&row.account_sid), row.sid);
    json!({
        "account_sid": row.account_sid,
        "date_created": iso(row.date_created),
        "date_updated": iso(row.date_updated),
        "description": row.description,
        "sid": row.sid,
        "sink_sid": row.sink_sid,
        "url": url,
        "links": { "subscribed_events": format!("{url}/SubscribedEvents") },
    })
}

fn subscribed_event_json(row: &SubscriptionRow, subscribed: &SubscribedType) -> Value {
    json!({
        "account_sid": row.account_sid,
        "type": subscribed.event_type,
        "schema_version": subscribed.schema_version,
        "subscription_sid": row.sid,
        "url": format!(
            "{}/{}/SubscribedEvents/{}",
            subscriptions_path(&row.account_sid),
            row.sid,
            subscribed.event_type
        ),
    })
}

/// Events v1 paging of an in-memory list: `PageSize` (1–1000, default 50) and `Page`.
fn meta_page(key: &str, path: &str, params: &Params, items: Vec<Value>) -> Result<Value, ApiError> {
    let number = |name: &str, default: usize| -> Result<usize, ApiError> {
        params
            .non_empty(name)
            .map(|v| {
                v.parse::<usize>().map_err(|_| {
                    ApiError::invalid(format!("{name} must be a non-negative integer"))
                })
            })
            .transpose()
            .map(|v| v.unwrap_or(default))
    };
    let size = number("PageSize", 50)?.clamp(1, 1000);
    let page = number("Page", 0)?.min(1_000_000);
    let filters = params.encode_without(&["PageSize", "Page", "PageToken"]);
    let url_for = |page: usize| {
        let mut query = filters.clone();
        query.push(("PageSize".into(), size.to_string()));
        query.push(("Page".into(), page.to_string()));
        format!("{path}?{}", encode_query(&query))
    };
    let total = items.len();
    let start = page.saturating_mul(size).min(total);
    let end = start.saturating_add(size).min(total);
    let items: Vec<Value> = items.into_iter().skip(start).take(end - start).collect();
    Ok(json!({
        key: items,
        "meta": {
            "page": page,
            "page_size": size,
            "first_page_url": url_for(0),
            "previous_page_url": (page > 0).then(|| url_for(page - 1)),
            "url": url_for(page),
            "next_page_url": (end < total).then(|| url_for(page + 1)),
            "key": key,
        }
    }))
}

fn required<'a>(params: &'a Params, name: &str) -> Result<&'a str, ApiError> {
    params.non_empty(name).ok_or_else(|| {
        ApiError::invalid(format!(
            "Missing required parameter {name} in the post body"
        ))
    })
}

/// `SinkConfiguration` of a webhook sink: `{"destination","method","batch_events"}`.
fn webhook_configuration(value: &str) -> Result<(String, HttpMethod, bool), ApiError> {
    let invalid = |why: &str| ApiError::invalid(format!("SinkConfiguration: {why}"));
    let config: Value =
        serde_json::from_str(value).map_err(|e| invalid(&format!("not a JSON object ({e})")))?;
    let destination = config["destination"]
        .as_str()
        .ok_or_else(|| invalid("destination (an http or https URL) is required"))?;
    if !is_http_url(destination) {
        return Err(ApiError::bad_request(
            codes::INVALID_URL,
            format!("SinkConfiguration: destination {destination:?} is not an http or https URL"),
        ));
    }
    let method = match config.get("method").and_then(Value::as_str) {
        None => HttpMethod::Post,
        Some(m) if m.eq_ignore_ascii_case("POST") => HttpMethod::Post,
        Some(other) => {
            return Err(invalid(&format!(
                "method {other:?} is not supported: events are POSTed as a JSON array"
            )))
        }
    };
    let batch_events = match config.get("batch_events") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
        Some(_) => return Err(invalid("batch_events must be true or false")),
    };
    Ok((destination.to_owned(), method, batch_events))
}

async fn read_sink(
    state: &ApiState,
    account: &str,
    sid: &str,
) -> Result<Option<SinkRow>, ApiError> {
    let (account, sid) = (account.to_owned(), sid.to_owned());
    Ok(state
        .read_models
        .read(move |c| sinks::get_sink(c, &account, &sid))
        .await?)
}

async fn read_subscription(
    state: &ApiState,
    account: &str,
    sid: &str,
) -> Result<Option<SubscriptionRow>, ApiError> {
    let (account, sid) = (account.to_owned(), sid.to_owned());
    Ok(state
        .read_models
        .read(move |c| sinks::get_subscription(c, &account, &sid))
        .await?)
}

/// Appends one event and waits for the projections (read-your-writes).
async fn write(
    state: &ApiState,
    auth: &Authenticated,
    stream: &str,
    expected: ExpectedVersion,
    payload: impl Into<Payload>,
) -> Result<(), ApiError> {
    let appended = state
        .log
        .append(stream, expected, vec![NewEvent::new(auth.sid(), payload)])
        .await?;
    if !state.await_projections(&appended.positions).await {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::UNAVAILABLE,
            "The change is recorded but not visible yet; read it again shortly",
        ));
    }
    Ok(())
}

#[utoipa::path(
    operation_id = "sinks_create_sink",
    post,
    path = "/v1/Accounts/{account_sid}/Sinks",
    tag = "Sinks",
    summary = "Create a webhook sink",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
    ),
    request_body(content = crate::openapi::schemas::SinkForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 201, description = "OK", body = crate::openapi::schemas::Sink),
        (status = 400, description = "Invalid parameter (error body names it)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 503, description = "Not visible yet, or not enabled", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn create_sink(
    State(state): State<ApiState>,
    auth: Authenticated,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = Params::parse(&body);
    let description = required(&params, "Description")?.to_owned();
    let sink_type = required(&params, "SinkType")?;
    if sink_type != "webhook" {
        return Err(ApiError::invalid(format!(
            "SinkType {sink_type:?} is not supported here: Dialtone delivers to webhook sinks"
        )));
    }
    let (destination, method, batch_events) =
        webhook_configuration(required(&params, "SinkConfiguration")?)?;
    let sid = SinkSid::generate();
    let created = SinkCreated {
        description,
        sink_type: sink_type.to_owned(),
        destination,
        method,
        batch_events,
    };
    write(
        &state,
        &auth,
        sid.as_str(),
        ExpectedVersion::NoStream,
        created,
    )
    .await?;
    let row = read_sink(&state, auth.sid(), sid.as_str())
        .await?
        .ok_or_else(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(sink_json(&row))).into_response())
}

#[utoipa::path(
    operation_id = "sinks_list_sinks",
    get,
    path = "/v1/Accounts/{account_sid}/Sinks",
    tag = "Sinks",
    summary = "List sinks",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("InUse" = Option<bool>, Query, description = "With subscriptions or not"),
        ("Status" = Option<String>, Query, description = "initialized, validating, active, failed"),
        ("PageSize" = Option<u32>, Query, description = "1–1000, default 50"),
        ("Page" = Option<u32>, Query, description = "Page index"),
    ),
    responses(
        (status = 200, description = "OK", body = crate::openapi::schemas::SinkList),
        (status = 400, description = "Invalid parameter (error body names it)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn list_sinks(
    State(state): State<ApiState>,
    auth: Authenticated,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::from_query(query.as_deref());
    let in_use = match params.non_empty("InUse") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "InUse must be true or false, not {other:?}"
            )))
        }
    };
    let status = params.non_empty("Status");
    if let Some(status) = status {
        if !["initialized", "validating", "active", "failed"].contains(&status) {
            return Err(ApiError::invalid(format!(
                "Status must be initialized, validating, active or failed, not {status:?}"
            )));
        }
    }
    let account = auth.sid().to_owned();
    let rows = state
        .read_models
        .read(move |c| sinks::list_sinks(c, &account))
        .await?;
    let items = rows
        .iter()
        .filter(|r| in_use.is_none_or(|u| (r.subscriptions > 0) == u))
        .filter(|_| status.is_none_or(|s| s == "active"))
        .map(sink_json)
        .collect();
    Ok(Json(meta_page(
        "sinks",
        &sinks_path(auth.sid()),
        &params,
        items,
    )?))
}

fn sink_sid(auth: &Authenticated, segment: &str) -> Result<String, ApiError> {
    let path = format!("{}/{segment}", sinks_path(auth.sid()));
    SinkSid::parse(segment)
        .map(String::from)
        .map_err(|_| ApiError::not_found(&path))
}

fn subscription_sid(auth: &Authenticated, segment: &str) -> Result<String, ApiError> {
    let path = format!("{}/{segment}", subscriptions_path(auth.sid()));
    SubscriptionSid::parse(segment)
        .map(String::from)
        .map_err(|_| ApiError::not_found(&path))
}

async fn existing_sink(
    state: &ApiState,
    auth: &Authenticated,
    segment: &str,
) -> Result<SinkRow, ApiError> {
    let sid = sink_sid(auth, segment)?;
    read_sink(state, auth.sid(), &sid)
        .await?
        .ok_or_else(|| ApiError::not_found(&format!("{}/{sid}", sinks_path(auth.sid()))))
}

async fn existing_subscription(
    state: &ApiState,
    auth: &Authenticated,
    segment: &str,
) -> Result<SubscriptionRow, ApiError> {
    let sid = subscription_sid(auth, segment)?;
    read_subscription(state, auth.sid(), &sid)
        .await?
        .ok_or_else(|| ApiError::not_found(&format!("{}/{sid}", subscriptions_path(auth.sid()))))
}

#[utoipa::path(
    operation_id = "sinks_fetch_sink",
    get,
    path = "/v1/Accounts/{account_sid}/Sinks/{sid}",
    tag = "Sinks",
    summary = "Fetch a sink",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "DG…"),
    ),
    responses(
        (status = 200, description = "OK", body = crate::openapi::schemas::Sink),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "Not found, or another account's (20404)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn fetch_sink(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, segment)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(sink_json(
        &existing_sink(&state, &auth, &segment).await?,
    )))
}

#[utoipa::path(
    operation_id = "sinks_update_sink",
    post,
    path = "/v1/Accounts/{account_sid}/Sinks/{sid}",
    tag = "Sinks",
    summary = "Change a sink's description",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "DG…"),
    ),
    request_body(content = crate::openapi::schemas::SinkForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "OK", body = crate::openapi::schemas::Sink),
        (status = 400, description = "Invalid parameter (error body names it)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "Not found, or another account's (20404)", body = crate::openapi::schemas::ErrorBody),
        (status = 409, description = "Concurrent modification (20409)", body = crate::openapi::schemas::ErrorBody),
        (status = 503, description = "Not visible yet, or not enabled", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn update_sink(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, segment)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(&body);
    let description = required(&params, "Description")?.to_owned();
    let row = existing_sink(&state, &auth, &segment).await?;
    write(
        &state,
        &auth,
        &row.sid,
        ExpectedVersion::Exact(row.version),
        SinkUpdated { description },
    )
    .await?;
    let row = existing_sink(&state, &auth, &row.sid).await?;
    Ok(Json(sink_json(&row)))
}

#[utoipa::path(
    operation_id = "sinks_delete_sink",
    delete,
    path = "/v1/Accounts/{account_sid}/Sinks/{sid}",
    tag = "Sinks",
    summary = "Delete a sink and its subscriptions",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "DG…"),
    ),
    responses(
        (status = 204, description = "Done"),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "Not found, or another account's (20404)", body = crate::openapi::schemas::ErrorBody),
        (status = 409, description = "Concurrent modification (20409)", body = crate::openapi::schemas::ErrorBody),
        (status = 503, description = "Not visible yet, or not enabled", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn delete_sink(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, segment)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let row = existing_sink(&state, &auth, &segment).await?;
    write(
        &state,
        &auth,
        &row.sid,
        ExpectedVersion::Exact(row.version),
        SinkDeleted {},
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `Types` entries: Twilio's JSON objects `{"type":"…","schema_version":N}`, or bare types.
fn subscribed_types(params: &Params) -> Result<Vec<SubscribedType>, ApiError> {
    let mut types = Vec::new();
    for (_, value) in params.0.iter().filter(|(k, _)| k == "Types") {
        let (event_type, schema_version) = match serde_json::from_str::<Value>(value) {
            Ok(Value::Object(object)) => (
                object
                    .get("type")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ApiError::invalid("Types: each entry needs a \"type\""))?
                    .to_owned(),
                object
                    .get("schema_version")
                    .and_then(Value::as_u64)
                    .unwrap_or(1),
            ),
            _ => (value.trim().to_owned(), 1),
        };
        TypePattern::parse(&event_type).map_err(|e| ApiError::invalid(format!("Types: {e}")))?;
        if !types
            .iter()
            .any(|t: &SubscribedType| t.event_type == event_type)
        {
            types.push(SubscribedType {
                event_type,
                schema_version: u32::try_from(schema_version).unwrap_or(1),
            });
        }
    }
    Ok(types)
}

#[utoipa::path(
    operation_id = "sinks_create_subscription",
    post,
    path = "/v1/Accounts/{account_sid}/Subscriptions",
    tag = "Sinks",
    summary = "Subscribe a sink to event types",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
    ),
    request_body(content = crate::openapi::schemas::SubscriptionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 201, description = "OK", body = crate::openapi::schemas::Subscription),
        (status = 400, description = "Invalid parameter (error body names it)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "Not found, or another account's (20404)", body = crate::openapi::schemas::ErrorBody),
        (status = 503, description = "Not visible yet, or not enabled", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn create_subscription(
    State(state): State<ApiState>,
    auth: Authenticated,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = Params::parse(&body);
    let description = required(&params, "Description")?.to_owned();
    let sink_segment = required(&params, "SinkSid")?;
    let types = subscribed_types(&params)?;
    if types.is_empty() {
        return Err(ApiError::invalid(
            "Missing required parameter Types in the post body",
        ));
    }
    let sink = SinkSid::parse(sink_segment)
        .map_err(|_| ApiError::invalid(format!("SinkSid {sink_segment:?} is not a sink SID")))?;
    if read_sink(&state, auth.sid(), sink.as_str())
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(&format!(
            "{}/{sink}",
            sinks_path(auth.sid())
        )));
    }
    let start = state.log.head().await?;
    let sid = SubscriptionSid::generate();
    let created = SubscriptionCreated {
        sink_sid: sink,
        description,
        types,
        start,
    };
    write(
        &state,
        &auth,
        sid.as_str(),
        ExpectedVersion::NoStream,
        created,
    )
    .await?;
    let row = existing_subscription(&state, &auth, sid.as_str()).await?;
    Ok((StatusCode::CREATED, Json(subscription_json(&row))).into_response())
}

#[utoipa::path(
    operation_id = "sinks_list_subscriptions",
    get,
    path = "/v1/Accounts/{account_sid}/Subscriptions",
    tag = "Sinks",
    summary = "List subscriptions",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("SinkSid" = Option<String>, Query, description = "DG…"),
        ("PageSize" = Option<u32>, Query, description = "1–1000, default 50"),
        ("Page" = Option<u32>, Query, description = "Page index"),
    ),
    responses(
        (status = 200, description = "OK", body = crate::openapi::schemas::SubscriptionList),
        (status = 400, description = "Invalid parameter (error body names it)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn list_subscriptions(
    State(state): State<ApiState>,
    auth: Authenticated,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::from_query(query.as_deref());
    let sink = params
        .non_empty("SinkSid")
        .map(|s| {
            SinkSid::parse(s)
                .map(String::from)
                .map_err(|_| ApiError::invalid(format!("SinkSid {s:?} is not a sink SID")))
        })
        .transpose()?;
    let account = auth.sid().to_owned();
    let rows = state
        .read_models
        .read(move |c| sinks::list_subscriptions(c, &account, sink.as_deref()))
        .await?;
    let items = rows.iter().map(subscription_json).collect();
    Ok(Json(meta_page(
        "subscriptions",
        &subscriptions_path(auth.sid()),
        &params,
        items,
    )?))
}

#[utoipa::path(
    operation_id = "sinks_fetch_subscription",
    get,
    path = "/v1/Accounts/{account_sid}/Subscriptions/{sid}",
    tag = "Sinks",
    summary = "Fetch a subscription",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "DF…"),
    ),
    responses(
        (status = 200, description = "OK", body = crate::openapi::schemas::Subscription),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "Not found, or another account's (20404)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn fetch_subscription(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, segment)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(subscription_json(
        &existing_subscription(&state, &auth, &segment).await?,
    )))
}

#[utoipa::path(
    operation_id = "sinks_update_subscription",
    post,
    path = "/v1/Accounts/{account_sid}/Subscriptions/{sid}",
    tag = "Sinks",
    summary = "Change a subscription's description or types",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "DF…"),
    ),
    request_body(content = crate::openapi::schemas::SubscriptionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "OK", body = crate::openapi::schemas::Subscription),
        (status = 400, description = "Invalid parameter (error body names it)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "Not found, or another account's (20404)", body = crate::openapi::schemas::ErrorBody),
        (status = 409, description = "Concurrent modification (20409)", body = crate::openapi::schemas::ErrorBody),
        (status = 503, description = "Not visible yet, or not enabled", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn update_subscription(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, segment)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(&body);
    let row = existing_subscription(&state, &auth, &segment).await?;
    let types = subscribed_types(&params)?;
    let update = SubscriptionUpdated {
        description: params.non_empty("Description").map(str::to_owned),
        types: (!types.is_empty()).then_some(types),
    };
    if update == SubscriptionUpdated::default() {
        return Err(ApiError::invalid(
            "Nothing to update: give Description or Types",
        ));
    }
    write(
        &state,
        &auth,
        &row.sid,
        ExpectedVersion::Exact(row.version),
        update,
    )
    .await?;
    let row = existing_subscription(&state, &auth, &row.sid).await?;
    Ok(Json(subscription_json(&row)))
}

#[utoipa::path(
    operation_id = "sinks_delete_subscription",
    delete,
    path = "/v1/Accounts/{account_sid}/Subscriptions/{sid}",
    tag = "Sinks",
    summary = "Delete a subscription",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "DF…"),
    ),
    responses(
        (status = 204, description = "Done"),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "Not found, or another account's (20404)", body = crate::openapi::schemas::ErrorBody),
        (status = 409, description = "Concurrent modification (20409)", body = crate::openapi::schemas::ErrorBody),
        (status = 503, description = "Not visible yet, or not enabled", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn delete_subscription(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, segment)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let row = existing_subscription(&state, &auth, &segment).await?;
    write(
        &state,
        &auth,
        &row.sid,
        ExpectedVersion::Exact(row.version),
        SubscriptionDeleted {},
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    operation_id = "sinks_list_subscribed_events",
    get,
    path = "/v1/Accounts/{account_sid}/Subscriptions/{sid}/SubscribedEvents",
    tag = "Sinks",
    summary = "A subscription's event types",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "DF…"),
        ("PageSize" = Option<u32>, Query, description = "1–1000, default 50"),
        ("Page" = Option<u32>, Query, description = "Page index"),
    ),
    responses(
        (status = 200, description = "OK", body = crate::openapi::schemas::SubscribedEventList),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "Not found, or another account's (20404)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn list_subscribed_events(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, segment)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::from_query(query.as_deref());
    let row = existing_subscription(&state, &auth, &segment).await?;
    let items = row
        .types
        .iter()
        .map(|t| subscribed_event_json(&row, t))
        .collect();
    let path = format!(
        "{}/{}/SubscribedEvents",
        subscriptions_path(auth.sid()),
        row.sid
    );
    Ok(Json(meta_page("types", &path, &params, items)?))
}

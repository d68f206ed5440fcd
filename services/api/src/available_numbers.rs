//! The number inventory at the API: `AvailablePhoneNumbers/{Country}/Local|TollFree|Mobile`
//! searches the numbers no account holds (Twilio's filters), and the operator loads the
//! inventory with `POST /v1/PhoneNumberInventory` (the CSV of `dialtone numbers import`),
//! authenticated with the operator token (`dialtone numbers operator-token`, see
//! [`crate::auth::authorize_operator`]).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dialtone_projections::inventory::{
    parse_inventory_csv, search_available, stock_numbers, stocks_country, ContainsPattern,
    InventoryRow, InventorySearch,
};
use dialtone_projections::numbers::format_national;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::params::Params;
use crate::{ApiState, API_VERSION};

/// Numbers in one search answer unless `PageSize` says otherwise (Twilio's default).
const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 1000;

/// The inventory type of a Twilio search path segment.
fn number_type(segment: &str) -> Option<&'static str> {
    match segment {
        "Local.json" => Some("local"),
        "TollFree.json" => Some("toll-free"),
        "Mobile.json" => Some("mobile"),
        _ => None,
    }
}

/// Twilio's AvailablePhoneNumber representation.
pub(crate) fn available_json(row: &InventoryRow) -> Value {
    json!({
        "address_requirements": "none",
        "beta": false,
        "capabilities": {"voice": row.voice, "SMS": row.sms, "MMS": false, "fax": false},
        "friendly_name": format_national(&row.phone_number),
        "iso_country": row.iso_country,
        "lata": null,
        "latitude": null,
        "locality": row.locality,
        "longitude": null,
        "phone_number": row.phone_number,
        "postal_code": null,
        "rate_center": null,
        "region": row.region,
    })
}

fn flag(params: &Params, name: &str) -> Result<Option<bool>, ApiError> {
    match params
        .non_empty(name)
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(ApiError::invalid(format!(
            "{name} must be true or false, not {other:?}"
        ))),
    }
}

/// A NANP area code: three digits, the first 2–9.
pub(crate) fn area_code(value: &str) -> Result<String, ApiError> {
    let value = value.trim();
    let valid = value.len() == 3
        && value.bytes().all(|b| b.is_ascii_digit())
        && !value.starts_with(['0', '1']);
    if valid {
        Ok(value.to_owned())
    } else {
        Err(ApiError::invalid(format!(
            "AreaCode must be a three-digit area code such as 415, not {value:?}"
        )))
    }
}

#[utoipa::path(
    operation_id = "available_numbers_search",
    get,
    path = "/2010-04-01/Accounts/{account_sid}/AvailablePhoneNumbers/{country_code}/{number_type}",
    tag = "AvailablePhoneNumbers",
    summary = "Search the inventory's available numbers (Local.json, TollFree.json, Mobile.json)",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("country_code" = String, Path, description = "ISO 3166-1 alpha-2 (US)"),
        ("number_type" = String, Path, description = "Local.json, TollFree.json or Mobile.json"),
        ("AreaCode" = Option<u32>, Query, description = "NANP area code"),
        ("Contains" = Option<String>, Query, description = "2–16 of digits, letters (keypad digits) and * (any digit); a leading + anchors it at the start"),
        ("InRegion" = Option<String>, Query, description = "Region or state (CA)"),
        ("InLocality" = Option<String>, Query, description = "City"),
        ("SmsEnabled" = Option<bool>, Query, description = "true or false"),
        ("VoiceEnabled" = Option<bool>, Query, description = "true or false"),
        ("PageSize" = Option<u32>, Query, description = "1–1000, default 50"),
    ),
    responses(
        (status = 200, description = "OK", body = crate::openapi::schemas::AvailablePhoneNumberList),
        (status = 400, description = "Invalid parameter (error body names it)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "A country the inventory has no numbers of, or another type (20404)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn search(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, country, segment)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let path = format!(
        "/{API_VERSION}/Accounts/{}/AvailablePhoneNumbers/{country}/{segment}",
        auth.sid()
    );
    let Some(kind) = number_type(&segment) else {
        return Err(ApiError::not_found(&path));
    };
    let iso_country = country.to_ascii_uppercase();
    if iso_country.len() != 2 || !iso_country.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(ApiError::not_found(&path));
    }
    let params = Params::from_query(query.as_deref());
    let contains = params
        .non_empty("Contains")
        .map(ContainsPattern::parse)
        .transpose()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let limit = match params.non_empty("PageSize") {
        None => DEFAULT_PAGE_SIZE,
        Some(size) => size
            .parse::<usize>()
            .ok()
            .filter(|s| (1..=MAX_PAGE_SIZE).contains(s))
            .ok_or_else(|| ApiError::invalid("PageSize must be 1 to 1000"))?,
    };
    let search = InventorySearch {
        iso_country: iso_country.clone(),
        number_type: kind.to_owned(),
        area_code: params.non_empty("AreaCode").map(area_code).transpose()?,
        contains,
        in_region: params.non_empty("InRegion").map(str::to_owned),
        in_locality: params.non_empty("InLocality").map(str::to_owned),
        sms_enabled: flag(&params, "SmsEnabled")?,
        voice_enabled: flag(&params, "VoiceEnabled")?,
        limit,
        now: OffsetDateTime::now_utc(),
        aging: state.number_policy.release_aging,
    };
    let (stocked, found) = state
        .read_models
        .read(move |c| {
            Ok((
                stocks_country(c, &search.iso_country)?,
                search_available(c, &search)?,
            ))
        })
        .await?;
    if !stocked {
        return Err(ApiError::not_found(&path));
    }
    let uri = match query.as_deref().filter(|q| !q.is_empty()) {
        Some(query) => format!("{path}?{query}"),
        None => path.clone(),
    };
    let items: Vec<Value> = found.iter().map(available_json).collect();
    Ok(Json(json!({
        "available_phone_numbers": items,
        "uri": uri,
        "first_page_uri": uri,
        "next_page_uri": null,
        "previous_page_uri": null,
        "page": 0,
        "page_size": limit,
        "start": 0,
        "end": found.len().saturating_sub(1),
    })))
}

#[utoipa::path(
    operation_id = "inventory_import",
    post,
    path = "/v1/PhoneNumberInventory",
    tag = "AvailablePhoneNumbers",
    summary = "Operator: stock numbers from a CSV (number,country,type,region,locality,voice,sms,monthly_price)",
    request_body(content = String, content_type = "text/csv"),
    responses(
        (status = 200, description = "The good rows were stocked; `refused` names each bad row with its line", body = Object),
        (status = 400, description = "The file's header is unusable (20001)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Not the operator token (20003)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("operatorToken" = [])),
)]
pub(crate) async fn import(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    crate::auth::authorize_operator(&state, &headers)?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::invalid("the inventory file must be UTF-8 CSV"))?;
    let file = parse_inventory_csv(text).map_err(ApiError::invalid)?;
    let stocked = stock_numbers(state.log.as_ref(), &file.rows, |_| {}).await?;
    let refused: Vec<Value> = file
        .refused
        .iter()
        .map(|(line, error)| json!({"line": line, "error": error}))
        .collect();
    Ok((
        StatusCode::OK,
        Json(json!({"stocked": stocked, "refused": refused})),
    )
        .into_response())
}

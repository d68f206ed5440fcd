//! The account itself (`/2010-04-01/Accounts/{AC}.json`: fetch, update `FriendlyName` and
//! `Status`), its subaccounts (`/2010-04-01/Accounts.json`: create, list; the parent's
//! credentials reach them, never the reverse) and its API keys (`Keys`: create — the secret shown once — list, fetch, update,
//! delete). Every change is an event on the account's `AC…` stream.
//!
//! Status, as Twilio: `active`; `suspended` (reads work, writes fail with 20005, its numbers
//! reject calls; the account can be made active again); `closed` (final: every request fails
//! with 20005).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dialtone_events::payload::{AccountUpdated, ApiKeyCreated, ApiKeyDeleted, ApiKeyUpdated};
use dialtone_events::{ExpectedVersion, NewEvent, Payload};
use dialtone_projections::accounts::{
    create_subaccount, new_api_key_secret, token_sha256, AccountEntry, ApiKey, ACTIVE, CLOSED,
    SUSPENDED,
};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

use crate::auth::{admit, authenticate, Authenticated};
use crate::error::{codes, ApiError};
use crate::format::{rfc2822, sid_segment};
use crate::paging::{page_of, Paging};
use crate::params::Params;
use crate::ApiState;
use serde_json::Value;

/// The Account resource (Twilio's shape). `auth_token` is null but in the answer that
/// creates a subaccount: Dialtone shows a token once and stores only its hash.
#[derive(Serialize, ToSchema)]
pub struct AccountResource {
    pub auth_token: Option<String>,
    pub date_created: String,
    pub date_updated: String,
    pub friendly_name: String,
    pub owner_account_sid: String,
    pub sid: String,
    /// `active`, `suspended` or `closed`.
    pub status: String,
    pub subresource_uris: BTreeMap<String, String>,
    /// `Full`.
    #[serde(rename = "type")]
    pub account_type: String,
    pub uri: String,
}

/// Twilio's paging members of a list (for the OpenAPI schemas of the lists here: the answers
/// themselves are [`crate::paging::page_of`]'s).
#[derive(Serialize, ToSchema)]
pub struct PageMembers {
    pub end: usize,
    pub first_page_uri: String,
    pub next_page_uri: Option<String>,
    pub page: u32,
    pub page_size: usize,
    pub previous_page_uri: Option<String>,
    pub start: usize,
    pub uri: String,
}

/// `GET /Accounts.json`: the authenticated account and its subaccounts.
#[derive(Serialize, ToSchema)]
pub struct AccountList {
    pub accounts: Vec<AccountResource>,
    #[serde(flatten)]
    pub page: PageMembers,
}

/// An API key (`SK…`) as listed and fetched: never its secret.
#[derive(Serialize, ToSchema)]
pub struct KeyResource {
    pub sid: String,
    pub friendly_name: String,
    pub date_created: String,
    pub date_updated: String,
}

/// A new API key: the only time its secret is shown.
#[derive(Serialize, ToSchema)]
pub struct NewKeyResource {
    pub sid: String,
    pub friendly_name: String,
    pub date_created: String,
    pub date_updated: String,
    pub secret: String,
}

/// `GET …/Keys.json`: the account's keys (without secrets), paged.
#[derive(Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyResource>,
    #[serde(flatten)]
    pub page: PageMembers,
}

fn account_resource(account: &AccountEntry) -> AccountResource {
    let base = format!("/2010-04-01/Accounts/{}", account.sid);
    let subresource_uris = [
        "calls",
        "conferences",
        "incoming_phone_numbers",
        "keys",
        "recordings",
        "usage",
    ]
    .into_iter()
    .map(|name| {
        let path = match name {
            "incoming_phone_numbers" => "IncomingPhoneNumbers".to_owned(),
            other => {
                let mut chars = other.chars();
                chars
                    .next()
                    .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            }
        };
        (name.to_owned(), format!("{base}/{path}.json"))
    })
    .collect();
    AccountResource {
        auth_token: None,
        date_created: rfc2822(account.date_created),
        date_updated: rfc2822(account.date_updated),
        friendly_name: account.friendly_name.clone(),
        owner_account_sid: account
            .owner_account_sid
            .clone()
            .unwrap_or_else(|| account.sid.clone()),
        sid: account.sid.clone(),
        status: account.status.clone(),
        subresource_uris,
        account_type: "Full".to_owned(),
        uri: format!("{base}.json"),
    }
}

fn key_resource(key: &ApiKey) -> KeyResource {
    KeyResource {
        sid: key.sid.clone(),
        friendly_name: key.friendly_name.clone(),
        date_created: rfc2822(key.date_created),
        date_updated: rfc2822(key.date_updated),
    }
}

/// A resource as the JSON of a list's items.
pub(crate) fn json_of(resource: impl Serialize) -> Value {
    serde_json::to_value(resource).unwrap_or(Value::Null)
}

/// Appends `payload` to the account's stream, waits for the projections, and returns the
/// account as it is then.
pub(crate) async fn write(
    state: &ApiState,
    auth: &Authenticated,
    payload: impl Into<Payload>,
) -> Result<std::sync::Arc<AccountEntry>, ApiError> {
    let appended = state
        .log
        .append(
            auth.sid(),
            ExpectedVersion::Any,
            vec![NewEvent::new(auth.sid(), payload)],
        )
        .await?;
    if !state.await_projections(&appended.positions).await {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::UNAVAILABLE,
            "the change is recorded but not applied yet; fetch the account again",
        ));
    }
    state
        .accounts
        .get(auth.sid())
        .ok_or_else(ApiError::internal)
}

#[utoipa::path(
    operation_id = "accounts_list",
    get,
    path = "/2010-04-01/Accounts.json",
    tag = "Accounts",
    summary = "The authenticated account and its subaccounts",
    params(
        ("FriendlyName" = Option<String>, Query, description = "Exact"),
        ("Status" = Option<String>, Query, description = "active, suspended or closed"),
    ),
    responses(
        (status = 200, description = "OK", body = AccountList),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Result<Json<Value>, ApiError> {
    let caller = authenticate(&state, &headers)?;
    admit(&caller, &axum::http::Method::GET, uri.path())?;
    let params = Params::from_query(uri.query());
    let paging = Paging::parse(&params)?;
    let name = params.get("FriendlyName");
    let status = params.get("Status");
    let mut all = vec![caller.clone()];
    all.extend(state.accounts.subaccounts_of(&caller.sid));
    all.retain(|a| name.is_none_or(|n| a.friendly_name == n));
    all.retain(|a| status.is_none_or(|s| a.status == s));
    Ok(Json(page_of(
        "accounts",
        &all,
        |a| json_of(account_resource(a)),
        "/2010-04-01/Accounts.json",
        &params,
        &paging,
    )))
}

#[utoipa::path(
    operation_id = "accounts_create",
    post,
    path = "/2010-04-01/Accounts.json",
    tag = "Accounts",
    summary = "Create a subaccount of the authenticated account; its auth_token is in this answer only",
    responses(
        (status = 201, description = "Created", body = AccountResource),
        (status = 400, description = "Invalid parameter, or a subaccount asking for one (20001)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Wrong or missing credentials (20003), or the account is not active (20005)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn create(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authenticate(&state, &headers)?;
    admit(&caller, &axum::http::Method::POST, uri.path())?;
    if caller.owner_account_sid.is_some() {
        return Err(ApiError::invalid("a subaccount cannot have subaccounts"));
    }
    let secret = state.node_secret.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::UNAVAILABLE,
            "this node cannot create accounts",
        )
    })?;
    let params = Params::parse(&body);
    let now = time::OffsetDateTime::now_utc();
    let friendly_name = params
        .friendly_name()?
        .map(str::to_owned)
        .unwrap_or_else(|| format!("SubAccount Created at {}", rfc2822(now)));
    let (sid, token, positions) = create_subaccount(
        state.log.as_ref(),
        &secret,
        &friendly_name,
        Some(&caller.sid),
    )
    .await?;
    if !state.await_projections(&positions).await {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::UNAVAILABLE,
            "the account is recorded but not applied yet",
        ));
    }
    let account = state
        .accounts
        .get(sid.as_str())
        .ok_or_else(ApiError::internal)?;
    let mut shown = account_resource(&account);
    shown.auth_token = Some(token);
    Ok((StatusCode::CREATED, Json(shown)).into_response())
}

#[utoipa::path(
    operation_id = "accounts_fetch",
    get,
    path = "/2010-04-01/Accounts/{account_sid}",
    tag = "Accounts",
    summary = "Fetch the account",
    params(("account_sid" = String, Path, description = "The account: AC…, optionally followed by .json; must be the one authenticating")),
    responses(
        (status = 200, description = "OK", body = AccountResource),
        (status = 401, description = "Wrong or missing credentials (20003), or the account is closed (20005)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn fetch(auth: Authenticated) -> Json<AccountResource> {
    Json(account_resource(&auth.account))
}

#[utoipa::path(
    operation_id = "accounts_update",
    post,
    path = "/2010-04-01/Accounts/{account_sid}",
    tag = "Accounts",
    summary = "Update the account: FriendlyName, Status (active, suspended, closed)",
    params(("account_sid" = String, Path, description = "The account: AC…, optionally followed by .json; must be the one authenticating")),
    responses(
        (status = 200, description = "OK", body = AccountResource),
        (status = 400, description = "Invalid parameter (error body names it)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Wrong or missing credentials (20003), or the account is closed (20005)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn update(
    State(state): State<ApiState>,
    auth: Authenticated,
    body: Bytes,
) -> Result<Json<AccountResource>, ApiError> {
    let params = Params::parse(&body);
    let friendly_name = params.friendly_name()?.map(str::to_owned);
    let status = match params.get("Status") {
        None => None,
        Some(s @ (ACTIVE | SUSPENDED | CLOSED)) => Some(s.to_owned()),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "Status {other:?} is not one of active, suspended, closed"
            )))
        }
    };
    if friendly_name.is_none() && status.is_none() {
        return Ok(Json(account_resource(&auth.account)));
    }
    let account = write(
        &state,
        &auth,
        AccountUpdated {
            friendly_name,
            status,
        },
    )
    .await?;
    Ok(Json(account_resource(&account)))
}

#[utoipa::path(
    operation_id = "accounts_list_keys",
    get,
    path = "/2010-04-01/Accounts/{account_sid}/Keys.json",
    tag = "Accounts",
    summary = "List the account's API keys",
    params(("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating")),
    responses(
        (status = 200, description = "OK", body = KeyList),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn list_keys(
    auth: Authenticated,
    uri: axum::http::Uri,
) -> Result<Json<Value>, ApiError> {
    let params = Params::from_query(uri.query());
    let paging = Paging::parse(&params)?;
    Ok(Json(page_of(
        "keys",
        &auth.account.keys,
        |k| json_of(key_resource(k)),
        &format!("/2010-04-01/Accounts/{}/Keys.json", auth.sid()),
        &params,
        &paging,
    )))
}

#[utoipa::path(
    operation_id = "accounts_create_key",
    post,
    path = "/2010-04-01/Accounts/{account_sid}/Keys.json",
    tag = "Accounts",
    summary = "Create an API key; its secret is in this answer only",
    params(("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating")),
    responses(
        (status = 201, description = "Created", body = NewKeyResource),
        (status = 400, description = "Invalid parameter (error body names it)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Wrong or missing credentials (20003), or the account is not active (20005)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn create_key(
    State(state): State<ApiState>,
    auth: Authenticated,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = Params::parse(&body);
    let friendly_name = params.friendly_name()?.unwrap_or_default().to_owned();
    let key_sid = dialtone_events::sid::KeySid::generate().to_string();
    let secret = new_api_key_secret();
    let account = write(
        &state,
        &auth,
        ApiKeyCreated {
            key_sid: key_sid.clone(),
            friendly_name,
            secret_sha256: token_sha256(&secret),
        },
    )
    .await?;
    let key = account
        .keys
        .iter()
        .find(|k| k.sid == key_sid)
        .ok_or_else(ApiError::internal)?;
    let shown = key_resource(key);
    Ok((
        StatusCode::CREATED,
        Json(NewKeyResource {
            sid: shown.sid,
            friendly_name: shown.friendly_name,
            date_created: shown.date_created,
            date_updated: shown.date_updated,
            secret,
        }),
    )
        .into_response())
}

/// The key `segment` names (`SK…` or `SK….json`) of the authenticated account.
fn key_of<'a>(auth: &'a Authenticated, segment: &str, path: &str) -> Result<&'a ApiKey, ApiError> {
    let sid = sid_segment(segment, "SK", path)?;
    auth.account
        .keys
        .iter()
        .find(|k| k.sid == sid)
        .ok_or_else(|| ApiError::not_found(path))
}

#[utoipa::path(
    operation_id = "accounts_fetch_key",
    get,
    path = "/2010-04-01/Accounts/{account_sid}/Keys/{sid}",
    tag = "Accounts",
    summary = "Fetch an API key (without its secret)",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "SK…, optionally followed by .json"),
    ),
    responses(
        (status = 200, description = "OK", body = KeyResource),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "No such key (20404)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn fetch_key(
    auth: Authenticated,
    Path((_, segment)): Path<(String, String)>,
    uri: axum::http::Uri,
) -> Result<Json<KeyResource>, ApiError> {
    Ok(Json(key_resource(key_of(&auth, &segment, uri.path())?)))
}

#[utoipa::path(
    operation_id = "accounts_update_key",
    post,
    path = "/2010-04-01/Accounts/{account_sid}/Keys/{sid}",
    tag = "Accounts",
    summary = "Rename an API key",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "SK…, optionally followed by .json"),
    ),
    responses(
        (status = 200, description = "OK", body = KeyResource),
        (status = 401, description = "Wrong or missing credentials (20003), or the account is not active (20005)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "No such key (20404)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn update_key(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, segment)): Path<(String, String)>,
    uri: axum::http::Uri,
    body: Bytes,
) -> Result<Json<KeyResource>, ApiError> {
    let key_sid = key_of(&auth, &segment, uri.path())?.sid.clone();
    let params = Params::parse(&body);
    let Some(friendly_name) = params.friendly_name()? else {
        return Ok(Json(key_resource(key_of(&auth, &segment, uri.path())?)));
    };
    let account = write(
        &state,
        &auth,
        ApiKeyUpdated {
            key_sid: key_sid.clone(),
            friendly_name: friendly_name.to_owned(),
        },
    )
    .await?;
    let key = account
        .keys
        .iter()
        .find(|k| k.sid == key_sid)
        .ok_or_else(ApiError::internal)?;
    Ok(Json(key_resource(key)))
}

#[utoipa::path(
    operation_id = "accounts_delete_key",
    delete,
    path = "/2010-04-01/Accounts/{account_sid}/Keys/{sid}",
    tag = "Accounts",
    summary = "Delete an API key: it stops authenticating at once",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "SK…, optionally followed by .json"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Wrong or missing credentials (20003), or the account is not active (20005)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "No such key (20404)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn delete_key(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, segment)): Path<(String, String)>,
    uri: axum::http::Uri,
) -> Result<StatusCode, ApiError> {
    let key_sid = key_of(&auth, &segment, uri.path())?.sid.clone();
    write(&state, &auth, ApiKeyDeleted { key_sid }).await?;
    Ok(StatusCode::NO_CONTENT)
}

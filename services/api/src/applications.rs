//! TwiML Applications (`/2010-04-01/Accounts/{AC}/Applications`): create, list, fetch,
//! update, delete. A number's `VoiceApplicationSid` and an outbound call's `ApplicationSid`
//! use the application's voice URLs and status callback instead of their own. Events on the
//! account's stream.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dialtone_events::payload::{
    ApplicationConfig, ApplicationCreated, ApplicationDeleted, ApplicationUpdated,
};
use dialtone_events::sid::ApplicationSid;
use dialtone_projections::accounts::Application;
use serde::Serialize;
use utoipa::ToSchema;

use crate::accounts::{json_of, write, PageMembers};
use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::format::{rfc2822, sid_segment};
use crate::paging::{page_of, Paging};
use crate::params::Params;
use crate::ApiState;
use serde_json::Value;

/// An Application (Twilio's shape).
#[derive(Serialize, ToSchema)]
pub struct ApplicationResource {
    pub account_sid: String,
    pub api_version: String,
    pub date_created: String,
    pub date_updated: String,
    pub friendly_name: String,
    pub message_status_callback: Option<String>,
    pub public_application_connect_enabled: bool,
    pub sid: String,
    pub sms_fallback_method: String,
    pub sms_fallback_url: String,
    pub sms_method: String,
    pub sms_status_callback: Option<String>,
    pub sms_url: String,
    pub status_callback: String,
    pub status_callback_method: String,
    pub uri: String,
    pub voice_caller_id_lookup: bool,
    pub voice_fallback_method: String,
    pub voice_fallback_url: String,
    pub voice_method: String,
    pub voice_url: String,
}

#[derive(Serialize, ToSchema)]
pub struct ApplicationList {
    pub applications: Vec<ApplicationResource>,
    #[serde(flatten)]
    pub page: PageMembers,
}

fn resource(account: &str, app: &Application) -> ApplicationResource {
    let c = &app.config;
    let url = |u: &Option<String>| u.clone().unwrap_or_default();
    ApplicationResource {
        account_sid: account.to_owned(),
        api_version: "2010-04-01".to_owned(),
        date_created: rfc2822(app.date_created),
        date_updated: rfc2822(app.date_updated),
        friendly_name: c.friendly_name.clone(),
        message_status_callback: None,
        public_application_connect_enabled: false,
        sid: app.sid.clone(),
        sms_fallback_method: c.sms_fallback_method.as_str().to_owned(),
        sms_fallback_url: url(&c.sms_fallback_url),
        sms_method: c.sms_method.as_str().to_owned(),
        sms_status_callback: None,
        sms_url: url(&c.sms_url),
        status_callback: url(&c.status_callback),
        status_callback_method: c.status_callback_method.as_str().to_owned(),
        uri: format!(
            "/2010-04-01/Accounts/{account}/Applications/{}.json",
            app.sid
        ),
        voice_caller_id_lookup: false,
        voice_fallback_method: c.voice_fallback_method.as_str().to_owned(),
        voice_fallback_url: url(&c.voice_fallback_url),
        voice_method: c.voice_method.as_str().to_owned(),
        voice_url: url(&c.voice_url),
    }
}

/// Applies the parameters present (absent: unchanged; sent empty: cleared).
fn apply(config: &mut ApplicationConfig, params: &Params) -> Result<(), ApiError> {
    if let Some(name) = params.friendly_name()? {
        config.friendly_name = name.to_owned();
    }
    let urls: [(&str, &mut Option<String>); 5] = [
        ("VoiceUrl", &mut config.voice_url),
        ("VoiceFallbackUrl", &mut config.voice_fallback_url),
        ("StatusCallback", &mut config.status_callback),
        ("SmsUrl", &mut config.sms_url),
        ("SmsFallbackUrl", &mut config.sms_fallback_url),
    ];
    for (name, field) in urls {
        if let Some(url) = params.url(name)? {
            *field = url;
        }
    }
    let methods = [
        ("VoiceMethod", &mut config.voice_method),
        ("VoiceFallbackMethod", &mut config.voice_fallback_method),
        ("StatusCallbackMethod", &mut config.status_callback_method),
        ("SmsMethod", &mut config.sms_method),
        ("SmsFallbackMethod", &mut config.sms_fallback_method),
    ];
    for (name, field) in methods {
        if let Some(method) = params.method(name)? {
            *field = method;
        }
    }
    Ok(())
}

fn of<'a>(auth: &'a Authenticated, segment: &str, path: &str) -> Result<&'a Application, ApiError> {
    let sid = sid_segment(segment, "AP", path)?;
    auth.account
        .application(sid)
        .ok_or_else(|| ApiError::not_found(path))
}

#[utoipa::path(
    operation_id = "applications_list",
    get,
    path = "/2010-04-01/Accounts/{account_sid}/Applications.json",
    tag = "Applications",
    summary = "List the account's TwiML Applications",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("FriendlyName" = Option<String>, Query, description = "Exact"),
    ),
    responses(
        (status = 200, description = "OK", body = ApplicationList),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn list(auth: Authenticated, uri: Uri) -> Result<Json<Value>, ApiError> {
    let params = Params::from_query(uri.query());
    let paging = Paging::parse(&params)?;
    let name = params.get("FriendlyName");
    let matching: Vec<&Application> = auth
        .account
        .applications
        .iter()
        .filter(|a| name.is_none_or(|n| a.config.friendly_name == n))
        .collect();
    Ok(Json(page_of(
        "applications",
        &matching,
        |a| json_of(resource(auth.sid(), a)),
        &format!("/2010-04-01/Accounts/{}/Applications.json", auth.sid()),
        &params,
        &paging,
    )))
}

#[utoipa::path(
    operation_id = "applications_create",
    post,
    path = "/2010-04-01/Accounts/{account_sid}/Applications.json",
    tag = "Applications",
    summary = "Create a TwiML Application",
    params(("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating")),
    responses(
        (status = 201, description = "Created", body = ApplicationResource),
        (status = 400, description = "Invalid parameter (error body names it)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Wrong or missing credentials (20003), or the account is not active (20005)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn create(
    State(state): State<ApiState>,
    auth: Authenticated,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut config = ApplicationConfig::default();
    apply(&mut config, &Params::parse(&body))?;
    let sid = ApplicationSid::generate().to_string();
    let account = write(
        &state,
        &auth,
        ApplicationCreated {
            application_sid: sid.clone(),
            config,
        },
    )
    .await?;
    let app = account.application(&sid).ok_or_else(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(resource(auth.sid(), app))).into_response())
}

#[utoipa::path(
    operation_id = "applications_fetch",
    get,
    path = "/2010-04-01/Accounts/{account_sid}/Applications/{sid}",
    tag = "Applications",
    summary = "Fetch a TwiML Application",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "AP…, optionally followed by .json"),
    ),
    responses(
        (status = 200, description = "OK", body = ApplicationResource),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "No such application (20404)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn fetch(
    auth: Authenticated,
    Path((_, segment)): Path<(String, String)>,
    uri: Uri,
) -> Result<Json<ApplicationResource>, ApiError> {
    Ok(Json(resource(auth.sid(), of(&auth, &segment, uri.path())?)))
}

#[utoipa::path(
    operation_id = "applications_update",
    post,
    path = "/2010-04-01/Accounts/{account_sid}/Applications/{sid}",
    tag = "Applications",
    summary = "Update a TwiML Application",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "AP…, optionally followed by .json"),
    ),
    responses(
        (status = 200, description = "OK", body = ApplicationResource),
        (status = 400, description = "Invalid parameter (error body names it)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Wrong or missing credentials (20003), or the account is not active (20005)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "No such application (20404)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn update(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, segment)): Path<(String, String)>,
    uri: Uri,
    body: Bytes,
) -> Result<Json<ApplicationResource>, ApiError> {
    let app = of(&auth, &segment, uri.path())?;
    let (sid, mut config) = (app.sid.clone(), app.config.clone());
    apply(&mut config, &Params::parse(&body))?;
    let account = write(
        &state,
        &auth,
        ApplicationUpdated {
            application_sid: sid.clone(),
            config,
        },
    )
    .await?;
    let app = account.application(&sid).ok_or_else(ApiError::internal)?;
    Ok(Json(resource(auth.sid(), app)))
}

#[utoipa::path(
    operation_id = "applications_delete",
    delete,
    path = "/2010-04-01/Accounts/{account_sid}/Applications/{sid}",
    tag = "Applications",
    summary = "Delete a TwiML Application (numbers using it fall back to their own URLs)",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "AP…, optionally followed by .json"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Wrong or missing credentials (20003), or the account is not active (20005)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "No such application (20404)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn delete(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, segment)): Path<(String, String)>,
    uri: Uri,
) -> Result<StatusCode, ApiError> {
    let application_sid = of(&auth, &segment, uri.path())?.sid.clone();
    write(&state, &auth, ApplicationDeleted { application_sid }).await?;
    Ok(StatusCode::NO_CONTENT)
}

//! Calls create and update: outbound calls and live call control.
//!
//! Parameters are validated here (pure functions: [`parse_create`], [`parse_update`],
//! [`check_state`]) with Twilio's error codes; the [`CallController`] carries the command out
//! and writes the call's events; the handler then waits for the projections to apply them
//! (read-your-writes) and answers with the Call resource.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use dialtone_events::payload::{CallInitiated, CallStatus, Direction, HttpMethod};
use dialtone_events::sid::{AccountSid, CallSid};
use dialtone_events::{Payload, RecordedEvent};
use dialtone_projections::calls::{self, CallRecord, CallRow};
use dialtone_projections::numbers::normalize_e164;
use serde_json::Value;
use time::OffsetDateTime;

use crate::auth::Authenticated;
use crate::calls::call_json;
use crate::control::{CallAction, CallController, ControlError, CreateCall, UpdateCall};
use crate::error::{codes, ApiError};
use crate::format::sid_segment;
use crate::params::Params;
use crate::{ApiState, API_VERSION};

/// Twilio error codes of the Calls resource.
mod call_codes {
    /// No `To` number is specified.
    pub const MISSING_TO: u32 = 21201;
    /// Invalid `To` (not a phone number or SIP URI, or an unsupported endpoint).
    pub const INVALID_TO: u32 = 21211;
    /// Invalid `From`.
    pub const INVALID_FROM: u32 = 21212;
    /// No `From` number is specified.
    pub const MISSING_FROM: u32 = 21213;
    /// `ApplicationSid` is not an application of the account.
    pub const INVALID_APPLICATION: u32 = 21218;
    /// The call is not in a valid state for the update.
    pub const INVALID_CALL_STATE: u32 = 21220;
}

/// Twilio's limit on inline TwiML.
const MAX_TWIML_CHARS: usize = 4000;
const DEFAULT_TIMEOUT_S: u32 = 60;
const MAX_TIMEOUT_S: u32 = 600;
const MAX_SEND_DIGITS: usize = 32;
/// 24 hours: Twilio's upper bound for `TimeLimit`.
const MAX_TIME_LIMIT_S: u32 = 86_400;
const CALL_EVENTS: &[&str] = &["initiated", "ringing", "answered", "completed"];
const RECORDING_EVENTS: &[&str] = &["in-progress", "completed", "absent"];

fn call_path(account: &str, sid: &str) -> String {
    format!("/{API_VERSION}/Accounts/{account}/Calls/{sid}.json")
}

fn not_implemented(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        codes::NOT_IMPLEMENTED,
        format!("{what} is not available: this Dialtone node has no call controller"),
    )
}

// ---------------------------------------------------------------------------------------
// parameters

/// Every value of `name` (form fields may repeat).
fn all_values<'a>(params: &'a Params, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    params
        .0
        .iter()
        .filter(move |(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A list parameter sent as repeated fields and/or space- (or comma-) separated values,
/// each one of `allowed`; duplicates dropped, first-named order kept.
fn event_list(params: &Params, name: &str, allowed: &[&str]) -> Result<Vec<String>, ApiError> {
    let mut events: Vec<String> = Vec::new();
    for value in all_values(params, name) {
        for event in value.split([' ', ',', '\t']).filter(|e| !e.is_empty()) {
            let event = event.to_ascii_lowercase();
            if !allowed.contains(&event.as_str()) {
                return Err(ApiError::invalid(format!(
                    "{name} must be one of {}, not {event:?}",
                    allowed.join(", ")
                )));
            }
            if !events.contains(&event) {
                events.push(event);
            }
        }
    }
    Ok(events)
}

/// An http(s) URL parameter; sent empty counts as absent.
fn optional_url(params: &Params, name: &str) -> Result<Option<String>, ApiError> {
    Ok(params.url(name)?.flatten())
}

fn method_or_post(params: &Params, name: &str) -> Result<HttpMethod, ApiError> {
    Ok(params.method(name)?.unwrap_or_default())
}

/// A whole number of seconds within `range`.
fn seconds(
    params: &Params,
    name: &str,
    range: std::ops::RangeInclusive<u32>,
) -> Result<Option<u32>, ApiError> {
    let Some(value) = params.non_empty(name) else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::invalid(format!(
            "{name} must be a whole number of seconds from {} to {}, not {value:?}",
            range.start(),
            range.end()
        ))
    };
    let parsed: u64 = value.trim().parse().map_err(|_| invalid())?;
    match u32::try_from(parsed) {
        Ok(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err(invalid()),
    }
}

fn boolean(params: &Params, name: &str) -> Result<bool, ApiError> {
    match params.non_empty(name) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(ApiError::invalid(format!(
            "{name} must be true or false, not {v:?}"
        ))),
    }
}

fn twiml(params: &Params) -> Result<Option<String>, ApiError> {
    match params.non_empty("Twiml") {
        None => Ok(None),
        Some(twiml) if twiml.chars().count() > MAX_TWIML_CHARS => Err(ApiError::invalid(format!(
            "Twiml must be at most {MAX_TWIML_CHARS} characters"
        ))),
        Some(twiml) => Ok(Some(twiml.to_owned())),
    }
}

/// Whether `c` may appear in a SIP URI outside the host (RFC 3261's unreserved, escaped and
/// user/param/header punctuation).
fn sip_uri_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.!~*'()%&=+$,;?/:@[]".contains(c)
}

/// `sip:[user[:password]@]host[:port][;params][?headers]` (or `sips:`): a non-empty host of
/// letters, digits, dots and dashes or a bracketed IPv6 address, an optional numeric port,
/// and no spaces or control characters anywhere.
pub(crate) fn is_sip_uri(value: &str) -> bool {
    let lower = value
        .get(..5)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let rest = if lower.starts_with("sips:") {
        &value[5..]
    } else if lower.starts_with("sip:") {
        &value[4..]
    } else {
        return false;
    };
    if rest.is_empty() || rest.len() > 1024 || !rest.chars().all(sip_uri_char) {
        return false;
    }
    let address = rest.split([';', '?']).next().unwrap_or_default();
    let host_port = match address.rsplit_once('@') {
        Some((user, host_port)) if !user.is_empty() => host_port,
        Some(_) => return false,
        None => address,
    };
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        match v6.split_once(']') {
            Some((inside, after)) if !inside.is_empty() => {
                if !inside
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
                {
                    return false;
                }
                ("v6", after.strip_prefix(':'))
            }
            _ => return false,
        }
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        && !host.starts_with(['.', '-']);
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok());
    host_ok && port_ok
}

fn starts_with_ignore_case(value: &str, prefix: &str) -> bool {
    value
        .get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
}

/// `To`: E.164 (normalised) or a SIP URI. `client:` endpoints do not exist in Dialtone.
fn parse_to(raw: &str) -> Result<String, ApiError> {
    let to = raw.trim();
    let invalid = |why: &str| {
        ApiError::bad_request(
            call_codes::INVALID_TO,
            format!("The 'To' number {to} is not a valid phone number or SIP URI{why}"),
        )
    };
    if starts_with_ignore_case(to, "client:") {
        return Err(invalid(
            ": client endpoints (client:…) are not supported by Dialtone",
        ));
    }
    if starts_with_ignore_case(to, "sip:") || starts_with_ignore_case(to, "sips:") {
        return if is_sip_uri(to) {
            Ok(to.to_owned())
        } else {
            Err(invalid(""))
        };
    }
    normalize_e164(to).map_err(|_| invalid(""))
}

/// A caller identity for SIP targets: a SIP URI, or a user part (letters, digits and
/// `+ - _ . ! ~ * ' ( )`), at most 128 characters.
fn is_sip_identity(value: &str) -> bool {
    is_sip_uri(value)
        || (!value.is_empty()
            && value.len() <= 128
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-_.!~*'()".contains(c)))
}

/// `From`: E.164 (normalised); for a SIP `To`, also any SIP caller identity (Twilio only
/// insists on a phone number when `To` is one).
fn parse_from(raw: &str, to_is_sip: bool) -> Result<String, ApiError> {
    let from = raw.trim();
    if let Ok(e164) = normalize_e164(from) {
        return Ok(e164);
    }
    if to_is_sip && is_sip_identity(from) {
        return Ok(from.to_owned());
    }
    Err(ApiError::bad_request(
        call_codes::INVALID_FROM,
        format!("The 'From' number {from} is not a valid phone number"),
    ))
}

fn parse_send_digits(params: &Params) -> Result<Option<String>, ApiError> {
    let Some(digits) = params.non_empty("SendDigits") else {
        return Ok(None);
    };
    let valid = digits.chars().count() <= MAX_SEND_DIGITS
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || "ABCDabcd#*wW".contains(c));
    if valid {
        Ok(Some(digits.to_owned()))
    } else {
        Err(ApiError::invalid(format!(
            "SendDigits must be at most {MAX_SEND_DIGITS} characters of 0-9, A-D, #, *, w and W, not {digits:?}"
        )))
    }
}

/// With `ApplicationSid` naming one of the account's applications, its voice URLs and
/// status callback replace the request's own (Twilio ignores `Url`, `Method`, `FallbackUrl`,
/// `FallbackMethod`, `StatusCallback`, `StatusCallbackMethod` then). An unknown one stays for
/// [`parse_create`] to refuse (21218).
fn with_application(params: Params, auth: &Authenticated) -> Params {
    let Some(app) = params
        .non_empty("ApplicationSid")
        .and_then(|sid| auth.account.application(sid))
        .map(|a| a.config.clone())
    else {
        return params;
    };
    const REPLACED: [&str; 8] = [
        "ApplicationSid",
        "Url",
        "Method",
        "Twiml",
        "FallbackUrl",
        "FallbackMethod",
        "StatusCallback",
        "StatusCallbackMethod",
    ];
    let mut pairs: Vec<(String, String)> = params
        .0
        .into_iter()
        .filter(|(name, _)| !REPLACED.contains(&name.as_str()))
        .collect();
    let mut set = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            pairs.push((name.to_owned(), value));
        }
    };
    set("Url", app.voice_url);
    set("Method", Some(app.voice_method.as_str().to_owned()));
    set("FallbackUrl", app.voice_fallback_url);
    set(
        "FallbackMethod",
        Some(app.voice_fallback_method.as_str().to_owned()),
    );
    set("StatusCallback", app.status_callback);
    set(
        "StatusCallbackMethod",
        Some(app.status_callback_method.as_str().to_owned()),
    );
    Params(pairs)
}

/// Validates `POST …/Calls.json` parameters into a [`CreateCall`].
pub(crate) fn parse_create(params: &Params) -> Result<CreateCall, ApiError> {
    let raw_to = params.get("To").map(str::trim).filter(|v| !v.is_empty());
    let raw_to = raw_to.ok_or_else(|| {
        ApiError::bad_request(call_codes::MISSING_TO, "No 'To' number is specified")
    })?;
    let raw_from = params.get("From").map(str::trim).filter(|v| !v.is_empty());
    let raw_from = raw_from.ok_or_else(|| {
        ApiError::bad_request(call_codes::MISSING_FROM, "No 'From' number is specified")
    })?;
    let to = parse_to(raw_to)?;
    let to_is_sip = starts_with_ignore_case(&to, "sip");
    let from = parse_from(raw_from, to_is_sip)?;

    if let Some(application) = params.non_empty("ApplicationSid") {
        return Err(ApiError::bad_request(
            call_codes::INVALID_APPLICATION,
            format!("ApplicationSid {application} is not an application of this account"),
        ));
    }
    let url = optional_url(params, "Url")?;
    // Twilio ignores Twiml when Url is also given.
    let twiml = if url.is_some() { None } else { twiml(params)? };
    if url.is_none() && twiml.is_none() {
        return Err(ApiError::bad_request(
            codes::INVALID_URL,
            "A Url or Twiml parameter is required",
        ));
    }
    for unsupported in ["MachineDetection", "AsyncAmd"] {
        if let Some(value) = params.non_empty(unsupported) {
            // `MachineDetection=None`/`AsyncAmd=false` ask for nothing.
            if !value.eq_ignore_ascii_case("none") && !value.eq_ignore_ascii_case("false") {
                return Err(ApiError::invalid(format!(
                    "{unsupported} (answering machine detection) is not supported by Dialtone"
                )));
            }
        }
    }
    let recording_channels = match params.non_empty("RecordingChannels") {
        None => 1,
        Some(v) if v.eq_ignore_ascii_case("mono") => 1,
        Some(v) if v.eq_ignore_ascii_case("dual") => 2,
        Some(v) => {
            return Err(ApiError::invalid(format!(
                "RecordingChannels must be mono or dual, not {v:?}"
            )))
        }
    };
    let recording_trim_silence = match params.non_empty("Trim") {
        None => true,
        Some(v) if v.eq_ignore_ascii_case("trim-silence") => true,
        Some(v) if v.eq_ignore_ascii_case("do-not-trim") => false,
        Some(v) => {
            return Err(ApiError::invalid(format!(
                "Trim must be trim-silence or do-not-trim, not {v:?}"
            )))
        }
    };
    // Twilio documents a maximum of 600 s and extends longer values to it.
    let timeout_s = seconds(params, "Timeout", 1..=u32::MAX)?
        .map_or(DEFAULT_TIMEOUT_S, |t| t.min(MAX_TIMEOUT_S));
    let non_empty = |name: &str| params.non_empty(name).map(str::to_owned);

    Ok(CreateCall {
        to,
        from,
        method: method_or_post(params, "Method")?,
        url,
        twiml,
        fallback_url: optional_url(params, "FallbackUrl")?,
        fallback_method: method_or_post(params, "FallbackMethod")?,
        status_callback: optional_url(params, "StatusCallback")?,
        status_callback_method: method_or_post(params, "StatusCallbackMethod")?,
        status_callback_events: event_list(params, "StatusCallbackEvent", CALL_EVENTS)?,
        timeout_s,
        record: boolean(params, "Record")?,
        recording_channels,
        recording_trim_silence,
        recording_status_callback: optional_url(params, "RecordingStatusCallback")?,
        recording_status_callback_method: method_or_post(params, "RecordingStatusCallbackMethod")?,
        recording_status_callback_events: event_list(
            params,
            "RecordingStatusCallbackEvent",
            RECORDING_EVENTS,
        )?,
        send_digits: parse_send_digits(params)?,
        time_limit_s: seconds(params, "TimeLimit", 1..=MAX_TIME_LIMIT_S)?,
        sip_auth_username: non_empty("SipAuthUsername"),
        sip_auth_password: non_empty("SipAuthPassword"),
        caller_id: non_empty("CallerId"),
    })
}

/// Validates `POST …/Calls/{Sid}.json` parameters into an [`UpdateCall`].
pub(crate) fn parse_update(params: &Params) -> Result<UpdateCall, ApiError> {
    let status = match params.non_empty("Status") {
        None => None,
        Some(s) if s.eq_ignore_ascii_case("completed") => Some(CallAction::Hangup),
        Some(s) if s.eq_ignore_ascii_case("canceled") => Some(CallAction::Cancel),
        Some(s) => {
            return Err(ApiError::invalid(format!(
                "Status must be canceled or completed, not {s:?}"
            )))
        }
    };
    let redirect = match optional_url(params, "Url")? {
        Some(url) => Some(CallAction::Redirect {
            url,
            method: method_or_post(params, "Method")?,
            fallback_url: optional_url(params, "FallbackUrl")?,
            fallback_method: method_or_post(params, "FallbackMethod")?,
        }),
        None => None,
    };
    let inline = twiml(params)?.map(CallAction::Twiml);
    Ok(UpdateCall {
        // Ending the call makes a new document moot; Url wins over Twiml as on create.
        action: status.or(redirect).or(inline),
        status_callback: optional_url(params, "StatusCallback")?,
        status_callback_method: params.method("StatusCallbackMethod")?,
        time_limit_s: seconds(params, "TimeLimit", 1..=MAX_TIME_LIMIT_S)?,
    })
}

/// 21220 with a message saying why `update` does not apply to a call in `status`.
fn invalid_state(status: Option<CallStatus>, action: Option<&CallAction>) -> ApiError {
    let now = status.map(|s| format!(" (it is {})", s.as_str()));
    let now = now.as_deref().unwrap_or_default();
    let message = match action {
        Some(CallAction::Cancel) => format!(
            "Call is not queued or ringing{now}. Cannot cancel; use Status=completed to end it."
        ),
        Some(CallAction::Hangup) => format!("Call is not in a valid state{now}. Cannot hang up."),
        Some(CallAction::Redirect { .. } | CallAction::Twiml(_)) => {
            format!("Call is not in-progress{now}. Cannot redirect.")
        }
        None => format!("Call is not in a valid state{now}. Cannot update."),
    };
    ApiError::bad_request(call_codes::INVALID_CALL_STATE, message)
}

/// Whether `update` applies to a call in `status`: nothing applies to an ended call, and
/// canceling applies only while it is queued or ringing.
pub(crate) fn check_state(status: CallStatus, update: &UpdateCall) -> Result<(), ApiError> {
    let action = update.action.as_ref();
    let allowed = !status.is_final()
        && (action != Some(&CallAction::Cancel)
            || matches!(status, CallStatus::Queued | CallStatus::Ringing));
    if allowed {
        Ok(())
    } else {
        Err(invalid_state(Some(status), action))
    }
}

pub(crate) fn control_error(
    error: ControlError,
    path: &str,
    status: Option<CallStatus>,
    action: Option<&CallAction>,
) -> ApiError {
    match error {
        ControlError::NotFound => ApiError::not_found(path),
        ControlError::InvalidState => invalid_state(status, action),
        ControlError::InvalidParameter { code, message } => ApiError::bad_request(code, message),
        ControlError::Unavailable(reason) => {
            tracing::warn!(%reason, "call control unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::UNAVAILABLE,
                format!("Call control is unavailable: {reason}"),
            )
        }
    }
}

// ---------------------------------------------------------------------------------------
// handlers

pub(crate) fn controller(
    state: &ApiState,
    what: &str,
) -> Result<std::sync::Arc<dyn CallController>, ApiError> {
    state
        .call_controller
        .clone()
        .ok_or_else(|| not_implemented(what))
}

pub(crate) fn account_sid(auth: &Authenticated) -> Result<AccountSid, ApiError> {
    AccountSid::parse(auth.sid()).map_err(|error| {
        tracing::error!(account = auth.sid(), %error, "authenticated account has an invalid SID");
        ApiError::internal()
    })
}

async fn read_call(
    state: &ApiState,
    account: &str,
    sid: &str,
) -> Result<Option<CallRecord>, ApiError> {
    let (account, sid) = (account.to_owned(), sid.to_owned());
    Ok(state
        .read_models
        .read(move |c| calls::get_call(c, &account, &sid))
        .await?)
}

/// The call's events, if its stream exists and belongs to `account`.
async fn call_stream(
    state: &ApiState,
    account: &str,
    sid: &CallSid,
) -> Result<Option<Vec<RecordedEvent>>, ApiError> {
    let events = state.log.read_stream(sid.as_str(), 1).await?;
    Ok(match events.first() {
        Some(first) if first.event.accountsid == account => Some(events),
        _ => None,
    })
}

/// The account's call `sid`, from the read model; if the read model does not have it yet,
/// from the log (then waiting for the projections to catch up on it). 404 otherwise.
async fn owned_call(
    state: &ApiState,
    account: &str,
    sid: &CallSid,
    path: &str,
) -> Result<CallRecord, ApiError> {
    if let Some(record) = read_call(state, account, sid.as_str()).await? {
        return Ok(record);
    }
    let events = call_stream(state, account, sid)
        .await?
        .ok_or_else(|| ApiError::not_found(path))?;
    if let Some(last) = events.last() {
        state
            .await_projections(std::slice::from_ref(&last.position))
            .await;
    }
    read_call(state, account, sid.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found(path))
}

/// The call as the projections show it once they applied every event its stream holds now.
async fn settled_call(
    state: &ApiState,
    account: &str,
    sid: &CallSid,
) -> Result<Option<CallRecord>, ApiError> {
    if let Some(last) = call_stream(state, account, sid)
        .await?
        .and_then(|events| events.last().cloned())
    {
        state.await_projections(&[last.position]).await;
    }
    read_call(state, account, sid.as_str()).await
}

/// The new call as its `call.initiated` describes it (status `queued`, as Twilio answers a
/// create), after waiting for the projections to apply that event so that a GET or list
/// right after the create sees the call.
async fn created_call(
    state: &ApiState,
    account: &str,
    sid: &CallSid,
    request: &CreateCall,
) -> Result<CallRecord, ApiError> {
    let first = call_stream(state, account, sid)
        .await?
        .and_then(|events| events.into_iter().next());
    let initiated = first
        .as_ref()
        .and_then(|recorded| match recorded.event.payload() {
            Ok(Payload::CallInitiated(initiated)) => Some((recorded.event.time, initiated)),
            _ => None,
        });
    let row = match (first, initiated) {
        (Some(recorded), Some((time, initiated))) => {
            state.await_projections(&[recorded.position]).await;
            CallRow::initiated(sid.as_str(), account, time, &initiated)
        }
        _ => {
            // The controller broke its contract; answer from the request rather than fail
            // a call that may well be dialing.
            tracing::error!(call = %sid, "call controller returned before call.initiated was in the log");
            let initiated = CallInitiated {
                direction: Direction::OutboundApi,
                from: request.from.clone(),
                to: request.to.clone(),
                owner_node: state.node_id.to_string(),
                sip_call_id: None,
                source_addr: None,
                phone_number_sid: None,
                parent_call_sid: None,
                forwarded_from: None,
                application: request.application(),
            };
            CallRow::initiated(sid.as_str(), account, OffsetDateTime::now_utc(), &initiated)
        }
    };
    Ok(CallRecord {
        call: row,
        price_micros: None,
        price_unit: None,
    })
}

/// `POST …/Calls.json`: places an outbound call; 201 with the call, `queued`.
#[utoipa::path(
    operation_id = "calls_create",
    post,
    path = "/2010-04-01/Accounts/{account_sid}/Calls.json",
    tag = "Calls",
    summary = "Place an outbound call",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
    ),
    request_body(content = crate::openapi::schemas::CreateCallForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 201, description = "OK", body = crate::openapi::schemas::Call),
        (status = 400, description = "Invalid parameter (error body names it)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 501, description = "Not enabled on this node", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn create(
    State(state): State<ApiState>,
    auth: Authenticated,
    body: Bytes,
) -> Result<Response, ApiError> {
    let controller = controller(&state, "Creating calls")?;
    let request = parse_create(&with_application(Params::parse(&body), &auth))?;
    let account = account_sid(&auth)?;
    let sid = controller
        .create_call(&account, request.clone())
        .await
        .map_err(|error| match error {
            // Neither makes sense for a call that does not exist yet.
            ControlError::NotFound | ControlError::InvalidState => {
                tracing::error!(%error, "call controller refused a create with a call error");
                ApiError::internal()
            }
            error => control_error(error, "", None, None),
        })?;
    tracing::info!(call = %sid, account = auth.sid(), to = %request.to, "outbound call created");
    let record = created_call(&state, auth.sid(), &sid, &request).await?;
    Ok((
        StatusCode::CREATED,
        Json(call_json(&record, &state.default_currency)),
    )
        .into_response())
}

/// `POST …/Calls/{Sid}.json`: redirects, replaces the TwiML of, hangs up or cancels a live
/// call, or changes its callbacks; 200 with the call as it is afterwards.
#[utoipa::path(
    operation_id = "calls_update",
    post,
    path = "/2010-04-01/Accounts/{account_sid}/Calls/{sid}",
    tag = "Calls",
    summary = "Redirect, replace the TwiML of, or end a live call",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "CA…, optionally followed by .json"),
    ),
    request_body(content = crate::openapi::schemas::UpdateCallForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "OK", body = crate::openapi::schemas::Call),
        (status = 400, description = "Invalid parameter (error body names it)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "Not found, or another account's (20404)", body = crate::openapi::schemas::ErrorBody),
        (status = 501, description = "Not enabled on this node", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn update(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, segment)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let controller = controller(&state, "Updating calls")?;
    let path = call_path(auth.sid(), segment.trim_end_matches(".json"));
    let sid = sid_segment(&segment, CallSid::PREFIX, &path)?;
    let sid = CallSid::parse(sid).map_err(|_| ApiError::not_found(&path))?;
    let record = owned_call(&state, auth.sid(), &sid, &path).await?;
    let update = parse_update(&Params::parse(&body))?;
    if update.is_empty() {
        return Ok(Json(call_json(&record, &state.default_currency)));
    }
    let status = record.call.status;
    check_state(status, &update)?;
    let account = account_sid(&auth)?;
    let action = update.action.clone();
    controller
        .update_call(&account, &sid, update)
        .await
        .map_err(|error| control_error(error, &path, Some(status), action.as_ref()))?;
    tracing::info!(call = %sid, account = auth.sid(), ?action, "call updated");
    let record = settled_call(&state, auth.sid(), &sid)
        .await?
        .unwrap_or(record);
    Ok(Json(call_json(&record, &state.default_currency)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn an_application_sid_replaces_the_urls_and_status_callback() {
        use dialtone_events::payload::ApplicationConfig;
        use dialtone_projections::accounts::{AccountEntry, Application, ACTIVE};
        use time::OffsetDateTime;
        let app = Application {
            sid: "AP0123456789abcdef0123456789abcdef".into(),
            config: ApplicationConfig {
                friendly_name: "IVR".into(),
                voice_url: Some("https://ivr.example/voice".into()),
                voice_method: HttpMethod::Get,
                status_callback: Some("https://ivr.example/status".into()),
                ..ApplicationConfig::default()
            },
            date_created: OffsetDateTime::UNIX_EPOCH,
            date_updated: OffsetDateTime::UNIX_EPOCH,
        };
        let auth = Authenticated {
            account: std::sync::Arc::new(AccountEntry {
                sid: "AC0123456789abcdef0123456789abcdef".into(),
                friendly_name: "a".into(),
                token_sha256: String::new(),
                token_salt: String::new(),
                status: ACTIVE.into(),
                owner_account_sid: None,
                keys: Vec::new(),
                applications: vec![app],
                date_created: OffsetDateTime::UNIX_EPOCH,
                date_updated: OffsetDateTime::UNIX_EPOCH,
            }),
        };
        let call = parse_create(&with_application(
            params(&[
                ("To", "+14155550123"),
                ("From", "+14155550100"),
                ("ApplicationSid", "AP0123456789abcdef0123456789abcdef"),
                // Ignored next to an ApplicationSid, as on Twilio.
                ("Url", "https://app.example/answer"),
                ("StatusCallback", "https://app.example/status"),
            ]),
            &auth,
        ))
        .unwrap();
        assert_eq!(call.url.as_deref(), Some("https://ivr.example/voice"));
        assert_eq!(call.method, HttpMethod::Get);
        assert_eq!(
            call.status_callback.as_deref(),
            Some("https://ivr.example/status")
        );
        // Another account's (or no) application: refused with 21218.
        let unknown = parse_create(&with_application(
            params(&[
                ("To", "+14155550123"),
                ("From", "+14155550100"),
                ("ApplicationSid", "AP00000000000000000000000000000000"),
            ]),
            &auth,
        ))
        .unwrap_err();
        assert_eq!(unknown.code, call_codes::INVALID_APPLICATION);
    }

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("To", "+14155550123"),
            ("From", "+14155550100"),
            ("Url", "https://app.example/answer"),
        ]
    }

    fn create_with(extra: &[(&'static str, &'static str)]) -> Result<CreateCall, ApiError> {
        let mut pairs = base();
        pairs.extend_from_slice(extra);
        parse_create(&params(&pairs))
    }

    #[test]
    fn create_defaults() {
        let call = create_with(&[]).unwrap();
        assert_eq!(call.method, HttpMethod::Post);
        assert_eq!(call.timeout_s, 60);
        assert!(call.status_callback_events.is_empty());
        assert!(!call.record);
        assert_eq!(call.recording_channels, 1);
        assert_eq!(call.twiml, None);
        assert_eq!(call.time_limit_s, None);
        assert_eq!(
            call.application().url.as_deref(),
            Some("https://app.example/answer")
        );
    }

    #[test]
    fn numbers_are_normalised_and_sip_targets_accepted() {
        let call = parse_create(&params(&[
            ("To", " (415) 555-0123 "),
            ("From", "+1 415 555 0100"),
            ("Twiml", "<Response><Say>Hi</Say></Response>"),
        ]))
        .unwrap();
        assert_eq!(call.to, "+14155550123");
        assert_eq!(call.from, "+14155550100");
        assert_eq!(call.url, None);
        assert!(call.twiml.is_some());

        let call = parse_create(&params(&[
            ("To", "sip:alice@pbx.example.com:5070;transport=tcp"),
            ("From", "support-bot"),
            ("Url", "https://app.example/a"),
        ]))
        .unwrap();
        assert_eq!(call.to, "sip:alice@pbx.example.com:5070;transport=tcp");
        assert_eq!(call.from, "support-bot");
        // A non-number From is only fine for SIP targets.
        let err = parse_create(&params(&[
            ("To", "+14155550123"),
            ("From", "support-bot"),
            ("Url", "https://a.example/"),
        ]))
        .unwrap_err();
        assert_eq!(err.code, call_codes::INVALID_FROM);
    }

    #[test]
    fn sip_uris() {
        for good in [
            "sip:alice@example.com",
            "SIP:alice@example.com",
            "sips:bob@10.0.0.1:5061",
            "sip:example.com",
            "sip:+14155550123@trunk.example;user=phone",
            "sip:alice:secret@[2001:db8::1]:5060",
            "sip:alice@example.com?X-Custom=1",
        ] {
            assert!(is_sip_uri(good), "{good}");
        }
        for bad in [
            "sip:",
            "sip:@example.com",
            "sip:alice@",
            "sip:alice@exa mple.com",
            "sip:alice@example.com:port",
            "sip:alice@example.com:99999",
            "sip:alice@[zz::1]",
            "sip:alice@-example.com",
            "tel:+14155550123",
            "sip:alice@example.com\r\nVia: x",
            "sip",
        ] {
            assert!(!is_sip_uri(bad), "{bad}");
        }
    }

    #[test]
    fn url_wins_over_twiml_and_one_is_required() {
        let call = create_with(&[("Twiml", "<Response/>")]).unwrap();
        assert_eq!(call.url.as_deref(), Some("https://app.example/answer"));
        assert_eq!(call.twiml, None);
        let err =
            parse_create(&params(&[("To", "+14155550123"), ("From", "+14155550100")])).unwrap_err();
        assert_eq!(err.code, codes::INVALID_URL);
        let long = "x".repeat(MAX_TWIML_CHARS + 1);
        let err = parse_create(&params(&[
            ("To", "+14155550123"),
            ("From", "+14155550100"),
            ("Twiml", &long),
        ]))
        .unwrap_err();
        assert_eq!(err.code, codes::INVALID_PARAMETER);
        // Exactly 4000 characters (multi-byte ones count once) is fine.
        let max = "é".repeat(MAX_TWIML_CHARS);
        assert!(parse_create(&params(&[
            ("To", "+14155550123"),
            ("From", "+14155550100"),
            ("Twiml", &max),
        ]))
        .is_ok());
    }

    #[test]
    fn status_callback_events_repeat_or_space_separate() {
        let call = create_with(&[
            ("StatusCallbackEvent", "initiated"),
            ("StatusCallbackEvent", "ringing answered"),
            ("StatusCallbackEvent", "Completed initiated"),
        ])
        .unwrap();
        assert_eq!(
            call.status_callback_events,
            ["initiated", "ringing", "answered", "completed"]
        );
        assert_eq!(
            create_with(&[("StatusCallbackEvent", "hangup")])
                .unwrap_err()
                .code,
            codes::INVALID_PARAMETER
        );
        let call = create_with(&[("RecordingStatusCallbackEvent", "in-progress absent")]).unwrap();
        assert_eq!(
            call.recording_status_callback_events,
            ["in-progress", "absent"]
        );
    }

    #[test]
    fn timeout_time_limit_and_digits() {
        assert_eq!(create_with(&[("Timeout", "30")]).unwrap().timeout_s, 30);
        assert_eq!(create_with(&[("Timeout", "900")]).unwrap().timeout_s, 600);
        for bad in ["0", "-1", "abc", "1.5", "99999999999"] {
            assert!(create_with(&[("Timeout", bad)]).is_err(), "{bad}");
        }
        assert_eq!(
            create_with(&[("TimeLimit", "3600")]).unwrap().time_limit_s,
            Some(3600)
        );
        assert!(create_with(&[("TimeLimit", "86401")]).is_err());
        assert_eq!(
            create_with(&[("SendDigits", "1234wW#*AD")])
                .unwrap()
                .send_digits
                .as_deref(),
            Some("1234wW#*AD")
        );
        assert!(create_with(&[("SendDigits", "12x")]).is_err());
        assert!(create_with(&[("SendDigits", "123456789012345678901234567890123")]).is_err());
        assert!(create_with(&[("Record", "true")]).unwrap().record);
        assert!(create_with(&[("Record", "yes")]).is_err());
        assert_eq!(
            create_with(&[("RecordingChannels", "dual")])
                .unwrap()
                .recording_channels,
            2
        );
        assert!(create_with(&[]).unwrap().recording_trim_silence);
        assert!(
            !create_with(&[("Trim", "do-not-trim")])
                .unwrap()
                .recording_trim_silence
        );
        assert!(create_with(&[("Trim", "sometimes")]).is_err());
        assert!(create_with(&[("MachineDetection", "Enable")]).is_err());
        assert!(create_with(&[("MachineDetection", "None")]).is_ok());
    }

    #[test]
    fn missing_and_invalid_parties() {
        let code = |pairs: &[(&str, &str)]| parse_create(&params(pairs)).unwrap_err().code;
        let url = ("Url", "https://a.example/");
        assert_eq!(
            code(&[("From", "+14155550100"), url]),
            call_codes::MISSING_TO
        );
        assert_eq!(
            code(&[("To", "  "), ("From", "+14155550100"), url]),
            call_codes::MISSING_TO
        );
        assert_eq!(
            code(&[("To", "+14155550123"), url]),
            call_codes::MISSING_FROM
        );
        assert_eq!(
            code(&[("To", "call me"), ("From", "+14155550100"), url]),
            call_codes::INVALID_TO
        );
        assert_eq!(
            code(&[("To", "client:alice"), ("From", "+14155550100"), url]),
            call_codes::INVALID_TO
        );
        assert_eq!(
            code(&[("To", "sip:@x"), ("From", "+14155550100"), url]),
            call_codes::INVALID_TO
        );
        assert_eq!(
            code(&[
                ("To", "+14155550123"),
                ("From", "+14155550100"),
                ("Url", "ftp://x")
            ]),
            codes::INVALID_URL
        );
        assert_eq!(
            code(&[
                ("To", "+14155550123"),
                ("From", "+14155550100"),
                ("ApplicationSid", "AP0123")
            ]),
            call_codes::INVALID_APPLICATION
        );
    }

    #[test]
    fn update_actions_and_precedence() {
        let update = |pairs: &[(&str, &str)]| parse_update(&params(pairs));
        assert_eq!(
            update(&[("Url", "https://a.example/next"), ("Method", "GET")])
                .unwrap()
                .action,
            Some(CallAction::Redirect {
                url: "https://a.example/next".into(),
                method: HttpMethod::Get,
                fallback_url: None,
                fallback_method: HttpMethod::Post,
            })
        );
        assert_eq!(
            update(&[("Twiml", "<Response><Hangup/></Response>")])
                .unwrap()
                .action,
            Some(CallAction::Twiml("<Response><Hangup/></Response>".into()))
        );
        assert_eq!(
            update(&[("Status", "completed"), ("Url", "https://a.example/")])
                .unwrap()
                .action,
            Some(CallAction::Hangup)
        );
        assert_eq!(
            update(&[("Status", "canceled")]).unwrap().action,
            Some(CallAction::Cancel)
        );
        assert!(update(&[("Status", "busy")]).is_err());
        assert_eq!(
            update(&[("Url", "nope")]).unwrap_err().code,
            codes::INVALID_URL
        );
        let callbacks = update(&[
            ("StatusCallback", "https://a.example/status"),
            ("StatusCallbackMethod", "GET"),
        ])
        .unwrap();
        assert_eq!(callbacks.action, None);
        assert_eq!(
            callbacks.status_callback.as_deref(),
            Some("https://a.example/status")
        );
        assert_eq!(callbacks.status_callback_method, Some(HttpMethod::Get));
        assert!(update(&[]).unwrap().is_empty());
    }

    #[test]
    fn states_that_admit_updates() {
        let with = |action| UpdateCall {
            action: Some(action),
            ..UpdateCall::default()
        };
        let cancel = with(CallAction::Cancel);
        let hangup = with(CallAction::Hangup);
        let twiml = with(CallAction::Twiml("<Response/>".into()));
        assert!(check_state(CallStatus::Queued, &cancel).is_ok());
        assert!(check_state(CallStatus::Ringing, &cancel).is_ok());
        let err = check_state(CallStatus::InProgress, &cancel).unwrap_err();
        assert_eq!(err.code, call_codes::INVALID_CALL_STATE);
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(check_state(CallStatus::InProgress, &hangup).is_ok());
        assert!(check_state(CallStatus::InProgress, &twiml).is_ok());
        for ended in [
            CallStatus::Completed,
            CallStatus::Busy,
            CallStatus::Failed,
            CallStatus::NoAnswer,
            CallStatus::Canceled,
        ] {
            for update in [&cancel, &hangup, &twiml] {
                assert_eq!(
                    check_state(ended, update).unwrap_err().code,
                    call_codes::INVALID_CALL_STATE
                );
            }
        }
    }
}

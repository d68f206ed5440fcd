//! Recordings (Twilio §5.4): list, fetch, media download and delete.
//!
//! - `GET …/Recordings.json` (filters `CallSid`, `DateCreated`, `DateCreated<`,
//!   `DateCreated>`, `IncludeSoftDeleted`; Twilio paging, newest first) and
//!   `GET …/Calls/{CallSid}/Recordings.json`.
//! - `GET …/Recordings/{Sid}.json` (also under `…/Calls/{CallSid}/`): Twilio's JSON.
//! - `GET …/Recordings/{Sid}.wav` or `…/Recordings/{Sid}` (no extension): the WAV file,
//!   `audio/x-wav`, streamed from the data dir. Dialtone keeps WAV only, so `.mp3` is 404.
//!   Media needs the same Basic auth as every other resource: Dialtone behaves like a
//!   Twilio account with "Enforce HTTP Auth on Media URLs" switched on (mandatory on new
//!   Twilio accounts), never serving recordings to anonymous clients.
//! - `DELETE …/Recordings/{Sid}.json`: appends `recording.deleted` to the call's stream,
//!   waits for the projection, removes the file, answers 204; the recording is 404 after.
//!
//! The JSON follows Twilio's account-level shape: `duration` is a string of whole seconds
//! (`"-1"` while unknown), `price` is null (recordings are not rated), dates are RFC 2822.

use std::path::{Component, Path as FsPath, PathBuf};

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dialtone_events::payload::RecordingDeleted;
use dialtone_events::sid::{CallSid, ConferenceSid, RecordingSid};
use dialtone_events::{ExpectedVersion, NewEvent};
use dialtone_projections::billing::parse_day;
use dialtone_projections::calls::DateFilter;
use dialtone_projections::recordings::{self, RecordingFilter, RecordingRow};
use serde_json::{json, Value};
use time::Date;
use tokio_util::io::ReaderStream;

use crate::auth::Authenticated;
use crate::error::{codes, ApiError};
use crate::format::{rfc2822, sid_segment};
use crate::paging::{envelope, keyset_links, Paging};
use crate::params::Params;
use crate::{ApiState, API_VERSION};

/// Media type of recordings.
pub const WAV_CONTENT_TYPE: &str = "audio/x-wav";

fn account_base(account: &str) -> String {
    format!("/{API_VERSION}/Accounts/{account}")
}

fn recording_base(account: &str, sid: &str) -> String {
    format!("{}/Recordings/{sid}", account_base(account))
}

/// What a `{Sid}[.ext]` segment asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Representation {
    Json,
    Wav,
    Mp3,
}

/// Splits `RE….json` / `RE….wav` / `RE….mp3` / `RE…` into the SID and what is asked for.
fn parse_segment<'a>(segment: &'a str, path: &str) -> Result<(&'a str, Representation), ApiError> {
    let (sid, representation) = if let Some(sid) = segment.strip_suffix(".json") {
        (sid, Representation::Json)
    } else if let Some(sid) = segment.strip_suffix(".wav") {
        (sid, Representation::Wav)
    } else if let Some(sid) = segment.strip_suffix(".mp3") {
        (sid, Representation::Mp3)
    } else {
        (segment, Representation::Wav)
    };
    Ok((
        sid_segment(sid, RecordingSid::PREFIX, path)?,
        representation,
    ))
}

/// Twilio's `track` for a recording source: the Record verb records the caller.
fn track(source: &str) -> &'static str {
    if source == "RecordVerb" {
        "inbound"
    } else {
        "both"
    }
}

/// Whole seconds, rounded to the nearest; `-1` while unknown (as Twilio shows in-progress
/// recordings).
fn duration_text(duration_ms: Option<u64>) -> String {
    match duration_ms {
        Some(ms) => ms.saturating_add(500).div_euclid(1000).to_string(),
        None => "-1".to_owned(),
    }
}

/// Twilio's Recording representation.
pub(crate) fn recording_json(row: &RecordingRow, state: &ApiState) -> Value {
    let base = recording_base(&row.account_sid, &row.sid);
    let media_path = base.clone();
    let media_url = match state.public_url.as_deref() {
        Some(public) => format!("{}{media_path}", public.trim_end_matches('/')),
        None => media_path,
    };
    // The read model keeps the stream a recording belongs to: a call, or a conference.
    let (call_sid, conference_sid) = if row.call_sid.starts_with(ConferenceSid::PREFIX) {
        (None, Some(&row.call_sid))
    } else {
        (Some(&row.call_sid), None)
    };
    json!({
        "account_sid": row.account_sid,
        "api_version": API_VERSION,
        "call_sid": call_sid,
        "channels": row.channels,
        "conference_sid": conference_sid,
        "date_created": rfc2822(row.date_created),
        "date_updated": rfc2822(row.date_updated),
        "duration": duration_text(row.duration_ms),
        "encryption_details": null,
        "error_code": row.error_code,
        "media_url": media_url,
        "price": null,
        "price_unit": state.default_currency.as_ref(),
        "sid": row.sid,
        "source": row.source,
        "start_time": rfc2822(row.start_time),
        "status": row.status,
        "subresource_uris": {
            "add_on_results": format!("{base}/AddOnResults.json"),
            "transcriptions": format!("{base}/Transcriptions.json"),
        },
        "track": track(&row.source),
        "uri": format!("{base}.json"),
    })
}

/// A date filter value: `YYYY-MM-DD`, or an ISO 8601 date-time of which the date counts.
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

fn recording_filter(
    params: &Params,
    call_sid: Option<String>,
) -> Result<RecordingFilter, ApiError> {
    // A conference's recordings are kept under the conference's SID.
    let call_sid = match call_sid {
        Some(sid) => Some(sid),
        None => params
            .non_empty("CallSid")
            .or_else(|| params.non_empty("ConferenceSid"))
            .map(str::to_owned),
    };
    let include_deleted = match params.non_empty("IncludeSoftDeleted") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(_) => {
            return Err(ApiError::invalid(
                "IncludeSoftDeleted must be true or false",
            ))
        }
    };
    Ok(RecordingFilter {
        call_sid,
        date_created: DateFilter {
            on: filter_date(params, "DateCreated")?,
            on_or_before: filter_date(params, "DateCreated<")?,
            on_or_after: filter_date(params, "DateCreated>")?,
        },
        include_deleted,
    })
}

pub(crate) async fn list_page(
    state: &ApiState,
    auth: &Authenticated,
    query: Option<String>,
    call_sid: Option<String>,
    path: &str,
) -> Result<Json<Value>, ApiError> {
    let params = Params::from_query(query.as_deref());
    let paging = Paging::parse(&params)?;
    let filter = recording_filter(&params, call_sid)?;
    let account = auth.sid().to_owned();
    let request = paging.request();
    let page = state
        .read_models
        .read(move |c| recordings::list_recordings(c, &account, &filter, &request))
        .await?;
    let (next, previous) = keyset_links(&paging, &page, recordings::recording_sort_key);
    let items = page
        .items
        .iter()
        .map(|row| recording_json(row, state))
        .collect();
    Ok(Json(envelope(
        "recordings",
        items,
        path,
        &params,
        &paging,
        next,
        previous,
    )))
}

/// `GET …/Recordings.json`.
#[utoipa::path(
    operation_id = "recordings_list",
    get,
    path = "/2010-04-01/Accounts/{account_sid}/Recordings.json",
    tag = "Recordings",
    summary = "List recordings, newest first",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("CallSid" = Option<String>, Query, description = "CA…"),
        ("ConferenceSid" = Option<String>, Query, description = "CF…"),
        ("DateCreated" = Option<String>, Query, description = "YYYY-MM-DD (also DateCreated< and DateCreated>)"),
        ("IncludeSoftDeleted" = Option<bool>, Query, description = "Deleted recordings too"),
        ("PageSize" = Option<u32>, Query, description = "1–1000, default 50"),
        ("Page" = Option<u32>, Query, description = "Page index"),
        ("PageToken" = Option<String>, Query, description = "Opaque, from next_page_uri"),
    ),
    responses(
        (status = 200, description = "OK", body = crate::openapi::schemas::RecordingList),
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
    let path = format!("{}/Recordings.json", account_base(auth.sid()));
    list_page(&state, &auth, query, None, &path).await
}

/// `GET …/Calls/{CallSid}/Recordings.json`.
#[utoipa::path(
    operation_id = "recordings_list_for_call",
    get,
    path = "/2010-04-01/Accounts/{account_sid}/Calls/{sid}/Recordings.json",
    tag = "Recordings",
    summary = "A call's recordings",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "CA…"),
        ("DateCreated" = Option<String>, Query, description = "YYYY-MM-DD (also DateCreated< and DateCreated>)"),
        ("IncludeSoftDeleted" = Option<bool>, Query, description = "Deleted recordings too"),
        ("PageSize" = Option<u32>, Query, description = "1–1000, default 50"),
        ("Page" = Option<u32>, Query, description = "Page index"),
        ("PageToken" = Option<String>, Query, description = "Opaque, from next_page_uri"),
    ),
    responses(
        (status = 200, description = "OK", body = crate::openapi::schemas::RecordingList),
        (status = 400, description = "Invalid parameter (error body names it)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "Not found, or another account's (20404)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn list_for_call(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, call_sid)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let path = format!(
        "{}/Calls/{call_sid}/Recordings.json",
        account_base(auth.sid())
    );
    let call_sid = sid_segment(&call_sid, CallSid::PREFIX, &path)?.to_owned();
    list_page(&state, &auth, query, Some(call_sid), &path).await
}

/// The caller's recording (not deleted; of `call_sid` when given), or 404.
async fn owned_recording(
    state: &ApiState,
    auth: &Authenticated,
    sid: &str,
    call_sid: Option<&str>,
    path: &str,
) -> Result<RecordingRow, ApiError> {
    let account = auth.sid().to_owned();
    let lookup = sid.to_owned();
    let row = state
        .read_models
        .read(move |c| recordings::get_recording(c, &account, &lookup))
        .await?;
    match row {
        Some(row)
            if row.status != "deleted" && call_sid.is_none_or(|call| call == row.call_sid) =>
        {
            Ok(row)
        }
        _ => Err(ApiError::not_found(path)),
    }
}

/// `path` relative to the data dir, if it stays inside it (no `..`, not absolute).
fn media_file(data_dir: &FsPath, relative: &str) -> Option<PathBuf> {
    let relative = FsPath::new(relative);
    let inside = !relative.as_os_str().is_empty()
        && relative
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    inside.then(|| data_dir.join(relative))
}

fn media_unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        codes::UNAVAILABLE,
        "Recording media is not available on this node (no data directory configured)",
    )
}

async fn media(state: &ApiState, row: &RecordingRow, path: &str) -> Result<Response, ApiError> {
    let data_dir = state.data_dir.as_deref().ok_or_else(media_unavailable)?;
    let relative = row
        .path
        .as_deref()
        .filter(|_| row.status == "completed")
        .ok_or_else(|| ApiError::not_found(path))?;
    let Some(file_path) = media_file(data_dir, relative) else {
        tracing::error!(recording = %row.sid, path = relative, "recording path leaves the data dir; not served");
        return Err(ApiError::not_found(path));
    };
    let file = match tokio::fs::File::open(&file_path).await {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(recording = %row.sid, file = %file_path.display(), "recording file is missing");
            return Err(ApiError::not_found(path));
        }
        Err(error) => {
            tracing::error!(recording = %row.sid, file = %file_path.display(), %error, "cannot open a recording");
            return Err(ApiError::internal());
        }
    };
    let length = match file.metadata().await {
        Ok(metadata) => metadata.len(),
        Err(error) => {
            tracing::error!(recording = %row.sid, %error, "cannot stat a recording");
            return Err(ApiError::internal());
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, WAV_CONTENT_TYPE.to_owned()),
            (header::CONTENT_LENGTH, length.to_string()),
        ],
        Body::from_stream(ReaderStream::new(file)),
    )
        .into_response())
}

async fn fetch_any(
    state: &ApiState,
    auth: &Authenticated,
    segment: &str,
    call_sid: Option<&str>,
) -> Result<Response, ApiError> {
    let base = match call_sid {
        Some(call) => format!("{}/Calls/{call}/Recordings", account_base(auth.sid())),
        None => format!("{}/Recordings", account_base(auth.sid())),
    };
    let path = format!("{base}/{segment}");
    let (sid, representation) = parse_segment(segment, &path)?;
    let row = owned_recording(state, auth, sid, call_sid, &path).await?;
    match representation {
        Representation::Json => Ok(Json(recording_json(&row, state)).into_response()),
        Representation::Wav => media(state, &row, &path).await,
        Representation::Mp3 => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            codes::NOT_FOUND,
            format!("The requested resource {path} was not found: Dialtone stores recordings as WAV only; use .wav"),
        )),
    }
}

/// `GET …/Recordings/{Sid}[.json|.wav]`.
#[utoipa::path(
    operation_id = "recordings_fetch",
    get,
    path = "/2010-04-01/Accounts/{account_sid}/Recordings/{sid}",
    tag = "Recordings",
    summary = "Fetch a recording (.json) or its audio (.wav)",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "RE… followed by .json or .wav"),
    ),
    responses(
        (status = 200, description = "The recording (.json), or its audio (.wav)", content((crate::openapi::schemas::Recording = "application/json"), (Vec<u8> = "audio/x-wav"))),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "Not found, or another account's (20404)", body = crate::openapi::schemas::ErrorBody),
        (status = 503, description = "Not visible yet, or not enabled", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn fetch(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, segment)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    fetch_any(&state, &auth, &segment, None).await
}

/// `GET …/Calls/{CallSid}/Recordings/{Sid}[.json|.wav]`.
#[utoipa::path(
    operation_id = "recordings_fetch_for_call",
    get,
    path = "/2010-04-01/Accounts/{account_sid}/Calls/{sid}/Recordings/{recording_sid}",
    tag = "Recordings",
    summary = "Fetch a call's recording (.json) or its audio (.wav)",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "CA…"),
        ("recording_sid" = String, Path, description = "RE… followed by .json or .wav"),
    ),
    responses(
        (status = 200, description = "The recording (.json), or its audio (.wav)", content((crate::openapi::schemas::Recording = "application/json"), (Vec<u8> = "audio/x-wav"))),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "Not found, or another account's (20404)", body = crate::openapi::schemas::ErrorBody),
        (status = 503, description = "Not visible yet, or not enabled", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn fetch_for_call(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, call_sid, segment)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    fetch_any(&state, &auth, &segment, Some(&call_sid)).await
}

async fn delete_any(
    state: &ApiState,
    auth: &Authenticated,
    segment: &str,
    call_sid: Option<&str>,
) -> Result<StatusCode, ApiError> {
    let base = match call_sid {
        Some(call) => format!("{}/Calls/{call}/Recordings", account_base(auth.sid())),
        None => format!("{}/Recordings", account_base(auth.sid())),
    };
    let path = format!("{base}/{segment}");
    let (sid, _) = parse_segment(segment, &path)?;
    // `RE…` and `RE….json` name the resource; a media extension does not.
    if segment.ends_with(".wav") || segment.ends_with(".mp3") {
        return Err(ApiError::not_found(&path));
    }
    let row = owned_recording(state, auth, sid, call_sid, &path).await?;
    if row.status == "in-progress" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            codes::CONFLICT,
            "The recording is in progress; it can be deleted once it has completed",
        ));
    }
    let file = match row.path.as_deref().filter(|p| !p.is_empty()) {
        Some(relative) => {
            let data_dir = state.data_dir.as_deref().ok_or_else(media_unavailable)?;
            media_file(data_dir, relative)
        }
        None => None,
    };
    let recording_sid = RecordingSid::parse(&row.sid).map_err(|error| {
        tracing::error!(%error, "stored recording SID is invalid");
        ApiError::internal()
    })?;
    // The log first: once the deletion is a fact, the file goes.
    let appended = state
        .log
        .append(
            &row.call_sid,
            ExpectedVersion::Any,
            vec![NewEvent::new(
                auth.sid(),
                RecordingDeleted { recording_sid },
            )],
        )
        .await?;
    state.await_projections(&appended.positions).await;
    if let Some(file) = file {
        match tokio::fs::remove_file(&file).await {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => tracing::error!(
                recording = %row.sid,
                file = %file.display(),
                %error,
                "recording deleted in the log but its file could not be removed"
            ),
        }
    }
    tracing::info!(recording = %row.sid, call = %row.call_sid, "recording deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE …/Recordings/{Sid}.json`.
#[utoipa::path(
    operation_id = "recordings_delete",
    delete,
    path = "/2010-04-01/Accounts/{account_sid}/Recordings/{sid}",
    tag = "Recordings",
    summary = "Delete a recording and its audio",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "RE…, optionally followed by .json"),
    ),
    responses(
        (status = 204, description = "Done"),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "Not found, or another account's (20404)", body = crate::openapi::schemas::ErrorBody),
        (status = 503, description = "Not visible yet, or not enabled", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn delete(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, segment)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    delete_any(&state, &auth, &segment, None).await
}

/// `DELETE …/Calls/{CallSid}/Recordings/{Sid}.json`.
#[utoipa::path(
    operation_id = "recordings_delete_for_call",
    delete,
    path = "/2010-04-01/Accounts/{account_sid}/Calls/{sid}/Recordings/{recording_sid}",
    tag = "Recordings",
    summary = "Delete a call's recording",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "CA…"),
        ("recording_sid" = String, Path, description = "RE…, optionally followed by .json"),
    ),
    responses(
        (status = 204, description = "Done"),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "Not found, or another account's (20404)", body = crate::openapi::schemas::ErrorBody),
        (status = 503, description = "Not visible yet, or not enabled", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn delete_for_call(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, call_sid, segment)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    delete_any(&state, &auth, &segment, Some(&call_sid)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "RE0123456789abcdef0123456789abcdef";

    #[test]
    fn segments_name_the_representation() {
        for (segment, expected) in [
            (format!("{SID}.json"), Representation::Json),
            (format!("{SID}.wav"), Representation::Wav),
            (format!("{SID}.mp3"), Representation::Mp3),
            (SID.to_owned(), Representation::Wav),
        ] {
            assert_eq!(parse_segment(&segment, "/p").unwrap(), (SID, expected));
        }
        assert!(parse_segment("RE1.json", "/p").is_err());
        assert!(parse_segment(&format!("{SID}.ogg"), "/p").is_err());
        assert!(parse_segment(&SID.replace("RE", "CA"), "/p").is_err());
    }

    #[test]
    fn media_paths_stay_inside_the_data_dir() {
        let dir = FsPath::new("/data");
        assert_eq!(
            media_file(dir, "recordings/RE1.wav"),
            Some(PathBuf::from("/data/recordings/RE1.wav"))
        );
        for bad in ["", "../etc/passwd", "/etc/passwd", "recordings/../../x.wav"] {
            assert_eq!(media_file(dir, bad), None, "{bad}");
        }
    }

    #[test]
    fn durations_are_whole_seconds_or_minus_one() {
        assert_eq!(duration_text(Some(4_200)), "4");
        assert_eq!(duration_text(Some(4_500)), "5");
        assert_eq!(duration_text(Some(0)), "0");
        assert_eq!(duration_text(None), "-1");
    }
}

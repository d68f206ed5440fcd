//! Conferences and their participants, Twilio's shapes: `GET …/Conferences.json`
//! (`FriendlyName`, `Status`), `GET …/Conferences/{CF}.json`, `GET …/Conferences/{CF}/Participants.json`
//! (the participants connected now), `GET …/Conferences/{CF}/Participants/{CA}.json`,
//! `GET …/Conferences/{CF}/Recordings.json`; and control through the call controller:
//! `POST …/Participants/{CA}.json` (`Muted`), `DELETE …/Participants/{CA}.json`, and
//! `POST …/Conferences/{CF}.json` (`Status=completed`).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use dialtone_events::sid::{CallSid, ConferenceSid};
use dialtone_projections::conferences::{self, ConferenceFilter, ConferenceRow, ParticipantRow};
use serde_json::{json, Value};

use crate::auth::Authenticated;
use crate::calls_write::{account_sid, control_error, controller};
use crate::control::{ControlError, ParticipantAction};
use crate::error::ApiError;
use crate::format::{rfc2822, sid_segment};
use crate::paging::{envelope, keyset_links, Paging};
use crate::params::Params;
use crate::{ApiState, API_VERSION};

const STATUSES: &[&str] = &["init", "in-progress", "completed"];

fn conference_base(account: &str, sid: &str) -> String {
    format!("/{API_VERSION}/Accounts/{account}/Conferences/{sid}")
}

/// Twilio's Conference representation.
fn conference_json(row: &ConferenceRow) -> Value {
    let base = conference_base(&row.account_sid, &row.sid);
    json!({
        "account_sid": row.account_sid,
        "api_version": API_VERSION,
        "call_sid_ending_conference": row.call_sid_ending_conference,
        "date_created": rfc2822(row.date_created),
        "date_updated": rfc2822(row.date_updated),
        "friendly_name": row.friendly_name,
        "reason_conference_ended": row.reason_conference_ended,
        "region": "us1",
        "sid": row.sid,
        "status": row.status,
        "subresource_uris": {
            "participants": format!("{base}/Participants.json"),
            "recordings": format!("{base}/Recordings.json"),
        },
        "uri": format!("{base}.json"),
    })
}

/// Twilio's Participant representation.
fn participant_json(row: &ParticipantRow) -> Value {
    let base = conference_base(&row.account_sid, &row.conference_sid);
    json!({
        "account_sid": row.account_sid,
        "api_version": API_VERSION,
        "call_sid": row.call_sid,
        "call_sid_to_coach": null,
        "coaching": false,
        "conference_sid": row.conference_sid,
        "date_created": rfc2822(row.date_created),
        "date_updated": rfc2822(row.date_created),
        "end_conference_on_exit": row.end_conference_on_exit,
        "hold": row.hold,
        "label": null,
        "muted": row.muted,
        "queue_time": null,
        "start_conference_on_enter": row.start_conference_on_enter,
        "status": "connected",
        "uri": format!("{base}/Participants/{}.json", row.call_sid),
    })
}

/// The caller's conference `segment` (`CF….json`), or 404.
async fn owned_conference(
    state: &ApiState,
    auth: &Authenticated,
    segment: &str,
    path: &str,
) -> Result<ConferenceRow, ApiError> {
    let sid = sid_segment(segment, ConferenceSid::PREFIX, path)?.to_owned();
    let account = auth.sid().to_owned();
    state
        .read_models
        .read(move |c| conferences::get_conference(c, &account, &sid))
        .await?
        .ok_or_else(|| ApiError::not_found(path))
}

/// `GET …/Conferences.json`.
#[utoipa::path(
    operation_id = "conferences_list",
    get,
    path = "/2010-04-01/Accounts/{account_sid}/Conferences.json",
    tag = "Conferences",
    summary = "List conferences",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("FriendlyName" = Option<String>, Query, description = "Exact"),
        ("Status" = Option<String>, Query, description = "init, in-progress, completed"),
        ("PageSize" = Option<u32>, Query, description = "1–1000, default 50"),
        ("Page" = Option<u32>, Query, description = "Page index"),
        ("PageToken" = Option<String>, Query, description = "Opaque, from next_page_uri"),
    ),
    responses(
        (status = 200, description = "OK", body = crate::openapi::schemas::ConferenceList),
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
    let path = format!("/{API_VERSION}/Accounts/{}/Conferences.json", auth.sid());
    let params = Params::from_query(query.as_deref());
    let paging = Paging::parse(&params)?;
    let status = params.non_empty("Status").map(str::to_owned);
    if let Some(status) = status.as_deref().filter(|s| !STATUSES.contains(s)) {
        return Err(ApiError::invalid(format!(
            "Status must be one of {}, not {status:?}",
            STATUSES.join(", ")
        )));
    }
    let filter = ConferenceFilter {
        friendly_name: params.non_empty("FriendlyName").map(str::to_owned),
        status,
    };
    let account = auth.sid().to_owned();
    let request = paging.request();
    let page = state
        .read_models
        .read(move |c| conferences::list_conferences(c, &account, &filter, &request))
        .await?;
    let (next, previous) = keyset_links(&paging, &page, conferences::conference_sort_key);
    let items = page.items.iter().map(conference_json).collect();
    Ok(Json(envelope(
        "conferences",
        items,
        &path,
        &params,
        &paging,
        next,
        previous,
    )))
}

/// `GET …/Conferences/{CF}.json`.
#[utoipa::path(
    operation_id = "conferences_fetch",
    get,
    path = "/2010-04-01/Accounts/{account_sid}/Conferences/{sid}",
    tag = "Conferences",
    summary = "Fetch a conference",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "CF…, optionally followed by .json"),
    ),
    responses(
        (status = 200, description = "OK", body = crate::openapi::schemas::Conference),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "Not found, or another account's (20404)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn fetch(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, segment)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let path = format!(
        "/{API_VERSION}/Accounts/{}/Conferences/{segment}",
        auth.sid()
    );
    let row = owned_conference(&state, &auth, &segment, &path).await?;
    Ok(Json(conference_json(&row)))
}

/// `GET …/Conferences/{CF}/Participants.json`: everyone connected now, in one page.
#[utoipa::path(
    operation_id = "conferences_list_participants",
    get,
    path = "/2010-04-01/Accounts/{account_sid}/Conferences/{sid}/Participants.json",
    tag = "Conferences",
    summary = "The participants connected now",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "CF…"),
        ("Muted" = Option<bool>, Query, description = ""),
        ("Hold" = Option<bool>, Query, description = ""),
        ("PageSize" = Option<u32>, Query, description = "1–1000, default 50"),
        ("Page" = Option<u32>, Query, description = "Page index"),
        ("PageToken" = Option<String>, Query, description = "Opaque, from next_page_uri"),
    ),
    responses(
        (status = 200, description = "OK", body = crate::openapi::schemas::ParticipantList),
        (status = 400, description = "Invalid parameter (error body names it)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "Not found, or another account's (20404)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn list_participants(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, conference)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let path = format!(
        "/{API_VERSION}/Accounts/{}/Conferences/{conference}/Participants.json",
        auth.sid()
    );
    let row = owned_conference(&state, &auth, &conference, &path).await?;
    let params = Params::from_query(query.as_deref());
    let paging = Paging::parse(&params)?;
    let muted = bool_param(&params, "Muted")?;
    let hold = bool_param(&params, "Hold")?;
    let items = participants_of(&state, &row)
        .await?
        .iter()
        .filter(|p| muted.is_none_or(|m| p.muted == m) && hold.is_none_or(|h| p.hold == h))
        .skip(paging.page.saturating_mul(paging.size))
        .take(paging.size)
        .map(participant_json)
        .collect();
    Ok(Json(envelope(
        "participants",
        items,
        &path,
        &params,
        &paging,
        None,
        None,
    )))
}

/// `GET …/Conferences/{CF}/Participants/{CA}.json`: a participant connected now.
#[utoipa::path(
    operation_id = "conferences_fetch_participant",
    get,
    path = "/2010-04-01/Accounts/{account_sid}/Conferences/{sid}/Participants/{call_sid}",
    tag = "Conferences",
    summary = "Fetch a participant",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "CF…"),
        ("call_sid" = String, Path, description = "CA…, optionally followed by .json"),
    ),
    responses(
        (status = 200, description = "OK", body = crate::openapi::schemas::Participant),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "Not found, or another account's (20404)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn fetch_participant(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, conference, call)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let path = format!(
        "/{API_VERSION}/Accounts/{}/Conferences/{conference}/Participants/{call}",
        auth.sid()
    );
    let room = owned_conference(&state, &auth, &conference, &path).await?;
    let call = sid_segment(&call, CallSid::PREFIX, &path)?;
    let row = connected(&state, &room, call, &path).await?;
    Ok(Json(participant_json(&row)))
}

/// `GET …/Conferences/{CF}/Recordings.json`.
#[utoipa::path(
    operation_id = "conferences_list_recordings",
    get,
    path = "/2010-04-01/Accounts/{account_sid}/Conferences/{sid}/Recordings.json",
    tag = "Conferences",
    summary = "A conference's recordings",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "CF…"),
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
pub(crate) async fn list_recordings(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, conference)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let path = format!(
        "/{API_VERSION}/Accounts/{}/Conferences/{conference}/Recordings.json",
        auth.sid()
    );
    let row = owned_conference(&state, &auth, &conference, &path).await?;
    crate::recordings::list_page(&state, &auth, query, Some(row.sid), &path).await
}

/// Sends `action` through participant `call` and waits until the room's stream, as it is
/// then, is in the read models.
async fn control(
    state: &ApiState,
    auth: &Authenticated,
    conference: &ConferenceRow,
    call: &CallSid,
    action: ParticipantAction,
    path: &str,
) -> Result<(), ApiError> {
    let controller = controller(state, "Conference control")?;
    let account = account_sid(auth)?;
    controller
        .update_participant(&account, call, action)
        .await
        .map_err(|error| match error {
            // It left (or the conference ended) meanwhile.
            ControlError::NotFound | ControlError::InvalidState => ApiError::not_found(path),
            error => control_error(error, path, None, None),
        })?;
    tracing::info!(conference = %conference.sid, %call, ?action, "conference participant updated");
    let stream = state
        .log
        .read_stream(&conference.sid, 1)
        .await
        .map_err(|error| {
            tracing::error!(%error, "cannot read a conference's stream");
            ApiError::internal()
        })?;
    if let Some(last) = stream.last() {
        state
            .await_projections(std::slice::from_ref(&last.position))
            .await;
    }
    Ok(())
}

/// The participants connected to `conference` now, in the order they joined.
async fn participants_of(
    state: &ApiState,
    conference: &ConferenceRow,
) -> Result<Vec<ParticipantRow>, ApiError> {
    let sid = conference.sid.clone();
    Ok(state
        .read_models
        .read(move |c| conferences::list_participants(c, &sid))
        .await?)
}

/// A participant connected now, or 404.
async fn connected(
    state: &ApiState,
    conference: &ConferenceRow,
    call: &str,
    path: &str,
) -> Result<ParticipantRow, ApiError> {
    participants_of(state, conference)
        .await?
        .into_iter()
        .find(|p| p.call_sid == call)
        .ok_or_else(|| ApiError::not_found(path))
}

/// A boolean parameter: `true`, `false` or absent.
fn bool_param(params: &Params, name: &str) -> Result<Option<bool>, ApiError> {
    match params.non_empty(name) {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => Err(ApiError::invalid(format!("{name} must be true or false"))),
    }
}

/// Refuses the parameters Twilio accepts that Dialtone does not carry out.
fn refuse_unsupported(params: &Params, names: &[&str]) -> Result<(), ApiError> {
    match names.iter().find(|n| params.non_empty(n).is_some()) {
        Some(name) => Err(ApiError::invalid(format!(
            "{name} is not supported by Dialtone"
        ))),
        None => Ok(()),
    }
}

/// `POST …/Conferences/{CF}/Participants/{CA}.json`: `Muted=true|false`.
#[utoipa::path(
    operation_id = "conferences_update_participant",
    post,
    path = "/2010-04-01/Accounts/{account_sid}/Conferences/{sid}/Participants/{call_sid}",
    tag = "Conferences",
    summary = "Mute, unmute, hold or unhold a participant",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "CF…"),
        ("call_sid" = String, Path, description = "CA…, optionally followed by .json"),
    ),
    request_body(content = crate::openapi::schemas::UpdateParticipantForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "OK", body = crate::openapi::schemas::Participant),
        (status = 400, description = "Invalid parameter (error body names it)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "Not found, or another account's (20404)", body = crate::openapi::schemas::ErrorBody),
        (status = 501, description = "Not enabled on this node", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn update_participant(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, conference, call)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let path = format!(
        "/{API_VERSION}/Accounts/{}/Conferences/{conference}/Participants/{call}",
        auth.sid()
    );
    let room = owned_conference(&state, &auth, &conference, &path).await?;
    let call_sid = sid_segment(&call, CallSid::PREFIX, &path)?.to_owned();
    connected(&state, &room, &call_sid, &path).await?;
    let params = Params::parse(&body);
    refuse_unsupported(
        &params,
        &[
            "HoldUrl",
            "AnnounceUrl",
            "Coaching",
            "BeepOnExit",
            "WaitUrl",
        ],
    )?;
    let muted = bool_param(&params, "Muted")?;
    let hold = bool_param(&params, "Hold")?;
    if muted.is_some() || hold.is_some() {
        let call = CallSid::parse(&call_sid).map_err(|_| ApiError::not_found(&path))?;
        let action = ParticipantAction::Update { muted, hold };
        control(&state, &auth, &room, &call, action, &path).await?;
    }
    let row = connected(&state, &room, &call_sid, &path).await?;
    Ok(Json(participant_json(&row)))
}

/// `DELETE …/Conferences/{CF}/Participants/{CA}.json`: takes the participant out; its call
/// goes on after its `<Dial>`.
#[utoipa::path(
    operation_id = "conferences_delete_participant",
    delete,
    path = "/2010-04-01/Accounts/{account_sid}/Conferences/{sid}/Participants/{call_sid}",
    tag = "Conferences",
    summary = "Remove a participant (its TwiML goes on after <Dial>)",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "CF…"),
        ("call_sid" = String, Path, description = "CA…, optionally followed by .json"),
    ),
    responses(
        (status = 204, description = "Done"),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "Not found, or another account's (20404)", body = crate::openapi::schemas::ErrorBody),
        (status = 501, description = "Not enabled on this node", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn delete_participant(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, conference, call)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let path = format!(
        "/{API_VERSION}/Accounts/{}/Conferences/{conference}/Participants/{call}",
        auth.sid()
    );
    let room = owned_conference(&state, &auth, &conference, &path).await?;
    let call_sid = sid_segment(&call, CallSid::PREFIX, &path)?.to_owned();
    connected(&state, &room, &call_sid, &path).await?;
    let call = CallSid::parse(&call_sid).map_err(|_| ApiError::not_found(&path))?;
    control(&state, &auth, &room, &call, ParticipantAction::Kick, &path).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST …/Conferences/{CF}.json`: `Status=completed` ends the conference for everyone.
#[utoipa::path(
    operation_id = "conferences_update",
    post,
    path = "/2010-04-01/Accounts/{account_sid}/Conferences/{sid}",
    tag = "Conferences",
    summary = "End a conference (Status=completed)",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "CF…, optionally followed by .json"),
    ),
    request_body(content = crate::openapi::schemas::UpdateConferenceForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "OK", body = crate::openapi::schemas::Conference),
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
    let path = format!(
        "/{API_VERSION}/Accounts/{}/Conferences/{segment}",
        auth.sid()
    );
    let room = owned_conference(&state, &auth, &segment, &path).await?;
    let params = Params::parse(&body);
    refuse_unsupported(&params, &["AnnounceUrl", "AnnounceMethod"])?;
    match params.non_empty("Status") {
        None => {}
        // Ending an ended conference changes nothing.
        Some(v) if v.eq_ignore_ascii_case("completed") && room.status == "completed" => {}
        Some(v) if v.eq_ignore_ascii_case("completed") => {
            if let Some(through) = participants_of(&state, &room)
                .await?
                .first()
                .and_then(|p| CallSid::parse(&p.call_sid).ok())
            {
                let action = ParticipantAction::EndConference;
                control(&state, &auth, &room, &through, action, &path).await?;
            }
        }
        Some(_) => return Err(ApiError::invalid("Status must be completed")),
    }
    let room = owned_conference(&state, &auth, &segment, &path).await?;
    Ok(Json(conference_json(&room)))
}

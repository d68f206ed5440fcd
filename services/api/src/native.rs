//! The native API: a call's event history, health and metrics.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use dialtone_events::sid::CallSid;

use crate::auth::Authenticated;
use crate::error::{codes, ApiError};
use crate::ApiState;

/// Media type of a JSON array of CloudEvents (CloudEvents JSON batch format).
const CLOUDEVENTS_BATCH: &str = "application/cloudevents-batch+json";

/// `GET /v1/Accounts/{AC}/Calls/{CA}/Events`: every event of the call's stream in order,
/// each exactly as stored (its canonical JSON, so hashes can be re-checked by the client).
#[utoipa::path(
    operation_id = "native_call_events",
    get,
    path = "/v1/Accounts/{account_sid}/Calls/{sid}/Events",
    tag = "Events",
    summary = "A call's whole history: its CloudEvents as stored",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "CA…"),
    ),
    responses(
        (status = 200, description = "The call's events in order", content_type = "application/cloudevents-batch+json", body = Vec<crate::openapi::schemas::CloudEvent>),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "Not found, or another account's (20404)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn call_events(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, sid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let path = format!("/v1/Accounts/{}/Calls/{sid}/Events", auth.sid());
    if CallSid::parse(&sid).is_err() {
        return Err(ApiError::not_found(&path));
    }
    let events = state.log.read_stream(&sid, 1).await?;
    // The stream's first event names its account; another account's call does not exist.
    match events.first() {
        Some(first) if first.event.accountsid == auth.sid() => {}
        _ => return Err(ApiError::not_found(&path)),
    }
    let mut body = String::with_capacity(events.len() * 512 + 2);
    body.push('[');
    for (i, recorded) in events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&recorded.event.to_json());
    }
    body.push(']');
    Ok(([(header::CONTENT_TYPE, CLOUDEVENTS_BATCH)], body).into_response())
}

/// `GET /healthz`: 200 `ok` while this node's dependencies work, 503 (with what failed)
/// otherwise: the event log answers within 2 s, the read models' projections run. A load
/// balancer takes a node out on 503.
#[utoipa::path(
    operation_id = "native_healthz",
    get,
    path = "/healthz",
    tag = "Operations",
    summary = "Health: 200 while the log answers and the projections run, 503 otherwise",
    responses(
        (status = 200, description = "Plain text", content_type = "text/plain", body = String),
        (status = 503, description = "What failed, then the same details", content_type = "text/plain", body = String),
    ),
)]
pub(crate) async fn healthz(State(state): State<ApiState>) -> Response {
    let progress = state.projections.progress();
    let log = match tokio::time::timeout(LOG_HEALTH_WAIT, state.log.head()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(format!("event log unreachable: {error}")),
        Err(_) => Err(format!(
            "event log unreachable: no answer within {} s",
            LOG_HEALTH_WAIT.as_secs()
        )),
    };
    let details = format!(
        "roles: {}\nlog: {} ({})\nnode: {}\nprojections: {} events applied, cursor {}\n",
        state.roles,
        state.log.backend(),
        if log.is_ok() { "ok" } else { "unreachable" },
        state.node_id,
        progress.events,
        progress.cursor.to_json()
    );
    let replica = state
        .read_model_replica
        .as_ref()
        .map(|r| r.borrow().clone());
    let mut details = details;
    if let Some(replica) = &replica {
        details.push_str(&format!(
            "read models: postgres ({}), holds {} (current: {}), {} batches, {} copies\n",
            if replica.connected {
                "connected"
            } else {
                "unreachable"
            },
            if replica.held.is_empty() {
                "no projections".to_owned()
            } else {
                replica.held.join(",")
            },
            replica.synced.join(","),
            replica.batches,
            replica.copies,
        ));
    }
    let failure = match (log, progress.stopped, replica) {
        (Err(error), _, _) => Some(error),
        (Ok(()), true, _) => Some(format!(
            "projections stopped: {}",
            progress.last_error.unwrap_or_default()
        )),
        (Ok(()), false, Some(replica)) if !replica.connected => Some(format!(
            "read-model database unreachable: {}",
            replica
                .last_error
                .unwrap_or_else(|| "not connected yet".to_owned())
        )),
        (Ok(()), false, _) => None,
    };
    match failure {
        Some(failure) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{failure}\n{details}"),
        )
            .into_response(),
        None => (StatusCode::OK, format!("ok\n{details}")).into_response(),
    }
}

/// How long `/healthz` waits for the event log.
const LOG_HEALTH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(
    operation_id = "native_metrics",
    get,
    path = "/metrics",
    tag = "Operations",
    summary = "Prometheus metrics",
    responses(
        (status = 200, description = "Plain text", content_type = "text/plain", body = String),
        (status = 404, description = "Not found, or another account's (20404)", body = crate::openapi::schemas::ErrorBody),
    ),
)]
pub(crate) async fn metrics(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let handle = state.metrics.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            codes::NOT_FOUND,
            "Metrics are not enabled on this node",
        )
    })?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response())
}

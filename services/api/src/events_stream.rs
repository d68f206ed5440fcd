//! `GET /v1/Accounts/{AC}/Events`: the account's events, live, as Server-Sent Events or over
//! a WebSocket (the same path with `Upgrade: websocket`).
//!
//! Each SSE message is one CloudEvent in structured JSON in `data:`, with `id:` the opaque
//! position just after it. A client resumes with `Last-Event-ID` (what `EventSource` sends on
//! reconnect; it wins over the query) or `?After=`: no gap, no duplicate. `After=0` catches up
//! from the beginning of the log, then continues live; without a position the stream starts
//! with the next event. Filters: `Types` (exact or `dialtone.call.*`, comma-separated or
//! repeated) and `Subject` (one stream). A heartbeat comment goes out every 15 s. A client
//! that falls more than the hub's buffer behind gets a final comment naming the position to
//! resume from, and the stream ends.
//!
//! WebSocket frames are text: `{"position":"…","event":{…}}`; heartbeats are pings; the
//! final message of a cut-off client is `{"cutoff":"…","resume_after":"…"}` before a close.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use dialtone_events::Cursor;
use dialtone_streams::hub::Start;
use dialtone_streams::{LagPolicy, StreamFilter, SubscribeError, Subscriber};
use futures::stream::{self, Stream, StreamExt};
use serde_json::json;

use crate::auth::Authenticated;
use crate::error::{codes, ApiError};
use crate::params::Params;
use crate::ApiState;

/// Query parameters the stream accepts.
const PARAMETERS: &[&str] = &["Types", "Subject", "After"];

/// The parsed request: filter and start.
struct StreamRequest {
    filter: StreamFilter,
    start: Start,
}

fn parse_request(
    state: &ApiState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<StreamRequest, ApiError> {
    if let Some((name, _)) = params
        .0
        .iter()
        .find(|(k, _)| !PARAMETERS.contains(&k.as_str()))
    {
        return Err(ApiError::invalid(format!(
            "Unknown parameter {name:?}: the event stream takes Types, Subject and After"
        )));
    }
    let types = params
        .0
        .iter()
        .filter(|(k, _)| k == "Types")
        .map(|(_, v)| v.as_str());
    let filter = StreamFilter::parse(types, params.non_empty("Subject")).map_err(|e| {
        let name = match e {
            dialtone_streams::FilterError::UnknownType(_) => "Types",
            dialtone_streams::FilterError::BadSubject(_) => "Subject",
        };
        ApiError::invalid(format!("{name}: {e}"))
    })?;
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .map(str::trim)
                .map_err(|_| ApiError::invalid("Last-Event-ID must be a position token"))
        })
        .transpose()?
        .filter(|v| !v.is_empty());
    let (name, token) = match (last_event_id, params.non_empty("After")) {
        (Some(token), _) => ("Last-Event-ID", Some(token)),
        (None, Some(token)) => ("After", Some(token)),
        (None, None) => ("After", None),
    };
    let start = match token {
        None => Start::Now,
        Some(token) => Start::After(parse_position(state, name, token)?),
    };
    Ok(StreamRequest { filter, start })
}

/// A position parameter, or a 400 naming it.
pub(crate) fn parse_position(
    state: &ApiState,
    name: &str,
    token: &str,
) -> Result<Cursor, ApiError> {
    state
        .log
        .parse_position(token)
        .map_err(|e| ApiError::invalid(format!("{name}: {e}")))
}

#[utoipa::path(
    operation_id = "events_stream_stream",
    get,
    path = "/v1/Accounts/{account_sid}/Events",
    tag = "Events",
    summary = "The account's events, live: Server-Sent Events, or a WebSocket with Upgrade",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("Types" = Option<String>, Query, description = "Exact types or families (dialtone.call.*), comma-separated or repeated"),
        ("Subject" = Option<String>, Query, description = "One stream: CA…, PN…, CF…"),
        ("After" = Option<String>, Query, description = "A position (an event id; 0 is the beginning); the Last-Event-ID header wins"),
        ("Last-Event-ID" = Option<String>, Header, description = "The position to resume after"),
    ),
    responses(
        (status = 200, description = "text/event-stream: each message an `id:` (the position after it) and a CloudEvent in `data:`; `: heartbeat` comments; a final comment naming the resume position for a client cut off. With Upgrade: websocket, 101 and text frames {\"position\",\"event\"}", content_type = "text/event-stream", body = crate::openapi::schemas::CloudEvent),
        (status = 400, description = "Invalid parameter (error body names it)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "Not found, or another account's (20404)", body = crate::openapi::schemas::ErrorBody),
        (status = 503, description = "Not visible yet, or not enabled", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn stream(
    State(state): State<ApiState>,
    auth: Authenticated,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let params = Params::from_query(query.as_deref());
    let subscriber = open(&state, &auth, &headers, &params)?;
    let heartbeat = state.stream_heartbeat;
    Ok(match upgrade.ok() {
        Some(upgrade) => upgrade
            .on_upgrade(move |socket| websocket(socket, subscriber, heartbeat))
            .into_response(),
        None => sse(subscriber, heartbeat),
    })
}

/// A subscriber for the request's filter and start, or the 400/503 saying why not.
pub(crate) fn open(
    state: &ApiState,
    auth: &Authenticated,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Subscriber, ApiError> {
    let request = parse_request(state, headers, params)?;
    let hub = state.event_hub.as_ref().ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            codes::UNAVAILABLE,
            "The event stream is not enabled on this node",
        )
    })?;
    Ok(hub.subscribe(auth.sid(), request.filter, request.start, LagPolicy::CutOff))
}

/// The Server-Sent Events response of a subscriber.
pub(crate) fn sse(subscriber: Subscriber, heartbeat: Duration) -> Response {
    Sse::new(sse_events(subscriber))
        .keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat"))
        .into_response()
}

/// What a subscriber yields next: events, or its last words.
enum Step {
    Events(Vec<dialtone_streams::Delivery>),
    End(String),
}

async fn step(subscriber: &mut Subscriber) -> Step {
    match subscriber.next().await {
        Ok(batch) => Step::Events(batch),
        Err(SubscribeError::Lagged {
            buffer,
            resume_after,
        }) => {
            metrics::counter!("dialtone_stream_cutoffs_total").increment(1);
            Step::End(format!(
                "cut off: this client fell more than {buffer} events behind; resume after position {resume_after} (Last-Event-ID: {resume_after})"
            ))
        }
        Err(SubscribeError::Log(error)) => {
            tracing::warn!(%error, "event stream ended by a log error");
            Step::End(format!(
                "ended by a server error; resume after position {}",
                subscriber.position()
            ))
        }
    }
}

fn sse_events(subscriber: Subscriber) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    stream::unfold(Some(subscriber), |subscriber| async move {
        let mut subscriber = subscriber?;
        match step(&mut subscriber).await {
            Step::Events(batch) => {
                metrics::counter!("dialtone_stream_events_sent_total")
                    .increment(batch.len() as u64);
                let events: Vec<Result<SseEvent, Infallible>> = batch
                    .iter()
                    .map(|d| {
                        Ok(SseEvent::default()
                            .id(d.position.as_str())
                            .data(d.event.public_json()))
                    })
                    .collect();
                Some((stream::iter(events), Some(subscriber)))
            }
            Step::End(comment) => Some((
                stream::iter(vec![Ok(SseEvent::default().comment(comment))]),
                None,
            )),
        }
    })
    .flatten()
}

async fn websocket(mut socket: WebSocket, mut subscriber: Subscriber, heartbeat: Duration) {
    let mut ping = tokio::time::interval(heartbeat);
    ping.tick().await;
    loop {
        tokio::select! {
            step = step(&mut subscriber) => match step {
                Step::Events(batch) => {
                    metrics::counter!("dialtone_stream_events_sent_total")
                        .increment(batch.len() as u64);
                    for delivery in batch {
                        let frame = format!(
                            "{{\"position\":{},\"event\":{}}}",
                            json!(delivery.position),
                            delivery.event.public_json()
                        );
                        if socket.send(Message::Text(frame.into())).await.is_err() {
                            return;
                        }
                    }
                }
                Step::End(comment) => {
                    let last = json!({ "cutoff": comment, "resume_after": subscriber.position() });
                    let _ = socket.send(Message::Text(last.to_string().into())).await;
                    let _ = socket
                        .send(Message::Close(Some(CloseFrame {
                            code: 1013,
                            reason: "resume after the position in the last message".into(),
                        })))
                        .await;
                    return;
                }
            },
            _ = ping.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

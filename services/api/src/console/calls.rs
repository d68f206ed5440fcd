//! The console's calls: the list (filters, paging) and one call's page (facts, event timeline,
//! recordings to play, child legs, charge).

use axum::extract::{Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dialtone_events::describe::{short_type, summary};
use serde::Deserialize;
use serde_json::Value;

use super::page::table;
use super::{error_page, escape, Page, Session};
use crate::params::{encode_query, Params};
use crate::ApiState;

/// The list's filters, as the REST API takes them.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CallsQuery {
    status: Option<String>,
    to: Option<String>,
    from: Option<String>,
    page: Option<String>,
    page_token: Option<String>,
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "—".to_owned(),
        Value::String(s) if s.is_empty() => "—".to_owned(),
        Value::String(s) => escape(s),
        other => escape(&other.to_string()),
    }
}

fn charge(call: &Value) -> String {
    match call["price"].as_str() {
        Some(price) => format!(
            "{} {}",
            escape(price.trim_start_matches('-')),
            escape(call["price_unit"].as_str().unwrap_or_default())
        ),
        None => "—".to_owned(),
    }
}

fn call_rows(calls: &[Value]) -> Vec<Vec<String>> {
    calls
        .iter()
        .map(|c| {
            let sid = c["sid"].as_str().unwrap_or_default();
            vec![
                format!(
                    "<a href=\"/console/calls/{sid}\" class=\"mono\">{sid}</a>",
                    sid = escape(sid)
                ),
                text(&c["date_created"]),
                text(&c["direction"]),
                text(&c["from"]),
                text(&c["to"]),
                text(&c["status"]),
                text(&c["duration"]),
                charge(c),
            ]
        })
        .collect()
}

const CALL_HEADERS: &[&str] = &[
    "Call",
    "Created",
    "Direction",
    "From",
    "To",
    "Status",
    "Duration (s)",
    "Charge",
];

/// The console link for one of the API's page URIs (`next_page_uri`).
fn console_page_link(uri: &Value) -> Option<String> {
    let uri = uri.as_str()?;
    let query = uri.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let params = Params::from_query(Some(query));
    let kept = params.encode_without(&["PageSize"]);
    Some(format!("/console/calls?{}", escape(&encode_query(&kept))))
}

#[utoipa::path(
    get,
    operation_id = "console_calls",
    path = "/console/calls",
    tag = "Console",
    summary = "The calls page (filters Status, To, From; paging)",
    responses((status = 200, description = "HTML", content_type = "text/html", body = String)),
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    session: Session,
    Query(query): Query<CallsQuery>,
) -> Response {
    let mut pairs: Vec<(String, String)> = vec![("PageSize".into(), "25".into())];
    for (name, value) in [
        ("Status", &query.status),
        ("To", &query.to),
        ("From", &query.from),
        ("Page", &query.page),
        ("PageToken", &query.page_token),
    ] {
        if let Some(value) = value.as_ref().filter(|v| !v.is_empty()) {
            pairs.push((name.into(), value.clone()));
        }
    }
    let page = match crate::calls::list(
        State(state),
        session.auth.clone(),
        RawQuery(Some(encode_query(&pairs))),
    )
    .await
    {
        Ok(page) => page.0,
        Err(error) => {
            return Page::new("Calls", Some(&session))
                .error(&super::api_error_text(&error))
                .respond(error.status)
        }
    };
    let calls = page["calls"].as_array().cloned().unwrap_or_default();
    let selected = |value: &str| {
        if query.status.as_deref() == Some(value) {
            " selected"
        } else {
            ""
        }
    };
    let statuses: String = [
        "",
        "queued",
        "ringing",
        "in-progress",
        "completed",
        "busy",
        "failed",
        "no-answer",
        "canceled",
    ]
    .iter()
    .map(|s| {
        format!(
            "<option value=\"{s}\"{}>{}</option>",
            selected(s),
            if s.is_empty() { "any" } else { s }
        )
    })
    .collect();
    let value = |v: &Option<String>| escape(v.as_deref().unwrap_or_default());
    let filters = format!(
        "<form method=\"get\" action=\"/console/calls\" class=\"card inline\" role=\"search\">\
         <div><label for=\"status\">Status</label><select id=\"status\" name=\"Status\">{statuses}</select></div>\
         <div><label for=\"to\">To</label><input id=\"to\" name=\"To\" value=\"{to}\" inputmode=\"tel\"></div>\
         <div><label for=\"from\">From</label><input id=\"from\" name=\"From\" value=\"{from}\" inputmode=\"tel\"></div>\
         <button type=\"submit\">Filter</button></form>",
        to = value(&query.to),
        from = value(&query.from),
    );
    let list = if calls.is_empty() {
        "<p>No calls.</p>".to_owned()
    } else {
        table(
            "Calls, newest first",
            CALL_HEADERS,
            &call_rows(&calls),
            &[6, 7],
        )
    };
    let mut pager = String::new();
    if let Some(link) = console_page_link(&page["previous_page_uri"]) {
        pager.push_str(&format!("<a href=\"{link}\" rel=\"prev\">Newer calls</a>"));
    }
    if let Some(link) = console_page_link(&page["next_page_uri"]) {
        pager.push_str(&format!("<a href=\"{link}\" rel=\"next\">Older calls</a>"));
    }
    Page::new("Calls", Some(&session))
        .html(&format!(
            "{filters}{list}<nav class=\"pager\" aria-label=\"Pages\">{pager}</nav>"
        ))
        .respond(StatusCode::OK)
}

fn timeline(events: &[dialtone_events::RecordedEvent]) -> String {
    let Some(start) = events.first().map(|r| r.event.time) else {
        return "<p>No events.</p>".to_owned();
    };
    let items: String = events
        .iter()
        .map(|r| {
            let offset = (r.event.time - start).whole_milliseconds() as f64 / 1000.0;
            format!(
                "<li><span class=\"offset\">+{offset:.3} s</span><span class=\"mono\">{}</span><span class=\"facts\">{}</span></li>",
                escape(short_type(&r.event.event_type)),
                escape(&summary(&r.event))
            )
        })
        .collect();
    format!("<ol class=\"timeline\" aria-label=\"Events, with their offset from the first\">{items}</ol>")
}

#[utoipa::path(
    get,
    operation_id = "console_call",
    path = "/console/calls/{sid}",
    tag = "Console",
    summary = "One call: facts, event timeline, recordings, child legs, charge",
    params(("sid" = String, Path, description = "CA…")),
    responses(
        (status = 200, description = "HTML", content_type = "text/html", body = String),
        (status = 404, description = "Not this account's call", content_type = "text/html", body = String),
    ),
)]
pub(crate) async fn call(
    State(state): State<ApiState>,
    session: Session,
    Path(sid): Path<String>,
) -> Response {
    let account = session.sid().to_owned();
    let call = match crate::calls::fetch(
        State(state.clone()),
        session.auth.clone(),
        Path((account.clone(), sid.clone())),
        RawQuery(None),
    )
    .await
    {
        Ok(call) => call.0,
        Err(error) => return error_page(Some(&session), error),
    };
    let events = match state.log.read_stream(&sid, 1).await {
        Ok(events) => events,
        Err(error) => return error_page(Some(&session), error.into()),
    };
    let recordings = crate::recordings::list_for_call(
        State(state.clone()),
        session.auth.clone(),
        Path((account.clone(), sid.clone())),
        RawQuery(None),
    )
    .await
    .map(|r| r.0["recordings"].as_array().cloned().unwrap_or_default())
    .unwrap_or_default();
    let children = crate::calls::list(
        State(state.clone()),
        session.auth.clone(),
        RawQuery(Some(encode_query(&[("ParentCallSid".into(), sid.clone())]))),
    )
    .await
    .map(|r| r.0["calls"].as_array().cloned().unwrap_or_default())
    .unwrap_or_default();

    let facts = [
        ("Status", text(&call["status"])),
        ("Direction", text(&call["direction"])),
        ("From", text(&call["from"])),
        ("To", text(&call["to"])),
        ("Started", text(&call["start_time"])),
        ("Ended", text(&call["end_time"])),
        ("Duration (s)", text(&call["duration"])),
        ("Charge", charge(&call)),
        ("Parent call", text(&call["parent_call_sid"])),
    ];
    let facts: String = facts
        .iter()
        .map(|(k, v)| format!("<dt>{k}</dt><dd>{v}</dd>"))
        .collect();
    let recordings_html = if recordings.is_empty() {
        "<p>No recordings.</p>".to_owned()
    } else {
        recordings
            .iter()
            .map(|r| {
                let rsid = escape(r["sid"].as_str().unwrap_or_default());
                format!(
                    "<figure class=\"card\"><figcaption><span class=\"mono\">{rsid}</span> · {} s · {}</figcaption>\
                     <audio controls preload=\"metadata\" src=\"/console/recordings/{rsid}.wav\" aria-label=\"Recording {rsid}\"></audio>\
                     <p><a href=\"/console/recordings/{rsid}.wav\" download>Download the WAV</a></p></figure>",
                    text(&r["duration"]),
                    text(&r["status"]),
                )
            })
            .collect()
    };
    let children_html = if children.is_empty() {
        "<p>No child legs.</p>".to_owned()
    } else {
        table("Child legs", CALL_HEADERS, &call_rows(&children), &[6, 7])
    };
    Page::new(&format!("Call {sid}"), Some(&session))
        .html(&format!(
            "<dl class=\"facts card\">{facts}</dl>\
             <h2>Recordings</h2>{recordings_html}\
             <h2>Child legs</h2>{children_html}\
             <h2>Timeline</h2>{}\
             <p><a href=\"/console/calls\">Back to the calls</a></p>",
            timeline(&events)
        ))
        .respond(StatusCode::OK)
}

#[utoipa::path(
    get,
    operation_id = "console_recording",
    path = "/console/recordings/{file}",
    tag = "Console",
    summary = "A recording's audio for the console's player (RE….wav)",
    params(("file" = String, Path, description = "RE… followed by .wav")),
    responses(
        (status = 200, description = "WAV", content_type = "audio/x-wav", body = Vec<u8>),
        (status = 404, description = "Not this account's recording", content_type = "text/html", body = String),
    ),
)]
pub(crate) async fn recording(
    State(state): State<ApiState>,
    session: Session,
    Path(file): Path<String>,
) -> Response {
    if !file.ends_with(".wav") {
        return error_page(
            Some(&session),
            crate::error::ApiError::not_found(&format!("/console/recordings/{file}")),
        );
    }
    match crate::recordings::fetch(
        State(state),
        session.auth.clone(),
        Path((session.sid().to_owned(), file)),
    )
    .await
    {
        Ok(response) => response.into_response(),
        Err(error) => error_page(Some(&session), error),
    }
}

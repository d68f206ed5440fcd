//! The console's live view of the account's events: the stream API (Server-Sent Events)
//! through the session cookie, which `EventSource` sends, shown newest first.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{error_page, Page, Session};
use crate::params::Params;
use crate::ApiState;

/// Appends each event as it arrives; reconnects resume after the last one (EventSource sends
/// Last-Event-ID by itself).
const SCRIPT: &str = r#"
(function () {
  var list = document.getElementById('events');
  var state = document.getElementById('stream-state');
  var filter = document.getElementById('types');
  var source = null;
  function open() {
    if (source) { source.close(); }
    var query = filter.value ? '&Types=' + encodeURIComponent(filter.value) : '';
    source = new EventSource('/console/events/stream?After=' + (list.dataset.after || '') + query);
    source.onopen = function () { state.textContent = 'Connected: new events appear below.'; };
    source.onerror = function () { state.textContent = 'Reconnecting…'; };
    source.onmessage = function (message) {
      var event = JSON.parse(message.data);
      var item = document.createElement('li');
      item.textContent = event.time + '  ' + event.type.replace(/^dialtone\./, '') + '  ' + event.subject;
      item.dataset.type = event.type;
      list.insertBefore(item, list.firstChild);
      while (list.children.length > 500) { list.removeChild(list.lastChild); }
    };
  }
  document.getElementById('filter').addEventListener('submit', function (e) { e.preventDefault(); open(); });
  open();
})();
"#;

#[utoipa::path(
    get,
    operation_id = "console_script",
    path = "/console/assets/events.js",
    tag = "Console",
    summary = "The live events page's script",
    responses((status = 200, description = "JavaScript", content_type = "text/javascript", body = String)),
)]
pub(crate) async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        SCRIPT,
    )
        .into_response()
}

#[utoipa::path(
    get,
    operation_id = "console_events",
    path = "/console/events",
    tag = "Console",
    summary = "The account's events, live",
    responses((status = 200, description = "HTML", content_type = "text/html", body = String)),
)]
pub(crate) async fn events(session: Session) -> Response {
    Page::new("Live events", Some(&session))
        .html(
            "<form id=\"filter\" class=\"card inline\">\
             <div><label for=\"types\">Types</label><input id=\"types\" placeholder=\"dialtone.call.*\"></div>\
             <button type=\"submit\">Follow</button></form>\
             <p id=\"stream-state\" role=\"status\">Connecting…</p>\
             <ol id=\"events\" aria-live=\"polite\" aria-label=\"Events, newest first\" data-after=\"\"></ol>\
             <script src=\"/console/assets/events.js\" defer></script>",
        )
        .respond(StatusCode::OK)
}

#[utoipa::path(
    get,
    operation_id = "console_events_stream",
    path = "/console/events/stream",
    tag = "Console",
    summary = "The event stream (as GET /v1/Accounts/{AC}/Events) with the session cookie",
    responses((status = 200, description = "Server-Sent Events", content_type = "text/event-stream", body = String)),
)]
pub(crate) async fn stream(
    State(state): State<ApiState>,
    session: Session,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    // `After=` (empty) means "from now"; the page passes it so that the URL stays stable.
    let params = Params(
        Params::from_query(query.as_deref())
            .0
            .into_iter()
            .filter(|(k, v)| !(k == "After" && v.is_empty()))
            .collect(),
    );
    match crate::events_stream::open(&state, &session.auth, &headers, &params) {
        Ok(subscriber) => crate::events_stream::sse(subscriber, state.stream_heartbeat),
        Err(error) => error_page(Some(&session), error),
    }
}

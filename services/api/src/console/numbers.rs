//! The console's numbers page: the list, a form to provision one, and each number's voice URL.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::page::table;
use super::{api_error_text, escape, Page, Session};
use crate::ApiState;

/// Reads a handler's JSON answer.
pub(crate) async fn json_of(response: Response) -> Value {
    let bytes = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

async fn render(
    state: ApiState,
    session: &Session,
    message: Result<Option<String>, String>,
) -> Response {
    let listed = crate::numbers::list(
        State(state),
        session.auth.clone(),
        RawQuery(Some("PageSize=1000".to_owned())),
    )
    .await;
    let mut page = Page::new("Numbers", Some(session));
    let status = match &message {
        Err(_) => StatusCode::BAD_REQUEST,
        Ok(_) => StatusCode::OK,
    };
    match message {
        Ok(Some(notice)) => page = page.notice(&notice),
        Err(error) => page = page.error(&error),
        Ok(None) => {}
    }
    let numbers = match listed {
        Ok(body) => body.0["incoming_phone_numbers"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
        Err(error) => return super::error_page(Some(session), error),
    };
    let csrf = escape(&session.csrf);
    let rows: Vec<Vec<String>> = numbers
        .iter()
        .map(|n| {
            let sid = n["sid"].as_str().unwrap_or_default();
            let number = n["phone_number"].as_str().unwrap_or_default();
            let url = n["voice_url"].as_str().unwrap_or_default();
            let method = n["voice_method"].as_str().unwrap_or("POST");
            let id = format!("voice-url-{sid}");
            vec![
                format!("<span class=\"mono\">{}</span>", escape(number)),
                escape(n["friendly_name"].as_str().unwrap_or_default()),
                format!(
                    "<form method=\"post\" action=\"/console/numbers/{sid}\" class=\"inline\">\
                     <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                     <label for=\"{id}\" class=\"visually-hidden\">Voice URL of {num}</label>\
                     <input id=\"{id}\" name=\"VoiceUrl\" type=\"url\" value=\"{url}\">\
                     <button type=\"submit\">Save<span class=\"visually-hidden\"> the voice URL of {num}</span></button></form>",
                    sid = escape(sid),
                    num = escape(number),
                    url = escape(url),
                ),
                escape(method),
                format!("<span class=\"mono\">{}</span>", escape(sid)),
            ]
        })
        .collect();
    let list = if rows.is_empty() {
        "<p>No numbers yet.</p>".to_owned()
    } else {
        table(
            "The account's numbers",
            &["Number", "Name", "Voice URL", "Method", "SID"],
            &rows,
            &[],
        )
    };
    page.html(&format!(
        "<form method=\"post\" action=\"/console/numbers\" class=\"card\">\
         <h2>Add a number</h2><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label for=\"phone_number\">Phone number (E.164)</label>\
         <input id=\"phone_number\" name=\"PhoneNumber\" required placeholder=\"+14155550100\" inputmode=\"tel\">\
         <label for=\"voice_url\">Voice URL</label>\
         <input id=\"voice_url\" name=\"VoiceUrl\" type=\"url\" placeholder=\"https://app.example/voice\">\
         <label for=\"voice_method\">Voice method</label>\
         <select id=\"voice_method\" name=\"VoiceMethod\"><option>POST</option><option>GET</option></select>\
         <button type=\"submit\">Add number</button></form>\
         <h2>Numbers</h2>{list}"
    ))
    .respond(status)
}

#[utoipa::path(
    get,
    operation_id = "console_numbers",
    path = "/console/numbers",
    tag = "Console",
    summary = "The numbers page",
    responses((status = 200, description = "HTML", content_type = "text/html", body = String)),
)]
pub(crate) async fn list(State(state): State<ApiState>, session: Session) -> Response {
    render(state, &session, Ok(None)).await
}

#[utoipa::path(
    post,
    operation_id = "console_numbers_create",
    path = "/console/numbers",
    tag = "Console",
    summary = "Provision a number from the form (the API's errors, shown on the page)",
    responses((status = 200, description = "HTML", content_type = "text/html", body = String)),
)]
pub(crate) async fn create(
    State(state): State<ApiState>,
    session: Session,
    body: Bytes,
) -> Response {
    let params = match session.form(&body) {
        Ok(params) => params,
        Err(refused) => return refused,
    };
    let form: Vec<(String, String)> = params
        .0
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let encoded = crate::params::encode_query(&form);
    let outcome = crate::numbers::create(
        State(state.clone()),
        session.auth.clone(),
        Bytes::from(encoded),
    )
    .await;
    let message = match outcome {
        Ok(response) => {
            let number = json_of(response).await;
            Ok(Some(format!(
                "Added {}.",
                number["phone_number"].as_str().unwrap_or("the number")
            )))
        }
        Err(error) => Err(api_error_text(&error)),
    };
    render(state, &session, message).await
}

#[utoipa::path(
    post,
    operation_id = "console_numbers_update",
    path = "/console/numbers/{sid}",
    tag = "Console",
    summary = "Change a number's voice URL from the form",
    params(("sid" = String, Path, description = "PN…")),
    responses((status = 200, description = "HTML", content_type = "text/html", body = String)),
)]
pub(crate) async fn update(
    State(state): State<ApiState>,
    session: Session,
    Path(sid): Path<String>,
    body: Bytes,
) -> Response {
    let params = match session.form(&body) {
        Ok(params) => params,
        Err(refused) => return refused,
    };
    let encoded = crate::params::encode_query(&params.0);
    let outcome = crate::numbers::update(
        State(state.clone()),
        session.auth.clone(),
        Path((session.sid().to_owned(), sid)),
        Bytes::from(encoded),
    )
    .await;
    let message = match outcome {
        Ok(number) => Ok(Some(format!(
            "Saved the voice URL of {}.",
            number.0["phone_number"].as_str().unwrap_or("the number")
        ))),
        Err(error) => Err(api_error_text(&error)),
    };
    render(state, &session, message).await
}

//! The web console at `/console`: numbers, calls (with each call's event timeline, its
//! recordings and child legs), usage as a chart and a table, and the account's events live.
//!
//! Plain server-rendered HTML with one stylesheet and one small script, both embedded in the
//! binary; no build step. Every page is a view of the REST API: the console calls the same
//! handlers, so it shows what the API would answer and its forms fail with the API's error
//! codes.
//!
//! **Sessions without a new secret store.** Logging in with the account SID and auth token
//! (checked like Basic auth) sets one cookie holding those credentials — `HttpOnly`,
//! `SameSite=Strict`, `Path=/console` (and `Secure` behind TLS) — which each request
//! authenticates exactly as Basic auth would; rotating the token ends every session. Forms
//! carry a CSRF token derived from the credentials (SHA-256), checked on every POST.

mod calls;
mod events;
mod numbers;
mod page;
mod usage;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::params::Params;
use crate::ApiState;
pub(crate) use page::{escape, Page};

/// The session cookie's name.
const COOKIE: &str = "dialtone_console";

/// The console's routes (documented in the OpenAPI document under the `Console` tag).
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(home))
        .routes(routes!(login_page, login))
        .routes(routes!(logout))
        .routes(routes!(page::stylesheet))
        .routes(routes!(events::script))
        .routes(routes!(numbers::list, numbers::create))
        .routes(routes!(numbers::update))
        .routes(routes!(calls::list))
        .routes(routes!(calls::call))
        .routes(routes!(calls::recording))
        .routes(routes!(usage::usage))
        .routes(routes!(usage::csv))
        .routes(routes!(events::events))
        .routes(routes!(events::stream))
}

/// A console visitor with a valid session.
pub(crate) struct Session {
    pub auth: Authenticated,
    /// The CSRF token of this session's forms.
    pub csrf: String,
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then(|| value.to_owned())
        })
}

fn credentials(cookie: &str) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cookie)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (sid, token) = decoded.split_once(':')?;
    Some((sid.to_owned(), token.to_owned()))
}

fn csrf_token(sid: &str, token: &str) -> String {
    hex::encode(Sha256::digest(format!(
        "dialtone console csrf\n{sid}\n{token}"
    )))
}

impl FromRequestParts<ApiState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Session, Response> {
        let to_login = || Redirect::to("/console/login").into_response();
        let (sid, token) = cookie_value(&parts.headers)
            .and_then(|c| credentials(&c))
            .ok_or_else(to_login)?;
        let account = state
            .accounts
            .authenticate(&sid, &token)
            .ok_or_else(to_login)?;
        // The console's forms call the REST handlers directly: the same status rules apply.
        crate::auth::admit(&account, &parts.method, parts.uri.path())
            .map_err(IntoResponse::into_response)?;
        Ok(Session {
            csrf: csrf_token(&sid, &token),
            auth: Authenticated { account },
        })
    }
}

impl axum::extract::OptionalFromRequestParts<ApiState> for Session {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Option<Session>, std::convert::Infallible> {
        Ok(
            <Session as FromRequestParts<ApiState>>::from_request_parts(parts, state)
                .await
                .ok(),
        )
    }
}

impl Session {
    /// The form's parameters, if its CSRF token is this session's; otherwise a 403 page.
    // The error is the page the handler answers with at once; boxing it would buy nothing.
    #[allow(clippy::result_large_err)]
    pub fn form(&self, body: &Bytes) -> Result<Params, Response> {
        let params = Params::parse(body);
        let sent = params.get("csrf").unwrap_or_default();
        if sent.len() == self.csrf.len()
            && sent
                .bytes()
                .zip(self.csrf.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
        {
            Ok(Params(
                params.0.into_iter().filter(|(k, _)| k != "csrf").collect(),
            ))
        } else {
            Err(Page::new("Forbidden", None)
                .error("This form has expired or did not come from the console; reload the page and try again.")
                .respond(StatusCode::FORBIDDEN))
        }
    }

    pub fn sid(&self) -> &str {
        self.auth.sid()
    }
}

/// An API error as the console shows it: the same code and message as the REST API.
pub(crate) fn api_error_text(error: &ApiError) -> String {
    format!("Error {}: {}", error.code, error.message)
}

/// A page for an API error (404s become the console's not-found page).
pub(crate) fn error_page(session: Option<&Session>, error: ApiError) -> Response {
    let status = error.status;
    let title = if status == StatusCode::NOT_FOUND {
        "Not found"
    } else {
        "Something went wrong"
    };
    Page::new(title, session)
        .error(&api_error_text(&error))
        .respond(status)
}

#[utoipa::path(
    get,
    operation_id = "console_home",
    path = "/console",
    tag = "Console",
    summary = "The console: to the calls page, or to the login page",
    responses((status = 303, description = "Redirect")),
)]
async fn home(session: Option<Session>) -> Response {
    match session {
        Some(_) => Redirect::to("/console/calls").into_response(),
        None => Redirect::to("/console/login").into_response(),
    }
}

fn login_form(message: Option<&str>) -> Page {
    let mut page = Page::new("Log in", None);
    if let Some(message) = message {
        page = page.error(message);
    }
    page.html(
        r#"<form method="post" action="/console/login" class="card narrow">
<p>Log in with your account SID and auth token, or an API key's SID and secret (as for the REST API).</p>
<label for="account_sid">Account SID or API key SID</label>
<input id="account_sid" name="account_sid" autocomplete="username" required pattern="(AC|SK)[0-9a-f]{32}" spellcheck="false">
<label for="auth_token">Auth token or API key secret</label>
<input id="auth_token" name="auth_token" type="password" autocomplete="current-password" required>
<button type="submit">Log in</button>
</form>"#,
    )
}

#[utoipa::path(
    get,
    operation_id = "console_login_page",
    path = "/console/login",
    tag = "Console",
    summary = "The login page",
    responses((status = 200, description = "HTML", content_type = "text/html", body = String)),
)]
async fn login_page() -> Response {
    login_form(None).respond(StatusCode::OK)
}

#[utoipa::path(
    post,
    operation_id = "console_login",
    path = "/console/login",
    tag = "Console",
    summary = "Log in: sets the session cookie, or says the credentials are wrong",
    responses(
        (status = 303, description = "Logged in: to the calls page"),
        (status = 401, description = "Wrong credentials: the login page again, no cookie", content_type = "text/html", body = String),
    ),
)]
async fn login(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    let params = Params::parse(&body);
    let sid = params
        .get("account_sid")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let token = params.get("auth_token").unwrap_or_default().to_owned();
    if state.accounts.authenticate(&sid, &token).is_none() {
        return login_form(Some("Wrong SID or secret.")).respond(StatusCode::UNAUTHORIZED);
    }
    let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{sid}:{token}"));
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let cookie = format!(
        "{COOKIE}={value}; Path=/console; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    );
    let mut response = Redirect::to("/console/calls").into_response();
    if let Ok(cookie) = cookie.parse() {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

#[utoipa::path(
    post,
    operation_id = "console_logout",
    path = "/console/logout",
    tag = "Console",
    summary = "Log out: clears the session cookie",
    responses((status = 303, description = "To the login page")),
)]
async fn logout(session: Session, body: Bytes) -> Response {
    if let Err(refused) = session.form(&body) {
        return refused;
    }
    let mut response = Redirect::to("/console/login").into_response();
    if let Ok(cookie) =
        format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0").parse()
    {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

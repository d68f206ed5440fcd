//! The HTTP client that talks to applications (imperative shell).
//!
//! Behaves like Twilio's: form-encoded POST or query-string GET, `X-Twilio-Signature`,
//! `User-Agent: TwilioProxy/1.1`, `I-Twilio-Idempotency-Token` (the same on every retry of
//! one webhook), connect 5 s / read 15 s / total 15 s / 1 retry unless the URL fragment
//! overrides them, 3xx redirects followed (each hop signed for its own URL), and cookies
//! kept for the duration of a call. Failures are classified into Twilio's codes plus a
//! concrete [`FailureClass`].

use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::{self, HeaderValue};
use reqwest::{redirect, Method, StatusCode, Url};

use dialtone_events::payload::{HttpMethod, WebhookPurpose};

use super::{
    codes, split_overrides, FailureClass, FetchResult, Timeouts, WebhookFailure, WebhookResponse,
};
use crate::signature::{self, SIGNATURE_HEADER};

/// Twilio's webhook user agent.
pub const USER_AGENT: &str = "TwilioProxy/1.1";
/// Header carrying the token that stays the same across retries of one webhook.
pub const IDEMPOTENCY_HEADER: &str = "I-Twilio-Idempotency-Token";

/// Client settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Defaults for URLs without a `#ct=…` fragment.
    pub timeouts: Timeouts,
    /// Redirect hops followed before failing with 11215.
    pub max_redirects: u32,
    /// Larger bodies fail with 11750 (Twilio accepts 64 kB of TwiML).
    pub max_body_bytes: usize,
    pub user_agent: String,
    /// Accept any server certificate (development only; Twilio lets accounts do this).
    pub accept_invalid_certs: bool,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            timeouts: Timeouts::default(),
            max_redirects: 10,
            max_body_bytes: 64 * 1024,
            user_agent: USER_AGENT.to_owned(),
            accept_invalid_certs: false,
        }
    }
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the webhook HTTP client: {0}")]
pub struct WebhookError(#[source] reqwest::Error);

/// One webhook to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    pub purpose: WebhookPurpose,
    /// Absolute URL; may end in a `#ct=…&rt=…` override fragment (never sent or signed).
    pub url: String,
    pub method: HttpMethod,
    /// Form fields (POST) or query parameters (GET), in order.
    pub params: Vec<(String, String)>,
}

/// The process-wide webhook client: one connection pool, shared by all calls.
#[derive(Clone)]
pub struct WebhookClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: WebhookConfig,
    /// reqwest sets connect and read timeouts per client; URLs that override them get
    /// their own client, built once per distinct pair.
    clients: Mutex<HashMap<(Duration, Duration), reqwest::Client>>,
}

impl WebhookClient {
    pub fn new(config: WebhookConfig) -> Result<WebhookClient, WebhookError> {
        let inner = Inner {
            config,
            clients: Mutex::new(HashMap::new()),
        };
        // Build the default client now, so a broken TLS setup shows at startup.
        let defaults = inner.config.timeouts;
        inner.client(defaults.connect, defaults.read)?;
        Ok(WebhookClient {
            inner: Arc::new(inner),
        })
    }

    pub fn config(&self) -> &WebhookConfig {
        &self.inner.config
    }

    /// A session for one call: its own cookie jar, signing with the account's auth token.
    pub fn session(&self, auth_token: impl Into<String>) -> CallSession {
        CallSession {
            client: self.clone(),
            jar: Arc::new(Jar::default()),
            auth_token: auth_token.into(),
        }
    }
}

impl Inner {
    fn client(&self, connect: Duration, read: Duration) -> Result<reqwest::Client, WebhookError> {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(client) = clients.get(&(connect, read)) {
            return Ok(client.clone());
        }
        let client = reqwest::Client::builder()
            .connect_timeout(connect)
            .read_timeout(read)
            // Redirects are followed by hand: each hop is signed and its cookies kept.
            .redirect(redirect::Policy::none())
            .tls_danger_accept_invalid_certs(self.config.accept_invalid_certs)
            .build()
            .map_err(WebhookError)?;
        clients.insert((connect, read), client.clone());
        Ok(client)
    }
}

/// A call's view of the client: cookies persist across the call's webhooks.
#[derive(Clone)]
pub struct CallSession {
    client: WebhookClient,
    jar: Arc<Jar>,
    auth_token: String,
}

impl CallSession {
    /// Sends a TwiML request. Any HTTP status is a response; the caller checks it (and the
    /// content type) with [`super::check_twiml_response`].
    pub async fn fetch(&self, request: &WebhookRequest) -> FetchResult {
        let result = self.send(request).await;
        match &result {
            Ok(response) => tracing::debug!(
                url = %response.final_url,
                status = response.status,
                attempts = response.attempts,
                latency_ms = response.latency.as_millis() as u64,
                "webhook answered"
            ),
            Err(failure) => tracing::info!(url = %request.url, %failure, "webhook failed"),
        }
        result
    }

    /// Delivers a status callback: the body is ignored, a non-2xx status is a failure.
    pub async fn deliver(
        &self,
        request: &WebhookRequest,
    ) -> Result<WebhookResponse, WebhookFailure> {
        let response = self.fetch(request).await?;
        if (200..300).contains(&response.status) {
            Ok(response)
        } else {
            Err(WebhookFailure::new(
                codes::HTTP_RETRIEVAL_FAILURE,
                FailureClass::HttpStatus,
                format!("HTTP {} from {}", response.status, response.final_url),
            ))
        }
    }

    async fn send(&self, request: &WebhookRequest) -> FetchResult {
        let inner = &self.client.inner;
        let (url, overrides) = split_overrides(&request.url);
        let timeouts = inner.config.timeouts.with(&overrides);
        let url = match Url::parse(url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => url,
            _ => {
                return Err(WebhookFailure::new(
                    codes::INVALID_URL,
                    FailureClass::Url,
                    format!("{url:?} is not an absolute http(s) URL"),
                ))
            }
        };
        let client = inner.client(timeouts.connect, timeouts.read).map_err(|e| {
            WebhookFailure::new(
                codes::HTTP_RETRIEVAL_FAILURE,
                FailureClass::Protocol,
                e.to_string(),
            )
        })?;
        let idempotency_token = uuid::Uuid::now_v7().hyphenated().to_string();
        let started = Instant::now();
        let deadline = started + timeouts.total;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let retries_left = attempt <= u32::from(timeouts.retries);
            let result = self
                .attempt(&client, &url, request, &idempotency_token, deadline)
                .await;
            let retry = match &result {
                Ok(response) => {
                    retries_left
                        && ((timeouts.retry_on.status_4xx && (400..500).contains(&response.status))
                            || (timeouts.retry_on.status_5xx
                                && (500..600).contains(&response.status)))
                }
                Err(failure) => {
                    retries_left
                        && ((timeouts.retry_on.connect_failure
                            && failure.code == codes::HTTP_CONNECTION_FAILURE)
                            || (timeouts.retry_on.read_timeout
                                && failure.class == FailureClass::Timeout
                                && failure.code == codes::HTTP_RETRIEVAL_FAILURE))
                }
            };
            if retry && Instant::now() < deadline {
                tracing::debug!(url = %url, attempt, "retrying webhook");
                continue;
            }
            return result.map(|mut response| {
                response.attempts = attempt;
                response.latency = started.elapsed();
                response
            });
        }
    }

    /// One attempt, following redirects.
    async fn attempt(
        &self,
        client: &reqwest::Client,
        url: &Url,
        request: &WebhookRequest,
        idempotency_token: &str,
        deadline: Instant,
    ) -> FetchResult {
        let config = &self.client.inner.config;
        let mut url = url.clone();
        let mut method = request.method;
        // Parameters go with the first hop; a redirect to GET drops them, as browsers do.
        let mut params: &[(String, String)] = &request.params;
        for _hop in 0..=config.max_redirects {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(WebhookFailure::new(
                    codes::HTTP_RETRIEVAL_FAILURE,
                    FailureClass::Timeout,
                    format!("no answer from {url} within the total time limit"),
                ));
            }
            let (builder, signed_url) = match method {
                HttpMethod::Get => {
                    let mut with_query = url.clone();
                    if !params.is_empty() {
                        with_query
                            .query_pairs_mut()
                            .extend_pairs(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                    }
                    let signature =
                        signature::sign::<&str, &str>(&self.auth_token, with_query.as_str(), &[]);
                    (
                        client
                            .request(Method::GET, with_query.clone())
                            .header(SIGNATURE_HEADER, signature),
                        with_query,
                    )
                }
                HttpMethod::Post => {
                    let body = form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(params.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                        .finish();
                    let signature = signature::sign(&self.auth_token, url.as_str(), params);
                    (
                        client
                            .request(Method::POST, url.clone())
                            .header(SIGNATURE_HEADER, signature)
                            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                            .body(body),
                        url.clone(),
                    )
                }
            };
            let mut builder = builder
                .header(header::USER_AGENT, config.user_agent.as_str())
                .header(IDEMPOTENCY_HEADER, idempotency_token)
                .timeout(remaining);
            if let Some(cookies) = self.jar.cookies(&signed_url) {
                builder = builder.header(header::COOKIE, cookies);
            }
            let response = builder
                .send()
                .await
                .map_err(|e| classify(&e, &signed_url))?;
            let mut set_cookies = response.headers().get_all(header::SET_COOKIE).iter();
            self.jar.set_cookies(&mut set_cookies, &signed_url);

            let status = response.status();
            if status.is_redirection() {
                if let Some(location) = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| signed_url.join(l).ok())
                {
                    if status == StatusCode::MOVED_PERMANENTLY
                        || status == StatusCode::FOUND
                        || status == StatusCode::SEE_OTHER
                    {
                        method = HttpMethod::Get;
                        params = &[];
                    }
                    url = location;
                    url.set_fragment(None);
                    continue;
                }
            }
            let content_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_owned);
            let body = read_body(response, config.max_body_bytes, &signed_url).await?;
            return Ok(WebhookResponse {
                status: status.as_u16(),
                content_type,
                body,
                final_url: signed_url.to_string(),
                attempts: 1,
                latency: Duration::ZERO,
            });
        }
        Err(WebhookFailure::new(
            codes::HTTP_TOO_MANY_REDIRECTS,
            FailureClass::TooManyRedirects,
            format!(
                "more than {} redirects starting at {}",
                config.max_redirects, request.url
            ),
        ))
    }
}

async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
    url: &Url,
) -> Result<String, WebhookFailure> {
    let mut body: Vec<u8> = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(WebhookFailure::new(
                        codes::RESPONSE_BODY_TOO_LARGE,
                        FailureClass::BodyTooLarge,
                        format!("the response from {url} is larger than {limit} bytes"),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(error) => return Err(classify(&error, url)),
        }
    }
    Ok(match String::from_utf8(body) {
        Ok(text) => text,
        Err(invalid) => String::from_utf8_lossy(invalid.as_bytes()).into_owned(),
    })
}

/// Finds an error of type `T` in a source chain, looking inside `io::Error`s too (their
/// `source()` skips the wrapped error).
fn find_in_chain<'a, T: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(wrapped) = io.get_ref() {
                if let Some(found) = find_in_chain::<T>(wrapped) {
                    return Some(found);
                }
            }
        }
        current = e.source();
    }
    None
}

/// The whole chain as one line, for messages.
fn describe(error: &(dyn StdError + 'static)) -> String {
    let mut out = error.to_string();
    let mut current = error.source();
    while let Some(e) = current {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        current = e.source();
    }
    out
}

/// Maps a transport error to Twilio's code and Dialtone's failure class.
fn classify(error: &reqwest::Error, url: &Url) -> WebhookFailure {
    let detail = describe(error);
    let message = format!("{url}: {detail}");
    if error.is_dns() {
        return WebhookFailure::new(codes::HTTP_BAD_HOST_NAME, FailureClass::Dns, message);
    }
    if let Some(tls) = find_in_chain::<rustls::Error>(error) {
        let code = match tls {
            rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
                codes::CERTIFICATE_INVALID
            }
            _ => codes::TLS_HANDSHAKE_ERROR,
        };
        return WebhookFailure::new(code, FailureClass::Tls, message);
    }
    if error.is_timeout() {
        // A timeout while connecting is a connection failure (11205); later it is 11200.
        let code = if error.is_connect() {
            codes::HTTP_CONNECTION_FAILURE
        } else {
            codes::HTTP_RETRIEVAL_FAILURE
        };
        return WebhookFailure::new(code, FailureClass::Timeout, message);
    }
    if error.is_connect() {
        return WebhookFailure::new(
            codes::HTTP_CONNECTION_FAILURE,
            FailureClass::Connect,
            message,
        );
    }
    WebhookFailure::new(
        codes::HTTP_PROTOCOL_VIOLATION,
        FailureClass::Protocol,
        message,
    )
}

//! A real HTTP application serving TwiML, recording every request and checking its
//! `X-Twilio-Signature` the way Twilio's validators do.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// One request the app received.
#[derive(Debug, Clone)]
pub struct AppRequest {
    pub received: std::time::Instant,
    pub method: String,
    pub path: String,
    pub params: Vec<(String, String)>,
    /// The signature validated with the account's auth token.
    pub signature_valid: bool,
}

impl AppRequest {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

#[derive(Default)]
struct Inner {
    base: Mutex<String>,
    token: Mutex<String>,
    replies: Mutex<HashMap<String, Reply>>,
    /// Requests still to fail (HTTP 500) per path.
    failures: Mutex<HashMap<String, usize>>,
    requests: Mutex<Vec<AppRequest>>,
}

/// The app. Paths not configured answer 404.
#[derive(Clone)]
pub struct TwimlApp {
    inner: Arc<Inner>,
    pub addr: SocketAddr,
}

impl TwimlApp {
    pub async fn start() -> TwimlApp {
        let inner = Arc::new(Inner::default());
        let router = Router::new().fallback(handle).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        *inner.base.lock().unwrap() = format!("http://{addr}");
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        TwimlApp { inner, addr }
    }

    /// The auth token that signatures are checked against.
    pub fn set_auth_token(&self, token: &str) {
        *self.inner.token.lock().unwrap() = token.to_owned();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Serve TwiML at `path`.
    pub fn twiml(&self, path: &str, twiml: &str) {
        self.reply(path, 200, "text/xml", twiml);
    }

    /// Serve anything at `path`.
    pub fn reply(&self, path: &str, status: u16, content_type: &str, body: &str) {
        self.inner.replies.lock().unwrap().insert(
            path.to_owned(),
            Reply {
                status,
                content_type: content_type.to_owned(),
                body: body.as_bytes().to_vec(),
            },
        );
    }

    /// The next `n` requests to `path` fail with HTTP 500.
    pub fn fail_next(&self, path: &str, n: usize) {
        self.inner
            .failures
            .lock()
            .unwrap()
            .insert(path.to_owned(), n);
    }

    /// Serve bytes (audio) at `path`.
    pub fn bytes(&self, path: &str, content_type: &str, body: Vec<u8>) {
        self.inner.replies.lock().unwrap().insert(
            path.to_owned(),
            Reply {
                status: 200,
                content_type: content_type.to_owned(),
                body,
            },
        );
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<AppRequest> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// Requests to `path`.
    pub fn requests_to(&self, path: &str) -> Vec<AppRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let mut params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let url = format!("{}{}", inner.base.lock().unwrap(), uri);
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let token = inner.token.lock().unwrap().clone();
    let signed_params = if method == Method::GET {
        Vec::new()
    } else {
        params.clone()
    };
    let signature_valid =
        dialtone_voice::signature::validate(&token, &url, &signed_params, signature);
    if method == Method::GET {
        params = uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
    }
    inner.requests.lock().unwrap().push(AppRequest {
        received: std::time::Instant::now(),
        method: method.to_string(),
        path: uri.path().to_owned(),
        params,
        signature_valid,
    });
    if let Some(left) = inner
        .failures
        .lock()
        .unwrap()
        .get_mut(uri.path())
        .filter(|n| **n > 0)
    {
        *left -= 1;
        return (StatusCode::INTERNAL_SERVER_ERROR, "failing on purpose").into_response();
    }
    let reply = inner.replies.lock().unwrap().get(uri.path()).cloned();
    match reply {
        Some(reply) => (
            StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [("content-type", reply.content_type)],
            reply.body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such path").into_response(),
    }
}

//! The webhook client against a real local HTTP server (axum).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;

use dialtone_events::payload::{HttpMethod, WebhookPurpose};
use dialtone_voice::signature;
use dialtone_voice::webhook::{
    check_twiml_response, responded_payload, FailureClass, WebhookClient, WebhookConfig,
    WebhookRequest,
};

const TOKEN: &str = "auth-token-of-the-account";

#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Default)]
struct AppState {
    seen: Mutex<Vec<Seen>>,
    hits: Mutex<HashMap<String, u32>>,
}

async fn handle(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let hits = {
        let mut hits = state.hits.lock().unwrap();
        let n = hits.entry(path.clone()).or_default();
        *n += 1;
        *n
    };
    state.seen.lock().unwrap().push(Seen {
        method,
        uri: uri.clone(),
        headers: headers.clone(),
        body,
    });
    let xml = |body: &str| {
        (
            StatusCode::OK,
            [("content-type", "text/xml")],
            body.to_owned(),
        )
            .into_response()
    };
    let redirect = |status: StatusCode, to: &str| {
        (status, [("location", to.to_owned())], String::new()).into_response()
    };
    match path.as_str() {
        "/twiml" => xml("<Response><Say>ok</Say></Response>"),
        "/html" => (
            StatusCode::OK,
            [("content-type", "text/html")],
            "<html></html>",
        )
            .into_response(),
        "/error" => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        "/flaky" if hits == 1 => (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response(),
        "/flaky" => xml("<Response/>"),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            xml("<Response/>")
        }
        "/found" => redirect(StatusCode::FOUND, "/twiml"),
        "/temporary" => redirect(StatusCode::TEMPORARY_REDIRECT, "/twiml?via=307"),
        "/loop" => redirect(StatusCode::FOUND, "/loop"),
        "/login" => (
            StatusCode::FOUND,
            [
                ("location", "/whoami".to_owned()),
                ("set-cookie", "session=abc123; Path=/".to_owned()),
            ],
            String::new(),
        )
            .into_response(),
        "/whoami" => {
            let cookie = headers
                .get("cookie")
                .and_then(|c| c.to_str().ok())
                .unwrap_or("none")
                .to_owned();
            xml(&format!("<Response><Say>{cookie}</Say></Response>"))
        }
        "/big" => xml(&"x".repeat(70 * 1024)),
        _ => (StatusCode::NOT_FOUND, "no").into_response(),
    }
}

async fn server() -> (SocketAddr, Arc<AppState>) {
    let state = Arc::new(AppState::default());
    let app = Router::new().fallback(handle).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, state)
}

fn client() -> WebhookClient {
    WebhookClient::new(WebhookConfig::default()).unwrap()
}

fn request(url: String, method: HttpMethod) -> WebhookRequest {
    WebhookRequest {
        purpose: WebhookPurpose::Voice,
        url,
        method,
        params: vec![
            (
                "CallSid".into(),
                "CA0123456789abcdef0123456789abcdef".into(),
            ),
            ("From".into(), "+15551230000".into()),
            ("Body".into(), "héllo & goodbye=1".into()),
        ],
    }
}

fn header<'a>(seen: &'a Seen, name: &str) -> &'a str {
    seen.headers
        .get(name)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
}

#[tokio::test]
async fn post_is_form_encoded_and_signed_like_twilio() {
    let (addr, state) = server().await;
    let session = client().session(TOKEN);
    let req = request(
        format!("http://{addr}/twiml?app=1#rc=0&ct=1000"),
        HttpMethod::Post,
    );
    let response = session.fetch(&req).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.content_type.as_deref(), Some("text/xml"));
    assert_eq!(response.body, "<Response><Say>ok</Say></Response>");
    assert_eq!(response.final_url, format!("http://{addr}/twiml?app=1"));
    assert_eq!(response.attempts, 1);
    assert_eq!(check_twiml_response(&response).unwrap(), response.body);

    let seen = state.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.method, Method::POST);
    assert_eq!(
        seen.uri.to_string(),
        "/twiml?app=1",
        "the fragment is never sent"
    );
    assert_eq!(header(&seen, "user-agent"), "TwilioProxy/1.1");
    assert_eq!(
        header(&seen, "content-type"),
        "application/x-www-form-urlencoded"
    );
    assert!(!header(&seen, "i-twilio-idempotency-token").is_empty());
    let form: Vec<(String, String)> = form_urlencoded::parse(&seen.body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(form, req.params);
    // The application validates the signature over the URL it was called on.
    let url = format!("http://{addr}/twiml?app=1");
    assert!(signature::validate(
        TOKEN,
        &url,
        &form,
        header(&seen, "x-twilio-signature")
    ));
    assert!(!signature::validate(
        "wrong",
        &url,
        &form,
        header(&seen, "x-twilio-signature")
    ));

    let payload = responded_payload(7, &Ok(response));
    assert_eq!((payload.request_id, payload.status), (7, Some(200)));
}

#[tokio::test]
async fn get_puts_parameters_in_the_query_and_signs_the_full_url() {
    let (addr, state) = server().await;
    let session = client().session(TOKEN);
    let response = session
        .fetch(&request(
            format!("http://{addr}/twiml?app=1"),
            HttpMethod::Get,
        ))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    let seen = state.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.method, Method::GET);
    assert!(seen.body.is_empty());
    let query: Vec<(String, String)> = form_urlencoded::parse(seen.uri.query().unwrap().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(query[0], ("app".to_owned(), "1".to_owned()));
    assert_eq!(
        query[3],
        ("Body".to_owned(), "héllo & goodbye=1".to_owned())
    );
    let url = format!("http://{addr}{}", seen.uri);
    assert!(signature::validate::<&str, &str>(
        TOKEN,
        &url,
        &[],
        header(&seen, "x-twilio-signature")
    ));
}

#[tokio::test]
async fn redirects_are_followed_like_a_browser() {
    let (addr, state) = server().await;
    let session = client().session(TOKEN);
    // 302: POST becomes GET without the parameters.
    let response = session
        .fetch(&request(format!("http://{addr}/found"), HttpMethod::Post))
        .await
        .unwrap();
    assert_eq!(response.final_url, format!("http://{addr}/twiml"));
    assert_eq!(response.body, "<Response><Say>ok</Say></Response>");
    // 307: the POST and its body are repeated, signed for the new URL.
    let req = request(format!("http://{addr}/temporary"), HttpMethod::Post);
    let response = session.fetch(&req).await.unwrap();
    assert_eq!(response.final_url, format!("http://{addr}/twiml?via=307"));
    let seen = state.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[1].method, Method::GET);
    assert!(seen[1].body.is_empty());
    assert_eq!(seen[3].method, Method::POST);
    let form: Vec<(String, String)> = form_urlencoded::parse(&seen[3].body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(form, req.params);
    assert!(signature::validate(
        TOKEN,
        &response.final_url,
        &form,
        header(&seen[3], "x-twilio-signature")
    ));
    // The same idempotency token across the hops of one webhook.
    assert_eq!(
        header(&seen[2], "i-twilio-idempotency-token"),
        header(&seen[3], "i-twilio-idempotency-token")
    );

    let failure = session
        .fetch(&request(format!("http://{addr}/loop"), HttpMethod::Post))
        .await
        .unwrap_err();
    assert_eq!(
        (failure.code, failure.class),
        (11215, FailureClass::TooManyRedirects)
    );
}

#[tokio::test]
async fn cookies_last_for_the_call() {
    let (addr, _state) = server().await;
    let client = client();
    let session = client.session(TOKEN);
    let response = session
        .fetch(&request(format!("http://{addr}/login"), HttpMethod::Post))
        .await
        .unwrap();
    assert_eq!(
        response.body,
        "<Response><Say>session=abc123</Say></Response>"
    );
    let again = session
        .fetch(&request(format!("http://{addr}/whoami"), HttpMethod::Post))
        .await
        .unwrap();
    assert_eq!(again.body, "<Response><Say>session=abc123</Say></Response>");
    // Another call does not see them.
    let other = client
        .session(TOKEN)
        .fetch(&request(format!("http://{addr}/whoami"), HttpMethod::Post))
        .await
        .unwrap();
    assert_eq!(other.body, "<Response><Say>none</Say></Response>");
}

#[tokio::test]
async fn statuses_and_content_types_are_classified() {
    let (addr, _state) = server().await;
    let session = client().session(TOKEN);
    let error = session
        .fetch(&request(format!("http://{addr}/error"), HttpMethod::Post))
        .await
        .unwrap();
    assert_eq!(error.status, 500);
    assert_eq!(error.attempts, 1, "5xx is not retried by default");
    let failure = check_twiml_response(&error).unwrap_err();
    assert_eq!(
        (failure.code, failure.class),
        (11200, FailureClass::HttpStatus)
    );
    let html = session
        .fetch(&request(format!("http://{addr}/html"), HttpMethod::Post))
        .await
        .unwrap();
    let failure = check_twiml_response(&html).unwrap_err();
    assert_eq!(
        (failure.code, failure.class),
        (12300, FailureClass::ContentType)
    );
    // Status callbacks: the body is ignored, a non-2xx status is a failure.
    let mut callback = request(format!("http://{addr}/error"), HttpMethod::Post);
    callback.purpose = WebhookPurpose::StatusCallback;
    let failure = session.deliver(&callback).await.unwrap_err();
    assert_eq!(
        (failure.code, failure.class),
        (11200, FailureClass::HttpStatus)
    );
    callback.url = format!("http://{addr}/html");
    assert_eq!(session.deliver(&callback).await.unwrap().status, 200);

    let failure = session
        .fetch(&request(format!("http://{addr}/big"), HttpMethod::Post))
        .await
        .unwrap_err();
    assert_eq!(
        (failure.code, failure.class),
        (11750, FailureClass::BodyTooLarge)
    );
    let failure = session
        .fetch(&request("ftp://example.com/x".into(), HttpMethod::Post))
        .await
        .unwrap_err();
    assert_eq!((failure.code, failure.class), (11100, FailureClass::Url));
}

#[tokio::test]
async fn retries_follow_the_fragment_policy_with_one_idempotency_token() {
    let (addr, state) = server().await;
    let session = client().session(TOKEN);
    let response = session
        .fetch(&request(
            format!("http://{addr}/flaky#rp=5xx&rc=2"),
            HttpMethod::Post,
        ))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.attempts, 2);
    let seen = state.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let token = header(&seen[0], "i-twilio-idempotency-token");
    assert_eq!(token, header(&seen[1], "i-twilio-idempotency-token"));
    // A new webhook gets a new token.
    session
        .fetch(&request(format!("http://{addr}/twiml"), HttpMethod::Post))
        .await
        .unwrap();
    let seen = state.seen.lock().unwrap().clone();
    assert_ne!(token, header(&seen[2], "i-twilio-idempotency-token"));
}

#[tokio::test]
async fn transport_failures_get_concrete_classes() {
    let (addr, _state) = server().await;
    let session = client().session(TOKEN);

    // Read timeout (the server answers after 3 s).
    let started = std::time::Instant::now();
    let failure = session
        .fetch(&request(
            format!("http://{addr}/slow#rt=300"),
            HttpMethod::Post,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (failure.code, failure.class),
        (11200, FailureClass::Timeout),
        "{failure}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // Total time.
    let failure = session
        .fetch(&request(
            format!("http://{addr}/slow#tt=300"),
            HttpMethod::Post,
        ))
        .await
        .unwrap_err();
    assert_eq!(failure.class, FailureClass::Timeout, "{failure}");

    // Connection refused: a port nobody listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let failure = session
        .fetch(&request(format!("http://{closed}/x"), HttpMethod::Post))
        .await
        .unwrap_err();
    assert_eq!(
        (failure.code, failure.class),
        (11205, FailureClass::Connect),
        "{failure}"
    );

    // A name that cannot resolve.
    let failure = session
        .fetch(&request(
            "http://no-such-host.invalid/voice".into(),
            HttpMethod::Post,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (failure.code, failure.class),
        (11210, FailureClass::Dns),
        "{failure}"
    );

    // TLS to a plain-HTTP server: the handshake fails.
    let failure = session
        .fetch(&request(format!("https://{addr}/twiml"), HttpMethod::Post))
        .await
        .unwrap_err();
    assert_eq!(
        (failure.code, failure.class),
        (11220, FailureClass::Tls),
        "{failure}"
    );
}

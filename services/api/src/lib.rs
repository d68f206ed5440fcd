//! Dialtone's REST API (axum).
//!
//! - Twilio-compatible 2010-04-01 JSON under `/2010-04-01/Accounts/{AccountSid}/…`:
//!   IncomingPhoneNumbers (CRUD), Calls (list, fetch; create and update through a
//!   [`CallController`], see [`control`]), Recordings (list, fetch, `.wav`
//!   media, delete; media needs [`ApiState::with_data_dir`]), Usage Records. HTTP Basic auth with
//!   `AccountSid:AuthToken`, Twilio error bodies, paging and RFC 2822 dates.
//! - Native: `GET /v1/Accounts/{AccountSid}/Calls/{CallSid}/Events` (a call's whole history
//!   as CloudEvents), `GET /healthz`, `GET /metrics`.
//!
//! Writes are events: the handler appends to the log, then waits until the projections have
//! applied them (read-your-writes) before answering, so a GET right after a POST sees it.
//!
//! ```no_run
//! # async fn example(
//! #     log: std::sync::Arc<dyn dialtone_events::EventLog>,
//! #     runner: &dialtone_projections::ProjectionRunner,
//! #     accounts: dialtone_projections::AccountDirectory,
//! #     numbers: dialtone_projections::NumberDirectory,
//! # ) {
//! let state = dialtone_api::ApiState::new(
//!     log,
//!     dialtone_projections::ReadModels::new("/var/lib/dialtone/readmodels.db"),
//!     accounts,
//!     numbers,
//!     runner.handle(),
//!     "node-1",
//! );
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await.unwrap();
//! axum::serve(listener, dialtone_api::router(state)).await.unwrap();
//! # }
//! ```

mod accounts;
mod applications;
mod as_of;
mod auth;
mod available_numbers;
mod balance;
mod calls;
mod calls_write;
mod conferences;
mod console;
pub mod control;
mod error;
mod events_stream;
mod format;
mod native;
mod numbers;
pub mod openapi;
mod paging;
mod params;
mod rates;
mod recordings;
mod sinks;
mod usage;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use dialtone_events::{EventLog, Position};
use dialtone_projections::{
    AccountDirectory, NumberDirectory, RateTable, ReadModels, ReplicaStatus, RunnerHandle,
};
use dialtone_streams::EventHub;
use metrics_exporter_prometheus::PrometheusHandle;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::operator_token;
pub use auth::Authenticated;
pub use balance::{minor_digits, parse_amount};
pub use control::{
    CallAction, CallController, ControlError, CreateCall, ParticipantAction, UpdateCall,
};
pub use error::ApiError;

/// The Twilio API version this surface reproduces.
pub const API_VERSION: &str = "2010-04-01";

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub log: Arc<dyn EventLog>,
    pub read_models: ReadModels,
    pub accounts: AccountDirectory,
    pub numbers: NumberDirectory,
    /// Progress of the projection runner, for read-your-writes.
    pub projections: RunnerHandle,
    pub node_id: Arc<str>,
    /// Renders `/metrics`; `None` answers 404 there.
    pub metrics: Option<PrometheusHandle>,
    /// How long a write waits for the projections before answering anyway.
    pub write_wait: Duration,
    /// `price_unit` of calls not rated yet (the configured rate table's currency).
    pub default_currency: Arc<str>,
    /// The configured prices, for replays of billing (`AsOf`).
    pub rates: Arc<RateTable>,
    /// The data dir: recording paths in the read model are relative to it. `None` answers
    /// 503 to media downloads and to deleting recordings that have a file.
    pub data_dir: Option<Arc<Path>>,
    /// Public base URL of this API (`https://dialtone.example.com`), for absolute
    /// `media_url`s; `None` gives paths.
    pub public_url: Option<Arc<str>>,
    /// Places and steers calls (`POST …/Calls.json`, `POST …/Calls/{Sid}.json`); `None`
    /// answers 501 there.
    pub call_controller: Option<Arc<dyn CallController>>,
    /// Fans the log out to `GET /v1/Accounts/{AC}/Events`; `None` answers 503 there.
    pub event_hub: Option<EventHub>,
    /// Interval of the event stream's heartbeat comments (and WebSocket pings).
    pub stream_heartbeat: Duration,
    /// The role groups of this process, for `/healthz` (`all` when not told).
    pub roles: Arc<str>,
    /// The cluster's secret, from which accounts' auth tokens derive: creating a subaccount
    /// needs it (`None` answers 503 there).
    pub node_secret: Option<Arc<Vec<u8>>>,
    /// Serialises number provisioning on this node, so two requests for the same number
    /// cannot both pass the availability check.
    number_writes: Arc<tokio::sync::Mutex<()>>,
    /// Which numbers accounts may buy.
    pub number_policy: NumberPolicy,
    /// The shipper of the read models to PostgreSQL, when this node runs one: `/healthz`
    /// fails while it cannot reach the database.
    pub read_model_replica: Option<tokio::sync::watch::Receiver<ReplicaStatus>>,
}

/// Which numbers accounts may buy, and when a released one is sold again.
#[derive(Debug, Clone, Copy)]
pub struct NumberPolicy {
    /// Only numbers of the inventory (else any E.164 number too).
    pub inventory_only: bool,
    /// How long a released inventory number ages.
    pub release_aging: time::Duration,
}

impl Default for NumberPolicy {
    fn default() -> NumberPolicy {
        NumberPolicy {
            inventory_only: false,
            release_aging: time::Duration::days(30),
        }
    }
}

impl ApiState {
    pub fn new(
        log: Arc<dyn EventLog>,
        read_models: ReadModels,
        accounts: AccountDirectory,
        numbers: NumberDirectory,
        projections: RunnerHandle,
        node_id: impl Into<String>,
    ) -> ApiState {
        ApiState {
            log,
            read_models,
            accounts,
            numbers,
            projections,
            node_id: Arc::from(node_id.into()),
            metrics: None,
            write_wait: Duration::from_secs(5),
            default_currency: Arc::from("USD"),
            rates: Arc::new(RateTable::default()),
            data_dir: None,
            public_url: None,
            call_controller: None,
            event_hub: None,
            stream_heartbeat: Duration::from_secs(15),
            roles: Arc::from("all"),
            node_secret: None,
            number_writes: Arc::new(tokio::sync::Mutex::new(())),
            number_policy: NumberPolicy::default(),
            read_model_replica: None,
        }
    }

    pub fn with_number_policy(mut self, policy: NumberPolicy) -> ApiState {
        self.number_policy = policy;
        self
    }

    pub fn with_metrics(mut self, handle: PrometheusHandle) -> ApiState {
        self.metrics = Some(handle);
        self
    }

    /// The configured prices: sets the default currency too.
    pub fn with_rate_table(mut self, rates: RateTable) -> ApiState {
        self.default_currency = Arc::from(rates.currency.to_ascii_uppercase());
        self.rates = Arc::new(rates);
        self
    }

    pub fn with_default_currency(mut self, currency: &str) -> ApiState {
        self.default_currency = Arc::from(currency.to_ascii_uppercase());
        self
    }

    /// Where recordings (and the rest of the node's data) live.
    pub fn with_data_dir(mut self, data_dir: impl Into<PathBuf>) -> ApiState {
        self.data_dir = Some(Arc::from(data_dir.into()));
        self
    }

    /// The public base URL clients reach this API at, for absolute `media_url`s.
    pub fn with_public_url(mut self, url: &str) -> ApiState {
        self.public_url = Some(Arc::from(url.trim_end_matches('/')));
        self
    }

    /// Enables outbound calls and live call control through `controller`.
    pub fn with_call_controller(mut self, controller: Arc<dyn CallController>) -> ApiState {
        self.call_controller = Some(controller);
        self
    }

    /// Enables the live event stream (`GET /v1/Accounts/{AC}/Events`).
    pub fn with_event_hub(mut self, hub: EventHub) -> ApiState {
        self.event_hub = Some(hub);
        self
    }

    pub fn with_stream_heartbeat(mut self, interval: Duration) -> ApiState {
        self.stream_heartbeat = interval;
        self
    }

    /// Reports the PostgreSQL read-model replica on `/healthz`.
    pub fn with_read_model_replica(
        mut self,
        status: tokio::sync::watch::Receiver<ReplicaStatus>,
    ) -> ApiState {
        self.read_model_replica = Some(status);
        self
    }

    /// Enables subaccount creation (tokens derive from the cluster's secret).
    pub fn with_node_secret(mut self, secret: Arc<Vec<u8>>) -> ApiState {
        self.node_secret = Some(secret);
        self
    }

    /// The role groups of this process, as `/healthz` reports them.
    pub fn with_roles(mut self, roles: &str) -> ApiState {
        self.roles = Arc::from(roles);
        self
    }

    pub fn with_write_wait(mut self, wait: Duration) -> ApiState {
        self.write_wait = wait;
        self
    }

    /// Waits until the projections applied `positions`; false (logged) if they did not within
    /// [`ApiState::write_wait`]. The write itself is durable either way.
    pub(crate) async fn await_projections(&self, positions: &[Position]) -> bool {
        match tokio::time::timeout(self.write_wait, self.projections.wait_for(positions)).await {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::error!(%error, "projections stopped; answering without read-your-writes");
                false
            }
            Err(_) => {
                tracing::warn!(
                    wait = ?self.write_wait,
                    "projections lag behind a write; answering without read-your-writes"
                );
                false
            }
        }
    }
}

/// The API's routes and their OpenAPI description, from the same registrations. Calls
/// create/update (`POST …/Calls.json`, `POST …/Calls/{Sid}.json`) go through
/// [`ApiState::call_controller`] and answer 501 without one.
pub fn routes() -> (Router<ApiState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(native::healthz))
        .routes(routes!(native::metrics))
        .routes(routes!(openapi_json))
        .routes(routes!(accounts::list, accounts::create))
        .routes(routes!(accounts::fetch, accounts::update))
        .routes(routes!(accounts::list_keys, accounts::create_key))
        .routes(routes!(
            accounts::fetch_key,
            accounts::update_key,
            accounts::delete_key
        ))
        .routes(routes!(applications::list, applications::create))
        .routes(routes!(
            applications::fetch,
            applications::update,
            applications::delete
        ))
        .routes(routes!(numbers::list, numbers::create))
        .routes(routes!(available_numbers::search))
        .routes(routes!(available_numbers::import))
        .routes(routes!(numbers::fetch, numbers::update, numbers::release))
        .routes(routes!(calls::list, calls_write::create))
        .routes(routes!(calls::fetch, calls_write::update))
        .routes(routes!(recordings::list_for_call))
        .routes(routes!(
            recordings::fetch_for_call,
            recordings::delete_for_call
        ))
        .routes(routes!(recordings::list))
        .routes(routes!(recordings::fetch, recordings::delete))
        .routes(routes!(conferences::list))
        .routes(routes!(conferences::fetch, conferences::update))
        .routes(routes!(conferences::list_participants))
        .routes(routes!(
            conferences::fetch_participant,
            conferences::update_participant,
            conferences::delete_participant
        ))
        .routes(routes!(conferences::list_recordings))
        .routes(routes!(balance::fetch))
        .routes(routes!(balance::credit))
        .routes(routes!(balance::plan))
        .routes(routes!(usage::all_time))
        .routes(routes!(usage::all_time_csv))
        .routes(routes!(usage::by_period))
        .routes(routes!(native::call_events))
        .routes(routes!(events_stream::stream))
        .routes(routes!(rates::list, rates::create))
        .routes(routes!(sinks::list_sinks, sinks::create_sink))
        .routes(routes!(
            sinks::fetch_sink,
            sinks::update_sink,
            sinks::delete_sink
        ))
        .routes(routes!(
            sinks::list_subscriptions,
            sinks::create_subscription
        ))
        .routes(routes!(
            sinks::fetch_subscription,
            sinks::update_subscription,
            sinks::delete_subscription
        ))
        .routes(routes!(sinks::list_subscribed_events))
        .merge(console::routes())
        .split_for_parts()
}

/// The OpenAPI document (`GET /openapi.json`), as served and as kept in docs/openapi.json.
pub fn openapi_document() -> String {
    let (_, document) = routes();
    document.to_pretty_json().unwrap_or_default()
}

#[utoipa::path(
    operation_id = "openapi_json",
    get,
    path = "/openapi.json",
    tag = "Operations",
    summary = "This document: OpenAPI 3.1",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)),
)]
async fn openapi_json() -> Response {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let body = DOCUMENT.get_or_init(openapi_document).clone();
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// The API's router.
pub fn router(state: ApiState) -> Router {
    let (routes, _) = routes();
    routes
        .fallback(error::not_found_fallback)
        .method_not_allowed_fallback(error::method_not_allowed_fallback)
        .layer(middleware::from_fn(track_requests))
        .with_state(state)
}

/// What a process without the `api` role serves on its HTTP address: `/healthz` and
/// `/metrics` (for its load balancer and Prometheus); anything else is 404.
pub fn operations_router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", axum::routing::get(native::healthz))
        .route("/metrics", axum::routing::get(native::metrics))
        .fallback(error::not_found_fallback)
        .layer(middleware::from_fn(track_requests))
        .with_state(state)
}

/// Counts requests by route template and status, times them, and names the route that
/// answered in `X-Dialtone-Route`.
async fn track_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let mut response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    // Which route answered: for operators reading logs and for the OpenAPI route test.
    if route != "unmatched" {
        if let Ok(value) = axum::http::HeaderValue::from_str(&route) {
            response.headers_mut().insert("x-dialtone-route", value);
        }
    }
    metrics::counter!(
        "dialtone_api_requests_total",
        "route" => route.clone(),
        "method" => method,
        "status" => status
    )
    .increment(1);
    metrics::histogram!("dialtone_api_request_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

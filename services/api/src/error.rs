//! Twilio's error body: `{"code","message","more_info","status"}`.

use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dialtone_events::LogError;
use dialtone_projections::ProjectionError;
use serde_json::json;

/// Twilio error codes used here.
pub mod codes {
    /// Invalid or missing parameter (generic).
    pub const INVALID_PARAMETER: u32 = 20001;
    /// Authentication failed.
    pub const AUTHENTICATE: u32 = 20003;
    /// Method not allowed.
    pub const METHOD_NOT_ALLOWED: u32 = 20004;
    /// Account not active (suspended or closed).
    pub const ACCOUNT_NOT_ACTIVE: u32 = 20005;
    /// Resource not found.
    pub const NOT_FOUND: u32 = 20404;
    /// Conflicting concurrent modification.
    pub const CONFLICT: u32 = 20409;
    /// Internal error.
    pub const INTERNAL: u32 = 20500;
    /// Not implemented yet.
    pub const NOT_IMPLEMENTED: u32 = 20501;
    /// Service unavailable.
    pub const UNAVAILABLE: u32 = 20503;
    /// Invalid URL.
    pub const INVALID_URL: u32 = 21205;
    /// The ApplicationSid is not an application of the account.
    pub const INVALID_APPLICATION: u32 = 21218;
    /// Invalid phone number.
    pub const INVALID_PHONE_NUMBER: u32 = 21421;
    /// Phone number not available (already provisioned).
    pub const NUMBER_UNAVAILABLE: u32 = 21422;
    /// No phone numbers found in the area code.
    pub const NO_NUMBERS_IN_AREA_CODE: u32 = 21452;
}

/// An API error rendered as Twilio's JSON error body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: u32,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: u32, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: u32, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::bad_request(codes::INVALID_PARAMETER, message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            codes::AUTHENTICATE,
            "Authenticate",
        )
    }

    /// 20005: the account is suspended (writes) or closed (everything).
    pub fn account_not_active(status: &str) -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            codes::ACCOUNT_NOT_ACTIVE,
            format!("Account not active: the account is {status}"),
        )
    }

    /// Twilio's wording: "The requested resource {path} was not found".
    pub fn not_found(path: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            codes::NOT_FOUND,
            format!("The requested resource {path} was not found"),
        )
    }

    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL,
            "Internal error; the event log and read models are unchanged by this request",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "code": self.code,
            "message": self.message,
            "more_info": format!("https://www.twilio.com/docs/errors/{}", self.code),
            "status": self.status.as_u16(),
        });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Dialtone API\""),
            );
        }
        response
    }
}

impl From<ProjectionError> for ApiError {
    fn from(error: ProjectionError) -> ApiError {
        tracing::error!(%error, "read-model query failed");
        ApiError::internal()
    }
}

impl From<LogError> for ApiError {
    fn from(error: LogError) -> ApiError {
        match error {
            LogError::VersionConflict { .. } => ApiError::new(
                StatusCode::CONFLICT,
                codes::CONFLICT,
                "The resource was modified concurrently; retry the request",
            ),
            LogError::Closed => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::UNAVAILABLE,
                "The event log is shutting down",
            ),
            error => {
                tracing::error!(%error, "event log operation failed");
                ApiError::internal()
            }
        }
    }
}

pub(crate) async fn not_found_fallback(uri: Uri) -> ApiError {
    ApiError::not_found(uri.path())
}

pub(crate) async fn method_not_allowed_fallback() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        codes::METHOD_NOT_ALLOWED,
        "Method not allowed",
    )
}

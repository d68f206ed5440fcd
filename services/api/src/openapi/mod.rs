//! The OpenAPI 3.1 description of the API, generated from the handlers: each handler's
//! `#[utoipa::path]` names its route, parameters, request body and responses, and the
//! router is built from the same registrations ([`crate::router`]), so every route is in the
//! document by construction. Served at `GET /openapi.json`; `docs/openapi.json` is the same
//! document, kept identical by a test.

pub mod schemas;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document's fixed parts; the paths come from the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Dialtone",
        description = "A self-hosted, event-sourced programmable-voice platform. The Twilio-compatible 2010-04-01 API (JSON, Basic auth with the account SID and auth token, Twilio's paging and error bodies) and Dialtone's native /v1 API: call histories, the live event stream, Event Streams' sinks and subscriptions, rate tables. Where Dialtone differs from Twilio: docs/voice.md.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BasicAuth),
    tags(
        (name = "IncomingPhoneNumbers", description = "Numbers and the application each points at"),
        (name = "AvailablePhoneNumbers", description = "The number inventory: searching it, and loading it (operator)"),
        (name = "Calls", description = "Calls: list, fetch (also AsOf), create, live control"),
        (name = "Recordings", description = "Recordings and their audio"),
        (name = "Conferences", description = "Conferences and their participants"),
        (name = "Usage", description = "Usage records (JSON, CSV, AsOf)"),
        (name = "Events", description = "The event log: a call's history, the live stream"),
        (name = "Sinks", description = "Event Streams: webhook sinks and subscriptions"),
        (name = "Billing", description = "Rate tables"),
        (name = "Operations", description = "Health, metrics, this document"),
        (name = "Console", description = "The web console (HTML; a session cookie set by logging in)"),
    ),
)]
pub struct ApiDoc;

/// Twilio's security scheme: HTTP Basic with `AccountSid:AuthToken`.
struct BasicAuth;

impl Modify for BasicAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "accountSid_authToken",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
        // Operator endpoints: `Authorization: Bearer <dialtone numbers operator-token>`.
        components.add_security_scheme(
            "operatorToken",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

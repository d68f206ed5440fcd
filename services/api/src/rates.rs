//! Rate tables: `POST /v1/Accounts/{AC}/RateTables` publishes an effective-dated table of
//! per-minute prices for the account (a `dialtone.rate.published` event on a new `RT…`
//! stream); `GET` lists the tables that price the account: its own and the operator's
//! (published with `dialtone billing rates publish`). Prices are exact decimals, kept as
//! integer micro-units.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use dialtone_events::envelope::parse_time;
use dialtone_events::payload::{RatePrice, RatePublished};
use dialtone_events::sid::RateSid;
use dialtone_events::{ExpectedVersion, NewEvent};
use dialtone_projections::billing::{
    format_micros, load_published, parse_currency, rate_price, PublishedRates,
};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::params::Params;
use crate::ApiState;

/// A `Price` parameter: `category:decimal` or `category:+prefix:decimal`
/// (`calls-outbound:+44:0.0500`).
pub(crate) fn parse_price(value: &str) -> Result<RatePrice, String> {
    let parts: Vec<&str> = value.split(':').map(str::trim).collect();
    match parts.as_slice() {
        [category, amount] => rate_price(category, None, amount),
        [category, prefix, amount] => rate_price(category, Some(prefix), amount),
        _ => Err(format!(
            "{value:?} is not category:price or category:+prefix:price"
        )),
    }
}

fn table_json(rates: &PublishedRates) -> Value {
    let prices: Vec<Value> = rates
        .table
        .to_prices()
        .iter()
        .map(|p| {
            json!({
                "category": p.category,
                "prefix": p.prefix,
                "per_minute": format_micros(p.per_minute_micros, 6),
                "per_minute_micros": p.per_minute_micros,
            })
        })
        .collect();
    let scope = if rates.account_sid.is_empty() {
        "operator"
    } else {
        "account"
    };
    json!({
        "sid": rates.rate_sid,
        "version": rates.sequence,
        "account_sid": (!rates.account_sid.is_empty()).then_some(&rates.account_sid),
        "scope": scope,
        "effective_from": dialtone_events::envelope::format_time(rates.effective_from),
        "currency": rates.table.currency,
        "prices": prices,
        "date_created": dialtone_events::envelope::format_time(rates.published_at),
    })
}

#[utoipa::path(
    operation_id = "rates_create",
    post,
    path = "/v1/Accounts/{account_sid}/RateTables",
    tag = "Billing",
    summary = "Publish an effective-dated rate table for the account",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
    ),
    request_body(content = crate::openapi::schemas::RateTableForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 201, description = "OK", body = crate::openapi::schemas::RateTable),
        (status = 400, description = "Invalid parameter (error body names it)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn create(
    State(state): State<ApiState>,
    auth: Authenticated,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = Params::parse(&body);
    let effective_from = match params.non_empty("EffectiveFrom") {
        Some(value) => parse_time(value).map_err(|_| {
            ApiError::invalid(format!(
                "EffectiveFrom {value:?} is not an RFC 3339 time such as 2027-01-01T00:00:00Z"
            ))
        })?,
        None => OffsetDateTime::now_utc(),
    };
    let currency = match params.non_empty("Currency") {
        Some(value) => {
            parse_currency(value).map_err(|e| ApiError::invalid(format!("Currency: {e}")))?
        }
        None => state.rates.currency.clone(),
    };
    let prices = params
        .0
        .iter()
        .filter(|(k, _)| k == "Price")
        .map(|(_, v)| parse_price(v).map_err(|e| ApiError::invalid(format!("Price: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    if prices.is_empty() {
        return Err(ApiError::invalid(
            "Missing required parameter Price (category:price, e.g. calls-outbound:0.0140)",
        ));
    }
    let sid = RateSid::generate();
    let appended = state
        .log
        .append(
            sid.as_str(),
            ExpectedVersion::NoStream,
            vec![NewEvent::new(
                auth.sid(),
                RatePublished {
                    effective_from,
                    currency,
                    prices,
                },
            )],
        )
        .await?;
    state.await_projections(&appended.positions).await;
    let published = state.read_models.read(load_published).await?;
    let table = published
        .iter()
        .find(|p| p.rate_sid == sid.as_str())
        .ok_or_else(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(table_json(table))).into_response())
}

#[utoipa::path(
    operation_id = "rates_list",
    get,
    path = "/v1/Accounts/{account_sid}/RateTables",
    tag = "Billing",
    summary = "The rate tables that price the account",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
    ),
    responses(
        (status = 200, description = "OK", body = crate::openapi::schemas::RateTableList),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    let published = state.read_models.read(load_published).await?;
    let tables: Vec<Value> = published
        .iter()
        .filter(|p| p.account_sid.is_empty() || p.account_sid == auth.sid())
        .map(table_json)
        .collect();
    Ok(Json(json!({ "rate_tables": tables })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_parse_exactly_and_refuse_garbage() {
        assert_eq!(
            parse_price("calls-outbound:+44:0.05").unwrap(),
            RatePrice {
                category: "calls-outbound".into(),
                per_minute_micros: 50_000,
                prefix: Some("+44".into()),
            }
        );
        assert_eq!(
            parse_price("calls-inbound:0.0085")
                .unwrap()
                .per_minute_micros,
            8_500
        );
        for bad in [
            "calls",
            "Calls:1",
            "calls:44:1",
            "calls:+4a:1",
            "calls:0.1234567",
            "calls:-1",
            "a:b:c:d",
        ] {
            assert!(parse_price(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_currency("eur").unwrap(), "EUR");
        assert!(parse_currency("EURO").is_err());
    }
}

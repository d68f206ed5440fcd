//! Paying per minute at the API: `GET …/Balance.json` (Twilio's Balance: the operator's
//! credits less the account's charges), and the operator's endpoints that record a payment
//! or credit (`POST /v1/Accounts/{AC}/Credits`) and set how an account pays
//! (`POST /v1/Accounts/{AC}/BillingPlan`). Money is integer micro-units throughout; amounts
//! given must be exact in the currency's minor unit (cents for USD).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dialtone_events::payload::{AccountBillingPlanSet, AccountCredited};
use dialtone_events::{ExpectedVersion, NewEvent};
use dialtone_projections::billing::balance::{balance_of, AccountBalance, POSTPAID, PREPAID};
use dialtone_projections::billing::format_micros;
use serde_json::{json, Value};

use crate::auth::authorize_operator;
use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::params::Params;
use crate::{ApiState, API_VERSION};

/// Digits after the decimal point of a currency's minor unit (ISO 4217).
pub fn minor_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// An amount in `currency` as micro-units: an exact decimal with at most the currency's
/// minor digits, optionally negative (`-5.00` takes money back). Pure.
pub fn parse_amount(value: &str, currency: &str) -> Result<i64, String> {
    let value = value.trim();
    let (negative, digits) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let places = digits.split_once('.').map(|(_, f)| f.len()).unwrap_or(0);
    let allowed = minor_digits(currency);
    let micros = dialtone_projections::billing::parse_micros(digits)
        .filter(|_| places <= allowed as usize)
        .ok_or_else(|| {
            format!(
                "{value:?} is not an amount in {currency} (an exact decimal with at most {allowed} decimal places)"
            )
        })?;
    Ok(if negative { -micros } else { micros })
}

fn balance_json(balance: &AccountBalance) -> Value {
    json!({
        "account_sid": balance.account_sid,
        "balance": format_micros(balance.balance_micros(), 5),
        "currency": balance.currency,
    })
}

async fn read_balance(state: &ApiState, account: &str) -> Result<AccountBalance, ApiError> {
    let sid = account.to_owned();
    let found = state.read_models.read(move |c| balance_of(c, &sid)).await?;
    Ok(found.unwrap_or_else(|| AccountBalance::new(account, &state.default_currency)))
}

#[utoipa::path(
    operation_id = "balance_fetch",
    get,
    path = "/2010-04-01/Accounts/{account_sid}/Balance.json",
    tag = "Billing",
    summary = "The account's balance: the operator's credits less its charges (calls, number rentals)",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
    ),
    responses(
        (status = 200, description = "OK", body = crate::openapi::schemas::Balance),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn fetch(
    State(state): State<ApiState>,
    auth: Authenticated,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(balance_json(&read_balance(&state, auth.sid()).await?)))
}

/// An operator request about `account`: authorized, for a known account (else 404); its
/// form and the account's currency.
async fn operator_request(
    state: &ApiState,
    account: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Params, String), ApiError> {
    authorize_operator(state, headers)?;
    if state.accounts.get(account).is_none() {
        return Err(ApiError::not_found(&format!("/v1/Accounts/{account}")));
    }
    let currency = read_balance(state, account).await?.currency;
    Ok((Params::parse(body), currency))
}

async fn append_and_read(
    state: &ApiState,
    account: &str,
    event: NewEvent,
) -> Result<Json<Value>, ApiError> {
    let appended = state
        .log
        .append(account, ExpectedVersion::Any, vec![event])
        .await?;
    state.await_projections(&appended.positions).await;
    let balance = read_balance(state, account).await?;
    let mut body = balance_json(&balance);
    body["plan"] = json!(balance.plan);
    body["credit_limit"] = json!(balance
        .credit_limit_micros
        .map(|limit| format_micros(limit, 5)));
    body["uri"] = json!(format!("/{API_VERSION}/Accounts/{account}/Balance.json"));
    Ok(Json(body))
}

#[utoipa::path(
    operation_id = "balance_credit",
    post,
    path = "/v1/Accounts/{account_sid}/Credits",
    tag = "Billing",
    summary = "Operator: record a payment or credit (negative: take money back)",
    params(("account_sid" = String, Path, description = "The account (AC…)")),
    request_body(content = crate::openapi::schemas::CreditForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The balance afterwards", body = Object),
        (status = 400, description = "Not an exact amount in the account's currency (20001)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Not the operator token (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "No such account (20404)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("operatorToken" = [])),
)]
pub(crate) async fn credit(
    State(state): State<ApiState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (params, currency) = operator_request(&state, &account, &headers, &body).await?;
    let amount = params
        .non_empty("Amount")
        .ok_or_else(|| ApiError::invalid("An Amount is required"))?;
    let amount_micros = parse_amount(amount, &currency).map_err(ApiError::invalid)?;
    let credited = AccountCredited {
        amount_micros,
        currency,
        reference: params.non_empty("Reference").map(str::to_owned),
    };
    let body = append_and_read(&state, &account, NewEvent::new(account.as_str(), credited)).await?;
    Ok((StatusCode::OK, body).into_response())
}

#[utoipa::path(
    operation_id = "balance_plan",
    post,
    path = "/v1/Accounts/{account_sid}/BillingPlan",
    tag = "Billing",
    summary = "Operator: prepaid, or postpaid with an optional credit limit",
    params(("account_sid" = String, Path, description = "The account (AC…)")),
    request_body(content = crate::openapi::schemas::BillingPlanForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The balance and plan afterwards", body = Object),
        (status = 400, description = "Invalid parameter (20001)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Not the operator token (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "No such account (20404)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("operatorToken" = [])),
)]
pub(crate) async fn plan(
    State(state): State<ApiState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (params, currency) = operator_request(&state, &account, &headers, &body).await?;
    let plan = match params.non_empty("Plan") {
        Some(PREPAID) => PREPAID,
        Some(POSTPAID) => POSTPAID,
        other => {
            return Err(ApiError::invalid(format!(
                "Plan must be prepaid or postpaid, not {other:?}"
            )))
        }
    };
    let credit_limit_micros = params
        .non_empty("CreditLimit")
        .map(|limit| parse_amount(limit, &currency))
        .transpose()
        .map_err(ApiError::invalid)?;
    if plan == PREPAID && credit_limit_micros.is_some() {
        return Err(ApiError::invalid(
            "A prepaid account has no CreditLimit: it spends its balance",
        ));
    }
    let set = AccountBillingPlanSet {
        plan: plan.to_owned(),
        credit_limit_micros,
    };
    let body = append_and_read(&state, &account, NewEvent::new(account.as_str(), set)).await?;
    Ok((StatusCode::OK, body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact_in_the_currencys_minor_unit() {
        assert_eq!(parse_amount("10.00", "USD"), Ok(10_000_000));
        assert_eq!(parse_amount("0.01", "USD"), Ok(10_000));
        assert_eq!(parse_amount("-5", "USD"), Ok(-5_000_000));
        assert!(parse_amount("0.001", "USD").is_err());
        assert!(parse_amount("1e3", "USD").is_err());
        assert!(parse_amount("ten", "USD").is_err());
        assert_eq!(parse_amount("500", "JPY"), Ok(500_000_000));
        assert!(parse_amount("500.5", "JPY").is_err());
        assert_eq!(parse_amount("1.234", "KWD"), Ok(1_234_000));
    }
}

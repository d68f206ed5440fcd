//! HTTP Basic authentication with `AccountSid:AuthToken` or `ApiKeySid:Secret`, and what
//! the account's status admits; the operator's bearer token for the operator endpoints.

use std::sync::Arc;

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use base64::Engine;
use dialtone_projections::accounts::{CLOSED, SUSPENDED};
use dialtone_projections::AccountEntry;

use crate::error::ApiError;
use crate::ApiState;

/// The account a request authenticated as. Extracting it checks the Basic credentials
/// (401 with code 20003 otherwise) and that the path's `{account_sid}` is that account
/// (404 otherwise: one account never learns anything about another).
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub account: Arc<AccountEntry>,
}

impl Authenticated {
    pub fn sid(&self) -> &str {
        &self.account.sid
    }
}

/// `(user, password)` of a Basic `Authorization` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

impl FromRequestParts<ApiState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Authenticated, ApiError> {
        let caller = authenticate(state, &parts.headers)?;
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found(parts.uri.path()))?;
        let path_account = params
            .iter()
            .find(|(name, _)| *name == "account_sid")
            .map(|(_, value)| value.strip_suffix(".json").unwrap_or(value));
        let account = match path_account {
            Some(sid) if sid == caller.sid => caller,
            // A parent's credentials reach its subaccounts (never the reverse).
            Some(sid) => {
                let sub = state
                    .accounts
                    .get(sid)
                    .filter(|a| a.owner_account_sid.as_deref() == Some(caller.sid.as_str()))
                    .ok_or_else(|| ApiError::not_found(parts.uri.path()))?;
                // The parent's own status limits what it does to its subaccounts too.
                admit(&caller, &parts.method, parts.uri.path())?;
                sub
            }
            None => return Err(ApiError::not_found(parts.uri.path())),
        };
        admit(&account, &parts.method, parts.uri.path())?;
        Ok(Authenticated { account })
    }
}

/// The account whose Basic credentials `headers` carry (401/20003 otherwise).
pub(crate) fn authenticate(
    state: &ApiState,
    headers: &HeaderMap,
) -> Result<Arc<AccountEntry>, ApiError> {
    let (user, password) = basic_credentials(headers).ok_or_else(ApiError::unauthorized)?;
    state
        .accounts
        .authenticate(&user, &password)
        .ok_or_else(ApiError::unauthorized)
}

/// What an account's status allows (Twilio's 20005, "Account not active"): a closed account
/// nothing; a suspended one reads, and may change its own status (`POST /Accounts/{AC}`).
pub(crate) fn admit(account: &AccountEntry, method: &Method, path: &str) -> Result<(), ApiError> {
    match account.status.as_str() {
        CLOSED => Err(ApiError::account_not_active(&account.status)),
        SUSPENDED
            if method != Method::GET
                && method != Method::HEAD
                && !is_account_resource(path, &account.sid) =>
        {
            Err(ApiError::account_not_active(&account.status))
        }
        _ => Ok(()),
    }
}

fn is_account_resource(path: &str, sid: &str) -> bool {
    let rest = path
        .strip_prefix("/2010-04-01/Accounts/")
        .unwrap_or_default();
    rest == sid || rest.strip_suffix(".json") == Some(sid)
}

/// The operator token: what `Authorization: Bearer …` must carry on operator endpoints
/// (the number inventory, credits, billing plans). Derived from the cluster secret, so
/// every node accepts the same one.
pub fn operator_token(node_secret: &[u8]) -> String {
    dialtone_projections::accounts::derive_auth_token(node_secret, "operator", "inventory")
}

/// Checks `Authorization: Bearer <operator token>` (in constant time): 401 otherwise, 503
/// on a node without the secret.
pub(crate) fn authorize_operator(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    use subtle::ConstantTimeEq;
    let Some(secret) = state.node_secret.as_ref() else {
        return Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            crate::error::codes::UNAVAILABLE,
            "operator endpoints need the node secret",
        ));
    };
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let expected = operator_token(secret);
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn basic_credentials_parse_and_reject_garbage() {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic QUMxOnRvazp3aXRoOmNvbG9ucw=="),
        );
        assert_eq!(
            basic_credentials(&headers),
            Some(("AC1".into(), "tok:with:colons".into()))
        );
        for bad in ["Bearer abc", "Basic !!!", "Basic", "Basic bm9jb2xvbg=="] {
            headers.insert(AUTHORIZATION, HeaderValue::from_static(bad));
            assert_eq!(basic_credentials(&headers), None, "{bad}");
        }
    }
}

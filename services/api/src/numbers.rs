//! IncomingPhoneNumbers: provisioning numbers and pointing them at applications.
//!
//! Every write is an event on the number's `PN…` stream (`provisioned`, `updated` with the
//! whole new configuration, `released`), appended with the stream version the read model
//! knows, then awaited in the projections so that the response and any later GET agree.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use dialtone_events::payload::{NumberConfig, NumberProvisioned, NumberReleased, NumberUpdated};
use dialtone_events::sid::PhoneNumberSid;
use dialtone_events::{ExpectedVersion, LogError, NewEvent, Payload};
use dialtone_projections::inventory;
use dialtone_projections::numbers::{
    self, format_national, normalize_e164, NumberFilter, NumberRecord,
};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::auth::Authenticated;
use crate::error::{codes, ApiError};
use crate::format::{rfc2822, sid_segment};
use crate::paging::{envelope, keyset_links, Paging};
use crate::params::Params;
use crate::{ApiState, API_VERSION};

/// Attempts at a versioned write before answering 409.
const WRITE_ATTEMPTS: usize = 3;

fn list_path(account: &str) -> String {
    format!("/{API_VERSION}/Accounts/{account}/IncomingPhoneNumbers.json")
}

fn number_path(account: &str, sid: &str) -> String {
    format!("/{API_VERSION}/Accounts/{account}/IncomingPhoneNumbers/{sid}.json")
}

/// Twilio's IncomingPhoneNumber representation (voice fields filled, the rest at Twilio's
/// defaults for a voice-only number).
pub(crate) fn number_json(record: &NumberRecord) -> Value {
    let config = &record.config;
    let url = |u: &Option<String>| u.clone().unwrap_or_default();
    json!({
        "account_sid": record.account_sid,
        "address_requirements": "none",
        "address_sid": null,
        "api_version": API_VERSION,
        "beta": false,
        "bundle_sid": null,
        "capabilities": {"fax": false, "mms": false, "sms": record.sms_capable, "voice": true},
        "date_created": rfc2822(record.date_created),
        "date_updated": rfc2822(record.date_updated),
        "emergency_address_sid": null,
        "emergency_address_status": "unregistered",
        "emergency_status": "Inactive",
        "friendly_name": config.friendly_name,
        "identity_sid": null,
        "origin": "hosted",
        "phone_number": config.phone_number,
        "sid": record.sid,
        "sms_application_sid": config.sms.sms_application_sid.clone().unwrap_or_default(),
        "sms_fallback_method": config.sms.sms_fallback_method.as_str(),
        "sms_fallback_url": url(&config.sms.sms_fallback_url),
        "sms_method": config.sms.sms_method.as_str(),
        "sms_url": url(&config.sms.sms_url),
        "status": "in-use",
        "status_callback": url(&config.status_callback),
        "status_callback_method": config.status_callback_method.as_str(),
        "subresource_uris": {
            "assigned_add_ons": format!(
                "/{API_VERSION}/Accounts/{}/IncomingPhoneNumbers/{}/AssignedAddOns.json",
                record.account_sid, record.sid
            ),
        },
        "trunk_sid": null,
        "uri": number_path(&record.account_sid, &record.sid),
        "voice_application_sid": config.voice_application_sid,
        "voice_caller_id_lookup": false,
        "voice_fallback_method": config.voice_fallback_method.as_str(),
        "voice_fallback_url": url(&config.voice_fallback_url),
        "voice_method": config.voice_method.as_str(),
        "voice_receive_mode": "voice",
        "voice_url": url(&config.voice_url),
    })
}

/// Applies the voice parameters present in `params` to `config` (absent: unchanged; sent
/// empty: cleared).
fn apply_params(
    config: &mut NumberConfig,
    params: &Params,
    auth: &Authenticated,
) -> Result<(), ApiError> {
    for (name, slot) in [
        ("VoiceApplicationSid", &mut config.voice_application_sid),
        ("SmsApplicationSid", &mut config.sms.sms_application_sid),
    ] {
        let Some(sid) = params.get(name) else {
            continue;
        };
        *slot = if sid.is_empty() {
            None
        } else if auth.account.application(sid).is_some() {
            Some(sid.to_owned())
        } else {
            return Err(ApiError::bad_request(
                codes::INVALID_APPLICATION,
                format!("{name} {sid} is not an application of this account"),
            ));
        };
    }
    if let Some(name) = params.get("FriendlyName") {
        if name.chars().count() > 64 {
            return Err(ApiError::invalid(
                "FriendlyName must be at most 64 characters",
            ));
        }
        config.friendly_name = if name.is_empty() {
            format_national(&config.phone_number)
        } else {
            name.to_owned()
        };
    }
    if let Some(url) = params.url("VoiceUrl")? {
        config.voice_url = url;
    }
    if let Some(method) = params.method("VoiceMethod")? {
        config.voice_method = method;
    }
    if let Some(url) = params.url("VoiceFallbackUrl")? {
        config.voice_fallback_url = url;
    }
    if let Some(method) = params.method("VoiceFallbackMethod")? {
        config.voice_fallback_method = method;
    }
    if let Some(url) = params.url("StatusCallback")? {
        config.status_callback = url;
    }
    if let Some(method) = params.method("StatusCallbackMethod")? {
        config.status_callback_method = method;
    }
    if let Some(url) = params.url("SmsUrl")? {
        config.sms.sms_url = url;
    }
    if let Some(method) = params.method("SmsMethod")? {
        config.sms.sms_method = method;
    }
    if let Some(url) = params.url("SmsFallbackUrl")? {
        config.sms.sms_fallback_url = url;
    }
    if let Some(method) = params.method("SmsFallbackMethod")? {
        config.sms.sms_fallback_method = method;
    }
    Ok(())
}

/// The caller's number `sid`, or 404 (also for another account's number).
async fn owned_number(
    state: &ApiState,
    auth: &Authenticated,
    sid: &str,
    path: &str,
) -> Result<NumberRecord, ApiError> {
    let lookup = sid.to_owned();
    let record = state
        .read_models
        .read(move |c| numbers::get_number(c, &lookup))
        .await?;
    match record {
        Some(record) if record.account_sid == auth.sid() => Ok(record),
        _ => Err(ApiError::not_found(path)),
    }
}

async fn read_back(state: &ApiState, sid: &str) -> Result<Option<NumberRecord>, ApiError> {
    let sid = sid.to_owned();
    Ok(state
        .read_models
        .read(move |c| numbers::get_number(c, &sid))
        .await?)
}

#[utoipa::path(
    operation_id = "numbers_list",
    get,
    path = "/2010-04-01/Accounts/{account_sid}/IncomingPhoneNumbers.json",
    tag = "IncomingPhoneNumbers",
    summary = "List the account's numbers",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("PhoneNumber" = Option<String>, Query, description = "Exact E.164"),
        ("FriendlyName" = Option<String>, Query, description = "Exact"),
        ("PageSize" = Option<u32>, Query, description = "1–1000, default 50"),
        ("Page" = Option<u32>, Query, description = "Page index"),
        ("PageToken" = Option<String>, Query, description = "Opaque, from next_page_uri"),
    ),
    responses(
        (status = 200, description = "OK", body = crate::openapi::schemas::IncomingPhoneNumberList),
        (status = 400, description = "Invalid parameter (error body names it)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    auth: Authenticated,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::from_query(query.as_deref());
    let paging = Paging::parse(&params)?;
    let filter = NumberFilter {
        phone_number: params.non_empty("PhoneNumber").map(|p| p.trim().to_owned()),
        friendly_name: params.non_empty("FriendlyName").map(str::to_owned),
    };
    let account = auth.sid().to_owned();
    let request = paging.request();
    let page = state
        .read_models
        .read(move |c| numbers::list_numbers(c, &account, &filter, &request))
        .await?;
    let (next, previous) = keyset_links(&paging, &page, numbers::number_sort_key);
    let items = page.items.iter().map(number_json).collect();
    Ok(Json(envelope(
        "incoming_phone_numbers",
        items,
        &list_path(auth.sid()),
        &params,
        &paging,
        next,
        previous,
    )))
}

/// The number a create buys, and its monthly rental when it comes from the inventory:
/// `PhoneNumber` (from the inventory when it is stocked there; any number when the operator
/// allows it), else the first available number of the inventory in `AreaCode`.
async fn chosen_number(
    state: &ApiState,
    params: &Params,
) -> Result<(String, Option<i64>), ApiError> {
    let policy = state.number_policy;
    let now = OffsetDateTime::now_utc();
    if let Some(raw) = params.non_empty("PhoneNumber") {
        let phone_number = normalize_e164(raw).map_err(|e| {
            ApiError::bad_request(
                codes::INVALID_PHONE_NUMBER,
                format!("PhoneNumber is invalid: {e}"),
            )
        })?;
        let lookup = phone_number.clone();
        let entry = state
            .read_models
            .read(move |c| inventory::inventory_entry(c, &lookup))
            .await?;
        let unavailable = |why: &str| {
            ApiError::bad_request(
                codes::NUMBER_UNAVAILABLE,
                format!("PhoneNumber {phone_number} is not available{why}"),
            )
        };
        return match entry {
            Some(entry) if entry.available(now, policy.release_aging) => {
                Ok((phone_number, Some(entry.monthly_price_micros)))
            }
            Some(entry) if !entry.held => Err(unavailable(" (it was released recently)")),
            Some(_) => Err(unavailable("")),
            None if policy.inventory_only => Err(unavailable(" (it is not in the inventory)")),
            None => Ok((phone_number, None)),
        };
    }
    let Some(area) = params.non_empty("AreaCode") else {
        return Err(ApiError::invalid(
            "A PhoneNumber or an AreaCode is required",
        ));
    };
    let area = crate::available_numbers::area_code(area)?;
    let search = inventory::InventorySearch {
        iso_country: "US".to_owned(),
        number_type: "local".to_owned(),
        area_code: Some(area.clone()),
        contains: None,
        in_region: None,
        in_locality: None,
        sms_enabled: None,
        voice_enabled: None,
        limit: 1,
        now,
        aging: policy.release_aging,
    };
    let mut found = state
        .read_models
        .read(move |c| {
            let mut found = inventory::search_available(c, &search)?;
            if found.is_empty() {
                // Canada shares the plan.
                let canada = inventory::InventorySearch {
                    iso_country: "CA".to_owned(),
                    ..search
                };
                found = inventory::search_available(c, &canada)?;
            }
            Ok(found)
        })
        .await?;
    match found.pop() {
        Some(row) => Ok((row.phone_number, Some(row.monthly_price_micros))),
        None => Err(ApiError::bad_request(
            codes::NO_NUMBERS_IN_AREA_CODE,
            format!("No phone numbers found in area code {area}"),
        )),
    }
}

#[utoipa::path(
    operation_id = "numbers_create",
    post,
    path = "/2010-04-01/Accounts/{account_sid}/IncomingPhoneNumbers.json",
    tag = "IncomingPhoneNumbers",
    summary = "Provision a number",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
    ),
    request_body(content = crate::openapi::schemas::NumberForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 201, description = "OK", body = crate::openapi::schemas::IncomingPhoneNumber),
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
    let _serialised = state.number_writes.lock().await;
    let (phone_number, monthly_price_micros) = chosen_number(&state, &params).await?;
    let mut config = NumberConfig {
        friendly_name: format_national(&phone_number),
        phone_number,
        voice_url: None,
        voice_method: Default::default(),
        voice_fallback_url: None,
        voice_fallback_method: Default::default(),
        status_callback: None,
        status_callback_method: Default::default(),
        voice_application_sid: None,
        sms: Default::default(),
    };
    apply_params(&mut config, &params, &auth)?;

    let unavailable = || {
        ApiError::bad_request(
            codes::NUMBER_UNAVAILABLE,
            format!("PhoneNumber {} is not available", config.phone_number),
        )
    };
    let number = config.phone_number.clone();
    let holder = state
        .read_models
        .read(move |c| numbers::number_by_phone(c, &number))
        .await?;
    if holder.is_some() {
        return Err(unavailable());
    }
    let sid = PhoneNumberSid::generate();
    let appended = state
        .log
        .append(
            sid.as_str(),
            ExpectedVersion::NoStream,
            vec![NewEvent::new(
                auth.sid(),
                NumberProvisioned {
                    config: config.clone(),
                    monthly_price_micros,
                },
            )],
        )
        .await?;
    let applied = state.await_projections(&appended.positions).await;
    let record = if applied {
        match read_back(&state, sid.as_str()).await? {
            Some(record) => record,
            None => {
                // Another node provisioned the same number first (log order decides): give
                // ours back so the stream does not linger as a claim.
                state
                    .log
                    .append(
                        sid.as_str(),
                        ExpectedVersion::Exact(1),
                        vec![NewEvent::new(
                            auth.sid(),
                            NumberReleased {
                                phone_number: config.phone_number.clone(),
                            },
                        )],
                    )
                    .await?;
                return Err(unavailable());
            }
        }
    } else {
        let now = OffsetDateTime::now_utc();
        NumberRecord {
            sid: sid.to_string(),
            account_sid: auth.sid().to_owned(),
            config,
            version: 1,
            // Known once the projections catch up (a GET shows it).
            sms_capable: false,
            date_created: now,
            date_updated: now,
        }
    };
    Ok((StatusCode::CREATED, Json(number_json(&record))).into_response())
}

#[utoipa::path(
    operation_id = "numbers_fetch",
    get,
    path = "/2010-04-01/Accounts/{account_sid}/IncomingPhoneNumbers/{sid}",
    tag = "IncomingPhoneNumbers",
    summary = "Fetch a number",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "PN…, optionally followed by .json"),
    ),
    responses(
        (status = 200, description = "OK", body = crate::openapi::schemas::IncomingPhoneNumber),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "Not found, or another account's (20404)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn fetch(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, segment)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let path = number_path(auth.sid(), segment.trim_end_matches(".json"));
    let sid = sid_segment(&segment, PhoneNumberSid::PREFIX, &path)?;
    let record = owned_number(&state, &auth, sid, &path).await?;
    Ok(Json(number_json(&record)))
}

/// Appends the event `make` builds from the current record, retrying on a version conflict
/// (the read model was behind) after letting the projections catch up.
async fn versioned_write(
    state: &ApiState,
    auth: &Authenticated,
    sid: &str,
    path: &str,
    make: impl Fn(&NumberRecord) -> Result<Payload, ApiError>,
) -> Result<(NumberRecord, Payload, bool), ApiError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let record = owned_number(state, auth, sid, path).await?;
        let payload = make(&record)?;
        let result = state
            .log
            .append(
                sid,
                ExpectedVersion::Exact(record.version),
                vec![NewEvent::new(auth.sid(), payload.clone())],
            )
            .await;
        match result {
            Ok(appended) => {
                let applied = state.await_projections(&appended.positions).await;
                return Ok((record, payload, applied));
            }
            Err(LogError::VersionConflict { .. }) if attempt < WRITE_ATTEMPTS => {
                let _ = tokio::time::timeout(
                    state.write_wait,
                    state.projections.catch_up(state.log.as_ref()),
                )
                .await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

#[utoipa::path(
    operation_id = "numbers_update",
    post,
    path = "/2010-04-01/Accounts/{account_sid}/IncomingPhoneNumbers/{sid}",
    tag = "IncomingPhoneNumbers",
    summary = "Update a number's configuration",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "PN…, optionally followed by .json"),
    ),
    request_body(content = crate::openapi::schemas::NumberForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "OK", body = crate::openapi::schemas::IncomingPhoneNumber),
        (status = 400, description = "Invalid parameter (error body names it)", body = crate::openapi::schemas::ErrorBody),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "Not found, or another account's (20404)", body = crate::openapi::schemas::ErrorBody),
        (status = 409, description = "Concurrent modification (20409)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn update(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, segment)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let path = number_path(auth.sid(), segment.trim_end_matches(".json"));
    let sid = sid_segment(&segment, PhoneNumberSid::PREFIX, &path)?.to_owned();
    let params = Params::parse(&body);
    let (before, payload, applied) = versioned_write(&state, &auth, &sid, &path, |record| {
        let mut config = record.config.clone();
        apply_params(&mut config, &params, &auth)?;
        Ok(NumberUpdated { config }.into())
    })
    .await?;
    let fresh = if applied {
        read_back(&state, &sid).await?
    } else {
        None
    };
    let record = fresh.unwrap_or_else(|| {
        let mut record = before;
        if let Payload::NumberUpdated(updated) = payload {
            record.config = updated.config;
        }
        record.version += 1;
        record.date_updated = OffsetDateTime::now_utc();
        record
    });
    Ok(Json(number_json(&record)))
}

#[utoipa::path(
    operation_id = "numbers_release",
    delete,
    path = "/2010-04-01/Accounts/{account_sid}/IncomingPhoneNumbers/{sid}",
    tag = "IncomingPhoneNumbers",
    summary = "Release a number",
    params(
        ("account_sid" = String, Path, description = "The account (AC…); must be the one authenticating"),
        ("sid" = String, Path, description = "PN…, optionally followed by .json"),
    ),
    responses(
        (status = 204, description = "Done"),
        (status = 401, description = "Wrong or missing credentials (20003)", body = crate::openapi::schemas::ErrorBody),
        (status = 404, description = "Not found, or another account's (20404)", body = crate::openapi::schemas::ErrorBody),
    ),
    security(("accountSid_authToken" = [])),
)]
pub(crate) async fn release(
    State(state): State<ApiState>,
    auth: Authenticated,
    Path((_, segment)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let path = number_path(auth.sid(), segment.trim_end_matches(".json"));
    let sid = sid_segment(&segment, PhoneNumberSid::PREFIX, &path)?.to_owned();
    versioned_write(&state, &auth, &sid, &path, |record| {
        Ok(NumberReleased {
            phone_number: record.config.phone_number.clone(),
        }
        .into())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

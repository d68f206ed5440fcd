//! What an account's consumers receive of an event.

use dialtone_events::Event;
use serde_json::value::RawValue;
use serde_json::Value;

/// Members of account events that never leave the server: the auth token's hash and salt,
/// an API key's secret hash.
const SECRET_MEMBERS: &[&str] = &["token_sha256", "token_salt", "secret_sha256"];

/// The CloudEvent JSON a subscriber of `event`'s account receives: exactly the stored
/// canonical JSON, so its hash chain can be re-checked, except for account events
/// (`dialtone.account.*`), whose token hash and salt are removed (their hash then no longer
/// verifies: docs/streams.md says so).
pub fn public_json(event: &Event) -> String {
    if !event.event_type.starts_with("dialtone.account.") {
        return event.to_json();
    }
    let mut data: Value = match serde_json::from_str(event.data.get()) {
        Ok(data) => data,
        // Not an object we can inspect: send no data rather than risk a secret.
        Err(_) => Value::Object(Default::default()),
    };
    if let Value::Object(members) = &mut data {
        for secret in SECRET_MEMBERS {
            members.remove(*secret);
        }
    } else {
        data = Value::Object(Default::default());
    }
    let mut redacted = event.clone();
    redacted.data = serde_json::value::to_raw_value(&data).unwrap_or_else(|_| {
        RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| event.data.clone())
    });
    redacted.to_json()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialtone_events::envelope::GENESIS_HASH;
    use time::OffsetDateTime;

    fn event(event_type: &str, data: &str) -> Event {
        Event {
            id: uuid::Uuid::nil(),
            event_type: event_type.into(),
            source: "dialtone://n".into(),
            subject: "AC0123456789abcdef0123456789abcdef".into(),
            time: OffsetDateTime::UNIX_EPOCH,
            accountsid: "AC0123456789abcdef0123456789abcdef".into(),
            sequence: 1,
            prevhash: GENESIS_HASH.into(),
            data: RawValue::from_string(data.into()).unwrap(),
        }
    }

    #[test]
    fn account_events_lose_their_secrets_and_others_stay_byte_identical() {
        let created = event(
            "dialtone.account.created",
            r#"{"friendly_name":"Acme","token_sha256":"ab","token_salt":"cd"}"#,
        );
        let json = public_json(&created);
        assert!(
            json.contains(r#""data":{"friendly_name":"Acme"}"#),
            "{json}"
        );
        assert!(!json.contains("token"), "{json}");
        let call = event("dialtone.call.ringing", r#"{"sip_code":180}"#);
        assert_eq!(public_json(&call), call.to_json());
    }
}

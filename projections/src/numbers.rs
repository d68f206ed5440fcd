//! Incoming phone numbers: the read model (E.164 → account and voice configuration), the
//! in-memory [`NumberDirectory`] the SIP edge routes INVITEs with, and E.164 helpers.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use dialtone_events::payload::{HttpMethod, NumberConfig};
use dialtone_events::{Payload, RecordedEvent};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use time::OffsetDateTime;

use crate::paging::{created_sort_key, read_page, ListQuery, Order, Page, PageRequest, SortKey};
use crate::projection::{decode, load_time, sql, store_time, Projection, ProjectionError};

/// Why a string is not a phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneNumberError {
    #[error("{0:?} is not a phone number: use E.164, e.g. +14155550100")]
    Invalid(String),
}

/// Normalises a phone number to E.164 (`+` and 8 to 15 digits). Accepts visual separators
/// (spaces, `-`, `.`, `(`, `)`, `/`), a `00` international prefix, and — as Twilio's US
/// defaults do — 10 bare digits as a NANP number (`+1…`) and 11 bare digits starting with 1.
pub fn normalize_e164(input: &str) -> Result<String, PhoneNumberError> {
    let invalid = || PhoneNumberError::Invalid(input.to_owned());
    let trimmed = input.trim();
    let (plus, rest) = match trimmed.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, trimmed),
    };
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' | '/' => {}
            _ => return Err(invalid()),
        }
    }
    let digits = if plus {
        digits
    } else if let Some(international) = digits.strip_prefix("00") {
        international.to_owned()
    } else if digits.len() == 10 {
        format!("1{digits}")
    } else if digits.len() == 11 && digits.starts_with('1') {
        digits
    } else {
        return Err(invalid());
    };
    if !(8..=15).contains(&digits.len()) || digits.starts_with('0') {
        return Err(invalid());
    }
    Ok(format!("+{digits}"))
}

/// Twilio's display form: `(415) 867-5309` for NANP numbers, the input otherwise.
pub fn format_national(number: &str) -> String {
    match number.strip_prefix("+1") {
        Some(rest) if rest.len() == 10 && rest.bytes().all(|b| b.is_ascii_digit()) => {
            format!("({}) {}-{}", &rest[..3], &rest[3..6], &rest[6..])
        }
        _ => number.to_owned(),
    }
}

/// What the SIP edge needs to route a call to a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberRoute {
    /// `PN…`.
    pub sid: String,
    pub account_sid: String,
    pub config: NumberConfig,
}

/// Numbers by E.164, kept live by [`NumbersProjection`] after each commit. Cheap to clone;
/// lookups take a read lock only.
#[derive(Clone, Default)]
pub struct NumberDirectory {
    inner: Arc<RwLock<HashMap<String, Arc<NumberRoute>>>>,
}

impl NumberDirectory {
    /// The number provisioned as `e164`, if any.
    pub fn lookup(&self, e164: &str) -> Option<Arc<NumberRoute>> {
        self.inner.read().ok()?.get(e164).cloned()
    }

    pub fn len(&self) -> usize {
        self.inner.read().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn replace_all(&self, routes: Vec<NumberRoute>) {
        if let Ok(mut map) = self.inner.write() {
            *map = routes
                .into_iter()
                .map(|r| (r.config.phone_number.clone(), Arc::new(r)))
                .collect();
        }
    }
}

/// A number as stored in the read model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberRecord {
    pub sid: String,
    pub account_sid: String,
    pub config: NumberConfig,
    /// The `PN…` stream's version: the `ExpectedVersion` for the next write.
    pub version: u64,
    /// It can receive messages: the inventory says so (numbers from outside the inventory
    /// carry voice only).
    pub sms_capable: bool,
    pub date_created: OffsetDateTime,
    pub date_updated: OffsetDateTime,
}

impl NumberRecord {
    pub fn route(&self) -> NumberRoute {
        NumberRoute {
            sid: self.sid.clone(),
            account_sid: self.account_sid.clone(),
            config: self.config.clone(),
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS numbers (
    sid                    TEXT PRIMARY KEY,
    account_sid            TEXT NOT NULL,
    phone_number           TEXT NOT NULL UNIQUE,
    friendly_name          TEXT NOT NULL,
    voice_url              TEXT,
    voice_method           TEXT NOT NULL,
    voice_fallback_url     TEXT,
    voice_fallback_method  TEXT NOT NULL,
    status_callback        TEXT,
    status_callback_method TEXT NOT NULL,
    voice_application_sid  TEXT,
    sms                    TEXT NOT NULL DEFAULT '{}',
    version                INTEGER NOT NULL,
    date_created           TEXT NOT NULL,
    date_updated           TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS numbers_by_account ON numbers (account_sid, date_created, sid);
";

const SELECT: &str =
    "SELECT sid, account_sid, phone_number, friendly_name, voice_url, voice_method,
    voice_fallback_url, voice_fallback_method, status_callback, status_callback_method, version,
    date_created, date_updated, voice_application_sid, sms,
    EXISTS (SELECT 1 FROM number_inventory i WHERE i.phone_number = numbers.phone_number
        AND i.sms = 1)
    FROM numbers";

/// The SMS settings as the `sms` column holds them (JSON).
fn sms_json(sms: &dialtone_events::payload::NumberSms) -> String {
    serde_json::to_string(sms).unwrap_or_else(|_| "{}".to_owned())
}

fn method(value: String) -> HttpMethod {
    HttpMethod::parse(&value).unwrap_or_default()
}

fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(NumberRecord, String, String)> {
    Ok((
        NumberRecord {
            sid: row.get(0)?,
            account_sid: row.get(1)?,
            config: NumberConfig {
                phone_number: row.get(2)?,
                friendly_name: row.get(3)?,
                voice_url: row.get(4)?,
                voice_method: method(row.get(5)?),
                voice_fallback_url: row.get(6)?,
                voice_fallback_method: method(row.get(7)?),
                status_callback: row.get(8)?,
                status_callback_method: method(row.get(9)?),
                voice_application_sid: row.get(13)?,
                // Written by this projection from a typed value: unreadable only if the
                // file was edited by hand, and then the number simply has no SMS settings.
                sms: serde_json::from_str(&row.get::<_, String>(14)?).unwrap_or_default(),
            },
            version: row.get(10)?,
            sms_capable: row.get(15)?,
            date_created: OffsetDateTime::UNIX_EPOCH,
            date_updated: OffsetDateTime::UNIX_EPOCH,
        },
        row.get(11)?,
        row.get(12)?,
    ))
}

fn with_times(
    (mut record, created, updated): (NumberRecord, String, String),
) -> Result<NumberRecord, ProjectionError> {
    record.date_created = load_time("numbers", &created)?;
    record.date_updated = load_time("numbers", &updated)?;
    Ok(record)
}

fn query_one(
    conn: &Connection,
    condition: &str,
    value: &str,
) -> Result<Option<NumberRecord>, ProjectionError> {
    conn.prepare_cached(&format!("{SELECT} WHERE {condition} = ?1"))
        .and_then(|mut s| s.query_row([value], read_row).optional())
        .map_err(sql("reading a number"))?
        .map(with_times)
        .transpose()
}

/// A number by SID, whatever its account (callers check ownership).
pub fn get_number(conn: &Connection, sid: &str) -> Result<Option<NumberRecord>, ProjectionError> {
    query_one(conn, "sid", sid)
}

/// The number provisioned as `e164`, whatever its account.
pub fn number_by_phone(
    conn: &Connection,
    e164: &str,
) -> Result<Option<NumberRecord>, ProjectionError> {
    query_one(conn, "phone_number", e164)
}

/// Filters of the IncomingPhoneNumbers list.
#[derive(Debug, Clone, Default)]
pub struct NumberFilter {
    /// Twilio's `PhoneNumber`: a substring of the E.164 number; `*` matches one digit.
    pub phone_number: Option<String>,
    /// Exact friendly name.
    pub friendly_name: Option<String>,
}

/// The account's numbers, oldest first.
pub fn list_numbers(
    conn: &Connection,
    account_sid: &str,
    filter: &NumberFilter,
    page: &PageRequest,
) -> Result<Page<NumberRecord>, ProjectionError> {
    let mut conditions = vec!["account_sid = ?".to_owned()];
    let mut values = vec![Value::Text(account_sid.to_owned())];
    if let Some(pattern) = &filter.phone_number {
        // LIKE with `*` → `_` (one character); escape LIKE's own wildcards.
        let escaped: String = pattern
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                '*' => vec!['_'],
                c => vec![c],
            })
            .collect();
        conditions.push("phone_number LIKE ? ESCAPE '\\'".to_owned());
        values.push(Value::Text(format!("%{escaped}%")));
    }
    if let Some(name) = &filter.friendly_name {
        conditions.push("friendly_name = ?".to_owned());
        values.push(Value::Text(name.clone()));
    }
    let list = ListQuery {
        select: SELECT,
        order: Order::Ascending,
        primary_col: "date_created",
        sid_col: "sid",
        context: "listing numbers",
    };
    read_page(conn, &list, conditions, values, page, read_row, with_times)
}

/// The sort key of a number in its list.
pub fn number_sort_key(record: &NumberRecord) -> SortKey {
    created_sort_key(record.date_created, &record.sid)
}

/// Every provisioned number, for loading the directory.
pub fn all_numbers(conn: &Connection) -> Result<Vec<NumberRecord>, ProjectionError> {
    let rows = conn
        .prepare(SELECT)
        .and_then(|mut s| s.query_map([], read_row)?.collect::<Result<Vec<_>, _>>())
        .map_err(sql("loading numbers"))?;
    rows.into_iter().map(with_times).collect()
}

/// A directory change to make once the transaction commits.
enum Staged {
    Upsert(Box<NumberRoute>),
    Remove(String),
}

/// Projects `dialtone.number.*` into `numbers` and the [`NumberDirectory`].
///
/// An E.164 number belongs to the first stream that provisioned it (in log order); a later
/// `provisioned` for the same number while it is held is ignored with a warning, so a race
/// between two API nodes resolves the same way on every node and in every rebuild.
pub struct NumbersProjection {
    directory: NumberDirectory,
    staged: Vec<Staged>,
}

impl NumbersProjection {
    pub fn new(directory: NumberDirectory) -> NumbersProjection {
        NumbersProjection {
            directory,
            staged: Vec::new(),
        }
    }
}

impl Projection for NumbersProjection {
    fn name(&self) -> &'static str {
        "numbers"
    }

    fn version(&self) -> u32 {
        // 3: the inventory. 4: the numbers' SMS settings.
        4
    }

    fn tables(&self) -> &'static [&'static str] {
        &["numbers", "number_inventory"]
    }

    fn init(&self, tx: &Transaction<'_>) -> Result<(), ProjectionError> {
        tx.execute_batch(SCHEMA).map_err(sql("creating numbers"))?;
        tx.execute_batch(crate::inventory::SCHEMA)
            .map_err(sql("creating the number inventory"))
    }

    fn wants(&self, event_type: &str) -> bool {
        event_type.starts_with("dialtone.number.")
    }

    fn apply(
        &mut self,
        recorded: &RecordedEvent,
        tx: &Transaction<'_>,
    ) -> Result<(), ProjectionError> {
        let event = &recorded.event;
        let time = store_time(event.time);
        match decode(recorded) {
            Some(Payload::NumberProvisioned(provisioned)) => {
                let config = provisioned.config;
                if let Some(holder) = number_by_phone(tx, &config.phone_number)? {
                    tracing::warn!(
                        phone_number = %config.phone_number,
                        holder = %holder.sid,
                        ignored = %event.subject,
                        "number already provisioned; ignoring the later provisioning"
                    );
                    return Ok(());
                }
                tx.prepare_cached(
                    "INSERT INTO numbers (sid, account_sid, phone_number, friendly_name, voice_url,
                        voice_method, voice_fallback_url, voice_fallback_method, status_callback,
                        status_callback_method, version, date_created, date_updated,
                        voice_application_sid, sms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13, ?14)
                     ON CONFLICT (sid) DO NOTHING",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        event.subject,
                        event.accountsid,
                        config.phone_number,
                        config.friendly_name,
                        config.voice_url,
                        config.voice_method.as_str(),
                        config.voice_fallback_url,
                        config.voice_fallback_method.as_str(),
                        config.status_callback,
                        config.status_callback_method.as_str(),
                        event.sequence,
                        time,
                        config.voice_application_sid,
                        sms_json(&config.sms),
                    ])
                })
                .map_err(sql("inserting a number"))?;
            }
            Some(Payload::NumberUpdated(updated)) => {
                // The number itself never changes: a NumberUpdated carries the whole config,
                // and its phone_number is ignored in favour of the provisioned one.
                let config = updated.config;
                tx.prepare_cached(
                    "UPDATE numbers SET friendly_name = ?2, voice_url = ?3, voice_method = ?4,
                        voice_fallback_url = ?5, voice_fallback_method = ?6, status_callback = ?7,
                        status_callback_method = ?8, version = ?9, date_updated = ?10,
                        voice_application_sid = ?11, sms = ?12
                     WHERE sid = ?1",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        event.subject,
                        config.friendly_name,
                        config.voice_url,
                        config.voice_method.as_str(),
                        config.voice_fallback_url,
                        config.voice_fallback_method.as_str(),
                        config.status_callback,
                        config.status_callback_method.as_str(),
                        event.sequence,
                        time,
                        config.voice_application_sid,
                        sms_json(&config.sms),
                    ])
                })
                .map_err(sql("updating a number"))?;
            }
            Some(Payload::NumberStocked(stocked)) => {
                return crate::inventory::stock(tx, &stocked, event.time);
            }
            Some(Payload::NumberReleased(_)) => {
                if let Some(record) = get_number(tx, &event.subject)? {
                    tx.prepare_cached("DELETE FROM numbers WHERE sid = ?1")
                        .and_then(|mut s| s.execute([&event.subject]))
                        .map_err(sql("releasing a number"))?;
                    crate::inventory::released(tx, &record.config.phone_number, event.time)?;
                    self.staged.push(Staged::Remove(record.config.phone_number));
                }
                return Ok(());
            }
            _ => return Ok(()),
        }
        if let Some(record) = get_number(tx, &event.subject)? {
            self.staged.push(Staged::Upsert(Box::new(record.route())));
        }
        Ok(())
    }

    fn load(&mut self, conn: &Connection) -> Result<(), ProjectionError> {
        let routes = all_numbers(conn)?.iter().map(NumberRecord::route).collect();
        self.directory.replace_all(routes);
        Ok(())
    }

    fn after_commit(&mut self) {
        if self.staged.is_empty() {
            return;
        }
        if let Ok(mut map) = self.directory.inner.write() {
            for staged in self.staged.drain(..) {
                match staged {
                    Staged::Upsert(route) => {
                        map.insert(route.config.phone_number.clone(), Arc::from(route));
                    }
                    Staged::Remove(number) => {
                        map.remove(&number);
                    }
                }
            }
        }
    }

    fn after_rollback(&mut self) {
        self.staged.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_normalise_to_e164() {
        assert_eq!(normalize_e164("+1 (415) 555-0100").unwrap(), "+14155550100");
        assert_eq!(normalize_e164("415.555.0100").unwrap(), "+14155550100");
        assert_eq!(normalize_e164("14155550100").unwrap(), "+14155550100");
        assert_eq!(
            normalize_e164("0044 20 7946 0958").unwrap(),
            "+442079460958"
        );
        assert_eq!(normalize_e164("+442079460958").unwrap(), "+442079460958");
        for bad in [
            "",
            "+",
            "abc",
            "+1415555010x",
            "12345",
            "+0123456789",
            "+1234567890123456",
        ] {
            assert!(normalize_e164(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn nanp_numbers_format_nationally() {
        assert_eq!(format_national("+14158675309"), "(415) 867-5309");
        assert_eq!(format_national("+442079460958"), "+442079460958");
        assert_eq!(
            format_national("sip:alice@example.com"),
            "sip:alice@example.com"
        );
    }
}

//! Accounts: the read model, the in-memory [`AccountDirectory`] used to authenticate
//! requests, and the auth-token scheme of the whole system.
//!
//! Tokens are never stored or logged. An account's token is derived from the node secret
//! and a public salt: `token = hex(HMAC-SHA256(secret, "dialtone-auth-token:{sid}:{salt}"))[..32]`.
//! Events carry only the salt and `sha256(token)`, so the API verifies a presented token
//! against the hash, and any node holding the secret can re-derive the token to sign
//! webhooks (`X-Twilio-Signature` is keyed by the auth token).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use dialtone_events::payload::{AccountCreated, AccountTokenRotated, ApplicationConfig};
use dialtone_events::sid::AccountSid;
use dialtone_events::{
    EventLog, ExpectedVersion, LogError, NewEvent, Payload, Position, RecordedEvent,
};
use hmac::{KeyInit, Mac};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::projection::{decode, load_time, sql, store_time, Projection, ProjectionError};

type HmacSha256 = hmac::Hmac<Sha256>;

/// Derives an account's auth token: the first 32 hex digits of
/// `HMAC-SHA256(node_secret, "dialtone-auth-token:{account_sid}:{salt}")`.
pub fn derive_auth_token(node_secret: &[u8], account_sid: &str, salt: &str) -> String {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(node_secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(format!("dialtone-auth-token:{account_sid}:{salt}").as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut token = hex::encode(digest);
    token.truncate(32);
    token
}

/// Hex SHA-256 of a token: what events and the read model hold instead of the token.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh random salt (32 hex digits).
pub fn new_token_salt() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Creates an account: appends `dialtone.account.created` to a new `AC…` stream and returns
/// the SID and the auth token (shown once; only its hash and salt are in the log).
pub async fn create_account(
    log: &dyn EventLog,
    node_secret: &[u8],
    friendly_name: &str,
) -> Result<(AccountSid, String), LogError> {
    create_subaccount(log, node_secret, friendly_name, None)
        .await
        .map(|(sid, token, _)| (sid, token))
}

/// Creates an account owned by `owner` (a subaccount), or a top-level one: returns its SID,
/// its auth token (shown once) and the event's positions.
pub async fn create_subaccount(
    log: &dyn EventLog,
    node_secret: &[u8],
    friendly_name: &str,
    owner: Option<&str>,
) -> Result<(AccountSid, String, Vec<Position>), LogError> {
    let sid = AccountSid::generate();
    let salt = new_token_salt();
    let token = derive_auth_token(node_secret, sid.as_str(), &salt);
    let appended = log
        .append(
            sid.as_str(),
            ExpectedVersion::NoStream,
            vec![NewEvent::new(
                sid.as_str(),
                AccountCreated {
                    friendly_name: friendly_name.to_owned(),
                    owner_account_sid: owner.map(str::to_owned),
                    token_sha256: token_sha256(&token),
                    token_salt: salt,
                },
            )],
        )
        .await?;
    Ok((sid, token, appended.positions))
}

/// Gives an account a new auth token (a new salt); the old token stops working once the
/// projection has applied the event. Returns the new token.
pub async fn rotate_auth_token(
    log: &dyn EventLog,
    node_secret: &[u8],
    account: &AccountSid,
) -> Result<String, LogError> {
    let salt = new_token_salt();
    let token = derive_auth_token(node_secret, account.as_str(), &salt);
    log.append(
        account.as_str(),
        ExpectedVersion::Any,
        vec![NewEvent::new(
            account.as_str(),
            AccountTokenRotated {
                token_sha256: token_sha256(&token),
                token_salt: salt,
            },
        )],
    )
    .await?;
    Ok(token)
}

/// An account as the directory knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountEntry {
    pub sid: String,
    pub friendly_name: String,
    pub token_sha256: String,
    pub token_salt: String,
    /// `active`, `suspended` or `closed`.
    pub status: String,
    /// The parent account, for a subaccount.
    pub owner_account_sid: Option<String>,
    /// Its API keys (not deleted), oldest first.
    pub keys: Vec<ApiKey>,
    /// Its TwiML Applications (not deleted), oldest first.
    pub applications: Vec<Application>,
    pub date_created: OffsetDateTime,
    pub date_updated: OffsetDateTime,
}

/// An API key (`SK…`): Basic auth with its SID and secret works as the account's own
/// credentials do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub sid: String,
    pub friendly_name: String,
    pub secret_sha256: String,
    pub date_created: OffsetDateTime,
    pub date_updated: OffsetDateTime,
}

/// A TwiML Application (`AP…`): voice (and SMS) URLs that numbers and outbound calls can
/// name instead of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub sid: String,
    pub config: ApplicationConfig,
    pub date_created: OffsetDateTime,
    pub date_updated: OffsetDateTime,
}

impl AccountEntry {
    /// The application `sid` of this account.
    pub fn application(&self, sid: &str) -> Option<&Application> {
        self.applications.iter().find(|a| a.sid == sid)
    }
}

/// Account statuses (Twilio's).
pub const ACTIVE: &str = "active";
pub const SUSPENDED: &str = "suspended";
pub const CLOSED: &str = "closed";

/// A new API key secret: 32 hex digits of randomness (Twilio's secrets are 32 characters).
/// Shown once; the log keeps its [`token_sha256`].
pub fn new_api_key_secret() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

impl AccountEntry {
    /// Re-derives the account's auth token (to sign webhooks).
    pub fn auth_token(&self, node_secret: &[u8]) -> String {
        derive_auth_token(node_secret, &self.sid, &self.token_salt)
    }
}

/// Accounts by SID, kept live by [`AccountsProjection`]. Cheap to clone and to read from
/// many threads.
#[derive(Clone, Default)]
pub struct AccountDirectory {
    inner: Arc<RwLock<HashMap<String, Arc<AccountEntry>>>>,
    /// API key SID → its account's SID.
    keys: Arc<RwLock<HashMap<String, String>>>,
}

/// Hash compared against when the account is unknown, so that the time to reject does not
/// reveal whether an account exists.
const NO_ACCOUNT_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl AccountDirectory {
    pub fn get(&self, sid: &str) -> Option<Arc<AccountEntry>> {
        self.inner.read().ok()?.get(sid).cloned()
    }

    /// The account whose credentials `user:password` are: its SID and auth token, or one of
    /// its API keys' SID and secret (constant-time comparison of the hashes). Accounts of any
    /// status: what a closed or suspended one may do is the caller's rule.
    pub fn authenticate(&self, user: &str, password: &str) -> Option<Arc<AccountEntry>> {
        if user.starts_with("SK") {
            return self.authenticate_key(user, password);
        }
        let entry = self.get(user);
        let expected = entry
            .as_ref()
            .map(|e| e.token_sha256.as_str())
            .unwrap_or(NO_ACCOUNT_HASH);
        let presented = token_sha256(password);
        let equal: bool = presented.as_bytes().ct_eq(expected.as_bytes()).into();
        if equal {
            entry
        } else {
            None
        }
    }

    fn authenticate_key(&self, key_sid: &str, secret: &str) -> Option<Arc<AccountEntry>> {
        let account = self
            .keys
            .read()
            .ok()
            .and_then(|keys| keys.get(key_sid).cloned())
            .and_then(|account| self.get(&account));
        let expected = account
            .as_ref()
            .and_then(|a| a.keys.iter().find(|k| k.sid == key_sid))
            .map(|k| k.secret_sha256.clone())
            .unwrap_or_else(|| NO_ACCOUNT_HASH.to_owned());
        let equal: bool = token_sha256(secret)
            .as_bytes()
            .ct_eq(expected.as_bytes())
            .into();
        if equal {
            account
        } else {
            None
        }
    }

    /// `owner`'s subaccounts, oldest first.
    pub fn subaccounts_of(&self, owner: &str) -> Vec<Arc<AccountEntry>> {
        let mut subaccounts: Vec<Arc<AccountEntry>> = self
            .inner
            .read()
            .map(|m| {
                m.values()
                    .filter(|a| a.owner_account_sid.as_deref() == Some(owner))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        subaccounts.sort_by(|a, b| (a.date_created, &a.sid).cmp(&(b.date_created, &b.sid)));
        subaccounts
    }

    pub fn len(&self) -> usize {
        self.inner.read().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn replace_all(&self, entries: Vec<AccountEntry>) {
        if let (Ok(mut map), Ok(mut keys)) = (self.inner.write(), self.keys.write()) {
            map.clear();
            keys.clear();
            for entry in entries {
                index_keys(&mut keys, &entry);
                map.insert(entry.sid.clone(), Arc::new(entry));
            }
        }
    }

    fn upsert(&self, entries: impl IntoIterator<Item = AccountEntry>) {
        if let (Ok(mut map), Ok(mut keys)) = (self.inner.write(), self.keys.write()) {
            for entry in entries {
                keys.retain(|_, account| *account != entry.sid);
                index_keys(&mut keys, &entry);
                map.insert(entry.sid.clone(), Arc::new(entry));
            }
        }
    }
}

fn index_keys(keys: &mut HashMap<String, String>, entry: &AccountEntry) {
    for key in &entry.keys {
        keys.insert(key.sid.clone(), entry.sid.clone());
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (
    sid           TEXT PRIMARY KEY,
    friendly_name TEXT NOT NULL,
    token_sha256  TEXT NOT NULL,
    token_salt    TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'active',
    owner_account_sid TEXT,
    version       INTEGER NOT NULL,
    date_created  TEXT NOT NULL,
    date_updated  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    sid           TEXT PRIMARY KEY,
    account_sid   TEXT NOT NULL,
    friendly_name TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    date_created  TEXT NOT NULL,
    date_updated  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS api_keys_by_account ON api_keys (account_sid, date_created);
CREATE TABLE IF NOT EXISTS applications (
    sid                   TEXT PRIMARY KEY,
    account_sid           TEXT NOT NULL,
    config                TEXT NOT NULL,
    date_created          TEXT NOT NULL,
    date_updated          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS applications_by_account ON applications (account_sid, date_created);
";

/// Projects `dialtone.account.*` into `accounts` and the [`AccountDirectory`].
pub struct AccountsProjection {
    directory: AccountDirectory,
    staged: Vec<AccountEntry>,
}

impl AccountsProjection {
    pub fn new(directory: AccountDirectory) -> AccountsProjection {
        AccountsProjection {
            directory,
            staged: Vec::new(),
        }
    }
}

fn row_to_entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<(AccountEntry, String, String)> {
    Ok((
        AccountEntry {
            sid: row.get(0)?,
            friendly_name: row.get(1)?,
            token_sha256: row.get(2)?,
            token_salt: row.get(3)?,
            status: row.get(6)?,
            owner_account_sid: row.get(7)?,
            keys: Vec::new(),
            applications: Vec::new(),
            date_created: OffsetDateTime::UNIX_EPOCH,
            date_updated: OffsetDateTime::UNIX_EPOCH,
        },
        row.get(4)?,
        row.get(5)?,
    ))
}

fn with_times(
    (mut entry, created, updated): (AccountEntry, String, String),
) -> Result<AccountEntry, ProjectionError> {
    entry.date_created = load_time("accounts", &created)?;
    entry.date_updated = load_time("accounts", &updated)?;
    Ok(entry)
}

const SELECT: &str = "SELECT sid, friendly_name, token_sha256, token_salt, date_created, date_updated, status, owner_account_sid FROM accounts";

/// The API keys of `account`, oldest first.
fn keys_of(conn: &Connection, account: &str) -> Result<Vec<ApiKey>, ProjectionError> {
    let raw = conn
        .prepare_cached(
            "SELECT sid, friendly_name, secret_sha256, date_created, date_updated FROM api_keys
             WHERE account_sid = ?1 ORDER BY date_created, sid",
        )
        .and_then(|mut s| {
            s.query_map([account], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(sql("reading API keys"))?;
    raw.into_iter()
        .map(|(sid, friendly_name, secret_sha256, created, updated)| {
            Ok(ApiKey {
                sid,
                friendly_name,
                secret_sha256,
                date_created: load_time("api_keys", &created)?,
                date_updated: load_time("api_keys", &updated)?,
            })
        })
        .collect()
}

/// The applications of `account`, oldest first.
fn applications_of(conn: &Connection, account: &str) -> Result<Vec<Application>, ProjectionError> {
    let raw = conn
        .prepare_cached(
            "SELECT sid, config, date_created, date_updated FROM applications
             WHERE account_sid = ?1 ORDER BY date_created, sid",
        )
        .and_then(|mut s| {
            s.query_map([account], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(sql("reading applications"))?;
    raw.into_iter()
        .map(|(sid, config, created, updated)| {
            Ok(Application {
                config: serde_json::from_str(&config).map_err(|e| ProjectionError::CorruptRow {
                    table: "applications",
                    message: format!("application {sid}: {e}"),
                })?,
                sid,
                date_created: load_time("applications", &created)?,
                date_updated: load_time("applications", &updated)?,
            })
        })
        .collect()
}

fn with_keys(conn: &Connection, mut entry: AccountEntry) -> Result<AccountEntry, ProjectionError> {
    entry.keys = keys_of(conn, &entry.sid)?;
    entry.applications = applications_of(conn, &entry.sid)?;
    Ok(entry)
}

/// One account from the read model.
pub fn get_account(conn: &Connection, sid: &str) -> Result<Option<AccountEntry>, ProjectionError> {
    conn.query_row(&format!("{SELECT} WHERE sid = ?1"), [sid], row_to_entry)
        .optional()
        .map_err(sql("reading an account"))?
        .map(|raw| with_keys(conn, with_times(raw)?))
        .transpose()
}

/// Every account, oldest first.
pub fn list_accounts(conn: &Connection) -> Result<Vec<AccountEntry>, ProjectionError> {
    let mut stmt = conn
        .prepare(&format!("{SELECT} ORDER BY date_created, sid"))
        .map_err(sql("listing accounts"))?;
    let rows = stmt
        .query_map([], row_to_entry)
        .map_err(sql("listing accounts"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql("listing accounts"))?;
    rows.into_iter()
        .map(|raw| with_keys(conn, with_times(raw)?))
        .collect()
}

fn encode_application(config: &ApplicationConfig) -> Result<String, ProjectionError> {
    serde_json::to_string(config).map_err(|e| ProjectionError::CorruptRow {
        table: "applications",
        message: format!("cannot encode an application: {e}"),
    })
}

/// The account's stream version, which every write to the stream checks against.
fn bump_version(tx: &Transaction<'_>, account: &str, sequence: u64) -> Result<(), ProjectionError> {
    tx.prepare_cached("UPDATE accounts SET version = ?2 WHERE sid = ?1")
        .and_then(|mut s| s.execute(params![account, sequence]))
        .map_err(sql("recording an account's version"))
        .map(|_| ())
}

impl Projection for AccountsProjection {
    fn name(&self) -> &'static str {
        "accounts"
    }

    fn version(&self) -> u32 {
        4
    }

    fn tables(&self) -> &'static [&'static str] {
        &["accounts", "api_keys", "applications"]
    }

    fn init(&self, tx: &Transaction<'_>) -> Result<(), ProjectionError> {
        tx.execute_batch(SCHEMA).map_err(sql("creating accounts"))
    }

    fn wants(&self, event_type: &str) -> bool {
        event_type.starts_with("dialtone.account.")
    }

    fn apply(
        &mut self,
        recorded: &RecordedEvent,
        tx: &Transaction<'_>,
    ) -> Result<(), ProjectionError> {
        let event = &recorded.event;
        let time = store_time(event.time);
        match decode(recorded) {
            Some(Payload::AccountCreated(created)) => {
                tx.prepare_cached(
                    "INSERT INTO accounts (sid, friendly_name, token_sha256, token_salt, version, date_created, date_updated, owner_account_sid)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)
                     ON CONFLICT (sid) DO NOTHING",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        event.subject,
                        created.friendly_name,
                        created.token_sha256,
                        created.token_salt,
                        event.sequence,
                        time,
                        created.owner_account_sid
                    ])
                })
                .map_err(sql("inserting an account"))?;
            }
            Some(Payload::AccountTokenRotated(rotated)) => {
                tx.prepare_cached(
                    "UPDATE accounts SET token_sha256 = ?2, token_salt = ?3, version = ?4, date_updated = ?5
                     WHERE sid = ?1",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        event.subject,
                        rotated.token_sha256,
                        rotated.token_salt,
                        event.sequence,
                        time
                    ])
                })
                .map_err(sql("rotating an account token"))?;
            }
            Some(Payload::AccountUpdated(updated)) => {
                tx.prepare_cached(
                    "UPDATE accounts SET friendly_name = COALESCE(?2, friendly_name),
                        status = CASE WHEN status = 'closed' THEN status ELSE COALESCE(?3, status) END,
                        version = ?4, date_updated = ?5
                     WHERE sid = ?1",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        event.subject,
                        updated.friendly_name,
                        updated.status,
                        event.sequence,
                        time
                    ])
                })
                .map_err(sql("updating an account"))?;
            }
            Some(Payload::ApiKeyCreated(key)) => {
                tx.prepare_cached(
                    "INSERT INTO api_keys (sid, account_sid, friendly_name, secret_sha256, date_created, date_updated)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT (sid) DO NOTHING",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        key.key_sid,
                        event.subject,
                        key.friendly_name,
                        key.secret_sha256,
                        time
                    ])
                })
                .map_err(sql("creating an API key"))?;
                bump_version(tx, &event.subject, event.sequence)?;
            }
            Some(Payload::ApiKeyUpdated(key)) => {
                tx.prepare_cached(
                    "UPDATE api_keys SET friendly_name = ?3, date_updated = ?4
                     WHERE sid = ?1 AND account_sid = ?2",
                )
                .and_then(|mut s| {
                    s.execute(params![key.key_sid, event.subject, key.friendly_name, time])
                })
                .map_err(sql("updating an API key"))?;
                bump_version(tx, &event.subject, event.sequence)?;
            }
            Some(Payload::ApplicationCreated(created)) => {
                let config = encode_application(&created.config)?;
                tx.prepare_cached(
                    "INSERT INTO applications (sid, account_sid, config, date_created, date_updated)
                     VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (sid) DO NOTHING",
                )
                .and_then(|mut s| {
                    s.execute(params![created.application_sid, event.subject, config, time])
                })
                .map_err(sql("creating an application"))?;
                bump_version(tx, &event.subject, event.sequence)?;
            }
            Some(Payload::ApplicationUpdated(updated)) => {
                let config = encode_application(&updated.config)?;
                tx.prepare_cached(
                    "UPDATE applications SET config = ?3, date_updated = ?4
                     WHERE sid = ?1 AND account_sid = ?2",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        updated.application_sid,
                        event.subject,
                        config,
                        time
                    ])
                })
                .map_err(sql("updating an application"))?;
                bump_version(tx, &event.subject, event.sequence)?;
            }
            Some(Payload::ApplicationDeleted(deleted)) => {
                tx.prepare_cached("DELETE FROM applications WHERE sid = ?1 AND account_sid = ?2")
                    .and_then(|mut s| s.execute(params![deleted.application_sid, event.subject]))
                    .map_err(sql("deleting an application"))?;
                bump_version(tx, &event.subject, event.sequence)?;
            }
            // Billing facts on the account's stream (the billing projection keeps them): the
            // stream's version moves on all the same.
            Some(Payload::AccountCredited(_)) | Some(Payload::AccountBillingPlanSet(_)) => {
                bump_version(tx, &event.subject, event.sequence)?;
            }
            Some(Payload::ApiKeyDeleted(key)) => {
                tx.prepare_cached("DELETE FROM api_keys WHERE sid = ?1 AND account_sid = ?2")
                    .and_then(|mut s| s.execute(params![key.key_sid, event.subject]))
                    .map_err(sql("deleting an API key"))?;
                bump_version(tx, &event.subject, event.sequence)?;
            }
            _ => return Ok(()),
        }
        if let Some(entry) = get_account(tx, &event.subject)? {
            self.staged.push(entry);
        }
        Ok(())
    }

    fn load(&mut self, conn: &Connection) -> Result<(), ProjectionError> {
        self.directory.replace_all(list_accounts(conn)?);
        Ok(())
    }

    fn after_commit(&mut self) {
        if !self.staged.is_empty() {
            self.directory.upsert(self.staged.drain(..));
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
    fn tokens_are_derived_deterministically_and_differ_per_salt() {
        let sid = "AC0123456789abcdef0123456789abcdef";
        let a = derive_auth_token(b"secret", sid, "salt-1");
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a, derive_auth_token(b"secret", sid, "salt-1"));
        assert_ne!(a, derive_auth_token(b"secret", sid, "salt-2"));
        assert_ne!(a, derive_auth_token(b"other", sid, "salt-1"));
    }

    #[test]
    fn token_derivation_matches_hmac_sha256() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut mac = HmacSha256::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            token_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn directory_authenticates_only_the_right_token() {
        let dir = AccountDirectory::default();
        let sid = "AC0123456789abcdef0123456789abcdef".to_owned();
        dir.upsert([AccountEntry {
            sid: sid.clone(),
            friendly_name: "a".into(),
            token_sha256: token_sha256("tok"),
            token_salt: "s".into(),
            status: ACTIVE.into(),
            owner_account_sid: None,
            applications: Vec::new(),
            keys: vec![ApiKey {
                sid: "SK01".into(),
                friendly_name: "ci".into(),
                secret_sha256: token_sha256("key-secret"),
                date_created: OffsetDateTime::UNIX_EPOCH,
                date_updated: OffsetDateTime::UNIX_EPOCH,
            }],
            date_created: OffsetDateTime::UNIX_EPOCH,
            date_updated: OffsetDateTime::UNIX_EPOCH,
        }]);
        assert!(dir.authenticate(&sid, "tok").is_some());
        assert!(dir.authenticate(&sid, "tok2").is_none());
        assert!(dir.authenticate("ACnope", "tok").is_none());
        // An API key authenticates as its account; its secret only, not the token.
        assert_eq!(dir.authenticate("SK01", "key-secret").unwrap().sid, sid);
        assert!(dir.authenticate("SK01", "tok").is_none());
        assert!(dir.authenticate("SK02", "key-secret").is_none());
        // Deleted (the account upserted without it): it no longer authenticates.
        let mut without = (*dir.get(&sid).unwrap()).clone();
        without.keys.clear();
        dir.upsert([without]);
        assert!(dir.authenticate("SK01", "key-secret").is_none());
    }
}

//! What every call on this node shares: the log, the directories, the media runtime, the SIP
//! endpoint, the webhook client, trunks, and the registry of live calls.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use dialtone_events::sid::RecordingSid;
use dialtone_events::EventLog;
use dialtone_media::runtime::MediaRuntime;
use dialtone_projections::{AccountDirectory, NumberDirectory, ReadModels};
use dialtone_sip::endpoint::SipEndpoint;
use dialtone_sip::trunk::TrunksConfig;
use dialtone_voice::interpreter::InterpreterConfig;
use dialtone_voice::webhook::{CallSession, WebhookClient};

use crate::roles::conference::Conferences;
use crate::roles::pacing::Pacer;
use crate::roles::registry::CallRegistry;

pub struct Node {
    pub log: Arc<dyn EventLog>,
    pub numbers: NumberDirectory,
    pub accounts: AccountDirectory,
    pub secret: Arc<Vec<u8>>,
    pub media: Arc<MediaRuntime>,
    pub sip: SipEndpoint,
    pub public_ip: IpAddr,
    pub node_id: String,
    pub webhooks: WebhookClient,
    pub interpreter: InterpreterConfig,
    pub recordings_dir: PathBuf,
    pub registry: CallRegistry,
    pub trunks: TrunksConfig,
    pub conferences: Conferences,
    /// Per-account pacing of REST-originated calls.
    pub pacer: Pacer,
    /// This node's read models (which nodes are alive, which rooms are open where,
    /// balances).
    pub read_models: ReadModels,
    /// The configured prices (published tables are in the read models).
    pub rates: Arc<dialtone_projections::billing::RateTable>,
}

impl Node {
    /// A webhook session signed with `account`'s auth token, or `None` when the account is
    /// unknown here.
    pub fn webhook_session(&self, account: &str) -> Option<CallSession> {
        let entry = self.accounts.get(account)?;
        Some(self.webhooks.session(entry.auth_token(&self.secret)))
    }

    /// `path` relative to the data dir, as recording events store it.
    pub fn relative_path(&self, path: &std::path::Path) -> String {
        let root = self.recordings_dir.parent().unwrap_or(&self.recordings_dir);
        path.strip_prefix(root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }
}

/// Twilio's `RecordingUrl`.
pub fn recording_url(api_base_url: &str, account: &str, recording: &RecordingSid) -> String {
    format!(
        "{}/2010-04-01/Accounts/{account}/Recordings/{recording}",
        api_base_url.trim_end_matches('/')
    )
}

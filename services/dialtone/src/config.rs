//! Configuration of `dialtone serve`: defaults, then a TOML file, then environment variables
//! and flags (flags and env win). Every setting has all three forms, e.g. `sip_addr` in the
//! file, `DIALTONE_SIP_ADDR` in the environment and `--sip-addr` on the command line.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

/// Flags of `serve` (each also read from its environment variable).
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "DIALTONE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory: embedded log, read models, recordings, secret.
    #[arg(long, env = "DIALTONE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Event log: `sqlite` (embedded, default) or `kafka://HOST:PORT[,HOST:PORT…]`.
    #[arg(long, env = "DIALTONE_LOG")]
    pub log: Option<String>,
    /// SIP listen address (UDP and TCP).
    #[arg(long, env = "DIALTONE_SIP_ADDR")]
    pub sip_addr: Option<SocketAddr>,
    /// HTTP listen address (REST API, metrics, health).
    #[arg(long, env = "DIALTONE_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// RTP port range, e.g. `20000-29999`.
    #[arg(long, env = "DIALTONE_RTP_PORTS")]
    pub rtp_ports: Option<String>,
    /// Address put in SDP and Contact headers (default: the address of the outgoing
    /// interface).
    #[arg(long, env = "DIALTONE_PUBLIC_IP")]
    pub public_ip: Option<IpAddr>,
    /// Base URL at which the API is reachable from applications (for RecordingUrl etc.).
    #[arg(long, env = "DIALTONE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// This node's id (the `source` of its events; owner of its calls).
    #[arg(long, env = "DIALTONE_NODE_ID")]
    pub node_id: Option<String>,
    /// Role groups to run, comma-separated: `edge,voice,media` (one group: SIP, media,
    /// calls), `api`, `callbacks` (Event Streams sinks), `projector`, or `all` (default).
    #[arg(long, env = "DIALTONE_ROLES")]
    pub roles: Option<String>,
    /// Read models: `sqlite` (embedded, default: each node's own) or
    /// `postgres://USER@HOST:PORT/DB` (projector nodes also write them into this shared
    /// PostgreSQL database, for billing teams' SQL; see docs/read-models.md).
    #[arg(long, env = "DIALTONE_READ_MODELS")]
    pub read_models: Option<String>,
}

/// The effective configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    pub log: String,
    pub kafka: KafkaSettings,
    pub sip_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub rtp_ports: String,
    pub public_ip: Option<IpAddr>,
    pub public_url: Option<String>,
    pub node_id: String,
    /// Role groups of this process (see `--roles`).
    pub roles: String,
    /// `sqlite` or a `postgres://…` URL (see `--read-models`).
    pub read_models: String,
    pub billing: BillingSettings,
    pub webhooks: WebhookSettings,
    pub media: MediaSettings,
    pub sip: SipSettings,
    /// Carriers: `[[trunks.inbound]]` (allowed sources) and `[[trunks.outbound]]` (where
    /// `<Number>` dials and REST calls to numbers go).
    pub trunks: dialtone_sip::trunk::TrunksConfig,
    pub outbound: OutboundSettings,
    /// The number inventory accounts buy from.
    pub numbers: NumbersSettings,
    /// The live event stream API.
    pub streams: StreamsSettings,
    /// Webhook sinks (Event Streams).
    pub sinks: SinksSettings,
    /// Liveness of the nodes sharing a log.
    pub cluster: ClusterSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// How often this node heartbeats on the log.
    pub heartbeat_ms: u64,
    /// How long a heartbeat vouches for a node: past it, other nodes end its calls.
    pub lease_ms: u64,
}

impl Default for ClusterSettings {
    fn default() -> ClusterSettings {
        ClusterSettings {
            heartbeat_ms: 2_000,
            lease_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinksSettings {
    /// Deliver sinks from this node (one node of a cluster: a sink's deliveries have a single
    /// writer).
    pub enabled: bool,
    /// Wait before the second attempt of a failed batch; each further wait doubles.
    pub retry_initial_ms: u64,
    /// Longest wait between two attempts.
    pub retry_max_ms: u64,
    /// Attempts per batch, the first included; then the batch is given up (recorded).
    pub max_attempts: u32,
    /// Time limit of one request.
    pub timeout_ms: u64,
    /// Events per request at most.
    pub batch_events: usize,
}

impl Default for SinksSettings {
    fn default() -> SinksSettings {
        SinksSettings {
            enabled: true,
            retry_initial_ms: 1_000,
            retry_max_ms: 300_000,
            max_attempts: 10,
            timeout_ms: 5_000,
            batch_events: 100,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamsSettings {
    /// Events kept per account for live subscribers: how far a client may fall behind before
    /// it is cut off with the position to resume from.
    pub buffer: usize,
    /// Seconds between heartbeat comments of the event stream.
    pub heartbeat_seconds: f64,
}

impl Default for StreamsSettings {
    fn default() -> StreamsSettings {
        StreamsSettings {
            buffer: 10_000,
            heartbeat_seconds: 15.0,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipSettings {
    /// With inbound trunks configured, these numbers still take calls from any source.
    pub open_numbers: Vec<String>,
    /// Limits past which new INVITEs get 503 with Retry-After (`max_calls`,
    /// `max_server_transactions`, `per_source_cps`, `per_source_burst`, …).
    pub overload: dialtone_sip::overload::OverloadConfig,
    /// SIP over TCP on the same address as UDP (`enabled`, `max_connections`, …).
    pub tcp: dialtone_sip::endpoint::TcpConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundSettings {
    /// REST-created calls per second per account (Twilio's default is 1); excess calls wait
    /// in `queued`.
    pub calls_per_second: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NumbersSettings {
    /// Accounts may buy only numbers of the inventory (`dialtone numbers import`), as on a
    /// platform selling numbers to customers. Off (the default), any E.164 number may be
    /// provisioned too, as on a private PBX; inventory numbers are still searched and sold
    /// from the inventory.
    pub inventory_only: bool,
    /// Days a released number of the inventory ages before it is sold again.
    pub release_aging_days: u32,
}

impl Default for NumbersSettings {
    fn default() -> NumbersSettings {
        NumbersSettings {
            inventory_only: false,
            release_aging_days: 30,
        }
    }
}

impl Default for OutboundSettings {
    fn default() -> OutboundSettings {
        OutboundSettings {
            calls_per_second: 1.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaSettings {
    /// Send RTP to where the caller's RTP comes from rather than to the SDP address (for
    /// callers behind NAT). Turn off to honour SDP strictly.
    pub symmetric_rtp: bool,
    /// Playout threads.
    pub engine_threads: usize,
}

impl Default for MediaSettings {
    fn default() -> MediaSettings {
        MediaSettings {
            symmetric_rtp: true,
            engine_threads: 1,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    pub topic_prefix: String,
    pub partitions: i32,
}

/// Prices per started minute, by usage category, as decimal strings (`"0.0085"`): parsed
/// into integer micro-units, never floats.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BillingSettings {
    pub currency: String,
    pub per_minute: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    pub connect_timeout_ms: u64,
    pub read_timeout_ms: u64,
    pub retries: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from("./dialtone-data"),
            log: "sqlite".into(),
            kafka: KafkaSettings::default(),
            sip_addr: "0.0.0.0:5060".parse().expect("valid default"),
            http_addr: "127.0.0.1:8080".parse().expect("valid default"),
            rtp_ports: "20000-29999".into(),
            public_ip: None,
            public_url: None,
            node_id: "node-1".into(),
            roles: "all".into(),
            read_models: "sqlite".into(),
            billing: BillingSettings::default(),
            webhooks: WebhookSettings::default(),
            media: MediaSettings::default(),
            sip: SipSettings::default(),
            trunks: dialtone_sip::trunk::TrunksConfig::default(),
            outbound: OutboundSettings::default(),
            numbers: NumbersSettings::default(),
            streams: StreamsSettings::default(),
            sinks: SinksSettings::default(),
            cluster: ClusterSettings::default(),
        }
    }
}

impl Default for KafkaSettings {
    fn default() -> KafkaSettings {
        KafkaSettings {
            topic_prefix: "dialtone".into(),
            partitions: 8,
        }
    }
}

impl Default for BillingSettings {
    fn default() -> BillingSettings {
        // Twilio's list prices for US local numbers, as a starting point.
        let per_minute = [("calls-inbound", "0.0085"), ("calls-outbound", "0.0140")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        BillingSettings {
            currency: "USD".into(),
            per_minute,
        }
    }
}

impl Default for WebhookSettings {
    fn default() -> WebhookSettings {
        WebhookSettings {
            connect_timeout_ms: 5_000,
            read_timeout_ms: 15_000,
            retries: 1,
        }
    }
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid RTP port range {0:?}: expected LOW-HIGH with 1024 <= LOW < HIGH")]
    RtpPorts(String),
    #[error("invalid --read-models {0:?}: expected `sqlite` or `postgres://USER@HOST:PORT/DB`")]
    ReadModels(String),
    #[error("invalid --log {0:?}: expected `sqlite` or `kafka://HOST:PORT[,HOST:PORT…]`")]
    Log(String),
    #[error("invalid trunks: {0}")]
    Trunks(dialtone_sip::trunk::TrunkError),
    #[error("invalid roles: {0}")]
    Roles(#[from] crate::roles_config::RolesError),
    #[error("invalid price {value:?} for {category}: expected a decimal like 0.0085 with at most 6 decimals")]
    Price { category: String, value: String },
}

/// Which event log to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogBackend {
    Sqlite,
    Kafka { brokers: String },
}

impl Config {
    /// The role groups this process runs.
    pub fn roles(&self) -> Result<crate::roles_config::Roles, ConfigError> {
        Ok(crate::roles_config::Roles::parse(&self.roles)?)
    }

    /// Defaults ← file ← env/flags.
    pub fn load(args: &ServeArgs) -> Result<Config, ConfigError> {
        let mut config = match &args.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        let ServeArgs {
            config: _,
            data_dir,
            log,
            sip_addr,
            http_addr,
            rtp_ports,
            public_ip,
            public_url,
            node_id,
            roles,
            read_models,
        } = args.clone();
        if let Some(v) = data_dir {
            config.data_dir = v;
        }
        if let Some(v) = log {
            config.log = v;
        }
        if let Some(v) = sip_addr {
            config.sip_addr = v;
        }
        if let Some(v) = http_addr {
            config.http_addr = v;
        }
        if let Some(v) = rtp_ports {
            config.rtp_ports = v;
        }
        if public_ip.is_some() {
            config.public_ip = public_ip;
        }
        if public_url.is_some() {
            config.public_url = public_url;
        }
        if let Some(v) = node_id {
            config.node_id = v;
        }
        if let Some(v) = roles {
            config.roles = v;
        }
        if let Some(v) = read_models {
            config.read_models = v;
        }
        config.roles()?;
        config.shared_read_models()?;
        config.rtp_port_range()?;
        config.log_backend()?;
        config.rates_micros()?;
        config.trunks.validate().map_err(ConfigError::Trunks)?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    pub fn rtp_port_range(&self) -> Result<RangeInclusive<u16>, ConfigError> {
        let bad = || ConfigError::RtpPorts(self.rtp_ports.clone());
        let (low, high) = self.rtp_ports.split_once('-').ok_or_else(bad)?;
        let low: u16 = low.trim().parse().map_err(|_| bad())?;
        let high: u16 = high.trim().parse().map_err(|_| bad())?;
        if low < 1024 || low >= high {
            return Err(bad());
        }
        Ok(low..=high)
    }

    pub fn log_backend(&self) -> Result<LogBackend, ConfigError> {
        if self.log == "sqlite" {
            return Ok(LogBackend::Sqlite);
        }
        match self.log.strip_prefix("kafka://") {
            Some(brokers) if !brokers.is_empty() => Ok(LogBackend::Kafka {
                brokers: brokers.to_owned(),
            }),
            _ => Err(ConfigError::Log(self.log.clone())),
        }
    }

    /// The PostgreSQL database the read models are shared in, if any (`None`: embedded
    /// SQLite only).
    pub fn shared_read_models(&self) -> Result<Option<&str>, ConfigError> {
        let url = self.read_models.trim();
        if url.eq_ignore_ascii_case("sqlite") {
            return Ok(None);
        }
        let is_postgres = ["postgres://", "postgresql://"]
            .iter()
            .any(|scheme| url.len() > scheme.len() && url.starts_with(scheme));
        if is_postgres {
            Ok(Some(url))
        } else {
            Err(ConfigError::ReadModels(self.read_models.clone()))
        }
    }

    /// Per-minute prices in micro-units.
    pub fn rates_micros(&self) -> Result<BTreeMap<String, i64>, ConfigError> {
        self.billing
            .per_minute
            .iter()
            .map(|(category, value)| {
                dialtone_projections::billing::parse_micros(value)
                    .map(|micros| (category.clone(), micros))
                    .ok_or_else(|| ConfigError::Price {
                        category: category.clone(),
                        value: value.clone(),
                    })
            })
            .collect()
    }

    /// The configured prices: what legs no published table prices are billed at.
    pub fn rate_table(&self) -> Result<dialtone_projections::RateTable, ConfigError> {
        Ok(dialtone_projections::RateTable {
            currency: self.billing.currency.to_ascii_uppercase(),
            per_minute_micros: self.rates_micros()?,
            by_prefix: Default::default(),
        })
    }

    /// The address to advertise in SDP and SIP headers.
    pub fn advertised_ip(&self) -> IpAddr {
        if let Some(ip) = self.public_ip {
            return ip;
        }
        if !self.sip_addr.ip().is_unspecified() {
            return self.sip_addr.ip();
        }
        outgoing_interface_ip().unwrap_or(IpAddr::from([127, 0, 0, 1]))
    }

    /// Base URL of the API as applications see it.
    pub fn public_base_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.http_addr),
        }
    }
}

/// The local address the kernel would use to reach the outside world (no packet is sent).
fn outgoing_interface_ip() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    Some(socket.local_addr().ok()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dialtone.toml");
        std::fs::write(
            &file,
            "sip_addr = \"127.0.0.1:5070\"\nrtp_ports = \"30000-30100\"\n[billing.per_minute]\ncalls-inbound = \"0.01\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file),
            rtp_ports: Some("40000-40010".into()),
            ..ServeArgs::default()
        };
        let config = Config::load(&args).unwrap();
        assert_eq!(config.sip_addr, "127.0.0.1:5070".parse().unwrap());
        assert_eq!(config.rtp_port_range().unwrap(), 40000..=40010);
        assert_eq!(config.http_addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.rates_micros().unwrap()["calls-inbound"], 10_000);
    }

    #[test]
    fn bad_settings_are_named() {
        let args = ServeArgs {
            rtp_ports: Some("5-3".into()),
            ..ServeArgs::default()
        };
        assert!(Config::load(&args)
            .unwrap_err()
            .to_string()
            .contains("RTP port range"));
        let args = ServeArgs {
            log: Some("mysql://x".into()),
            ..ServeArgs::default()
        };
        assert!(matches!(Config::load(&args), Err(ConfigError::Log(_))));
        let args = ServeArgs {
            read_models: Some("mysql://x".into()),
            ..ServeArgs::default()
        };
        assert!(matches!(
            Config::load(&args),
            Err(ConfigError::ReadModels(_))
        ));
        let args = ServeArgs {
            read_models: Some("postgres://dialtone@127.0.0.1:5432/dialtone".into()),
            ..ServeArgs::default()
        };
        assert_eq!(
            Config::load(&args).unwrap().shared_read_models().unwrap(),
            Some("postgres://dialtone@127.0.0.1:5432/dialtone")
        );
        assert_eq!(Config::default().shared_read_models().unwrap(), None);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "sip_adr = \"x\"\n").unwrap();
        let args = ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        };
        assert!(Config::load(&args)
            .unwrap_err()
            .to_string()
            .contains("sip_adr"));
    }

    #[test]
    fn kafka_urls() {
        let config = Config {
            log: "kafka://127.0.0.1:9092".into(),
            ..Config::default()
        };
        assert_eq!(
            config.log_backend().unwrap(),
            LogBackend::Kafka {
                brokers: "127.0.0.1:9092".into()
            }
        );
    }
}

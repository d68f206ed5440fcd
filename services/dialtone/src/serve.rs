//! `dialtone serve`: the role groups of `--roles` (all by default) in one process.
//!
//! Start-up order: the log, the projections (caught up, so the number and account
//! directories are complete), the first account on an empty data dir, metrics, liveness,
//! then per role: voice (status callbacks, media runtime, SIP edge, commands), callbacks
//! (sinks), api (event hub, HTTP API; other roles serve only `/healthz` and `/metrics`).
//! Shutdown (Ctrl-C or SIGTERM) drains: new INVITEs get 503, live calls get BYE and write
//! `call.completed`, then projections and the log stop.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dialtone_events::kafka::{KafkaConfig, KafkaLog};
use dialtone_events::sqlite::SqliteLog;
use dialtone_events::EventLog;
use dialtone_media::runtime::{MediaConfig, MediaRuntime};
use dialtone_projections::{
    create_account, replica_channel, standard_projections, AccountDirectory, NumberDirectory,
    ProjectionRunner, ReadModels, ReplicaConfig, ReplicaShipper, RunnerConfig,
};
use dialtone_sip::endpoint::{EndpointConfig, SipEndpoint};
use dialtone_streams::sinks::{RetryPolicy, SinkDeliverer, SinkDelivererConfig};
use dialtone_streams::{EventHub, HubConfig};
use dialtone_voice::callbacks::{CallbackDeliverer, DelivererConfig};
use dialtone_voice::interpreter::InterpreterConfig;
use dialtone_voice::webhook::{Timeouts, WebhookClient, WebhookConfig};

use crate::config::{Config, LogBackend, ServeArgs};
use crate::paths::DataDir;
use crate::roles::conference::Conferences;
use crate::roles::controller::NodeController;
use crate::roles::edge::Edge;
use crate::roles::liveness::{Liveness, LivenessConfig};
use crate::roles::node::Node;
use crate::roles::pacing::Pacer;
use crate::roles::registry::CallRegistry;

/// Committed batches that may wait for the PostgreSQL shipper; past that it copies.
const REPLICA_BUFFER: usize = 1024;

/// Opens the configured event log.
pub async fn open_log(config: &Config, data: &DataDir) -> anyhow::Result<Arc<dyn EventLog>> {
    Ok(match config.log_backend()? {
        LogBackend::Sqlite => Arc::new(
            SqliteLog::open(data.event_log(), &config.node_id)
                .with_context(|| format!("opening the event log {}", data.event_log().display()))?,
        ),
        LogBackend::Kafka { brokers } => {
            let mut kafka = KafkaConfig::new(brokers.clone(), config.node_id.clone());
            kafka.topic_prefix = config.kafka.topic_prefix.clone();
            kafka.partitions = config.kafka.partitions;
            Arc::new(
                KafkaLog::open(kafka)
                    .await
                    .with_context(|| format!("connecting to Kafka at {brokers}"))?,
            )
        }
    })
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args)?;
    let roles = config.roles()?;
    let data = DataDir::new(&config.data_dir);
    std::fs::create_dir_all(data.root())
        .with_context(|| format!("creating {}", data.root().display()))?;
    let secret = Arc::new(crate::secret::load_or_create(data.root())?);
    let log = open_log(&config, &data).await?;
    tracing::info!(backend = log.backend(), data_dir = %data.root().display(), node = %config.node_id, "event log open");

    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    for role in roles.names() {
        metrics::gauge!("dialtone_role", "role" => role).set(1.0);
    }

    // Projections, caught up before anything routes on them.
    let accounts = AccountDirectory::default();
    let numbers = NumberDirectory::default();
    let rates = config.rate_table()?;
    let projections = standard_projections(&accounts, &numbers, rates.clone());
    let mut runner_config = RunnerConfig::default();
    // Shared read models: a projector also writes its rows into PostgreSQL.
    let replica_feed = match config.shared_read_models()? {
        Some(url) if roles.projector => {
            let (capture, feed) = replica_channel(&projections, REPLICA_BUFFER);
            runner_config.replica = Some(capture);
            Some((url.to_owned(), feed))
        }
        _ => None,
    };
    let runner =
        ProjectionRunner::start(log.clone(), &data.read_models(), projections, runner_config)
            .await
            .context("starting the projections")?;
    let replica = replica_feed.map(|(url, feed)| {
        tracing::info!("sharing the read models in PostgreSQL");
        ReplicaShipper::start(
            ReplicaConfig::new(url, config.node_id.clone(), &data.read_models()),
            feed,
        )
    });
    runner
        .catch_up(log.as_ref())
        .await
        .context("catching up the projections")?;

    if accounts.is_empty() {
        let (sid, token) = create_account(log.as_ref(), &secret, "Default account").await?;
        runner.catch_up(log.as_ref()).await?;
        // Printed once, on the first start: the only time the token is shown.
        println!(
            "{}",
            serde_json::json!({ "account_sid": sid, "auth_token": token })
        );
        tracing::info!(account = %sid, "created the first account");
    }

    // Liveness: refuse a node id in use, end this node's calls of before a crash, then
    // heartbeat and watch for lost nodes.
    let liveness = Liveness::start(
        log.clone(),
        ReadModels::new(data.read_models()),
        runner.handle(),
        &config.node_id,
        roles.names().into_iter().map(str::to_owned).collect(),
        // Where other nodes link their callers to the rooms this node holds.
        roles.voice.then(|| room_link_address(&config)).flatten(),
        LivenessConfig {
            heartbeat: Duration::from_millis(config.cluster.heartbeat_ms.max(100)),
            lease: Duration::from_millis(
                config.cluster.lease_ms.max(config.cluster.heartbeat_ms * 2),
            ),
            check: Duration::from_millis(config.cluster.heartbeat_ms.max(100)),
            adopt: roles.voice,
        },
    )
    .await?;

    let voice = if roles.voice {
        Some(start_voice(&config, &data, &log, &secret, &accounts, &numbers, &runner).await?)
    } else {
        None
    };

    // The live event stream's fan-out, from the log's head on (the API's streams and the
    // sinks read it).
    let hub = EventHub::start(
        log.clone(),
        HubConfig {
            buffer: config.streams.buffer.max(1),
            ..HubConfig::default()
        },
    )
    .await
    .context("starting the event stream hub")?;

    // Webhook sinks, each resuming after its last recorded batch.
    let sinks = if roles.callbacks && config.sinks.enabled {
        let mut sink_config = SinkDelivererConfig::new(&secret);
        sink_config.retry = RetryPolicy {
            initial_delay: Duration::from_millis(config.sinks.retry_initial_ms),
            factor: 2.0,
            max_delay: Duration::from_millis(config.sinks.retry_max_ms),
            max_attempts: config.sinks.max_attempts.max(1),
        };
        sink_config.timeout = Duration::from_millis(config.sinks.timeout_ms.max(1));
        sink_config.max_batch_events = config.sinks.batch_events.max(1);
        Some(
            SinkDeliverer::start(
                hub.clone(),
                ReadModels::new(data.read_models()),
                runner.handle(),
                accounts.clone(),
                sink_config,
            )
            .context("starting the sink deliverer")?,
        )
    } else {
        None
    };

    // HTTP API.
    let state = dialtone_api::ApiState::new(
        log.clone(),
        ReadModels::new(data.read_models()),
        accounts.clone(),
        numbers.clone(),
        runner.handle(),
        config.node_id.clone(),
    )
    .with_metrics(metrics)
    .with_rate_table(rates.clone())
    .with_data_dir(data.root())
    .with_public_url(&config.public_base_url())
    .with_call_controller(Arc::new(match &voice {
        Some(voice) => NodeController::voice(voice.node.clone()),
        None => NodeController::remote(log.clone(), ReadModels::new(data.read_models())),
    }))
    .with_event_hub(hub.clone())
    .with_roles(&roles.to_string())
    .with_node_secret(secret.clone())
    .with_number_policy(dialtone_api::NumberPolicy {
        inventory_only: config.numbers.inventory_only,
        release_aging: time::Duration::days(i64::from(config.numbers.release_aging_days)),
    })
    .with_stream_heartbeat(Duration::from_secs_f64(
        config.streams.heartbeat_seconds.clamp(0.05, 3600.0),
    ));
    let state = match &replica {
        Some(replica) => state.with_read_model_replica(replica.status()),
        None => state,
    };
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("binding the HTTP API on {}", config.http_addr))?;
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(async move {
        let router = if roles.api {
            dialtone_api::router(state)
        } else {
            dialtone_api::operations_router(state)
        };
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = http_stopped.await;
            })
            .await
    });
    tracing::info!(
        roles = %roles,
        sip = ?voice.as_ref().map(|v| v.endpoint.local_addr()),
        http = %config.http_addr,
        "dialtone is ready"
    );

    shutdown_signal().await;
    if let Some(voice) = &voice {
        tracing::info!(
            live_calls = voice.registry.len(),
            "shutting down: refusing new calls, hanging up live ones"
        );
        let _ = voice.endpoint.shutdown().await;
        let left = voice.registry.hang_up_all(Duration::from_secs(10)).await;
        if left > 0 {
            tracing::warn!(left, "calls still live after the grace period");
        }
    }
    let _ = stop_http.send(());
    let _ = http.await;
    // Let the projections apply what the drained calls wrote, and the final status
    // callbacks go out, before stopping them. Undelivered callbacks stay in the outbox and
    // go out after the next start.
    let _ = tokio::time::timeout(Duration::from_secs(5), runner.catch_up(log.as_ref())).await;
    if let Some(voice) = voice {
        voice.stop().await;
    }
    liveness.stop().await;
    if let Some(sinks) = sinks {
        sinks.shutdown().await;
    }
    runner.shutdown().await;
    if let Some(replica) = replica {
        // After the runner: its last batches are in the channel; the shipper writes what
        // it has, and a batch it misses is copied by whichever node takes over.
        let _ = tokio::time::timeout(Duration::from_secs(5), replica.shutdown()).await;
    }
    drop(log);
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Where other nodes reach this node's SIP endpoint (for room links): its listen address,
/// or the advertised IP when it listens on every interface.
fn room_link_address(config: &Config) -> Option<String> {
    let addr = config.sip_addr;
    if addr.port() == 0 {
        return None;
    }
    let ip = if addr.ip().is_unspecified() {
        config.advertised_ip()
    } else {
        addr.ip()
    };
    Some(std::net::SocketAddr::new(ip, addr.port()).to_string())
}

/// The voice role group: what takes, places and runs calls on this node.
struct Voice {
    node: Arc<Node>,
    endpoint: SipEndpoint,
    registry: CallRegistry,
    media: Arc<MediaRuntime>,
    deliverer: CallbackDeliverer,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Voice {
    /// After the calls drained: the last status callbacks go out (undelivered ones stay in
    /// the outbox for the next start), then media and SIP stop.
    async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.deliverer.waker().wake();
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.deliverer.shutdown().await;
        self.media.shutdown();
        drop(self.node);
        drop(self.endpoint);
    }
}

async fn start_voice(
    config: &Config,
    data: &DataDir,
    log: &Arc<dyn EventLog>,
    secret: &Arc<Vec<u8>>,
    accounts: &AccountDirectory,
    numbers: &NumberDirectory,
    runner: &ProjectionRunner,
) -> anyhow::Result<Voice> {
    // Status callbacks of the calls this node owns, in order per call, from the outbox.
    let deliverer = CallbackDeliverer::start(
        log.clone(),
        ReadModels::new(data.read_models()),
        runner.handle(),
        accounts.clone(),
        DelivererConfig::new(config.node_id.clone(), secret),
    )
    .context("starting the status-callback deliverer")?;

    // Media and SIP.
    let public_ip = config.advertised_ip();
    let media = MediaRuntime::start(MediaConfig {
        rtp_ports: config.rtp_port_range()?,
        tts_cache_dir: Some(data.tts_cache()),
        symmetric_rtp: config.media.symmetric_rtp,
        engine_threads: config.media.engine_threads.max(1),
        ..MediaConfig::default()
    })
    .context("starting the media runtime")?;
    let mut endpoint_config =
        EndpointConfig::new(config.sip_addr).public_host(public_ip.to_string());
    endpoint_config.overload = config.sip.overload.clone();
    endpoint_config.tcp = config.sip.tcp.clone();
    let (endpoint, incoming) = SipEndpoint::bind(endpoint_config)
        .await
        .context("starting the SIP endpoint")?;

    let webhooks = WebhookClient::new(WebhookConfig {
        timeouts: Timeouts {
            connect: Duration::from_millis(config.webhooks.connect_timeout_ms),
            read: Duration::from_millis(config.webhooks.read_timeout_ms),
            ..Timeouts::default()
        },
        ..WebhookConfig::default()
    })
    .context("building the webhook client")?;
    let registry = CallRegistry::default();
    let node = Arc::new(Node {
        log: log.clone(),
        numbers: numbers.clone(),
        accounts: accounts.clone(),
        secret: secret.clone(),
        media: media.clone(),
        sip: endpoint.clone(),
        public_ip,
        node_id: config.node_id.clone(),
        webhooks,
        interpreter: InterpreterConfig {
            api_base_url: config.public_base_url(),
            ..InterpreterConfig::default()
        },
        recordings_dir: data.recordings(),
        registry: registry.clone(),
        trunks: config.trunks.clone(),
        conferences: Conferences::new(&config.node_id),
        pacer: Pacer::new(config.outbound.calls_per_second),
        read_models: ReadModels::new(data.read_models()),
        rates: Arc::new(config.rate_table()?),
    });
    let edge = Arc::new(Edge {
        node: node.clone(),
        open_numbers: config.sip.open_numbers.clone(),
    });
    let edge_task = tokio::spawn(edge.run(incoming));
    let commands_task = crate::roles::commands::listen(node.clone())
        .await
        .context("listening for call commands")?;

    Ok(Voice {
        node,
        endpoint,
        registry,
        media,
        deliverer,
        tasks: vec![edge_task, commands_task],
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

//! `livora serve`: the platform in one process: the collector, the event log, the lake writer,
//! feature serving (gRPC on `features.serving.grpc_listen`; its JSON twin on the collector's
//! HTTP listener, so one port serves the shop-facing HTTP API) and model inference on the same
//! gRPC port (`livora.v1.InferenceService`, and KServe V2 `inference.GRPCInferenceService` for
//! callers that bring their own features), and Arrow Flight datasets on that port too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use livora_common::ClientId;
use livora_feature_store::flight::{Datasets, FlightDatasetService, Uploads};
use livora_feature_store::serving::{self, GrpcFeatureService};
use livora_feature_store::stream::StreamRunner;
use livora_feature_store::stream::checkpoint::Checkpoints;
use livora_feature_store::stream::feature_log::OfflineFeatureLog;
use livora_feature_store::{FeatureServer, Registry};
use livora_ingest::config::EventLogBackend;
use livora_ingest::enrich::Enricher;
use livora_ingest::lake::dedupe::DedupeStore;
use livora_ingest::lake::{LakeWriter, store};
use livora_ingest::log::embedded::EmbeddedLog;
use livora_ingest::log::nats::NatsLog;
use livora_ingest::metrics::Metrics;
use livora_ingest::{Collector, EventLog};
use livora_simulator::{SimConfig, Simulator};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::config::Config;
use crate::sched::Priority;
use crate::simulate::{Sender, default_start};

/// The durable consumer name of the lake writer.
const LAKE_CONSUMER: &str = "lake-writer";
/// The durable consumer name of the stream aggregator.
const STREAM_CONSUMER: &str = "stream-aggregator";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen on this address instead of `ingest.listen` (port 0 picks a free port; the address
    /// is printed on stdout).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Serve gRPC on this address instead of `features.serving.grpc_listen` (port 0 picks a
    /// free port; the address is printed on stdout).
    #[arg(long)]
    pub grpc_listen: Option<SocketAddr>,
    /// Create a `demo` client and feed it simulated shop traffic.
    #[arg(long)]
    pub demo: bool,
}

pub async fn run(mut config: Config, args: ServeArgs) -> Result<()> {
    livora_common::telemetry::init(config.telemetry.log_format, &config.telemetry.log_level);
    if let Some(listen) = args.listen {
        config.ingest.listen = listen;
    }
    if let Some(listen) = args.grpc_listen {
        config.features.serving.grpc_listen = listen;
    }
    if args.demo && config.lake.roll_interval > Duration::from_secs(10) {
        // A newcomer should see files land quickly.
        config.lake.roll_interval = Duration::from_secs(10);
    }
    let data_dir = config.data_dir();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let mut metrics = Metrics::new();
    let feature_metrics = livora_feature_store::metrics::Metrics::new(metrics.registry_mut());
    let sched_metrics = crate::metrics::SchedMetrics::new(metrics.registry_mut());
    let metrics = Arc::new(metrics);
    let clients = Arc::new(crate::clients::open(&config).await?);

    let log: Arc<dyn EventLog> = match config.event_log.backend {
        EventLogBackend::Embedded => Arc::new(
            EmbeddedLog::open(&config.log_dir(), &config.event_log.embedded)
                .context("cannot open the embedded event log")?,
        ),
        EventLogBackend::Nats => Arc::new(
            NatsLog::connect(&config.event_log.nats).await.context("cannot open the NATS JetStream event log")?,
        ),
    };

    if config.scheduling.any_idle() {
        // Lifts the `SCHED_IDLE` threads that other work starves for seconds on end.
        crate::sched::guard::start(sched_metrics).context("cannot start the starvation guard")?;
    }
    let lake_root = config.lake_root();
    let store = store::open(&lake_root, &config.lake)?;
    // Opened at background priority: the store's compaction thread inherits it.
    let dedupe = in_background_thread("the lake's dedupe store", config.scheduling.lake, || {
        DedupeStore::open(&data_dir.join("lake-state").join("dedupe"), config.lake.dedupe_window)
    })?;
    let writer = LakeWriter::new(store.clone(), dedupe, config.lake.clone(), metrics.clone()).await?;
    let consumer = log.consumer(LAKE_CONSUMER).await?;
    let (stop_lake, lake_stopped) = watch::channel(false);
    // The lake writer is CPU-bound in long stretches (decoding, Parquet encoding, compression):
    // on the collector's runtime it would hold a worker thread and stall requests behind it, and
    // at equal priority it would take a core from the collector in every burst. The log absorbs
    // the difference: under a burst the lake lags behind and catches up when the burst ends.
    let mut lake =
        in_background("livora-lake", "the lake writer", config.scheduling.lake, writer.run(consumer, lake_stopped))?;

    // One registry and one online store for the aggregator and the servers: redb admits one
    // opener per file.
    let registry = Registry::connect(&config.registry_url()).await.context("cannot open the feature registry")?;
    if args.demo {
        apply_demo_features(&registry).await?;
    }
    let online = livora_feature_store::online::open(&config.online_store, &data_dir)
        .await
        .with_context(|| format!("cannot open the online store ({})", config.online_store.backend()))?;
    let (stop_stream, stream_stopped) = watch::channel(false);
    let mut stream = if config.features.stream.enabled {
        // As the dedupe store: its compaction thread at background priority.
        let checkpoints = in_background_thread("the stream's checkpoints", config.scheduling.stream, || {
            Checkpoints::open(&data_dir.join("features").join("stream"), config.features.stream.dedupe_window)
        })?;
        let runner = StreamRunner::new(
            config.features.stream.clone(),
            checkpoints,
            online.clone(),
            registry.clone(),
            Some(Arc::new(OfflineFeatureLog::new(config.offline_store()?))),
            feature_metrics.clone(),
        );
        let consumer = log.consumer(STREAM_CONSUMER).await?;
        // Like the lake writer, the aggregator works in CPU-bound stretches (decoding, dedupe
        // lookups, aggregation) and syncs its checkpoints to disk: on the request runtime it
        // would hold a worker, and every request queued behind it, for the length of an fsync.
        // A thread and runtime of its own, at a lower priority: under a burst that takes every
        // core, features lag and catch up after it, and acknowledgements do not wait.
        Some(in_background(
            "livora-stream",
            "the stream aggregator",
            config.scheduling.stream,
            runner.run(consumer, stream_stopped),
        )?)
    } else {
        None
    };
    let features = if config.features.serving.enabled {
        Some(Serving::start(&config, registry, online, clients.clone(), store, feature_metrics).await?)
    } else {
        None
    };

    let enricher = Enricher::new(config.ingest.geoip_database.as_deref())?;
    let collector = Arc::new(Collector::new(config.ingest.clone(), clients.clone(), log.clone(), enricher, metrics));
    let listener = TcpListener::bind(config.ingest.listen)
        .await
        .with_context(|| format!("cannot listen on {} (ingest.listen)", config.ingest.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, log = log.backend(), lake = %lake_root, data_dir = %data_dir.display(), "livora is serving");
    println!("listening on http://{addr}");

    if args.demo {
        let url = format!("http://{addr}");
        let key = demo_key(&clients).await?;
        println!("demo client `demo`, api key {key}");
        println!("try: curl -s http://{addr}/metrics | grep events_accepted; livora events count --client demo");
        tokio::spawn(async move {
            if let Err(e) = feed_demo(&url, &key).await {
                tracing::error!(error = %e, "demo traffic stopped");
            }
        });
    }

    let (stop_http, http_stopped) = watch::channel(false);
    let mut router = collector.clone().router();
    if let Some(features) = &features {
        router = router.merge(serving::http::router(features.server.clone(), clients.clone()));
    }
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    let mut http = tokio::spawn(async move {
        let mut stopped = http_stopped;
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|&s| s).await;
            })
            .await
    });

    let mut grpc = features.as_ref().map(|f| f.stopped.clone());
    let grpc_failed = async move {
        match grpc.as_mut() {
            Some(stopped) => {
                let _ = stopped.wait_for(|&s| s).await;
            }
            None => std::future::pending().await,
        }
    };
    let stream_failed = async {
        match stream.as_mut() {
            Some(task) => task.await,
            None => std::future::pending().await,
        }
    };
    let lake_failed = tokio::select! {
        () = shutdown_signal() => None,
        served = &mut http => { served??; None }
        ended = &mut lake => Some(ended),
        () = grpc_failed => None,
        ended = stream_failed => {
            ended.context("the stream aggregator panicked")?.context("the stream aggregator stopped")?;
            None
        }
    };
    tracing::info!("shutting down");
    collector.set_ready(false);
    let _ = stop_http.send(true);
    // A failed gRPC server is reported once everything else has stopped in order.
    let grpc_ended = match features {
        Some(features) => features.stop().await,
        None => Ok(()),
    };
    if let Some(ended) = lake_failed {
        let _ = http.await;
        return match ended.context("the lake writer thread panicked")? {
            Ok(()) => Ok(()),
            Err(e) => Err(e).context("the lake writer stopped"),
        };
    }
    http.await??;
    let _ = stop_stream.send(true);
    if let Some(task) = stream.filter(|t| !t.is_terminated()) {
        task.await.context("the stream aggregator panicked")?.context("the stream aggregator failed while stopping")?;
    }
    let _ = stop_lake.send(true);
    lake.await.context("the lake writer thread panicked")?.context("the lake writer failed while stopping")?;
    grpc_ended?;
    tracing::info!("stopped");
    Ok(())
}

/// Feature serving: the gRPC server running, and the [`FeatureServer`] the HTTP twin shares.
struct Serving {
    server: Arc<FeatureServer>,
    stop: watch::Sender<bool>,
    /// Turns `true` when the gRPC server ends, whether asked to or not.
    stopped: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Writes scores back (prediction views, prediction log); ends once the server has.
    predictions: oneshot::Receiver<()>,
}

impl Serving {
    /// Starts the gRPC server over the registry and the online store; Arrow Flight reads the lake
    /// too.
    async fn start(
        config: &Config,
        registry: Registry,
        online: Arc<dyn livora_feature_store::OnlineStore>,
        clients: Arc<livora_ingest::ClientStore>,
        lake: Arc<dyn object_store::ObjectStore>,
        metrics: livora_feature_store::metrics::Metrics,
    ) -> Result<Self> {
        let offline = config.offline_store()?;
        let flight = config.features.flight.enabled.then(|| {
            let lake_root = config.lake_root();
            let datasets = Datasets {
                lake,
                lake_dir: (!lake_root.contains("://")).then(|| std::path::PathBuf::from(&lake_root)),
                lake_cache: lake_root.contains("://").then(|| config.data_dir().join("lake-cache")),
                offline,
                offline_root: config.offline_root(),
                registry: registry.clone(),
                uploads: Uploads::new(
                    config.data_dir().join("flight").join("uploads"),
                    config.features.flight.upload_ttl,
                    config.features.flight.max_upload.0,
                ),
            };
            FlightDatasetService::new(clients.clone(), datasets, config.features.flight.clone(), metrics)
        });
        let server = Arc::new(FeatureServer::new(registry, online, &config.features.serving));
        let listen = config.features.serving.grpc_listen;
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} (features.serving.grpc_listen)"))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, online_store = server.online().backend(), "serving features over gRPC");
        println!("serving features over gRPC on {addr}");
        println!(
            "serving predictions (livora.v1.InferenceService, and KServe V2 inference.GRPCInferenceService) on the same port"
        );
        let (stop, mut stop_requested) = watch::channel(false);
        let (ended, stopped) = watch::channel(false);
        let service = GrpcFeatureService::new(server.clone(), clients.clone());
        let models = livora_models::ModelRegistry::connect(&config.registry_url(), config.models_root())
            .await
            .context("cannot open the model registry")?;
        let (sink, writer) = livora_inference::PredictionSink::new(
            server.online().clone(),
            config.offline_root(),
            livora_inference::SinkConfig::default(),
        );
        // The prediction log's bursts of encoding and compression would stall requests on the
        // serving runtime: the writer gets a thread and runtime of its own, at a lower priority.
        let predictions =
            in_background("livora-predict", "the prediction writer", config.scheduling.predictions, writer)?;
        let predictor = Arc::new(
            livora_inference::Predictor::new(
                models,
                server.clone(),
                config.inference.onnx.clone(),
                config.inference.alias_refresh,
                config.features.serving.max_entity_rows,
            )
            .with_sagemaker(config.inference.sagemaker.clone())
            .with_sink(sink),
        );
        let policy = config.inference.missing_policy.into();
        let mut routes = tonic::service::Routes::default()
            .add_service(
                livora_inference::GrpcInferenceService::new(predictor.clone(), clients.clone(), policy).into_server(),
            )
            .add_service(livora_inference::GrpcKserveService::new(predictor, clients).into_server());
        let mut descriptors = Vec::new();
        if let Some(flight) = flight {
            println!("serving Arrow Flight datasets (arrow.flight.protocol.FlightService) on the same port");
            routes = routes.add_service(flight.into_server());
            descriptors.push(livora_proto::FLIGHT_FILE_DESCRIPTOR_SET);
        }
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop_requested.wait_for(|&s| s).await;
            };
            let served = serving::grpc::serve(listener, service, routes, &descriptors, shutdown).await;
            let _ = ended.send(true);
            served
        });
        Ok(Self { server, stop, stopped, task, predictions })
    }

    /// Stops the gRPC server (in-flight calls finish) and reports how it ended.
    async fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        let served = self.task.await.context("the gRPC server panicked")?.context("the gRPC server failed");
        // The server is gone, and with it the last sender: the writer flushes and ends.
        self.predictions.await.context("the prediction writer panicked")?;
        served
    }
}

/// Runs `task` on a thread named `name` with a runtime of its own, at `priority` (see
/// [`crate::sched`]): the background work of `livora serve` (lake writer, stream aggregator,
/// prediction writer), which on the request runtime would hold a worker — and every request
/// queued on it — through its CPU-bound stretches and fsyncs. The receiver gets `task`'s output,
/// or an error if the thread panicked.
fn in_background<T: Send + 'static>(
    name: &str,
    what: &'static str,
    priority: Priority,
    task: impl Future<Output = T> + Send + 'static,
) -> Result<oneshot::Receiver<T>> {
    let (done, ended) = oneshot::channel();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name(name.into()).spawn(move || {
        priority.apply(what);
        let _ = done.send(runtime.block_on(task));
    })?;
    Ok(ended)
}

/// Runs `open` on a short-lived thread at `priority` and returns what it returns: the threads it
/// starts inherit the priority. For the LSM stores of the background work (fjall: the lake's
/// dedupe store, the stream's checkpoints), whose compaction threads would otherwise compete
/// with requests at full priority — 13 % of the server's CPU at 100,000 events/s.
fn in_background_thread<T: Send>(what: &str, priority: Priority, open: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                priority.apply(what);
                open()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Registers the example shop feature repository for the `demo` client, so the demo's events
/// become features. The files are compiled into the binary: the demo needs no checkout.
async fn apply_demo_features(registry: &Registry) -> Result<()> {
    let files: Vec<(std::path::PathBuf, String)> = livora_feature_store::definitions::EXAMPLE_REPO
        .iter()
        .map(|(name, text)| (std::path::PathBuf::from(name), (*text).to_owned()))
        .collect();
    let repo = livora_feature_store::definitions::parse_files(&files)
        .map_err(|e| anyhow::anyhow!("the built-in example feature repository is invalid: {e:?}"))?;
    let client = ClientId::new("demo").map_err(anyhow::Error::msg)?;
    let applied = registry.apply(&client, &repo, false, false).await?;
    println!("demo features: registry version {} (livora features list --client demo)", applied.version);
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// The demo client's key: a new one each start (keys are never stored in clear).
async fn demo_key(clients: &livora_ingest::ClientStore) -> Result<String> {
    let demo = ClientId::new("demo").map_err(anyhow::Error::msg)?;
    let key = if clients.exists(&demo).await? {
        clients.create_key(&demo).await?
    } else {
        clients.create_client(&demo).await?
    };
    Ok(key.secret)
}

/// A week of a 300-person shop, sent at 200 events/s.
async fn feed_demo(url: &str, key: &str) -> Result<()> {
    let demo = ClientId::new("demo").map_err(anyhow::Error::msg)?;
    let mut sim =
        Simulator::new(SimConfig { client_id: demo.clone(), users: 300, days: 7, start: default_start(7), seed: 7 });
    let sender = Sender::new(url, &demo, key, 200.0, 50, 2)?;
    let summary = sender.send(sim.events()).await?;
    tracing::info!(%summary, "demo traffic sent");
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::sched::Priority;
    use crate::sched::tests::scheduling;

    #[test]
    fn threads_started_by_a_store_opened_in_the_background_inherit_its_priority() {
        let caller = scheduling();
        let (opener, started) = super::in_background_thread("a test store", Priority::Low, || {
            (scheduling(), std::thread::spawn(scheduling).join().unwrap())
        });
        let other = i64::from(crate::sched::guard::SCHED_OTHER);
        assert_eq!((opener, started), ((other, 10), (other, 10)));
        assert_eq!(scheduling(), caller, "the caller's own priority is left alone");
    }

    #[tokio::test]
    async fn background_work_runs_at_its_priority_on_its_own_thread() {
        let caller = scheduling();
        let ran = super::in_background("test", "a test task", Priority::Idle, async { scheduling() }).unwrap();
        assert_eq!(ran.await.unwrap().0, i64::from(crate::sched::guard::SCHED_IDLE));
        assert_eq!(scheduling(), caller, "the caller's own priority is left alone");
    }
}

//! The shop: a logistic churn model registered over real registries and an online store, the
//! clients and their keys, and a gRPC server on a free local port.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use livora_common::ClientId;
use livora_feature_store::online::{RedbConfig, RedbStore};
use livora_feature_store::serving::{FeatureServer, ServingConfig};
use livora_feature_store::{OnlineRow, OnlineStore, Registry, RowKey, Value, load_repo};
use livora_inference::{OnnxConfig, PredictionSink, Predictor, SageMakerConfig, SinkConfig};
use livora_ingest::ClientStore;
use livora_models::{
    Algorithm, Artifact, Classifier, Column, Encoder, Endpoint, FeatureRef, FitParams, Manifest, ModelRegistry, Ranker,
    Table, Weights,
};
use tokio::net::TcpListener;

/// The local moto server (`moto_server -p 5000`, started by `.ci/services`), standing in for
/// SageMaker's runtime API.
pub const MOTO: &str = "http://127.0.0.1:5000";

/// The SageMaker client settings of the tests: moto, its default region, dummy credentials.
pub fn moto() -> SageMakerConfig {
    SageMakerConfig {
        region: Some("us-east-1".into()),
        endpoint_url: Some(MOTO.into()),
        access_key_id: Some("testing".into()),
        secret_access_key: Some("testing".into()),
        ..SageMakerConfig::default()
    }
}

/// A day in microseconds.
pub const DAY: i64 = 86_400_000_000;

/// The client that owns the model.
pub fn shop() -> ClientId {
    ClientId::new("shop").unwrap()
}

/// The model's features: two numbers and a category of `user_activity`.
pub fn features() -> Vec<FeatureRef> {
    ["orders_30d", "days_since_last_seen", "last_touch_channel"]
        .iter()
        .map(|f| FeatureRef { view: "user_activity".into(), feature: (*f).into() })
        .collect()
}

/// The training table of the test models: 400 rows of the three features.
fn table() -> (Table, Encoder) {
    let n = 400;
    let orders: Vec<Option<f64>> = (0..n).map(|i| Some(f64::from(i % 5))).collect();
    let days: Vec<Option<f64>> = (0..n).map(|i| if i % 10 == 0 { None } else { Some(f64::from(i % 40)) }).collect();
    let channel: Vec<Option<String>> =
        (0..n).map(|i| Some(["email", "web", "push"][(i % 3) as usize].to_owned())).collect();
    let mut table = Table::default();
    for (f, c) in features().iter().zip([Column::Numeric(orders), Column::Numeric(days), Column::Categorical(channel)])
    {
        table.push(f.column(), c).unwrap();
    }
    let encoder = Encoder::fit(&table).unwrap();
    (table, encoder)
}

/// A logistic churn model over three features, fitted on rows where churn follows inactivity.
pub fn artifact(version: i64, shift: f64) -> Artifact {
    let (table, encoder) = table();
    let y: Vec<bool> = (0..400).map(|i| f64::from(i % 40) + shift - 8.0 * f64::from(i % 5) > 10.0).collect();
    let x = encoder.encode_table(&table).unwrap();
    let classifier = Classifier::fit(Algorithm::Logistic, &x, encoder.width(), &y, &FitParams::default()).unwrap();
    manifest_artifact("churn", version, Algorithm::Logistic, encoder, Vec::new(), Weights::Native(classifier))
}

/// A logistic churn model over the same three features in another order (the channel first):
/// it cannot share an online read with [`artifact`]'s versions, so it cannot be their canary.
pub fn reordered_artifact(version: i64) -> Artifact {
    let (table, _) = table();
    let order = [2, 0, 1];
    let mut reordered = Table::default();
    for &c in &order {
        reordered.push(table.names[c].clone(), table.columns[c].clone()).unwrap();
    }
    let encoder = Encoder::fit(&reordered).unwrap();
    let y: Vec<bool> = (0..400).map(|i| f64::from(i % 40) - 8.0 * f64::from(i % 5) > 10.0).collect();
    let x = encoder.encode_table(&reordered).unwrap();
    let classifier = Classifier::fit(Algorithm::Logistic, &x, encoder.width(), &y, &FitParams::default()).unwrap();
    let mut a =
        manifest_artifact("churn", version, Algorithm::Logistic, encoder, Vec::new(), Weights::Native(classifier));
    let features = features();
    a.manifest.features = order.iter().map(|&c| features[c].clone()).collect();
    a
}

/// The offers of [`ranker_artifact`], in output order.
pub const OFFERS: [&str; 3] = ["email_offer", "push_offer", "web_offer"];

/// A next-best-offer MLP over the same features: each row takes the offer of its channel.
pub fn ranker_artifact(version: i64) -> Artifact {
    let (table, encoder) = table();
    let x = encoder.encode_table(&table).unwrap();
    let accepted: Vec<Vec<usize>> = (0..400).map(|i| vec![[0, 2, 1][i % 3]]).collect();
    let params = FitParams { learning_rate: 0.05, l2: 0.0, hidden_units: 8, epochs: 60, ..FitParams::default() };
    let ranker = Ranker::fit(Algorithm::Mlp, &x, encoder.width(), &accepted, OFFERS.len(), &params).unwrap();
    let offers = OFFERS.iter().map(|o| (*o).to_owned()).collect();
    manifest_artifact("next_best_offer", version, Algorithm::Mlp, encoder, offers, Weights::Ranker(ranker))
}

/// A churn model served by the SageMaker endpoint `endpoint`, reading the two numeric features
/// raw, in order, as CSV.
pub fn endpoint_artifact(model: &str, endpoint: &str) -> Artifact {
    let features: Vec<FeatureRef> = features().into_iter().take(2).collect();
    let encoder = Encoder::raw(features.iter().map(FeatureRef::column));
    let weights =
        Weights::Endpoint(Endpoint { name: endpoint.into(), content_type: "text/csv".into(), target_variant: None });
    let mut a = manifest_artifact(model, 1, Algorithm::SageMaker, encoder, Vec::new(), weights);
    a.manifest.features = features;
    a
}

fn manifest_artifact(
    model: &str,
    version: i64,
    algorithm: Algorithm,
    encoder: Encoder,
    offers: Vec<String>,
    weights: Weights,
) -> Artifact {
    Artifact {
        manifest: Manifest {
            format: livora_models::artifact::FORMAT,
            model: model.into(),
            version,
            client_id: "shop".into(),
            algorithm,
            feature_service: model.into(),
            feature_registry_version: 1,
            entity: "user".into(),
            join_key: "user_id".into(),
            features: features(),
            encoder,
            label: "test".into(),
            training: None,
            evaluation: None,
            offers,
            ranking: None,
            code_version: "test".into(),
            created_at: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
        },
        weights,
    }
}

/// Real registries (SQLite), an online store (redb) with three users, the `churn` model v1
/// registered and promoted to `production` for `shop`, and the API keys of `shop` and `rival`
/// (which has the same feature definitions but no model).
pub struct Setup {
    _dir: tempfile::TempDir,
    /// The model registry.
    pub models: ModelRegistry,
    /// The predictor over both registries.
    pub predictor: Arc<Predictor>,
    /// The client registry.
    pub clients: Arc<ClientStore>,
    /// The API keys of `shop` and `rival`.
    pub keys: (String, String),
    /// When the online rows were written (µs).
    pub now: i64,
    /// Where the predictor's scores flow back.
    pub sink: PredictionSink,
    /// The offline root the prediction log is written under.
    pub lake: std::path::PathBuf,
}

/// A fresh [`Setup`].
pub async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("registry.db").display());
    let registry = Registry::connect(&url).await.unwrap();
    let repo = load_repo(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../feature-store/example-repo")).unwrap();
    registry.apply(&shop(), &repo, false, false).await.unwrap();
    registry.apply(&ClientId::new("rival").unwrap(), &repo, false, false).await.unwrap();
    let store =
        Arc::new(RedbStore::open(&RedbConfig { fsync: false, ..RedbConfig::default() }, dir.path()).await.unwrap());
    let now = Utc::now().timestamp_micros();
    let row = |orders: i64, seen_days_ago: i64, channel: &str| OnlineRow {
        event_time: now - DAY / 24,
        created: now,
        values: vec![
            ("orders_30d".into(), Value::Int64(orders)),
            ("last_seen_at".into(), Value::Timestamp(now - seen_days_ago * DAY)),
            ("last_touch_channel".into(), Value::String(channel.into())),
        ],
    };
    let rows = [
        (RowKey::new("user", "u-1", "user_activity"), row(0, 30, "email")),
        (RowKey::new("user", "u-2", "user_activity"), row(4, 1, "web")),
        // Older than the view's ttl (90 days): served as OUTSIDE_MAX_AGE, never as a value.
        (
            RowKey::new("user", "u-old", "user_activity"),
            OnlineRow { event_time: now - 100 * DAY, ..row(1, 100, "sms") },
        ),
    ];
    assert_eq!(store.write(&shop(), &rows).await.unwrap(), 3);
    let features = Arc::new(FeatureServer::new(registry, store.clone(), &ServingConfig::default()));
    let models = ModelRegistry::connect(&url, dir.path().join("models")).await.unwrap();
    models.register(&shop(), &artifact(1, 0.0)).await.unwrap();
    models.promote(&shop(), "churn", 1, "production").await.unwrap();
    let lake = dir.path().join("lake");
    let (sink, _writer) = PredictionSink::start(store.clone(), lake.clone(), SinkConfig::default());
    let predictor = Arc::new(
        Predictor::new(models.clone(), features, OnnxConfig::default(), Duration::ZERO, 1000)
            .with_sagemaker(moto())
            .with_sink(sink.clone()),
    );
    let clients = ClientStore::connect(
        &format!("sqlite://{}?mode=rwc", dir.path().join("clients.db").display()),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let a = clients.create_client(&shop()).await.unwrap().secret;
    let b = clients.create_client(&ClientId::new("rival").unwrap()).await.unwrap().secret;
    Setup { _dir: dir, models, predictor, clients: Arc::new(clients), keys: (a, b), now, sink, lake }
}

/// Owned strings.
pub fn keys(k: &[&str]) -> Vec<String> {
    k.iter().map(|s| (*s).to_owned()).collect()
}

/// Serves `routes` on a free port of 127.0.0.1, until the test's runtime ends.
pub async fn serve(routes: tonic::service::Routes) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(tonic::transport::Server::builder().add_routes(routes).serve_with_incoming(incoming));
    addr
}

/// A channel to a server started by [`serve`].
pub async fn channel(addr: SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

/// `message` with the credentials of `client` (`authorization: Bearer <key>`, `x-client-id`).
pub fn authorized<T>(message: T, key: &str, client: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    r.metadata_mut().insert("x-client-id", client.parse().unwrap());
    r
}

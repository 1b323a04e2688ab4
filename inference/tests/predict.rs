//! Predictions against real parts: the feature and model registries (SQLite), the embedded
//! online store (redb), a model trained by the zoo's code and registered, and the gRPC API over
//! a real socket with the generated client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use livora_common::ClientId;
use livora_feature_store::online::{RedbConfig, RedbStore};
use livora_feature_store::serving::{FeatureServer, FeatureStatus, ServingConfig};
use livora_feature_store::{OnlineRow, OnlineStore, Registry, RowKey, Value, load_repo};
use livora_inference::{GrpcInferenceService, MissingPolicy, OnnxConfig, Predictor, RowStatus};
use livora_ingest::ClientStore;
use livora_models::{
    Algorithm, Artifact, Classifier, Column, Encoder, FeatureRef, FitParams, Input, Manifest, ModelRegistry, Table,
    Weights,
};
use livora_proto::livora::v1 as pb;
use pb::inference_service_client::InferenceServiceClient;
use tokio::net::TcpListener;

const DAY: i64 = 86_400_000_000;

fn shop() -> ClientId {
    ClientId::new("shop").unwrap()
}

fn features() -> Vec<FeatureRef> {
    ["orders_30d", "days_since_last_seen", "last_touch_channel"]
        .iter()
        .map(|f| FeatureRef { view: "user_activity".into(), feature: (*f).into() })
        .collect()
}

/// A logistic churn model over three features, fitted on rows where churn follows inactivity.
fn artifact(version: i64, shift: f64) -> Artifact {
    let n = 400;
    let orders: Vec<Option<f64>> = (0..n).map(|i| Some(f64::from(i % 5))).collect();
    let days: Vec<Option<f64>> = (0..n).map(|i| if i % 10 == 0 { None } else { Some(f64::from(i % 40)) }).collect();
    let channel: Vec<Option<String>> =
        (0..n).map(|i| Some(["email", "web", "push"][(i % 3) as usize].to_owned())).collect();
    let y: Vec<bool> = (0..n).map(|i| f64::from(i % 40) + shift - 8.0 * f64::from(i % 5) > 10.0).collect();
    let mut table = Table::default();
    for (f, c) in features().iter().zip([Column::Numeric(orders), Column::Numeric(days), Column::Categorical(channel)])
    {
        table.push(f.column(), c).unwrap();
    }
    let encoder = Encoder::fit(&table).unwrap();
    let x = encoder.encode_table(&table).unwrap();
    let classifier = Classifier::fit(Algorithm::Logistic, &x, encoder.width(), &y, &FitParams::default()).unwrap();
    Artifact {
        manifest: Manifest {
            format: livora_models::artifact::FORMAT,
            model: "churn".into(),
            version,
            client_id: "shop".into(),
            algorithm: Algorithm::Logistic,
            feature_service: "churn".into(),
            feature_registry_version: 1,
            entity: "user".into(),
            join_key: "user_id".into(),
            features: features(),
            encoder,
            label: "test".into(),
            training: None,
            evaluation: None,
            code_version: "test".into(),
            created_at: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
        },
        weights: Weights::Native(classifier),
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    models: ModelRegistry,
    predictor: Arc<Predictor>,
    clients: Arc<ClientStore>,
    keys: (String, String),
    now: i64,
}

async fn setup() -> Setup {
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
    let features = Arc::new(FeatureServer::new(registry, store, &ServingConfig::default()));
    let models = ModelRegistry::connect(&url, dir.path().join("models")).await.unwrap();
    models.register(&shop(), &artifact(1, 0.0)).await.unwrap();
    models.promote(&shop(), "churn", 1, "production").await.unwrap();
    let predictor = Arc::new(Predictor::new(models.clone(), features, OnnxConfig::default(), Duration::ZERO, 1000));
    let clients = ClientStore::connect(
        &format!("sqlite://{}?mode=rwc", dir.path().join("clients.db").display()),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let a = clients.create_client(&shop()).await.unwrap().secret;
    let b = clients.create_client(&ClientId::new("rival").unwrap()).await.unwrap().secret;
    Setup { _dir: dir, models, predictor, clients: Arc::new(clients), keys: (a, b), now }
}

fn keys(k: &[&str]) -> Vec<String> {
    k.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn scores_equal_the_training_code_on_the_same_features() {
    let s = setup().await;
    let p = s
        .predictor
        .predict(&shop(), "churn", &keys(&["u-1", "u-2", "u-new", "u-old"]), 2, MissingPolicy::Impute)
        .await
        .unwrap();
    assert_eq!((p.model.as_str(), p.version, p.algorithm), ("churn", 1, Algorithm::Logistic));
    assert_eq!(
        p.feature_names,
        ["user_activity__orders_30d", "user_activity__days_since_last_seen", "user_activity__last_touch_channel"]
    );

    // The same artifact, scored by the zoo's code on the values the store holds: the served
    // score must be the one training would compute (days_since moves by the test's runtime).
    let trained = artifact(1, 0.0);
    let days = |ago: i64| (Utc::now().timestamp_micros() - (s.now - ago * DAY)) as f64 / DAY as f64;
    let expected = |orders: f64, seen: i64, channel: &str| {
        trained.score(&[Input::Number(orders), Input::Number(days(seen)), Input::Text(channel)], 2).unwrap()
    };
    let u1 = expected(0.0, 30, "email");
    let u2 = expected(4.0, 1, "web");
    assert!((p.rows[0].score.unwrap() - u1.probability).abs() < 1e-6, "{:?} vs {u1:?}", p.rows[0]);
    assert!((p.rows[1].score.unwrap() - u2.probability).abs() < 1e-6, "{:?} vs {u2:?}", p.rows[1]);
    assert_eq!(
        p.rows[0].contributions.iter().map(|c| &c.0).collect::<Vec<_>>(),
        u1.contributions.iter().map(|c| &c.0).collect::<Vec<_>>()
    );
    assert_eq!(p.rows[0].status, RowStatus::Scored);
    assert!(p.rows[0].statuses.iter().all(|s| *s == FeatureStatus::Present));

    // Unknown and expired entities: imputed as in training, and said so; never a silent zero.
    let missing = trained.score(&[Input::Missing, Input::Missing, Input::Missing], 0).unwrap();
    for row in &p.rows[2..] {
        assert_eq!(row.status, RowStatus::ScoredWithImputation, "{row:?}");
        assert!((row.score.unwrap() - missing.probability).abs() < 1e-12);
    }
    assert_eq!(p.rows[2].statuses, [FeatureStatus::Missing; 3]);
    assert_eq!(p.rows[3].statuses, [FeatureStatus::OutsideMaxAge; 3]);

    // Refuse: no score for the incomplete entities, the complete ones still scored.
    let p = s
        .predictor
        .predict(&shop(), "churn@production", &keys(&["u-new", "u-2"]), 0, MissingPolicy::Refuse)
        .await
        .unwrap();
    assert_eq!((p.rows[0].status, p.rows[0].score), (RowStatus::Refused, None));
    assert_eq!(p.rows[1].status, RowStatus::Scored);
    assert!(p.rows[1].contributions.is_empty(), "none asked for");
}

#[tokio::test]
async fn promotions_and_rollbacks_reach_serving_without_a_restart() {
    let s = setup().await;
    let u = keys(&["u-1"]);
    let v1 = s.predictor.predict(&shop(), "churn", &u, 0, MissingPolicy::Impute).await.unwrap();
    s.models.register(&shop(), &artifact(2, 15.0)).await.unwrap();
    s.models.promote(&shop(), "churn", 2, "production").await.unwrap();
    let v2 = s.predictor.predict(&shop(), "churn", &u, 0, MissingPolicy::Impute).await.unwrap();
    assert_eq!((v1.version, v2.version), (1, 2));
    assert_ne!(v1.rows[0].score, v2.rows[0].score);
    s.models.rollback(&shop(), "churn", "production").await.unwrap();
    let back = s.predictor.predict(&shop(), "churn", &u, 0, MissingPolicy::Impute).await.unwrap();
    assert_eq!(back.version, 1);
    // days_since moves between the calls: the same model gives the same score to 1e-6.
    assert!((back.rows[0].score.unwrap() - v1.rows[0].score.unwrap()).abs() < 1e-6);
    let pinned = s.predictor.predict(&shop(), "churn@2", &u, 0, MissingPolicy::Impute).await.unwrap();
    assert_eq!(pinned.version, 2);
}

async fn serve(s: &Setup) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = GrpcInferenceService::new(s.predictor.clone(), s.clients.clone(), MissingPolicy::Impute);
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(tonic::transport::Server::builder().add_service(service.into_server()).serve_with_incoming(incoming));
    addr
}

fn request(model: &str, entities: &[&str], key: &str, client: &str) -> tonic::Request<pb::PredictRequest> {
    let mut r = tonic::Request::new(pb::PredictRequest {
        model: model.into(),
        entity_keys: keys(entities),
        top_contributions: 3,
        missing_policy: 0,
    });
    r.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    r.metadata_mut().insert("x-client-id", client.parse().unwrap());
    r
}

#[tokio::test]
async fn the_grpc_api_scores_batches_and_refuses_with_the_right_codes() {
    let s = setup().await;
    let addr = serve(&s).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut grpc = InferenceServiceClient::new(channel);
    let (shop_key, rival_key) = (&s.keys.0, &s.keys.1);

    let answer = grpc.predict(request("churn", &["u-1", "u-2", "u-new"], shop_key, "shop")).await.unwrap().into_inner();
    assert_eq!((answer.model.as_str(), answer.version, answer.algorithm.as_str()), ("churn", 1, "logistic"));
    assert_eq!(answer.predictions.len(), 3);
    let direct = s.predictor.predict(&shop(), "churn", &keys(&["u-1"]), 3, MissingPolicy::Impute).await.unwrap();
    assert!((answer.predictions[0].score.unwrap() - direct.rows[0].score.unwrap()).abs() < 1e-6);
    assert_eq!(answer.predictions[0].status, pb::PredictionStatus::Scored as i32);
    assert_eq!(answer.predictions[0].contributions.len(), 3);
    assert_eq!(answer.predictions[2].status, pb::PredictionStatus::ScoredWithImputation as i32);
    assert_eq!(answer.predictions[2].statuses, vec![pb::FeatureStatus::Missing as i32; 3]);

    let code = |r: Result<tonic::Response<pb::PredictResponse>, tonic::Status>| r.unwrap_err();
    let e = code(grpc.predict(request("churn", &["u-1"], "wrong", "shop")).await);
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    let e = code(grpc.predict(request("churn", &["u-1"], rival_key, "shop")).await);
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    // Tenancy: the rival has the same features but no model of the shop's.
    let e = code(grpc.predict(request("churn", &["u-1"], rival_key, "rival")).await);
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    let e = code(grpc.predict(request("churn@9", &["u-1"], shop_key, "shop")).await);
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    assert!(e.message().contains("no version 9"), "{e:?}");
    let e = code(grpc.predict(request("churn@prod", &["u-1"], shop_key, "shop")).await);
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let e = code(grpc.predict(request("churn", &[], shop_key, "shop")).await);
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("entity_keys"), "{e:?}");
    let e = code(grpc.predict(request("", &["u-1"], shop_key, "shop")).await);
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
}

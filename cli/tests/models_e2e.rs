//! End to end, as a shop's data team uses Livora: simulated traffic is posted to `livora serve`;
//! the stream keeps the online features fresh and the lake fills; `user_activity`'s history is
//! backfilled from the lake; `livora train churn` trains on it and promotes the new version; the
//! gRPC `Predict` scores users with their online features; and each score comes back as the
//! `churn_prediction` feature, online, and in the prediction log. The next-best-offer model
//! goes the same way: trained, promoted, its ranking served and its first offer online.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use chrono::{DurationRound, SecondsFormat, Utc};
use livora_common::{ClientId, Event};
use livora_feature_store::dataset::{self, DatasetRequest, Entities, Selection};
use livora_feature_store::offline::{EVENT_TIMESTAMP, timestamp_dtype};
use livora_feature_store::{LocalOfflineStore, load_repo};
use livora_models::ModelRegistry;
use livora_proto::livora::v1 as pb;
use livora_simulator::{SimConfig, Simulator};
use livora_tests::{Livora, create_client, eventually, post, write_customer_profiles};
use livora_training::table_of;
use pb::get_online_features_request::Kind;
use polars::prelude::{ChunkFull, Column, DataFrame, Int64Chunked, IntoColumn, IntoLazy, IntoSeries};
use serde_json::Value as Json;

const BIN: &str = env!("CARGO_BIN_EXE_livora");
const DAYS: i64 = 100;

fn livora(data: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(BIN).arg("--data-dir").arg(data).args(args).output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    ensure!(out.status.success(), "livora {args:?} failed:\n{text}");
    Ok(text)
}

fn authorized<T>(message: T, key: &str) -> Result<tonic::Request<T>> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert("authorization", format!("Bearer {key}").parse()?);
    r.metadata_mut().insert("x-client-id", "shop".parse()?);
    Ok(r)
}

/// The values and statuses of `feature` (`view:feature`) for `users`, over gRPC.
async fn online_values(
    mut features: pb::feature_service_client::FeatureServiceClient<tonic::transport::Channel>,
    key: &str,
    feature: &str,
    users: &[String],
) -> Result<pb::FeatureVector> {
    let request = pb::GetOnlineFeaturesRequest {
        kind: Some(Kind::Features(pb::FeatureList { val: vec![feature.to_owned()] })),
        entities: [(
            "user_id".to_owned(),
            pb::RepeatedValue {
                val: users.iter().map(|u| pb::Value { val: Some(pb::value::Val::StringVal(u.clone())) }).collect(),
            },
        )]
        .into(),
        full_feature_names: false,
    };
    let answer = features.get_online_features(authorized(request, key)?).await?.into_inner();
    answer.results.into_iter().next().context("one feature asked, one answered")
}

/// The statuses of `customer_profile:newsletter_opt_in` for `users`, over gRPC.
async fn profile_statuses(channel: tonic::transport::Channel, key: &str, users: &[String]) -> Result<Vec<i32>> {
    let features = pb::feature_service_client::FeatureServiceClient::new(channel);
    Ok(online_values(features, key, "customer_profile:newsletter_opt_in", users).await?.statuses)
}

/// The churn scores of production's version for `users`, computed as training computes them:
/// the point-in-time dataset of the model's feature service with every row at `at`
/// ([`dataset::build`]), made a table by the training code ([`table_of`]), encoded and scored by
/// the artifact's encoder and classifier.
async fn training_scores(data: &Path, offline_root: &Path, users: &[String], at: i64) -> Result<Vec<f64>> {
    let shop = ClientId::new("shop").map_err(anyhow::Error::msg)?;
    let registry = format!("sqlite://{}?mode=rwc", data.join("registry.db").display());
    let models = ModelRegistry::connect(&registry, data.join("models")).await?;
    let artifact = models.load(&models.resolve(&shop, "churn@production").await?)?;
    let m = &artifact.manifest;
    let repo = load_repo(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../feature-store/example-repo"))
        .map_err(|e| anyhow::anyhow!("the example repository: {e:?}"))?;
    let keys = Column::new(m.join_key.as_str().into(), users);
    let times = Int64Chunked::full(EVENT_TIMESTAMP.into(), at, users.len())
        .into_series()
        .cast(&timestamp_dtype())?
        .into_column();
    let rows = DataFrame::new_infer_height(vec![keys, times])?.lazy();
    let frame = dataset::build(
        &repo,
        &LocalOfflineStore::new(offline_root),
        offline_root,
        &shop,
        DatasetRequest {
            selection: Selection::Service(m.feature_service.clone()),
            entities: Entities::Rows { frame: Box::new(rows), timestamp_column: EVENT_TIMESTAMP.into() },
            full_feature_names: true,
        },
    )?
    .collect()?;
    let (keys, _, table, _, _) = table_of(&frame, &m.join_key, EVENT_TIMESTAMP, &m.features)?;
    ensure!(keys.iter().flatten().eq(users.iter()), "the dataset keeps the entity rows in order: {keys:?}");
    let x = m.encoder.encode_table(&table)?;
    let classifier = artifact.classifier().context("churn is a classifier")?;
    Ok(classifier.predict(&x, m.encoder.width()))
}

#[tokio::test(flavor = "multi_thread")]
async fn events_features_train_promote_predict_and_the_prediction_comes_back() -> Result<()> {
    let data = tempfile::tempdir()?;
    let env = vec![
        ("LIVORA__INGEST__RATE_LIMIT__EVENTS_PER_SECOND".to_owned(), "0".to_owned()),
        ("LIVORA__LAKE__ROLL_INTERVAL".to_owned(), "1s".to_owned()),
    ];
    let key = create_client(Path::new(BIN), data.path(), &env, "shop")?;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../feature-store/example-repo");
    livora(data.path(), &["apply", repo.to_str().context("path")?, "--client", "shop"])?;
    // A hundred days of a small shop, up to now.
    let shop = ClientId::new("shop").map_err(anyhow::Error::msg)?;
    let start = (Utc::now() - chrono::Duration::days(DAYS)).duration_trunc(chrono::Duration::days(1))?;
    let now = Utc::now().to_rfc3339();
    let wire: Vec<Json> = Simulator::new(SimConfig { client_id: shop, users: 600, days: DAYS as u32, start, seed: 5 })
        .events()
        .filter(|e| e["timestamp"].as_str().is_some_and(|t| t < now.as_str()))
        .collect();
    let events: Vec<Event> = wire
        .iter()
        .map(|w| {
            let mut w = w.clone();
            w["received_at"] = w["timestamp"].clone();
            serde_json::from_value(w)
        })
        .collect::<Result<_, _>>()?;
    // The back office's profile table, loaded online before the server holds the store.
    let offline_root: PathBuf = data.path().join("lake");
    let profiles = write_customer_profiles(&offline_root, "shop", &events)?;
    let day = |d: i64| (start + chrono::Duration::days(d)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let materialized = livora(
        data.path(),
        &["materialize", "--client", "shop", "--view", "customer_profile", "--start", &day(0), "--end", &day(DAYS + 1)],
    )?;
    ensure!(materialized.contains(&format!("{profiles} rows applied")), "{materialized}");

    // Customers who signed up during the simulation and bought: the stream has their activity
    // online, the back office their profile (customers with an account from the start have no
    // profile row in this table).
    let who = |kind: &str| -> std::collections::BTreeSet<String> {
        events.iter().filter(|e| e.event_type == kind).filter_map(|e| e.user_id.clone()).collect()
    };
    let mut users: Vec<String> = who("purchase").intersection(&who("signup")).cloned().collect();
    users.truncate(20);
    ensure!(users.len() >= 5, "only {} customers signed up and bought", users.len());

    let mut server = Livora::start(Path::new(BIN), data.path(), &env)?;
    let grpc_addr = server.grpc_addr.context("serve prints its gRPC address")?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc_addr}"))?.connect().await?;
    let present = pb::FeatureStatus::Present as i32;
    let before = profile_statuses(channel.clone(), &key, &users).await?;
    ensure!(before.iter().all(|s| *s == present), "the materialized profiles are served: {before:?}");
    let http = reqwest::Client::new();
    for batch in wire.chunks(100) {
        let (status, body) = post(&http, &server.url(), "shop", &key, Json::from(batch.to_vec()).to_string()).await?;
        ensure!(status == 200, "POST /v1/events answered {status}: {body}");
    }
    // The lake holds every event. The lake writer runs at `SCHED_IDLE`: in a debug build it
    // needs about 12 s of CPU for these events, and behind another busy program (a build at
    // nice 19 took the cores in one run) it gets a tenth of a core, which took 107 s.
    let lake = livora_tests::lake(data.path())?;
    eventually(Duration::from_secs(300), "the lake to hold every event", || async {
        Ok((lake.events("shop", None).await?.len() == events.len()).then_some(()))
    })
    .await?;
    // The history of the streaming views the models read, from the lake.
    for view in ["user_activity", "user_interests"] {
        let backfilled = livora(
            data.path(),
            &["features", "backfill", "--client", "shop", "--view", view, "--start", &day(0), "--end", &day(DAYS)],
        )?;
        ensure!(backfilled.contains(&format!("backfilled {view}")), "{backfilled}");
    }

    // Train, and promote the new version to production.
    let train = |model: &str| {
        let (start, end) = (day(14), day(DAYS - 1));
        let args = ["train", model, "--client", "shop", "--start", &start, "--end", &end, "--promote", "production"];
        livora(data.path(), &args)
    };
    let trained = train("churn")?;
    ensure!(trained.contains("trained churn v1 (gbdt)"), "{trained}");
    ensure!(trained.contains("production: v1 (was none)"), "{trained}");
    let listed = livora(data.path(), &["models", "list", "--client", "shop"])?;
    ensure!(listed.contains("production"), "{listed}");

    let mut inference = pb::inference_service_client::InferenceServiceClient::new(channel.clone());
    let request = pb::PredictRequest {
        model: "churn".into(),
        entity_keys: users.clone(),
        top_contributions: 3,
        missing_policy: 0,
    };
    let asked = Utc::now().timestamp_micros();
    let answer = inference.predict(authorized(request, &key)?).await?.into_inner();
    let answered = Utc::now().timestamp_micros();
    ensure!(answer.version == 1 && answer.algorithm == "gbdt", "{answer:?}");
    let features_at = answer
        .features_at
        .as_ref()
        .and_then(livora_proto::timestamp_to_micros)
        .context("the answer says when its features were read")?;
    ensure!((asked..=answered).contains(&features_at), "features_at {features_at} outside [{asked}, {answered}]");
    let churn = answer.clone();
    ensure!(answer.predictions.len() == users.len());
    for p in &answer.predictions {
        let score = p.score.context("every user is scored")?;
        ensure!((0.0..=1.0).contains(&score), "{p:?}");
        ensure!(p.contributions.len() == 3, "{p:?}");
    }
    // Every churn feature is online for these users: scored without imputation.
    for p in &answer.predictions {
        ensure!(p.statuses.iter().all(|s| *s == present), "{}: {:?}", p.entity_key, p.statuses);
        ensure!(p.status == pb::PredictionStatus::Scored as i32, "{p:?}");
    }

    // The scores come back as features, online.
    let features = pb::feature_service_client::FeatureServiceClient::new(channel);
    let expected: Vec<f64> = answer.predictions.iter().filter_map(|p| p.score).collect();
    eventually(Duration::from_secs(30), "the churn_prediction view to hold the scores", || {
        let (features, users, key, expected) = (features.clone(), users.clone(), key.clone(), expected.clone());
        async move {
            let values = online_values(features, &key, "churn_prediction:churn_probability", &users).await?;
            let probabilities: Vec<f64> = values
                .values
                .iter()
                .filter_map(|v| match v.val {
                    Some(pb::value::Val::DoubleVal(x)) => Some(x),
                    _ => None,
                })
                .collect();
            Ok((probabilities == expected).then_some(()))
        }
    })
    .await
    .with_context(|| server.log_tail())?;

    // The next-best offer: trained on the same history, promoted, and its ranking served.
    let trained = train("next_best_offer")?;
    ensure!(trained.contains("trained next_best_offer v1 (mlp)"), "{trained}");
    ensure!(trained.contains("popularity (baseline)"), "{trained}");
    let request = pb::PredictRequest {
        model: "next_best_offer".into(),
        entity_keys: users.clone(),
        top_contributions: 0,
        missing_policy: 0,
    };
    let answer = inference.predict(authorized(request, &key)?).await?.into_inner();
    ensure!(answer.version == 1 && answer.algorithm == "mlp", "{answer:?}");
    let mut firsts = Vec::new();
    for p in &answer.predictions {
        ensure!(p.offers.len() == 9, "every offer of the catalogue is ranked: {p:?}");
        ensure!(p.offers.windows(2).all(|w| w[0].probability >= w[1].probability), "most probable first: {p:?}");
        let total: f64 = p.offers.iter().map(|o| o.probability).sum();
        ensure!((total - 1.0).abs() < 1e-4, "the probabilities are a distribution: {total}");
        ensure!(p.score == Some(p.offers[0].probability), "the score is the first offer's: {p:?}");
        firsts.push(p.offers[0].offer.clone());
    }
    eventually(Duration::from_secs(30), "the next_best_offer_prediction view to hold the first offers", || {
        let (features, users, key, firsts) = (features.clone(), users.clone(), key.clone(), firsts.clone());
        async move {
            let values =
                online_values(features, &key, "next_best_offer_prediction:next_best_offer_offer", &users).await?;
            let offers: Vec<String> = values
                .values
                .iter()
                .filter_map(|v| match &v.val {
                    Some(pb::value::Val::StringVal(x)) => Some(x.clone()),
                    _ => None,
                })
                .collect();
            Ok((offers == firsts).then_some(()))
        }
    })
    .await
    .with_context(|| server.log_tail())?;

    // And in the prediction log, once the server stops (it flushes on the way out).
    server.stop()?;
    let log_dir = offline_root.join("predictions/churn/client_id=shop");
    let files = std::fs::read_dir(&log_dir).with_context(|| format!("reading {}", log_dir.display()))?.count();
    ensure!(files > 0, "the prediction log is empty");
    drop(features);

    // Train/serve consistency: each served score is the one the training code computes from a
    // point-in-time dataset of the churn service at the moment the server read the features
    // (the stream's feature log is complete now that the server has stopped).
    let expected = training_scores(data.path(), &offline_root, &users, features_at).await?;
    for (p, want) in churn.predictions.iter().zip(&expected) {
        let got = p.score.context("scored")?;
        ensure!((got - want).abs() < 1e-12, "{}: served {got}, the training code {want}", p.entity_key);
    }

    // `livora score --all` scores every user of the spine view the same way, offline of the
    // server, and appends to the same log.
    let parquet_files = |dir: &Path| -> Result<usize> {
        let mut n = 0;
        for day in std::fs::read_dir(dir)? {
            n += std::fs::read_dir(day?.path())?
                .filter(|f| f.as_ref().is_ok_and(|f| f.path().extension().is_some_and(|e| e == "parquet")))
                .count();
        }
        Ok(n)
    };
    let before = parquet_files(&log_dir)?;
    let scored = livora(data.path(), &["score", "churn", "--client", "shop", "--all"])?;
    ensure!(scored.contains("with churn v1") && scored.contains("view `user_activity`"), "{scored}");
    let all: usize = scored
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("the number of entities scored: {scored}"))?;
    ensure!(all >= users.len(), "scored {all} users, fewer than the {} predicted above", users.len());
    ensure!(parquet_files(&log_dir)? > before, "livora score appended nothing to the prediction log");
    Ok(())
}

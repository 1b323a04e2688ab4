//! Predictions against real parts: the feature and model registries (SQLite), the embedded
//! online store (redb), a model trained by the zoo's code and registered, and the gRPC API over
//! a real socket with the generated client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Utc;
use common::shop::{
    DAY, OFFERS, Setup, artifact, authorized, channel, keys, ranker_artifact, reordered_artifact, setup, shop,
};
use livora_feature_store::serving::FeatureStatus;
use livora_inference::{GrpcInferenceService, MissingPolicy, Predictions, RowStatus, canary};
use livora_models::{Algorithm, Input};
use livora_proto::livora::v1 as pb;
use pb::inference_service_client::InferenceServiceClient;
use polars::prelude::{ParquetReader, SerReader};

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

    // The same artifact, scored by the zoo's code on the values the store holds, with
    // days_since taken at the moment the answer says the features were read: the served score
    // must be the one training computes. (cli/tests/models_e2e.rs checks the same against a
    // point-in-time dataset built by the training code at that moment.)
    let trained = artifact(1, 0.0);
    let days = |ago: i64| (p.features_at - (s.now - ago * DAY)) as f64 / DAY as f64;
    let expected = |orders: f64, seen: i64, channel: &str| {
        trained.score(&[Input::Number(orders), Input::Number(days(seen)), Input::Text(channel)], 2).unwrap()
    };
    let u1 = expected(0.0, 30, "email");
    let u2 = expected(4.0, 1, "web");
    assert!((p.rows[0].score.unwrap() - u1.probability).abs() < 1e-12, "{:?} vs {u1:?}", p.rows[0]);
    assert!((p.rows[1].score.unwrap() - u2.probability).abs() < 1e-12, "{:?} vs {u2:?}", p.rows[1]);
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
async fn the_prediction_log_records_the_moment_the_features_were_read() {
    let s = setup().await;
    let before = Utc::now().timestamp_micros();
    let p = predict(&s, "churn", &keys(&["u-1", "u-2"])).await;
    let after = Utc::now().timestamp_micros();
    assert!((before..=after).contains(&p.features_at), "{} outside [{before}, {after}]", p.features_at);
    s.sink.flush().await.unwrap();
    let mut logged = Vec::new();
    for frame in logged_frames(&s) {
        let times = frame.column("event_timestamp").unwrap().cast(&polars::prelude::DataType::Int64).unwrap();
        logged.extend(times.i64().unwrap().into_no_null_iter());
    }
    assert_eq!(logged, [p.features_at; 2]);
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

async fn serve(s: &Setup) -> std::net::SocketAddr {
    let service = GrpcInferenceService::new(s.predictor.clone(), s.clients.clone(), MissingPolicy::Impute);
    common::shop::serve(tonic::service::Routes::new(service.into_server())).await
}

fn request(model: &str, entities: &[&str], key: &str, client: &str) -> tonic::Request<pb::PredictRequest> {
    let message = pb::PredictRequest {
        model: model.into(),
        entity_keys: keys(entities),
        top_contributions: 3,
        missing_policy: 0,
    };
    authorized(message, key, client)
}

#[tokio::test]
async fn the_grpc_api_scores_batches_and_refuses_with_the_right_codes() {
    let s = setup().await;
    let addr = serve(&s).await;
    let mut grpc = InferenceServiceClient::new(channel(addr).await);
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

#[tokio::test]
async fn a_ranker_serves_every_offer_most_probable_first_as_the_zoo_ranks_them() {
    let s = setup().await;
    let ranker = ranker_artifact(1);
    s.models.register(&shop(), &ranker).await.unwrap();
    s.models.promote(&shop(), "next_best_offer", 1, "production").await.unwrap();
    let addr = serve(&s).await;
    let mut grpc = InferenceServiceClient::new(channel(addr).await);
    let answer = grpc
        .predict(request("next_best_offer", &["u-1", "u-2", "u-new"], &s.keys.0, "shop"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((answer.version, answer.algorithm.as_str()), (1, "mlp"));
    let first: Vec<&str> = answer.predictions.iter().map(|p| p.offers[0].offer.as_str()).collect();
    // u-1's channel is email, u-2's web: the network learned that each takes its channel's offer.
    assert_eq!(&first[..2], ["email_offer", "web_offer"]);
    for p in &answer.predictions {
        assert_eq!(p.offers.len(), OFFERS.len());
        assert!(p.offers.windows(2).all(|w| w[0].probability >= w[1].probability), "{p:?}");
        assert_eq!(p.score, Some(p.offers[0].probability));
        // No contributions for a ranker, even when asked for.
        assert!(p.contributions.is_empty());
    }
    // Train/serve consistency: the zoo's ranking of the values the store holds.
    let days = (Utc::now().timestamp_micros() - (s.now - 30 * DAY)) as f64 / DAY as f64;
    let values = [Input::Number(0.0), Input::Number(days), Input::Text("email")];
    let zoo = ranker.rank(&values, 0).unwrap();
    let served = &answer.predictions[0].offers;
    assert_eq!(
        zoo.iter().map(|o| o.offer.as_str()).collect::<Vec<_>>(),
        served.iter().map(|o| o.offer.as_str()).collect::<Vec<_>>()
    );
    for (z, o) in zoo.iter().zip(served) {
        assert!((z.probability - o.probability).abs() < 1e-6, "{z:?} vs {o:?}");
    }
    // The classifier answer carries no offers.
    let churn = grpc.predict(request("churn", &["u-1"], &s.keys.0, "shop")).await.unwrap().into_inner();
    assert!(churn.predictions[0].offers.is_empty());
}

/// `u-0` … `u-199`: two of them in the online store (u-1, u-2), the others imputed.
fn users() -> Vec<String> {
    (0..200).map(|i| format!("u-{i}")).collect()
}

/// The keys the canary of `churn@production` at `weight` takes, by the crate's documented hash.
fn canary_keys(keys: &[String], weight: u32) -> Vec<&str> {
    keys.iter().filter(|k| canary::scores(&shop(), "churn", "production", k, weight)).map(String::as_str).collect()
}

/// The keys of the rows `version` scored, in request order.
fn scored_by(p: &Predictions, version: i64) -> Vec<&str> {
    p.rows.iter().filter(|r| r.version == version).map(|r| r.entity_key.as_str()).collect()
}

async fn predict(s: &Setup, reference: &str, keys: &[String]) -> Predictions {
    s.predictor.predict(&shop(), reference, keys, 0, MissingPolicy::Impute).await.unwrap()
}

/// Every file of `shop`'s churn prediction log, read.
fn logged_frames(s: &Setup) -> Vec<polars::prelude::DataFrame> {
    let mut frames = Vec::new();
    for day in std::fs::read_dir(s.lake.join("predictions/churn/client_id=shop")).unwrap() {
        for file in std::fs::read_dir(day.unwrap().path()).unwrap() {
            frames.push(ParquetReader::new(std::fs::File::open(file.unwrap().path()).unwrap()).finish().unwrap());
        }
    }
    frames
}

/// Every (entity key, model version) in the churn prediction log.
fn logged_versions(s: &Setup) -> Vec<(String, i64)> {
    let mut logged = Vec::new();
    for frame in logged_frames(s) {
        let keys = frame.column("user_id").unwrap().str().unwrap().clone();
        let versions = frame.column("churn_model_version").unwrap().i64().unwrap().clone();
        for i in 0..frame.height() {
            logged.push((keys.get(i).unwrap().to_owned(), versions.get(i).unwrap()));
        }
    }
    logged.sort();
    logged
}

#[tokio::test]
async fn a_canary_scores_its_share_of_the_entities_and_the_same_ones_each_time() {
    let s = setup().await;
    s.models.register(&shop(), &artifact(2, 15.0)).await.unwrap();
    s.models.set_canary(&shop(), "churn", "production", 2, 30).await.unwrap();
    let users = users();
    let at30 = canary_keys(&users, 30);
    // The documented hash splits these 200 keys close to 30%; an empty or full split would
    // test nothing.
    assert!((40..=80).contains(&at30.len()), "{} of 200", at30.len());

    let first = predict(&s, "churn", &users).await;
    assert_eq!(first.version, 1, "the answer's version is the alias's");
    assert_eq!(scored_by(&first, 2), at30);
    assert_eq!(scored_by(&first, 1).len() + at30.len(), users.len(), "every other entity is v1's");
    // The prediction log records the version that scored each entity.
    s.sink.flush().await.unwrap();
    let mut expected: Vec<(String, i64)> =
        users.iter().map(|k| (k.clone(), if at30.contains(&k.as_str()) { 2 } else { 1 })).collect();
    expected.sort();
    assert_eq!(logged_versions(&s), expected);

    // Each group is scored by its own version: u-1 and u-2 as the pinned versions score them.
    let (v1, v2) = (predict(&s, "churn@1", &users[1..3]).await, predict(&s, "churn@2", &users[1..3]).await);
    assert_ne!(v1.rows[0].score, v2.rows[0].score, "the two versions score apart");
    for (j, row) in first.rows[1..3].iter().enumerate() {
        let pinned = if row.version == 2 { &v2 } else { &v1 };
        assert!((row.score.unwrap() - pinned.rows[j].score.unwrap()).abs() < 1e-6, "{row:?} vs {:?}", pinned.rows[j]);
    }

    // Sticky: the same split on the next call.
    let second = predict(&s, "churn", &users).await;
    assert_eq!(
        second.rows.iter().map(|r| r.version).collect::<Vec<_>>(),
        first.rows.iter().map(|r| r.version).collect::<Vec<_>>()
    );

    // Monotone: raising the weight keeps every canary entity on the canary and adds others.
    s.models.set_canary(&shop(), "churn", "production", 2, 60).await.unwrap();
    let raised = predict(&s, "churn", &users).await;
    let at60 = canary_keys(&users, 60);
    assert_eq!(scored_by(&raised, 2), at60);
    assert!(at30.iter().all(|k| at60.contains(k)), "an entity left the canary");
    assert!(at60.len() > at30.len());

    // A reference naming a version never takes the canary; naming the alias does.
    assert!(predict(&s, "churn@1", &users).await.rows.iter().all(|r| r.version == 1));
    assert_eq!(scored_by(&predict(&s, "churn@production", &users).await, 2), at60);

    // 100%: every entity to the canary.
    s.models.set_canary(&shop(), "churn", "production", 2, 100).await.unwrap();
    let all = predict(&s, "churn", &users).await;
    assert_eq!(all.version, 1);
    assert!(all.rows.iter().all(|r| r.version == 2));

    // Cleared: the alias's version scores everyone again.
    s.models.clear_canary(&shop(), "churn", "production").await.unwrap();
    assert!(predict(&s, "churn", &users).await.rows.iter().all(|r| r.version == 1));
}

#[tokio::test]
async fn grpc_predictions_carry_the_version_that_scored_each_entity() {
    let s = setup().await;
    s.models.register(&shop(), &artifact(2, 15.0)).await.unwrap();
    s.models.set_canary(&shop(), "churn", "production", 2, 50).await.unwrap();
    let addr = serve(&s).await;
    let mut grpc = InferenceServiceClient::new(channel(addr).await);
    let users = users();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let answer = grpc.predict(request("churn", &names, &s.keys.0, "shop")).await.unwrap().into_inner();
    assert_eq!(answer.version, 1);
    assert!(answer.features_at.is_some_and(|t| t.seconds > 0), "the answer says when its features were read");
    let at50 = canary_keys(&users, 50);
    assert!(!at50.is_empty() && at50.len() < users.len());
    for p in &answer.predictions {
        let expected = if at50.contains(&p.entity_key.as_str()) { 2 } else { 1 };
        assert_eq!(p.version, expected, "{}", p.entity_key);
    }
    // A version reference: every entity by that version, the canary aside.
    let pinned = grpc.predict(request("churn@1", &names, &s.keys.0, "shop")).await.unwrap().into_inner();
    assert!(pinned.predictions.iter().all(|p| p.version == 1));
}

#[tokio::test]
async fn a_canary_that_no_longer_reads_the_aliass_features_is_ignored_until_it_does_again() {
    let s = setup().await;
    let users = users();
    s.models.register(&shop(), &artifact(2, 15.0)).await.unwrap();
    s.models.set_canary(&shop(), "churn", "production", 2, 100).await.unwrap();
    assert!(predict(&s, "churn", &users).await.rows.iter().all(|r| r.version == 2));

    // The alias moves to a version reading the features in another order: v2 cannot share its
    // online read, so v3 scores every entity (and a warning is logged once).
    s.models.register(&shop(), &reordered_artifact(3)).await.unwrap();
    s.models.promote(&shop(), "churn", 3, "production").await.unwrap();
    assert!(s.models.canary(&shop(), "churn", "production").await.unwrap().is_some(), "the canary stays");
    for _ in 0..2 {
        let p = predict(&s, "churn", &users).await;
        assert_eq!(p.version, 3);
        assert!(p.rows.iter().all(|r| r.version == 3 && r.score.is_some()));
    }
    // Rolled back to v1: the canary serves again.
    s.models.rollback(&shop(), "churn", "production").await.unwrap();
    assert!(predict(&s, "churn", &users).await.rows.iter().all(|r| r.version == 2));
}

//! Models served by SageMaker endpoints, against moto's SageMaker runtime (`moto_server -p 5000`,
//! started by `.ci/services`): Livora fetches the features online, sends them to the endpoint
//! with the real AWS SDK, and reads the probabilities back. Moto answers what it is told to
//! (`/moto-api/static/sagemaker/endpoint-results`), one queued answer per distinct request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::shop::{MOTO, endpoint_artifact, keys, setup, shop};
use livora_common::ErrorCode;
use livora_inference::MissingPolicy;

/// Queues `bodies` as moto's next SageMaker answers; fails loudly when moto is not running.
async fn queue_answers(bodies: &[&str]) {
    let results: Vec<serde_json::Value> = bodies
        .iter()
        .map(|b| {
            serde_json::json!({
                "Body": b, "ContentType": "text/csv", "InvokedProductionVariant": "AllTraffic", "CustomAttributes": ""
            })
        })
        .collect();
    let answer = reqwest::Client::new()
        .post(format!("{MOTO}/moto-api/static/sagemaker/endpoint-results"))
        .json(&serde_json::json!({ "region": "us-east-1", "results": results }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("moto is not running at {MOTO} ({e}); start it with `bash .ci/services`"));
    assert!(answer.status().is_success(), "moto refused the queued answers: {}", answer.status());
}

#[tokio::test]
async fn an_endpoint_model_scores_online_features_through_sagemaker() {
    let s = setup().await;
    // Endpoint names of their own: moto remembers each (endpoint, request)'s answer.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let (good, short) = (format!("churn-{}", &run[..12]), format!("short-{}", &run[..12]));
    for (model, endpoint) in [("churn_sm", &good), ("churn_short", &short)] {
        s.models.register(&shop(), &endpoint_artifact(model, endpoint)).await.unwrap();
        s.models.promote(&shop(), model, 1, "production").await.unwrap();
    }

    queue_answers(&["0.25\n0.75\n"]).await;
    let p = s.predictor.predict(&shop(), "churn_sm", &keys(&["u-1", "u-2"]), 3, MissingPolicy::Impute).await.unwrap();
    assert_eq!(p.algorithm.name(), "sagemaker");
    assert_eq!(p.rows.iter().map(|r| r.score).collect::<Vec<_>>(), [Some(0.25), Some(0.75)]);
    assert_eq!(p.feature_names, ["user_activity__orders_30d", "user_activity__days_since_last_seen"]);
    // No explanation from a remote model.
    assert!(p.rows.iter().all(|r| r.contributions.is_empty()));

    // An answer that does not fit the rows is an error naming the endpoint, never a guess.
    queue_answers(&["0.5"]).await;
    let err = s
        .predictor
        .predict(&shop(), "churn_short", &keys(&["u-1", "u-2"]), 0, MissingPolicy::Impute)
        .await
        .expect_err("one probability for two rows");
    assert_eq!(err.code(), ErrorCode::Unavailable);
    assert_eq!(err.to_string(), format!("SageMaker endpoint `{short}`: answered 1 probabilities for 2 rows"));
}

//! The JSON twin over a real socket, with reqwest.

use std::sync::Arc;

use livora_feature_store::serving::http::router;
use livora_feature_store::{FeatureServer, Value};
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;

use super::*;

struct Running {
    url: String,
    keys: Keys,
    fixture: Fixture,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn start() -> Running {
    let fixture = Fixture::with_shop().await;
    let (clients, keys) = clients(fixture.dir.path()).await;
    let server = Arc::new(FeatureServer::new(fixture.registry.clone(), fixture.store.clone(), &Default::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/features/online", listener.local_addr().unwrap());
    let app = router(server, clients);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Running { url, keys, fixture, server }
}

async fn post(running: &Running, key: Option<&str>, client_id: &str, body: &Json) -> (u16, Json) {
    let mut request = reqwest::Client::new()
        .post(&running.url)
        .header("x-client-id", client_id)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn answers_the_same_data_as_json() {
    let running = start().await;
    let f = &running.fixture;
    let t = 1_767_225_600_123_456; // 2026-01-01T00:00:00.123456Z
    f.write(
        "shop",
        "user",
        "u-1",
        "profile",
        t,
        vec![
            ("country", Value::String("FR".into())),
            ("signed_up_at", Value::Timestamp(t)),
            ("orders_30d", Value::Int64(2)),
        ],
    )
    .await;
    let body = json!({
        "features": ["profile:country", "profile:signed_up_at", "profile:orders_30d"],
        "entities": {"user_id": ["u-1", "u-2"]},
    });
    let (status, answer) = post(&running, Some(&running.keys.shop), "shop", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({
            "feature_names": ["country", "signed_up_at", "orders_30d"],
            "results": [
                {"values": ["FR", null], "statuses": ["PRESENT", "MISSING"],
                 "event_timestamps": ["2026-01-01T00:00:00.123456Z", null]},
                {"values": ["2026-01-01T00:00:00.123456Z", null], "statuses": ["PRESENT", "MISSING"],
                 "event_timestamps": ["2026-01-01T00:00:00.123456Z", null]},
                {"values": [2, null], "statuses": ["PRESENT", "MISSING"],
                 "event_timestamps": ["2026-01-01T00:00:00.123456Z", null]},
            ]
        })
    );

    let body = json!({"feature_service": "churn", "entities": {"user_id": ["u-1"]}, "full_feature_names": true});
    let (status, answer) = post(&running, Some(&running.keys.shop), "shop", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["feature_names"][4], "profile__country");
    assert_eq!(answer["results"][4]["values"][0], "FR");
}

#[tokio::test]
async fn errors_answer_with_the_status_of_their_class_and_a_json_body() {
    let running = start().await;
    let shop = Some(running.keys.shop.as_str());
    let ok = json!({"features": ["activity:orders_30d"], "entities": {"user_id": ["u-1"]}});
    let cases = [
        (None, "shop", ok.clone(), 401, "unauthenticated", "missing `authorization"),
        (Some(running.keys.rival.as_str()), "shop", ok.clone(), 403, "permission_denied", "client `shop`"),
        (shop, "shop", json!({"features": ["nope:x"], "entities": {"user_id": ["u"]}}), 404, "not_found", "`nope`"),
        (
            shop,
            "shop",
            json!({"features": ["activity:orders_30d"], "entities": {"user_id": [3]}}),
            400,
            "invalid_argument",
            "entities.user_id[0]: expected string",
        ),
        (shop, "shop", json!({"entities": {"user_id": ["u"]}}), 400, "invalid_argument", "features"),
        (
            shop,
            "shop",
            json!({"features": ["activity:orders_30d"], "feature_service": "churn",
                              "entities": {"user_id": ["u"]}}),
            400,
            "invalid_argument",
            "not both",
        ),
        (
            shop,
            "shop",
            json!({"features": "activity:orders_30d", "entities": {}}),
            400,
            "invalid_argument",
            "features: invalid type",
        ),
        (shop, "shop", json!({"featurez": [], "entities": {}}), 400, "invalid_argument", "unknown field `featurez`"),
    ];
    for (key, client_id, body, status, code, message) in cases {
        let (got, answer) = post(&running, key, client_id, &body).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        let text = answer["error"]["message"].as_str().unwrap();
        assert!(text.contains(message), "expected `{message}` in {text}");
    }
    let response = reqwest::Client::new()
        .post(&running.url)
        .bearer_auth(&running.keys.shop)
        .header("x-client-id", "shop")
        .header("content-type", "text/plain")
        .body(ok.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
}

//! The HTTP collector in process, over a real socket: every answer of `POST /v1/events`, the
//! health and metrics endpoints, and what reaches the log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use livora_common::{ByteSize, ClientId};
use livora_ingest::config::{IngestConfig, RateLimitConfig};
use livora_ingest::enrich::Enricher;
use livora_ingest::log::embedded::EmbeddedLog;
use livora_ingest::log::{EventLog, LogRecord};
use livora_ingest::metrics::Metrics;
use livora_ingest::{ClientStore, Collector};
use serde_json::{Value, json};

struct Harness {
    url: String,
    log: Arc<EmbeddedLog>,
    clients: Arc<ClientStore>,
    key: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn start(config: IngestConfig) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("clients.db").display());
    let clients = Arc::new(ClientStore::connect(&url, Duration::ZERO).await.unwrap());
    let key = clients.create_client(&ClientId::new("shop").unwrap()).await.unwrap().secret;
    clients.create_client(&ClientId::new("rival").unwrap()).await.unwrap();
    let log = Arc::new(EmbeddedLog::open(&dir.path().join("log"), &Default::default()).unwrap());
    let collector = Arc::new(Collector::new(
        config,
        clients.clone(),
        log.clone() as Arc<dyn EventLog>,
        Enricher::new(None).unwrap(),
        Arc::new(Metrics::new()),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = collector.router().into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Harness { url: format!("http://{addr}"), log, clients, key, http: reqwest::Client::new(), _dir: dir }
}

fn event(i: u32) -> Value {
    json!({
        "event_id": uuid::Uuid::new_v4().to_string(),
        "timestamp": "2026-01-05T10:00:00.000Z",
        "client_id": "shop",
        "user_id": format!("u_{i}"),
        "event_type": "product_view",
        "props": {"product_id": "p1", "price": 12.5},
        "context": {"ip": "203.0.113.7", "ua": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"}
    })
}

impl Harness {
    async fn post_as(
        &self,
        key: Option<&str>,
        client: &str,
        content_type: &str,
        body: String,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self
            .http
            .post(format!("{}/v1/events", self.url))
            .header("x-client-id", client)
            .header("content-type", content_type);
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        let r = req.body(body).send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.json::<Value>().await.unwrap_or(Value::Null);
        (status, body, headers)
    }

    async fn post(&self, body: Value) -> (u16, Value) {
        let (s, b, _) = self.post_as(Some(&self.key), "shop", "application/json", body.to_string()).await;
        (s, b)
    }

    /// Every event record in the log.
    async fn logged_events(&self) -> Vec<livora_common::Event> {
        let mut consumer = self.log.consumer("test").await.unwrap();
        let mut out = Vec::new();
        loop {
            let batch = consumer.poll(1000, Duration::from_millis(50)).await.unwrap();
            if batch.is_empty() {
                return out;
            }
            for d in batch {
                if let LogRecord::Events(events) = LogRecord::decode(&d.payload).unwrap() {
                    out.extend(events);
                }
            }
        }
    }
}

#[tokio::test]
async fn an_accepted_batch_is_in_the_log_enriched() {
    let h = start(IngestConfig::default()).await;
    let batch: Vec<Value> = (0..100).map(event).collect();
    let (status, body) = h.post(Value::Array(batch.clone())).await;
    assert_eq!((status, body), (200, json!({"accepted": 100})));
    let logged = h.logged_events().await;
    assert_eq!(logged.len(), 100);
    let first = &logged[0];
    assert_eq!(first.event_id.to_string(), batch[0]["event_id"].as_str().unwrap());
    assert_eq!(first.client_id.as_str(), "shop");
    assert_eq!(first.enrichment.browser.as_deref(), Some("Chrome"));
    assert_eq!(first.enrichment.device_type.as_deref(), Some("desktop"));
    assert_eq!(first.enrichment.ip.as_deref(), Some("203.0.113.7"));
    assert!(first.received_at > first.timestamp);
}

#[tokio::test]
async fn a_bad_batch_lists_every_problem_and_appends_no_event() {
    let h = start(IngestConfig::default()).await;
    let mut bad = event(1);
    bad["timestamp"] = json!("2026-13-01");
    let mut worse = event(2);
    worse.as_object_mut().unwrap().remove("event_type");
    let (status, body) = h.post(json!([event(0), bad, worse])).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_argument");
    let problems = body["error"]["problems"].as_array().unwrap();
    let at: Vec<(u64, &str)> =
        problems.iter().map(|p| (p["index"].as_u64().unwrap(), p["field"].as_str().unwrap())).collect();
    assert_eq!(at, vec![(1, "timestamp"), (2, "event_type")]);
    assert!(h.logged_events().await.is_empty(), "nothing of a refused batch is accepted");
    // The refusal is kept for the quarantine table.
    let mut consumer = h.log.consumer("q").await.unwrap();
    let records = consumer.poll(10, Duration::from_millis(100)).await.unwrap();
    assert_eq!(records.len(), 1);
    let LogRecord::Rejected(r) = LogRecord::decode(&records[0].payload).unwrap() else { panic!("a rejection") };
    assert_eq!(r.problems.len(), 2);
}

#[tokio::test]
async fn authentication_and_tenancy() {
    let h = start(IngestConfig::default()).await;
    let body = json!([event(0)]).to_string();
    let (s, b, headers) = h.post_as(None, "shop", "application/json", body.clone()).await;
    assert_eq!(s, 401, "{b}");
    assert_eq!(headers["www-authenticate"], "Bearer");
    let (s, _, _) = h.post_as(Some("lvk_nope"), "shop", "application/json", body.clone()).await;
    assert_eq!(s, 401);
    let (s, b, _) = h.post_as(Some(&h.key), "rival", "application/json", body.clone()).await;
    assert_eq!(s, 403, "a key of shop cannot post as rival: {b}");
    let (s, b, _) = h.post_as(Some(&h.key), "shop", "text/plain", body.clone()).await;
    assert_eq!(s, 415, "{b}");
    // A revoked key stops working (the cache TTL is zero here).
    let key_id = h.clients.list_keys(Some(&ClientId::new("shop").unwrap())).await.unwrap()[0].key_id.clone();
    h.clients.revoke(&key_id).await.unwrap();
    let (s, _, _) = h.post_as(Some(&h.key), "shop", "application/json", body).await;
    assert_eq!(s, 401);
    assert!(h.logged_events().await.is_empty());
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let config = IngestConfig { max_request_bytes: ByteSize::kib(64), ..IngestConfig::default() };
    let h = start(config).await;
    let batch: Vec<Value> = (0..100)
        .map(|i| {
            let mut e = event(i);
            e["props"]["text"] = json!("x".repeat(1000));
            e
        })
        .collect();
    let (status, body) = h.post(Value::Array(batch)).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("64KiB"));
    assert!(h.logged_events().await.is_empty());
}

#[tokio::test]
async fn over_the_rate_limit_is_429_with_retry_after() {
    let config =
        IngestConfig { rate_limit: RateLimitConfig { events_per_second: 10, burst: 100 }, ..IngestConfig::default() };
    let h = start(config).await;
    let batch = Value::Array((0..100).map(event).collect());
    assert_eq!(h.post(batch.clone()).await.0, 200);
    let (s, body, headers) = h.post_as(Some(&h.key), "shop", "application/json", batch.to_string()).await;
    assert_eq!(s, 429, "{body}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "{retry}");
    assert_eq!(h.logged_events().await.len(), 100, "only the first batch is accepted");
    // A client out of tokens cannot fill the log with refused requests either.
    let (s, _, _) = h.post_as(Some(&h.key), "shop", "application/json", "[{}]".into()).await;
    assert_eq!(s, 429);
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let h = start(IngestConfig::default()).await;
    h.post(json!([event(0), event(1)])).await;
    h.post(json!({"nope": 1})).await;
    let get = |path: &str| {
        let url = format!("{}{path}", h.url);
        let http = h.http.clone();
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/readyz").await.0, 200);
    let (status, metrics) = get("/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("livora_ingest_events_accepted_total 2"), "{metrics}");
    assert!(metrics.contains("livora_ingest_requests_total{status=\"400\"} 1"), "{metrics}");
}

//! Integration tests of the NATS JetStream event log against the local server at
//! `nats://127.0.0.1:4222` (JetStream enabled). They fail, not skip, when it is absent.
//!
//! Every test works on its own stream and subject prefix and deletes the stream at the end, so
//! tests run in parallel without interfering.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use livora_common::ClientId;
use livora_ingest::log::nats::{NatsLog, NatsLogConfig};
use livora_ingest::log::{Delivery, EventLog, LogConsumer, LogError};
use tokio::time::{Instant, timeout};

const URL: &str = "nats://127.0.0.1:4222";

/// A configuration on a fresh stream and subject prefix.
fn unique_config() -> NatsLogConfig {
    let id = uuid::Uuid::new_v4().simple().to_string();
    NatsLogConfig {
        url: URL.to_owned(),
        stream: format!("LIVORA_TEST_{id}"),
        subject_prefix: format!("livora.test.{id}"),
        max_age: Duration::from_secs(3600),
        ..NatsLogConfig::default()
    }
}

/// Runs `body` on `config`, then deletes the stream, whether `body` passed or panicked.
async fn with_stream<F, Fut>(config: NatsLogConfig, body: F)
where
    F: FnOnce(NatsLogConfig) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let result = tokio::spawn(body(config.clone())).await;
    let client = async_nats::connect(URL).await.expect("connect to nats for cleanup");
    let js = async_nats::jetstream::new(client);
    if let Err(e) = js.delete_stream(&config.stream).await {
        eprintln!("cannot delete test stream {}: {e}", config.stream);
    }
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn open(config: &NatsLogConfig) -> NatsLog {
    NatsLog::connect(config).await.expect("a nats server with jetstream must run at nats://127.0.0.1:4222")
}

fn client(id: &str) -> ClientId {
    ClientId::new(id).unwrap()
}

fn payload(i: usize) -> Bytes {
    Bytes::from(format!("record-{i}\0\u{ff}").into_bytes())
}

/// Appends `n` records of client `shop-a`, returning their positions.
async fn append_n(log: &NatsLog, n: usize) -> Vec<u64> {
    let mut positions = Vec::new();
    for i in 0..n {
        positions.push(log.append(&client("shop-a"), payload(i)).await.unwrap());
    }
    positions
}

/// Polls until `n` records arrived (or a generous deadline passed), in small batches.
async fn read_n(consumer: &mut dyn LogConsumer, n: usize) -> Vec<Delivery> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        out.extend(consumer.poll(7, Duration::from_millis(500)).await.unwrap());
    }
    out
}

fn positions(deliveries: &[Delivery]) -> Vec<u64> {
    deliveries.iter().map(|d| d.position).collect()
}

#[tokio::test]
async fn append_returns_increasing_positions_on_client_subjects() {
    with_stream(unique_config(), |config| async move {
        let log = open(&config).await;
        assert_eq!(log.backend(), "nats");
        let clients = ["shop-a", "shop-b", "shop-a", "c1"];
        let mut appended = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            appended.push((log.append(&client(c), payload(i)).await.unwrap(), *c, i));
        }
        assert!(appended.windows(2).all(|w| w[0].0 < w[1].0), "positions increase: {appended:?}");

        let js = async_nats::jetstream::new(async_nats::connect(URL).await.unwrap());
        let stream = js.get_stream(&config.stream).await.unwrap();
        for (position, c, i) in appended {
            let message = stream.get_raw_message(position).await.unwrap();
            assert_eq!(message.subject.as_str(), format!("{}.{c}", config.subject_prefix));
            assert_eq!(message.payload, payload(i));
        }
    })
    .await;
}

#[tokio::test]
async fn consumer_reads_everything_in_order() {
    with_stream(unique_config(), |config| async move {
        let log = open(&config).await;
        let mut appended = append_n(&log, 12).await;
        let mut consumer = log.consumer("lake").await.unwrap();
        // Records appended after the consumer was opened arrive too.
        appended.extend(append_n(&log, 8).await);

        let got = read_n(consumer.as_mut(), 20).await;
        assert_eq!(positions(&got), appended);
        let payloads: Vec<Bytes> = got.iter().map(|d| d.payload.clone()).collect();
        let expected: Vec<Bytes> = (0..12).chain(0..8).map(payload).collect();
        assert_eq!(payloads, expected);
        consumer.commit(*appended.last().unwrap()).await.unwrap();
        assert!(consumer.poll(10, Duration::from_millis(200)).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn commit_then_reopen_resumes_after_committed_position() {
    let config = NatsLogConfig { ack_wait: Duration::from_secs(1), ..unique_config() };
    with_stream(config, |config| async move {
        let appended = {
            let log = open(&config).await;
            let appended = append_n(&log, 5).await;
            let mut consumer = log.consumer("lake").await.unwrap();
            let got = read_n(consumer.as_mut(), 5).await;
            assert_eq!(positions(&got), appended);
            consumer.commit(appended[2]).await.unwrap();
            appended
        };

        // A new instance: a restarted process. Records 4 and 5 were delivered but not committed.
        let log = open(&config).await;
        let mut consumer = log.consumer("lake").await.unwrap();
        let mut seen = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen.len() < 2 && Instant::now() < deadline {
            for delivery in consumer.poll(10, Duration::from_millis(500)).await.unwrap() {
                assert!(delivery.position > appended[2], "committed record redelivered");
                seen.insert(delivery.position);
            }
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), appended[3..].to_vec());
        // Committed now, they are not delivered again (with a 1 s ack_wait they would be otherwise).
        consumer.commit(appended[4]).await.unwrap();

        // New records follow, and committing the last one leaves nothing behind.
        let later = log.append(&client("shop-b"), payload(99)).await.unwrap();
        let got = read_n(consumer.as_mut(), 1).await;
        assert_eq!(positions(&got), vec![later]);
        consumer.commit(later).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn uncommitted_records_are_delivered_again_after_reopen() {
    let config = NatsLogConfig { ack_wait: Duration::from_secs(1), ..unique_config() };
    with_stream(config, |config| async move {
        let appended = {
            let log = open(&config).await;
            let appended = append_n(&log, 3).await;
            let mut consumer = log.consumer("lake").await.unwrap();
            assert_eq!(positions(&read_n(consumer.as_mut(), 3).await), appended);
            appended
        };

        let log = open(&config).await;
        let mut consumer = log.consumer("lake").await.unwrap();
        let again = read_n(consumer.as_mut(), 3).await;
        assert_eq!(positions(&again), appended, "every uncommitted record, in order");
        assert_eq!(again[0].payload, payload(0));
    })
    .await;
}

#[tokio::test]
async fn consumers_with_different_names_each_see_all_records() {
    with_stream(unique_config(), |config| async move {
        let log = open(&config).await;
        let appended = append_n(&log, 6).await;
        let mut lake = log.consumer("lake").await.unwrap();
        let mut stream = log.consumer("stream_aggregator-1").await.unwrap();

        let from_lake = read_n(lake.as_mut(), 6).await;
        lake.commit(appended[5]).await.unwrap();
        let from_stream = read_n(stream.as_mut(), 6).await;
        assert_eq!(positions(&from_lake), appended);
        assert_eq!(positions(&from_stream), appended);
    })
    .await;
}

#[tokio::test]
async fn record_larger_than_the_limit_is_too_large() {
    let config = NatsLogConfig { max_record_bytes: 1024, ..unique_config() };
    with_stream(config, |config| async move {
        let log = open(&config).await;
        let err = log.append(&client("shop-a"), Bytes::from(vec![7u8; 1025])).await.unwrap_err();
        assert!(matches!(err, LogError::TooLarge { size: 1025, limit: 1024 }), "unexpected error: {err}");
        let at_limit = log.append(&client("shop-a"), Bytes::from(vec![7u8; 1024])).await.unwrap();

        // Nothing of the refused record was published.
        let mut consumer = log.consumer("lake").await.unwrap();
        let got = read_n(consumer.as_mut(), 1).await;
        assert_eq!(positions(&got), vec![at_limit]);
        assert_eq!(got[0].payload.len(), 1024);
        assert!(consumer.poll(10, Duration::from_millis(200)).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn invalid_consumer_name_is_rejected() {
    with_stream(unique_config(), |config| async move {
        let log = open(&config).await;
        let long = "x".repeat(65);
        for name in ["", "has space", "a.b", "lake*", "lake>", long.as_str()] {
            let err = log.consumer(name).await.err().expect("invalid name accepted");
            assert!(matches!(err, LogError::BadConsumerName(_)), "{name:?}: {err}");
        }
    })
    .await;
}

#[tokio::test]
async fn poll_on_an_empty_stream_returns_nothing() {
    with_stream(unique_config(), |config| async move {
        let log = open(&config).await;
        let mut consumer = log.consumer("lake").await.unwrap();
        // Generous bound, only to fail instead of hanging.
        let polled = timeout(Duration::from_secs(30), consumer.poll(10, Duration::from_millis(300)))
            .await
            .expect("poll returns after its wait");
        assert!(polled.unwrap().is_empty());
        assert!(consumer.poll(10, Duration::ZERO).await.unwrap().is_empty());
        assert!(consumer.poll(0, Duration::from_secs(5)).await.unwrap().is_empty());
        // Committing without deliveries is a no-op.
        consumer.commit(42).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn reconnecting_updates_the_stream_and_keeps_records() {
    with_stream(unique_config(), |config| async move {
        let first = open(&config).await;
        let position = first.append(&client("shop-a"), payload(0)).await.unwrap();
        let changed = NatsLogConfig { max_age: Duration::from_secs(7200), ..config.clone() };
        let second = open(&changed).await;
        let js = async_nats::jetstream::new(async_nats::connect(URL).await.unwrap());
        let mut stream = js.get_stream(&config.stream).await.unwrap();
        assert_eq!(stream.info().await.unwrap().config.max_age, Duration::from_secs(7200));
        assert!(second.append(&client("shop-a"), payload(1)).await.unwrap() > position);
    })
    .await;
}

#[tokio::test]
async fn connecting_to_an_absent_server_fails() {
    let config = NatsLogConfig { url: "nats://user:secret@127.0.0.1:1".to_owned(), ..unique_config() };
    let result = timeout(Duration::from_secs(30), NatsLog::connect(&config)).await;
    let err = result.expect("connect gives up").expect_err("no server listens on port 1");
    assert!(matches!(err, LogError::Nats(_)), "{err}");
    assert!(!err.to_string().contains("secret"), "credentials leaked: {err}");
}

#[test]
fn default_config_is_valid_and_validation_names_the_key() {
    NatsLogConfig::default().validate().unwrap();
    let cases = [
        ("event_log.nats.subject_prefix", NatsLogConfig { subject_prefix: "a..b".into(), ..Default::default() }),
        ("event_log.nats.subject_prefix", NatsLogConfig { subject_prefix: "a.*".into(), ..Default::default() }),
        ("event_log.nats.subject_prefix", NatsLogConfig { subject_prefix: "a b".into(), ..Default::default() }),
        ("event_log.nats.subject_prefix", NatsLogConfig { subject_prefix: String::new(), ..Default::default() }),
        ("event_log.nats.stream", NatsLogConfig { stream: "A.B".into(), ..Default::default() }),
        ("event_log.nats.stream", NatsLogConfig { stream: String::new(), ..Default::default() }),
        ("event_log.nats.replicas", NatsLogConfig { replicas: 0, ..Default::default() }),
        ("event_log.nats.replicas", NatsLogConfig { replicas: 6, ..Default::default() }),
        ("event_log.nats.max_age", NatsLogConfig { max_age: Duration::ZERO, ..Default::default() }),
        ("event_log.nats.ack_wait", NatsLogConfig { ack_wait: Duration::ZERO, ..Default::default() }),
        ("event_log.nats.max_record_bytes", NatsLogConfig { max_record_bytes: 0, ..Default::default() }),
        ("event_log.nats.url", NatsLogConfig { url: String::new(), ..Default::default() }),
    ];
    for (key, config) in cases {
        let err = config.validate().expect_err(key).to_string();
        assert!(err.contains(key), "{err}");
    }
}

#[test]
fn config_deserializes_with_defaults_and_durations() {
    let config: NatsLogConfig =
        serde_json::from_str(r#"{"stream": "EVENTS", "max_age": "2days", "ack_wait": "30s"}"#).unwrap();
    assert_eq!(config.stream, "EVENTS");
    assert_eq!(config.max_age, Duration::from_secs(2 * 86400));
    assert_eq!(config.ack_wait, Duration::from_secs(30));
    assert_eq!(config.subject_prefix, NatsLogConfig::default().subject_prefix);
    assert!(serde_json::from_str::<NatsLogConfig>(r#"{"strem": "X"}"#).is_err());
}

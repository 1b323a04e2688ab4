//! Integration tests of the raw lake on S3, against moto in server mode at
//! `http://127.0.0.1:5000` (`LIVORA_TEST_S3_ENDPOINT` overrides). They fail, not skip, when it is
//! absent: start it with `moto_server -p 5000 &` (`pip install 'moto[server]'`).
//!
//! Every test works in a bucket of its own, created before and emptied and deleted after.
//!
//! The lake opens S3 as production does ([`store::open`]), with moto's credentials given in
//! `[lake.s3]`, so nothing depends on the `AWS_*` environment of the machine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Timelike, Utc};
use futures::TryStreamExt;
use livora_common::{ClientId, Enrichment, Event, Problem};
use livora_ingest::lake::config::S3Config;
use livora_ingest::lake::dedupe::DedupeStore;
use livora_ingest::lake::schema::events_batch;
use livora_ingest::lake::{LakeConfig, LakeReader, LakeWriter, events_prefix, quarantine_prefix, store};
use livora_ingest::log::embedded::{EmbeddedLog, EmbeddedLogConfig};
use livora_ingest::log::{Delivery, EventLog, LogConsumer, LogError, LogRecord, Position, Rejection};
use livora_ingest::metrics::Metrics;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use tokio::sync::watch;
use uuid::Uuid;

const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:5000";
/// moto accepts any credentials; these are its documented test values.
const MOTO_KEY: &str = "testing";
const REGION: &str = "us-east-1";

fn endpoint() -> String {
    std::env::var("LIVORA_TEST_S3_ENDPOINT").unwrap_or_else(|_| DEFAULT_ENDPOINT.to_owned())
}

/// Runs `body` on a fresh bucket, then deletes the bucket.
fn with_bucket<F, Fut>(_test: &str, body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let endpoint = endpoint();
    let bucket = format!("livora-test-{}", Uuid::new_v4().simple());
    runtime.block_on(create_bucket(&endpoint, &bucket));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(body(bucket.clone()))));
    runtime.block_on(delete_bucket(&endpoint, &bucket));
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn create_bucket(endpoint: &str, bucket: &str) {
    // moto takes unsigned requests; S3 itself would want them signed.
    let response = reqwest::Client::new().put(format!("{endpoint}/{bucket}")).send().await.unwrap_or_else(|e| {
        panic!(
            "moto must run at {endpoint}: start it with `moto_server -p 5000 &` (pip install 'moto[server]') \
             or point LIVORA_TEST_S3_ENDPOINT at it ({e})"
        )
    });
    assert!(response.status().is_success(), "creating bucket {bucket} on {endpoint}: {}", response.status());
}

/// Empties and deletes `bucket`; a failure is reported, not fatal.
async fn delete_bucket(endpoint: &str, bucket: &str) {
    let s3 = AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_bucket_name(bucket)
        .with_region(REGION)
        .with_access_key_id(MOTO_KEY)
        .with_secret_access_key(MOTO_KEY)
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .build()
        .unwrap();
    let emptied = async {
        let paths: Vec<ObjectPath> = s3.list(None).map_ok(|meta| meta.location).try_collect().await?;
        for path in paths {
            s3.delete(&path).await?;
        }
        Ok::<_, object_store::Error>(())
    };
    if let Err(e) = emptied.await {
        eprintln!("cannot empty test bucket {bucket}: {e}");
    }
    match reqwest::Client::new().delete(format!("{endpoint}/{bucket}")).send().await {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => eprintln!("cannot delete test bucket {bucket}: {}", r.status()),
        Err(e) => eprintln!("cannot delete test bucket {bucket}: {e}"),
    }
}

/// The lake under `s3://<bucket>/lake`, rolling files quickly.
fn lake_config(bucket: &str) -> LakeConfig {
    let config = LakeConfig {
        root: Some(format!("s3://{bucket}/lake")),
        roll_interval: Duration::from_millis(100),
        s3: S3Config {
            endpoint: Some(endpoint()),
            region: Some(REGION.into()),
            allow_http: true,
            access_key_id: Some(MOTO_KEY.into()),
            secret_access_key: Some(MOTO_KEY.into()),
        },
        ..LakeConfig::default()
    };
    config.validate().unwrap();
    config
}

fn open_lake(config: &LakeConfig) -> Arc<dyn ObjectStore> {
    store::open(config.root.as_deref().unwrap(), config).unwrap()
}

/// A consumer that reports every position the lake writer commits.
struct Watched {
    inner: Box<dyn LogConsumer>,
    committed: watch::Sender<Option<Position>>,
}

#[async_trait]
impl LogConsumer for Watched {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, LogError> {
        self.inner.poll(max, wait).await
    }

    async fn commit(&mut self, position: Position) -> Result<(), LogError> {
        self.inner.commit(position).await?;
        self.committed.send_replace(Some(position));
        Ok(())
    }
}

/// Runs a lake writer as consumer `name` of `log` until it has committed the whole log (so every
/// event is in a written file), then shuts it down. Returns its metrics.
async fn run_writer(config: &LakeConfig, dedupe: DedupeStore, log: &EmbeddedLog, name: &str) -> Arc<Metrics> {
    let metrics = Arc::new(Metrics::new());
    let writer = LakeWriter::new(open_lake(config), dedupe, config.clone(), metrics.clone()).await.unwrap();
    let (committed_tx, mut committed) = watch::channel(None);
    let consumer = Watched { inner: log.consumer(name).await.unwrap(), committed: committed_tx };
    let (stop, stopped) = watch::channel(false);
    let mut task = tokio::spawn(writer.run(Box::new(consumer), stopped));
    let last = log.end() - 1;
    // A bound against hanging (a failing write is retried forever), not a timing assertion.
    let caught_up = tokio::time::timeout(Duration::from_secs(60), committed.wait_for(|c| c.is_some_and(|c| c >= last)));
    tokio::select! {
        waited = caught_up => {
            waited.expect("the lake writer did not commit the whole log within 60 s: is moto answering?").unwrap();
        }
        ended = &mut task => panic!("the lake writer stopped early: {ended:?}"),
    }
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    metrics
}

fn event(client: &str, id: Uuid, at: &str, event_type: &str) -> Event {
    Event {
        event_id: id,
        timestamp: at.parse().unwrap(),
        client_id: ClientId::new(client).unwrap(),
        user_id: None,
        anon_id: Some("anon-1".into()),
        session_id: None,
        event_type: event_type.into(),
        props: Default::default(),
        context: Default::default(),
        received_at: "2025-03-10T01:00:00Z".parse().unwrap(),
        enrichment: Enrichment::default(),
    }
}

async fn append(log: &EmbeddedLog, client: &str, record: Bytes) -> Position {
    log.append(&ClientId::new(client).unwrap(), record).await.unwrap()
}

async fn append_events(log: &EmbeddedLog, events: &[&Event]) -> Position {
    let record = LogRecord::Events(events.iter().map(|e| (*e).clone()).collect()).encode();
    append(log, events[0].client_id.as_str(), record).await
}

/// (event id, event time in µs), sorted: what a client's partitions must hold.
fn ids(events: &[&Event]) -> Vec<(String, i64)> {
    let mut out: Vec<_> = events.iter().map(|e| (e.event_id.to_string(), e.timestamp.timestamp_micros())).collect();
    out.sort();
    out
}

async fn lake_ids(reader: &LakeReader, client: &str) -> Vec<(String, i64)> {
    let mut out: Vec<_> =
        reader.events(client, None).await.unwrap().into_iter().map(|e| (e.event_id, e.timestamp_micros)).collect();
    out.sort();
    out
}

/// Checks that every file of `client` sits at `raw/events/client_id=<c>/dt=YYYY-MM-DD/hour=HH/
/// part-<uuid v7>.parquet` and holds only events of that hour; returns the (dt, hour) seen.
async fn event_partitions(reader: &LakeReader, client: &str) -> BTreeSet<(NaiveDate, u32)> {
    let mut seen = BTreeSet::new();
    for path in reader.files(&events_prefix(client)).await.unwrap() {
        let parts: Vec<&str> = path.as_ref().split('/').collect();
        assert_eq!(parts.len(), 6, "{path}");
        assert_eq!(parts[..3], ["raw", "events", &format!("client_id={client}")], "{path}");
        let dt = parts[3].strip_prefix("dt=").and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        let hour = parts[4].strip_prefix("hour=").filter(|h| h.len() == 2).and_then(|h| h.parse::<u32>().ok());
        let (Some(dt), Some(hour)) = (dt, hour.filter(|h| *h < 24)) else { panic!("bad partition in {path}") };
        let name = parts[5].strip_prefix("part-").and_then(|n| n.strip_suffix(".parquet"));
        let file_id = name.and_then(|n| Uuid::parse_str(n).ok()).unwrap_or_else(|| panic!("bad file name in {path}"));
        assert_eq!(file_id.get_version_num(), 7, "{path}");
        for batch in reader.read(&path, &["timestamp"]).await.unwrap() {
            let times = batch.column(0).as_any().downcast_ref::<arrow_array::TimestampMicrosecondArray>().unwrap();
            for ts in times.values() {
                let at = DateTime::<Utc>::from_timestamp_micros(*ts).unwrap();
                assert_eq!((at.date_naive(), at.hour()), (dt, hour), "an event of {at} in {path}");
            }
        }
        seen.insert((dt, hour));
    }
    seen
}

fn partition(dt: &str, hour: u32) -> (NaiveDate, u32) {
    (dt.parse().unwrap(), hour)
}

#[test]
fn the_lake_on_s3_holds_each_unique_event_once_in_its_hour_partition() {
    with_bucket("the_lake_on_s3_holds_each_unique_event_once_in_its_hour_partition", |bucket| async move {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(&dir.path().join("log"), &EmbeddedLogConfig::default()).unwrap();
        let config = lake_config(&bucket);
        let dedupe_path = dir.path().join("dedupe");

        let id = || Uuid::new_v4();
        let a1 = event("shop-a", id(), "2025-03-09T08:05:00Z", "page_view");
        let a2 = event("shop-a", id(), "2025-03-09T08:59:59.999Z", "add_to_cart");
        let a3 = event("shop-a", id(), "2025-03-09T09:00:00Z", "page_view");
        let a4 = event("shop-a", id(), "2025-03-09T23:30:00Z", "purchase");
        let a5 = event("shop-a", id(), "2025-03-10T00:10:00Z", "page_view");
        let a6 = event("shop-a", id(), "2025-03-10T00:20:00Z", "page_view");
        let b1 = event("shop-b", id(), "2025-03-09T08:30:00Z", "page_view");
        let b2 = event("shop-b", id(), "2025-03-09T10:45:00Z", "purchase");
        // The same event id as a1, of another client: dedupe is per client, so both stay.
        let c1 = event("shop-c", a1.event_id, "2025-03-09T08:05:00Z", "page_view");

        append_events(&log, &[&a1, &a2, &a3]).await;
        append_events(&log, &[&b1]).await;
        // A resent duplicate (a2), a duplicate within one record (a4), a resent batch (b1).
        append_events(&log, &[&a2, &a4, &a4]).await;
        append_events(&log, &[&b2, &b1]).await;
        let rejection = Rejection {
            client_id: ClientId::new("shop-a").unwrap(),
            received_at: "2025-03-09T12:00:00Z".parse().unwrap(),
            problems: vec![Problem::at(0, "timestamp", "not RFC 3339")],
            payload: r#"[{"event_id":"x","timestamp":"yesterday"}]"#.into(),
        };
        let rejected_at = append(&log, "shop-a", LogRecord::Rejected(rejection.clone()).encode()).await;
        append_events(&log, &[&c1]).await;
        let undecodable_at = append(&log, "shop-a", Bytes::from_static(b"\x09not a log record")).await;
        // A record that decodes but names a client no partition can take (upper case): the
        // collector never appends one; the lake quarantines it whole, never drops it.
        let stray = event("shop-a", id(), "2025-03-09T08:10:00Z", "page_view");
        let mut bad_client = LogRecord::Events(vec![stray]).encode().to_vec();
        let at = bad_client.windows(6).position(|w| w == b"shop-a").unwrap();
        bad_client[at..at + 6].copy_from_slice(b"Shop-A");
        let bad_client_at = append(&log, "shop-a", Bytes::from(bad_client)).await;
        append_events(&log, &[&a5, &a1]).await;
        let delivered = 3 + 1 + 3 + 2 + 1 + 2;

        let metrics =
            run_writer(&config, DedupeStore::open(&dedupe_path, Duration::from_secs(86_400)).unwrap(), &log, "lake")
                .await;
        let reader = LakeReader::new(open_lake(&config));
        assert_eq!(lake_ids(&reader, "shop-a").await, ids(&[&a1, &a2, &a3, &a4, &a5]));
        assert_eq!(lake_ids(&reader, "shop-b").await, ids(&[&b1, &b2]));
        assert_eq!(lake_ids(&reader, "shop-c").await, ids(&[&c1]));
        assert_eq!(metrics.lake_events_written.get(), 8);
        assert_eq!(metrics.lake_duplicates.get(), delivered - 8);
        assert_eq!(metrics.lake_quarantined.get(), 3);

        // The log delivers everything again (a new consumer starts at the beginning, as after a
        // crash before any commit), plus one new event and one more duplicate.
        append_events(&log, &[&a6, &a3]).await;
        let metrics = run_writer(
            &config,
            DedupeStore::open(&dedupe_path, Duration::from_secs(86_400)).unwrap(),
            &log,
            "lake-replay",
        )
        .await;
        assert_eq!(metrics.lake_events_written.get(), 1);
        assert_eq!(metrics.lake_duplicates.get(), delivered + 1);
        assert_eq!(metrics.lake_quarantined.get(), 0);

        assert_eq!(reader.clients().await.unwrap(), ["shop-a", "shop-b", "shop-c"]);
        assert_eq!(lake_ids(&reader, "shop-a").await, ids(&[&a1, &a2, &a3, &a4, &a5, &a6]));
        assert_eq!(lake_ids(&reader, "shop-b").await, ids(&[&b1, &b2]));
        assert_eq!(lake_ids(&reader, "shop-c").await, ids(&[&c1]));
        assert_eq!(
            event_partitions(&reader, "shop-a").await,
            BTreeSet::from([
                partition("2025-03-09", 8),
                partition("2025-03-09", 9),
                partition("2025-03-09", 23),
                partition("2025-03-10", 0),
            ])
        );
        assert_eq!(
            event_partitions(&reader, "shop-b").await,
            BTreeSet::from([partition("2025-03-09", 8), partition("2025-03-09", 10)])
        );
        assert_eq!(event_partitions(&reader, "shop-c").await, BTreeSet::from([partition("2025-03-09", 8)]));

        let quarantined = reader.quarantine("shop-a").await.unwrap();
        assert_eq!(quarantined.len(), 1, "{quarantined:?}");
        let row = &quarantined[0];
        assert_eq!((row.stage.as_str(), row.log_position), ("validation", rejected_at));
        assert_eq!(row.payload, rejection.payload);
        assert_eq!(row.received_at_micros, rejection.received_at.timestamp_micros());
        assert!(row.reason.contains("not RFC 3339"), "{}", row.reason);
        for path in reader.files(&quarantine_prefix("shop-a")).await.unwrap() {
            assert!(path.as_ref().starts_with("quarantine/client_id=shop-a/dt=2025-03-09/part-"), "{path}");
        }
        let mut undecodable = reader.quarantine("_unknown").await.unwrap();
        undecodable.sort_by_key(|r| r.log_position);
        assert_eq!(undecodable.len(), 2, "{undecodable:?}");
        assert_eq!((undecodable[0].stage.as_str(), undecodable[0].log_position), ("decode", undecodable_at));
        assert_eq!((undecodable[1].stage.as_str(), undecodable[1].log_position), ("decode", bad_client_at));
        assert!(undecodable[1].reason.contains("client_id"), "{}", undecodable[1].reason);
        assert!(reader.quarantine("shop-b").await.unwrap().is_empty());

        // Seen from the bucket's root, everything is under the configured prefix.
        let root = store::open(&format!("s3://{bucket}"), &config).unwrap();
        let keys: Vec<ObjectPath> = root.list(None).map_ok(|m| m.location).try_collect().await.unwrap();
        assert!(!keys.is_empty());
        for key in &keys {
            let key = key.as_ref();
            assert!(key.starts_with("lake/raw/events/client_id=") || key.starts_with("lake/quarantine/"), "{key}");
        }
    });
}

#[test]
fn start_up_releases_the_events_of_a_file_a_crash_kept_from_being_written() {
    with_bucket("start_up_releases_the_events_of_a_file_a_crash_kept_from_being_written", |bucket| async move {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(&dir.path().join("log"), &EmbeddedLogConfig::default()).unwrap();
        let config = lake_config(&bucket);
        let lake = open_lake(&config);
        let dedupe_path = dir.path().join("dedupe");

        let x1 = event("shop-x", Uuid::new_v4(), "2025-03-09T12:01:00Z", "page_view");
        let x2 = event("shop-x", Uuid::new_v4(), "2025-03-09T12:02:00Z", "page_view");
        let x3 = event("shop-x", Uuid::new_v4(), "2025-03-09T13:03:00Z", "purchase");
        append_events(&log, &[&x1, &x2]).await;
        append_events(&log, &[&x3]).await;

        // A crash between claiming and writing: `lost` was claimed but never written. And one
        // after writing, before the intent was cleared: `written` exists.
        let dir_of = |hour: &str| format!("{}/dt=2025-03-09/hour={hour}", events_prefix("shop-x"));
        let lost = format!("{}/part-{}.parquet", dir_of("12"), Uuid::now_v7());
        let written = format!("{}/part-{}.parquet", dir_of("13"), Uuid::now_v7());
        {
            let dedupe = DedupeStore::open(&dedupe_path, Duration::from_secs(86_400)).unwrap();
            let key = |e: &Event| ("shop-x", e.event_id.as_u128());
            let (_, fresh) = dedupe.claim(&lost, &[key(&x1), key(&x2)]).unwrap();
            assert_eq!(fresh, [true, true]);
            let (_, fresh) = dedupe.claim(&written, &[key(&x3)]).unwrap();
            assert_eq!(fresh, [true]);
            lake.put(&ObjectPath::from(written.as_str()), parquet_file(std::slice::from_ref(&x3))).await.unwrap();
        }

        let dedupe = DedupeStore::open(&dedupe_path, Duration::from_secs(86_400)).unwrap();
        let pending: BTreeSet<String> = dedupe.pending().unwrap().into_iter().map(|(_, i)| i.path).collect();
        assert_eq!(pending, BTreeSet::from([lost.clone(), written.clone()]));
        // The log was never committed, so it delivers x1..x3 again.
        let metrics = run_writer(&config, dedupe, &log, "lake").await;
        assert_eq!(metrics.lake_events_written.get(), 2, "x1 and x2, released by start-up");
        assert_eq!(metrics.lake_duplicates.get(), 1, "x3, already in `written`");

        let reader = LakeReader::new(lake.clone());
        assert_eq!(lake_ids(&reader, "shop-x").await, ids(&[&x1, &x2, &x3]));
        assert!(matches!(lake.head(&ObjectPath::from(lost.as_str())).await, Err(object_store::Error::NotFound { .. })));
        let files: BTreeSet<String> =
            reader.files(&events_prefix("shop-x")).await.unwrap().iter().map(ToString::to_string).collect();
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(files.contains(&written), "{files:?}");
        assert!(DedupeStore::open(&dedupe_path, Duration::from_secs(86_400)).unwrap().pending().unwrap().is_empty());
    });
}

/// A lake file holding `events`, as the writer would have written it.
fn parquet_file(events: &[Event]) -> PutPayload {
    let batch = events_batch(events.iter()).unwrap();
    let mut out = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    PutPayload::from(out)
}

//! The DynamoDB backend against moto: the conformance suite, the documented layout and the
//! table checks.

use std::future::Future;
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use livora_feature_store::online::{self, DynamoDbConfig, DynamoDbStore, OnlineConfig, codec};
use livora_feature_store::{Error, OnlineStore};
use uuid::Uuid;

use crate::conformance::{Store, client, key, row};

const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:5000";
/// moto accepts any credentials; these are its documented test values.
const MOTO_KEY: &str = "testing";

fn endpoint() -> String {
    std::env::var("LIVORA_TEST_DYNAMODB_ENDPOINT").unwrap_or_else(|_| DEFAULT_ENDPOINT.to_owned())
}

/// A configuration on a fresh table, created on open, with moto's credentials, so that nothing
/// depends on the machine's `AWS_*` environment.
fn unique_config() -> DynamoDbConfig {
    DynamoDbConfig {
        table: format!("livora-test-{}", Uuid::new_v4().simple()),
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint()),
        create_table_if_missing: true,
        consistent_read: true,
        // moto answers slowly while the whole suite runs in parallel.
        request_timeout: std::time::Duration::from_secs(10),
        access_key_id: Some(MOTO_KEY.into()),
        secret_access_key: Some(MOTO_KEY.into()),
        ..DynamoDbConfig::default()
    }
}

async fn connect(config: &DynamoDbConfig) -> DynamoDbStore {
    DynamoDbStore::connect(config).await.unwrap_or_else(|e| {
        panic!(
            "moto must run at {}: start it with `moto_server -p 5000 &` (pip install 'moto[server]') \
             or point LIVORA_TEST_DYNAMODB_ENDPOINT at it ({e})",
            endpoint()
        )
    })
}

/// Deletes the store's table; a failure is reported, not fatal.
async fn delete_table(store: &DynamoDbStore) {
    if let Err(e) = store.client().delete_table().table_name(store.table()).send().await {
        eprintln!("cannot delete test table {}: {e}", store.table());
    }
}

/// Runs `case` on a store with a fresh table, then deletes the table.
async fn fixture<F, Fut>(case: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let store = Arc::new(connect(&unique_config()).await);
    let shared: Store = store.clone();
    crate::with_cleanup(case(shared), delete_table(&store)).await;
}

conformance_suite!(fixture);

#[tokio::test]
async fn rows_live_under_the_documented_keys() {
    let store = Arc::new(connect(&unique_config()).await);
    let body = {
        let store = store.clone();
        async move {
            let r = row(1_767_225_600_000_000, 9, "x");
            store.write(&client("shop"), &[(key("user", "u-123", "user_activity"), r.clone())]).await.unwrap();
            let item = store
                .client()
                .get_item()
                .table_name(store.table())
                .key("PK", AttributeValue::S("shop#USER#u-123".into()))
                .key("SK", AttributeValue::S("FEATURE#user_activity".into()))
                .send()
                .await
                .unwrap()
                .item
                .expect("the item is where the docs say");
            assert_eq!(item["event_time"], AttributeValue::N("1767225600000000".into()));
            assert_eq!(item["created"], AttributeValue::N("9".into()));
            assert!(matches!(&item["write_id"], AttributeValue::N(id) if id.parse::<u64>().is_ok()), "{item:?}");
            let AttributeValue::B(bytes) = &item["row"] else { panic!("row is binary: {item:?}") };
            assert_eq!(codec::decode(bytes.as_ref()).unwrap(), r);
        }
    };
    crate::with_cleanup(body, delete_table(&store)).await;
}

#[tokio::test]
async fn open_creates_the_table_once_and_reuses_it() {
    let config = unique_config();
    let store = online::open(&OnlineConfig::DynamoDb(config.clone()), std::path::Path::new("unused")).await.unwrap();
    assert_eq!(store.backend(), "dynamodb");
    let (c, k) = (client("shop"), key("user", "u-1", "activity"));
    store.write(&c, &[(k.clone(), row(1, 0, "kept"))]).await.unwrap();
    // A second store on the existing table sees the row.
    let again = connect(&config).await;
    assert_eq!(again.read(&c, &[k]).await.unwrap(), vec![Some(row(1, 0, "kept"))]);
    delete_table(&again).await;
}

#[tokio::test]
async fn a_missing_table_is_an_error_unless_it_may_be_created() {
    let config = DynamoDbConfig { create_table_if_missing: false, ..unique_config() };
    let err = DynamoDbStore::connect(&config).await.err().expect("the table does not exist");
    let message = err.to_string();
    assert!(message.contains(&format!("table `{}` does not exist", config.table)), "{message}");
    assert!(message.contains("create_table_if_missing"), "{message}");
}

#[tokio::test]
async fn a_table_with_another_key_schema_is_refused() {
    let config = unique_config();
    let store = connect(&config).await;
    let other = format!("{}-other", config.table);
    store
        .client()
        .create_table()
        .table_name(&other)
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    let err = DynamoDbStore::connect(&DynamoDbConfig { table: other.clone(), ..config }).await.err();
    let _ = store.client().delete_table().table_name(&other).send().await;
    delete_table(&store).await;
    let message = err.expect("the key schema differs").to_string();
    assert!(message.contains("must have the key schema PK (hash, string) and SK (range, string)"), "{message}");
}

#[tokio::test]
async fn a_corrupt_item_is_reported() {
    let store = Arc::new(connect(&unique_config()).await);
    let body = {
        let store = store.clone();
        async move {
            store
                .client()
                .put_item()
                .table_name(store.table())
                .item("PK", AttributeValue::S("shop#USER#u-1".into()))
                .item("SK", AttributeValue::S("FEATURE#activity".into()))
                .item("row", AttributeValue::S("not bytes".into()))
                .send()
                .await
                .unwrap();
            let err = store.read(&client("shop"), &[key("user", "u-1", "activity")]).await.unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        }
    };
    crate::with_cleanup(body, delete_table(&store)).await;
}

/// A TCP proxy to moto that forwards everything but drops the connection instead of passing on
/// the first answer that arrives after [`LosingProxy::lose_next_answer`]: the request was
/// served, the client never hears of it.
struct LosingProxy {
    url: String,
    lose: Arc<std::sync::atomic::AtomicBool>,
}

impl LosingProxy {
    async fn start(upstream: String) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let lose = Arc::new(AtomicBool::new(false));
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let shared = lose.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                let (upstream, lose) = (upstream.clone(), shared.clone());
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await else { return };
                    let (mut in_read, mut in_write) = inbound.split();
                    let (mut out_read, mut out_write) = outbound.split();
                    let requests = tokio::io::copy(&mut in_read, &mut out_write);
                    let answers = async {
                        let mut buf = vec![0; 64 * 1024];
                        loop {
                            let n = out_read.read(&mut buf).await?;
                            if n == 0 {
                                return Ok::<_, std::io::Error>(());
                            }
                            if lose.swap(false, Ordering::SeqCst) {
                                // Served upstream, lost on the way back.
                                return Ok(());
                            }
                            in_write.write_all(&buf[..n]).await?;
                        }
                    };
                    tokio::select! { _ = requests => {}, _ = answers => {} }
                });
            }
        });
        Self { url, lose }
    }

    fn lose_next_answer(&self) {
        self.lose.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_retried_after_a_lost_answer_counts_as_applied() {
    let direct = connect(&unique_config()).await;
    let body = {
        let table = direct.table().to_owned();
        async move {
            let proxy = LosingProxy::start(endpoint()).await;
            let config =
                DynamoDbConfig { table, endpoint_url: Some(proxy.url.clone()), max_attempts: 3, ..unique_config() };
            let store = connect(&config).await;
            let (c, k) = (client("shop"), key("user", "u-1", "activity"));

            proxy.lose_next_answer();
            // The first attempt stores the row; its retry must not read as "not newer".
            assert_eq!(store.write(&c, &[(k.clone(), row(1, 0, "once"))]).await.unwrap(), 1);
            assert!(!proxy.lose.load(std::sync::atomic::Ordering::SeqCst), "an answer was lost");
            assert_eq!(store.read(&c, std::slice::from_ref(&k)).await.unwrap(), vec![Some(row(1, 0, "once"))]);
            // A replay by a later call is still skipped.
            assert_eq!(store.write(&c, &[(k.clone(), row(1, 0, "once"))]).await.unwrap(), 0);
        }
    };
    crate::with_cleanup(body, delete_table(&direct)).await;
}

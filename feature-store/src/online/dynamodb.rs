//! The DynamoDB backend: one table, one item per row.
//!
//! # Layout
//!
//! A single table with a string partition key `PK` and a string sort key `SK`:
//!
//! | attribute    | type | value                                  | example                  |
//! |--------------|------|----------------------------------------|--------------------------|
//! | `PK`         | S    | `<client>#<ENTITY>#<key>`              | `shop#USER#u-123`        |
//! | `SK`         | S    | `FEATURE#<view>`                       | `FEATURE#user_activity`  |
//! | `row`        | B    | the row in the [`codec`] form          |                          |
//! | `event_time` | N    | the row's event time (µs), for writes  | `1767225600000000`       |
//! | `created`    | N    | the row's creation time (µs)           | `1767225601000000`       |
//! | `write_id`   | N    | which put wrote the item (see below)   | `8301956243370712064`    |
//!
//! The client comes first in the partition key, so every item belongs to one tenant, and an IAM
//! policy can confine a tenant with `dynamodb:LeadingKeys` on `<client>#*`. The entity name is
//! upper-cased (`user` → `USER`); to keep the mapping one-to-one, a `%`, a `#` or an upper-case
//! ASCII letter in the entity name is written as `%XX` (`User` → `%55SER`). The entity key and
//! the view come last in their attribute and are stored as they are.
//!
//! All views of one entity share a partition, so a later query by `PK` can fetch them at once.
//!
//! # Consistency
//!
//! A write is one conditional `PutItem` per row (DynamoDB has no conditional batch write), at
//! most [`DynamoDbConfig::max_concurrent_requests`] in flight:
//!
//! ```text
//! attribute_not_exists(PK) OR event_time < :et OR (event_time = :et AND created < :cr)
//!   OR write_id = :wid
//! ```
//!
//! DynamoDB evaluates the condition and the put atomically, so concurrent writers of one key end
//! with the newest row; a failed condition means "not newer" and counts as skipped.
//!
//! Every put carries a `write_id` unique to it (a random start per store, then a counter), and
//! the condition also passes when `write_id = :wid`. When the answer to a put is lost (a timeout)
//! and the SDK retries it, the retry finds the item its first attempt stored and is counted as
//! the write it is, not as a skipped row; a replay of the same row by a later call has another
//! id and is skipped. Rows of the
//! same key in one batch are put one after another, in batch order. A failed write may leave
//! part of the batch applied; retrying it is safe.
//!
//! A read is `BatchGetItem` in chunks of 100 distinct keys (the API's limit), the chunks in
//! parallel; keys DynamoDB leaves unprocessed (throttling) are asked again with exponential
//! backoff, up to [`UNPROCESSED_RETRIES`] times. Reads are eventually consistent unless
//! [`DynamoDbConfig::consistent_read`] is set.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, KeysAndAttributes,
    ScalarAttributeType, TableStatus,
};
use futures::{StreamExt, TryStreamExt};
use livora_common::{ClientId, ConfigError};

use crate::aws::AwsSettings;
use uuid::Uuid;

use super::config::DynamoDbConfig;
use super::{OnlineRow, OnlineStore, RowKey, codec, push_escaped};
use crate::error::{Error, Result};

const BACKEND: &str = "dynamodb";

/// The partition key attribute.
pub const PK: &str = "PK";
/// The sort key attribute.
pub const SK: &str = "SK";
/// The attribute holding the encoded row.
pub const ROW: &str = "row";
/// The attribute holding the row's event time, compared by conditional writes.
pub const EVENT_TIME: &str = "event_time";
/// The attribute holding the row's creation time, compared on equal event times.
pub const CREATED: &str = "created";

/// Most keys in one `BatchGetItem` request (DynamoDB's limit).
pub const BATCH_GET_KEYS: usize = 100;
/// How many times keys left unprocessed by `BatchGetItem` are asked again before the read fails.
pub const UNPROCESSED_RETRIES: u32 = 8;
/// The first wait before asking for unprocessed keys again; it doubles each time, up to 1s.
const UNPROCESSED_BACKOFF: Duration = Duration::from_millis(10);
/// How long to wait for a table to become active (after creating it).
const TABLE_ACTIVE_WAIT: Duration = Duration::from_secs(120);

/// The attribute holding the id of the put that wrote the item.
pub const WRITE_ID: &str = "write_id";

const CONDITION: &str = "attribute_not_exists(#pk) OR #et < :et OR (#et = :et AND #cr < :cr) OR #wid = :wid";

/// The online store in a DynamoDB table. Cheap to share: clone the `Arc` it lives in.
pub struct DynamoDbStore {
    client: Client,
    table: String,
    consistent_read: bool,
    concurrency: usize,
    /// The next put's `write_id`.
    write_ids: AtomicU64,
}

impl DynamoDbStore {
    /// Builds the client from `config` and the standard AWS chain, then checks the table (and
    /// creates it when missing, if `create_table_if_missing`).
    pub async fn connect(config: &DynamoDbConfig) -> Result<Self> {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(config.connect_timeout)
            .operation_attempt_timeout(config.request_timeout)
            .build();
        let sdk = crate::aws::config_loader(AwsSettings {
            region: config.region.as_deref(),
            endpoint_url: config.endpoint_url.as_deref(),
            credentials: config.access_key_id.as_deref().zip(config.secret_access_key.as_deref()),
        })
        .timeout_config(timeouts)
        .retry_config(RetryConfig::standard().with_max_attempts(config.max_attempts))
        .load()
        .await;
        if sdk.region().is_none() {
            return Err(ConfigError::invalid(
                "online_store.region",
                "no aws region is configured: set it here or in AWS_REGION",
            )
            .into());
        }
        let store = Self {
            client: Client::new(&sdk),
            table: config.table.clone(),
            consistent_read: config.consistent_read,
            concurrency: config.max_concurrent_requests,
            write_ids: AtomicU64::new(Uuid::new_v4().as_u64_pair().0),
        };
        store.ensure_table(config.create_table_if_missing).await?;
        Ok(store)
    }

    /// The SDK client, for administration (creating or deleting tables) and tests.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Checks that the table exists with the expected key schema, creating it when missing if
    /// `create` is set, and waits until it is active.
    async fn ensure_table(&self, create: bool) -> Result<()> {
        let described = self.client.describe_table().table_name(&self.table).send().await;
        match described {
            Ok(out) => {
                let schema = out.table().map(|t| t.key_schema()).unwrap_or_default();
                let has = |name: &str, kind: KeyType| {
                    schema.iter().any(|k| k.attribute_name() == name && *k.key_type() == kind)
                };
                if schema.len() != 2 || !has(PK, KeyType::Hash) || !has(SK, KeyType::Range) {
                    return Err(Error::online(
                        BACKEND,
                        format!(
                            "table `{}` must have the key schema PK (hash, string) and SK (range, string)",
                            self.table
                        ),
                    ));
                }
            }
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {
                if !create {
                    return Err(Error::online(
                        BACKEND,
                        format!(
                            "table `{}` does not exist: create it or set online_store.create_table_if_missing",
                            self.table
                        ),
                    ));
                }
                self.create_table().await?;
            }
            Err(e) => {
                return Err(Error::online(
                    BACKEND,
                    format!("cannot describe table `{}`: {}", self.table, DisplayErrorContext(&e)),
                ));
            }
        }
        self.wait_active().await
    }

    async fn create_table(&self) -> Result<()> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| Error::online(BACKEND, e);
        let attribute = |name: &str| {
            AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build()
        };
        let key = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .attribute_definitions(attribute(PK).map_err(build)?)
            .attribute_definitions(attribute(SK).map_err(build)?)
            .key_schema(key(PK, KeyType::Hash).map_err(build)?)
            .key_schema(key(SK, KeyType::Range).map_err(build)?)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => {
                tracing::info!(table = %self.table, "created the dynamodb online store table");
                Ok(())
            }
            // Another process created it first.
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => Ok(()),
            Err(e) => Err(Error::online(
                BACKEND,
                format!("cannot create table `{}`: {}", self.table, DisplayErrorContext(&e)),
            )),
        }
    }

    async fn wait_active(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + TABLE_ACTIVE_WAIT;
        loop {
            let status = self.table_status().await?;
            if status == TableStatus::Active {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::online(
                    BACKEND,
                    format!("table `{}` is still {status} after {TABLE_ACTIVE_WAIT:?}", self.table),
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn table_status(&self) -> Result<TableStatus> {
        let out = self.client.describe_table().table_name(&self.table).send().await.map_err(|e| {
            Error::online(BACKEND, format!("cannot describe table `{}`: {}", self.table, DisplayErrorContext(&e)))
        })?;
        Ok(out.table().and_then(|t| t.table_status()).cloned().unwrap_or(TableStatus::Creating))
    }

    /// Puts `row`, encoded as `bytes`, under `pk`/`sk` if it is newer than the stored row;
    /// returns whether it was.
    async fn put(&self, pk: String, sk: String, row: &OnlineRow, bytes: &[u8]) -> Result<bool> {
        let (event_time, created) = (row.event_time.to_string(), row.created.to_string());
        let write_id = self.write_ids.fetch_add(1, Ordering::Relaxed).to_string();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, AttributeValue::S(pk))
            .item(SK, AttributeValue::S(sk))
            .item(ROW, AttributeValue::B(Blob::new(bytes.to_vec())))
            .item(EVENT_TIME, AttributeValue::N(event_time.clone()))
            .item(CREATED, AttributeValue::N(created.clone()))
            .item(WRITE_ID, AttributeValue::N(write_id.clone()))
            .condition_expression(CONDITION)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#et", EVENT_TIME)
            .expression_attribute_names("#cr", CREATED)
            .expression_attribute_names("#wid", WRITE_ID)
            .expression_attribute_values(":et", AttributeValue::N(event_time))
            .expression_attribute_values(":cr", AttributeValue::N(created))
            .expression_attribute_values(":wid", AttributeValue::N(write_id))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(Error::online(BACKEND, format!("writing a row failed: {}", DisplayErrorContext(&e)))),
        }
    }

    /// Reads one chunk of at most [`BATCH_GET_KEYS`] distinct keys, asking again for the keys
    /// left unprocessed. Returns the items found, in no particular order.
    async fn batch_get(
        &self,
        keys: Vec<HashMap<String, AttributeValue>>,
    ) -> Result<Vec<HashMap<String, AttributeValue>>> {
        let mut request = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .projection_expression("#pk, #sk, #row")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_names("#row", ROW)
            .consistent_read(self.consistent_read)
            .build()
            .map_err(|e| Error::online(BACKEND, e))?;
        let mut items = Vec::new();
        let mut backoff = UNPROCESSED_BACKOFF;
        for attempt in 0..=UNPROCESSED_RETRIES {
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| Error::online(BACKEND, format!("reading rows failed: {}", DisplayErrorContext(&e))))?;
            if let Some(found) = out.responses.and_then(|mut r| r.remove(&self.table)) {
                items.extend(found);
            }
            let unprocessed = out.unprocessed_keys.and_then(|mut u| u.remove(&self.table));
            match unprocessed.filter(|k| !k.keys().is_empty()) {
                None => return Ok(items),
                Some(rest) => {
                    tracing::debug!(keys = rest.keys().len(), attempt, "dynamodb left keys unprocessed");
                    request = rest;
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
        Err(Error::online(
            BACKEND,
            format!(
                "{} keys still unprocessed after {UNPROCESSED_RETRIES} retries (the table is throttled)",
                request.keys().len()
            ),
        ))
    }
}

/// The partition key of `key` for `client`: `<client>#<ENTITY>#<key>`.
pub fn partition_key(client: &ClientId, key: &RowKey) -> String {
    let mut out = String::with_capacity(client.as_str().len() + key.entity.len() + key.key.len() + 2);
    out.push_str(client.as_str());
    out.push('#');
    let entity_at = out.len();
    push_escaped(&mut out, &key.entity, b"#ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    out[entity_at..].make_ascii_uppercase();
    out.push('#');
    out.push_str(&key.key);
    out
}

/// The sort key of `key`: `FEATURE#<view>`.
pub fn sort_key(key: &RowKey) -> String {
    let mut out = String::with_capacity(8 + key.view.len());
    out.push_str("FEATURE#");
    out.push_str(&key.view);
    out
}

fn take_string(item: &mut HashMap<String, AttributeValue>, name: &str) -> Result<String> {
    match item.remove(name) {
        Some(AttributeValue::S(s)) => Ok(s),
        _ => Err(corrupt(format!("an item without a string `{name}`"))),
    }
}

fn corrupt(reason: String) -> Error {
    Error::Corrupt { what: "a dynamodb online row".into(), reason }
}

#[async_trait]
impl OnlineStore for DynamoDbStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn write(&self, client: &ClientId, rows: &[(RowKey, OnlineRow)]) -> Result<usize> {
        // Encode everything first: a row that cannot be stored fails the batch before any put.
        let encoded = rows.iter().map(|(_, row)| codec::encode(row)).collect::<Result<Vec<_>>>()?;
        // Rows of one key are put in batch order, one after another; different keys in parallel.
        let mut groups: Vec<Vec<usize>> = Vec::with_capacity(rows.len());
        let mut group_of: HashMap<&RowKey, usize> = HashMap::with_capacity(rows.len());
        for (i, (key, _)) in rows.iter().enumerate() {
            match group_of.entry(key) {
                Entry::Occupied(e) => groups[*e.get()].push(i),
                Entry::Vacant(e) => {
                    e.insert(groups.len());
                    groups.push(vec![i]);
                }
            }
        }
        let encoded = &encoded;
        futures::stream::iter(groups)
            .map(|group| async move {
                let mut applied = 0;
                for i in group {
                    let (key, row) = &rows[i];
                    let put = self.put(partition_key(client, key), sort_key(key), row, &encoded[i]);
                    applied += usize::from(put.await?);
                }
                Ok::<_, Error>(applied)
            })
            .buffer_unordered(self.concurrency)
            .try_fold(0, |total, applied| async move { Ok(total + applied) })
            .await
    }

    async fn read(&self, client: &ClientId, keys: &[RowKey]) -> Result<Vec<Option<OnlineRow>>> {
        let mut out = vec![None; keys.len()];
        if keys.is_empty() {
            return Ok(out);
        }
        // BatchGetItem refuses duplicate keys: ask for each key once, remember where it goes.
        let mut wanted: HashMap<(String, String), Vec<usize>> = HashMap::with_capacity(keys.len());
        let mut request = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            let (pk, sk) = (partition_key(client, key), sort_key(key));
            match wanted.entry((pk, sk)) {
                Entry::Occupied(mut e) => e.get_mut().push(i),
                Entry::Vacant(e) => {
                    let (pk, sk) = e.key().clone();
                    request.push(HashMap::from([
                        (PK.to_owned(), AttributeValue::S(pk)),
                        (SK.to_owned(), AttributeValue::S(sk)),
                    ]));
                    e.insert(vec![i]);
                }
            }
        }
        let mut chunks = Vec::with_capacity(request.len().div_ceil(BATCH_GET_KEYS));
        let mut rest = request.into_iter().peekable();
        while rest.peek().is_some() {
            chunks.push(rest.by_ref().take(BATCH_GET_KEYS).collect::<Vec<_>>());
        }
        let mut found =
            futures::stream::iter(chunks).map(|chunk| self.batch_get(chunk)).buffer_unordered(self.concurrency);
        while let Some(items) = found.try_next().await? {
            for mut item in items {
                let (pk, sk) = (take_string(&mut item, PK)?, take_string(&mut item, SK)?);
                let Some(AttributeValue::B(bytes)) = item.get(ROW) else {
                    return Err(corrupt(format!("item {pk}/{sk} has no binary `{ROW}`")));
                };
                let row = codec::decode(bytes.as_ref())?;
                let Some(positions) = wanted.remove(&(pk, sk)) else { continue };
                let (last, others) = positions.split_last().unwrap_or((&0, &[]));
                for &i in others {
                    out[i] = Some(row.clone());
                }
                out[*last] = Some(row);
            }
        }
        Ok(out)
    }

    async fn ping(&self) -> Result<()> {
        match self.table_status().await? {
            TableStatus::Active | TableStatus::Updating => Ok(()),
            status => Err(Error::online(BACKEND, format!("table `{}` is {status}", self.table))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pk(entity: &str, key: &str) -> String {
        partition_key(&ClientId::new("shop").unwrap(), &RowKey::new(entity, key, "v"))
    }

    #[test]
    fn key_layout() {
        assert_eq!(pk("user", "u-123"), "shop#USER#u-123");
        assert_eq!(pk("user_session", "a#b"), "shop#USER_SESSION#a#b");
        assert_eq!(sort_key(&RowKey::new("user", "u-1", "user_activity@v2")), "FEATURE#user_activity@v2");
    }

    #[test]
    fn entity_names_stay_distinct_when_upper_cased() {
        assert_eq!(pk("User", "k"), "shop#%55SER#k");
        assert_eq!(pk("a#b", "k"), "shop#A%23B#k");
        assert_eq!(pk("ü%", "k"), "shop#ü%25#k");
        let keys = [pk("user", "k"), pk("User", "k"), pk("USER", "k"), pk("user#k", ""), pk("user", "#k")];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}

//! Reading the lake back, for operators (`livora events count`, `livora events quarantine`) and
//! tests. Analysts get the same files through Flight and SQL engines.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampMicrosecondType, UInt64Type};
use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::writer::LakeError;
use super::{events_prefix, quarantine_prefix};

/// One raw event as read back (the columns an operator looks at first).
#[derive(Debug, Clone, PartialEq)]
pub struct LakeEvent {
    /// `event_id`.
    pub event_id: String,
    /// Event time, µs since the epoch.
    pub timestamp_micros: i64,
    /// `event_type`.
    pub event_type: String,
}

/// One quarantine record as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantineRow {
    /// When it was received, µs since the epoch.
    pub received_at_micros: i64,
    /// `validation` or `decode`.
    pub stage: String,
    /// Why.
    pub reason: String,
    /// What was received.
    pub payload: String,
    /// The log position it came from.
    pub log_position: u64,
}

/// Reads a lake.
pub struct LakeReader {
    store: Arc<dyn ObjectStore>,
}

impl LakeReader {
    /// A reader over `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    /// The Parquet files under `prefix`, sorted by path.
    pub async fn files(&self, prefix: &str) -> Result<Vec<ObjectPath>, LakeError> {
        let mut paths: Vec<ObjectPath> = self
            .store
            .list(Some(&ObjectPath::from(prefix)))
            .map_ok(|meta| meta.location)
            .try_filter(|p| futures::future::ready(p.as_ref().ends_with(".parquet")))
            .try_collect()
            .await?;
        paths.sort();
        Ok(paths)
    }

    /// The client ids that have raw events.
    pub async fn clients(&self) -> Result<Vec<String>, LakeError> {
        let listing = self.store.list_with_delimiter(Some(&ObjectPath::from("raw/events"))).await?;
        let mut clients: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().and_then(|f| f.strip_prefix("client_id=")).map(str::to_owned))
            .collect();
        clients.sort();
        Ok(clients)
    }

    /// The events of `client` with an event time at or after `since`.
    pub async fn events(&self, client: &str, since: Option<DateTime<Utc>>) -> Result<Vec<LakeEvent>, LakeError> {
        let mut out = Vec::new();
        for path in self.files(&events_prefix(client)).await? {
            if let (Some(since), Some(end)) = (since, partition_end(&path))
                && end <= since
            {
                continue;
            }
            for batch in self.read(&path, &["event_id", "timestamp", "event_type"]).await? {
                let ids = batch.column(0).as_string::<i32>();
                let times = batch.column(1).as_primitive::<TimestampMicrosecondType>();
                let types = batch.column(2).as_string::<i32>();
                for i in 0..batch.num_rows() {
                    let ts = times.value(i);
                    if since.is_some_and(|s| ts < s.timestamp_micros()) {
                        continue;
                    }
                    out.push(LakeEvent {
                        event_id: ids.value(i).to_owned(),
                        timestamp_micros: ts,
                        event_type: types.value(i).to_owned(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// The quarantine records of `client` (`_unknown` for undecodable records).
    pub async fn quarantine(&self, client: &str) -> Result<Vec<QuarantineRow>, LakeError> {
        let mut out = Vec::new();
        for path in self.files(&quarantine_prefix(client)).await? {
            for batch in self.read(&path, &["received_at", "stage", "reason", "payload", "log_position"]).await? {
                let received = batch.column(0).as_primitive::<TimestampMicrosecondType>();
                let stage = batch.column(1).as_string::<i32>();
                let reason = batch.column(2).as_string::<i32>();
                let payload = batch.column(3).as_string::<i32>();
                let position = batch.column(4).as_primitive::<UInt64Type>();
                for i in 0..batch.num_rows() {
                    out.push(QuarantineRow {
                        received_at_micros: received.value(i),
                        stage: stage.value(i).to_owned(),
                        reason: reason.value(i).to_owned(),
                        payload: payload.value(i).to_owned(),
                        log_position: position.value(i),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Reads the named columns of one file.
    pub async fn read(&self, path: &ObjectPath, columns: &[&str]) -> Result<Vec<RecordBatch>, LakeError> {
        let bytes = self.store.get(path).await?.bytes().await?;
        let parquet = |e: parquet::errors::ParquetError| LakeError::Parquet(format!("{path}: {e}"));
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(parquet)?;
        let schema = builder.parquet_schema();
        let indices: Vec<usize> = columns
            .iter()
            .map(|name| {
                schema
                    .columns()
                    .iter()
                    .position(|c| c.name() == *name)
                    .ok_or_else(|| LakeError::Parquet(format!("{path}: no column `{name}`")))
            })
            .collect::<Result<_, _>>()?;
        let mask = ProjectionMask::leaves(schema, indices);
        let reader = builder.with_projection(mask).build().map_err(parquet)?;
        let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| LakeError::Parquet(format!("{path}: {e}")))?;
        // Projected columns come back in file order; put them in the order asked for.
        batches
            .into_iter()
            .map(|b| {
                let schema = b.schema();
                let cols = columns
                    .iter()
                    .map(|name| schema.index_of(name).map(|i| b.column(i).clone()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| LakeError::Parquet(e.to_string()))?;
                let fields: Vec<_> =
                    columns.iter().filter_map(|name| schema.field_with_name(name).ok().cloned()).collect();
                RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), cols)
                    .map_err(|e| LakeError::Parquet(e.to_string()))
            })
            .collect()
    }
}

/// The end of the hour partition a path is in (`dt=…/hour=…`), if it has one.
fn partition_end(path: &ObjectPath) -> Option<DateTime<Utc>> {
    let mut dt = None;
    let mut hour = None;
    for part in path.parts() {
        let part = part.as_ref();
        if let Some(d) = part.strip_prefix("dt=") {
            dt = NaiveDate::parse_from_str(d, "%Y-%m-%d").ok();
        } else if let Some(h) = part.strip_prefix("hour=") {
            hour = h.parse::<u32>().ok();
        }
    }
    let start = dt?.and_hms_opt(hour?, 0, 0)?.and_utc();
    Some(start + chrono::Duration::hours(1))
}

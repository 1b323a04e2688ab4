//! Reading the lake back: for operators (`livora events count`, `livora events quarantine`), for
//! the feature store's backfill ([`LakeReader::read_events`] rebuilds whole events) and for model
//! training's labels ([`LakeReader::user_event_times`]), and for tests. Analysts get the same
//! files through Flight and SQL engines.
//!
//! Reads of event times prune files by their `dt=…/hour=…` partition before opening them, then
//! filter rows by their own `timestamp`.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampMicrosecondType, UInt64Type};
use arrow_array::{Array, RecordBatch};
use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use livora_common::{ClientId, Event};
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::schema::{DecodeError, EVENTS_SCHEMA, events_from_batch, text_column, time_column};
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

/// When users did one kind of thing, and how far the lake reaches: the labels of model training
/// (a user's purchases after a time) and the horizon they can be known up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserEventTimes {
    /// `user_id` → the event times (µs since the epoch) of the user's events of the type asked
    /// for, ascending. Users without such an event are absent.
    pub times: HashMap<String, Vec<i64>>,
    /// The latest event time (µs) of any event of the client, of any type and user (anonymous
    /// ones included); `None` when the client has no event.
    pub latest: Option<i64>,
}

/// Users' events of one kind with their `props`, and how far the lake reaches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserEventProps {
    /// `user_id` → (event time µs, `props` JSON text) of the user's events of the type asked
    /// for, in time order. Users without such an event are absent.
    pub events: HashMap<String, Vec<(i64, String)>>,
    /// As [`UserEventTimes::latest`].
    pub latest: Option<i64>,
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
            if !partition_overlaps(&path, since.map(|s| s.timestamp_micros()), None) {
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

    /// The whole events of `client` with an event time in `range` (`(start, end)`, both included;
    /// `None` is unbounded), sorted by event time, then event id. Hour partitions that cannot
    /// hold such times are not read. Times come back to the microsecond, as the lake keeps them.
    ///
    /// # Errors
    /// [`LakeError::Decode`] naming the file and the row for a row that is not an event (an
    /// `event_id` that is not a UUID, `props` or `context` not a JSON object, a missing or
    /// mistyped column); [`LakeError::Client`] for an invalid client id; store and Parquet
    /// failures as such.
    pub async fn read_events(
        &self,
        client: &str,
        range: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    ) -> Result<Vec<Event>, LakeError> {
        let client_id = ClientId::new(client)?;
        let (start, end) = (range.0.map(|t| t.timestamp_micros()), range.1.map(|t| t.timestamp_micros()));
        let columns: Vec<&str> = EVENTS_SCHEMA.fields().iter().map(|f| f.name().as_str()).collect();
        let mut out = Vec::new();
        for path in self.files(&events_prefix(client)).await? {
            if !partition_overlaps(&path, start, end) {
                continue;
            }
            let mut first_row = 0;
            for batch in self.read(&path, &columns).await? {
                let events = events_from_batch(&batch, &client_id).map_err(|e| decode_error(&path, first_row, e))?;
                first_row += batch.num_rows();
                out.extend(events.into_iter().filter(|e| {
                    let ts = e.timestamp.timestamp_micros();
                    start.is_none_or(|s| ts >= s) && end.is_none_or(|e| ts <= e)
                }));
            }
        }
        out.sort_by_key(|e| (e.timestamp, e.event_id));
        Ok(out)
    }

    /// The event times of each user's events of `event_type`, and the latest event time of the
    /// client. Reads only the `user_id`, `timestamp` and `event_type` columns.
    ///
    /// # Errors
    /// [`LakeError::Decode`] naming the file for a missing or mistyped column or a null time;
    /// [`LakeError::Client`] for an invalid client id; store and Parquet failures as such.
    pub async fn user_event_times(&self, client: &str, event_type: &str) -> Result<UserEventTimes, LakeError> {
        let mut times: HashMap<String, Vec<i64>> = HashMap::new();
        let latest = self
            .scan_user_events(client, event_type, false, |user, ts, _| {
                times.entry(user.to_owned()).or_default().push(ts)
            })
            .await?;
        for times in times.values_mut() {
            times.sort_unstable();
        }
        Ok(UserEventTimes { times, latest })
    }

    /// Like [`LakeReader::user_event_times`], with each event's `props` (JSON text): what a
    /// label that depends on the purchase (its items' categories) is made of. Each user's events
    /// are in time order (ties by `props`, so the order is deterministic).
    ///
    /// # Errors
    /// As [`LakeReader::user_event_times`]; a null `props` is a decode error.
    pub async fn user_event_props(&self, client: &str, event_type: &str) -> Result<UserEventProps, LakeError> {
        let mut events: HashMap<String, Vec<(i64, String)>> = HashMap::new();
        let latest = self
            .scan_user_events(client, event_type, true, |user, ts, props| {
                events.entry(user.to_owned()).or_default().push((ts, props.unwrap_or_default().to_owned()));
            })
            .await?;
        for events in events.values_mut() {
            events.sort_unstable();
        }
        Ok(UserEventProps { events, latest })
    }

    /// Calls `each(user, time, props)` for every event of `event_type` with a `user_id` (`props`
    /// only when `with_props`) and returns the latest event time of any event of the client.
    async fn scan_user_events(
        &self,
        client: &str,
        event_type: &str,
        with_props: bool,
        mut each: impl FnMut(&str, i64, Option<&str>),
    ) -> Result<Option<i64>, LakeError> {
        ClientId::new(client)?;
        let mut latest: Option<i64> = None;
        let columns: &[&str] = if with_props {
            &["user_id", "timestamp", "event_type", "props"]
        } else {
            &["user_id", "timestamp", "event_type"]
        };
        for path in self.files(&events_prefix(client)).await? {
            let mut first_row = 0;
            for batch in self.read(&path, columns).await? {
                let fail = |e| decode_error(&path, first_row, e);
                let users = text_column(&batch, "user_id").map_err(fail)?;
                let times = time_column(&batch, "timestamp").map_err(fail)?;
                let types = text_column(&batch, "event_type").map_err(fail)?;
                let props = if with_props { Some(text_column(&batch, "props").map_err(fail)?) } else { None };
                for row in 0..batch.num_rows() {
                    if times.is_null(row) {
                        return Err(fail(DecodeError::Row { row, reason: "`timestamp` is null".into() }));
                    }
                    let ts = times.value(row);
                    latest = Some(latest.map_or(ts, |l| l.max(ts)));
                    if users.is_valid(row) && types.is_valid(row) && types.value(row) == event_type {
                        let props = match props {
                            Some(p) if p.is_null(row) => {
                                return Err(fail(DecodeError::Row { row, reason: "`props` is null".into() }));
                            }
                            Some(p) => Some(p.value(row)),
                            None => None,
                        };
                        each(users.value(row), ts, props);
                    }
                }
                first_row += batch.num_rows();
            }
        }
        Ok(latest)
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

/// A decoding error of `path`, its row counted from the file's first row.
fn decode_error(path: &ObjectPath, first_row: usize, error: DecodeError) -> LakeError {
    let source = match error {
        DecodeError::Row { row, reason } => DecodeError::Row { row: first_row + row, reason },
        column => column,
    };
    LakeError::Decode { path: path.to_string(), source }
}

/// Whether the hour partition of `path` can hold event times (µs) in `[start, end]` (`None`:
/// unbounded); a path outside the `dt=…/hour=…` layout always can.
pub fn partition_overlaps(path: &ObjectPath, start: Option<i64>, end: Option<i64>) -> bool {
    let Some(hour_end) = partition_end(path).map(|e| e.timestamp_micros()) else { return true };
    let hour_start = hour_end - 3_600_000_000;
    start.is_none_or(|s| hour_end > s) && end.is_none_or(|e| hour_start <= e)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use arrow_array::StringArray;
    use bytes::Bytes;
    use chrono::Timelike;
    use parquet::arrow::ArrowWriter;

    use super::*;
    use crate::lake::LakeConfig;
    use crate::lake::schema::events_batch;
    use crate::lake::schema::tests::event;

    fn encode(batch: &RecordBatch) -> Bytes {
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
        writer.write(batch).unwrap();
        writer.close().unwrap();
        Bytes::from(out)
    }

    /// The hour partition of an event time.
    fn partition(at: &str) -> String {
        let t: DateTime<Utc> = at.parse().unwrap();
        crate::lake::events_partition("shop", t.date_naive(), t.hour())
    }

    /// A lake holding `events`, one file per hour partition, as the writer would have left it.
    async fn lake(events: &[Event]) -> (tempfile::TempDir, LakeReader) {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::store::open(dir.path().to_str().unwrap(), &LakeConfig::default()).unwrap();
        let mut by_partition: std::collections::BTreeMap<String, Vec<Event>> = Default::default();
        for e in events {
            by_partition.entry(partition(&e.timestamp.to_rfc3339())).or_default().push(e.clone());
        }
        for (dir, events) in by_partition {
            let path = ObjectPath::from(format!("{dir}/part-{}.parquet", uuid::Uuid::now_v7()));
            store.put(&path, encode(&events_batch(events.iter()).unwrap()).into()).await.unwrap();
        }
        (dir, LakeReader::new(store))
    }

    fn at(t: &str) -> Option<DateTime<Utc>> {
        Some(t.parse().unwrap())
    }

    fn sample() -> Vec<Event> {
        vec![
            event(1, "2026-01-05T07:00:00.123456Z", "purchase", Some("u_1"), true),
            event(2, "2026-01-05T07:59:59Z", "page_view", None, false),
            event(3, "2026-01-05T09:30:00Z", "purchase", Some("u_2"), false),
            event(4, "2026-01-06T23:10:00Z", "purchase", Some("u_1"), true),
            event(5, "2026-01-04T12:00:00Z", "purchase", Some("u_1"), false),
            event(6, "2026-01-07T01:00:00Z", "page_view", Some("u_3"), false),
        ]
    }

    #[tokio::test]
    async fn events_come_back_whole_sorted_and_filtered_by_time() {
        let events = sample();
        let (_dir, reader) = lake(&events).await;
        let mut sorted = events.clone();
        sorted.sort_by_key(|e| e.timestamp);
        assert_eq!(reader.read_events("shop", (None, None)).await.unwrap(), sorted);
        // Both ends included, to the microsecond.
        let some = reader.read_events("shop", (at("2026-01-05T07:59:59Z"), at("2026-01-06T23:10:00Z"))).await.unwrap();
        let ids: Vec<u8> = some.iter().map(|e| e.event_id.as_bytes()[0]).collect();
        assert_eq!(ids, [2, 3, 4]);
        let after = reader.read_events("shop", (at("2026-01-05T07:00:00.123457Z"), None)).await.unwrap();
        assert_eq!(after.first().map(|e| e.event_id.as_bytes()[0]), Some(2));
        assert!(reader.read_events("other", (None, None)).await.unwrap().is_empty());
        assert!(matches!(reader.read_events("../x", (None, None)).await, Err(LakeError::Client(_))));
    }

    #[tokio::test]
    async fn partitions_outside_the_range_are_not_read() {
        let (dir, reader) = lake(&sample()).await;
        // A broken file in the 2026-01-04 12h partition: a read that needs it fails, naming it…
        let broken = dir.path().join(partition("2026-01-04T12:00:00Z")).join("part-broken.parquet");
        std::fs::write(&broken, b"not parquet").unwrap();
        let err = reader.read_events("shop", (None, at("2026-01-04T12:00:00Z"))).await.unwrap_err();
        assert!(err.to_string().contains("part-broken.parquet"), "{err}");
        // …and one whose range excludes that hour never opens it.
        let events = reader.read_events("shop", (at("2026-01-04T13:00:00Z"), None)).await.unwrap();
        assert_eq!(events.len(), 5);
        let events = reader.read_events("shop", (None, at("2026-01-04T11:59:59.999999Z"))).await.unwrap();
        assert!(events.is_empty());
    }

    #[tokio::test]
    async fn a_row_that_is_not_an_event_is_an_error_naming_the_file_and_the_row() {
        let events = [
            event(1, "2026-01-05T07:00:00Z", "purchase", Some("u_1"), true),
            event(2, "2026-01-05T07:10:00Z", "purchase", Some("u_1"), true),
        ];
        let batch = events_batch(events.iter()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::store::open(dir.path().to_str().unwrap(), &LakeConfig::default()).unwrap();
        for (name, column, value) in [("bad-id", 0, "zz"), ("bad-props", 7, "[1, 2]")] {
            let mut columns = batch.columns().to_vec();
            let first = events[0].event_id.to_string();
            columns[column] = Arc::new(StringArray::from(vec![if column == 0 { first.as_str() } else { "{}" }, value]));
            let bad = RecordBatch::try_new(batch.schema(), columns).unwrap();
            let path = ObjectPath::from(format!("{}/{name}.parquet", partition("2026-01-05T07:00:00Z")));
            store.put(&path, encode(&bad).into()).await.unwrap();
            let err = LakeReader::new(store.clone()).read_events("shop", (None, None)).await.unwrap_err();
            assert!(matches!(err, LakeError::Decode { .. }), "{err}");
            let text = err.to_string();
            assert!(text.contains(&format!("{name}.parquet: row 1:")), "{text}");
            assert!(
                text.contains(if column == 0 { "`zz` is not a UUID" } else { "`props` must be an object" }),
                "{text}"
            );
            store.delete(&path).await.unwrap();
        }
    }

    #[tokio::test]
    async fn user_event_times_are_per_user_ascending_with_the_latest_event_of_any_kind() {
        let (_dir, reader) = lake(&sample()).await;
        let times = reader.user_event_times("shop", "purchase").await.unwrap();
        let micros = |t: &str| t.parse::<DateTime<Utc>>().unwrap().timestamp_micros();
        let expected: HashMap<String, Vec<i64>> = [
            (
                "u_1".to_owned(),
                vec![
                    micros("2026-01-04T12:00:00Z"),
                    micros("2026-01-05T07:00:00.123456Z"),
                    micros("2026-01-06T23:10:00Z"),
                ],
            ),
            ("u_2".to_owned(), vec![micros("2026-01-05T09:30:00Z")]),
        ]
        .into();
        assert_eq!(times.times, expected);
        assert_eq!(times.latest, Some(micros("2026-01-07T01:00:00Z")), "a page view of u_3 counts for the horizon");
        let none = reader.user_event_times("shop", "refund").await.unwrap();
        assert!(none.times.is_empty());
        assert_eq!(none.latest, times.latest);
        assert_eq!(reader.user_event_times("other", "purchase").await.unwrap(), UserEventTimes::default());
    }
}

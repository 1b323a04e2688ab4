//! The Parquet layout of the lake: raw events and quarantine records.
//!
//! The partition columns (`client_id`, `dt`, `hour`) live in the path, Hive style, and not in the
//! files, as Athena, Trino and Spark expect.
//!
//! [`events_batch`] writes events into the `raw/events` layout and [`events_from_batch`] reads
//! them back; the round trip is exact but for the event and receive times, which the lake keeps
//! to the microsecond.

use std::sync::{Arc, LazyLock};

use arrow_array::builder::{BooleanBuilder, StringBuilder, TimestampMicrosecondBuilder, UInt64Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, ArrayRef, BooleanArray, PrimitiveArray, RecordBatch, StringArray};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use livora_common::{ClientId, Enrichment, Event, JsonObject};
use serde_json::value::RawValue;

use crate::log::EventRef;

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Schema of `raw/events` files.
pub static EVENTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let s = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        s("event_id", false),
        Field::new("timestamp", ts(), false),
        Field::new("received_at", ts(), false),
        s("user_id", true),
        s("anon_id", true),
        s("session_id", true),
        s("event_type", false),
        s("props", false),
        s("context", false),
        s("ip", true),
        s("user_agent", true),
        s("browser", true),
        s("browser_version", true),
        s("os", true),
        s("device_type", true),
        Field::new("is_bot", DataType::Boolean, false),
        s("geo_country", true),
        s("geo_region", true),
        s("geo_city", true),
    ]))
});

/// Schema of `quarantine` files.
pub static QUARANTINE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("received_at", ts(), false),
        Field::new("stage", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("problems", DataType::Utf8, false),
        Field::new("event_id", DataType::Utf8, true),
        Field::new("payload", DataType::Utf8, false),
        Field::new("log_position", DataType::UInt64, false),
    ]))
});

/// Where in the pipeline a record was quarantined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Refused by the collector's validation (the sender got a 400).
    Validation,
    /// Accepted, but its log record could not be decoded.
    Decode,
}

impl Stage {
    /// The name stored in the `stage` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validation => "validation",
            Self::Decode => "decode",
        }
    }
}

/// One row of the quarantine table.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantineRecord {
    /// When the collector received it (µs since the epoch).
    pub received_at_micros: i64,
    /// Where it failed.
    pub stage: Stage,
    /// A one-line summary of why.
    pub reason: String,
    /// Every problem, as a JSON array of `{index, field, reason}`.
    pub problems: String,
    /// The event id, when one is known.
    pub event_id: Option<String>,
    /// What was received (lossy UTF-8, possibly truncated).
    pub payload: String,
    /// The log position of the record it came from.
    pub log_position: u64,
}

/// Builds a record batch of events.
pub fn events_batch<'a>(events: impl ExactSizeIterator<Item = &'a Event>) -> Result<RecordBatch, ArrowError> {
    let mut builder = EventsBuilder::with_capacity(events.len(), 0);
    for e in events {
        builder.append(&EventRef::of(e));
    }
    builder.finish().map(|(_, batch)| batch)
}

/// The columns of a `raw/events` batch being built, one event at a time: what the lake writer
/// buffers per partition, copying each event's fields straight from its log record (no owned
/// [`Event`] in between).
pub struct EventsBuilder {
    ids: Vec<u128>,
    event_id: StringBuilder,
    timestamp: TimestampMicrosecondBuilder,
    received_at: TimestampMicrosecondBuilder,
    user_id: StringBuilder,
    anon_id: StringBuilder,
    session_id: StringBuilder,
    event_type: StringBuilder,
    props: StringBuilder,
    context: StringBuilder,
    ip: StringBuilder,
    user_agent: StringBuilder,
    browser: StringBuilder,
    browser_version: StringBuilder,
    os: StringBuilder,
    device_type: StringBuilder,
    is_bot: BooleanBuilder,
    geo_country: StringBuilder,
    geo_region: StringBuilder,
    geo_city: StringBuilder,
}

impl EventsBuilder {
    /// A builder with room for `rows` events; `json_bytes`, the size of their `props` and
    /// `context`, sizes those two columns (0 when unknown: they grow as needed).
    pub fn with_capacity(rows: usize, json_bytes: usize) -> Self {
        let text = || StringBuilder::with_capacity(rows, rows * 16);
        let time = || TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
        Self {
            ids: Vec::with_capacity(rows),
            event_id: StringBuilder::with_capacity(rows, rows * 36),
            timestamp: time(),
            received_at: time(),
            user_id: text(),
            anon_id: text(),
            session_id: text(),
            event_type: text(),
            props: StringBuilder::with_capacity(rows, json_bytes.max(rows * 16)),
            context: StringBuilder::with_capacity(rows, json_bytes.max(rows * 16)),
            ip: text(),
            user_agent: text(),
            browser: text(),
            browser_version: text(),
            os: text(),
            device_type: text(),
            is_bot: BooleanBuilder::with_capacity(rows),
            geo_country: text(),
            geo_region: text(),
            geo_city: text(),
        }
    }

    /// Appends one event.
    pub fn append(&mut self, e: &EventRef<'_>) {
        self.ids.push(e.event_id.as_u128());
        self.event_id.append_value(e.event_id.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()));
        self.timestamp.append_value(e.timestamp.timestamp_micros());
        self.received_at.append_value(e.received_at.timestamp_micros());
        self.user_id.append_option(e.user_id);
        self.anon_id.append_option(e.anon_id);
        self.session_id.append_option(e.session_id);
        self.event_type.append_value(e.event_type);
        self.props.append_value(e.props);
        self.context.append_value(e.context);
        self.ip.append_option(e.ip);
        self.user_agent.append_option(e.user_agent);
        self.browser.append_option(e.browser);
        self.browser_version.append_option(e.browser_version);
        self.os.append_option(e.os);
        self.device_type.append_option(e.device_type);
        self.is_bot.append_value(e.is_bot);
        self.geo_country.append_option(e.geo_country);
        self.geo_region.append_option(e.geo_region);
        self.geo_city.append_option(e.geo_city);
    }

    /// The event ids, in the order appended, and the batch of the events.
    pub fn finish(mut self) -> Result<(Vec<u128>, RecordBatch), ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.timestamp.finish()),
            Arc::new(self.received_at.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.anon_id.finish()),
            Arc::new(self.session_id.finish()),
            Arc::new(self.event_type.finish()),
            Arc::new(self.props.finish()),
            Arc::new(self.context.finish()),
            Arc::new(self.ip.finish()),
            Arc::new(self.user_agent.finish()),
            Arc::new(self.browser.finish()),
            Arc::new(self.browser_version.finish()),
            Arc::new(self.os.finish()),
            Arc::new(self.device_type.finish()),
            Arc::new(self.is_bot.finish()),
            Arc::new(self.geo_country.finish()),
            Arc::new(self.geo_region.finish()),
            Arc::new(self.geo_city.finish()),
        ];
        Ok((self.ids, RecordBatch::try_new(EVENTS_SCHEMA.clone(), columns)?))
    }
}

/// Why a `raw/events` batch cannot be read back as events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A column is missing, or not of the type [`EVENTS_SCHEMA`] gives it.
    #[error("column `{name}` is missing or not {expected}")]
    Column {
        /// The column.
        name: &'static str,
        /// The type it must have.
        expected: &'static str,
    },
    /// A row holds a value that an [`Event`] cannot take.
    #[error("row {row}: {reason}")]
    Row {
        /// The row's index in the batch (the reader makes it the index in the file).
        row: usize,
        /// What is wrong, naming the column.
        reason: String,
    },
}

/// The columns of a `raw/events` batch, typed.
struct EventColumns<'a> {
    event_id: &'a StringArray,
    timestamp: &'a PrimitiveArray<TimestampMicrosecondType>,
    received_at: &'a PrimitiveArray<TimestampMicrosecondType>,
    user_id: &'a StringArray,
    anon_id: &'a StringArray,
    session_id: &'a StringArray,
    event_type: &'a StringArray,
    props: &'a StringArray,
    context: &'a StringArray,
    ip: &'a StringArray,
    user_agent: &'a StringArray,
    browser: &'a StringArray,
    browser_version: &'a StringArray,
    os: &'a StringArray,
    device_type: &'a StringArray,
    is_bot: &'a BooleanArray,
    geo_country: &'a StringArray,
    geo_region: &'a StringArray,
    geo_city: &'a StringArray,
}

/// The text column `name` of `batch`.
pub(crate) fn text_column<'a>(batch: &'a RecordBatch, name: &'static str) -> Result<&'a StringArray, DecodeError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or(DecodeError::Column { name, expected: "text" })
}

/// The timestamp (µs) column `name` of `batch`.
pub(crate) fn time_column<'a>(
    batch: &'a RecordBatch,
    name: &'static str,
) -> Result<&'a PrimitiveArray<TimestampMicrosecondType>, DecodeError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
        .ok_or(DecodeError::Column { name, expected: "a timestamp in microseconds" })
}

impl<'a> EventColumns<'a> {
    fn of(batch: &'a RecordBatch) -> Result<Self, DecodeError> {
        let text = |name| text_column(batch, name);
        let time = |name| time_column(batch, name);
        Ok(Self {
            event_id: text("event_id")?,
            timestamp: time("timestamp")?,
            received_at: time("received_at")?,
            user_id: text("user_id")?,
            anon_id: text("anon_id")?,
            session_id: text("session_id")?,
            event_type: text("event_type")?,
            props: text("props")?,
            context: text("context")?,
            ip: text("ip")?,
            user_agent: text("user_agent")?,
            browser: text("browser")?,
            browser_version: text("browser_version")?,
            os: text("os")?,
            device_type: text("device_type")?,
            is_bot: batch
                .column_by_name("is_bot")
                .and_then(|c| c.as_boolean_opt())
                .ok_or(DecodeError::Column { name: "is_bot", expected: "a boolean" })?,
            geo_country: text("geo_country")?,
            geo_region: text("geo_region")?,
            geo_city: text("geo_city")?,
        })
    }

    fn event(&self, row: usize, client: &ClientId) -> Result<Event, DecodeError> {
        let bad = |reason: String| DecodeError::Row { row, reason };
        let opt = |c: &StringArray| c.is_valid(row).then(|| c.value(row).to_owned());
        let required = |c: &'a StringArray, name: &str| {
            c.is_valid(row).then(|| c.value(row)).ok_or_else(|| bad(format!("`{name}` is null")))
        };
        let time = |c: &PrimitiveArray<TimestampMicrosecondType>, name: &str| {
            c.is_valid(row)
                .then(|| c.value(row))
                .and_then(DateTime::<Utc>::from_timestamp_micros)
                .ok_or_else(|| bad(format!("`{name}` is null or out of range")))
        };
        let object = |c: &'a StringArray, name: &str| {
            let text = required(c, name)?;
            RawValue::from_string(text.to_owned())
                .map_err(|e| bad(format!("`{name}` is not JSON: {e}")))
                .and_then(|raw| JsonObject::new(raw).map_err(|e| bad(format!("`{name}` {e}"))))
        };
        let id = required(self.event_id, "event_id")?;
        Ok(Event {
            event_id: uuid::Uuid::parse_str(id).map_err(|e| bad(format!("`event_id` `{id}` is not a UUID: {e}")))?,
            timestamp: time(self.timestamp, "timestamp")?,
            client_id: client.clone(),
            user_id: opt(self.user_id),
            anon_id: opt(self.anon_id),
            session_id: opt(self.session_id),
            event_type: required(self.event_type, "event_type")?.to_owned(),
            props: object(self.props, "props")?,
            context: object(self.context, "context")?,
            received_at: time(self.received_at, "received_at")?,
            enrichment: Enrichment {
                ip: opt(self.ip),
                user_agent: opt(self.user_agent),
                browser: opt(self.browser),
                browser_version: opt(self.browser_version),
                os: opt(self.os),
                device_type: opt(self.device_type),
                is_bot: self.is_bot.is_valid(row) && self.is_bot.value(row),
                geo_country: opt(self.geo_country),
                geo_region: opt(self.geo_region),
                geo_city: opt(self.geo_city),
            },
        })
    }
}

/// Reads a batch of the `raw/events` layout back as events of `client` (the partition's client,
/// which the files do not repeat). Columns are found by name, so a file may hold more.
///
/// # Errors
/// [`DecodeError::Column`] for a missing or mistyped column; [`DecodeError::Row`] for the first
/// row that an [`Event`] cannot hold (an `event_id` that is not a UUID, `props` or `context` not
/// a JSON object, a null required value).
pub fn events_from_batch(batch: &RecordBatch, client: &ClientId) -> Result<Vec<Event>, DecodeError> {
    let columns = EventColumns::of(batch)?;
    (0..batch.num_rows()).map(|row| columns.event(row, client)).collect()
}

/// Builds a record batch of quarantine records.
pub fn quarantine_batch<'a>(
    records: impl ExactSizeIterator<Item = &'a QuarantineRecord>,
) -> Result<RecordBatch, ArrowError> {
    let n = records.len();
    let mut received = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut stage = StringBuilder::new();
    let mut reason = StringBuilder::new();
    let mut problems = StringBuilder::new();
    let mut event_id = StringBuilder::new();
    let mut payload = StringBuilder::new();
    let mut position = UInt64Builder::with_capacity(n);
    for r in records {
        received.append_value(r.received_at_micros);
        stage.append_value(r.stage.as_str());
        reason.append_value(&r.reason);
        problems.append_value(&r.problems);
        event_id.append_option(r.event_id.as_deref());
        payload.append_value(&r.payload);
        position.append_value(r.log_position);
    }
    RecordBatch::try_new(
        QUARANTINE_SCHEMA.clone(),
        vec![
            Arc::new(received.finish()),
            Arc::new(stage.finish()),
            Arc::new(reason.finish()),
            Arc::new(problems.finish()),
            Arc::new(event_id.finish()),
            Arc::new(payload.finish()),
            Arc::new(position.finish()),
        ],
    )
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use arrow_array::StringArray;

    use super::*;

    /// An event at `at` (RFC 3339), with every optional field set or none.
    pub(crate) fn event(i: u8, at: &str, event_type: &str, user: Option<&str>, full: bool) -> Event {
        let opt = |s: &str| full.then(|| s.to_owned());
        Event {
            event_id: uuid::Uuid::from_bytes([i; 16]),
            timestamp: at.parse().unwrap(),
            client_id: ClientId::new("shop").unwrap(),
            user_id: user.map(str::to_owned),
            anon_id: Some(format!("a_{i}")),
            session_id: opt("s_\u{e9}"),
            event_type: event_type.into(),
            props: serde_json::from_str(r#"{"revenue": 12.50, "items": [{"sku": "x"}]}"#).unwrap(),
            context: if full { serde_json::from_str(r#"{"locale":"fr-FR"}"#).unwrap() } else { JsonObject::default() },
            received_at: "2026-01-05T08:00:00.000001Z".parse().unwrap(),
            enrichment: Enrichment {
                ip: opt("203.0.113.7"),
                user_agent: opt("Mozilla/5.0"),
                browser: opt("Chrome"),
                browser_version: opt("120.0"),
                os: opt("Linux"),
                device_type: opt("desktop"),
                is_bot: full,
                geo_country: opt("FR"),
                geo_region: opt("Île-de-France"),
                geo_city: opt("Paris"),
            },
        }
    }

    /// `batch` with the text column `name` replaced (and made nullable, as a foreign file may).
    fn with_column(batch: &RecordBatch, name: &str, values: Vec<Option<&str>>) -> RecordBatch {
        let index = batch.schema().index_of(name).unwrap();
        let mut columns = batch.columns().to_vec();
        columns[index] = Arc::new(StringArray::from(values));
        let mut fields: Vec<Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields[index] = Field::new(name, DataType::Utf8, true);
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    }

    #[test]
    fn events_round_trip_through_a_batch_with_every_field_set_or_not() {
        let events = vec![
            event(1, "2026-01-05T07:00:00.123456Z", "purchase", Some("u_1"), true),
            event(2, "2026-01-05T07:30:00Z", "page_view", None, false),
        ];
        let batch = events_batch(events.iter()).unwrap();
        let shop = ClientId::new("shop").unwrap();
        assert_eq!(events_from_batch(&batch, &shop).unwrap(), events);
    }

    #[test]
    fn a_row_that_is_not_an_event_is_an_error_naming_the_row_and_the_column() {
        let events = [
            event(1, "2026-01-05T07:00:00Z", "purchase", Some("u_1"), true),
            event(2, "2026-01-05T07:30:00Z", "page_view", None, false),
        ];
        let batch = events_batch(events.iter()).unwrap();
        let shop = ClientId::new("shop").unwrap();
        let id = events[0].event_id.to_string();
        let cases = [
            ("event_id", vec![Some(id.as_str()), Some("not-a-uuid")], "row 1: `event_id` `not-a-uuid` is not a UUID"),
            ("props", vec![Some("{}"), Some("[1]")], "row 1: `props` must be an object"),
            ("context", vec![Some("{"), Some("{}")], "row 0: `context` is not JSON"),
            ("event_type", vec![None, Some("x")], "row 0: `event_type` is null"),
        ];
        for (column, values, expected) in cases {
            let err = events_from_batch(&with_column(&batch, column, values), &shop).unwrap_err();
            assert!(err.to_string().starts_with(expected), "{column}: {err}");
        }
        let schema = Schema::new(vec![Field::new("event_id", DataType::Utf8, false)]);
        let narrow =
            RecordBatch::try_new(Arc::new(schema), vec![Arc::new(StringArray::from(vec![id.as_str()]))]).unwrap();
        assert_eq!(
            events_from_batch(&narrow, &shop).unwrap_err(),
            DecodeError::Column { name: "timestamp", expected: "a timestamp in microseconds" }
        );
    }
}

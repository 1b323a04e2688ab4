//! The Parquet layout of the lake: raw events and quarantine records.
//!
//! The partition columns (`client_id`, `dt`, `hour`) live in the path, Hive style, and not in the
//! files, as Athena, Trino and Spark expect.

use std::sync::{Arc, LazyLock};

use arrow_array::builder::{BooleanBuilder, StringBuilder, TimestampMicrosecondBuilder, UInt64Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use livora_common::Event;

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
    let n = events.len();
    let text = || StringBuilder::with_capacity(n, n * 16);
    let time = || TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let (mut event_id, mut timestamp, mut received_at) = (text(), time(), time());
    let (mut user_id, mut anon_id, mut session_id, mut event_type) = (text(), text(), text(), text());
    let (mut props, mut context, mut ip, mut user_agent) = (text(), text(), text(), text());
    let (mut browser, mut browser_version, mut os, mut device_type) = (text(), text(), text(), text());
    let mut is_bot = BooleanBuilder::with_capacity(n);
    let (mut geo_country, mut geo_region, mut geo_city) = (text(), text(), text());
    let mut uuid_buf = uuid::Uuid::encode_buffer();
    for e in events {
        let en = &e.enrichment;
        event_id.append_value(e.event_id.hyphenated().encode_lower(&mut uuid_buf));
        timestamp.append_value(e.timestamp.timestamp_micros());
        received_at.append_value(e.received_at.timestamp_micros());
        user_id.append_option(e.user_id.as_deref());
        anon_id.append_option(e.anon_id.as_deref());
        session_id.append_option(e.session_id.as_deref());
        event_type.append_value(&e.event_type);
        props.append_value(e.props.get());
        context.append_value(e.context.get());
        ip.append_option(en.ip.as_deref());
        user_agent.append_option(en.user_agent.as_deref());
        browser.append_option(en.browser.as_deref());
        browser_version.append_option(en.browser_version.as_deref());
        os.append_option(en.os.as_deref());
        device_type.append_option(en.device_type.as_deref());
        is_bot.append_value(en.is_bot);
        geo_country.append_option(en.geo_country.as_deref());
        geo_region.append_option(en.geo_region.as_deref());
        geo_city.append_option(en.geo_city.as_deref());
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(event_id.finish()),
        Arc::new(timestamp.finish()),
        Arc::new(received_at.finish()),
        Arc::new(user_id.finish()),
        Arc::new(anon_id.finish()),
        Arc::new(session_id.finish()),
        Arc::new(event_type.finish()),
        Arc::new(props.finish()),
        Arc::new(context.finish()),
        Arc::new(ip.finish()),
        Arc::new(user_agent.finish()),
        Arc::new(browser.finish()),
        Arc::new(browser_version.finish()),
        Arc::new(os.finish()),
        Arc::new(device_type.finish()),
        Arc::new(is_bot.finish()),
        Arc::new(geo_country.finish()),
        Arc::new(geo_region.finish()),
        Arc::new(geo_city.finish()),
    ];
    RecordBatch::try_new(EVENTS_SCHEMA.clone(), columns)
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

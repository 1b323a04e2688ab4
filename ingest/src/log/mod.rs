//! The event log: the durable, ordered record of everything the collector accepted.
//!
//! The collector appends one [`LogRecord`] per accepted request (a whole batch, so a batch is
//! all-or-nothing in every backend) and answers 200 only once [`EventLog::append`] returned,
//! i.e. once the record is durable. Consumers (the lake writer, later the stream aggregator)
//! read with [`LogConsumer`]: at-least-once delivery, resumable after a restart from the last
//! committed position. Everything downstream dedupes on `event_id`.
//!
//! Backends: [`embedded`] (segment files in the data directory, fsync'd group commit) and
//! [`nats`] (NATS JetStream, one stream, one subject per client).

pub mod embedded;
pub mod nats;

mod record;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use livora_common::ClientId;

pub use record::{Borrowed, EventRef, LogRecord, RecordError, Rejection};

/// Why the log could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Reading or writing the embedded log failed.
    #[error("event log i/o on {path}: {source}")]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The log is shut down or its writer died; nothing more can be appended.
    #[error("event log is closed")]
    Closed,
    /// The NATS server refused or failed an operation.
    #[error("nats jetstream: {0}")]
    Nats(String),
    /// A record is larger than the backend accepts.
    #[error("log record of {size} bytes exceeds the backend limit of {limit} bytes")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// Backend limit.
        limit: usize,
    },
    /// An empty record: the log stores none.
    #[error("empty log record")]
    Empty,
    /// A consumer name is not usable.
    #[error("invalid consumer name `{0}`: use letters, digits, '-' and '_'")]
    BadConsumerName(String),
}

/// The position of a record in the log: a sequence number, strictly increasing in append order.
pub type Position = u64;

/// A record handed to a consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Where the record sits in the log; pass it to [`LogConsumer::commit`] once processed.
    pub position: Position,
    /// The encoded [`LogRecord`].
    pub payload: Bytes,
}

/// The seam between the collector and its durable log.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends one encoded [`LogRecord`] of `client`. Returns only once the record is durable
    /// (fsync'd locally, or acknowledged by JetStream). On error nothing may be considered
    /// appended by the caller (a record is never partially visible to consumers).
    async fn append(&self, client: &ClientId, record: Bytes) -> Result<Position, LogError>;

    /// Opens the durable consumer `name`, resuming after its last committed position (or from
    /// the start of the log for a new consumer).
    async fn consumer(&self, name: &str) -> Result<Box<dyn LogConsumer>, LogError>;

    /// A short name of the backend for logs and metrics (`embedded`, `nats`).
    fn backend(&self) -> &'static str;

    /// Whether the log can take appends now (for `/readyz`): the embedded writer is alive, or
    /// the NATS connection is up.
    fn is_available(&self) -> bool;
}

/// A durable, resumable reader of the log with at-least-once delivery.
#[async_trait]
pub trait LogConsumer: Send {
    /// Waits up to `wait` for records and returns at most `max` of them, in log order. An empty
    /// vector means nothing arrived in time.
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, LogError>;

    /// Marks every record up to and including `position` as processed: after a restart the
    /// consumer resumes after it. Records not committed are delivered again.
    async fn commit(&mut self, position: Position) -> Result<(), LogError>;
}

/// Checks a consumer name: it becomes a file name and a JetStream durable name.
pub(crate) fn check_consumer_name(name: &str) -> Result<(), LogError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok { Ok(()) } else { Err(LogError::BadConsumerName(name.to_owned())) }
}

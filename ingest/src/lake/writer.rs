//! The consumer that turns the event log into Parquet files.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{BooleanArray, RecordBatch};
use arrow_schema::ArrowError;
use arrow_select::filter::filter_record_batch;
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Timelike, Utc};
use livora_common::ClientId;
use livora_common::client::InvalidClientId;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use tokio::sync::watch;

use super::config::{Compression, LakeConfig};
use super::dedupe::{DedupeError, DedupeStore};
use super::schema::{DecodeError, EventsBuilder, QuarantineRecord, Stage, quarantine_batch};
use super::{events_partition, quarantine_prefix};
use crate::log::{Borrowed, Delivery, EventRef, LogConsumer, LogError, LogRecord, Position};
use crate::metrics::Metrics;

/// Records taken from the log per poll: up to 100 events each, so a poll holds at most a few
/// tens of megabytes on top of the buffers.
const POLL_RECORDS: usize = 256;

/// Events a partition's buffer makes room for at first (it grows as needed).
const BUFFER_ROWS: usize = 1024;

/// Why the lake writer stopped.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// The event log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The dedupe store failed.
    #[error(transparent)]
    Dedupe(#[from] DedupeError),
    /// Building a Parquet file failed.
    #[error("parquet: {0}")]
    Parquet(String),
    /// Talking to the object store failed.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// A lake file cannot be read back as events.
    #[error("{path}: {source}")]
    Decode {
        /// The file.
        path: String,
        /// What is wrong, and in which row.
        #[source]
        source: DecodeError,
    },
    /// A client id that no lake partition can have.
    #[error(transparent)]
    Client(#[from] InvalidClientId),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Partition {
    Events { client: ClientId, dt: NaiveDate, hour: u32 },
    Quarantine { client: String, dt: NaiveDate },
}

impl Partition {
    fn dir(&self) -> String {
        match self {
            Self::Events { client, dt, hour } => events_partition(client.as_str(), *dt, *hour),
            Self::Quarantine { client, dt } => format!("{}/dt={dt}", quarantine_prefix(client)),
        }
    }
}

/// One partition's rows, waiting for their file: events go straight into the Arrow columns
/// of their file (copied from the log record, no owned event in between), quarantine records
/// into a list.
struct Buffer {
    rows: Rows,
    /// Roughly the memory the rows take.
    bytes: usize,
    min_position: Position,
    opened: Instant,
}

enum Rows {
    // Boxed: twenty column builders.
    Events(Box<EventsBuilder>),
    Quarantine(Vec<QuarantineRecord>),
}

/// A buffer's rows as one batch, ready for its file, with the key each row dedupes on.
struct Sealed {
    /// Per row: the event id, or the quarantine record's log position.
    keys: Vec<u128>,
    batch: RecordBatch,
}

impl Buffer {
    fn seal(self) -> Result<Sealed, ArrowError> {
        Ok(match self.rows {
            Rows::Events(rows) => {
                let (keys, batch) = rows.finish()?;
                Sealed { keys, batch }
            }
            Rows::Quarantine(rows) => Sealed {
                keys: rows.iter().map(|r| u128::from(r.log_position)).collect(),
                batch: quarantine_batch(rows.iter())?,
            },
        })
    }
}

/// Consumes the event log into the lake.
pub struct LakeWriter {
    store: Arc<dyn ObjectStore>,
    dedupe: DedupeStore,
    config: LakeConfig,
    buffers: HashMap<Partition, Buffer>,
    buffered_bytes: usize,
    last_polled: Option<Position>,
    committed: Option<Position>,
    metrics: Arc<Metrics>,
}

impl LakeWriter {
    /// A writer into `store`, remembering what it wrote in `dedupe`. Resolves the file intents a
    /// crash may have left.
    pub async fn new(
        store: Arc<dyn ObjectStore>,
        dedupe: DedupeStore,
        config: LakeConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, LakeError> {
        for (id, intent) in dedupe.pending()? {
            match store.head(&ObjectPath::from(intent.path.as_str())).await {
                Ok(_) => dedupe.complete(id)?,
                Err(object_store::Error::NotFound { .. }) => {
                    tracing::info!(path = %intent.path, events = intent.keys.len(), "releasing the events of a file that was never written");
                    dedupe.abandon(id)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Self {
            store,
            dedupe,
            config,
            buffers: HashMap::new(),
            buffered_bytes: 0,
            last_polled: None,
            committed: None,
            metrics,
        })
    }

    /// Runs until `shutdown` turns true, then writes what it holds and commits.
    pub async fn run(
        mut self,
        mut consumer: Box<dyn LogConsumer>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), LakeError> {
        let mut last_expiry = Instant::now();
        loop {
            let deliveries = tokio::select! {
                polled = consumer.poll(POLL_RECORDS, Duration::from_millis(200)) => polled?,
                () = async { let _ = shutdown.wait_for(|&stop| stop).await; } => {
                    self.flush(|_| true).await?;
                    self.commit(consumer.as_mut()).await?;
                    return Ok(());
                }
            };
            for delivery in deliveries {
                self.add(delivery);
            }
            let now = Instant::now();
            let (roll_bytes, roll_interval) = (self.config.roll_bytes.as_usize(), self.config.roll_interval);
            if self.buffered_bytes > self.config.max_buffer_bytes.as_usize() {
                self.flush(|_| true).await?;
            } else {
                self.flush(|b| b.bytes >= roll_bytes || now.duration_since(b.opened) >= roll_interval).await?;
            }
            self.commit(consumer.as_mut()).await?;
            if last_expiry.elapsed() > Duration::from_secs(60) {
                last_expiry = Instant::now();
                let expired = self.dedupe.expire()?;
                tracing::debug!(expired, "dropped expired dedupe buckets");
            }
        }
    }

    fn add(&mut self, delivery: Delivery) {
        let Delivery { position, payload } = delivery;
        self.last_polled = Some(position);
        let added = match LogRecord::decode_borrowed(&payload) {
            Ok(Borrowed::Events(events)) => self.add_events(&events, payload.len(), position),
            Ok(Borrowed::Owned(LogRecord::Events(events))) => {
                let events: Vec<EventRef<'_>> = events.iter().map(EventRef::of).collect();
                self.add_events(&events, payload.len(), position)
            }
            Ok(Borrowed::Owned(LogRecord::Rejected(r))) => {
                let problems = serde_json::to_string(&r.problems).unwrap_or_default();
                let reason = r.problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
                let record = QuarantineRecord {
                    received_at_micros: r.received_at.timestamp_micros(),
                    stage: Stage::Validation,
                    reason,
                    problems,
                    event_id: None,
                    payload: r.payload,
                    log_position: position,
                };
                self.quarantine(r.client_id.as_str(), r.received_at, record, position);
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(reason) = added {
            tracing::warn!(position, error = %reason, "quarantining an undecodable log record");
            self.metrics.lake_undecodable.inc();
            let now = Utc::now();
            let record = QuarantineRecord {
                received_at_micros: now.timestamp_micros(),
                stage: Stage::Decode,
                reason,
                problems: "[]".into(),
                event_id: None,
                payload: String::from_utf8_lossy(&payload).into_owned(),
                log_position: position,
            };
            self.quarantine("_unknown", now, record, position);
        }
    }

    /// Appends the events of one record (`size` bytes in the log) to their partitions'
    /// buffers; none when a client id is one no partition can have (the record is then
    /// undecodable: the collector never appends such events).
    fn add_events(&mut self, events: &[EventRef<'_>], size: usize, position: Position) -> Result<(), String> {
        // A record's events are one client's, and nearly always of one hour: the partition is
        // looked up once per run of events that share it.
        let runs: Vec<&[EventRef<'_>]> = events
            .chunk_by(|a, b| {
                a.client_id == b.client_id
                    && a.timestamp.timestamp().div_euclid(3600) == b.timestamp.timestamp().div_euclid(3600)
            })
            .collect();
        let mut keys = Vec::with_capacity(runs.len());
        for run in &runs {
            let first = &run[0];
            let client = ClientId::new(first.client_id).map_err(|e| format!("client_id: {e}"))?;
            keys.push(Partition::Events { client, dt: first.timestamp.date_naive(), hour: first.timestamp.hour() });
        }
        // In Arrow an event takes about its size in the record; the bounds count that.
        let per_event = size / events.len().max(1);
        for (run, key) in runs.into_iter().zip(keys) {
            let buffer = self.buffers.entry(key).or_insert_with(|| Buffer {
                rows: Rows::Events(Box::new(EventsBuilder::with_capacity(BUFFER_ROWS, BUFFER_ROWS * per_event / 2))),
                bytes: 0,
                min_position: position,
                opened: Instant::now(),
            });
            if let Rows::Events(rows) = &mut buffer.rows {
                for event in run {
                    rows.append(event);
                }
            }
            buffer.bytes += per_event * run.len();
            self.buffered_bytes += per_event * run.len();
        }
        Ok(())
    }

    fn quarantine(&mut self, client: &str, at: DateTime<Utc>, record: QuarantineRecord, position: Position) {
        let size = record.payload.len() + record.problems.len() + 64;
        let key = Partition::Quarantine { client: client.to_owned(), dt: at.date_naive() };
        let buffer = self.buffers.entry(key).or_insert_with(|| Buffer {
            rows: Rows::Quarantine(Vec::new()),
            bytes: 0,
            min_position: position,
            opened: Instant::now(),
        });
        if let Rows::Quarantine(rows) = &mut buffer.rows {
            rows.push(record);
        }
        buffer.bytes += size;
        self.buffered_bytes += size;
    }

    /// Writes the buffers that `due` selects, retrying each until it succeeds.
    async fn flush(&mut self, due: impl Fn(&Buffer) -> bool) -> Result<(), LakeError> {
        let keys: Vec<Partition> = self.buffers.iter().filter(|(_, b)| due(b)).map(|(k, _)| k.clone()).collect();
        for key in keys {
            let Some(buffer) = self.buffers.remove(&key) else { continue };
            let bytes = buffer.bytes;
            // Building the batch from its columns fails only on a bug: the writer stops, and the
            // events, their log position not committed, come again after a restart.
            let sealed = buffer.seal().map_err(|e| LakeError::Parquet(e.to_string()))?;
            let mut backoff = Duration::from_millis(100);
            loop {
                match self.write(&key, &sealed).await {
                    Ok(()) => break,
                    Err(e) => {
                        self.metrics.lake_write_failures.inc();
                        tracing::error!(partition = %key.dir(), error = %e, retry_in = ?backoff, "lake write failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
            self.buffered_bytes -= bytes;
        }
        Ok(())
    }

    /// Writes one buffer as one file, claiming its keys first (see [`super::dedupe`]).
    async fn write(&self, key: &Partition, sealed: &Sealed) -> Result<(), LakeError> {
        let path = format!("{}/part-{}.parquet", key.dir(), uuid::Uuid::now_v7());
        // Events dedupe per client on their id; quarantine records on their log position, under a
        // key space no client id can take (client ids never start with '~').
        let space = match key {
            Partition::Events { client, .. } => client.to_string(),
            Partition::Quarantine { client, .. } => format!("~q:{client}"),
        };
        let keys: Vec<(&str, u128)> = sealed.keys.iter().map(|&id| (space.as_str(), id)).collect();
        let (intent, fresh) = self.dedupe.claim(&path, &keys)?;
        match self.write_fresh(&sealed.batch, &fresh, &path).await {
            Ok(rows) => {
                self.dedupe.complete(intent)?;
                let duplicates = fresh.iter().filter(|&&f| !f).count() as u64;
                match key {
                    Partition::Events { .. } => {
                        self.metrics.lake_events_written.inc_by(rows as u64);
                        self.metrics.lake_duplicates.inc_by(duplicates);
                    }
                    Partition::Quarantine { .. } => {
                        self.metrics.lake_quarantined.inc_by(rows as u64);
                    }
                }
                Ok(())
            }
            Err(e) => {
                // Nothing was written: release the keys so that the retry writes these events.
                self.dedupe.abandon(intent)?;
                Err(e)
            }
        }
    }

    /// Writes the rows of `batch` that `fresh` marks as new, as one file at `path`; returns how
    /// many (none written when all are duplicates).
    async fn write_fresh(&self, batch: &RecordBatch, fresh: &[bool], path: &str) -> Result<usize, LakeError> {
        let filtered;
        let batch = if fresh.iter().all(|&f| f) {
            batch
        } else {
            filtered = filter_record_batch(batch, &BooleanArray::from(fresh.to_vec()))
                .map_err(|e| LakeError::Parquet(e.to_string()))?;
            &filtered
        };
        if batch.num_rows() == 0 {
            return Ok(0);
        }
        let bytes = self.encode(batch)?;
        self.store.put(&ObjectPath::from(path), Bytes::from(bytes).into()).await?;
        self.metrics.lake_files_written.inc();
        tracing::debug!(%path, rows = batch.num_rows(), "wrote lake file");
        Ok(batch.num_rows())
    }

    fn encode(&self, batch: &RecordBatch) -> Result<Vec<u8>, LakeError> {
        let compression = match self.config.compression {
            Compression::Zstd => ParquetCompression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()),
            Compression::Snappy => ParquetCompression::SNAPPY,
        };
        let props = WriterProperties::builder().set_compression(compression).build();
        let parquet = |e: parquet::errors::ParquetError| LakeError::Parquet(e.to_string());
        let mut out = Vec::with_capacity(1 << 20);
        let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).map_err(parquet)?;
        writer.write(batch).map_err(parquet)?;
        writer.close().map_err(parquet)?;
        Ok(out)
    }

    /// Commits the log up to the last position whose events are all written.
    async fn commit(&mut self, consumer: &mut dyn LogConsumer) -> Result<(), LakeError> {
        let oldest_buffered = self.buffers.values().map(|b| b.min_position).min();
        let upto = match oldest_buffered {
            Some(0) => return Ok(()),
            Some(p) => Some(p - 1),
            None => self.last_polled,
        };
        if let Some(upto) = upto
            && self.committed.is_none_or(|c| upto > c)
        {
            consumer.commit(upto).await?;
            self.committed = Some(upto);
        }
        Ok(())
    }
}

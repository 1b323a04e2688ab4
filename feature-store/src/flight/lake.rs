//! The `events` dataset: raw events read straight from the lake's Parquet files with arrow-rs.
//!
//! The lake is written by arrow-rs (`raw/events/client_id=<c>/dt=…/hour=…/part-*.parquet`), so
//! its files are read as they are, with no engine in between: hour partitions outside the time
//! range are not opened, the async reader fetches one row group's columns at a time from the
//! object store (local disk or S3), and a row filter on `timestamp` and `event_type` is applied
//! while decoding, so other columns of filtered-out rows are never decoded. Files come in path
//! order: by hour, then in the order they were written; rows are not sorted within an hour.
//!
//! Decoding Parquet is what a `DoGet` of events spends its CPU on, so [`FILES_IN_FLIGHT`] files
//! are decoded at once, each by a task of its own: while the batches of one file go to the
//! client, the next file is read ahead on another core. A lake in a local directory is decoded
//! by the synchronous reader on tokio's blocking pool, where the operating system shares the
//! cores between decoding and the async workers, instead of decoding inside the workers' polls
//! that also serve online lookups; a lake in S3 is read by the async reader (one row group's
//! columns fetched at a time). Batches still leave in file order. A
//! batch counts against the stream's memory budget from when it is taken in order for sending;
//! a file read ahead holds at most two decoded batches (one waiting, one being decoded) until
//! its turn.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, BooleanArray, RecordBatch};
use arrow_schema::{ArrowError, SchemaRef};
use futures::{StreamExt, TryStreamExt};
use livora_common::ClientId;
use livora_ingest::lake::events_prefix;
use livora_ingest::lake::reader::partition_overlaps;
use livora_ingest::lake::schema::EVENTS_SCHEMA;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowPredicateFn, ArrowReaderBuilder, ParquetRecordBatchReaderBuilder, RowFilter};
use parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::BatchStream;
use super::budget::StreamBudget;
use super::command::EventsCommand;
use crate::error::{Error, Result};

/// Files decoded at once by one stream: the one being sent and the next.
pub const FILES_IN_FLIGHT: usize = 2;

/// The schema of the `events` dataset: the lake's.
pub fn schema() -> SchemaRef {
    EVENTS_SCHEMA.clone()
}

/// Streams `client`'s events that `command` selects from the lake in `store`, whose files are
/// read from `local_root` directly when the lake is a local directory.
pub fn stream(
    store: Arc<dyn ObjectStore>,
    local_root: Option<PathBuf>,
    client: &ClientId,
    command: &EventsCommand,
    batch_rows: usize,
    budget: StreamBudget,
) -> BatchStream {
    let (tx, rx) = mpsc::channel(1);
    let reader = Reader {
        store,
        local_root,
        prefix: events_prefix(client.as_str()),
        start: command.start.map(|t| t.timestamp_micros()),
        end: command.end.map(|t| t.timestamp_micros()),
        types: command.event_types.iter().cloned().collect(),
        batch_rows,
        budget,
    };
    tokio::spawn(async move {
        if let Err(e) = reader.run(&tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }).boxed()
}

struct Reader {
    store: Arc<dyn ObjectStore>,
    local_root: Option<PathBuf>,
    prefix: String,
    start: Option<i64>,
    end: Option<i64>,
    types: HashSet<String>,
    batch_rows: usize,
    budget: StreamBudget,
}

type Sender = mpsc::Sender<Result<(RecordBatch, super::budget::Held)>>;

/// One file's decoded batches, in order, and the task decoding them.
struct FileBatches {
    batches: mpsc::Receiver<Result<RecordBatch>>,
    task: JoinHandle<()>,
    path: String,
}

impl Reader {
    async fn run(self, tx: &Sender) -> Result<()> {
        let lake = |e: object_store::Error| {
            Error::io(format!("listing the lake under {}", self.prefix))(std::io::Error::other(e))
        };
        let mut files: Vec<ObjectMeta> = self
            .store
            .list(Some(&ObjectPath::from(self.prefix.as_str())))
            .try_filter(|meta| {
                let keep = meta.location.as_ref().ends_with(".parquet")
                    && partition_overlaps(&meta.location, self.start, self.end);
                futures::future::ready(keep)
            })
            .try_collect()
            .await
            .map_err(lake)?;
        files.sort_by(|a, b| a.location.cmp(&b.location));
        let reader = Arc::new(self);
        let mut files = files.into_iter();
        let mut reading: VecDeque<FileBatches> = VecDeque::with_capacity(FILES_IN_FLIGHT);
        loop {
            while reading.len() < FILES_IN_FLIGHT
                && let Some(file) = files.next()
            {
                reading.push_back(reader.clone().spawn_file(file));
            }
            let Some(FileBatches { mut batches, task, path }) = reading.pop_front() else {
                return Ok(());
            };
            while let Some(batch) = batches.recv().await {
                let batch = batch?;
                let held = reader.budget.hold(&batch).await;
                if tx.send(Ok((batch, held))).await.is_err() {
                    // The client went away: dropping the receivers stops the readers.
                    return Ok(());
                }
            }
            // A reader that ends without an error has sent every batch; one that panicked
            // must not pass for the end of its file.
            task.await.map_err(|e| Error::Corrupt { what: path, reason: format!("decoding failed: {e}") })?;
        }
    }

    /// Starts decoding `file` on a task of its own: on the blocking pool for a local lake, on
    /// the runtime for a remote one.
    fn spawn_file(self: Arc<Self>, file: ObjectMeta) -> FileBatches {
        let (tx, batches) = mpsc::channel(1);
        let path = file.location.to_string();
        let task = match self.local_root.clone() {
            Some(root) => tokio::task::spawn_blocking(move || {
                if let Err(e) = self.read_local_file(&root, &file, &tx) {
                    let _ = tx.blocking_send(Err(e));
                }
            }),
            None => tokio::spawn(async move {
                if let Err(e) = self.read_file(file, &tx).await {
                    let _ = tx.send(Err(e)).await;
                }
            }),
        };
        FileBatches { batches, task, path }
    }

    /// Sends one remote file's selected rows; stops early when the receiver went away.
    async fn read_file(&self, file: ObjectMeta, tx: &mpsc::Sender<Result<RecordBatch>>) -> Result<()> {
        let path = file.location.to_string();
        let input = ParquetObjectReader::new(self.store.clone(), file.location).with_file_size(file.size);
        let builder = ParquetRecordBatchStreamBuilder::new(input).await.map_err(corrupt(&path))?;
        let mut batches = self.configure(builder, &path)?.build().map_err(corrupt(&path))?;
        while let Some(batch) = batches.next().await {
            let Some(batch) = lake_batch(batch.map_err(corrupt(&path))?, &path)? else { continue };
            if tx.send(Ok(batch)).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Sends one local file's selected rows (blocking); stops early when the receiver went away.
    fn read_local_file(&self, root: &Path, file: &ObjectMeta, tx: &mpsc::Sender<Result<RecordBatch>>) -> Result<()> {
        // Errors name the file by its key in the lake, as for a remote lake, not by the server's path.
        let what = file.location.to_string();
        let input = std::fs::File::open(root.join(file.location.as_ref()))
            .map_err(Error::io(format!("opening the lake file {what}")))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(input).map_err(corrupt(&what))?;
        for batch in self.configure(builder, &what)?.build().map_err(corrupt(&what))? {
            let batch = batch.map_err(|e| Error::Corrupt { what: what.clone(), reason: e.to_string() })?;
            let Some(batch) = lake_batch(batch, &what)? else { continue };
            if tx.blocking_send(Ok(batch)).is_err() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The batch size and, when the command selects by time or type, the row filter on
    /// `timestamp` and `event_type` (applied while decoding), for either reader.
    fn configure<T>(&self, builder: ArrowReaderBuilder<T>, path: &str) -> Result<ArrowReaderBuilder<T>> {
        let builder = builder.with_batch_size(self.batch_rows);
        if self.start.is_none() && self.end.is_none() && self.types.is_empty() {
            return Ok(builder);
        }
        let columns = builder.parquet_schema().columns();
        let index = |name: &str| {
            columns
                .iter()
                .position(|c| c.name() == name)
                .ok_or_else(|| Error::Corrupt { what: path.to_owned(), reason: format!("no column `{name}`") })
        };
        let mask = ProjectionMask::leaves(builder.parquet_schema(), [index("timestamp")?, index("event_type")?]);
        let (start, end, types) = (self.start, self.end, self.types.clone());
        let predicate = ArrowPredicateFn::new(mask, move |batch: RecordBatch| keep(&batch, start, end, &types));
        Ok(builder.with_row_filter(RowFilter::new(vec![Box::new(predicate)])))
    }
}

fn corrupt(what: &str) -> impl Fn(parquet::errors::ParquetError) -> Error + '_ {
    move |e| Error::Corrupt { what: what.to_owned(), reason: e.to_string() }
}

/// A decoded batch in the lake's event schema; `None` when the row filter left it empty.
fn lake_batch(batch: RecordBatch, what: &str) -> Result<Option<RecordBatch>> {
    if batch.num_rows() == 0 {
        return Ok(None);
    }
    RecordBatch::try_new(schema(), batch.columns().to_vec())
        .map(Some)
        .map_err(|e| Error::Corrupt { what: what.to_owned(), reason: format!("not in the lake's event layout: {e}") })
}

/// Which rows of `batch` (`timestamp`, `event_type`) are selected.
fn keep(
    batch: &RecordBatch,
    start: Option<i64>,
    end: Option<i64>,
    types: &HashSet<String>,
) -> Result<BooleanArray, ArrowError> {
    let column =
        |name: &str| batch.column_by_name(name).ok_or_else(|| ArrowError::SchemaError(format!("no column `{name}`")));
    let times = column("timestamp")?
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or_else(|| ArrowError::SchemaError("`timestamp` is not a timestamp in microseconds".into()))?;
    let kinds = column("event_type")?
        .as_string_opt::<i32>()
        .ok_or_else(|| ArrowError::SchemaError("`event_type` is not a string".into()))?;
    Ok((0..batch.num_rows())
        .map(|i| {
            let t = times.value(i);
            times.is_valid(i)
                && start.is_none_or(|s| t >= s)
                && end.is_none_or(|e| t <= e)
                && (types.is_empty() || (kinds.is_valid(i) && types.contains(kinds.value(i))))
        })
        .map(Some)
        .collect())
}

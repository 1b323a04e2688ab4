//! From polars to arrow-rs: the offline engine's results (feature history, prediction logs,
//! point-in-time datasets) as arrow-rs record batches, through Arrow IPC.
//!
//! polars keeps its own Arrow implementation (polars-arrow) and the workspace forbids `unsafe`,
//! so the C data interface is out. The IPC stream format is the other lossless bridge: polars
//! writes a chunk of a result into memory, arrow-rs reads it back, buffers sliced from the
//! message without decoding. Strings and lists come out in the 64-bit offset layouts
//! (`large_utf8`), which every Arrow client reads, rather than polars' string views.
//!
//! A query runs on polars' streaming engine into a callback sink that receives the result in
//! chunks of `batch_rows` rows. The callback (on a blocking thread) converts each chunk, waits
//! for the stream's [memory budget](super::budget) and hands the batches over a channel of one:
//! when the client reads slowly, the query waits; when it goes away, the query stops.

use std::io::Cursor;
use std::num::NonZeroUsize;

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_schema::{ArrowError, SchemaRef};
use futures::StreamExt;
use polars::prelude::*;

use super::BatchStream;
use super::budget::StreamBudget;
use crate::error::{Error, Result};

/// The arrow-rs schema of the results of a polars query with `schema`.
pub fn arrow_schema(schema: &Schema) -> Result<SchemaRef> {
    let mut empty = DataFrame::empty_with_schema(schema);
    let reader = StreamReader::try_new(Cursor::new(ipc_bytes(&mut empty)?), None).map_err(arrow_error)?;
    Ok(reader.schema())
}

/// `frame`'s rows as record batches of `schema` (from [`arrow_schema()`] of its schema).
pub fn record_batches(frame: &mut DataFrame, schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
    let reader = StreamReader::try_new(Cursor::new(ipc_bytes(frame)?), None).map_err(arrow_error)?;
    reader
        .map(|batch| batch.and_then(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec())))
        .collect::<Result<Vec<_>, ArrowError>>()
        .map_err(arrow_error)
}

/// Runs `query` and streams its result in batches of at most `batch_rows` rows, with `schema`,
/// within `budget`.
pub fn stream(query: LazyFrame, schema: SchemaRef, batch_rows: usize, budget: StreamBudget) -> BatchStream {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let sender = tx.clone();
        let callback = PlanCallback::new(move |mut chunk: DataFrame| -> PolarsResult<bool> {
            let batches = match record_batches(&mut chunk, &schema) {
                Ok(batches) => batches,
                Err(e) => {
                    let _ = sender.blocking_send(Err(e));
                    return Ok(true);
                }
            };
            for batch in batches {
                let held = runtime.block_on(budget.hold(&batch));
                if sender.blocking_send(Ok((batch, held))).is_err() {
                    // The client went away: stop the query.
                    return Ok(true);
                }
            }
            Ok(false)
        });
        let ran = query
            .sink_batches(callback, true, NonZeroUsize::new(batch_rows))
            .and_then(|sink| sink.collect_with_engine(Engine::Streaming));
        if let Err(e) = ran {
            let _ = tx.blocking_send(Err(Error::offline("running the dataset's query")(e)));
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }).boxed()
}

fn ipc_bytes(frame: &mut DataFrame) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    IpcStreamWriter::new(&mut bytes)
        .with_compat_level(CompatLevel::oldest())
        .finish(frame)
        .map_err(Error::offline("encoding a result as Arrow IPC"))?;
    Ok(bytes)
}

fn arrow_error(e: ArrowError) -> Error {
    Error::Corrupt { what: "a result handed from polars as Arrow IPC".into(), reason: e.to_string() }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, TimestampMicrosecondType};
    use arrow_schema::{DataType, TimeUnit};

    use super::*;

    #[test]
    fn polars_frames_arrive_with_their_types_and_values() {
        let times = Int64Chunked::from_vec("event_timestamp".into(), vec![1, 2, 3])
            .into_datetime(polars::prelude::TimeUnit::Microseconds, Some(TimeZone::UTC))
            .into_column();
        let mut frame = DataFrame::new_infer_height(vec![
            Column::new("user_id".into(), ["u1", "u2", "u3"]),
            times,
            Column::new("score".into(), [Some(0.5), None, Some(1.5)]),
        ])
        .unwrap();
        let schema = arrow_schema(frame.schema()).unwrap();
        assert_eq!(schema.field(0).data_type(), &DataType::LargeUtf8);
        assert_eq!(schema.field(1).data_type(), &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
        let batches = record_batches(&mut frame, &schema).unwrap();
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 3);
        let batch = &batches[0];
        assert_eq!(batch.column(0).as_string::<i64>().value(1), "u2");
        assert_eq!(batch.column(1).as_primitive::<TimestampMicrosecondType>().value(2), 3);
        assert!(batch.column(2).as_primitive::<Float64Type>().is_null(1));
    }
}

//! `DoGet`'s record batches written straight from their Arrow buffers into gRPC's send buffer.
//!
//! arrow-flight turns a batch into a `FlightData` message by copying every buffer into one
//! IPC body (a vector grown as it goes, so most bytes are copied twice), and tonic then copies
//! that body once more into its send buffer. Pulling a large dataset, those copies were a third
//! of the server's CPU. Here a batch of flat columns becomes a [`Frame::Batch`]: the IPC header
//! is built up front with every buffer's place in the body, and [`FrameCodec`] writes the
//! protobuf framing and the buffers, sliced where they lie, into a send buffer reserved at its
//! final size — one copy. What a client receives is byte for byte a `FlightData` message with
//! an IPC record batch, as arrow-flight would send it (without its all-valid validity bitmaps,
//! which the format lets a writer leave empty when a column has no nulls).
//!
//! Flat columns: nulls, booleans, fixed-width values (integers, floats, decimals, dates, times,
//! timestamps, durations, intervals, fixed-size binary) and strings or binaries with 32- or
//! 64-bit offsets. A schema with any other type (lists, structs, maps, dictionaries, views) is
//! encoded by arrow-flight, message by message, as before.

use std::pin::Pin;

use arrow_array::{Array, RecordBatch};
use arrow_buffer::{BooleanBuffer, Buffer};
use arrow_data::ArrayData;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::{FlightData, SchemaAsIpc, Ticket};
use arrow_ipc::writer::IpcWriteOptions;
use arrow_schema::{DataType, SchemaRef};
use bytes::BufMut;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// The largest IPC body of one message, as arrow-flight aims for: gRPC clients refuse messages
/// over 4 MiB by default.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Alignment of each buffer in a body (arrow-rs writes 64; the format asks for at least 8).
const ALIGNMENT: usize = 64;

/// `FlightData.data_header` (field 2, length-delimited).
const DATA_HEADER_TAG: u8 = 2 << 3 | 2;
/// `FlightData.data_body` (field 1000, length-delimited): the varint of 1000 << 3 | 2.
const DATA_BODY_TAG: [u8; 2] = [0xC2, 0x3E];

/// One message of a `DoGet` answer.
pub enum Frame {
    /// A message encoded by arrow-flight (the schema; every message of a schema that is not flat).
    Message(FlightData),
    /// A record batch, written by [`FrameCodec`] from its buffers.
    Batch(BatchFrame),
}

/// A record batch as an IPC message: its header, and the buffers of its body in order.
pub struct BatchFrame {
    header: Vec<u8>,
    /// Each buffer and the zero bytes after it.
    body: Vec<(Buffer, usize)>,
    body_len: usize,
}

/// The frames of a `DoGet` of `batches` with `schema`: the schema, then the batches, each cut
/// into messages of at most [`MAX_BODY_BYTES`] or so.
pub fn frames<S>(schema: SchemaRef, batches: S) -> Pin<Box<dyn Stream<Item = Result<Frame, Status>> + Send>>
where
    S: Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static,
{
    if !schema.fields().iter().all(|f| is_flat(f.data_type())) {
        let messages = FlightDataEncoderBuilder::new().with_schema(schema).build(batches);
        return messages.map_ok(Frame::Message).map_err(Status::from).boxed();
    }
    let head = FlightData::from(SchemaAsIpc::new(&schema, &IpcWriteOptions::default()));
    let body = batches
        .map_err(Status::from)
        .map_ok(|batch| futures::stream::iter(split(&batch).into_iter().map(|b| Ok(Frame::Batch(BatchFrame::new(&b))))))
        .try_flatten();
    futures::stream::once(async move { Ok(Frame::Message(head)) }).chain(body).boxed()
}

/// Whether [`BatchFrame`] writes columns of `data_type`.
fn is_flat(data_type: &DataType) -> bool {
    data_type.is_primitive()
        || matches!(
            data_type,
            DataType::Null
                | DataType::Boolean
                | DataType::FixedSizeBinary(_)
                | DataType::Utf8
                | DataType::Binary
                | DataType::LargeUtf8
                | DataType::LargeBinary
        )
}

/// `batch` in slices of at most about [`MAX_BODY_BYTES`] of buffers (as arrow-flight cuts);
/// none for no rows.
fn split(batch: &RecordBatch) -> Vec<RecordBatch> {
    if batch.num_rows() == 0 {
        return Vec::new();
    }
    let size: usize = batch.columns().iter().map(|c| c.get_buffer_memory_size()).sum();
    let pieces = size.div_ceil(MAX_BODY_BYTES).max(1);
    let rows = (batch.num_rows() / pieces).max(1);
    if pieces == 1 || batch.num_rows() <= rows {
        return vec![batch.clone()];
    }
    (0..batch.num_rows()).step_by(rows).map(|at| batch.slice(at, rows.min(batch.num_rows() - at))).collect()
}

impl BatchFrame {
    /// Lays out `batch` (of flat columns only: see [`frames`]).
    fn new(batch: &RecordBatch) -> Self {
        let mut layout = Layout::default();
        for column in batch.columns() {
            layout.array(&column.to_data());
        }
        let header = layout.header(batch.num_rows());
        Self { header, body: layout.body, body_len: layout.offset }
    }

    /// The length of the protobuf `FlightData` this frame is.
    fn encoded_len(&self) -> usize {
        1 + prost::length_delimiter_len(self.header.len())
            + self.header.len()
            + DATA_BODY_TAG.len()
            + prost::length_delimiter_len(self.body_len)
            + self.body_len
    }

    fn write(&self, dst: &mut impl BufMut) {
        dst.put_u8(DATA_HEADER_TAG);
        prost::encoding::encode_varint(self.header.len() as u64, dst);
        dst.put_slice(&self.header);
        dst.put_slice(&DATA_BODY_TAG);
        prost::encoding::encode_varint(self.body_len as u64, dst);
        for (buffer, padding) in &self.body {
            dst.put_slice(buffer.as_slice());
            dst.put_bytes(0, *padding);
        }
    }
}

/// The IPC layout of a batch being planned: field nodes, buffer places, and the body's parts.
#[derive(Default)]
struct Layout {
    nodes: Vec<arrow_ipc::FieldNode>,
    buffers: Vec<arrow_ipc::Buffer>,
    body: Vec<(Buffer, usize)>,
    offset: usize,
}

impl Layout {
    fn push(&mut self, buffer: Buffer) {
        let len = buffer.len();
        let padding = len.next_multiple_of(ALIGNMENT) - len;
        self.buffers.push(arrow_ipc::Buffer::new(self.offset as i64, len as i64));
        self.offset += len + padding;
        self.body.push((buffer, padding));
    }

    fn array(&mut self, data: &ArrayData) {
        let (offset, len) = (data.offset(), data.len());
        if data.data_type() == &DataType::Null {
            // Every value null, and no buffers.
            self.nodes.push(arrow_ipc::FieldNode::new(len as i64, len as i64));
            return;
        }
        self.nodes.push(arrow_ipc::FieldNode::new(len as i64, data.null_count() as i64));
        // Validity: empty when nothing is null.
        match data.nulls().filter(|n| n.null_count() > 0) {
            Some(nulls) => self.push(bits(nulls.inner())),
            None => self.push(Buffer::from_vec(Vec::<u8>::new())),
        }
        match data.data_type() {
            DataType::Boolean => self.push(bits(&BooleanBuffer::new(data.buffers()[0].clone(), offset, len))),
            DataType::Utf8 | DataType::Binary => self.variable::<i32>(data),
            DataType::LargeUtf8 | DataType::LargeBinary => self.variable::<i64>(data),
            other => {
                // Fixed width (checked by `is_flat`).
                let width = match other {
                    DataType::FixedSizeBinary(n) => usize::try_from(*n).unwrap_or(0),
                    _ => other.primitive_width().unwrap_or(0),
                };
                self.push(data.buffers()[0].slice_with_length(offset * width, len * width));
            }
        }
    }

    /// Offsets (rebased to start at 0 when the array is a slice) and values of a string or
    /// binary array.
    fn variable<O: arrow_array::OffsetSizeTrait>(&mut self, data: &ArrayData) {
        let len = data.len();
        // From the array's first offset (`buffer` starts at the array's offset).
        let offsets = &data.buffer::<O>(0)[..=len];
        let (first, last) = (offsets[0].as_usize(), offsets[len].as_usize());
        if first == 0 {
            let width = std::mem::size_of::<O>();
            self.push(data.buffers()[0].slice_with_length(data.offset() * width, (len + 1) * width));
        } else {
            self.push(offsets.iter().map(|&o| o - offsets[0]).collect::<Buffer>());
        }
        self.push(data.buffers()[1].slice_with_length(first, last - first));
    }

    /// The IPC `Message` flatbuffer of a record batch of `rows` rows with this layout.
    fn header(&self, rows: usize) -> Vec<u8> {
        let mut fbb = flatbuffers::FlatBufferBuilder::new();
        let buffers = fbb.create_vector(&self.buffers);
        let nodes = fbb.create_vector(&self.nodes);
        let batch = {
            let mut b = arrow_ipc::RecordBatchBuilder::new(&mut fbb);
            b.add_length(rows as i64);
            b.add_nodes(nodes);
            b.add_buffers(buffers);
            b.finish()
        };
        let mut message = arrow_ipc::MessageBuilder::new(&mut fbb);
        message.add_version(arrow_ipc::MetadataVersion::V5);
        message.add_header_type(arrow_ipc::MessageHeader::RecordBatch);
        message.add_bodyLength(self.offset as i64);
        message.add_header(batch.as_union_value());
        let root = message.finish();
        fbb.finish(root, None);
        fbb.finished_data().to_vec()
    }
}

/// The bits of `bits` in a buffer of their own starting at bit 0: the bytes where they lie
/// when they start on a byte, else a shifted copy.
fn bits(bits: &BooleanBuffer) -> Buffer {
    if bits.offset().is_multiple_of(8) {
        bits.inner().slice_with_length(bits.offset() / 8, bits.len().div_ceil(8))
    } else {
        bits.sliced()
    }
}

/// gRPC codec of `DoGet`: decodes the [`Ticket`], encodes [`Frame`]s.
#[derive(Default)]
pub struct FrameCodec;

impl Codec for FrameCodec {
    type Encode = Frame;
    type Decode = Ticket;
    type Encoder = FrameEncoder;
    type Decoder = TicketDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        FrameEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        TicketDecoder
    }
}

/// Writes a [`Frame`] into tonic's send buffer, reserved at the message's size first.
pub struct FrameEncoder;

impl Encoder for FrameEncoder {
    type Item = Frame;
    type Error = Status;

    fn encode(&mut self, item: Frame, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        match item {
            Frame::Message(data) => {
                dst.reserve(data.encoded_len());
                data.encode(dst).map_err(|e| Status::internal(format!("encoding a Flight message: {e}")))
            }
            Frame::Batch(batch) => {
                dst.reserve(batch.encoded_len());
                batch.write(dst);
                Ok(())
            }
        }
    }
}

/// Reads the `DoGet` request.
pub struct TicketDecoder;

impl Decoder for TicketDecoder {
    type Item = Ticket;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Ticket>, Status> {
        Ticket::decode(src).map(Some).map_err(|e| Status::invalid_argument(format!("ticket: not a Flight ticket: {e}")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use arrow_array::builder::{BooleanBuilder, Int64Builder, LargeStringBuilder, StringBuilder};
    use arrow_array::types::Int32Type;
    use arrow_array::{ArrayRef, Float64Array, ListArray, NullArray, TimestampMicrosecondArray};
    use arrow_flight::decode::FlightRecordBatchStream;
    use arrow_schema::{Field, Schema};

    use super::*;

    /// What a client decodes from `frames` of `batches`, after a round trip through protobuf.
    async fn received(schema: SchemaRef, batches: Vec<RecordBatch>) -> Vec<RecordBatch> {
        let stream = frames(schema, futures::stream::iter(batches.into_iter().map(Ok)));
        let messages: Vec<Frame> = stream.try_collect().await.unwrap();
        let data = messages.into_iter().map(|frame| {
            let mut bytes = bytes::BytesMut::new();
            match frame {
                Frame::Message(m) => m.encode(&mut bytes).unwrap(),
                Frame::Batch(b) => {
                    b.write(&mut bytes);
                    assert_eq!(bytes.len(), b.encoded_len());
                }
            }
            Ok(FlightData::decode(bytes.freeze()).unwrap())
        });
        FlightRecordBatchStream::new_from_flight_data(futures::stream::iter(data.collect::<Vec<_>>()))
            .try_collect()
            .await
            .unwrap()
    }

    fn flat_batch(rows: usize) -> RecordBatch {
        let mut text = StringBuilder::new();
        let mut large = LargeStringBuilder::new();
        let mut flags = BooleanBuilder::new();
        let mut counts = Int64Builder::new();
        for i in 0..rows {
            if i % 7 == 3 {
                text.append_null()
            } else {
                text.append_value(format!("event-{i}"))
            }
            large.append_value("x".repeat(i % 5));
            if i % 11 == 0 {
                flags.append_null()
            } else {
                flags.append_value(i % 3 == 0)
            }
            counts.append_value(i as i64 * 3);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(text.finish()),
            Arc::new(large.finish()),
            Arc::new(flags.finish()),
            Arc::new(counts.finish()),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values((0..rows as i64).map(|i| i * 1_000)).with_timezone("UTC"),
            ),
            Arc::new(Float64Array::from_iter((0..rows).map(|i| (i % 4 != 1).then_some(i as f64 / 2.0)))),
            Arc::new(NullArray::new(rows)),
        ];
        let schema = Schema::new(vec![
            Field::new("text", DataType::Utf8, true),
            Field::new("large", DataType::LargeUtf8, false),
            Field::new("flag", DataType::Boolean, true),
            Field::new("count", DataType::Int64, false),
            Field::new("time", DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("UTC".into())), false),
            Field::new("ratio", DataType::Float64, true),
            Field::new("nothing", DataType::Null, true),
        ]);
        RecordBatch::try_new(Arc::new(schema), columns).unwrap()
    }

    #[tokio::test]
    async fn flat_batches_and_their_slices_arrive_as_sent() {
        let batch = flat_batch(1_000);
        // Slices that start inside a byte of the bitmaps and past the first string.
        let sent = vec![batch.clone(), batch.slice(3, 500), batch.slice(501, 1), batch.slice(8, 0)];
        let got = received(batch.schema(), sent.clone()).await;
        let nonempty: Vec<RecordBatch> = sent.into_iter().filter(|b| b.num_rows() > 0).collect();
        assert_eq!(got.len(), nonempty.len());
        for (got, sent) in got.iter().zip(&nonempty) {
            assert_eq!(got, sent);
        }
    }

    #[tokio::test]
    async fn a_large_batch_is_cut_into_messages_under_the_limit_and_arrives_whole() {
        let batch = flat_batch(200_000);
        let frames: Vec<Frame> =
            frames(batch.schema(), futures::stream::iter([Ok(batch.clone())])).try_collect().await.unwrap();
        let sizes: Vec<usize> = frames
            .iter()
            .filter_map(|f| match f {
                Frame::Batch(b) => Some(b.encoded_len()),
                Frame::Message(_) => None,
            })
            .collect();
        assert!(sizes.len() > 1, "{sizes:?}");
        assert!(sizes.iter().all(|&s| s < 2 * MAX_BODY_BYTES), "{sizes:?}");
        let got = received(batch.schema(), vec![batch.clone()]).await;
        let rows: usize = got.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, batch.num_rows());
        assert_eq!(concatenated(&got), batch);
    }

    #[tokio::test]
    async fn a_schema_that_is_not_flat_is_encoded_by_arrow_flight() {
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>([Some(vec![Some(1), None]), None, Some(vec![])]);
        let schema = Arc::new(Schema::new(vec![Field::new("l", list.data_type().clone(), true)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(list)]).unwrap();
        let frames: Vec<Frame> =
            frames(schema.clone(), futures::stream::iter([Ok(batch.clone())])).try_collect().await.unwrap();
        assert!(frames.iter().all(|f| matches!(f, Frame::Message(_))));
        assert_eq!(received(schema, vec![batch.clone()]).await, vec![batch]);
    }

    /// The rows of `batches` as one batch.
    fn concatenated(batches: &[RecordBatch]) -> RecordBatch {
        let schema = batches[0].schema();
        let columns = (0..schema.fields().len())
            .map(|i| {
                let parts: Vec<&dyn Array> = batches.iter().map(|b| b.column(i).as_ref()).collect();
                concat(&parts)
            })
            .collect();
        RecordBatch::try_new(schema, columns).unwrap()
    }

    fn concat(parts: &[&dyn Array]) -> ArrayRef {
        let data: Vec<ArrayData> = parts.iter().map(|a| a.to_data()).collect();
        let refs: Vec<&ArrayData> = data.iter().collect();
        let capacity = parts.iter().map(|a| a.len()).sum();
        let mut mutable = arrow_data::transform::MutableArrayData::new(refs, false, capacity);
        for (i, part) in parts.iter().enumerate() {
            mutable.extend(i, 0, part.len());
        }
        arrow_array::make_array(mutable.freeze())
    }
}

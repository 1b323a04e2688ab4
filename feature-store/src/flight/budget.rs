//! The memory budget of one `DoGet`: record batches are counted from the moment they are read
//! until the encoder has handed them to the network and asks for the next one. A reader that
//! gets ahead of its client waits for the budget, so a result of any size streams in bounded
//! memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::RecordBatch;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// The budget of one stream.
#[derive(Clone)]
pub struct StreamBudget {
    semaphore: Arc<Semaphore>,
    limit: u32,
    held: Arc<AtomicU64>,
    metrics: Metrics,
}

/// Bytes of one batch, counted against its stream's budget until dropped.
pub struct Held {
    _permit: Option<OwnedSemaphorePermit>,
    bytes: u32,
    held: Arc<AtomicU64>,
    metrics: Metrics,
}

impl StreamBudget {
    /// A budget of `limit` bytes, reported in `metrics`.
    pub fn new(limit: u32, metrics: Metrics) -> Self {
        Self { semaphore: Arc::new(Semaphore::new(limit as usize)), limit, held: Arc::default(), metrics }
    }

    /// Waits until `batch` fits in the budget and counts it. A batch larger than the whole budget
    /// waits for all of it: such a batch is then the only one held.
    pub async fn hold(&self, batch: &RecordBatch) -> Held {
        let bytes = u32::try_from(batch_bytes(batch)).unwrap_or(u32::MAX).clamp(1, self.limit);
        // The semaphore is never closed, so acquiring cannot fail; were it closed, the batch would
        // go through uncounted rather than stall.
        let permit = self.semaphore.clone().acquire_many_owned(bytes).await.ok();
        let now = self.held.fetch_add(u64::from(bytes), Ordering::Relaxed) + u64::from(bytes);
        self.metrics.flight_buffered_bytes.inc_by(i64::from(bytes));
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        if now > self.metrics.flight_stream_buffered_bytes_max.get() {
            self.metrics.flight_stream_buffered_bytes_max.set(now);
        }
        Held { _permit: permit, bytes, held: self.held.clone(), metrics: self.metrics.clone() }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.held.fetch_sub(u64::from(self.bytes), Ordering::Relaxed);
        self.metrics.flight_buffered_bytes.dec_by(i64::from(self.bytes));
    }
}

/// The bytes of `batch`'s own slices of its buffers. Unlike `get_array_memory_size`, this does
/// not count a whole shared buffer once per column (batches decoded from Arrow IPC slice one
/// message body).
pub fn batch_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or_else(|_| c.get_array_memory_size()))
        .sum()
}

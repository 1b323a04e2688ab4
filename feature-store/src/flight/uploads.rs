//! Entity dataframes uploaded with `DoPut`, kept for a point-in-time query that refers to them.
//!
//! An upload is written as it arrives, batch by batch, to
//! `<dir>/client_id=<client>/<uuid v4>.parquet` (under a temporary name, renamed when whole), so
//! its size is bounded by `features.flight.max_upload`, not by memory. The id is random and the
//! directory is the client's: another client's id is simply not found. Uploads older than
//! `features.flight.upload_ttl` are deleted when the same client uploads or reads again.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use arrow_array::RecordBatch;
use arrow_schema::{DataType, SchemaRef};
use futures::{Stream, StreamExt};
use livora_common::ClientId;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use super::budget::batch_bytes;
use crate::error::{Error, Result};

/// What a finished upload is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The id to name in a training command's `entities`.
    pub id: String,
    /// Rows received.
    pub rows: u64,
}

/// The uploads of every client, under one directory.
#[derive(Debug, Clone)]
pub struct Uploads {
    dir: PathBuf,
    ttl: Duration,
    max_bytes: u64,
}

impl Uploads {
    /// Uploads under `dir`, kept `ttl`, each at most `max_bytes` of Arrow data.
    pub fn new(dir: PathBuf, ttl: Duration, max_bytes: u64) -> Self {
        Self { dir, ttl, max_bytes }
    }

    /// Writes the entity rows of `batches` (with `schema`) for `client`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a schema without a timestamp column or with no other
    /// column, or for no rows; [`Error::TooLarge`] past `max_bytes`; the stream's own errors;
    /// [`Error::Io`] when the file cannot be written.
    pub async fn receive(
        &self,
        client: &ClientId,
        schema: SchemaRef,
        mut batches: impl Stream<Item = Result<RecordBatch>> + Unpin,
    ) -> Result<Upload> {
        let has_time = schema.fields().iter().any(|f| matches!(f.data_type(), DataType::Timestamp(..)));
        if !has_time || schema.fields().len() < 2 {
            return Err(Error::InvalidArgument(format!(
                "entities: the rows need the join keys and a timestamp column (`event_timestamp`); got columns {}",
                schema
                    .fields()
                    .iter()
                    .map(|f| format!("`{}` {}", f.name(), f.data_type()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let dir = self.client_dir(client);
        self.expire(&dir);
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        let id = uuid::Uuid::new_v4().to_string();
        let temporary = dir.join(format!(".{id}.parquet.tmp"));
        let written = self.write(&temporary, schema, &mut batches).await;
        let rows = match written {
            Ok(rows) => rows,
            Err(e) => {
                let _ = std::fs::remove_file(&temporary);
                return Err(e);
            }
        };
        let path = dir.join(format!("{id}.parquet"));
        std::fs::rename(&temporary, &path).map_err(Error::io(format!("renaming {}", temporary.display())))?;
        Ok(Upload { id, rows })
    }

    async fn write(
        &self,
        path: &Path,
        schema: SchemaRef,
        batches: &mut (impl Stream<Item = Result<RecordBatch>> + Unpin),
    ) -> Result<u64> {
        let file = File::create(path).map_err(Error::io(format!("creating {}", path.display())))?;
        let properties = WriterProperties::builder().set_max_row_group_size(65_536).build();
        let parquet = |e: parquet::errors::ParquetError| Error::Corrupt {
            what: "the uploaded entity rows".into(),
            reason: e.to_string(),
        };
        let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(properties)).map_err(parquet)?;
        let (mut rows, mut bytes) = (0u64, 0u64);
        while let Some(batch) = batches.next().await {
            let batch = batch?;
            bytes += batch_bytes(&batch) as u64;
            if bytes > self.max_bytes {
                return Err(Error::TooLarge(format!(
                    "entities: the upload exceeds features.flight.max_upload ({} bytes)",
                    self.max_bytes
                )));
            }
            rows += batch.num_rows() as u64;
            let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
                .map_err(|e| Error::InvalidArgument(format!("entities: a batch does not match the schema: {e}")))?;
            writer = tokio::task::spawn_blocking(move || writer.write(&batch).map(|()| writer))
                .await
                .map_err(|e| Error::io("writing the uploaded entity rows")(std::io::Error::other(e)))?
                .map_err(parquet)?;
        }
        if rows == 0 {
            return Err(Error::InvalidArgument("entities: the upload has no rows".into()));
        }
        tokio::task::spawn_blocking(move || writer.close())
            .await
            .map_err(|e| Error::io("writing the uploaded entity rows")(std::io::Error::other(e)))?
            .map_err(parquet)?;
        Ok(rows)
    }

    /// The file of `client`'s upload `id`.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the client has no such upload (or it expired).
    pub fn path(&self, client: &ClientId, id: &str) -> Result<PathBuf> {
        let dir = self.client_dir(client);
        self.expire(&dir);
        let id = uuid::Uuid::parse_str(id)
            .map_err(|_| Error::InvalidArgument(format!("entities: `{id}` is not an upload id")))?;
        let path = dir.join(format!("{id}.parquet"));
        if !path.is_file() {
            return Err(Error::NotFound(format!(
                "entities: client `{client}` has no upload `{id}` (uploads are kept for {})",
                humantime::format_duration(self.ttl)
            )));
        }
        Ok(path)
    }

    fn client_dir(&self, client: &ClientId) -> PathBuf {
        self.dir.join(format!("client_id={client}"))
    }

    /// Deletes the uploads in `dir` older than the ttl (best effort).
    fn expire(&self, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|at| now.duration_since(at).is_ok_and(|age| age > self.ttl));
            if old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

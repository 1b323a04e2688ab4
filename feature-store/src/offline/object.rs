//! Feature history in an object store (S3 or any S3-compatible service), read through a local
//! cache.
//!
//! # Layout
//! The [local store's](super::store) layout under the URL's bucket and prefix:
//! ```text
//! s3://<bucket>/<prefix>/features/client_id=<client>/view=<view>/dt=YYYY-MM-DD/part-<uuid v7>.parquet
//! ```
//! so Athena, Spark, Trino or DuckDB read the same tree.
//!
//! # Appends
//! Each day's rows become one Parquet file, uploaded with one `PUT`, which S3 makes visible
//! whole or not at all: a reader never sees a partial file, and a failed append leaves nothing.
//! The file is also written to the cache, so the appending process does not download it back.
//!
//! # Scans and the cache
//! A scan lists the view's objects (one paginated `LIST` of its prefix), keeps the `dt`
//! partitions that can hold rows of the requested time range, and downloads the files it does
//! not hold yet into the cache directory (`<cache>/features/...`, the same relative paths),
//! several at a time. Part files are immutable once uploaded (a new append is a new file), so a
//! cached file is current as long as its size matches the listing; one that does not match (a
//! download cut short by a crash) is fetched again. polars then scans the cached files exactly
//! as the local store does: projections and the time filter reach the Parquet reader, and a
//! point-in-time query reads each file from local disk at local speed however often it runs.
//! The cache is never pruned by Livora; deleting it is always safe (files are fetched again).
//!
//! [`mirror`] is the same cache for any prefix: Flight SQL's `events` table over a lake in S3
//! reads the lake's files from it.
//!
//! # Runtime
//! [`OfflineStore`] is synchronous (its callers run on blocking threads); the object store
//! client is asynchronous. The store owns a small runtime on a thread of its own and waits for
//! each request there, so it can be called from any thread.

use std::future::Future;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use futures::{StreamExt, TryStreamExt};
use livora_common::ClientId;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, PutPayload};
use polars::prelude::*;

use super::store::{OfflineStore, TimeRange, check_view_name, scan_files, split_by_day};
use crate::error::{Error, Result};

/// Downloads in flight at once during a scan.
const CONCURRENT_DOWNLOADS: usize = 8;

/// Feature history in an object store, read through a local cache.
pub struct ObjectOfflineStore {
    store: Arc<dyn ObjectStore>,
    /// The URL of the root (`s3://bucket/prefix`), for messages and the paths `append` returns.
    url: String,
    cache: PathBuf,
    runtime: tokio::runtime::Handle,
    /// Dropped with the store: the runtime's thread then ends.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl std::fmt::Debug for ObjectOfflineStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectOfflineStore").field("url", &self.url).field("cache", &self.cache).finish()
    }
}

impl ObjectOfflineStore {
    /// The store over `store`, whose root is `url` (`s3://bucket/prefix`, for messages), caching
    /// files under `cache` (created on the first download).
    ///
    /// # Errors
    /// [`Error::Io`] when the runtime's thread cannot be started.
    pub fn new(store: Arc<dyn ObjectStore>, url: impl Into<String>, cache: impl Into<PathBuf>) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::io("starting the offline store's runtime"))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("livora-offline-s3".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let _ = stopped.await;
                });
            })
            .map_err(Error::io("starting the offline store's thread"))?;
        let url: String = url.into();
        let url = url.trim_end_matches('/').to_owned();
        Ok(Self { store, url, cache: cache.into(), runtime: handle, _stop: stop })
    }

    /// Runs `future` on the store's runtime and waits for it.
    fn block<T: Send + 'static>(&self, future: impl Future<Output = T> + Send + 'static) -> Result<T> {
        let (done, result) = std::sync::mpsc::channel();
        self.runtime.spawn(async move {
            let _ = done.send(future.await);
        });
        result.recv().map_err(|_| Error::Io {
            context: format!("offline store {}", self.url),
            source: std::io::Error::other("the object store's runtime has stopped"),
        })
    }

    /// The object key prefix of one client's history of one view.
    fn view_prefix(client: &ClientId, view: &str) -> Result<String> {
        check_view_name(view)?;
        Ok(format!("features/client_id={client}/view={view}"))
    }

    fn failed(&self, what: String) -> impl FnOnce(object_store::Error) -> Error {
        let url = self.url.clone();
        move |e| Error::Io { context: format!("{what} in {url}"), source: std::io::Error::other(e) }
    }
}

/// The local copies of the Parquet objects under `prefix` of `store`, in key order: each is
/// downloaded into `cache` (under its own key) unless the cache holds it whole already, several
/// at a time. Only the files listed now are returned, so a cached file whose object is gone is
/// never read.
///
/// # Errors
/// [`Error::Io`] naming the object when listing, downloading or writing the cache fails.
pub async fn mirror(store: Arc<dyn ObjectStore>, prefix: &str, cache: &FsPath) -> Result<Vec<PathBuf>> {
    let listing = Path::from(prefix);
    let mut objects: Vec<ObjectMeta> = store
        .list(Some(&listing))
        .try_filter(|o| {
            let parquet = o.location.filename().is_some_and(|n| n.ends_with(".parquet") && !n.starts_with('.'));
            futures::future::ready(parquet)
        })
        .try_collect()
        .await
        .map_err(|e| Error::Io { context: format!("listing {prefix}"), source: std::io::Error::other(e) })?;
    objects.sort_by(|a, b| a.location.cmp(&b.location));
    fetch_all(store, cache.to_owned(), objects, String::new()).await
}

/// The cached copies of `objects`, in their order, fetched [`CONCURRENT_DOWNLOADS`] at a time;
/// an error names the object as `<base><key>`.
async fn fetch_all(
    store: Arc<dyn ObjectStore>,
    cache: PathBuf,
    objects: Vec<ObjectMeta>,
    base: String,
) -> Result<Vec<PathBuf>> {
    futures::stream::iter(objects)
        .map(|meta| fetch(store.clone(), cache.clone(), meta))
        .buffered(CONCURRENT_DOWNLOADS)
        .try_collect()
        .await
        .map_err(|(key, e)| match e {
            Error::Io { context, source } => Error::Io { context: format!("{context} {base}{key}"), source },
            other => other,
        })
}

/// The cached copy of `meta` under `cache`, downloaded unless the cache holds it whole already;
/// on error, the object's key and what failed.
async fn fetch(store: Arc<dyn ObjectStore>, cache: PathBuf, meta: ObjectMeta) -> Result<PathBuf, (String, Error)> {
    let local = cache.join(meta.location.as_ref());
    let fail = |what: &str, e: std::io::Error| {
        (meta.location.to_string(), Error::Io { context: format!("{what} {}", local.display()), source: e })
    };
    if tokio::fs::metadata(&local).await.is_ok_and(|m| m.len() == meta.size) {
        return Ok(local);
    }
    let bytes = match store.get(&meta.location).await {
        Ok(got) => got.bytes().await,
        Err(e) => Err(e),
    }
    .map_err(|e| {
        (meta.location.to_string(), Error::Io { context: "downloading".into(), source: std::io::Error::other(e) })
    })?;
    let dir = local.parent().unwrap_or(FsPath::new("."));
    tokio::fs::create_dir_all(dir).await.map_err(|e| fail("creating the cache directory of", e))?;
    let temporary = dir.join(format!(".{}.tmp", uuid::Uuid::now_v7()));
    tokio::fs::write(&temporary, &bytes).await.map_err(|e| fail("writing", e))?;
    tokio::fs::rename(&temporary, &local).await.map_err(|e| fail("renaming a download to", e))?;
    Ok(local)
}

impl OfflineStore for ObjectOfflineStore {
    fn backend(&self) -> &'static str {
        "s3"
    }

    fn append(&self, client: &ClientId, view: &str, rows: DataFrame) -> Result<Vec<PathBuf>> {
        let prefix = Self::view_prefix(client, view)?;
        let mut written = Vec::new();
        for (date, mut part) in split_by_day(view, rows)? {
            let key = format!("{prefix}/dt={date}/part-{}.parquet", uuid::Uuid::now_v7());
            let mut bytes = Vec::new();
            ParquetWriter::new(&mut bytes)
                .with_compression(ParquetCompression::Zstd(None))
                .finish(&mut part)
                .map_err(Error::offline(format!("encoding rows of view `{view}`")))?;
            let bytes = bytes::Bytes::from(bytes);
            let store = self.store.clone();
            let (location, payload) = (Path::from(key.as_str()), PutPayload::from(bytes.clone()));
            self.block(async move { store.put(&location, payload).await })?
                .map_err(self.failed(format!("uploading {key}")))?;
            // Best effort: a missing cache entry is downloaded by the next scan.
            let local = self.cache.join(&key);
            if let Some(dir) = local.parent()
                && std::fs::create_dir_all(dir).is_ok()
            {
                let temporary = dir.join(format!(".{}.tmp", uuid::Uuid::now_v7()));
                if std::fs::write(&temporary, &bytes).and_then(|()| std::fs::rename(&temporary, &local)).is_err() {
                    let _ = std::fs::remove_file(&temporary);
                }
            }
            written.push(PathBuf::from(format!("{}/{key}", self.url)));
        }
        Ok(written)
    }

    fn scan(&self, client: &ClientId, view: &str, range: TimeRange) -> Result<LazyFrame> {
        let prefix = Self::view_prefix(client, view)?;
        let store = self.store.clone();
        let listing = Path::from(prefix.as_str());
        let mut objects: Vec<ObjectMeta> = self
            .block(async move { store.list(Some(&listing)).try_collect::<Vec<_>>().await })?
            .map_err(self.failed(format!("listing {prefix}")))?;
        // Keys sort by day, then by upload (UUID v7): the local store's order.
        objects.retain(|o| {
            o.location.filename().is_some_and(|n| n.starts_with("part-") && n.ends_with(".parquet"))
                && partition_date(&o.location).is_some()
        });
        objects.sort_by(|a, b| a.location.cmp(&b.location));
        let Some(first) = objects.first().cloned() else {
            return Err(Error::NotFound(format!("client `{client}` has no offline history for feature view `{view}`")));
        };
        let mut wanted: Vec<ObjectMeta> = objects
            .into_iter()
            .filter(|o| partition_date(&o.location).is_some_and(|d| range.overlaps_day(d)))
            .collect();
        // With no file in range, scan one file to keep the schema; the filter empties it.
        if wanted.is_empty() {
            wanted.push(first);
        }
        let files =
            self.block(fetch_all(self.store.clone(), self.cache.clone(), wanted, format!("{}/", self.url)))??;
        scan_files(&files, range, client, view)
    }
}

/// The date of the `dt=YYYY-MM-DD` partition holding `location`.
fn partition_date(location: &Path) -> Option<NaiveDate> {
    location
        .parts()
        .find_map(|part| part.as_ref().strip_prefix("dt=").and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()))
}

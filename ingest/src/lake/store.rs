//! Opening the offline root as an object store: a local directory or S3.
//!
//! An S3 put is durable when it returns. `object_store`'s local store renames a staging file
//! into place without syncing it, so after a power cut a lake file can exist but be empty or
//! cut short, while the log position it covered was committed: its events would be lost. A
//! local root is therefore a [`DurableLocal`], whose puts are synced before they appear.

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMode, PutMultipartOptions,
    PutOptions, PutPayload, PutResult,
};

use super::config::LakeConfig;

/// Why the offline root could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the offline root `{root}`: {message}")]
pub struct OpenError {
    root: String,
    message: String,
}

/// Opens `root` (a path, `file://` or `s3://bucket/prefix` URL). Local directories are created.
pub fn open(root: &str, config: &LakeConfig) -> Result<Arc<dyn ObjectStore>, OpenError> {
    let fail = |message: String| OpenError { root: root.to_owned(), message };
    if let Some(rest) = root.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(fail("the URL names no bucket".into()));
        }
        let region = config
            .s3
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".into());
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(region)
            .with_allow_http(config.s3.allow_http);
        if let (Some(id), Some(secret)) = (&config.s3.access_key_id, &config.s3.secret_access_key) {
            builder = builder.with_access_key_id(id).with_secret_access_key(secret);
        }
        if let Some(endpoint) = &config.s3.endpoint {
            builder = builder.with_endpoint(endpoint).with_virtual_hosted_style_request(false);
        }
        let s3 = builder.build().map_err(|e| fail(e.to_string()))?;
        let prefix = prefix.trim_matches('/');
        return Ok(if prefix.is_empty() { Arc::new(s3) } else { Arc::new(PrefixStore::new(s3, prefix)) });
    }
    let path = root.strip_prefix("file://").unwrap_or(root);
    std::fs::create_dir_all(path).map_err(|e| fail(e.to_string()))?;
    let local = LocalFileSystem::new_with_prefix(Path::new(path)).map_err(|e| fail(e.to_string()))?;
    Ok(Arc::new(DurableLocal { inner: local }))
}

/// How much of a file is written between two syncs. The event log's group commits share the
/// file system's journal with the lake's files: syncing a large file in one go holds the
/// journal while all of it goes to disk, and every log commit waits behind it. Synced a slice
/// at a time, the wait is one slice's.
const SYNC_SLICE: usize = 1 << 20;

/// A local directory as an object store whose puts are durable before they are visible: the
/// object is written beside its final name (`<name>#<random digits>`: a staging name, which
/// listings skip), synced a
/// [slice](SYNC_SLICE) at a time, renamed (or, for [`PutMode::Create`], hard-linked) into place,
/// and the directory synced. Everything else is `object_store`'s [`LocalFileSystem`].
#[derive(Debug)]
pub struct DurableLocal {
    inner: LocalFileSystem,
}

impl fmt::Display for DurableLocal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Durable({})", self.inner)
    }
}

impl DurableLocal {
    fn put_synced(path: &Path, payload: &PutPayload, mode: &PutMode) -> object_store::Result<()> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source: std::io::Error| object_store::Error::Generic {
                store: "DurableLocal",
                source: format!("{}: {source}", path.display()).into(),
            }
        };
        let dir = path.parent().ok_or_else(|| io(path)(std::io::Error::other("no parent directory")))?;
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        // A staging name of its own (concurrent puts to one path must not share one); digits
        // after `#`, which listings skip.
        let mut staging = path.as_os_str().to_owned();
        staging.push(format!("#{}", uuid::Uuid::new_v4().as_u128()));
        let staging = PathBuf::from(staging);
        let written = (|| {
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&staging)?;
            let mut unsynced = 0;
            for chunk in payload.iter() {
                for slice in chunk.chunks(SYNC_SLICE) {
                    file.write_all(slice)?;
                    unsynced += slice.len();
                    if unsynced >= SYNC_SLICE {
                        file.sync_data()?;
                        unsynced = 0;
                    }
                }
            }
            file.sync_all()?;
            match mode {
                PutMode::Create => {
                    std::fs::hard_link(&staging, path)?;
                    std::fs::remove_file(&staging)
                }
                _ => std::fs::rename(&staging, path),
            }
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&staging);
            return Err(if e.kind() == std::io::ErrorKind::AlreadyExists {
                object_store::Error::AlreadyExists { path: path.display().to_string(), source: e.into() }
            } else {
                io(path)(e)
            });
        }
        File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
    }
}

#[async_trait]
impl ObjectStore for DurableLocal {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if matches!(opts.mode, PutMode::Update(_)) || !opts.attributes.is_empty() {
            // Not supported by the local store either: its error says so.
            return self.inner.put_opts(location, payload, opts).await;
        }
        let path = self.inner.path_to_filesystem(location)?;
        let mode = opts.mode;
        tokio::task::spawn_blocking(move || Self::put_synced(&path, &payload, &mode))
            .await
            .map_err(|e| object_store::Error::Generic { store: "DurableLocal", source: e.into() })??;
        let meta = self.inner.head(location).await?;
        Ok(PutResult { e_tag: meta.e_tag, version: meta.version })
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &ObjectPath, options: GetOptions) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_range(&self, location: &ObjectPath, range: Range<u64>) -> object_store::Result<Bytes> {
        self.inner.get_range(location, range).await
    }

    async fn get_ranges(&self, location: &ObjectPath, ranges: &[Range<u64>]) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    async fn head(&self, location: &ObjectPath) -> object_store::Result<ObjectMeta> {
        self.inner.head(location).await
    }

    async fn delete(&self, location: &ObjectPath) -> object_store::Result<()> {
        self.inner.delete(location).await
    }

    fn list(&self, prefix: Option<&ObjectPath>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&ObjectPath>,
        offset: &ObjectPath,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&ObjectPath>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy(&self, from: &ObjectPath, to: &ObjectPath) -> object_store::Result<()> {
        self.inner.copy(from, to).await
    }

    async fn rename(&self, from: &ObjectPath, to: &ObjectPath) -> object_store::Result<()> {
        self.inner.rename(from, to).await
    }

    async fn copy_if_not_exists(&self, from: &ObjectPath, to: &ObjectPath) -> object_store::Result<()> {
        self.inner.copy_if_not_exists(from, to).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use futures::TryStreamExt;
    use object_store::PutMode;

    use super::*;

    fn payload(bytes: &[u8]) -> PutPayload {
        // Several chunks, one larger than a sync slice.
        let big = vec![7u8; SYNC_SLICE + 3];
        PutPayload::from_iter([Bytes::copy_from_slice(bytes), Bytes::from(big)])
    }

    #[tokio::test]
    async fn a_local_put_lands_whole_and_a_crashed_staging_file_is_never_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path().to_str().unwrap(), &LakeConfig::default()).unwrap();
        let location = ObjectPath::from("raw/events/client_id=c/part-1.parquet");
        // What a crash in the middle of a put leaves behind.
        let staging = dir.path().join("raw/events/client_id=c/part-1.parquet#0");
        std::fs::create_dir_all(staging.parent().unwrap()).unwrap();
        std::fs::write(&staging, b"half").unwrap();
        let listed: Vec<ObjectMeta> = store.list(None).try_collect().await.unwrap();
        assert!(listed.is_empty(), "{listed:?}");

        store.put(&location, payload(b"head")).await.unwrap();
        let got = store.get(&location).await.unwrap().bytes().await.unwrap();
        assert_eq!(got.len(), 4 + SYNC_SLICE + 3);
        assert_eq!(&got[..4], b"head");
        assert!(got[4..].iter().all(|&b| b == 7));
        // The put's own staging file became the object; the crashed one is still not listed.
        let names: Vec<String> = std::fs::read_dir(staging.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        let listed: Vec<ObjectMeta> = store.list(None).try_collect().await.unwrap();
        assert_eq!(listed.iter().map(|m| m.location.clone()).collect::<Vec<_>>(), vec![location.clone()]);
    }

    #[tokio::test]
    async fn a_create_put_refuses_an_existing_object_and_leaves_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path().to_str().unwrap(), &LakeConfig::default()).unwrap();
        let location = ObjectPath::from("quarantine/client_id=c/part-1.parquet");
        let create = || PutOptions { mode: PutMode::Create, ..Default::default() };
        store.put_opts(&location, payload(b"one"), create()).await.unwrap();
        let err = store.put_opts(&location, PutPayload::from_static(b"two"), create()).await.unwrap_err();
        assert!(matches!(err, object_store::Error::AlreadyExists { .. }), "{err}");
        let got = store.get(&location).await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..3], b"one");
        // Overwrite replaces it.
        store.put(&location, PutPayload::from_static(b"two")).await.unwrap();
        assert_eq!(store.get(&location).await.unwrap().bytes().await.unwrap().as_ref(), b"two");
    }
}

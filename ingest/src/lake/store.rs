//! Opening the offline root as an object store: a local directory or S3.

use std::path::Path;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;

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
    Ok(Arc::new(local))
}

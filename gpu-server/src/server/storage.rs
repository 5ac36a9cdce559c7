//! Object storage through `object_store`: a local folder by default, GCS, S3 (and R2 with an
//! endpoint) or memory. Every call is bounded by a timeout, so an unreachable bucket answers
//! an error instead of hanging a request.

use std::{fmt, path::Path, sync::Arc, time::Duration};

use bytes::Bytes;
use object_store::{
    ClientConfigKey, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    aws::{AmazonS3Builder, AmazonS3ConfigKey},
    gcp::{GoogleCloudStorageBuilder, GoogleConfigKey},
    local::LocalFileSystem,
    memory::InMemory,
    path::Path as Key,
};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage {store} did not answer within {0:?}", .timeout)]
    Timeout { store: String, timeout: Duration },
    #[error("storage {store}: {source}")]
    Failed {
        store: String,
        #[source]
        source: object_store::Error,
    },
}

/// A bucket (or folder) with a timeout on every call.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    timeout: Duration,
    label: String,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

impl Store {
    /// Open a location: `memory://`, `file:///abs`, `gs://bucket[/prefix]`, `s3://bucket[/prefix]`,
    /// a path (absolute, or relative to the working directory), or a bare GCS bucket name
    /// (the original service's convention: a name without `/` or `.`).
    pub fn open(location: &str, timeout: Duration) -> anyhow::Result<Store> {
        let retry = RetryConfig {
            max_retries: 2,
            retry_timeout: timeout,
            ..RetryConfig::default()
        };
        // Set on the client options `from_env` read, key by key: replacing them
        // (`with_client_options`) would drop what the environment said (`AWS_ALLOW_HTTP` for an
        // S3 API on http, proxies, certificates).
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        let client = [
            (ClientConfigKey::Timeout, ms(timeout)),
            (
                ClientConfigKey::ConnectTimeout,
                ms(timeout.min(Duration::from_secs(5))),
            ),
        ];
        let gcs = |url: &str| {
            client.iter().fold(
                GoogleCloudStorageBuilder::from_env()
                    .with_url(url)
                    .with_retry(retry.clone()),
                |b, (k, v)| b.with_config(GoogleConfigKey::Client(*k), v),
            )
        };
        let loc = location.trim();
        let (inner, label): (Arc<dyn ObjectStore>, String) = if loc == "memory://"
            || loc == "memory"
        {
            (Arc::new(InMemory::new()), "memory://".into())
        } else if loc.starts_with("gs://") {
            let store = gcs(loc).build()?;
            (Arc::new(store), loc.into())
        } else if loc.starts_with("s3://") {
            let store = client
                .iter()
                .fold(
                    AmazonS3Builder::from_env()
                        .with_url(loc)
                        .with_retry(retry.clone()),
                    |b, (k, v)| b.with_config(AmazonS3ConfigKey::Client(*k), v),
                )
                .build()?;
            (Arc::new(store), loc.into())
        } else if let Some(path) = loc.strip_prefix("file://") {
            local(Path::new(path))?
        } else if !loc.is_empty() && !loc.contains(['/', '.', '\\']) {
            let url = format!("gs://{loc}");
            let store = gcs(&url).build()?;
            (Arc::new(store), url)
        } else if loc.contains("://") {
            anyhow::bail!(
                "unsupported storage location {loc:?}: use a folder, file://, gs://, s3:// or memory://"
            );
        } else {
            local(Path::new(loc))?
        };
        // A URL with a path (gs://bucket/prefix) keeps objects under that prefix.
        let inner = match prefix_of(loc) {
            Some(prefix) => Arc::new(object_store::prefix::PrefixStore::new(inner, prefix))
                as Arc<dyn ObjectStore>,
            None => inner,
        };
        Ok(Store {
            inner,
            timeout,
            label,
        })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    async fn bounded<T>(
        &self,
        fut: impl Future<Output = object_store::Result<T>>,
    ) -> Result<T, StorageError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(StorageError::Failed {
                store: self.label.clone(),
                source,
            }),
            Err(_) => Err(StorageError::Timeout {
                store: self.label.clone(),
                timeout: self.timeout,
            }),
        }
    }

    /// The object's bytes, or `None` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        let key = Key::from(key);
        let read = async {
            match self.inner.get(&key).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        };
        self.bounded(read).await
    }

    /// Whether the object exists.
    pub async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        let key = Key::from(key);
        let head = async {
            match self.inner.head(&key).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        };
        self.bounded(head).await
    }

    /// Write an object whole (each backend makes the write atomic: a temp file and a rename
    /// locally, a single upload in the buckets).
    pub async fn put(&self, key: &str, bytes: impl Into<Bytes>) -> Result<(), StorageError> {
        let key = Key::from(key);
        let payload = PutPayload::from(bytes.into());
        self.bounded(async { self.inner.put(&key, payload).await.map(|_| ()) })
            .await
    }

    /// Reachability check for `/ready`: a HEAD of a key that need not exist.
    pub async fn probe(&self) -> Result<(), StorageError> {
        self.exists(".ready-probe").await.map(|_| ())
    }
}

fn local(path: &Path) -> anyhow::Result<(Arc<dyn ObjectStore>, String)> {
    std::fs::create_dir_all(path)
        .map_err(|e| anyhow::anyhow!("cannot create storage folder {}: {e}", path.display()))?;
    let store = LocalFileSystem::new_with_prefix(path)?;
    let label = std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_owned())
        .display()
        .to_string();
    Ok((Arc::new(store), label))
}

fn prefix_of(loc: &str) -> Option<String> {
    let rest = loc
        .strip_prefix("gs://")
        .or_else(|| loc.strip_prefix("s3://"))?;
    let (_, prefix) = rest.split_once('/')?;
    let prefix = prefix.trim_matches('/');
    (!prefix.is_empty()).then(|| prefix.to_owned())
}

/// The share flow's view of a store (`shared::publish`), over the same bounded calls.
impl shared::publish::Store for Store {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        match Store::get(self, key).await {
            Ok(bytes) => Ok(bytes.map(Vec::from)),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn put(&self, object: shared::publish::Object) -> Result<(), String> {
        Store::put(self, &object.key, object.bytes)
            .await
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An S3 API on plain http (a local emulator, MinIO): `AWS_ALLOW_HTTP=true` from the
    /// environment must survive the timeouts set here, so the store really calls the endpoint.
    #[tokio::test]
    async fn s3_on_http_reaches_its_endpoint() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Ok((stream, _)) = listener.accept() {
                let _ = tx.send(());
                drop(stream);
            }
        });
        // SAFETY: no other test in this binary reads or writes these variables.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "test");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
            std::env::set_var("AWS_DEFAULT_REGION", "us-east-1");
            std::env::set_var("AWS_ENDPOINT", format!("http://127.0.0.1:{port}"));
            std::env::set_var("AWS_ALLOW_HTTP", "true");
        }
        let store = Store::open("s3://bucket", Duration::from_secs(2)).unwrap();
        let _ = store.probe().await;
        assert!(
            rx.recv_timeout(Duration::from_secs(5)).is_ok(),
            "the S3 client never connected to its http endpoint"
        );
    }

    #[tokio::test]
    async fn memory_and_folder_round_trip() {
        let dir = std::env::temp_dir().join(format!("store-test-{}", std::process::id()));
        for loc in ["memory://".to_owned(), dir.display().to_string()] {
            let s = Store::open(&loc, Duration::from_secs(5)).unwrap();
            assert_eq!(s.get("a/b").await.unwrap(), None);
            assert!(!s.exists("a/b").await.unwrap());
            s.put("a/b", Bytes::from_static(b"hi")).await.unwrap();
            assert_eq!(s.get("a/b").await.unwrap().as_deref(), Some(&b"hi"[..]));
            assert!(s.exists("a/b").await.unwrap());
            s.probe().await.unwrap();
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn parses_locations() {
        assert_eq!(prefix_of("gs://b/p/q/"), Some("p/q".into()));
        assert_eq!(prefix_of("gs://b"), None);
        assert!(Store::open("ftp://x", Duration::from_secs(1)).is_err());
    }
}

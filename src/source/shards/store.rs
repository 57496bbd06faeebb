//! Where shard bytes live: local files (read with `pread`) or an object store (S3, GCS, Azure,
//! HTTP(S)) through the `object_store` crate on a shared tokio runtime. Reads are range reads;
//! failed ones are retried with exponential backoff, then reported naming the object and the
//! byte range.

use crate::error::{Error, Result};
use object_store::{ObjectStore, ObjectStoreExt};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// How remote reads behave. The defaults keep two cores busy against a store ~10 ms away.
#[derive(Debug, Clone)]
pub struct IoConfig {
    /// Bytes read ahead of the consumer and not yet consumed (the prefetch window): what
    /// bounds memory, whatever the dataset size.
    pub window_bytes: u64,
    /// The largest single range request (neighbouring samples are coalesced up to this).
    pub max_request_bytes: u64,
    /// Neighbouring samples this close together are fetched by one request.
    pub coalesce_gap_bytes: u64,
    /// Range requests in flight at once.
    pub concurrency: usize,
    /// Attempts after the first, for 5xx answers, timeouts and dropped connections.
    pub retries: u32,
    /// First retry delay; doubled on each further attempt.
    pub backoff: Duration,
    /// One request's time limit.
    pub timeout: Duration,
}

impl Default for IoConfig {
    fn default() -> Self {
        IoConfig {
            window_bytes: 256 << 20,
            max_request_bytes: 16 << 20,
            coalesce_gap_bytes: 64 << 10,
            concurrency: 16,
            retries: 6,
            backoff: Duration::from_millis(50),
            timeout: Duration::from_secs(30),
        }
    }
}

impl IoConfig {
    /// The defaults with the given settings changed (timeout in seconds), validated.
    pub fn with(
        window_bytes: Option<u64>,
        concurrency: Option<usize>,
        retries: Option<u32>,
        timeout_seconds: Option<f64>,
    ) -> Result<IoConfig> {
        let mut config = IoConfig::default();
        config.window_bytes = window_bytes.unwrap_or(config.window_bytes);
        config.concurrency = concurrency.unwrap_or(config.concurrency);
        config.retries = retries.unwrap_or(config.retries);
        if let Some(seconds) = timeout_seconds {
            config.timeout = Duration::try_from_secs_f64(seconds).map_err(|_| {
                Error::InvalidPipeline(format!("I/O timeout {seconds}: seconds, > 0"))
            })?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Refuse settings that cannot work (a zero window, no requests, a zero or endless timeout).
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, why: &str| Err(Error::InvalidPipeline(format!("I/O {what}: {why}")));
        if self.window_bytes == 0 {
            return bad("window", "must be at least one byte");
        }
        if self.max_request_bytes == 0 {
            return bad("max request", "must be at least one byte");
        }
        if self.concurrency == 0 {
            return bad(
                "concurrency",
                "at least one request must be allowed in flight",
            );
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(24 * 3600) {
            return bad("timeout", "between a millisecond and a day");
        }
        if self.backoff > Duration::from_secs(3600) {
            return bad("backoff", "at most an hour");
        }
        Ok(())
    }
}

/// `64MiB`, `500KiB`, `1GB`, `4096` → bytes (a positive number with an optional unit).
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => 0,
    };
    match number.parse::<u64>() {
        Ok(n) if scale > 0 && n > 0 => Ok(n.saturating_mul(scale)),
        _ => Err(Error::InvalidPipeline(format!(
            "size `{text}`: a positive number with an optional unit (KiB, MiB, GiB, KB, MB, GB)"
        ))),
    }
}

/// The runtime every remote read runs on (two worker threads: reads are I/O-bound).
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sluice-io")
            .enable_all()
            .build()
            .expect("cannot start the I/O runtime")
    })
}

/// One object (a shard or a manifest): a local file or a path in an object store.
#[derive(Clone)]
pub enum Object {
    Local(PathBuf),
    Remote {
        store: Arc<dyn ObjectStore>,
        path: object_store::path::Path,
        url: String,
        config: Arc<IoConfig>,
        /// The version tag reads must match (from a manifest): a changed object is refused
        /// by the store instead of read.
        etag: Option<String>,
    },
}

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url())
    }
}

/// What a store reports about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    /// The store's version tag (S3/GCS/Azure ETag), or size and modification time of a local
    /// file: a manifest made from other bytes is refused.
    pub etag: String,
}

/// Whether `location` names a remote object (a URL with a scheme object_store serves).
pub fn is_url(location: &str) -> bool {
    [
        "s3://", "s3a://", "gs://", "az://", "abfs://", "abfss://", "azure://", "http://",
        "https://",
    ]
    .iter()
    .any(|s| location.starts_with(s))
        || location.starts_with("file://")
}

impl Object {
    /// The object at `location`: a local path, a `file://` URL, or an `s3://`, `gs://`,
    /// `az://`, `http(s)://` URL (credentials and endpoint from the standard environment
    /// variables: `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION`, `AWS_ALLOW_HTTP`; `GOOGLE_*`; `AZURE_*`).
    pub fn open(location: &str, config: &Arc<IoConfig>) -> Result<Object> {
        if let Some(path) = location.strip_prefix("file://") {
            return Ok(Object::Local(PathBuf::from(path)));
        }
        if !is_url(location) {
            return Ok(Object::Local(PathBuf::from(location)));
        }
        let url = url::Url::parse(location)
            .map_err(|e| Error::Source(format!("{location}: not a valid URL: {e}")))?;
        let store = stores().get(&url, config)?;
        let path = object_store::path::Path::from_url_path(url.path())
            .map_err(|e| Error::Source(format!("{location}: {e}")))?;
        Ok(Object::Remote {
            store,
            path,
            url: location.to_string(),
            config: config.clone(),
            etag: None,
        })
    }

    /// The same object, its reads refused when its version tag is no longer `etag`.
    pub fn expecting(mut self, expected: &str) -> Self {
        if let Object::Remote { etag, .. } = &mut self {
            *etag = Some(expected.to_string()).filter(|e| !e.is_empty());
        }
        self
    }

    /// The object's name for messages: its path or URL.
    pub fn url(&self) -> String {
        match self {
            Object::Local(p) => p.display().to_string(),
            Object::Remote { url, .. } => url.clone(),
        }
    }

    /// Size and version tag.
    pub fn info(&self) -> Result<ObjectInfo> {
        match self {
            Object::Local(p) => {
                let meta = std::fs::metadata(p).map_err(|e| Error::io(self.url(), e))?;
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                Ok(ObjectInfo {
                    size: meta.len(),
                    etag: format!("{:x}-{modified:x}", meta.len()),
                })
            }
            Object::Remote { store, path, .. } => {
                let meta = self.retrying("HEAD", None, || {
                    let (store, path) = (store.clone(), path.clone());
                    async move { store.head(&path).await }
                })?;
                Ok(ObjectInfo {
                    size: meta.size,
                    etag: meta.e_tag.unwrap_or_default(),
                })
            }
        }
    }

    /// Bytes `range` of the object.
    pub fn read_range(&self, range: Range<u64>) -> Result<Vec<u8>> {
        match self {
            Object::Local(p) => {
                use std::os::unix::fs::FileExt;
                let file = std::fs::File::open(p).map_err(|e| Error::io(self.url(), e))?;
                let mut buf = vec![0; (range.end - range.start) as usize];
                file.read_exact_at(&mut buf, range.start)
                    .map_err(|e| Error::io(format!("{} bytes {range:?}", self.url()), e))?;
                Ok(buf)
            }
            Object::Remote { .. } => runtime().block_on(self.read_range_async(range)),
        }
    }

    /// Bytes `range` of a remote object, retried (the future the prefetcher runs).
    pub(crate) async fn read_range_async(&self, range: Range<u64>) -> Result<Vec<u8>> {
        let Object::Remote {
            store, path, etag, ..
        } = self
        else {
            return self.read_range(range);
        };
        let want = range.end - range.start;
        self.retrying_async("GET", Some(range.clone()), || {
            let (store, path) = (store.clone(), path.clone());
            let options = object_store::GetOptions {
                range: Some(object_store::GetRange::Bounded(range.clone())),
                if_match: etag.clone(),
                ..Default::default()
            };
            async move {
                let bytes = store.get_opts(&path, options).await?.bytes().await?;
                if bytes.len() as u64 != want {
                    // A body cut short: retried like a dropped connection.
                    return Err(object_store::Error::Generic {
                        store: "range read",
                        source: format!("{} of {want} bytes arrived", bytes.len()).into(),
                    });
                }
                Ok(bytes.to_vec())
            }
        })
        .await
    }

    /// The whole object.
    pub fn read_all(&self) -> Result<Vec<u8>> {
        match self {
            Object::Local(p) => std::fs::read(p).map_err(|e| Error::io(self.url(), e)),
            Object::Remote { .. } => {
                let size = self.info()?.size;
                self.read_range(0..size)
            }
        }
    }

    /// Replace the object's contents with `bytes` (manifests).
    pub fn write_all(&self, bytes: Vec<u8>) -> Result<()> {
        match self {
            Object::Local(p) => std::fs::write(p, bytes).map_err(|e| Error::io(self.url(), e)),
            Object::Remote { store, path, .. } => {
                let payload = object_store::PutPayload::from(bytes);
                self.retrying("PUT", None, || {
                    let (store, path, payload) = (store.clone(), path.clone(), payload.clone());
                    async move { store.put(&path, payload).await.map(|_| ()) }
                })
            }
        }
    }

    fn retrying<T, F, Fut>(&self, what: &str, range: Option<Range<u64>>, attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = object_store::Result<T>>,
    {
        runtime().block_on(self.retrying_async(what, range, attempt))
    }

    /// `attempt` until it succeeds, a permanent error (not found, denied) comes, or the retries
    /// run out; the error names the object and the range.
    async fn retrying_async<T, F, Fut>(
        &self,
        what: &str,
        range: Option<Range<u64>>,
        mut attempt: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = object_store::Result<T>>,
    {
        let Object::Remote { config, .. } = self else {
            unreachable!("local objects are read directly")
        };
        let mut delay = config.backoff;
        let mut tries = 0;
        loop {
            let error = match tokio::time::timeout(config.timeout, attempt()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) => e,
                Err(_) => object_store::Error::Generic {
                    store: "request",
                    source: format!("no answer within {:?}", config.timeout).into(),
                },
            };
            let permanent = matches!(
                error,
                object_store::Error::NotFound { .. }
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
                    | object_store::Error::NotSupported { .. }
                    | object_store::Error::Precondition { .. }
            );
            if permanent || tries >= config.retries {
                let place = match range {
                    Some(r) => format!(" bytes {}..{}", r.start, r.end),
                    None => String::new(),
                };
                let after = if tries > 0 {
                    format!(" (after {} attempts)", tries + 1)
                } else {
                    String::new()
                };
                return Err(Error::Source(format!(
                    "{what} {}{place} failed{after}: {error}",
                    self.url()
                )));
            }
            tries += 1;
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

/// One client per (scheme, host, port, config), shared by every object it serves.
#[derive(Default)]
struct Stores {
    clients: std::sync::Mutex<Vec<(String, Arc<dyn ObjectStore>)>>,
}

fn stores() -> &'static Stores {
    static STORES: OnceLock<Stores> = OnceLock::new();
    STORES.get_or_init(Stores::default)
}

impl Stores {
    fn get(&self, url: &url::Url, config: &IoConfig) -> Result<Arc<dyn ObjectStore>> {
        let origin = format!(
            "{}://{}:{}/{:?}/{:?}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.port().unwrap_or(0),
            config.retries,
            config.timeout
        );
        let mut clients = self.clients.lock().unwrap();
        if let Some((_, store)) = clients.iter().find(|(o, _)| *o == origin) {
            return Ok(store.clone());
        }
        let store = build_store(url, config)?;
        clients.push((origin, store.clone()));
        Ok(store)
    }
}

fn build_store(url: &url::Url, config: &IoConfig) -> Result<Arc<dyn ObjectStore>> {
    use object_store::{aws, azure, gcp, http};
    // reqwest is built without a TLS provider of its own: rustls uses ring (see Cargo.toml).
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Retries are ours (they also cover bodies cut short), so the client makes one attempt;
    // each attempt's time limit is ours too. The cloud stores keep the client options their
    // environment gives (`AWS_ALLOW_HTTP`, proxies, certificates).
    let retry = object_store::RetryConfig {
        max_retries: 0,
        ..Default::default()
    };
    let client = object_store::ClientOptions::new()
        .with_timeout(config.timeout)
        .with_allow_http(true);
    let error = |e: object_store::Error| Error::Source(format!("{url}: {e}"));
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" | "s3a" => Arc::new(
            aws::AmazonS3Builder::from_env()
                .with_url(url.as_str())
                .with_retry(retry.clone())
                .build()
                .map_err(error)?,
        ),
        "gs" => Arc::new(
            gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(url.as_str())
                .with_retry(retry.clone())
                .build()
                .map_err(error)?,
        ),
        "az" | "abfs" | "abfss" | "azure" => Arc::new(
            azure::MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .with_retry(retry.clone())
                .build()
                .map_err(error)?,
        ),
        "http" | "https" => {
            let base = format!("{}://{}", url.scheme(), url.authority());
            Arc::new(
                http::HttpBuilder::new()
                    .with_url(base)
                    .with_retry(retry)
                    .with_client_options(client)
                    .build()
                    .map_err(error)?,
            )
        }
        other => {
            return Err(Error::Source(format!(
                "{url}: unsupported scheme `{other}` (s3, gs, az, http, https or a local path)"
            )))
        }
    };
    Ok(store)
}

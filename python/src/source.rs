//! Data sources for Python: `ImageFolder`, `FileList`, `InMemory`, or a path (a directory is an
//! ImageFolder, a file a CSV list).

use crate::errors::IntoPy;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::PyClass;
use sluice::source::{self, Source};
use std::sync::Arc;

/// What `__reduce__` returns: a callable and its arguments.
type Reduced<'py> = (Bound<'py, PyAny>, Bound<'py, PyTuple>);

/// Pickle a source as a call of its class with its one constructor argument.
fn reduce_to_constructor<'py, T: PyClass>(
    slf: &Bound<'py, T>,
    arg: Bound<'py, PyAny>,
) -> PyResult<Reduced<'py>> {
    Ok((
        slf.as_any().get_type().into_any(),
        PyTuple::new(slf.py(), [arg])?,
    ))
}

/// `ROOT/CLASS/*.jpg|jpeg|png`; labels are class indices in sorted class order.
#[pyclass(module = "sluice", frozen)]
pub struct ImageFolder {
    inner: Arc<source::ImageFolder>,
    root: String,
}

#[pymethods]
impl ImageFolder {
    #[new]
    fn new(py: Python<'_>, root: std::path::PathBuf) -> PyResult<Self> {
        let inner = py.detach(|| source::ImageFolder::open(&root)).py_err(py)?;
        Ok(ImageFolder {
            inner: Arc::new(inner),
            root: root.display().to_string(),
        })
    }

    /// Class names, in label order.
    #[getter]
    fn classes(&self) -> Vec<String> {
        self.inner.classes().to_vec()
    }

    #[getter]
    fn root(&self) -> &str {
        &self.root
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduced<'py>> {
        let root = slf.get().root.clone().into_pyobject(slf.py())?;
        reduce_to_constructor(slf, root.into_any())
    }

    fn __repr__(&self) -> String {
        format!("sluice.ImageFolder({:?})", self.root)
    }
}

/// A list of files: `path,label` CSV lines, a CSV/TSV table with a header (`path` or
/// `audio_filepath`, optional `label`, optional `text`), or a JSON-lines manifest with the same
/// keys (NeMo style). Paths are relative to the list's directory or absolute.
#[pyclass(module = "sluice", frozen)]
pub struct FileList {
    inner: Arc<source::FileList>,
    path: String,
}

#[pymethods]
impl FileList {
    #[new]
    fn new(py: Python<'_>, path: std::path::PathBuf) -> PyResult<Self> {
        let inner = py.detach(|| source::FileList::open(&path)).py_err(py)?;
        Ok(FileList {
            inner: Arc::new(inner),
            path: path.display().to_string(),
        })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduced<'py>> {
        let path = slf.get().path.clone().into_pyobject(slf.py())?;
        reduce_to_constructor(slf, path.into_any())
    }

    fn __repr__(&self) -> String {
        format!("sluice.FileList({:?})", self.path)
    }
}

/// Encoded samples held in memory: a list of `(bytes, label)` pairs.
#[pyclass(module = "sluice", frozen)]
pub struct InMemory {
    inner: Arc<source::InMemory>,
    samples: Py<PyAny>,
}

#[pymethods]
impl InMemory {
    #[new]
    fn new(samples: Bound<'_, PyAny>) -> PyResult<Self> {
        let pairs: Vec<(Vec<u8>, i64)> = samples.extract().map_err(|_| {
            crate::errors::bad_setting(
                "InMemory.samples",
                "give a list of (bytes, int label) pairs",
            )
        })?;
        Ok(InMemory {
            inner: Arc::new(source::InMemory::new(pairs)),
            samples: samples.unbind(),
        })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduced<'py>> {
        let samples = slf.get().samples.clone_ref(slf.py()).into_bound(slf.py());
        reduce_to_constructor(slf, samples)
    }
}

/// WebDataset tar shards, local or on object storage: a folder of `.tar` files, a manifest
/// (`sluice-index.json`, written by `sluice index`), or paths/URLs with brace patterns
/// (`s3://bucket/train-{000000..000127}.tar`; `gs://`, `az://`, `http(s)://`). Credentials and
/// endpoints come from the standard environment variables (`AWS_ENDPOINT_URL`, ...).
///
/// `window` (bytes, or a size such as `"256MiB"`) bounds the bytes read ahead and not yet
/// consumed; `concurrency` range requests run at once; a failed request is retried `retries`
/// times with backoff; `timeout` (seconds) limits one request. `None` keeps the default
/// (256 MiB, 16, 6, 30 s).
#[pyclass(module = "sluice", frozen)]
pub struct Shards {
    inner: Arc<source::shards::WebDataset>,
    location: String,
}

/// A size in bytes: an int, or a string with a unit ("256MiB").
fn size_arg(name: &str, value: &Bound<'_, PyAny>) -> PyResult<u64> {
    if let Ok(n) = value.extract::<u64>() {
        return Ok(n);
    }
    let text: String = value.extract().map_err(|_| {
        crate::errors::bad_setting(name, "bytes: an int or a size such as \"256MiB\"")
    })?;
    source::shards::parse_size(&text).map_err(|e| crate::errors::bad_setting(name, e))
}

#[pymethods]
impl Shards {
    #[new]
    #[pyo3(signature = (location, window=None, concurrency=None, retries=None, timeout=None))]
    fn new(
        py: Python<'_>,
        location: String,
        window: Option<&Bound<'_, PyAny>>,
        concurrency: Option<usize>,
        retries: Option<u32>,
        timeout: Option<f64>,
    ) -> PyResult<Self> {
        let window = window.map(|w| size_arg("window", w)).transpose()?;
        let config =
            source::shards::IoConfig::with(window, concurrency, retries, timeout).py_err(py)?;
        let inner = py
            .detach(|| source::shards::open_shards(&location, config))
            .py_err(py)?;
        Ok(Shards {
            inner: Arc::new(inner),
            location,
        })
    }

    /// Number of shards.
    #[getter]
    fn num_shards(&self) -> usize {
        self.inner.shard_starts().map_or(0, |s| s.len())
    }

    /// Range requests made and bytes fetched so far (remote shards).
    #[getter]
    fn io_counts(&self) -> (u64, u64) {
        self.inner.io_counts()
    }

    /// The I/O settings in force: window (bytes), concurrency, retries, timeout (seconds).
    #[getter]
    fn io_config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let c = self.inner.io_config();
        let d = pyo3::types::PyDict::new(py);
        d.set_item("window", c.window_bytes)?;
        d.set_item("concurrency", c.concurrency)?;
        d.set_item("retries", c.retries)?;
        d.set_item("timeout", c.timeout.as_secs_f64())?;
        Ok(d)
    }

    /// The most bytes the read-ahead ever held at once (remote shards; at most `window` plus
    /// one sample).
    #[getter]
    fn peak_read_ahead_bytes(&self) -> u64 {
        self.inner.peak_read_ahead_bytes()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduced<'py>> {
        let me = slf.get();
        let c = me.inner.io_config();
        let timeout = c.timeout.as_secs_f64();
        let args = (
            me.location.clone(),
            c.window_bytes,
            c.concurrency,
            c.retries,
            timeout,
        );
        Ok((
            slf.as_any().get_type().into_any(),
            args.into_pyobject(slf.py())?,
        ))
    }

    fn __repr__(&self) -> String {
        format!("sluice.Shards({:?})", self.location)
    }
}

/// What a pipeline decodes, which decides how a path opens.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Images,
    Audio,
    Text,
}

impl Kind {
    /// What a pipeline with `decoder` reads.
    pub fn of(decoder: &sluice::ops::Decoder) -> Kind {
        match decoder {
            sluice::ops::Decoder::Image(_) => Kind::Images,
            sluice::ops::Decoder::Audio(_) => Kind::Audio,
            sluice::ops::Decoder::Text(_) => Kind::Text,
        }
    }
}

/// The source a `Pipeline` was given: one of the classes above, or a path.
/// The core source behind `obj`; sharded data (see [`Shards`]) opens as shards, another path
/// as an ImageFolder (an AudioFolder for audio)
/// or, for a file, a CSV list; for text, a text file of lines, a JSON-lines file (field
/// "text") or a folder of .txt documents.
pub fn open(py: Python<'_>, obj: &Bound<'_, PyAny>, kind: Kind) -> PyResult<Arc<dyn Source>> {
    if let Ok(f) = obj.cast::<ImageFolder>() {
        return Ok(f.get().inner.clone());
    }
    if let Ok(f) = obj.cast::<FileList>() {
        return Ok(f.get().inner.clone());
    }
    if let Ok(m) = obj.cast::<InMemory>() {
        return Ok(m.get().inner.clone());
    }
    if let Ok(s) = obj.cast::<Shards>() {
        return Ok(s.get().inner.clone());
    }
    let path: std::path::PathBuf = obj.extract().map_err(|_| {
        crate::errors::bad_setting(
            "source",
            "give sluice.ImageFolder, sluice.FileList, sluice.InMemory, sluice.Shards or a path",
        )
    })?;
    let location = path.display().to_string();
    if source::shards::is_sharded(&location) {
        let shards = py
            .detach(|| source::shards::open_shards(&location, Default::default()))
            .py_err(py)?;
        return Ok(Arc::new(shards));
    }
    match kind {
        Kind::Audio => return py.detach(|| source::open_audio_path(&path)).py_err(py),
        Kind::Text => return py.detach(|| source::open_text_path(&path, None)).py_err(py),
        Kind::Images => {}
    }
    py.detach(|| source::open_path(&path)).py_err(py)
}

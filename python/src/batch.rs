//! `sluice.Batch`: a mapping of named tensors ("images", "labels", "indices"; for audio
//! pipelines "features", "lengths", "labels", "indices"; for text pipelines "input_ids" or
//! "embeddings", "attention_mask", "lengths", "indices"; plus "text", a list of str, when the
//! source has transcripts) plus the batch's position and the samples the skip policy left out.

use crate::tensor::{Memory, Tensor};
use pyo3::exceptions::{PyKeyError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use sluice::batch::Images;
use std::sync::Arc;

/// The names a batch holds, in order: image or padded (audio), with or without transcripts.
const IMAGE_KEYS: [&str; 3] = ["images", "labels", "indices"];
const AUDIO_KEYS: [&str; 4] = ["features", "lengths", "labels", "indices"];
const IMAGE_TEXT_KEYS: [&str; 4] = ["images", "labels", "indices", "text"];
const AUDIO_TEXT_KEYS: [&str; 5] = ["features", "lengths", "labels", "indices", "text"];
const TOKEN_KEYS: [&str; 4] = ["input_ids", "attention_mask", "lengths", "indices"];
const MLM_KEYS: [&str; 5] = [
    "input_ids",
    "attention_mask",
    "labels",
    "lengths",
    "indices",
];
const PACKED_KEYS: [&str; 6] = [
    "input_ids",
    "attention_mask",
    "labels",
    "cu_seqlens",
    "lengths",
    "indices",
];
const TOKEN_OFFSET_KEYS: [&str; 5] = [
    "input_ids",
    "attention_mask",
    "offset_mapping",
    "lengths",
    "indices",
];
const MLM_OFFSET_KEYS: [&str; 6] = [
    "input_ids",
    "attention_mask",
    "labels",
    "offset_mapping",
    "lengths",
    "indices",
];
const EMBEDDING_KEYS: [&str; 4] = ["embeddings", "attention_mask", "lengths", "indices"];
const EMBEDDING_MLM_KEYS: [&str; 5] = [
    "embeddings",
    "attention_mask",
    "labels",
    "lengths",
    "indices",
];

/// A sample the `on_error="skip"` policy left out of its batch.
#[pyclass(module = "sluice", frozen, get_all)]
pub struct SkippedSample {
    /// Dataset index.
    index: u64,
    /// Where the sample came from (file path, or shard and offset).
    path: String,
    /// The operator that failed.
    operator: String,
    reason: String,
}

#[pymethods]
impl SkippedSample {
    fn __repr__(&self) -> String {
        format!(
            "SkippedSample(index={}, path={:?}, operator={:?}, reason={:?})",
            self.index, self.path, self.operator, self.reason
        )
    }

    fn __str__(&self) -> String {
        format!(
            "sample #{} ({}): operator `{}` failed: {}",
            self.index, self.path, self.operator, self.reason
        )
    }
}

/// One batch, in sampler order: `batch["images"]`, `batch["labels"]` (int64),
/// `batch["indices"]` (int64 dataset indices); audio pipelines give `batch["features"]`
/// (float32 [n, rows, time], zero-padded) and `batch["lengths"]` (int64) instead of images;
/// `batch["text"]` (list of str) holds the transcripts when the source has them. Text
/// pipelines give `batch["input_ids"]` (int32 [n, tokens], padded with `pad_id`) or
/// `batch["embeddings"]` (float32 [n, tokens, dim], zero-padded), `batch["attention_mask"]`
/// (uint8 [n, tokens]: 1 on tokens, 0 on padding), `batch["lengths"]` and `batch["indices"]`;
/// with `MlmMask`, `batch["labels"]` (int32 [n, tokens]: the original id where a token was
/// selected, -100 elsewhere and in the padding); with `Tokenize(offsets=True)`,
/// `batch["offset_mapping"]` (int32 [n, tokens, 2]: each token's character span, 0 for
/// special tokens and padding). Packed pipelines (`Pack`) give blocks:
/// `input_ids` int32 [blocks, seq_len], causal-LM `labels`, `cu_seqlens` (int32 segment
/// boundaries over the flattened blocks), `lengths` (real tokens per block) and `indices` (the
/// documents with tokens in the batch).
#[pyclass(module = "sluice", frozen, mapping)]
pub struct Batch {
    /// The epoch this batch belongs to.
    #[pyo3(get)]
    epoch: u32,
    /// Position of the batch in its epoch.
    #[pyo3(get)]
    index: u64,
    /// Number of samples in the batch.
    #[pyo3(get)]
    size: usize,
    images: Py<PyAny>,
    /// Padded batches: each sample's length along time.
    lengths: Option<Py<Tensor>>,
    labels: Py<Tensor>,
    indices: Py<Tensor>,
    /// Transcripts, when the source has them.
    text: Option<Py<PyList>>,
    skipped: Py<PyList>,
    /// Text pipelines: the attention mask and labels, and whether `images` holds ids.
    tokens: Option<TokenParts>,
}

/// What a text batch holds besides its ids or embeddings.
struct TokenParts {
    attention_mask: Py<Tensor>,
    /// `images` holds ids (else embeddings).
    ids: bool,
    /// Masked-LM or packed causal-LM labels.
    labels: Option<Py<Tensor>>,
    /// Packed batches: segment boundaries (int32).
    cu_seqlens: Option<Py<Tensor>>,
    /// Each token's character span `[start, end)` (int32 `[n, width, 2]`), when kept.
    offsets: Option<Py<Tensor>>,
}

impl Batch {
    /// The Python batch of `batch`, from a pipeline whose output is `output`.
    pub fn from_core(
        py: Python<'_>,
        mut batch: sluice::Batch,
        output: &sluice::OutputSpec,
    ) -> PyResult<Batch> {
        let size = batch.len();
        let int32 = |t: sluice::DenseBatch| {
            let (shape, nbytes) = (t.shape.clone(), t.bytes().len());
            let memory = Arc::new(Memory::Pooled(t.into_buffer()));
            Tensor::host(memory, 0, nbytes, &shape, sluice::DType::I32)
        };
        let host_labels = batch.token_labels.take().map(int32);
        let offsets = batch.token_offsets.take().map(int32);
        let cu_seqlens = (!batch.cu_seqlens.is_empty()).then(|| {
            let bytes = batch.cu_seqlens_bytes();
            let n = batch.cu_seqlens.len();
            Tensor::host(
                Arc::new(Memory::Bytes(bytes)),
                0,
                n * 4,
                &[n],
                sluice::DType::I32,
            )
        });
        // Text batches: the attention mask over the main tensor's padded axis, and whether
        // that tensor holds ids.
        let main_type = match &batch.images {
            Images::Dense(d) => Some(d.dtype),
            Images::Device(d) => Some(d.dtype()),
            Images::Ragged(_) => None,
        };
        let mask = match (output.pad_leading, batch.shape(), main_type) {
            (true, Some(shape), Some(dtype)) => {
                let width = output.padded_width(shape).unwrap_or(0);
                let rows = batch.lengths.len();
                let mask = Tensor::u8(batch.attention_mask(width), &[rows, width]);
                Some((mask, dtype == sluice::DType::I32))
            }
            _ => None,
        };
        let lengths = if batch.lengths.is_empty() {
            None
        } else {
            let l = batch.lengths.iter().map(|&n| n as i64).collect();
            Some(Py::new(py, Tensor::int64(l))?)
        };
        let mut device_labels = None;
        let images: Py<PyAny> = match batch.images {
            Images::Dense(d) => {
                let (shape, dtype, nbytes) = (d.shape.clone(), d.dtype, d.bytes().len());
                let memory = Arc::new(Memory::Pooled(d.into_buffer()));
                Py::new(py, Tensor::host(memory, 0, nbytes, &shape, dtype))?.into_any()
            }
            Images::Ragged(r) => {
                // One tensor per sample, each a window of the batch's one buffer.
                let (offsets, shapes, dtype) = (r.offsets.clone(), r.shapes.clone(), r.dtype);
                let memory = Arc::new(Memory::Pooled(r.into_buffer()));
                let tensors = (0..shapes.len())
                    .map(|i| {
                        let (start, end) = (offsets[i], offsets[i + 1]);
                        Py::new(
                            py,
                            Tensor::host(memory.clone(), start, end - start, &shapes[i], dtype),
                        )
                    })
                    .collect::<PyResult<Vec<_>>>()?;
                PyList::new(py, tensors)?.into_any().unbind()
            }
            Images::Device(d) => {
                // The main tensor and (masked-LM) labels: windows of one device slot.
                let mut main = None;
                for (name, tensor) in Tensor::on_device(d) {
                    match name {
                        "labels" => device_labels = Some(tensor),
                        _ => main = main.or(Some(tensor)),
                    }
                }
                Py::new(py, main.expect("a device batch has a main tensor"))?.into_any()
            }
        };
        let labels = host_labels.or(device_labels);
        let tokens = match mask {
            Some((mask, ids)) => Some(TokenParts {
                attention_mask: Py::new(py, mask)?,
                ids,
                labels: labels.map(|l| Py::new(py, l)).transpose()?,
                cu_seqlens: cu_seqlens.map(|c| Py::new(py, c)).transpose()?,
                offsets: offsets.map(|o| Py::new(py, o)).transpose()?,
            }),
            None => None,
        };
        let skipped = batch
            .skipped
            .into_iter()
            .map(|e| SkippedSample {
                index: e.sample.index,
                path: e.sample.origin,
                operator: e.operator,
                reason: e.message,
            })
            .map(|s| Py::new(py, s))
            .collect::<PyResult<Vec<_>>>()?;
        let indices = batch.sample_indices.iter().map(|&i| i as i64).collect();
        let text = if batch.texts.is_empty() {
            None
        } else {
            Some(PyList::new(py, &batch.texts)?.unbind())
        };
        Ok(Batch {
            epoch: batch.epoch,
            index: batch.index,
            size,
            images,
            lengths,
            labels: Py::new(py, Tensor::int64(batch.labels))?,
            indices: Py::new(py, Tensor::int64(indices))?,
            text,
            skipped: PyList::new(py, skipped)?.unbind(),
            tokens,
        })
    }

    /// The keys this batch holds.
    fn names(&self) -> &'static [&'static str] {
        if let Some(t) = &self.tokens {
            return match (t.ids, t.labels.is_some()) {
                _ if t.cu_seqlens.is_some() => &PACKED_KEYS,
                (true, true) if t.offsets.is_some() => &MLM_OFFSET_KEYS,
                (true, false) if t.offsets.is_some() => &TOKEN_OFFSET_KEYS,
                (true, true) => &MLM_KEYS,
                (true, false) => &TOKEN_KEYS,
                (false, true) => &EMBEDDING_MLM_KEYS,
                (false, false) => &EMBEDDING_KEYS,
            };
        }
        match (self.lengths.is_some(), self.text.is_some()) {
            (true, false) => &AUDIO_KEYS,
            (true, true) => &AUDIO_TEXT_KEYS,
            (false, false) => &IMAGE_KEYS,
            (false, true) => &IMAGE_TEXT_KEYS,
        }
    }

    fn get(&self, py: Python<'_>, key: &str) -> Option<Py<PyAny>> {
        let lengths = self.lengths.as_ref();
        if let Some(t) = &self.tokens {
            return match key {
                "input_ids" if t.ids => Some(self.images.clone_ref(py)),
                "embeddings" if !t.ids => Some(self.images.clone_ref(py)),
                "attention_mask" => Some(t.attention_mask.clone_ref(py).into_any()),
                "labels" => t.labels.as_ref().map(|l| l.clone_ref(py).into_any()),
                "cu_seqlens" => t.cu_seqlens.as_ref().map(|c| c.clone_ref(py).into_any()),
                "offset_mapping" => t.offsets.as_ref().map(|o| o.clone_ref(py).into_any()),
                "lengths" => lengths.map(|l| l.clone_ref(py).into_any()),
                "indices" => Some(self.indices.clone_ref(py).into_any()),
                _ => None,
            };
        }
        match key {
            "images" if lengths.is_none() => Some(self.images.clone_ref(py)),
            "features" => lengths.map(|_| self.images.clone_ref(py)),
            "lengths" => lengths.map(|l| l.clone_ref(py).into_any()),
            "labels" => Some(self.labels.clone_ref(py).into_any()),
            "indices" => Some(self.indices.clone_ref(py).into_any()),
            "text" => self.text.as_ref().map(|t| t.clone_ref(py).into_any()),
            _ => None,
        }
    }

    /// Feed the image bytes of the batch, in delivery order, to `sink` (borrowed for host
    /// memory; a host copy for device batches).
    pub fn for_image_bytes(&self, py: Python<'_>, mut sink: impl FnMut(&[u8])) -> PyResult<()> {
        let images = self.images.bind(py);
        if let Ok(t) = images.cast::<Tensor>() {
            sink(&t.get().host_bytes()?);
            return Ok(());
        }
        for t in images.cast::<PyList>()?.iter() {
            sink(&t.cast::<Tensor>()?.get().host_bytes()?);
        }
        Ok(())
    }

    pub fn labels(&self, py: Python<'_>) -> PyResult<Vec<i64>> {
        let bytes = self.labels.bind(py).get().host_bytes()?;
        Ok(bytes
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect())
    }
}

#[pymethods]
impl Batch {
    fn __getitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let name: &str = &key
            .extract::<String>()
            .map_err(|_| PyTypeError::new_err("batch keys are strings"))?;
        self.get(py, name).ok_or_else(|| {
            PyKeyError::new_err(format!(
                "{name:?}: this batch holds {}",
                self.names().join(", ")
            ))
        })
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> bool {
        key.extract::<String>()
            .is_ok_and(|k| self.names().contains(&k.as_str()))
    }

    /// Number of named tensors (a batch is a mapping); `batch.size` is the number of samples.
    fn __len__(&self) -> usize {
        self.names().len()
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        PyTuple::new(py, self.names())?
            .try_iter()
            .map(Bound::into_any)
    }

    fn keys(&self) -> Vec<&'static str> {
        self.names().to_vec()
    }

    fn values(&self, py: Python<'_>) -> Vec<Py<PyAny>> {
        self.names()
            .iter()
            .filter_map(|k| self.get(py, k))
            .collect()
    }

    fn items(&self, py: Python<'_>) -> Vec<(&'static str, Py<PyAny>)> {
        self.names()
            .iter()
            .filter_map(|k| self.get(py, k).map(|v| (*k, v)))
            .collect()
    }

    /// Samples of this batch's range that `on_error="skip"` left out, with path and reason.
    #[getter]
    fn skipped(&self, py: Python<'_>) -> Py<PyList> {
        self.skipped.clone_ref(py)
    }

    fn __repr__(&self) -> String {
        format!(
            "sluice.Batch(epoch={}, index={}, size={})",
            self.epoch, self.index, self.size
        )
    }
}

/// The checksum `sluice bench` prints, over batches as Python receives them: equal checksums
/// mean the same bytes and labels in the same order.
#[pyclass(module = "sluice")]
#[derive(Default)]
pub struct Checksum(sluice::bench::Checksum);

#[pymethods]
impl Checksum {
    #[new]
    fn new() -> Self {
        Checksum::default()
    }

    /// Add one batch: its image bytes, then its labels (and token labels and cu_seqlens).
    fn update(&mut self, py: Python<'_>, batch: &Bound<'_, Batch>) -> PyResult<()> {
        let b = batch.get();
        b.for_image_bytes(py, |bytes| self.0.add_bytes(bytes))?;
        self.0.add_labels(&b.labels(py)?);
        // Masked-LM and packed batches: token labels, then segment boundaries.
        if let Some(t) = &b.tokens {
            for tensor in [&t.labels, &t.cu_seqlens].into_iter().flatten() {
                self.0.add_bytes(&tensor.bind(py).get().host_bytes()?);
            }
        }
        Ok(())
    }

    /// The digest so far, as 16 hex digits.
    fn hexdigest(&self) -> String {
        self.0.hex()
    }
}

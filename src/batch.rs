//! Batches handed to training code, and the pool their buffers come from.
//!
//! A batch's buffer goes back to its pool when the batch is dropped, so after warm-up the
//! executor reuses buffers instead of allocating one per batch.

use crate::backend::cuda::DeviceBatch;
use crate::error::SampleError;
use crate::tensor::{DType, HostTensor, Layout};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Where batch buffers start: 64 bytes, so consumers that want aligned memory (XLA, SIMD
/// kernels) take the batch without a copy.
pub const BUFFER_ALIGN: usize = 64;

/// Reusable byte buffers for batches.
#[derive(Debug, Default)]
pub struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
    allocations: AtomicU64,
}

impl BufferPool {
    pub fn new() -> Arc<Self> {
        Arc::new(BufferPool::default())
    }

    /// A buffer of exactly `len` bytes (contents unspecified) starting on a [`BUFFER_ALIGN`]
    /// boundary, reused when one is free.
    pub fn take(self: &Arc<Self>, len: usize) -> PooledBuffer {
        let mut buf = self.free.lock().unwrap().pop().unwrap_or_default();
        let room = len + BUFFER_ALIGN - 1;
        if buf.capacity() < room {
            // A fresh buffer, or a recycled one too small: either way an allocation.
            self.allocations.fetch_add(1, Ordering::Relaxed);
            buf.reserve_exact(room - buf.len());
        }
        let start = buf.as_ptr().align_offset(BUFFER_ALIGN);
        buf.resize(start + len, 0);
        PooledBuffer {
            buf,
            start,
            pool: Arc::downgrade(self),
        }
    }

    /// How many times a buffer had to be allocated (or grown) rather than reused.
    pub fn allocations(&self) -> u64 {
        self.allocations.load(Ordering::Relaxed)
    }
}

/// A byte buffer that returns to its pool on drop. Its bytes are `buf[start..]`: `start` skips
/// to the alignment boundary.
#[derive(Debug)]
pub struct PooledBuffer {
    buf: Vec<u8>,
    start: usize,
    pool: Weak<BufferPool>,
}

impl PooledBuffer {
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..]
    }
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..]
    }
    pub fn truncate(&mut self, len: usize) {
        self.buf.truncate(self.start + len);
    }
    /// The whole vector, for a writer that sizes it itself (the alignment is given up).
    pub fn vec_mut(&mut self) -> &mut Vec<u8> {
        self.buf.drain(..self.start);
        self.start = 0;
        &mut self.buf
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            let buf = std::mem::take(&mut self.buf);
            pool.free.lock().unwrap().push(buf);
        }
    }
}

const DEVICE_BYTES: &str =
    "this batch is in CUDA device memory: use Batch::device() (DeviceBatch::to_host copies it)";

/// Fixed-size samples stacked into one tensor of shape `[n, ..sample_shape]`.
#[derive(Debug)]
pub struct DenseBatch {
    pub dtype: DType,
    pub layout: Layout,
    /// Full shape, batch dimension first.
    pub shape: Vec<usize>,
    pub(crate) data: PooledBuffer,
}

impl DenseBatch {
    pub fn bytes(&self) -> &[u8] {
        self.data.as_slice()
    }

    /// Bytes of sample `i`.
    pub fn sample(&self, i: usize) -> &[u8] {
        let per = self.bytes().len() / self.shape[0].max(1);
        &self.bytes()[i * per..(i + 1) * per]
    }

    /// The batch's buffer, for handing to another owner (it returns to the pool when dropped).
    pub fn into_buffer(self) -> PooledBuffer {
        self.data
    }

    /// The contents as f32 values (copies; for inspection and tests).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        let n = self.bytes().len() / self.dtype.size();
        (0..n).map(|i| self.dtype.load(self.bytes(), i)).collect()
    }
}

/// Variable-size samples packed into one buffer: sample `i` is `data[offsets[i]..offsets[i+1]]`
/// with shape `shapes[i]`.
#[derive(Debug)]
pub struct RaggedBatch {
    pub dtype: DType,
    pub layout: Layout,
    pub offsets: Vec<usize>,
    pub shapes: Vec<Vec<usize>>,
    pub(crate) data: PooledBuffer,
}

impl RaggedBatch {
    /// The batch's buffer, for handing to another owner (it returns to the pool when dropped).
    pub fn into_buffer(self) -> PooledBuffer {
        self.data
    }

    pub fn bytes(&self) -> &[u8] {
        self.data.as_slice()
    }
    pub fn sample(&self, i: usize) -> &[u8] {
        &self.bytes()[self.offsets[i]..self.offsets[i + 1]]
    }
}

/// The samples of a batch: dense when the pipeline ends in a fixed size, ragged otherwise; in
/// CUDA device memory when the pipeline delivers device batches
/// ([`crate::PipelineBuilder::device_batches`]).
#[derive(Debug)]
pub enum Images {
    Dense(DenseBatch),
    Ragged(RaggedBatch),
    Device(DeviceBatch),
}

/// One sample taken out of a batch: where it came from and its own tensor (a copy).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Dataset index.
    pub index: u64,
    pub label: i64,
    pub tensor: HostTensor,
}

/// One batch, in sampler order.
#[derive(Debug)]
pub struct Batch {
    pub epoch: u32,
    /// Position of this batch in the epoch.
    pub index: u64,
    pub images: Images,
    pub labels: Vec<i64>,
    /// Dataset index of each sample, in batch order.
    pub sample_indices: Vec<u64>,
    /// Samples of this batch's range that the `skip` policy left out, with the reason.
    pub skipped: Vec<SampleError>,
    /// Padded batches (audio and features): each sample's length along the last axis before
    /// padding, in batch order. Empty for image batches.
    pub lengths: Vec<usize>,
    /// Each sample's transcript, in batch order, when the source has them (a manifest with a
    /// text column; see [`crate::source::Source::text`]); else empty.
    pub texts: Vec<String>,
    /// Token pipelines with `MlmMask`: each position's training label, i32 `[len, width]`
    /// like the ids, [`crate::text::IGNORE_LABEL`] where there is nothing to predict and in the
    /// padding. None otherwise, and for device batches: their labels stay on the device as the
    /// [`DeviceBatch`]'s `labels` tensor ([`Batch::copied_to_host`] copies them here).
    pub token_labels: Option<DenseBatch>,
    /// Token pipelines whose tokenizer keeps offsets ([`crate::ops::DecodeText::with_offsets`]):
    /// each position's character span `[start, end)` in its sample's text, i32
    /// `[len, width, 2]`, `[0, 0]` for special tokens and in the padding. None otherwise.
    pub token_offsets: Option<DenseBatch>,
    /// Packed batches ([`crate::text::PackSpec`]): segment boundaries over the flattened
    /// `[blocks, seq_len]` ids, from 0 to the real tokens' count (flash-attention's varlen
    /// `cu_seqlens`). Empty otherwise.
    pub cu_seqlens: Vec<i32>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.sample_indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sample_indices.is_empty()
    }

    /// `[len, width]` u8: 1 where a position holds a sample's data (before its length), 0 in
    /// the padding; `width` is the padded axis' size ([`crate::OutputSpec::padded_width`]).
    pub fn attention_mask(&self, width: usize) -> Vec<u8> {
        let mut mask = vec![0u8; self.lengths.len() * width];
        for (row, &length) in mask.chunks_exact_mut(width.max(1)).zip(&self.lengths) {
            row[..length.min(width)].fill(1);
        }
        mask
    }

    /// [`Batch::cu_seqlens`] as little-endian i32 bytes (for hashing, `.npy` and Python).
    pub fn cu_seqlens_bytes(&self) -> Vec<u8> {
        self.cu_seqlens
            .iter()
            .flat_map(|b| b.to_le_bytes())
            .collect()
    }

    pub fn dense(&self) -> Option<&DenseBatch> {
        match &self.images {
            Images::Dense(d) => Some(d),
            _ => None,
        }
    }

    pub fn ragged(&self) -> Option<&RaggedBatch> {
        match &self.images {
            Images::Ragged(r) => Some(r),
            _ => None,
        }
    }

    /// The main tensor's shape (batch axis first); None for a ragged batch.
    pub fn shape(&self) -> Option<&[usize]> {
        match &self.images {
            Images::Dense(d) => Some(&d.shape),
            Images::Ragged(_) => None,
            Images::Device(d) => Some(d.shape()),
        }
    }

    /// A host copy of a device batch (every tensor copied back: the main one, and a masked-LM
    /// batch's `labels` into [`Batch::token_labels`]); None for a host batch. Waits for the
    /// batch's kernels: for checks and inspection, not for training.
    pub fn copied_to_host(&self) -> crate::Result<Option<Batch>> {
        let Images::Device(d) = &self.images else {
            return Ok(None);
        };
        let pool = BufferPool::new();
        let host = |(dtype, layout, shape): (DType, Layout, &[usize]), bytes: &[u8]| {
            let mut data = pool.take(bytes.len());
            data.as_mut_slice().copy_from_slice(bytes);
            let shape = shape.to_vec();
            DenseBatch {
                dtype,
                layout,
                shape,
                data,
            }
        };
        fn like(t: &crate::backend::cuda::TensorInfo) -> (DType, Layout, &[usize]) {
            (t.dtype, t.layout, &t.shape)
        }
        let token_labels = match d.tensor_named("labels") {
            Some(t) => Some(host(like(&t.info), &d.to_host_of(t.name)?)),
            None => None,
        };
        let token_offsets =
            (self.token_offsets.as_ref()).map(|o| host((o.dtype, o.layout, &o.shape), o.bytes()));
        Ok(Some(Batch {
            epoch: self.epoch,
            index: self.index,
            images: Images::Dense(host(like(d.tensor()), &d.to_host()?)),
            labels: self.labels.clone(),
            sample_indices: self.sample_indices.clone(),
            skipped: self.skipped.clone(),
            lengths: self.lengths.clone(),
            texts: self.texts.clone(),
            token_labels,
            token_offsets,
            cu_seqlens: self.cu_seqlens.clone(),
        }))
    }

    /// The batch in CUDA device memory, when the pipeline delivers device batches.
    pub fn device(&self) -> Option<&DeviceBatch> {
        match &self.images {
            Images::Device(d) => Some(d),
            _ => None,
        }
    }

    /// All sample bytes of the batch, in host memory.
    ///
    /// # Panics
    /// For a device batch (see [`Batch::device`]; [`DeviceBatch::to_host`] copies one back).
    pub fn bytes(&self) -> &[u8] {
        match &self.images {
            Images::Dense(d) => d.bytes(),
            Images::Ragged(r) => r.bytes(),
            Images::Device(_) => panic!("{DEVICE_BYTES}"),
        }
    }

    /// Bytes of sample `i` (host batches; panics for a device batch, as [`Batch::bytes`]).
    pub fn sample(&self, i: usize) -> &[u8] {
        match &self.images {
            Images::Dense(d) => d.sample(i),
            Images::Ragged(r) => r.sample(i),
            Images::Device(_) => panic!("{DEVICE_BYTES}"),
        }
    }

    /// Sample `i` as an owned tensor with its index and label (host batches; panics for a
    /// device batch, as [`Batch::bytes`]).
    pub fn sample_owned(&self, i: usize) -> Sample {
        let (dtype, layout, shape) = match &self.images {
            Images::Dense(d) => (d.dtype, d.layout, d.shape[1..].to_vec()),
            Images::Ragged(r) => (r.dtype, r.layout, r.shapes[i].clone()),
            Images::Device(_) => panic!("{DEVICE_BYTES}"),
        };
        Sample {
            index: self.sample_indices[i],
            label: self.labels[i],
            tensor: HostTensor {
                dtype,
                shape,
                layout,
                data: self.sample(i).to_vec(),
            },
        }
    }
}

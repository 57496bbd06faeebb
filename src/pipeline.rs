//! The user-facing pipeline: a builder that declares source, operators and batching, and a
//! [`Pipeline`] that runs epochs.
//!
//! ```no_run
//! use sluice::ops::{Normalize, RandomHorizontalFlip, RandomResizedCrop};
//! use sluice::{source::ImageFolder, Pipeline};
//! # fn main() -> sluice::Result<()> {
//! let pipeline = Pipeline::builder(ImageFolder::open("data/train")?)
//!     .op(RandomResizedCrop::new(224))
//!     .op(RandomHorizontalFlip::new(0.5))
//!     .op(Normalize::imagenet())
//!     .batch_size(256)
//!     .shuffle(true)
//!     .seed(42)
//!     .build()?;
//! for epoch in 0..2 {
//!     for batch in pipeline.epoch(epoch)? {
//!         let batch = batch?;
//!         let images = batch.dense().unwrap(); // [256, 3, 224, 224] f32
//!         # let _ = images;
//!     }
//! }
//! # Ok(()) }
//! ```

use crate::backend::cuda::{CudaDevice, TransferEngine, TransferStats};
use crate::backend::wgpu::WgpuContext;
use crate::backend::GpuRunner;
use crate::error::{Error, Result};
use crate::exec::{self, EpochIter, GpuSuffix, RunStats, Step};
use crate::ops::{
    DecodeAudio, DecodeImage, DecodeLimits, Decoder, Op, OpKind, SizeRule, ValueKind,
};
use crate::optimizer::{self, CostProfile, Goal, LogicalPlan, Optimized};
use crate::placement::{self, GpuAvailability, Placement};
use crate::source::Source;
use crate::tensor::{image_shape, DType, Layout};
use std::sync::Arc;

/// What happens to a sample that fails to read, decode or transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorPolicy {
    /// The epoch stops with an error naming the sample and the operator.
    #[default]
    Fail,
    /// The sample is left out of its batch, counted, and reported in [`crate::Batch::skipped`].
    Skip,
}

/// Shape of each sample as it leaves the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputSpec {
    pub dtype: DType,
    pub layout: Layout,
    /// Fixed per-sample shape (dense batches), or None (ragged batches).
    pub sample_shape: Option<Vec<usize>>,
    /// Samples differ only in their last axis (time), or with `pad_leading` in their first
    /// (tokens): batches are padded to the longest and carry each sample's length.
    pub padded: bool,
    /// Padded along the first axis: token ids `[tokens]` and embeddings `[tokens, dim]`.
    pub pad_leading: bool,
}

impl OutputSpec {
    /// The padded axis' size in a padded batch of `shape` (batch axis first): the attention
    /// mask's width. None for dense and ragged batches.
    pub fn padded_width(&self, shape: &[usize]) -> Option<usize> {
        match (self.padded, self.pad_leading) {
            (false, _) => None,
            (true, true) => shape.get(1).copied(),
            (true, false) => shape.last().copied(),
        }
    }

    pub fn sample_bytes(&self) -> Option<usize> {
        self.sample_shape
            .as_ref()
            .map(|s| s.iter().product::<usize>() * self.dtype.size())
    }
}

/// Run-time settings (everything except what is computed).
#[derive(Debug, Clone)]
pub struct Settings {
    pub batch_size: usize,
    pub drop_last: bool,
    pub shuffle: bool,
    pub seed: u64,
    pub threads: usize,
    /// Batches prepared ahead of the consumer.
    pub prefetch: usize,
    /// With more than `prefetch`, the adaptive controller moves the depth between 2 and this
    /// as the consumer waits or batches pile up (results unchanged); 0: fixed depth.
    pub max_prefetch: usize,
    pub policy: ErrorPolicy,
    /// Fold a flip into the tensor write that follows it (same bytes, one pass fewer).
    pub fuse: bool,
    /// Allow approximate decoding: a leading crop that shrinks the image 2× or more on both
    /// axes reads a JPEG decoded at 1/2, 1/4 or 1/8 scale by the IDCT (DCT-domain scaling)
    /// instead of the full-size pixels. Faster on large photos; the pixels differ from the
    /// exact path (docs/PERFORMANCE.md states by how much). Off by default.
    pub approx_decode: bool,
    /// Memory budget for caching the deterministic prefix (decode and the leading non-random
    /// operators) across epochs; 0 disables the cache.
    pub cache_bytes: usize,
    /// Padded batches: the time axis is padded to the batch's longest rounded up to a multiple
    /// of this (1: the longest itself; 8 or 64 suit tensor cores and kernel tiling)…
    pub pad_multiple: usize,
    /// …with this value (0.0: silence for audio; normalized features may want their floor).
    pub pad_value: f32,
    /// Padded token batches: the id written past each sequence's end (the attention mask,
    /// [`crate::Batch::attention_mask`], tells padding from tokens whatever the id).
    pub pad_id: u32,
    /// Padded batches: a fixed size for the padded axis instead of the batch's longest (0: the
    /// longest); a longer sample fails under the error policy. A multiple of `pad_multiple`.
    pub pad_length: usize,
    /// Length bucketing: sort windows of this many batches by sample length before cutting
    /// batches ([`crate::rng::bucketed_order`]); 0: off.
    pub bucket_windows: usize,
    /// Sharded sources: shuffle the shards, then samples within windows of this many shards
    /// ([`crate::rng::shard_window_order`]), so only that many shards are read at once; 0: one
    /// permutation of every sample (random access, per-sample reads).
    pub shard_window: usize,
    /// This process's share of each epoch: rank `rank` of `world`
    /// ([`crate::rng::rank_share`]); every rank gets the same number of batches.
    pub rank: usize,
    pub world: usize,
    /// When an epoch does not divide evenly among the ranks: pad by wrapping, or drop.
    pub uneven: crate::rng::Uneven,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            batch_size: 32,
            drop_last: false,
            shuffle: false,
            seed: 0,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            prefetch: 2,
            max_prefetch: 0,
            policy: ErrorPolicy::Fail,
            fuse: true,
            approx_decode: false,
            cache_bytes: 0,
            pad_multiple: 1,
            pad_value: 0.0,
            pad_id: 0,
            pad_length: 0,
            bucket_windows: 0,
            shard_window: 0,
            rank: 0,
            world: 1,
            uneven: crate::rng::Uneven::Wrap,
        }
    }
}

pub struct PipelineBuilder {
    source: Arc<dyn Source>,
    decode: Decoder,
    ops: Vec<Op>,
    /// Per operator, where the user pinned it (None: the pipeline default).
    pins: Vec<Option<Placement>>,
    /// Per operator, its RNG stream id (declared position + 1), kept through reordering.
    ids: Vec<u32>,
    /// Operators the optimizer must not move.
    fixed: Vec<bool>,
    placement: Placement,
    settings: Settings,
    /// Deliver batches in CUDA device memory (see [`PipelineBuilder::device_batches`]).
    device_batches: bool,
    /// The CUDA device ordinal (None: `LOCAL_RANK`, else 0).
    cuda_device: Option<usize>,
}

impl From<crate::ops::AudioOp> for Op {
    fn from(o: crate::ops::AudioOp) -> Op {
        Op::Audio(o)
    }
}

impl From<crate::ops::TextOp> for Op {
    fn from(o: crate::ops::TextOp) -> Op {
        Op::Text(o)
    }
}

impl From<crate::ops::UserOp> for Op {
    fn from(o: crate::ops::UserOp) -> Op {
        Op::User(o)
    }
}

impl PipelineBuilder {
    /// Append an operator (applied after decode, in declaration order): a built-in or a
    /// [`crate::ops::UserOp`].
    pub fn op(self, op: impl Into<Op>) -> Self {
        self.push(op.into(), None, false)
    }

    fn push(mut self, op: Op, pin: Option<Placement>, fixed: bool) -> Self {
        self.ops.push(op);
        self.pins.push(pin);
        self.ids.push(self.ids.len() as u32 + 1);
        self.fixed.push(fixed);
        self
    }

    /// Append an operator the optimizer never moves (its position is part of the recipe).
    pub fn op_fixed(self, op: impl Into<Op>) -> Self {
        self.push(op.into(), None, true)
    }
    /// Append an operator pinned to `Cpu` or `Wgpu`. A pipeline has one CPU→GPU cut, so pinning
    /// an operator to `Wgpu` takes every operator after it to the GPU as well.
    pub fn op_on(self, op: impl Into<Op>, placement: Placement) -> Self {
        self.push(op.into(), Some(placement), false)
    }

    /// The declared operators, pins and fixed marks: the optimizer's input.
    pub fn logical_plan(&self) -> LogicalPlan {
        LogicalPlan {
            decoder: self.decode.clone(),
            ops: self.ops.clone(),
            pins: self.pins.clone(),
            fixed: self.fixed.clone(),
            device_batches: self.device_batches,
        }
    }

    /// Let the optimizer plan this pipeline from `profile` for `goal`: the builder comes back
    /// rewritten to the physical plan (operator order, GPU cut, fusion, threads, prefetch,
    /// cache; batch size from the goal), with the decisions for [`Optimized::explain`].
    /// Randomness is keyed by declared position, so a reordered plan draws the same numbers.
    pub fn optimize(mut self, profile: &CostProfile, goal: &Goal) -> Result<(Self, Optimized)> {
        profile.check()?;
        let optimized = optimizer::optimize(&self.logical_plan(), profile, goal)?;
        let p = &optimized.physical;
        let n = self.ops.len();
        let backend = match profile.gpu.as_ref().map(|g| g.backend.as_str()) {
            Some("cuda") => Placement::Cuda,
            _ => Placement::Wgpu,
        };
        let pick = |v: &[Option<Placement>]| p.order.iter().map(|&i| v[i]).collect::<Vec<_>>();
        let mut pins = pick(&self.pins);
        if p.cut < n && pins[p.cut].is_none() {
            pins[p.cut] = Some(backend);
        }
        self.ops = p.order.iter().map(|&i| self.ops[i].clone()).collect();
        self.ids = p.order.iter().map(|&i| self.ids[i]).collect();
        self.fixed = p.order.iter().map(|&i| self.fixed[i]).collect();
        self.pins = pins;
        self.placement = Placement::Cpu;
        self.settings.fuse = p.fuse;
        self.settings.threads = p.threads;
        self.settings.prefetch = p.prefetch;
        self.settings.max_prefetch = p.max_prefetch;
        self.settings.cache_bytes = p.cache_bytes;
        self.settings.approx_decode = goal.allow_approx;
        self.settings.batch_size = goal.batch_size;
        Ok((self, optimized))
    }
    /// Where operators not pinned run (default `Cpu`). Without a usable GPU the pipeline runs on
    /// the CPU and [`Pipeline::placement_reason`] says why.
    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }
    pub fn decode_limits(mut self, limits: DecodeLimits) -> Self {
        self.decode = Decoder::Image(DecodeImage::new(limits));
        self
    }
    /// Decode the samples as audio (WAV or FLAC) instead of images: the operators that follow
    /// are speech operators ([`crate::ops::AudioOp`]), and batches are padded along the last
    /// axis (time) with each sample's length in [`crate::Batch::lengths`].
    pub fn decode_audio(mut self, decoder: DecodeAudio) -> Self {
        self.decode = Decoder::Audio(decoder);
        self
    }
    /// Tokenize the samples as text (UTF-8; one line, JSON field or document each, as the
    /// source gives them) instead of decoding images: the operators that follow are text
    /// operators ([`crate::ops::TextOp`]), and batches are padded along the token axis with
    /// each sequence's length in [`crate::Batch::lengths`].
    pub fn decode_text(mut self, decoder: crate::ops::DecodeText) -> Self {
        self.decode = Decoder::Text(decoder);
        self
    }
    /// Length bucketing: batches of samples of similar length (sorted within windows of
    /// `windows` batches, then the batches shuffled when the pipeline shuffles), so less of each
    /// padded batch is padding; the order stays a pure function of (seed, epoch). Needs a source
    /// that knows its samples' sizes (text files, JSON lines, text folders).
    pub fn length_bucketing(mut self, windows: usize) -> Self {
        self.settings.bucket_windows = windows;
        self
    }
    /// Padded token batches: the id written past each sequence's end (default 0).
    pub fn pad_id(mut self, id: u32) -> Self {
        self.settings.pad_id = id;
        self
    }
    /// Sharded sources: read `shards` shards at a time, shuffling shards and then samples
    /// within each window of that many ([`Settings::shard_window`]).
    pub fn shard_window(mut self, shards: usize) -> Self {
        self.settings.shard_window = shards;
        self
    }

    /// Deliver only rank `rank`'s share of each epoch out of `world` ranks (contiguous, equal
    /// sizes, padded by wrapping unless [`PipelineBuilder::uneven`] says drop).
    pub fn shard(mut self, rank: usize, world: usize) -> Self {
        self.settings.rank = rank;
        self.settings.world = world;
        self
    }

    /// What ranks do with an epoch that does not divide evenly (default: wrap).
    pub fn uneven(mut self, uneven: crate::rng::Uneven) -> Self {
        self.settings.uneven = uneven;
        self
    }

    pub fn batch_size(mut self, n: usize) -> Self {
        self.settings.batch_size = n;
        self
    }
    pub fn drop_last(mut self, yes: bool) -> Self {
        self.settings.drop_last = yes;
        self
    }
    pub fn shuffle(mut self, yes: bool) -> Self {
        self.settings.shuffle = yes;
        self
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.settings.seed = seed;
        self
    }
    pub fn threads(mut self, n: usize) -> Self {
        self.settings.threads = n;
        self
    }
    pub fn prefetch(mut self, depth: usize) -> Self {
        self.settings.prefetch = depth;
        self
    }
    /// Padded batches: pad to exactly `n` positions (see [`Settings::pad_length`]); 0: to the
    /// batch's longest.
    pub fn pad_to_length(mut self, n: usize) -> Self {
        self.settings.pad_length = n;
        self
    }

    /// Padded batches: pad the time axis to a multiple of `n` (see [`Settings::pad_multiple`]).
    pub fn pad_to_multiple_of(mut self, n: usize) -> Self {
        self.settings.pad_multiple = n;
        self
    }
    /// Padded batches: the value written past each sample's length (default 0.0).
    pub fn pad_value(mut self, value: f32) -> Self {
        self.settings.pad_value = value;
        self
    }
    /// Let the adaptive controller move the prefetch depth up to `max` batches (see
    /// [`Settings::max_prefetch`]).
    pub fn adaptive_prefetch(mut self, max: usize) -> Self {
        self.settings.max_prefetch = max;
        self
    }
    pub fn on_error(mut self, policy: ErrorPolicy) -> Self {
        self.settings.policy = policy;
        self
    }
    pub fn fuse(mut self, yes: bool) -> Self {
        self.settings.fuse = yes;
        self
    }
    /// Allow approximate rewrites that change pixel values: DCT-scaled decode of a downscaled
    /// leading crop ([`Settings::approx_decode`]).
    pub fn allow_approx(mut self, yes: bool) -> Self {
        self.settings.approx_decode = yes;
        self
    }
    /// Cache decoded images (and the output of the leading non-random operators) in memory, up
    /// to `bytes`, so epochs after the first skip reading and decoding those samples.
    pub fn cache_bytes(mut self, bytes: usize) -> Self {
        self.settings.cache_bytes = bytes;
        self
    }
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    pub fn build(self) -> Result<Pipeline> {
        let s = &self.settings;
        for (name, v) in [
            ("batch_size", s.batch_size),
            ("threads", s.threads),
            ("prefetch", s.prefetch),
            ("pad_to_multiple_of", s.pad_multiple),
        ] {
            if v == 0 {
                return Err(Error::InvalidPipeline(format!("{name} must be at least 1")));
            }
        }
        if !s.pad_length.is_multiple_of(s.pad_multiple) {
            return Err(Error::InvalidPipeline(format!(
                "pad_to_length {} is not a multiple of pad_to_multiple_of {}",
                s.pad_length, s.pad_multiple
            )));
        }
        if !s.pad_value.is_finite() {
            return Err(Error::InvalidPipeline(format!(
                "pad_value must be a finite number, not {}",
                s.pad_value
            )));
        }
        if self.source.is_empty() {
            return Err(Error::InvalidPipeline(format!(
                "{} has no samples",
                self.source.describe()
            )));
        }
        if s.world == 0 || s.rank >= s.world {
            return Err(Error::InvalidPipeline(format!(
                "rank {} of world {}: the rank must be below the world size",
                s.rank, s.world
            )));
        }
        if s.shard_window > 0 && self.source.shard_starts().is_none() {
            return Err(Error::InvalidPipeline(format!(
                "shard_window needs sharded data; {} has no shards",
                self.source.describe()
            )));
        }
        if s.bucket_windows > 0 && self.source.length_hint(0).is_none() {
            return Err(Error::InvalidPipeline(format!(
                "length bucketing needs sample lengths, which {} does not know",
                self.source.describe()
            )));
        }
        let output = output_spec(&self.decode, &self.ops)?;
        let pack = packing(&self.ops, s)?;
        check_offsets(&self.decode, &self.ops)?;
        let (gpu, placement_reason) = self.place(&output, pack.is_some())?;
        // Pack runs in the epoch iterator, after the per-sample steps.
        let per_sample = self.ops.len() - usize::from(pack.is_some());
        let cpu_ops = gpu.as_ref().map_or(per_sample, |g| g.cut);
        let keep_separate = if s.cache_bytes > 0 {
            exec::deterministic_prefix(&self.ops[..cpu_ops])
        } else {
            0
        };
        let steps = exec::compile_steps(&self.ops[..cpu_ops], s.fuse, keep_separate);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(s.threads)
            .thread_name(|i| format!("sluice-worker-{i}"))
            .build()
            .map_err(|e| Error::Worker(format!("cannot start worker threads: {e}")))?;
        let plan = exec::Plan {
            decode: self.decode,
            op_ids: self.ids,
            ops: self.ops,
            steps,
            output,
            gpu,
            pack,
        };
        Ok(Pipeline {
            inner: Arc::new(exec::Shared::new(self.source, plan, self.settings, pool)),
            placement_reason: Arc::from(placement_reason),
        })
    }

    /// Deliver each batch in CUDA device memory ([`crate::Images::Device`]) instead of host
    /// memory: the tensor write (and any operator placed on the GPU) runs as CUDA kernels into
    /// a ring of `prefetch + 2` device slots fed through pinned staging memory. Without a CUDA
    /// device the pipeline delivers host batches and [`Pipeline::placement_reason`] says why.
    pub fn device_batches(mut self, on: bool) -> Self {
        self.device_batches = on;
        self
    }

    /// The CUDA device to use (its ordinal): one per process on a multi-GPU node. Without it
    /// sluice takes `LOCAL_RANK` (as torchrun and Ray set it), else device 0. sluice never
    /// changes the calling thread's current CUDA device.
    pub fn cuda_device(mut self, ordinal: usize) -> Self {
        self.cuda_device = Some(ordinal);
        self
    }

    /// Resolve the CPU→GPU cut (probing for an adapter only when a GPU is asked for).
    fn place(&self, output: &OutputSpec, packed: bool) -> Result<(Option<GpuSuffix>, String)> {
        let audio_or_text = matches!(self.decode, Decoder::Audio(_) | Decoder::Text(_));
        // The speech and token kernels write padded batches, the image ones fixed-size tensors.
        let dense = output.sample_shape.is_some() || (audio_or_text && output.padded);
        let mut backend =
            placement::gpu_backend(&self.pins, self.placement).map_err(Error::InvalidPipeline)?;
        let mut device_batches = self.device_batches;
        let mut device_note = String::new();
        if packed && device_batches {
            device_batches = false;
            device_note =
                "; device batches off (Pack forms its blocks on the host: packed batches are \
                 delivered in host memory)"
                    .into();
        }
        if device_batches {
            backend = match backend {
                None => Some(Placement::Cuda),
                Some(Placement::Wgpu) => {
                    return Err(Error::InvalidPipeline(
                        "device batches are CUDA memory, but operators are placed on wgpu".into(),
                    ))
                }
                other => other,
            };
        }
        let ordinal = match self.cuda_device {
            Some(n) => Ok(n),
            None => crate::backend::cuda::default_ordinal(),
        };
        let ctx = backend.map(|which| open_gpu(which, ordinal.clone()));
        let availability = match &ctx {
            None => GpuAvailability::NotProbed,
            Some(Err(why)) => GpuAvailability::Unavailable(why.clone()),
            Some(Ok(g)) => GpuAvailability::Available {
                name: g.runner.describe(),
                software: g.software,
            },
        };
        let mut cut =
            placement::resolve(&self.ops, &self.pins, self.placement, &availability, dense)
                .map_err(Error::InvalidPipeline)?;
        if let (Some(Ok(g)), Decoder::Text(_)) = (&ctx, &self.decode) {
            let suffix = &self.ops[cut.cut..];
            let why = (!suffix.is_empty())
                .then(|| exec::tokens_unsupported(suffix, g.runner.max_buffer_bytes()))
                .flatten();
            if let Some(why) = why {
                if self
                    .pins
                    .iter()
                    .any(|p| matches!(p, Some(Placement::Wgpu | Placement::Cuda)))
                {
                    return Err(Error::InvalidPipeline(format!(
                        "token operators are pinned to the GPU, but {why}"
                    )));
                }
                cut = placement::Cut {
                    cut: self.ops.len(),
                    reason: format!("{why}: every operator on CPU"),
                };
            }
        }
        cut.reason += &device_note;
        let mut engine = None;
        if device_batches {
            let cuda = match &ctx {
                Some(Ok(g)) => g.cuda.clone().ok_or("no CUDA device opened".to_string()),
                // Said once: the placement reason may already say why.
                Some(Err(why)) if cut.reason.contains(why.as_str()) => {
                    Err("no CUDA device".to_string())
                }
                Some(Err(why)) => Err(why.clone()),
                None => Err("no GPU probed".to_string()),
            };
            match cuda.and_then(|d| self.device_cut(output, cut.cut).map(|c| (d, c))) {
                Ok((device, device_cut)) => {
                    let slots = self.settings.prefetch.max(self.settings.max_prefetch) + 2;
                    let e = TransferEngine::new(device, slots).map_err(Error::Worker)?;
                    cut.cut = device_cut;
                    cut.reason += &format!("; device batches: CUDA memory, {slots} slots");
                    engine = Some(Arc::new(e));
                }
                Err(why) => cut.reason += &format!("; device batches off ({why}): host batches"),
            }
        }
        let gpu = match ctx {
            Some(Ok(g)) if cut.cut < self.ops.len() || engine.is_some() => {
                Some(GpuSuffix::start(cut.cut, g.runner, engine)?)
            }
            _ => None,
        };
        Ok((gpu, cut.reason))
    }

    /// Where the cut goes for device batches: the tensor write always runs on the device, so a
    /// trailing Normalize/Cast left on the CPU moves across (unless pinned there). Speech and
    /// text likewise: their batches are padded on the device, and a last operator left on the
    /// CPU that has a kernel moves across; speech needs one operator there at least.
    fn device_cut(&self, output: &OutputSpec, cut: usize) -> std::result::Result<usize, String> {
        let image = matches!(self.decode, Decoder::Image(_));
        if image {
            let Some(bytes) = output.sample_bytes() else {
                return Err("the output has no fixed size".into());
            };
            if bytes % 4 != 0 {
                return Err(format!(
                    "a sample's tensor is {bytes} bytes, not whole 32-bit words"
                ));
            }
        }
        let n = self.ops.len();
        let movable = |last: &Op| match image {
            true => last.produces_tensor(),
            false => last.spec().runs_on_gpu(),
        };
        match self.ops.last() {
            Some(last) if cut == n && movable(last) => {
                if self.pins[n - 1] == Some(Placement::Cpu) {
                    Err(format!("{} is pinned to the CPU", last.name()))
                } else {
                    Ok(n - 1)
                }
            }
            // Token ids alone may go: the device pads them. Speech values and embeddings need
            // an operator of theirs on the device.
            _ if cut == n && !image && output.dtype != DType::I32 => Err(format!(
                "{} has no GPU kernel: none of the pipeline's operators would run on the device",
                self.ops.last().map_or("the decoder", Op::name)
            )),
            _ => Ok(cut),
        }
    }
}

/// An opened GPU backend: the runner, whether it is a software rasterizer, and the CUDA device
/// when it is one.
struct OpenedGpu {
    runner: Arc<dyn GpuRunner>,
    software: bool,
    cuda: Option<Arc<CudaDevice>>,
}

/// Open the GPU backend `which` asks for (Auto: a CUDA device if one opens, else wgpu), or say
/// why it cannot be used.
fn open_gpu(
    which: Placement,
    cuda_ordinal: std::result::Result<usize, String>,
) -> std::result::Result<OpenedGpu, String> {
    let wgpu = || {
        WgpuContext::new().map(|c| OpenedGpu {
            software: c.is_software(),
            runner: Arc::new(c),
            cuda: None,
        })
    };
    let cuda = || {
        cuda_ordinal.clone().and_then(CudaDevice::open).map(|d| {
            let d = Arc::new(d);
            OpenedGpu {
                runner: d.clone(),
                software: false,
                cuda: Some(d),
            }
        })
    };
    match which {
        Placement::Cuda => cuda(),
        Placement::Auto => {
            cuda().or_else(|cuda_why| wgpu().map_err(|wgpu_why| format!("{cuda_why}; {wgpu_why}")))
        }
        _ => wgpu(),
    }
}

/// Check operator order (each operator takes what the one before produces) and work out the
/// output type and (if fixed) shape.
fn output_spec(decoder: &Decoder, ops: &[Op]) -> Result<OutputSpec> {
    let mut kind = decoder.output();
    let mut producer = decoder.name();
    for (i, op) in ops.iter().enumerate() {
        op.validate().map_err(|e| {
            Error::InvalidPipeline(format!("{} (operator {}): {e}", op.name(), i + 1))
        })?;
        let spec = op.spec();
        if matches!(kind, ValueKind::Tensor { .. }) {
            return Err(Error::InvalidPipeline(format!(
                "{} (operator {}) follows a tensor-producing operator; image operators must come \
                 before Normalize/Cast and only one of those may end the pipeline",
                op.name(),
                i + 1
            )));
        }
        if spec.input != kind {
            return Err(Error::InvalidPipeline(format!(
                "{} (operator {}) takes {} but {producer} produces {}",
                op.name(),
                i + 1,
                kind_name(spec.input),
                kind_name(kind)
            )));
        }
        kind = spec.output;
        producer = op.name();
        debug_assert!(spec.kind != OpKind::Decode);
    }
    if kind == ValueKind::Complex {
        return Err(Error::InvalidPipeline(format!(
            "the pipeline ends with complex STFT values from {producer}: add ComplexNorm (or a \
             spectrogram with a power) to make real features"
        )));
    }
    let padded = |dtype, pad_leading| {
        Ok(OutputSpec {
            dtype,
            layout: Layout::Chw,
            sample_shape: None,
            padded: true,
            pad_leading,
        })
    };
    match kind {
        ValueKind::Audio | ValueKind::Features => return padded(DType::F32, false),
        ValueKind::Tokens => return padded(DType::I32, true),
        ValueKind::Embeddings => return padded(DType::F32, true),
        _ => {}
    }
    let mut size: Option<(u32, u32)> = None; // None: data-dependent
    for op in ops {
        size = match op.spec().size {
            SizeRule::Fixed { height, width } => Some((width, height)),
            SizeRule::Same => size,
            SizeRule::ShorterSide { .. } | SizeRule::DataDependent => None,
        };
    }
    let (dtype, layout) = match kind {
        ValueKind::Tensor { dtype, layout } => (dtype, layout),
        _ => (DType::U8, Layout::Hwc),
    };
    Ok(OutputSpec {
        dtype,
        layout,
        sample_shape: size.map(|(w, h)| image_shape(h as usize, w as usize, layout)),
        padded: false,
        pad_leading: false,
    })
}

/// The pipeline's packing, when its last operator is `Pack`: Pack nowhere else, and only on
/// plain token ids (no MlmMask labels, no embeddings) with no fixed padded length.
fn packing(ops: &[Op], settings: &Settings) -> Result<Option<crate::text::PackSpec>> {
    use crate::ops::TextOp;
    let at = |i: usize| match ops.get(i) {
        Some(Op::Text(TextOp::Pack(spec))) => Some(*spec),
        _ => None,
    };
    let last = ops.len().checked_sub(1);
    if let Some(i) = (0..ops.len()).find(|&i| at(i).is_some() && Some(i) != last) {
        return Err(Error::InvalidPipeline(format!(
            "Pack (operator {}) forms the batches, so it must be the last operator",
            i + 1
        )));
    }
    let Some(spec) = last.and_then(at) else {
        return Ok(None);
    };
    if let Some(op) = ops
        .iter()
        .find(|o| matches!(o.spec().kind, OpKind::MlmMask | OpKind::User))
    {
        return Err(Error::InvalidPipeline(format!(
            "Pack takes plain token ids; {} before it is not supported",
            op.name()
        )));
    }
    if settings.pad_length > 0 || settings.bucket_windows > 0 {
        return Err(Error::InvalidPipeline(
            "Pack makes full blocks of seq_len: pad_to_length and length bucketing do not apply"
                .into(),
        ));
    }
    Ok(Some(spec))
}

/// Token offsets travel with token ids to the batch: not into embeddings or packed blocks.
fn check_offsets(decode: &Decoder, ops: &[Op]) -> Result<()> {
    if !matches!(decode, Decoder::Text(d) if d.offsets) {
        return Ok(());
    }
    match ops
        .iter()
        .find(|o| matches!(o.spec().kind, OpKind::EmbeddingLookup | OpKind::Pack))
    {
        Some(op) => Err(Error::InvalidPipeline(format!(
            "token offsets go out with token ids; {} makes {}, which carry none",
            op.name(),
            match op.spec().kind {
                OpKind::Pack => "packed blocks",
                _ => "embeddings",
            }
        ))),
        None => Ok(()),
    }
}

/// How a value kind reads in an error message.
fn kind_name(kind: ValueKind) -> &'static str {
    match kind {
        ValueKind::Encoded => "encoded bytes",
        ValueKind::ImageU8 => "an image",
        ValueKind::Tensor { .. } => "a tensor",
        ValueKind::Audio => "audio",
        ValueKind::Features => "spectral features",
        ValueKind::Complex => "a complex STFT",
        ValueKind::Tokens => "token ids",
        ValueKind::Embeddings => "embeddings",
    }
}

/// A built pipeline. Cheap to clone; epochs can be iterated one after another.
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<exec::Shared>,
    placement_reason: Arc<str>,
}

impl Pipeline {
    pub fn builder(source: impl Source + 'static) -> PipelineBuilder {
        Self::builder_shared(Arc::new(source))
    }

    pub fn builder_shared(source: Arc<dyn Source>) -> PipelineBuilder {
        PipelineBuilder {
            source,
            decode: Decoder::default(),
            ops: Vec::new(),
            pins: Vec::new(),
            ids: Vec::new(),
            fixed: Vec::new(),
            placement: Placement::Cpu,
            settings: Settings::default(),
            device_batches: false,
            cuda_device: None,
        }
    }

    /// The batches of epoch `epoch`, in sampler order. Dropping the iterator mid-epoch stops the
    /// workers and waits for them.
    pub fn epoch(&self, epoch: u32) -> Result<EpochIter> {
        Ok(EpochIter::new(self.inner.clone(), epoch, 0, 1))
    }

    /// The batches of epoch `epoch` from batch `start` on: exactly the batches an uninterrupted
    /// iterator delivers from that position (every batch is a pure function of seed, epoch and
    /// position), so a run resumes from ([`EpochIter::epoch`], [`EpochIter::next_index`]).
    /// `start` may equal the number of batches (an epoch that had finished: nothing left).
    ///
    /// A packed pipeline ([`crate::text::PackSpec`]) knows its batches only by tokenizing, so
    /// it resumes by replaying the epoch's first `start` batches (computed and dropped; the
    /// cost of tokenizing them once more). Past the end it delivers nothing.
    pub fn epoch_from(&self, epoch: u32, start: u64) -> Result<EpochIter> {
        self.epoch_strided(epoch, start, 1)
    }

    /// Batches `start`, `start + step`, `start + 2·step`, ... of epoch `epoch`: one of `step`
    /// iterators that split an epoch by batch (each batch a pure function of seed, epoch and
    /// position, so together they deliver exactly the epoch's batches; `sluice.ray` runs one
    /// per worker). The read-ahead of remote shards fetches only these batches' samples.
    /// Refused for a packed pipeline with `step > 1` (its batches exist only by tokenizing
    /// every document before them).
    pub fn epoch_strided(&self, epoch: u32, start: u64, step: u64) -> Result<EpochIter> {
        if step == 0 {
            return Err(Error::InvalidPipeline(
                "an epoch split by batch needs a step of at least 1".into(),
            ));
        }
        if step > 1 && self.inner.pack.is_some() {
            return Err(Error::InvalidPipeline(format!(
                "a packed pipeline cannot split an epoch by batch (step {step}): each block \
                 depends on every document before it; run it as one stream (step 1)"
            )));
        }
        if let Some(n) = self.batches_per_epoch() {
            if start > n {
                return Err(Error::InvalidPipeline(format!(
                    "cannot start epoch {epoch} at batch {start}: it has {n} batches"
                )));
            }
        }
        Ok(EpochIter::new(self.inner.clone(), epoch, start, step))
    }

    /// The state of a run at batch `position` of `epoch` (see [`EpochIter::state`]).
    pub fn state_at(&self, epoch: u32, position: u64) -> crate::state::PipelineState {
        self.inner.state(epoch, position)
    }

    /// Resume a run from `state`: the rest of its epoch, exactly as an uninterrupted run
    /// delivers it. Refused when the state comes from other data, another declaration, seed
    /// or rank.
    pub fn resume(&self, state: &crate::state::PipelineState) -> Result<EpochIter> {
        let mine = self.inner.state(state.epoch, state.position);
        let differs = |what: &str, saved: String, here: String| {
            Error::InvalidPipeline(format!(
                "cannot resume: the state was saved with {what} {saved}, this pipeline has {here}"
            ))
        };
        if state.seed != mine.seed {
            return Err(differs(
                "seed",
                state.seed.to_string(),
                mine.seed.to_string(),
            ));
        }
        if (state.rank, state.world) != (mine.rank, mine.world) {
            return Err(Error::InvalidPipeline(format!(
                "cannot resume: the state was saved by rank {} of {}, this pipeline is rank {} \
                 of {}",
                state.rank, state.world, mine.rank, mine.world
            )));
        }
        if state.fingerprint != mine.fingerprint {
            return Err(Error::InvalidPipeline(format!(
                "cannot resume: the state's fingerprint {} is not this pipeline's {} (other \
                 data, or another declaration: operators, batch size, shuffling, bucketing, \
                 shard window)",
                state.fingerprint, mine.fingerprint
            )));
        }
        self.epoch_resumed(state.epoch, state.position, state.packed)
    }

    /// The batches of `epoch` from batch `position` on; a packed pipeline given its saved
    /// stream position (`EpochIter::packed_position`) rebuilds the stream from the chunks it
    /// holds instead of replaying the epoch. No checks of where the values came from: see
    /// [`Pipeline::resume`].
    pub fn epoch_resumed(
        &self,
        epoch: u32,
        position: u64,
        packed: Option<crate::state::PackedPosition>,
    ) -> Result<EpochIter> {
        match packed {
            Some(at) if self.inner.pack.is_some() => {
                EpochIter::packed_from(self.inner.clone(), epoch, position, at)
            }
            _ => self.epoch_from(epoch, position),
        }
    }

    pub fn len(&self) -> usize {
        self.inner.source.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.source.is_empty()
    }

    /// Batches in each epoch; None for a packed pipeline (its count depends on how many tokens
    /// the documents make).
    pub fn batches_per_epoch(&self) -> Option<u64> {
        self.inner.batches_per_epoch()
    }

    /// The packing, when the pipeline ends in `Pack`.
    pub fn packing(&self) -> Option<crate::text::PackSpec> {
        self.inner.pack
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub fn output(&self) -> &OutputSpec {
        &self.inner.output
    }

    pub fn ops(&self) -> &[Op] {
        &self.inner.ops
    }

    /// The steps the CPU executor runs (operators, with fused groups).
    pub fn steps(&self) -> &[Step] {
        &self.inner.steps
    }

    /// Index of the first operator that runs on the GPU (`ops().len()` when none does).
    pub fn gpu_cut(&self) -> usize {
        self.inner
            .gpu
            .as_ref()
            .map_or(self.inner.ops.len(), |g| g.cut)
    }

    /// The GPU adapter running the suffix, if any.
    pub fn gpu_device(&self) -> Option<String> {
        self.inner.gpu.as_ref().map(|g| g.ctx.describe())
    }

    /// Whether batches arrive in CUDA device memory ([`PipelineBuilder::device_batches`] and a
    /// CUDA device opened).
    pub fn device_batches(&self) -> bool {
        self.engine().is_some()
    }

    fn engine(&self) -> Option<&Arc<TransferEngine>> {
        self.inner.gpu.as_ref().and_then(|g| g.engine.as_ref())
    }

    /// The CUDA context device batches live in: create the training loop's streams from it.
    pub fn cuda_context(&self) -> Option<Arc<cudarc::driver::CudaContext>> {
        self.engine().map(|e| e.context().clone())
    }

    /// The CUDA device of a pipeline delivering device batches.
    pub fn cuda_device(&self) -> Option<Arc<CudaDevice>> {
        self.engine().map(|e| e.device().clone())
    }

    /// The transfer engine's counters (device batches only).
    pub fn transfer_stats(&self) -> Option<TransferStats> {
        self.engine().map(|e| e.stats())
    }

    /// Plain pinned host-to-device bandwidth for `bytes` on the engine's copy stream, GB/s.
    pub fn raw_pinned_gbps(&self, bytes: usize) -> Option<std::result::Result<f64, String>> {
        self.engine().map(|e| e.raw_pinned_gbps(bytes))
    }

    /// Checking mode for the GPU suffix: poison kernel outputs before each run so unwritten
    /// elements show (costs a pass per output; for `--verify` and tests).
    pub fn check_gpu_outputs(&self, on: bool) {
        if let Some(g) = &self.inner.gpu {
            g.ctx.set_poison(on);
        }
    }

    /// Checking mode with kernel outputs filled with `byte`: runs with two different bytes give
    /// the same batches unless some element is never written, whatever its value.
    pub fn check_gpu_outputs_with(&self, byte: u8) {
        if let Some(g) = &self.inner.gpu {
            g.ctx.set_poison_byte(byte);
        }
    }

    /// Whether samples are decoded as audio (batches are padded features or audio).
    pub fn decodes_audio(&self) -> bool {
        matches!(self.inner.decode, Decoder::Audio(_))
    }

    /// Whether samples are tokenized text (batches are padded token ids or embeddings).
    pub fn decodes_text(&self) -> bool {
        matches!(self.inner.decode, Decoder::Text(_))
    }

    /// Why the operators run where they do.
    pub fn placement_reason(&self) -> &str {
        &self.placement_reason
    }

    /// Counters since the pipeline was built: time per step, samples, skips, buffer allocations.
    pub fn stats(&self) -> RunStats {
        self.inner.stats()
    }

    /// A readable description of the plan.
    pub fn describe(&self) -> String {
        let inner = &self.inner;
        let s = &inner.settings;
        let mut out = format!("source: {}\n", inner.source.describe());
        out += "steps:\n";
        for step in &inner.steps {
            out += &format!("  {} [cpu]\n", step.name);
        }
        if let Some(p) = inner.pack {
            out += &format!(
                "  Pack {} (in order, as batches are formed) [cpu]\n",
                p.seq_len
            );
        }
        if let Some(g) = &inner.gpu {
            let names: Vec<&str> = inner.ops[g.cut..].iter().map(|o| o.name()).collect();
            out += &format!("  {} [{}]\n", names.join("+"), g.ctx.describe());
        }
        out += &format!("placement: {}\n", self.placement_reason);
        let shape = match &inner.output.sample_shape {
            Some(shape) => format!("dense {shape:?}"),
            None if inner.output.padded => "padded".to_string(),
            None => "ragged".to_string(),
        };
        // Audio batches are [n, rows, time], token batches [n, tokens(, dim)]: no image layout.
        let layout = if let Some(p) = inner.pack {
            let separator = p
                .separator
                .map_or("nothing".to_string(), |id| format!("id {id}"));
            format!(
                "[blocks, {}]: documents packed in order, {separator} after each, with labels \
                 and cu_seqlens; the epoch's last block padded with id {}",
                p.seq_len, s.pad_id
            )
        } else if inner.output.pad_leading {
            let multiple = match s.pad_multiple {
                1 => String::new(),
                n => format!(" rounded up to a multiple of {n}"),
            };
            let fill = match inner.output.dtype {
                DType::I32 => format!("id {}", s.pad_id),
                _ => format!("{}", s.pad_value),
            };
            format!("[tokens(, dim)], lengths per sample, tokens padded to the longest{multiple} with {fill}")
        } else if inner.output.padded {
            let multiple = match s.pad_multiple {
                1 => String::new(),
                n => format!(" rounded up to a multiple of {n}"),
            };
            format!(
                "[rows, time], lengths per sample, time padded to the longest{multiple} with {}",
                s.pad_value
            )
        } else {
            format!("{:?}", inner.output.layout).to_uppercase()
        };
        if s.cache_bytes > 0 && matches!(inner.decode, Decoder::Image(_)) {
            let prefix = exec::deterministic_prefix(&inner.ops);
            let names: Vec<&str> = std::iter::once("DecodeImage")
                .chain(inner.ops[..prefix].iter().map(|o| o.name()))
                .collect();
            out += &format!(
                "cache: output of {} kept in memory, budget {} MiB\n",
                names.join("+"),
                s.cache_bytes >> 20
            );
        }
        out += &format!(
            "output: {} {} {}\nbatch {} (drop_last {}), shuffle {}{}, seed {}, threads {}, prefetch {}, on error {:?}\n",
            shape,
            inner.output.dtype.name(),
            layout,
            s.batch_size,
            s.drop_last,
            s.shuffle,
            match s.bucket_windows {
                0 => String::new(),
                k => format!(" (length-bucketed in windows of {k} batches)"),
            },
            s.seed,
            s.threads,
            s.prefetch,
            s.policy
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Workload;
    use crate::ops::{DecodeText, TextOp};
    use crate::source::InMemory;

    fn builder(w: Workload) -> PipelineBuilder {
        w.add_ops(Pipeline::builder(InMemory::new(Vec::new())))
    }

    fn device_cut(b: &PipelineBuilder, cut: usize) -> std::result::Result<usize, String> {
        b.device_cut(&output_spec(&b.decode, &b.ops).unwrap(), cut)
    }

    /// Keep the first `n` operators of `b`.
    fn first(mut b: PipelineBuilder, n: usize) -> PipelineBuilder {
        b.ops.truncate(n);
        b.pins.truncate(n);
        b.ids.truncate(n);
        b.fixed.truncate(n);
        b
    }

    /// The device-batch cut: a last operator left on the CPU with a kernel (Normalize,
    /// FeatureNormalize, EmbeddingLookup, MlmMask) crosses over unless pinned there; a cut
    /// already inside the pipeline stays; token ids alone are padded on the device; speech with
    /// no kernel to run is refused with the operator named.
    #[test]
    fn device_batches_take_the_last_operator_with_a_kernel_across() {
        for w in [
            Workload::Rn50Val,
            Workload::AsrVal,
            Workload::Nlp,
            Workload::BertMlm,
        ] {
            let mut b = builder(w);
            let n = b.ops.len();
            assert_eq!(device_cut(&b, n), Ok(n - 1), "{w:?}");
            assert_eq!(device_cut(&b, 1), Ok(1), "{w:?}");
            b.pins[n - 1] = Some(Placement::Cpu);
            let err = device_cut(&b, n).unwrap_err();
            assert!(err.contains("pinned to the CPU"), "{w:?}: {err}");
        }
        let ids = Pipeline::builder(InMemory::new(Vec::new()))
            .decode_text(DecodeText::new(crate::text::TextTokenizer::gpt2()))
            .op(TextOp::Truncate {
                max_len: 8,
                keep_end: None,
            });
        assert_eq!(device_cut(&ids, 1), Ok(1));
        // DecodeAudio → Resample → PreEmphasis: nothing with a kernel.
        let waveform = first(builder(Workload::AsrVal), 2);
        let err = device_cut(&waveform, 2).unwrap_err();
        assert!(err.contains("PreEmphasis has no GPU kernel"), "{err}");
    }
}

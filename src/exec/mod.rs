//! The CPU executor: per-sample processing on a worker pool, batches assembled in parallel into
//! pooled buffers, delivered in sampler order through a bounded prefetch window.

mod batcher;
mod cache;
mod controller;
mod gpu;
mod iter;
mod sample;
mod spectral;
mod stats;
mod text_gpu;

pub use controller::PrefetchController;
pub use gpu::{stages_for, GpuSuffix};
pub use iter::{EpochIter, Wait};
pub use spectral::{draw_spectral, spectral_input, spectral_stages, SpectralDraws};
pub use stats::{RunStats, StageStat};
pub use text_gpu::{draw_tokens, token_input, token_stages, tokens_unsupported, TokenDraws};

use crate::batch::BufferPool;
use crate::ops::{Decoder, Op, OpKind};
use crate::pipeline::{OutputSpec, Settings};
use crate::source::Source;
use crate::text::PackSpec;
use cache::PrefixCache;
use stats::StageTimers;
use std::sync::Arc;

/// What one executor step does.
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// An image-to-image operator (index into the pipeline's operators).
    Image(usize),
    /// A speech operator (audio or features in and out).
    Audio(usize),
    /// TimeStretch directly followed by ComplexNorm, fused: only the interpolated magnitudes
    /// are computed (no phases), see [`crate::audio::time_stretch_norm`].
    StretchNorm { stretch: usize, norm: usize },
    /// A pipeline-ending EmbeddingLookup, fused into the batch: samples keep their ids (checked
    /// against the table here) and the batcher writes each id's row straight into the padded
    /// batch tensor — one write per value instead of a per-sample matrix copied twice.
    Gather(usize),
    /// The tensor-producing operator `op`, writing straight into the batch slot. When fused it
    /// absorbs a directly preceding crop/resize (`resample`, run into per-thread scratch) and a
    /// directly preceding flip (folded into the write, no pass of its own).
    Tensor {
        resample: Option<usize>,
        flip: Option<usize>,
        op: usize,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: String,
    pub kind: StepKind,
}

fn is_resample(op: &Op) -> bool {
    matches!(op.spec().kind, OpKind::RandomResizedCrop | OpKind::Resize)
}

/// Number of leading operators that draw no random numbers (and produce an image): with decode,
/// the deterministic prefix whose output can be cached across epochs.
pub fn deterministic_prefix(ops: &[Op]) -> usize {
    ops.iter()
        .take_while(|op| !op.spec().random && !op.produces_tensor())
        .count()
}

/// Where the CPU's fused tail `[crop/resize] → [flip] → Normalize/Cast` starts in `ops`
/// (`ops.len()` when the pipeline does not end in a tensor operator). The first `keep_separate`
/// operators never join it.
pub fn fused_tail_start(ops: &[Op], keep_separate: usize) -> usize {
    let n = ops.len();
    if n == 0 || !ops[n - 1].produces_tensor() {
        return n;
    }
    let mut first = n - 1;
    if first > keep_separate && ops[first - 1].spec().kind == OpKind::RandomHorizontalFlip {
        first -= 1;
    }
    if first > keep_separate && is_resample(&ops[first - 1]) {
        first -= 1;
    }
    first
}

/// Turn the operator list into executor steps. With `fuse`, the pipeline's tail
/// `[crop/resize] → [flip] → Normalize/Cast` becomes one step: crop+resize into scratch, then the
/// flip and normalization in the single pass that writes the batch slot. The first
/// `keep_separate` operators always get a step each (the cache boundary must fall between steps).
pub fn compile_steps(ops: &[Op], fuse: bool, keep_separate: usize) -> Vec<Step> {
    let single = |i: usize| {
        let op = &ops[i];
        let kind = if op.produces_tensor() {
            StepKind::Tensor {
                resample: None,
                flip: None,
                op: i,
            }
        } else if op.spec().input != crate::ops::ValueKind::ImageU8 {
            StepKind::Audio(i)
        } else {
            StepKind::Image(i)
        };
        Step {
            name: op.name().to_string(),
            kind,
        }
    };
    let first = fused_tail_start(ops, keep_separate);
    if fuse && first == ops.len() {
        return fuse_stretch_norm(ops, single);
    }
    if !fuse || first == ops.len() {
        return (0..ops.len()).map(single).collect();
    }
    let last = ops.len() - 1;
    let member = |is: &dyn Fn(&Op) -> bool| (first..last).find(|&i| is(&ops[i]));
    let flip = member(&|o| o.spec().kind == OpKind::RandomHorizontalFlip);
    let resample = member(&is_resample);
    let mut steps: Vec<Step> = (0..first).map(single).collect();
    let names: Vec<&str> = ops[first..].iter().map(|o| o.name()).collect();
    steps.push(Step {
        name: names.join("+"),
        kind: StepKind::Tensor {
            resample,
            flip,
            op: last,
        },
    });
    steps
}

/// One step per operator, except TimeStretch → ComplexNorm pairs, which become one fused step,
/// and a final EmbeddingLookup, which the batcher does into the batch tensor.
fn fuse_stretch_norm(ops: &[Op], single: impl Fn(usize) -> Step) -> Vec<Step> {
    let kind = |i: usize| ops.get(i).map(|o| o.spec().kind);
    let mut steps = Vec::new();
    let mut i = 0;
    while i < ops.len() {
        if i + 1 == ops.len() && kind(i) == Some(OpKind::EmbeddingLookup) {
            steps.push(Step {
                name: format!("{} (into the batch)", ops[i].name()),
                kind: StepKind::Gather(i),
            });
            break;
        }
        if kind(i) == Some(OpKind::TimeStretch) && kind(i + 1) == Some(OpKind::ComplexNorm) {
            steps.push(Step {
                name: format!("{}+{}", ops[i].name(), ops[i + 1].name()),
                kind: StepKind::StretchNorm {
                    stretch: i,
                    norm: i + 1,
                },
            });
            i += 2;
        } else {
            steps.push(single(i));
            i += 1;
        }
    }
    steps
}

/// The leading operators (from `ops[0]`) whose crop is pushed into decode (crop-aware decode):
/// only the source pixels they read are decoded ([`crate::ops::CropBox::reads`]), into their place in a buffer
/// of the whole image's size, so every later draw and weight is the same and the output bytes
/// are unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CropDecode {
    /// A leading RandomResizedCrop: its crop is drawn from the header's size (the same draw the
    /// step makes later) and its box is decoded.
    RandomCrop,
    /// A leading Resize directly followed by CenterCrop: the source of the kept centre.
    ResizeCenter,
}

/// What crop-aware decode asks of one image: the region to decode, and the leading operator's
/// crop box, drawn once from the header's size (the step applies it instead of drawing again).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropPlan {
    /// The first operator's box in the file's full-size pixels.
    pub crop: crate::ops::CropBox,
    pub region: crate::ops::Region,
}

impl CropDecode {
    /// The part of a `width`×`height` image that the leading crop of `ops` reads, drawing from
    /// `rng` (the first operator's stream) where it is random. With `approx`, a crop shrunk by
    /// 2× or more on both axes is read from the image decoded at 1/2, 1/4 or 1/8 scale
    /// ([`crate::ops::CropBox::dct_shrink`]); otherwise at full size, exactly.
    pub fn plan(
        &self,
        ops: &[Op],
        rng: impl FnOnce() -> crate::rng::SampleRng,
        (width, height): (u32, u32),
        approx: bool,
    ) -> Option<CropPlan> {
        let crop = match ops[0].draw(&mut rng(), width, height) {
            crate::ops::OpParams::Crop(b) => b,
            _ => return None,
        };
        let shrink = if approx { crop.dct_shrink() } else { 1 };
        let (w, h) = (
            crate::ops::jpeg::scaled(width, shrink),
            crate::ops::jpeg::scaled(height, shrink),
        );
        let scaled = crop.shrunk(shrink);
        let rect = match (self, ops) {
            (CropDecode::RandomCrop, _) => scaled.reads(w, h),
            (CropDecode::ResizeCenter, [_, Op::CenterCrop(c), ..]) => {
                // The kept part of the resized image along one axis (the whole axis when the
                // crop is larger and pads).
                let kept = |size: u32, crop: u32| {
                    let off = crate::ops::center_offset(size, crop).max(0) as u32;
                    (off, crop.min(size - off))
                };
                let (left, kw) = kept(crop.out_width, c.width);
                let (top, kh) = kept(crop.out_height, c.height);
                let out = crate::ops::Rect {
                    left,
                    top,
                    width: kw,
                    height: kh,
                };
                scaled.reads_for(out, w, h)
            }
            _ => return None,
        };
        Some(CropPlan {
            crop,
            region: crate::ops::Region { rect, shrink },
        })
    }
}

/// The crop pushed into decode for these operators, if any: a leading RandomResizedCrop, or
/// Resize → CenterCrop, running on the CPU (`cpu_ops` from the start), in a plan that fuses and
/// caches nothing (a cache keeps decoded or resized images, which must then be whole).
pub fn crop_into_decode(
    ops: &[Op],
    cpu_ops: usize,
    fuse: bool,
    caches: bool,
) -> Option<CropDecode> {
    if !fuse || caches {
        return None;
    }
    match ops {
        [Op::RandomResizedCrop(_), ..] if cpu_ops >= 1 => Some(CropDecode::RandomCrop),
        [Op::Resize(_), Op::CenterCrop(_), ..] if cpu_ops >= 2 => Some(CropDecode::ResizeCenter),
        _ => None,
    }
}

/// Everything the workers share for the life of a pipeline.
pub struct Shared {
    pub source: Arc<dyn Source>,
    pub decode: Decoder,
    pub ops: Vec<Op>,
    pub op_ids: Vec<u32>,
    pub steps: Vec<Step>,
    pub output: OutputSpec,
    pub settings: Settings,
    pool: rayon::ThreadPool,
    buffers: Arc<BufferPool>,
    /// Per-sample staging buffers for ragged batches.
    sample_buffers: Arc<BufferPool>,
    timers: StageTimers,
    cache: Option<PrefixCache>,
    /// The leading crop decoded by window ([`crop_into_decode`]).
    crop_decode: Option<CropDecode>,
    /// The operators from the CPU→GPU cut on, when some run on the GPU.
    pub gpu: Option<GpuSuffix>,
    /// A final `Pack`: the epoch iterator packs the samples' ids into blocks.
    pub pack: Option<PackSpec>,
}

/// Timer slots: read, decode, then one per step.
const READ_STAGE: usize = 0;
const DECODE_STAGE: usize = 1;
const FIRST_STEP_STAGE: usize = 2;

/// What the executor runs, besides the source and settings.
pub struct Plan {
    pub decode: Decoder,
    pub ops: Vec<Op>,
    /// Each operator's RNG stream id: its declared position + 1 (0 is decode), kept when the
    /// optimizer reorders, so reordering never changes what is drawn.
    pub op_ids: Vec<u32>,
    /// CPU steps (for `ops[..gpu.cut]` when there is a GPU suffix).
    pub steps: Vec<Step>,
    pub output: OutputSpec,
    pub gpu: Option<GpuSuffix>,
    pub pack: Option<PackSpec>,
}

impl Shared {
    pub fn new(
        source: Arc<dyn Source>,
        plan: Plan,
        settings: Settings,
        pool: rayon::ThreadPool,
    ) -> Self {
        let Plan {
            decode,
            ops,
            op_ids,
            steps,
            output,
            gpu,
            pack,
        } = plan;
        let cpu_ops = gpu.as_ref().map_or(ops.len(), |g| g.cut);
        // The prefix cache holds decoded images (audio pipelines do not use it yet).
        let caches_images = matches!(decode, Decoder::Image(_));
        let cache = (settings.cache_bytes > 0 && caches_images).then(|| {
            // Prefix operators are single steps (see `compile_steps`), so steps = operators.
            PrefixCache::new(
                source.len(),
                settings.cache_bytes,
                deterministic_prefix(&ops[..cpu_ops]),
            )
        });
        let crop_decode = if caches_images {
            crop_into_decode(&ops, cpu_ops, settings.fuse, cache.is_some())
        } else {
            None
        };
        let mut names = vec!["read".to_string(), decode.name().to_string()];
        names.extend(steps.iter().map(|s| s.name.clone()));
        if let Some(g) = &gpu {
            let suffix: Vec<&str> = ops[g.cut..].iter().map(|o| o.name()).collect();
            let described = g.ctx.describe();
            let backend = described.split(':').next().unwrap_or("gpu");
            let suffix = if suffix.is_empty() {
                "tensor write".to_string()
            } else {
                suffix.join("+")
            };
            names.push(format!("{backend}: {suffix}"));
        }
        Shared {
            source,
            decode,
            ops,
            op_ids,
            steps,
            output,
            settings,
            pool,
            buffers: BufferPool::new(),
            sample_buffers: BufferPool::new(),
            timers: StageTimers::new(names),
            cache,
            crop_decode,
            gpu,
            pack,
        }
    }

    /// Timer slot of the GPU suffix (after every CPU step).
    fn gpu_stage(&self) -> usize {
        FIRST_STEP_STAGE + self.steps.len()
    }

    /// The positions of epoch `epoch` this process delivers, in order: the sampler's order
    /// (shard windows, length buckets) cut to this rank's share.
    pub fn epoch_order(&self, epoch: u32) -> Vec<u64> {
        use crate::rng::{bucketed_order, epoch_order, rank_share, shard_window_order};
        let s = &self.settings;
        let len = self.source.len();
        let mut order = match self.source.shard_starts() {
            Some(starts) if s.shard_window > 0 => {
                shard_window_order(starts, len as u64, s.shard_window, s.seed, epoch, s.shuffle)
            }
            _ => epoch_order(len, s.seed, epoch, s.shuffle),
        };
        if s.bucket_windows > 0 {
            // build() checked that the source knows every sample's length.
            let length = |i: u64| self.source.length_hint(i).unwrap_or(0);
            let (batch, windows) = (s.batch_size, s.bucket_windows);
            order = bucketed_order(&order, length, batch, windows, s.seed, epoch, s.shuffle);
        }
        rank_share(&order, s.rank, s.world, s.uneven)
    }

    /// The state of a run of this pipeline at batch `position` of `epoch`.
    pub fn state(&self, epoch: u32, position: u64) -> crate::state::PipelineState {
        let s = &self.settings;
        let ops = format!("{:?}", (&self.decode, &self.ops));
        crate::state::PipelineState {
            version: crate::state::STATE_VERSION,
            fingerprint: crate::state::fingerprint(self.source.as_ref(), &ops, s),
            seed: s.seed,
            epoch,
            position,
            rank: s.rank,
            world: s.world,
            packed: None,
        }
    }

    /// Positions each epoch delivers on this rank.
    pub fn samples_per_epoch(&self) -> u64 {
        let (n, world) = (self.source.len() as u64, self.settings.world.max(1) as u64);
        match (world, self.settings.uneven) {
            (1, _) => n,
            (_, crate::rng::Uneven::Wrap) => n.div_ceil(world),
            (_, crate::rng::Uneven::Drop) => n / world,
        }
    }

    /// Batches per epoch (None when packed: see [`crate::Pipeline::batches_per_epoch`]).
    pub fn batches_per_epoch(&self) -> Option<u64> {
        let n = self.samples_per_epoch();
        let b = self.settings.batch_size as u64;
        match (self.pack, self.settings.drop_last) {
            (Some(_), _) => None,
            (None, true) => Some(n / b),
            (None, false) => Some(n.div_ceil(b)),
        }
    }

    /// Groups of `batch_size` samples the workers process per epoch: the batches, or for a
    /// packed pipeline the chunks of documents the packer draws from.
    pub fn chunks_per_epoch(&self) -> u64 {
        let n = self.samples_per_epoch();
        match self.pack {
            Some(_) => n.div_ceil(self.settings.batch_size as u64),
            None => self.batches_per_epoch().unwrap_or(0),
        }
    }

    pub fn stats(&self) -> RunStats {
        let (hits, bytes) = self
            .cache
            .as_ref()
            .map_or((0, 0), |c| (c.hits(), c.bytes() as u64));
        self.timers
            .snapshot(self.buffers.allocations(), hits, bytes)
    }
}

//! The CPU executor: per-sample processing on a worker pool, batches assembled in parallel into
//! pooled buffers, delivered in sampler order through a bounded prefetch window.

mod batcher;
mod iter;
mod sample;
mod stats;

pub use iter::EpochIter;
pub use stats::{RunStats, StageStat};

use crate::batch::BufferPool;
use crate::ops::{DecodeImage, Op, OpKind};
use crate::pipeline::{OutputSpec, Settings};
use crate::source::Source;
use stats::StageTimers;
use std::sync::Arc;

/// What one executor step does.
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// An image-to-image operator (index into the pipeline's operators).
    Image(usize),
    /// The tensor-producing operator, with a preceding flip folded into its write when fused.
    Tensor { op: usize, flip: Option<usize> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: String,
    pub kind: StepKind,
}

/// Turn the operator list into executor steps. With `fuse`, a RandomHorizontalFlip directly
/// before Normalize/Cast is folded into the tensor write (the flip costs no pass of its own).
pub fn compile_steps(ops: &[Op], fuse: bool) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut i = 0;
    while i < ops.len() {
        let op = &ops[i];
        let next = ops.get(i + 1);
        let flip_then_tensor = op.spec().kind == OpKind::RandomHorizontalFlip
            && next.is_some_and(|n| n.produces_tensor());
        if fuse && flip_then_tensor {
            let tensor = next.unwrap();
            steps.push(Step {
                name: format!("{}+{}", op.name(), tensor.name()),
                kind: StepKind::Tensor {
                    op: i + 1,
                    flip: Some(i),
                },
            });
            i += 2;
            continue;
        }
        let kind = if op.produces_tensor() {
            StepKind::Tensor { op: i, flip: None }
        } else {
            StepKind::Image(i)
        };
        steps.push(Step {
            name: op.name().to_string(),
            kind,
        });
        i += 1;
    }
    steps
}

/// Everything the workers share for the life of a pipeline.
pub struct Shared {
    pub source: Arc<dyn Source>,
    pub decode: DecodeImage,
    pub ops: Vec<Op>,
    pub steps: Vec<Step>,
    pub output: OutputSpec,
    pub settings: Settings,
    pool: rayon::ThreadPool,
    buffers: Arc<BufferPool>,
    /// Per-sample staging buffers for ragged batches.
    sample_buffers: Arc<BufferPool>,
    timers: StageTimers,
}

/// Timer slots: read, decode, then one per step.
const READ_STAGE: usize = 0;
const DECODE_STAGE: usize = 1;
const FIRST_STEP_STAGE: usize = 2;

impl Shared {
    pub fn new(
        source: Arc<dyn Source>,
        decode: DecodeImage,
        ops: Vec<Op>,
        steps: Vec<Step>,
        output: OutputSpec,
        settings: Settings,
        pool: rayon::ThreadPool,
    ) -> Self {
        let mut names = vec!["read".to_string(), "DecodeImage".to_string()];
        names.extend(steps.iter().map(|s| s.name.clone()));
        Shared {
            source,
            decode,
            ops,
            steps,
            output,
            settings,
            pool,
            buffers: BufferPool::new(),
            sample_buffers: BufferPool::new(),
            timers: StageTimers::new(names),
        }
    }

    pub fn batches_per_epoch(&self) -> u64 {
        let n = self.source.len() as u64;
        let b = self.settings.batch_size as u64;
        if self.settings.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    pub fn stats(&self) -> RunStats {
        self.timers.snapshot(self.buffers.allocations())
    }
}

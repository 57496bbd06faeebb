//! The GPU suffix of a pipeline: CPU workers decode and run the operators before the cut, draw
//! every suffix operator's per-sample parameters on the host (the same draws as the CPU path),
//! and hand the batch to one submission thread, which runs the suffix as wgpu kernels and
//! delivers the finished batch. Workers never block on the GPU: they go on with the next batch.

use super::batcher::LabelWriter;
use super::iter::Delivery;
use super::spectral::{run_spectral, spectral_input, spectral_layout, SpectralDraws};
use super::text_gpu::{labelled, row_words, run_tokens, TokenDraws};
use super::Shared;
use crate::backend::cuda::{DeviceTensor, StagedInput, TensorInfo, TransferEngine};
use crate::backend::wgpu::{encode_layout, ImageStage, TensorWrite};
use crate::backend::GpuRunner;
use crate::batch::{Batch, DenseBatch, Images};
use crate::error::{Error, SampleError};
use crate::ops::{Op, OpParams, Value};
use crate::rng::SampleRng;
use crate::tensor::{DType, Image, Layout};
use crossbeam_channel::Sender;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Operators `ops[cut..]` run on `ctx` (wgpu or CUDA), fed through a submission thread.
pub struct GpuSuffix {
    pub cut: usize,
    pub ctx: Arc<dyn GpuRunner>,
    /// Set when batches are delivered in CUDA device memory (instead of read back).
    pub engine: Option<Arc<TransferEngine>>,
    jobs: Sender<GpuJob>,
}

/// One batch's host-side result, on its way to the GPU.
pub(crate) struct GpuJob {
    pub shared: Arc<Shared>,
    pub epoch: u32,
    pub batch: u64,
    pub indices: Vec<u64>,
    pub work: GpuWork,
    pub skipped: Vec<SampleError>,
    pub tx: Sender<Delivery>,
    pub cancel: Arc<AtomicBool>,
}

/// A batch's samples as the CPU part left them, with each one's suffix parameters.
pub(crate) enum GpuWork {
    /// u8 images and, per sample, the parameters of each suffix operator.
    Images {
        images: Vec<Image>,
        params: Vec<Vec<OpParams>>,
    },
    /// Audio or features for the speech kernels.
    Spectral {
        values: Vec<Value>,
        draws: Vec<SpectralDraws>,
    },
    /// Token ids (and labels) for the token kernels.
    Tokens {
        values: Vec<Value>,
        draws: Vec<TokenDraws>,
    },
}

/// A text batch from the GPU: the main tensor, lengths, labels and offsets.
type TokenParts = (Images, Vec<usize>, Option<DenseBatch>, Option<DenseBatch>);

impl GpuSuffix {
    pub fn start(
        cut: usize,
        ctx: Arc<dyn GpuRunner>,
        engine: Option<Arc<TransferEngine>>,
    ) -> Result<Self, Error> {
        let (jobs, rx) = crossbeam_channel::unbounded::<GpuJob>();
        std::thread::Builder::new()
            .name("sluice-gpu".into())
            .spawn(move || {
                // Ends when the pipeline (the only sender) is dropped.
                for job in rx {
                    let b = job.batch;
                    let tx = job.tx.clone();
                    let result = if job.cancel.load(Ordering::Relaxed) {
                        Err(Error::Worker("epoch cancelled".into()))
                    } else {
                        // Every batch must be answered, or the iterator would wait forever.
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run()))
                            .unwrap_or_else(|_| {
                                Err(Error::Worker(format!(
                                    "batch {b}: internal error on the GPU thread"
                                )))
                            })
                    };
                    let _ = tx.send((b, result));
                }
            })
            .map_err(|e| Error::Worker(format!("cannot start the GPU thread: {e}")))?;
        Ok(GpuSuffix {
            cut,
            ctx,
            engine,
            jobs,
        })
    }

    pub(crate) fn submit(&self, job: GpuJob) {
        // The receiver lives as long as the pipeline that owns `self`.
        let _ = self.jobs.send(job);
    }
}

/// Draw every suffix operator's parameters for one sample whose CPU part ended at `size`.
pub(crate) fn draw_suffix(
    ops: &[Op],
    op_ids: &[u32],
    cut: usize,
    seed: u64,
    epoch: u32,
    index: u64,
    mut size: (u32, u32),
) -> Vec<OpParams> {
    (cut..ops.len())
        .map(|i| {
            let mut rng = SampleRng::new(seed, epoch, index, op_ids[i]);
            let params = ops[i].draw(&mut rng, size.0, size.1);
            if let Some(o) = ops[i].image_op() {
                size = o.output_size(&params, size);
            }
            params
        })
        .collect()
}

/// Turn per-sample parameters into per-operator stages, and the tensor write at the end (u8
/// HWC as it is when the pipeline has no Normalize/Cast).
pub fn stages_for(ops: &[Op], params: &[Vec<OpParams>]) -> (Vec<ImageStage>, TensorWrite) {
    let mut stages = Vec::new();
    let mut write = TensorWrite {
        dtype: DType::U8,
        layout: Layout::Hwc,
        scale: [1.0; 3],
        bias: [0.0; 3],
    };
    for (k, op) in ops.iter().enumerate() {
        let Some(image_op) = op.image_op() else {
            unreachable!("{} has no GPU kernel: never placed there", op.name())
        };
        if let Some(w) = image_op.tensor_write() {
            write = w;
            continue;
        }
        let column: Vec<OpParams> = params.iter().map(|p| p[k]).collect();
        stages.push(
            image_op
                .gpu_stage(&column)
                .expect("an image operator has a GPU stage"),
        );
    }
    (stages, write)
}

impl GpuJob {
    fn run(self) -> crate::error::Result<Batch> {
        let shared = &self.shared;
        let gpu = shared.gpu.as_ref().expect("a GPU job needs a GPU suffix");
        let t = Instant::now();
        let failed = |e: String| {
            Error::Worker(format!(
                "batch {} of epoch {} on {}: {e}",
                self.batch,
                self.epoch,
                gpu.ctx.describe()
            ))
        };
        let (images, lengths, token_labels, token_offsets) = match &self.work {
            GpuWork::Images { images, params } => (
                self.images(images, params, gpu).map_err(failed)?,
                Vec::new(),
                None,
                None,
            ),
            GpuWork::Spectral { values, draws } => {
                let (images, lengths) = self.spectral(values, draws, gpu).map_err(failed)?;
                (images, lengths, None, None)
            }
            GpuWork::Tokens { values, draws } => self.tokens(values, draws, gpu).map_err(failed)?,
        };
        shared.timers.record(shared.gpu_stage(), t);
        Ok(Batch {
            epoch: self.epoch,
            index: self.batch,
            images,
            labels: shared.labels(&self.indices),
            texts: shared.texts(&self.indices),
            sample_indices: self.indices,
            skipped: self.skipped,
            lengths,
            token_labels,
            token_offsets,
            cu_seqlens: Vec::new(),
        })
    }

    /// The samples' offsets padded into `[n, width, 2]` on the host (no kernel changes them),
    /// when the pipeline keeps them.
    fn token_offsets(&self, values: &[Value], width: usize) -> Option<DenseBatch> {
        let shared = &self.shared;
        let on = shared.keeps_offsets() && !values.is_empty();
        let mut spans = LabelWriter::offsets(&shared.buffers, on, values.len(), width);
        for (slot, v) in values.iter().enumerate() {
            if let Value::Tokens(t) = v {
                let bytes: Vec<u8> = t
                    .offsets
                    .iter()
                    .flatten()
                    .flat_map(|o| o.to_le_bytes())
                    .collect();
                spans.put(slot, &bytes);
            }
        }
        spans.finish(values.len())
    }

    /// The token suffix: ids `[n, width]` (i32) or embeddings `[n, width, dim]` (f32), each
    /// sample's length, the labels `[n, width]` when the batch has any, and the offsets
    /// `[n, width, 2]` when the pipeline keeps them.
    fn tokens(
        &self,
        values: &[Value],
        draws: &[TokenDraws],
        gpu: &GpuSuffix,
    ) -> Result<TokenParts, String> {
        let shared = &self.shared;
        let ops = &shared.ops[gpu.cut..];
        let lengths: Vec<usize> = values
            .iter()
            .map(|v| match v {
                Value::Tokens(t) => t.ids.len(),
                _ => 0,
            })
            .collect();
        let width = shared.padded_width(lengths.iter().copied().max().unwrap_or(0));
        let (n, row) = (values.len(), row_words(ops));
        let mut shape = vec![n, width];
        if row > 1 {
            shape.push(row);
        }
        let pad = (shared.settings.pad_id, shared.settings.pad_value);
        let out = shared.output.clone();
        if let (Some(engine), true) = (&gpu.engine, n > 0) {
            // One encoded batch (CUDA has no binding limit); the main tensor and the labels
            // stay where the kernels wrote them.
            let (batch, layout) = super::text_gpu::encode_values(ops, (values, draws), width, pad)?;
            let (main, labels) = layout.ranges();
            let main_name = if row > 1 { "embeddings" } else { "input_ids" };
            let mut tensors = vec![device_tensor(
                main_name,
                (out.dtype, out.layout),
                shape,
                main.start,
            )];
            if let Some(l) = labels {
                let info = (DType::I32, Layout::Chw);
                tensors.push(device_tensor("labels", info, vec![n, width], l.start));
            }
            let batch = self.to_device(engine, &batch, tensors)?;
            return Ok((batch, lengths, None, self.token_offsets(values, width)));
        }
        let mut data = shared.buffers.take(n * width * row * 4);
        // As the CPU batcher: labels when some sample has them (an empty batch has none).
        let labelled = n > 0 && labelled(ops, values);
        let mut labels = labelled.then(|| shared.buffers.take(n * width * 4));
        if n > 0 {
            run_tokens(
                &*gpu.ctx,
                ops,
                (values, draws),
                (width, pad),
                data.as_mut_slice(),
                labels.as_mut().map(|l| l.as_mut_slice()),
            )?;
        }
        if fault_injected() {
            corrupt_first_value(shared.output.dtype, data.as_mut_slice());
        }
        let dense = |dtype, layout, shape, data| DenseBatch {
            dtype,
            layout,
            shape,
            data,
        };
        let labels = labels.map(|l| dense(DType::I32, Layout::Chw, vec![n, width], l));
        Ok((
            Images::Dense(dense(out.dtype, out.layout, shape, data)),
            lengths,
            labels,
            self.token_offsets(values, width),
        ))
    }

    /// Submit an encoded batch (its input packed by the encoder) to the transfer engine.
    fn to_device(
        &self,
        engine: &TransferEngine,
        batch: &crate::backend::wgpu::EncodedBatch,
        tensors: Vec<DeviceTensor>,
    ) -> Result<Images, String> {
        let pool = &self.shared.pool;
        let input = StagedInput::Encoded;
        Ok(Images::Device(engine.submit(
            batch,
            input,
            tensors,
            &self.cancel,
            pool,
        )?))
    }

    /// The speech suffix: a padded `[n, rows, width]` f32 batch and each sample's frames.
    fn spectral(
        &self,
        values: &[Value],
        draws: &[SpectralDraws],
        gpu: &GpuSuffix,
    ) -> Result<(Images, Vec<usize>), String> {
        let shared = &self.shared;
        let ops = &shared.ops[gpu.cut..];
        let bins = values.first().map_or(0, |v| spectral_input(v).rows);
        let (rows, width) = spectral_layout(ops, draws, bins, shared.settings.pad_multiple);
        let (n, lengths) = (values.len(), draws.iter().map(|d| d.frames).collect());
        let shape = vec![n, rows, width];
        let pad = (width, shared.settings.pad_value);
        if let (Some(engine), true) = (&gpu.engine, n > 0) {
            let batch = super::spectral::encode_values(ops, values, draws, pad)?;
            let info = (DType::F32, shared.output.layout);
            let tensors = vec![device_tensor("features", info, shape, 0)];
            return Ok((self.to_device(engine, &batch, tensors)?, lengths));
        }
        let mut data = shared.buffers.take(n * rows * width * 4);
        run_spectral(&*gpu.ctx, ops, values, draws, pad, data.as_mut_slice())?;
        if fault_injected() {
            corrupt_first_value(DType::F32, data.as_mut_slice());
        }
        let dense = DenseBatch {
            dtype: DType::F32,
            layout: shared.output.layout,
            shape,
            data,
        };
        Ok((Images::Dense(dense), lengths))
    }

    /// The image suffix and the tensor write, into host memory or CUDA device batches.
    fn images(
        &self,
        images: &[Image],
        params: &[Vec<OpParams>],
        gpu: &GpuSuffix,
    ) -> Result<Images, String> {
        let shared = &self.shared;
        let mut shape = vec![images.len()];
        shape.extend(shared.output.sample_shape.clone().unwrap());
        let (stages, write) = stages_for(&shared.ops[gpu.cut..], params);
        Ok(match &gpu.engine {
            Some(engine) => {
                let layout = encode_layout(images, &stages, Some(&write))?;
                let info = (shared.output.dtype, shared.output.layout);
                let tensors = vec![device_tensor("images", info, shape, 0)];
                let input = StagedInput::Images(images);
                Images::Device(engine.submit(
                    &layout,
                    input,
                    tensors,
                    &self.cancel,
                    &shared.pool,
                )?)
            }
            None => {
                let per_sample = shared
                    .output
                    .sample_bytes()
                    .expect("GPU placement requires a dense output");
                let mut data = shared.buffers.take(per_sample * images.len());
                gpu.ctx
                    .run_to_tensor(images, &stages, &write, data.as_mut_slice())?;
                if fault_injected() {
                    corrupt_first_value(shared.output.dtype, data.as_mut_slice());
                }
                Images::Dense(DenseBatch {
                    dtype: shared.output.dtype,
                    layout: shared.output.layout,
                    shape,
                    data,
                })
            }
        })
    }
}

/// A device batch's tensor `name` of `shape` at byte `offset` of the batch's output.
fn device_tensor(
    name: &'static str,
    (dtype, layout): (DType, Layout),
    shape: Vec<usize>,
    offset: usize,
) -> DeviceTensor {
    DeviceTensor {
        name,
        info: TensorInfo {
            dtype,
            layout,
            shape,
        },
        offset,
    }
}

/// Test-only fault injection: with `SLUICE_FAULT=gpu-output` the GPU suffix corrupts the first
/// value of every host-delivered batch, so a test can watch `sluice bench --verify` fail with
/// exit status 1 on a real run (tests/cli.rs). Read once; off unless set to exactly that.
fn fault_injected() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("SLUICE_FAULT").is_ok_and(|v| v == "gpu-output"))
}

fn corrupt_first_value(dtype: DType, data: &mut [u8]) {
    match dtype {
        DType::F32 if data.len() >= 4 => data[..4].copy_from_slice(&f32::NAN.to_le_bytes()),
        _ => {
            if let Some(b) = data.first_mut() {
                *b ^= 0x80;
            }
        }
    }
}

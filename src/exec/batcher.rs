//! Assembles one batch: its samples processed in parallel on the worker pool, written straight
//! into a pooled buffer, with failures handled by the pipeline's error policy.

use super::gpu::{draw_suffix, GpuJob, GpuWork};
use super::iter::Delivery;
use super::sample::SampleOut;
use super::spectral::draw_spectral;
use super::text_gpu::draw_tokens;
use super::{Shared, StepKind, FIRST_STEP_STAGE};
use crate::batch::{Batch, DenseBatch, Images, PooledBuffer, RaggedBatch};
use crate::error::{Error, Result, SampleError};
use crate::ops::{Decoder, Op, TextOp, Value};
use crate::pipeline::ErrorPolicy;
use crate::tensor::Image;
use crate::text::{EmbeddingTable, IGNORE_LABEL};
use crossbeam_channel::Sender;
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// One sample's processed buffer and shape, or its failure (None: cancelled).
type SampleResult = std::result::Result<(PooledBuffer, Vec<usize>), Option<SampleError>>;
/// Whether a sample made it into the batch (None: cancelled).
type Outcome = std::result::Result<(), Option<SampleError>>;

impl Shared {
    /// Build batch `b` of `epoch` from the sampler order. Runs on the worker pool.
    pub(crate) fn build_batch(
        &self,
        epoch: u32,
        b: u64,
        order: &[u64],
        cancel: &AtomicBool,
    ) -> Result<Batch> {
        let size = self.settings.batch_size;
        let start = b as usize * size;
        let indices = &order[start..(start + size).min(order.len())];
        let run = |index: u64, out: SampleOut<'_>| {
            if cancel.load(Ordering::Relaxed) {
                return Err(None);
            }
            self.process_sample(epoch, index, out).map_err(Some)
        };

        let collated = match self.output.sample_bytes() {
            Some(per_sample) => {
                let mut data = self.buffers.take(per_sample * indices.len());
                let outcomes: Vec<_> = data
                    .as_mut_slice()
                    .par_chunks_mut(per_sample)
                    .zip(indices.par_iter())
                    .map(|(slot, &index)| run(index, SampleOut::Slot(slot)).map(|_| ()))
                    .collect();
                let kept = compact_slots(data.as_mut_slice(), per_sample, &outcomes);
                data.truncate(kept * per_sample);
                let mut shape = vec![kept];
                shape.extend(self.output.sample_shape.clone().unwrap());
                let dense = DenseBatch {
                    dtype: self.output.dtype,
                    layout: self.output.layout,
                    shape,
                    data,
                };
                Collated::new(Images::Dense(dense), outcomes)
            }
            None => {
                let results: Vec<_> = indices
                    .par_iter()
                    .map(|&index| {
                        // Recycled per-sample buffers: no fresh pages per sample.
                        let mut v = self.sample_buffers.take(0);
                        run(index, SampleOut::Vec(v.vec_mut())).map(|shape| (v, shape))
                    })
                    .collect();
                let results = self.check_fixed_length(indices, results);
                if let Some((stage, table)) = self.gather_step() {
                    self.gather(results, table, stage)
                } else if self.output.padded {
                    self.pad(indices, results)?
                } else {
                    self.ragged(results)
                }
            }
        };

        let (sample_indices, skipped) = self.settle(indices, collated.outcomes)?;
        Ok(Batch {
            epoch,
            index: b,
            images: collated.images,
            labels: self.labels(&sample_indices),
            texts: self.texts(&sample_indices),
            sample_indices,
            skipped,
            lengths: collated.lengths,
            token_labels: collated.token_labels,
            token_offsets: collated.token_offsets,
            cu_seqlens: Vec::new(),
        })
    }

    /// Collate samples of any shapes into one buffer with per-sample offsets and shapes.
    fn ragged(&self, results: Vec<SampleResult>) -> Collated {
        let total = results
            .iter()
            .flatten()
            .map(|(v, _)| v.as_slice().len())
            .sum();
        let mut data = self.buffers.take(total);
        let mut offsets = vec![0];
        let mut shapes = Vec::new();
        let mut outcomes = Vec::with_capacity(results.len());
        for r in results {
            outcomes.push(r.map(|(v, shape)| {
                let (start, v) = (*offsets.last().unwrap(), v.as_slice());
                data.as_mut_slice()[start..start + v.len()].copy_from_slice(v);
                offsets.push(start + v.len());
                shapes.push(shape);
            }));
        }
        let ragged = RaggedBatch {
            dtype: self.output.dtype,
            layout: self.output.layout,
            offsets,
            shapes,
            data,
        };
        Collated::new(Images::Ragged(ragged), outcomes)
    }

    pub(super) fn labels(&self, indices: &[u64]) -> Vec<i64> {
        indices.iter().map(|&i| self.source.label(i)).collect()
    }

    /// The samples' transcripts, or none when the source has none.
    pub(super) fn texts(&self, indices: &[u64]) -> Vec<String> {
        indices
            .iter()
            .map_while(|&i| self.source.text(i).map(str::to_string))
            .collect()
    }

    /// The fused EmbeddingLookup ending the pipeline, if any: its timer slot and table.
    fn gather_step(&self) -> Option<(usize, &EmbeddingTable)> {
        let (s, step) = self.steps.iter().enumerate().next_back()?;
        let StepKind::Gather(i) = step.kind else {
            return None;
        };
        match &self.ops[i] {
            Op::Text(TextOp::EmbeddingLookup(t)) => Some((FIRST_STEP_STAGE + s, t)),
            _ => None,
        }
    }

    /// Collate samples' token ids (i32, checked against `table`) into `[n, width, dim]` f32,
    /// each position its id's row, padding rows of `pad_value` ([`Shared::padded_width`]).
    /// Samples are written in parallel, each straight into its slot.
    fn gather(&self, results: Vec<SampleResult>, table: &EmbeddingTable, stage: usize) -> Collated {
        let t = std::time::Instant::now();
        // Each kept sample's ids and labels, as the i32 bytes it wrote.
        let samples: Vec<(&[u8], &[u8])> = results
            .iter()
            .flatten()
            .map(|(v, shape)| v.as_slice().split_at(shape[0] * 4))
            .collect();
        let lengths: Vec<usize> = samples.iter().map(|(ids, _)| ids.len() / 4).collect();
        let width = self.padded_width(lengths.iter().copied().max().unwrap_or(0));
        let slot = width * table.dim * 4;
        let mut data = self.buffers.take(samples.len() * slot);
        let pad = self.settings.pad_value;
        data.as_mut_slice()
            .par_chunks_mut(slot.max(1))
            .zip(samples.par_iter())
            .for_each(|(out, (ids, _))| table.gather_into(ids, pad, out));
        let kept = samples.len();
        let labelled = samples.iter().any(|(_, labels)| !labels.is_empty());
        let mut labels = LabelWriter::new(&self.buffers, labelled, kept, width);
        samples
            .iter()
            .enumerate()
            .for_each(|(slot, (_, l))| labels.put(slot, l));
        drop(samples);
        let outcomes = results.into_iter().map(|r| r.map(|_| ())).collect();
        self.timers.record_calls(stage, t, kept as u64);
        let dense = DenseBatch {
            dtype: self.output.dtype,
            layout: self.output.layout,
            shape: vec![kept, width, table.dim],
            data,
        };
        Collated {
            token_labels: labels.finish(kept),
            lengths,
            ..Collated::new(Images::Dense(dense), outcomes)
        }
    }

    /// The padded axis' size for a batch whose longest sample is `longest`: the fixed
    /// `pad_length`, or the longest rounded up to `pad_multiple`.
    pub(super) fn padded_width(&self, longest: usize) -> usize {
        match self.settings.pad_length {
            0 => longest.next_multiple_of(self.settings.pad_multiple),
            fixed => fixed,
        }
    }

    /// With a fixed `pad_length`, a sample longer than it fails (under the error policy),
    /// naming the sample: padding never cuts data off silently.
    fn check_fixed_length(&self, indices: &[u64], results: Vec<SampleResult>) -> Vec<SampleResult> {
        let fixed = self.settings.pad_length;
        if fixed == 0 || !self.output.padded {
            return results;
        }
        let axis = if self.output.pad_leading { 0 } else { 1 };
        results
            .into_iter()
            .zip(indices)
            .map(|(r, &index)| match r {
                Ok((_, shape)) if shape[axis] > fixed => {
                    Err(Some(self.too_long_error(index, shape[axis])))
                }
                other => other,
            })
            .collect()
    }

    /// Sample `index`, `length` positions long, does not fit the fixed `pad_length`.
    fn too_long_error(&self, index: u64, length: usize) -> SampleError {
        let fixed = self.settings.pad_length;
        let message =
            format!("{length} positions do not fit pad_to_length {fixed} (truncate first)");
        self.sample_error(index, "Pad", message)
    }

    /// Collate 32-bit samples into one padded tensor, the padded axis [`Shared::padded_width`]
    /// wide: `[rows, length]` (audio, features) into `[n, rows, width]` padded with
    /// `pad_value`; with `pad_leading`, `[length, ..rest]` (token ids, embeddings) into
    /// `[n, width, ..rest]` padded with `pad_id` (ids) or `pad_value`. Token ids' labels, when
    /// samples have them, go into `[n, width]` labels padded with [`IGNORE_LABEL`]. Returns the
    /// batch, the outcomes and each kept sample's length. Samples whose other dimensions
    /// differ from the first kept sample's are an error.
    fn pad(&self, indices: &[u64], results: Vec<SampleResult>) -> Result<Collated> {
        let leading = self.output.pad_leading;
        // (length along the padded axis, elements per step of it)
        let split = |shape: &[usize]| match leading {
            true => (shape[0], shape[1..].iter().product::<usize>()),
            false => (shape[1], shape[0]),
        };
        // Token samples wrote their labels and offsets after the ids.
        let offsets = self.keeps_offsets();
        let labelled = results.iter().flatten().any(|(v, shape)| {
            let (length, rows) = split(shape);
            !token_segments(v.as_slice(), length * rows, offsets)
                .1
                .is_empty()
        });
        let shapes: Vec<&[usize]> = results
            .iter()
            .flatten()
            .map(|(_, shape)| shape.as_slice())
            .collect();
        // An empty batch: `[0, width]` (tokens) or `[0, rows, width]`.
        let none = if leading { vec![0] } else { vec![0, 0] };
        let first = shapes.first().map_or(none, |s| s.to_vec());
        let rows = split(&first).1;
        let width = self.padded_width(shapes.iter().map(|s| split(s).0).max().unwrap_or(0));
        let kept = shapes.len();
        let mut labels = LabelWriter::new(&self.buffers, labelled, kept, width);
        let mut spans = LabelWriter::offsets(&self.buffers, offsets, kept, width);
        drop(shapes);
        let mut out_shape = vec![kept];
        match leading {
            true => out_shape.extend(std::iter::once(width).chain(first[1..].iter().copied())),
            false => out_shape.extend([rows, width]),
        }
        let mut data = self.buffers.take(kept * rows * width * 4);
        // Recycled buffers hold an earlier batch: every word past a sample's length is written.
        let fill = match self.output.dtype {
            crate::tensor::DType::I32 => (self.settings.pad_id as i32).to_le_bytes(),
            _ => self.settings.pad_value.to_le_bytes(),
        };
        data.as_mut_slice()
            .chunks_exact_mut(4)
            .for_each(|w| w.copy_from_slice(&fill));
        let mut lengths = Vec::with_capacity(kept);
        let mut outcomes = Vec::with_capacity(results.len());
        let mut slot = 0;
        for (r, &index) in results.into_iter().zip(indices) {
            let (v, shape) = match r {
                Ok(ok) => ok,
                Err(e) => {
                    outcomes.push(Err(e));
                    continue;
                }
            };
            let (length, sample_rows) = split(&shape);
            if sample_rows != rows || (leading && shape[1..] != first[1..]) {
                let what = match leading {
                    true => "padding along tokens needs the same embedding width",
                    false => "padding along time needs the same number of channels or bins",
                };
                return Err(Error::Worker(format!(
                    "sample {index} ({}) has shape {shape:?}, the batch's first sample \
                     {first:?}: {what}",
                    self.source.origin(index),
                )));
            }
            let out = data.as_mut_slice();
            if leading {
                let (ids, l, o) = token_segments(v.as_slice(), length * rows, offsets);
                let at = slot * width * rows * 4;
                out[at..at + ids.len()].copy_from_slice(ids);
                labels.put(slot, l);
                spans.put(slot, o);
            } else {
                let row_bytes = length * 4;
                for (row, src) in v
                    .as_slice()
                    .chunks_exact(row_bytes.max(1))
                    .take(rows)
                    .enumerate()
                {
                    let at = ((slot * rows + row) * width) * 4;
                    out[at..at + row_bytes].copy_from_slice(&src[..row_bytes]);
                }
            }
            lengths.push(length);
            outcomes.push(Ok(()));
            slot += 1;
        }
        let dense = DenseBatch {
            dtype: self.output.dtype,
            layout: self.output.layout,
            shape: out_shape,
            data,
        };
        Ok(Collated {
            token_labels: labels.finish(kept),
            token_offsets: spans.finish(kept),
            lengths,
            ..Collated::new(Images::Dense(dense), outcomes)
        })
    }

    /// Whether token samples carry their character offsets (the tokenizer keeps them).
    pub(super) fn keeps_offsets(&self) -> bool {
        matches!(&self.decode, Decoder::Text(d) if d.offsets)
    }
}

/// A token sample's bytes split into its ids (`values` words), its labels (possibly none) and
/// its offsets (two words a token, when `offsets`): the order [`Value::write_f32`] puts them in.
fn token_segments(v: &[u8], values: usize, offsets: bool) -> (&[u8], &[u8], &[u8]) {
    let (ids, rest) = v.split_at(values * 4);
    let spans = if offsets { values * 8 } else { 0 };
    let (labels, spans) = rest.split_at(rest.len() - spans);
    (ids, labels, spans)
}

/// A batch's collated samples before the error policy settles them.
struct Collated {
    images: Images,
    outcomes: Vec<Outcome>,
    /// Padded batches: each kept sample's length along the padded axis.
    lengths: Vec<usize>,
    token_labels: Option<DenseBatch>,
    token_offsets: Option<DenseBatch>,
}

impl Collated {
    fn new(images: Images, outcomes: Vec<Outcome>) -> Self {
        Collated {
            images,
            outcomes,
            lengths: Vec::new(),
            token_labels: None,
            token_offsets: None,
        }
    }
}

/// Writes a per-token i32 side tensor of the ids — labels (`[n, width]`, padded with
/// [`IGNORE_LABEL`]; a sample without labels gets it throughout) or offsets (`[n, width, 2]`,
/// padded with 0) — from the bytes a sample wrote after its ids. Nothing when `on` is false.
pub(super) struct LabelWriter {
    data: Option<PooledBuffer>,
    width: usize,
    /// i32 values per token: 1 (labels) or 2 (offsets).
    per_token: usize,
}

impl LabelWriter {
    /// Labels for `kept` samples, when any of them is `labelled`.
    pub(super) fn new(
        pool: &Arc<crate::batch::BufferPool>,
        labelled: bool,
        kept: usize,
        width: usize,
    ) -> Self {
        Self::filled(pool, labelled, (kept, width, 1), IGNORE_LABEL)
    }

    /// Offsets (`[start, end)` pairs) for `kept` samples, when the pipeline keeps them.
    pub(super) fn offsets(
        pool: &Arc<crate::batch::BufferPool>,
        on: bool,
        kept: usize,
        width: usize,
    ) -> Self {
        Self::filled(pool, on, (kept, width, 2), 0)
    }

    fn filled(
        pool: &Arc<crate::batch::BufferPool>,
        on: bool,
        (kept, width, per_token): (usize, usize, usize),
        fill: i32,
    ) -> Self {
        let data = on.then(|| {
            let mut data = pool.take(kept * width * per_token * 4);
            let fill = fill.to_le_bytes();
            data.as_mut_slice()
                .chunks_exact_mut(4)
                .for_each(|w| w.copy_from_slice(&fill));
            data
        });
        LabelWriter {
            data,
            width,
            per_token,
        }
    }

    pub(super) fn put(&mut self, slot: usize, values: &[u8]) {
        if let Some(data) = &mut self.data {
            let at = slot * self.width * self.per_token * 4;
            data.as_mut_slice()[at..at + values.len()].copy_from_slice(values);
        }
    }

    pub(super) fn finish(self, kept: usize) -> Option<DenseBatch> {
        let mut shape = vec![kept, self.width];
        if self.per_token > 1 {
            shape.push(self.per_token);
        }
        self.data.map(|data| DenseBatch {
            dtype: crate::tensor::DType::I32,
            layout: crate::tensor::Layout::Chw,
            shape,
            data,
        })
    }
}

impl Shared {
    /// Apply the error policy to a batch's per-sample outcomes (Err(None): cancelled): the
    /// indices of the samples kept, and the errors of those skipped.
    fn settle(
        &self,
        indices: &[u64],
        outcomes: Vec<std::result::Result<(), Option<SampleError>>>,
    ) -> Result<(Vec<u64>, Vec<SampleError>)> {
        let mut kept = Vec::with_capacity(indices.len());
        let mut skipped = Vec::new();
        for (&index, outcome) in indices.iter().zip(outcomes) {
            match outcome {
                Ok(()) => kept.push(index),
                Err(None) => return Err(Error::Worker("epoch cancelled".into())),
                Err(Some(e)) => match self.settings.policy {
                    ErrorPolicy::Fail => return Err(Error::Sample(e)),
                    ErrorPolicy::Skip => {
                        self.timers.sample_skipped();
                        skipped.push(e)
                    }
                },
            }
        }
        Ok((kept, skipped))
    }

    /// Build batch `b` and deliver it on `tx`: directly when every operator runs on the CPU;
    /// through the GPU submission thread when the pipeline has a GPU suffix.
    pub(crate) fn run_batch(
        self: &Arc<Self>,
        epoch: u32,
        b: u64,
        order: &[u64],
        cancel: &Arc<AtomicBool>,
        tx: Sender<Delivery>,
    ) {
        let Some(gpu) = &self.gpu else {
            let _ = tx.send((b, self.build_batch(epoch, b, order, cancel)));
            return;
        };
        let size = self.settings.batch_size;
        let start = b as usize * size;
        let indices = &order[start..(start + size).min(order.len())];
        let (work, outcomes) = match self.decode {
            Decoder::Audio(_) => self.cpu_part_spectral(epoch, indices, gpu.cut, cancel),
            Decoder::Text(_) => self.cpu_part_tokens(epoch, indices, gpu.cut, cancel),
            _ => self.cpu_part_images(epoch, indices, gpu.cut, cancel),
        };
        match self.settle(indices, outcomes) {
            Err(e) => {
                let _ = tx.send((b, Err(e)));
            }
            Ok((indices, skipped)) => gpu.submit(GpuJob {
                shared: self.clone(),
                epoch,
                batch: b,
                indices,
                work,
                skipped,
                tx,
                cancel: cancel.clone(),
            }),
        }
    }

    /// The CPU part of an image pipeline with a GPU suffix: each sample's u8 image and the
    /// suffix operators' parameters.
    fn cpu_part_images(
        &self,
        epoch: u32,
        indices: &[u64],
        cut: usize,
        cancel: &AtomicBool,
    ) -> (GpuWork, Vec<Outcome>) {
        let (images, params, outcomes) = each_sample(indices, cancel, |index| {
            let mut image = Image::default();
            self.process_sample(epoch, index, SampleOut::Image(&mut image))?;
            let size = (image.width, image.height);
            let seed = self.settings.seed;
            let params = draw_suffix(&self.ops, &self.op_ids, cut, seed, epoch, index, size);
            Ok((image, params))
        });
        (GpuWork::Images { images, params }, outcomes)
    }

    /// The CPU part of a speech pipeline with a GPU suffix: each sample's audio or features
    /// and its suffix draws; a sample the suffix cannot take fails here, naming the operator.
    fn cpu_part_spectral(
        &self,
        epoch: u32,
        indices: &[u64],
        cut: usize,
        cancel: &AtomicBool,
    ) -> (GpuWork, Vec<Outcome>) {
        let (ops, ids) = (&self.ops[cut..], &self.op_ids[cut..]);
        let (values, draws, outcomes) = self.cpu_part_values(epoch, indices, cancel, |index, v| {
            draw_spectral(ops, ids, (self.settings.seed, epoch, index), v)
                .map_err(|(i, m)| self.sample_error(index, ops[i].name(), m))
        });
        (GpuWork::Spectral { values, draws }, outcomes)
    }

    /// The CPU part of a text pipeline with a GPU suffix: each sample's tokens and its suffix
    /// draws; a sample the suffix or the padding cannot take fails here, naming the operator.
    fn cpu_part_tokens(
        &self,
        epoch: u32,
        indices: &[u64],
        cut: usize,
        cancel: &AtomicBool,
    ) -> (GpuWork, Vec<Outcome>) {
        let (ops, ids) = (&self.ops[cut..], &self.op_ids[cut..]);
        let fixed = self.settings.pad_length;
        let (values, draws, outcomes) = self.cpu_part_values(epoch, indices, cancel, |index, v| {
            let draws = draw_tokens(ops, ids, (self.settings.seed, epoch, index), v)
                .map_err(|(i, m)| self.sample_error(index, ops[i].name(), m))?;
            match v {
                Value::Tokens(t) if fixed > 0 && t.ids.len() > fixed => {
                    Err(self.too_long_error(index, t.ids.len()))
                }
                _ => Ok(draws),
            }
        });
        (GpuWork::Tokens { values, draws }, outcomes)
    }

    /// Each sample's value after the CPU operators and what `draw` makes of it (its suffix
    /// parameters, or the sample's error), on the worker pool.
    fn cpu_part_values<D: Send>(
        &self,
        epoch: u32,
        indices: &[u64],
        cancel: &AtomicBool,
        draw: impl Fn(u64, &Value) -> std::result::Result<D, SampleError> + Sync,
    ) -> (Vec<Value>, Vec<D>, Vec<Outcome>) {
        each_sample(indices, cancel, |index| {
            let mut value = Value::default();
            self.process_sample(epoch, index, SampleOut::Value(&mut value))?;
            let draws = draw(index, &value)?;
            Ok((value, draws))
        })
    }
}

/// Run `f` on each sample on the worker pool (until cancelled): the kept samples' (value,
/// parameters) pairs as two lists, and every sample's outcome.
fn each_sample<A: Send, B: Send>(
    indices: &[u64],
    cancel: &AtomicBool,
    f: impl Fn(u64) -> std::result::Result<(A, B), SampleError> + Sync,
) -> (Vec<A>, Vec<B>, Vec<Outcome>) {
    let results: Vec<_> = indices
        .par_iter()
        .map(|&index| {
            if cancel.load(Ordering::Relaxed) {
                return Err(None);
            }
            f(index).map_err(Some)
        })
        .collect();
    let mut a = Vec::with_capacity(results.len());
    let mut b = Vec::with_capacity(results.len());
    let outcomes = results
        .into_iter()
        .map(|r| {
            r.map(|(x, y)| {
                a.push(x);
                b.push(y);
            })
        })
        .collect();
    (a, b, outcomes)
}

/// Move the slots of successful samples to the front, keeping their order; returns how many.
fn compact_slots<E>(data: &mut [u8], per_sample: usize, outcomes: &[Result<(), E>]) -> usize {
    let mut kept = 0;
    for (i, outcome) in outcomes.iter().enumerate() {
        if outcome.is_ok() {
            if kept != i {
                data.copy_within(i * per_sample..(i + 1) * per_sample, kept * per_sample);
            }
            kept += 1;
        }
    }
    kept
}

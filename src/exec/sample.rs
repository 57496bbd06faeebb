//! One sample, start to finish: read → decode → steps → written into its slot of the batch.

use super::{Shared, StepKind, DECODE_STAGE, FIRST_STEP_STAGE, READ_STAGE};
use crate::error::{SampleError, SampleId};
use crate::ops::{Decoder, Op, OpParams, Scratch, TextOp, Value};
use crate::rng::SampleRng;
use crate::tensor::{image_shape, Image, Layout};
use std::cell::{Cell, RefCell};
use std::time::Instant;

/// Buffers one worker thread reuses for every sample it processes.
#[derive(Default)]
pub(crate) struct WorkerScratch {
    bytes: Vec<u8>,
    image: Image,
    value: Value,
    ops: Scratch,
}

thread_local! {
    static SCRATCH: RefCell<WorkerScratch> = RefCell::default();
}

/// Where a sample's output goes.
pub(crate) enum SampleOut<'a> {
    /// Its fixed-size slot in a dense batch.
    Slot(&'a mut [u8]),
    /// A growable buffer (ragged batches).
    Vec(&'a mut Vec<u8>),
    /// The u8 image itself (the CPU part of a pipeline with a GPU suffix).
    Image(&'a mut Image),
    /// The audio or features themselves (the CPU part of a speech pipeline with a GPU suffix).
    Value(&'a mut Value),
}

impl SampleOut<'_> {
    /// A destination of exactly `len` bytes, or None if a fixed slot has another size.
    fn sized(&mut self, len: usize) -> Option<&mut [u8]> {
        match self {
            SampleOut::Slot(s) => (s.len() == len).then_some(&mut **s),
            SampleOut::Vec(v) => {
                v.clear();
                v.resize(len, 0);
                Some(v.as_mut_slice())
            }
            SampleOut::Image(_) | SampleOut::Value(_) => None,
        }
    }
}

impl Shared {
    pub(super) fn sample_error(
        &self,
        index: u64,
        operator: &str,
        message: impl Into<String>,
    ) -> SampleError {
        SampleError {
            sample: SampleId {
                index,
                origin: self.source.origin(index),
            },
            operator: operator.to_string(),
            message: message.into(),
        }
    }

    /// Process sample `index` of `epoch` on this thread; returns its output shape.
    /// A panic anywhere inside is caught and reported as an error naming the sample and the
    /// stage (source read, decode or operator step) it happened in.
    pub(crate) fn process_sample(
        &self,
        epoch: u32,
        index: u64,
        out: SampleOut<'_>,
    ) -> Result<Vec<usize>, SampleError> {
        let stage = Cell::new(READ_STAGE);
        let run = std::panic::AssertUnwindSafe(|| {
            SCRATCH.with(|s| self.process_with(epoch, index, &mut s.borrow_mut(), out, &stage))
        });
        let result = std::panic::catch_unwind(run).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            // The scratch may be half-written; start the next sample with fresh buffers.
            SCRATCH.with(|s| *s.borrow_mut() = WorkerScratch::default());
            let operator = self.timers.name(stage.get());
            Err(self.sample_error(index, operator, format!("panicked: {what}")))
        });
        if result.is_ok() {
            self.timers.sample_done();
        }
        result
    }

    fn process_with(
        &self,
        epoch: u32,
        index: u64,
        ws: &mut WorkerScratch,
        mut out: SampleOut<'_>,
        stage: &Cell<usize>,
    ) -> Result<Vec<usize>, SampleError> {
        if !matches!(self.decode, Decoder::Image(_)) {
            return self.process_value(epoch, index, ws, out, stage);
        }
        let t = Instant::now();
        let cache = self.cache.as_ref();
        let seed = self.settings.seed;
        let stream = |i: usize| SampleRng::new(seed, epoch, index, self.op_ids[i]);
        // Crop-aware decode draws the leading crop from the header; its step applies that box.
        let mut drawn_crop = None;
        let (first_step, mut t) = match cache.and_then(|c| c.get(index)) {
            Some(image) => {
                ws.image.clone_from(image);
                (cache.unwrap().prefix_steps, t)
            }
            None => {
                let t = self.read_for_decode(index, &mut ws.bytes, stage, t)?;
                let Decoder::Image(decoder) = &self.decode else {
                    unreachable!("audio and text samples take process_value")
                };
                let approx = self.settings.approx_decode;
                let mut planned = None;
                let want = |width: u32, height: u32| {
                    let plan =
                        self.crop_decode?
                            .plan(&self.ops, || stream(0), (width, height), approx)?;
                    planned = Some(plan.crop);
                    Some(plan.region)
                };
                let decoded = decoder
                    .decode_region(&ws.bytes, &mut ws.image, want)
                    .map_err(|m| self.sample_error(index, "DecodeImage", m))?;
                self.timers.decoded(&decoded);
                drawn_crop = planned.map(|b| OpParams::Crop(b.shrunk(decoded.shrink)));
                let t = self.timers.record(DECODE_STAGE, t);
                if let Some(c) = cache.filter(|c| c.prefix_steps == 0) {
                    c.offer(index, &ws.image);
                }
                (0, t)
            }
        };
        let draw =
            |i: usize, image: &Image| self.ops[i].draw(&mut stream(i), image.width, image.height);

        let mut shape = None;
        for (s, step) in self.steps.iter().enumerate().skip(first_step) {
            stage.set(FIRST_STEP_STAGE + s);
            match step.kind {
                StepKind::Image(0) if drawn_crop.is_some() => {
                    let params = drawn_crop.take().expect("checked");
                    self.ops[0].apply_image(&params, &mut ws.image, &mut ws.ops);
                }
                StepKind::Image(i) => {
                    self.ops[i]
                        .run_image(&mut stream(i), &mut ws.image, &mut ws.ops)
                        .map_err(|m| self.sample_error(index, &step.name, m))?;
                }
                StepKind::Audio(_) | StepKind::StretchNorm { .. } | StepKind::Gather(_) => {
                    unreachable!("an image pipeline has no audio or text steps")
                }
                StepKind::Tensor { resample, flip, op } => {
                    if let Some(r) = resample {
                        let drawn = drawn_crop.take().filter(|_| r == 0);
                        let params = drawn.unwrap_or_else(|| draw(r, &ws.image));
                        self.ops[r].apply_image(&params, &mut ws.image, &mut ws.ops);
                    }
                    let flip = flip.is_some_and(|f| draw(f, &ws.image) == OpParams::Apply(true));
                    // The tensor operator ends the pipeline, so its type is the output's.
                    let (dtype, layout) = (self.output.dtype, self.output.layout);
                    let sample_shape =
                        image_shape(ws.image.height as usize, ws.image.width as usize, layout);
                    let len = sample_shape.iter().product::<usize>() * dtype.size();
                    let dst = out
                        .sized(len)
                        .ok_or_else(|| self.shape_error(index, &step.name, &sample_shape))?;
                    self.ops[op].write_tensor(&ws.image, flip, dst);
                    shape = Some(sample_shape);
                }
            }
            t = self.timers.record(FIRST_STEP_STAGE + s, t);
            if let Some(c) = cache.filter(|c| c.prefix_steps == s + 1 && first_step == 0) {
                c.offer(index, &ws.image);
            }
        }
        match shape {
            Some(shape) => Ok(shape),
            None => {
                if let SampleOut::Image(dst) = out {
                    dst.clone_from(&ws.image);
                    return Ok(image_shape(
                        dst.height as usize,
                        dst.width as usize,
                        Layout::Hwc,
                    ));
                }
                // No tensor operator: the u8 HWC image is the output.
                let image = &ws.image;
                let shape = image_shape(image.height as usize, image.width as usize, Layout::Hwc);
                let dst = out
                    .sized(image.data.len())
                    .ok_or_else(|| self.shape_error(index, "output", &shape))?;
                dst.copy_from_slice(&image.data);
                Ok(shape)
            }
        }
    }

    /// Read sample `index`'s bytes (timed from `t`) and move the stage on to decoding; returns
    /// when the read ended.
    fn read_for_decode(
        &self,
        index: u64,
        bytes: &mut Vec<u8>,
        stage: &Cell<usize>,
        t: Instant,
    ) -> Result<Instant, SampleError> {
        self.source
            .read(index, bytes)
            .map_err(|e| self.sample_error(index, "read", e.to_string()))?;
        let t = self.timers.record(READ_STAGE, t);
        stage.set(DECODE_STAGE);
        Ok(t)
    }

    /// The audio and text path: read → DecodeAudio or Tokenize → speech or text steps → the
    /// 32-bit values of the final audio, features, token ids or embeddings into the sample's
    /// buffer; returns their shape (`[channels, samples]`, `[bins, frames]`, `[tokens]` or
    /// `[tokens, dim]`).
    fn process_value(
        &self,
        epoch: u32,
        index: u64,
        ws: &mut WorkerScratch,
        mut out: SampleOut<'_>,
        stage: &Cell<usize>,
    ) -> Result<Vec<usize>, SampleError> {
        let t = self.read_for_decode(index, &mut ws.bytes, stage, Instant::now())?;
        let decoded = match &self.decode {
            Decoder::Audio(decoder) => decoder.decode(&ws.bytes).map(|audio| {
                self.timers.audio_decoded(audio.seconds());
                Value::Audio(audio)
            }),
            Decoder::Text(decoder) => decoder.decode(&ws.bytes).map(|tokens| {
                self.timers.tokens_decoded(tokens.ids.len());
                Value::Tokens(tokens)
            }),
            Decoder::Image(_) => unreachable!("images take process_with"),
        };
        ws.value = decoded.map_err(|m| self.sample_error(index, self.decode.name(), m))?;
        let mut t = self.timers.record(DECODE_STAGE, t);
        for (s, step) in self.steps.iter().enumerate() {
            stage.set(FIRST_STEP_STAGE + s);
            let rng = |i: usize| SampleRng::new(self.settings.seed, epoch, index, self.op_ids[i]);
            match step.kind {
                StepKind::Audio(i) => match &self.ops[i] {
                    Op::Audio(op) => op.apply(&mut ws.value, &mut rng(i)),
                    Op::Text(op) => op.apply(&mut ws.value, &rng(i)),
                    Op::User(op) => op.run(&mut ws.value, &mut rng(i)),
                    other => unreachable!("{} is not a value step", other.name()),
                },
                StepKind::StretchNorm { stretch, norm } => {
                    let (Op::Audio(s), Op::Audio(n)) = (&self.ops[stretch], &self.ops[norm]) else {
                        unreachable!("a fused stretch step holds two speech operators")
                    };
                    crate::ops::stretch_then_norm(s, n, &mut ws.value, &mut rng(stretch))
                }
                // The batcher looks the ids up; a bad id fails here, naming the operator.
                StepKind::Gather(i) => match (&self.ops[i], &ws.value) {
                    (Op::Text(TextOp::EmbeddingLookup(table)), Value::Tokens(tokens)) => {
                        table.check(tokens)
                    }
                    _ => unreachable!("a gather step is an EmbeddingLookup on tokens"),
                },
                _ => unreachable!("an audio or text pipeline has only value steps"),
            }
            .map_err(|m| self.sample_error(index, &step.name, m))?;
            // A gather step's time is the batcher's (its per-sample check is a scan of ids).
            if !matches!(step.kind, StepKind::Gather(_)) {
                t = self.timers.record(FIRST_STEP_STAGE + s, t);
            }
        }
        let shape = ws.value.shape();
        if let SampleOut::Value(v) = out {
            *v = std::mem::take(&mut ws.value);
            return Ok(shape);
        }
        let dst = out
            .sized(ws.value.len_f32() * 4)
            .ok_or_else(|| self.shape_error(index, "output", &shape))?;
        ws.value.write_f32(dst);
        Ok(shape)
    }

    fn shape_error(&self, index: u64, operator: &str, got: &[usize]) -> SampleError {
        self.sample_error(
            index,
            operator,
            format!(
                "output shape {got:?} does not match the pipeline's fixed shape {:?}",
                self.output.sample_shape
            ),
        )
    }
}

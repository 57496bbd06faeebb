//! Running a sequence of image operators (and the final tensor write) on a batch: upload once,
//! one command stream, one readback. Per-sample parameters arrive as arrays drawn on the host by
//! the same code as the CPU path.

use super::kernels::{field, Params, WORKGROUP};
use super::WgpuContext;
use crate::ops::resample::AxisWeights;
use crate::ops::{center_offset, gaussian_kernel, CropBox, JitterParams, Op};
use crate::tensor::{DType, Image, Layout};
use std::ops::Range;

/// One image operator applied to a batch, with each sample's parameters.
#[derive(Debug, Clone)]
pub enum ImageStage {
    /// Crop + antialiased bilinear resize (RandomResizedCrop, Resize): each sample its own box
    /// and output size.
    Resample(Vec<CropBox>),
    /// CenterCrop to a fixed size (zero padding where the image is smaller).
    CenterCrop {
        width: u32,
        height: u32,
    },
    /// Horizontal flip where true.
    Flip(Vec<bool>),
    Jitter(Vec<JitterParams>),
    /// RandomGrayscale: luma where true.
    Grayscale(Vec<bool>),
    /// GaussianBlur with each sample's sigma (None: unchanged).
    Blur {
        sigmas: Vec<Option<f32>>,
        kernel_size: u32,
    },
}

impl ImageStage {
    fn samples(&self) -> Option<usize> {
        match self {
            ImageStage::Resample(v) => Some(v.len()),
            ImageStage::CenterCrop { .. } => None,
            ImageStage::Flip(v) | ImageStage::Grayscale(v) => Some(v.len()),
            ImageStage::Jitter(v) => Some(v.len()),
            ImageStage::Blur { sigmas, .. } => Some(sigmas.len()),
        }
    }

    fn output_size(&self, s: usize, size: (u32, u32)) -> (u32, u32) {
        match self {
            ImageStage::Resample(boxes) => (boxes[s].out_width, boxes[s].out_height),
            ImageStage::CenterCrop { width, height } => (*width, *height),
            _ => size,
        }
    }

    /// Whether the stage writes a new image (rather than updating it in place).
    fn out_of_place(&self) -> bool {
        matches!(
            self,
            ImageStage::Resample(_) | ImageStage::CenterCrop { .. } | ImageStage::Flip(_)
        )
    }
}

/// The tensor-producing end of a pipeline (Normalize or Cast): `u8 · scale[c] + bias[c]`
/// written as `dtype` in `layout`, exactly the CPU path's formula.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorWrite {
    pub dtype: DType,
    pub layout: Layout,
    pub scale: [f32; 3],
    pub bias: [f32; 3],
}

impl TensorWrite {
    /// The write a Normalize or Cast operator performs; None for image operators.
    pub fn for_op(op: &Op) -> Option<TensorWrite> {
        match op {
            Op::Normalize(n) => {
                let (scale, bias) = n.scale_bias();
                Some(TensorWrite {
                    dtype: n.dtype,
                    layout: n.layout,
                    scale,
                    bias,
                })
            }
            Op::Cast(c) => Some(TensorWrite {
                dtype: c.dtype,
                layout: c.layout,
                scale: [1.0; 3],
                bias: [0.0; 3],
            }),
            _ => None,
        }
    }

    fn dtype_code(&self) -> u32 {
        match self.dtype {
            DType::U8 => 0,
            DType::F16 => 1,
            DType::Bf16 => 2,
            DType::F32 => 3,
        }
    }

    fn sample_bytes(&self, (w, h): (u32, u32)) -> u64 {
        3 * u64::from(w) * u64::from(h) * self.dtype.size() as u64
    }
}

/// Words of a packed image: whole 4-pixel groups of 3 words.
fn image_words((w, h): (u32, u32)) -> u64 {
    (u64::from(w) * u64::from(h)).div_ceil(4) * 3
}

/// The stages as they will run: trailing flips folded into the tensor write, and a resample
/// directly before the write fused with it.
struct Plan<'a> {
    stages: Vec<&'a ImageStage>,
    write: Option<&'a TensorWrite>,
    flips: Vec<bool>,
    fused: Option<&'a [CropBox]>,
    /// Per sample, the size after each stage (index 0: input).
    sizes: Vec<Vec<(u32, u32)>>,
}

impl<'a> Plan<'a> {
    fn new(
        images: &[Image],
        stages: &'a [ImageStage],
        write: Option<&'a TensorWrite>,
    ) -> Result<Self, String> {
        let n = images.len();
        if let Some(bad) = stages.iter().find(|s| s.samples().is_some_and(|k| k != n)) {
            return Err(format!(
                "{bad:?}: {} parameter sets for {n} images",
                bad.samples().unwrap_or(0)
            ));
        }
        let mut stages: Vec<&ImageStage> = stages.iter().collect();
        let mut flips = vec![false; n];
        let mut fused = None;
        if write.is_some() {
            while let Some(ImageStage::Flip(f)) = stages.last() {
                for (a, b) in flips.iter_mut().zip(f) {
                    *a ^= *b;
                }
                stages.pop();
            }
            if let Some(ImageStage::Resample(boxes)) = stages.last() {
                fused = Some(boxes.as_slice());
                stages.pop();
            }
        }
        let sizes = (0..n)
            .map(|s| {
                let mut size = (images[s].width, images[s].height);
                let mut v = vec![size];
                for stage in &stages {
                    size = stage.output_size(s, size);
                    v.push(size);
                }
                if let Some(boxes) = fused {
                    v.push((boxes[s].out_width, boxes[s].out_height));
                }
                v
            })
            .collect();
        Ok(Plan {
            stages,
            write,
            flips,
            fused,
            sizes,
        })
    }

    fn final_size(&self, s: usize) -> (u32, u32) {
        *self.sizes[s].last().unwrap()
    }

    /// Bytes sample `s` needs in each device buffer: the image generations, aux, output.
    fn sample_needs(&self, s: usize) -> Vec<u64> {
        let sizes = &self.sizes[s];
        let mut needs = vec![image_words(sizes[0]) * 4];
        let mut aux = 4u64;
        for (k, stage) in self.stages.iter().enumerate() {
            let (w, h) = sizes[k + 1];
            if stage.out_of_place() {
                needs.push(image_words((w, h)) * 4);
            }
            aux = aux.max(match stage {
                ImageStage::Resample(boxes) => {
                    resample_aux(&axis_weights(&boxes[s], sizes[k]).0, h) * 4
                }
                ImageStage::Blur { .. } => u64::from(w) * u64::from(h) * 12,
                _ => 4,
            });
        }
        if let Some(boxes) = self.fused {
            let (h, _) = axis_weights(&boxes[s], sizes[sizes.len() - 2]);
            aux = aux.max(resample_aux(&h, boxes[s].out_height) * 4);
        }
        needs.push(aux);
        if let Some(write) = self.write {
            needs.push(write.sample_bytes(self.final_size(s)).div_ceil(4) * 4);
        }
        needs
    }

    /// Split the samples into runs whose every buffer fits `limit` bytes.
    fn chunks(&self, limit: u64) -> Result<Vec<Range<usize>>, String> {
        let mut chunks = Vec::new();
        let mut start = 0;
        let mut totals: Vec<u64> = Vec::new();
        for s in 0..self.sizes.len() {
            let needs = self.sample_needs(s);
            if needs.iter().any(|&b| b > limit) {
                return Err(format!(
                    "sample {s} ({}x{}) needs a {} byte buffer, over the device's {limit} byte \
                     storage binding limit",
                    self.sizes[s][0].0,
                    self.sizes[s][0].1,
                    needs.iter().max().unwrap()
                ));
            }
            let fits = totals.iter().zip(&needs).all(|(t, b)| t + b <= limit)
                && s - start < u16::MAX as usize;
            if !fits {
                chunks.push(start..s);
                start = s;
                totals.clear();
            }
            if totals.is_empty() {
                totals = needs;
            } else {
                totals.iter_mut().zip(&needs).for_each(|(t, b)| *t += b);
            }
        }
        if start < self.sizes.len() {
            chunks.push(start..self.sizes.len());
        }
        Ok(chunks)
    }
}

/// Where a chunk's result goes.
enum Sink<'a> {
    Tensor(&'a mut [u8]),
    Images(&'a mut Vec<Image>),
}

/// One kernel dispatch: buffers by index into the chunk's buffer list.
struct Pass {
    entry: &'static str,
    dst: usize,
    src: usize,
    records: Range<u64>,
    uniform: u64,
    groups: (u32, u32),
    /// Zero this many leading bytes of the aux buffer first (jitter's per-sample luma sums).
    clear_aux: Option<u64>,
}

const RECORDS: usize = 0;
const AUX: usize = 1;

/// The chunk's input images and the buffer they go to.
struct Upload<'a> {
    buffer: usize,
    images: &'a [Image],
    samples: &'a [usize],
    plan: &'a Plan<'a>,
}

/// Host-side contents of one chunk's command stream, before upload.
struct Encoding {
    records: Vec<u32>,
    uniforms: Vec<u8>,
    passes: Vec<Pass>,
    align: u64,
}

impl Encoding {
    /// Append per-sample records (rec_words each) followed by `tail` (tables the records point
    /// into, at offsets counted from the first record), and a uniform block; returns their
    /// ranges.
    fn push(
        &mut self,
        recs: &[Vec<u32>],
        rec_words: usize,
        tail: &[u32],
        mut params: Params,
    ) -> (Range<u64>, u64) {
        let align_words = (self.align / 4) as usize;
        self.records
            .resize(self.records.len().div_ceil(align_words) * align_words, 0);
        let start = self.records.len() as u64 * 4;
        for r in recs {
            let mut r = r.clone();
            r.resize(rec_words, 0);
            self.records.extend(r);
        }
        self.records.extend_from_slice(tail);
        if self.records.len() as u64 * 4 == start {
            self.records.push(0); // bindings cannot be empty
        }
        let end = self.records.len() as u64 * 4;
        params.rec_words = rec_words as u32;
        params.samples = recs.len() as u32;
        self.uniforms.resize(
            (self.uniforms.len() as u64).div_ceil(self.align) as usize * self.align as usize,
            0,
        );
        let uniform = self.uniforms.len() as u64;
        self.uniforms.extend_from_slice(bytemuck::bytes_of(&params));
        (start..end, uniform)
    }

    #[allow(clippy::too_many_arguments)]
    fn pass(
        &mut self,
        entry: &'static str,
        dst: usize,
        src: usize,
        recs: &[Vec<u32>],
        (rec_words, tail): (usize, &[u32]),
        params: Params,
        width: u64,
    ) -> Result<(), String> {
        let (records, uniform) = self.push(recs, rec_words, tail, params);
        let x = width.div_ceil(u64::from(WORKGROUP)).max(1);
        if x > 65535 {
            return Err(format!(
                "{entry}: an image needs {x} workgroups in one dimension, over the limit of 65535"
            ));
        }
        self.passes.push(Pass {
            entry,
            dst,
            src,
            records,
            uniform,
            groups: (x as u32, recs.len() as u32),
            clear_aux: None,
        });
        Ok(())
    }
}

fn f32_bits(v: f64) -> u32 {
    (v as f32).to_bits()
}

/// The CPU resizer's fixed-point weights for one resample of a chunk's samples, laid out to
/// follow the pass's records, and where each sample's first-pass output goes in aux.
struct Tables {
    tail: Vec<u32>,
    /// Per sample: COL0, COLS, H_TAB, V_TAB, PREC_H, PREC_V, WIN_H, WIN_V.
    fields: Vec<[u32; 8]>,
    /// Aux offsets (floats) per sample, and the floats in all.
    aux_offsets: Vec<u64>,
    aux_floats: u64,
    /// The most first-pass invocations one sample needs.
    widest: u64,
}

/// Weights for resampling `b` from a `src`-sized image.
fn axis_weights(b: &CropBox, (w, h): (u32, u32)) -> (AxisWeights, AxisWeights) {
    (
        AxisWeights::new(w, b.left, b.width, b.out_width),
        AxisWeights::new(h, b.top, b.height, b.out_height),
    )
}

/// Aux floats the vertical pass leaves for the horizontal one: output rows × the source
/// columns the horizontal weights read × 3.
fn resample_aux(horizontal: &AxisWeights, out_height: u32) -> u64 {
    u64::from(horizontal.span().1) * u64::from(out_height) * 3
}

fn push_axis(tail: &mut Vec<u32>, a: &AxisWeights) {
    for o in 0..a.starts.len() {
        tail.push(a.starts[o]);
        tail.push(a.sizes[o]);
        tail.extend(
            a.weights[o * a.window..(o + 1) * a.window]
                .iter()
                .map(|&w| w as u32),
        );
    }
}

fn resample_tables(
    boxes: &[CropBox],
    samples: &[usize],
    src: impl Fn(usize) -> (u32, u32),
) -> Tables {
    let base = (samples.len() * field::EXTRA) as u32;
    let mut tail = Vec::new();
    let mut fields = Vec::with_capacity(samples.len());
    let mut floats = Vec::with_capacity(samples.len());
    for &s in samples {
        let (h, v) = axis_weights(&boxes[s], src(s));
        let (col0, cols) = h.span();
        let h_tab = base + tail.len() as u32;
        push_axis(&mut tail, &h);
        let v_tab = base + tail.len() as u32;
        push_axis(&mut tail, &v);
        fields.push([
            col0,
            cols,
            h_tab,
            v_tab,
            h.precision,
            v.precision,
            h.window as u32,
            v.window as u32,
        ]);
        floats.push(resample_aux(&h, boxes[s].out_height));
    }
    let widest = floats.iter().max().map_or(0, |f| f / 3);
    let (aux_offsets, aux_floats) = offsets(floats.into_iter());
    Tables {
        tail,
        fields,
        aux_offsets,
        aux_floats,
        widest,
    }
}

fn set_resample(r: &mut [u32], f: &[u32; 8]) {
    r[field::COL0..field::COL0 + 2].copy_from_slice(&f[..2]);
    r[field::H_TAB..field::H_TAB + 6].copy_from_slice(&f[2..]);
}

/// A record with the image fields of one sample filled in.
fn record(dst_off: u64, (w, h): (u32, u32), aux_off: u64) -> Vec<u32> {
    let mut r = vec![0u32; field::EXTRA];
    r[field::DST_OFF] = dst_off as u32;
    r[field::WIDTH] = w;
    r[field::HEIGHT] = h;
    r[field::AUX_OFF] = aux_off as u32;
    r
}

fn set_source(r: &mut [u32], src_off: u64, (w, h): (u32, u32)) {
    r[field::SRC_OFF] = src_off as u32;
    r[field::SRC_W] = w;
    r[field::SRC_H] = h;
}

/// Word offsets of consecutive items of the given word counts.
fn offsets(words: impl Iterator<Item = u64>) -> (Vec<u64>, u64) {
    let mut total = 0;
    let offsets = words
        .map(|w| {
            let o = total;
            total += w;
            o
        })
        .collect();
    (offsets, total)
}

impl WgpuContext {
    /// Run `stages` then `write` on `images`, writing each sample's tensor, in order and
    /// contiguously, into `out` (which must be exactly the total size).
    pub fn run_to_tensor(
        &self,
        images: &[Image],
        stages: &[ImageStage],
        write: &TensorWrite,
        out: &mut [u8],
    ) -> Result<(), String> {
        let plan = Plan::new(images, stages, Some(write))?;
        let total: u64 = (0..images.len())
            .map(|s| write.sample_bytes(plan.final_size(s)))
            .sum();
        if total != out.len() as u64 {
            return Err(format!(
                "the output buffer holds {} bytes; the batch's tensors need {total}",
                out.len()
            ));
        }
        let mut at = 0usize;
        for range in plan.chunks(self.binding_limit)? {
            let bytes: u64 = range
                .clone()
                .map(|s| write.sample_bytes(plan.final_size(s)))
                .sum();
            let dst = &mut out[at..at + bytes as usize];
            self.run_chunk(images, &plan, range, Sink::Tensor(dst))?;
            at += bytes as usize;
        }
        Ok(())
    }

    /// Run `stages` on `images` and return the resulting u8 images.
    pub fn run_to_images(
        &self,
        images: &[Image],
        stages: &[ImageStage],
    ) -> Result<Vec<Image>, String> {
        let plan = Plan::new(images, stages, None)?;
        let mut out = Vec::with_capacity(images.len());
        for range in plan.chunks(self.binding_limit)? {
            self.run_chunk(images, &plan, range, Sink::Images(&mut out))?;
        }
        Ok(out)
    }

    fn run_chunk(
        &self,
        images: &[Image],
        plan: &Plan,
        range: Range<usize>,
        sink: Sink,
    ) -> Result<(), String> {
        let samples: Vec<usize> = range.collect();
        let mut enc = Encoding {
            records: Vec::new(),
            uniforms: Vec::new(),
            passes: Vec::new(),
            align: self.min_uniform_align.max(4),
        };
        // Buffer sizes in bytes, by index: records, aux, then image generations, then output.
        let mut sizes: Vec<u64> = vec![0, 4];
        let mut aux_bytes = 4u64;
        let generation = |k: usize| -> (Vec<u64>, u64) {
            offsets(samples.iter().map(|&s| image_words(plan.sizes[s][k])))
        };
        let (mut cur_off, words) = generation(0);
        let mut cur = sizes.len();
        sizes.push(words * 4);
        let input_buffer = cur;
        let poison = self.poisoning();

        for (k, stage) in plan.stages.iter().enumerate() {
            let size_in = |s: usize| plan.sizes[s][k];
            let size_out = |s: usize| plan.sizes[s][k + 1];
            let base = Params::default();
            if stage.out_of_place() {
                let (next_off, words) = generation(k + 1);
                let next = sizes.len();
                sizes.push(words * 4);
                if poison {
                    self.poison_pass(&mut enc, next, words)?;
                }
                let tables = match stage {
                    ImageStage::Resample(boxes) => Some(resample_tables(boxes, &samples, size_in)),
                    _ => None,
                };
                let recs: Vec<Vec<u32>> = samples
                    .iter()
                    .enumerate()
                    .map(|(i, &s)| {
                        let aux = tables.as_ref().map_or(0, |t| t.aux_offsets[i]);
                        let mut r = record(next_off[i], size_out(s), aux);
                        set_source(&mut r, cur_off[i], size_in(s));
                        match stage {
                            ImageStage::Resample(_) => {
                                set_resample(&mut r, &tables.as_ref().unwrap().fields[i])
                            }
                            ImageStage::CenterCrop { width, height } => {
                                let (sw, sh) = size_in(s);
                                r[field::LEFT] = f32_bits(center_offset(sw, *width) as f64);
                                r[field::TOP] = f32_bits(center_offset(sh, *height) as f64);
                            }
                            ImageStage::Flip(flags) => r[field::FLAG] = u32::from(flags[s]),
                            _ => unreachable!("in-place stage"),
                        }
                        r
                    })
                    .collect();
                let max_groups = samples
                    .iter()
                    .map(|&s| image_words(size_out(s)) / 3)
                    .max()
                    .unwrap_or(0);
                match &tables {
                    Some(t) => {
                        aux_bytes = aux_bytes.max(t.aux_floats * 4);
                        let words = (field::EXTRA, t.tail.as_slice());
                        enc.pass("resample_vertical", next, cur, &recs, words, base, t.widest)?;
                        let entry = "resample_horizontal";
                        enc.pass(entry, next, cur, &recs, words, base, max_groups)?;
                    }
                    None => {
                        let words = (field::EXTRA, &[][..]);
                        enc.pass("copy_crop", next, cur, &recs, words, base, max_groups)?;
                    }
                }
                cur = next;
                cur_off = next_off;
                continue;
            }
            // In-place stages.
            let max_pixels = samples
                .iter()
                .map(|&s| {
                    let (w, h) = size_in(s);
                    u64::from(w) * u64::from(h)
                })
                .max()
                .unwrap_or(0);
            let max_groups = max_pixels.div_ceil(4);
            let base_rec = |i: usize, s: usize, aux: u64| record(cur_off[i], size_in(s), aux);
            match stage {
                ImageStage::Grayscale(flags) => {
                    let recs: Vec<_> = samples
                        .iter()
                        .enumerate()
                        .map(|(i, &s)| {
                            let mut r = base_rec(i, s, 0);
                            r[field::FLAG] = u32::from(flags[s]);
                            r
                        })
                        .collect();
                    let words = (field::EXTRA, &[][..]);
                    enc.pass("grayscale", cur, RECORDS, &recs, words, base, max_groups)?;
                }
                ImageStage::Blur {
                    sigmas,
                    kernel_size,
                } => {
                    let (aux_off, aux_words) = offsets(samples.iter().map(|&s| {
                        let (w, h) = size_in(s);
                        u64::from(w) * u64::from(h) * 3
                    }));
                    aux_bytes = aux_bytes.max(aux_words * 4);
                    let recs: Vec<_> = samples
                        .iter()
                        .enumerate()
                        .map(|(i, &s)| {
                            let mut r = base_rec(i, s, aux_off[i]);
                            r[field::FLAG] = u32::from(sigmas[s].is_some());
                            // The CPU path's weights, including its skipped (< 1e-7) taps as 0.
                            let weights = gaussian_kernel(*kernel_size, sigmas[s].unwrap_or(1.0));
                            r.extend(weights.iter().map(
                                |&w| {
                                    if w >= 1e-7 {
                                        w.to_bits()
                                    } else {
                                        0
                                    }
                                },
                            ));
                            r
                        })
                        .collect();
                    let words = field::EXTRA + *kernel_size as usize;
                    let params = Params {
                        taps: *kernel_size,
                        ..base
                    };
                    enc.pass(
                        "blur_h",
                        cur,
                        RECORDS,
                        &recs,
                        (words, &[]),
                        params,
                        max_pixels,
                    )?;
                    enc.pass(
                        "blur_v",
                        cur,
                        RECORDS,
                        &recs,
                        (words, &[]),
                        params,
                        max_groups,
                    )?;
                }
                ImageStage::Jitter(params) => {
                    let recs: Vec<_> = samples
                        .iter()
                        .enumerate()
                        .map(|(i, &s)| {
                            let p = &params[s];
                            let mut r = base_rec(i, s, 0);
                            r.extend(p.order.iter().map(|&k| {
                                let enabled = p.apply && p.factors[k as usize].is_some();
                                if enabled {
                                    u32::from(k)
                                } else {
                                    JITTER_NONE
                                }
                            }));
                            r.extend(p.factors.map(|f| f.unwrap_or(0.0).to_bits()));
                            r
                        })
                        .collect();
                    aux_bytes = aux_bytes.max(samples.len() as u64 * 4);
                    let words = field::EXTRA + 8;
                    for slot in 0..4 {
                        let params = Params { slot, ..base };
                        enc.pass(
                            "luma_sum",
                            cur,
                            RECORDS,
                            &recs,
                            (words, &[]),
                            params,
                            max_groups,
                        )?;
                        enc.passes.last_mut().unwrap().clear_aux = Some(samples.len() as u64 * 4);
                        let entry = "jitter_apply";
                        enc.pass(entry, cur, RECORDS, &recs, (words, &[]), params, max_groups)?;
                    }
                }
                _ => unreachable!("out-of-place stage"),
            }
        }

        // The end: a tensor write (fused with a final resample), or the images themselves.
        let result = match plan.write {
            Some(write) => {
                let last = plan.sizes[samples[0]].len() - 1;
                let (out_off, words) = offsets(
                    samples
                        .iter()
                        .map(|&s| write.sample_bytes(plan.sizes[s][last]).div_ceil(4)),
                );
                let out = sizes.len();
                sizes.push(words * 4);
                if poison {
                    self.poison_pass(&mut enc, out, words)?;
                }
                let tables = plan
                    .fused
                    .map(|boxes| resample_tables(boxes, &samples, |s| plan.sizes[s][last - 1]));
                let recs: Vec<_> = samples
                    .iter()
                    .enumerate()
                    .map(|(i, &s)| {
                        let aux = tables.as_ref().map_or(0, |t| t.aux_offsets[i]);
                        let mut r = record(out_off[i], plan.sizes[s][last], aux);
                        r[field::FLAG] = u32::from(plan.flips[s]);
                        match &tables {
                            Some(t) => {
                                set_source(&mut r, cur_off[i], plan.sizes[s][last - 1]);
                                set_resample(&mut r, &t.fields[i]);
                            }
                            None => set_source(&mut r, cur_off[i], plan.sizes[s][last]),
                        }
                        r
                    })
                    .collect();
                let tail = tables.as_ref().map_or(&[][..], |t| t.tail.as_slice());
                let params = Params {
                    mode: u32::from(plan.fused.is_some()),
                    dtype: write.dtype_code(),
                    chw: u32::from(write.layout == Layout::Chw),
                    scale: [write.scale[0], write.scale[1], write.scale[2], 0.0],
                    bias: [write.bias[0], write.bias[1], write.bias[2], 0.0],
                    ..Params::default()
                };
                if let Some(t) = &tables {
                    aux_bytes = aux_bytes.max(t.aux_floats * 4);
                    // The first pass writes into aux; its dst binding is unused.
                    let entry = "resample_vertical";
                    enc.pass(
                        entry,
                        out,
                        cur,
                        &recs,
                        (field::EXTRA, tail),
                        params,
                        t.widest,
                    )?;
                }
                let max_words = samples
                    .iter()
                    .map(|&s| write.sample_bytes(plan.sizes[s][last]).div_ceil(4))
                    .max()
                    .unwrap_or(0);
                let rec_words = (field::EXTRA, tail);
                enc.pass(
                    "write_tensor",
                    out,
                    cur,
                    &recs,
                    rec_words,
                    params,
                    max_words,
                )?;
                (out, out_off, words)
            }
            None => {
                let words = sizes[cur] / 4;
                (cur, cur_off.clone(), words)
            }
        };
        sizes[AUX] = aux_bytes;
        sizes[RECORDS] = (enc.records.len() as u64 * 4).max(4);

        let (result, out_off, result_words) = result;
        let upload = Upload {
            buffer: input_buffer,
            images,
            samples: &samples,
            plan,
        };
        let bytes = self.submit(&enc, &sizes, upload, result, result_words * 4)?;
        match sink {
            Sink::Tensor(dst) => {
                let write = plan.write.unwrap();
                let mut at = 0;
                for (i, &s) in samples.iter().enumerate() {
                    let n = write.sample_bytes(plan.final_size(s)) as usize;
                    let start = out_off[i] as usize * 4;
                    dst[at..at + n].copy_from_slice(&bytes[start..start + n]);
                    at += n;
                }
            }
            Sink::Images(out) => {
                for (i, &s) in samples.iter().enumerate() {
                    let (w, h) = plan.final_size(s);
                    let n = w as usize * h as usize * 3;
                    let start = out_off[i] as usize * 4;
                    out.push(Image {
                        width: w,
                        height: h,
                        data: bytes[start..start + n].to_vec(),
                    });
                }
            }
        }
        Ok(())
    }

    fn poison_pass(&self, enc: &mut Encoding, buffer: usize, words: u64) -> Result<(), String> {
        let params = Params {
            total_words: words as u32,
            ..Params::default()
        };
        let (records, uniform) = enc.push(&[], 0, &[], params);
        let groups = words.div_ceil(u64::from(WORKGROUP)).max(1);
        let x = groups.min(65535);
        enc.passes.push(Pass {
            entry: "fill",
            dst: buffer,
            src: RECORDS,
            records,
            uniform,
            groups: (x as u32, groups.div_ceil(x) as u32),
            clear_aux: None,
        });
        Ok(())
    }

    /// Upload, encode every pass, submit, and read back `read_bytes` of buffer `result`.
    fn submit(
        &self,
        enc: &Encoding,
        sizes: &[u64],
        upload: Upload,
        result: usize,
        read_bytes: u64,
    ) -> Result<Vec<u8>, String> {
        let Upload {
            buffer: input_buffer,
            images,
            samples,
            plan,
        } = upload;
        use wgpu::BufferUsages as U;
        let storage = U::STORAGE | U::COPY_DST | U::COPY_SRC;
        let buffers: Vec<wgpu::Buffer> = sizes
            .iter()
            .map(|&bytes| self.pool.take(&self.device, storage, bytes.max(4)))
            .collect();
        let uniforms = self.pool.take(
            &self.device,
            U::UNIFORM | U::COPY_DST,
            enc.uniforms.len() as u64,
        );
        let readback = self
            .pool
            .take(&self.device, U::MAP_READ | U::COPY_DST, read_bytes.max(4));

        // Upload: the packed input images, the records, the uniform blocks.
        let (input_off, input_words) =
            offsets(samples.iter().map(|&s| image_words(plan.sizes[s][0])));
        let mut packed = vec![0u8; input_words as usize * 4];
        for (i, &s) in samples.iter().enumerate() {
            let data = &images[s].data;
            let start = input_off[i] as usize * 4;
            packed[start..start + data.len()].copy_from_slice(data);
        }
        self.queue.write_buffer(&buffers[input_buffer], 0, &packed);
        self.queue
            .write_buffer(&buffers[RECORDS], 0, bytemuck::cast_slice(&enc.records));
        self.queue.write_buffer(&uniforms, 0, &enc.uniforms);

        // Validation errors become this batch's error instead of a panic on the device's thread.
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut encoder = self.device.create_command_encoder(&Default::default());
        for pass in &enc.passes {
            let params_size = std::mem::size_of::<Params>() as u64;
            let entries = [
                binding(&buffers[pass.dst], None),
                binding(&buffers[pass.src], None),
                binding(&buffers[RECORDS], Some(pass.records.clone())),
                binding(&buffers[AUX], None),
                binding(&uniforms, Some(pass.uniform..pass.uniform + params_size)),
            ];
            let entries: Vec<_> = entries
                .into_iter()
                .enumerate()
                .map(|(i, resource)| wgpu::BindGroupEntry {
                    binding: i as u32,
                    resource,
                })
                .collect();
            let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(pass.entry),
                layout: &self.kernels.layout,
                entries: &entries,
            });
            if let Some(bytes) = pass.clear_aux {
                encoder.clear_buffer(&buffers[AUX], 0, Some(bytes));
            }
            let mut cpass = encoder.begin_compute_pass(&Default::default());
            cpass.set_pipeline(self.kernels.get(pass.entry));
            cpass.set_bind_group(0, &bind_group, &[]);
            cpass.dispatch_workgroups(pass.groups.0, pass.groups.1, 1);
        }
        encoder.copy_buffer_to_buffer(&buffers[result], 0, &readback, 0, read_bytes);
        self.queue.submit([encoder.finish()]);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(format!("the GPU rejected the batch's commands: {e}"));
        }
        let slice = readback.slice(..read_bytes);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| format!("waiting for the GPU failed: {e}"))?;
        let bytes = {
            let mapped = slice
                .get_mapped_range()
                .map_err(|e| format!("reading the result back failed: {e}"))?;
            mapped.to_vec()
        };
        readback.unmap();
        self.pool.give(readback);
        self.pool.give(uniforms);
        for b in buffers {
            self.pool.give(b);
        }
        Ok(bytes)
    }
}

/// All of `buffer`, or the byte range `range` of it.
fn binding(buffer: &wgpu::Buffer, range: Option<Range<u64>>) -> wgpu::BindingResource<'_> {
    match range {
        None => buffer.as_entire_binding(),
        Some(r) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer,
            offset: r.start,
            size: std::num::NonZeroU64::new(r.end - r.start),
        }),
    }
}

/// "No adjustment in this slot" for the jitter kernel.
const JITTER_NONE: u32 = 4;

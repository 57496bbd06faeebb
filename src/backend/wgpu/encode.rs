//! Encoding one chunk of a batch: per-sample records (and resample tables), uniform blocks and
//! the list of kernel dispatches, with the sizes of the device buffers they use. Nothing here
//! touches the device; `run.rs` uploads and submits.

use super::kernels::{field, Params, WORKGROUP};
use super::run::{image_words, EncodedPass, ImageStage, Plan};
use crate::ops::resample::AxisWeights;
use crate::ops::{center_offset, gaussian_kernel, CropBox};
use crate::tensor::Layout;
use std::ops::Range;

/// One kernel dispatch: buffers by index into the chunk's buffer list.
pub(super) struct Pass {
    pub entry: &'static str,
    pub dst: usize,
    pub src: usize,
    pub records: Range<u64>,
    pub uniform: u64,
    pub groups: (u32, u32),
    /// Zero this many leading bytes of the aux buffer first (jitter's per-sample luma sums).
    pub clear_aux: Option<u64>,
}

pub(super) const RECORDS: usize = 0;
pub(super) const AUX: usize = 1;
/// The packed input images.
pub(super) const INPUT: usize = 2;

/// Host-side contents of one chunk's command stream, before upload.
pub(super) struct Encoding {
    pub records: Vec<u32>,
    pub uniforms: Vec<u8>,
    pub passes: Vec<Pass>,
    pub align: u64,
}

impl Encoding {
    /// Fill `words` words of buffer `buffer` with `word` (checking mode).
    pub(super) fn fill(&mut self, buffer: usize, words: u64, word: u32) {
        let params = Params {
            total_words: words as u32,
            mode: word,
            ..Params::default()
        };
        let (records, uniform) = self.push(&[], 0, &[], params);
        let groups = words.div_ceil(u64::from(WORKGROUP)).max(1);
        let x = groups.min(65535);
        self.passes.push(Pass {
            entry: "fill",
            dst: buffer,
            src: RECORDS,
            records,
            uniform,
            groups: (x as u32, groups.div_ceil(x) as u32),
            clear_aux: None,
        });
    }

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
    pub(super) fn pass(
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

impl Encoding {
    /// Back from an [`EncodedBatch`]: uniform blocks re-laid at `align`, each pass's records
    /// bound from its start to the end of the records; with `poison`, every work buffer (aux
    /// and 3 on) filled with that word first, as the CUDA runner does.
    pub(super) fn from_encoded(
        batch: &super::run::EncodedBatch,
        align: u64,
        poison: Option<u32>,
    ) -> Encoding {
        let mut enc = Encoding {
            records: batch.records.clone(),
            uniforms: Vec::new(),
            passes: Vec::new(),
            align,
        };
        if let Some(word) = poison {
            for (i, &bytes) in batch.buffer_bytes.iter().enumerate().skip(AUX) {
                if i != INPUT {
                    enc.fill(i, bytes.div_ceil(4).max(1), word);
                }
            }
        }
        let end = batch.records.len() as u64 * 4;
        let mut uniforms = std::mem::take(&mut enc.uniforms);
        let passes: Vec<Pass> = batch
            .passes
            .iter()
            .map(|p| {
                uniforms.resize((uniforms.len() as u64).next_multiple_of(align) as usize, 0);
                let uniform = uniforms.len() as u64;
                uniforms.extend_from_slice(&p.params);
                Pass {
                    entry: p.entry,
                    dst: p.dst,
                    src: p.src,
                    records: p.records_start as u64 * 4..end,
                    uniform,
                    groups: p.groups,
                    clear_aux: p.clear_aux,
                }
            })
            .collect();
        enc.uniforms = uniforms;
        enc.passes.extend(passes);
        enc
    }

    /// The passes as [`EncodedPass`]es: record offsets in words, each uniform block's bytes.
    pub(super) fn encoded_passes(&self) -> Vec<EncodedPass> {
        let params_len = std::mem::size_of::<Params>();
        self.passes
            .iter()
            .map(|p| EncodedPass {
                entry: p.entry,
                dst: p.dst,
                src: p.src,
                records_start: p.records.start as usize / 4,
                params: self.uniforms[p.uniform as usize..p.uniform as usize + params_len].to_vec(),
                groups: p.groups,
                clear_aux: p.clear_aux,
            })
            .collect()
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
pub(super) fn axis_weights(b: &CropBox, (w, h): (u32, u32)) -> (AxisWeights, AxisWeights) {
    (
        AxisWeights::new(w, b.left, b.width, b.out_width),
        AxisWeights::new(h, b.top, b.height, b.out_height),
    )
}

/// Aux floats the vertical pass leaves for the horizontal one: output rows × the source
/// columns the horizontal weights read × 3.
pub(super) fn resample_aux(horizontal: &AxisWeights, out_height: u32) -> u64 {
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
pub(super) fn offsets(words: impl Iterator<Item = u64>) -> (Vec<u64>, u64) {
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

/// "No adjustment in this slot" for the jitter kernel.
const JITTER_NONE: u32 = 4;

/// Builds one chunk's encoding stage by stage. Buffers are named by index: records, aux, then
/// each image generation (out-of-place stages make a new one), then the output tensor.
pub(super) struct ChunkEncoder<'a> {
    pub samples: Vec<usize>,
    plan: &'a Plan<'a>,
    pub enc: Encoding,
    /// Bytes of each buffer.
    pub sizes: Vec<u64>,
    aux_bytes: u64,
    /// The current image generation: its buffer, and each sample's word offset in it.
    cur: usize,
    cur_off: Vec<u64>,
    /// Checking mode: the word every new buffer is filled with first.
    poison: Option<u32>,
}

/// What the chunk's command stream leaves for readback.
pub(super) struct Output {
    pub buffer: usize,
    /// Each sample's word offset in it.
    pub offsets: Vec<u64>,
    pub bytes: u64,
}

impl<'a> ChunkEncoder<'a> {
    /// `align`: the device's uniform/storage offset alignment; `poison`: fill outputs with
    /// this word first.
    pub fn new(plan: &'a Plan<'a>, samples: Vec<usize>, align: u64, poison: Option<u32>) -> Self {
        let (cur_off, words) = plan.input_offsets(&samples);
        ChunkEncoder {
            samples,
            plan,
            enc: Encoding {
                records: Vec::new(),
                uniforms: Vec::new(),
                passes: Vec::new(),
                align,
            },
            sizes: vec![0, 4, words * 4],
            aux_bytes: 4,
            cur: INPUT,
            cur_off,
            poison,
        }
    }

    /// Every stage, then the tensor write or the images; returns what to read back.
    pub fn encode(mut self) -> Result<(Encoding, Vec<u64>, Output), String> {
        for (k, stage) in self.plan.stages.iter().enumerate() {
            if stage.out_of_place() {
                self.out_of_place(k, stage)?;
            } else {
                self.in_place(k, stage)?;
            }
        }
        let output = match self.plan.write {
            Some(write) => self.write(write)?,
            None => Output {
                buffer: self.cur,
                offsets: self.cur_off.clone(),
                bytes: self.sizes[self.cur],
            },
        };
        self.sizes[AUX] = self.aux_bytes;
        self.sizes[RECORDS] = (self.enc.records.len() as u64 * 4).max(4);
        Ok((self.enc, self.sizes, output))
    }

    /// A new buffer of `words` words (poisoned in checking mode); returns its index.
    fn new_buffer(&mut self, words: u64) -> usize {
        let index = self.sizes.len();
        self.sizes.push(words * 4);
        if let Some(word) = self.poison {
            self.enc.fill(index, words, word);
        }
        index
    }

    fn max_over_samples(&self, f: impl Fn(usize) -> u64) -> u64 {
        self.samples.iter().map(|&s| f(s)).max().unwrap_or(0)
    }

    /// Resample, CenterCrop or flip into a new image generation.
    fn out_of_place(&mut self, k: usize, stage: &ImageStage) -> Result<(), String> {
        let plan = self.plan;
        let size_in = |s: usize| plan.sizes[s][k];
        let size_out = |s: usize| plan.sizes[s][k + 1];
        let (next_off, words) = offsets(self.samples.iter().map(|&s| image_words(size_out(s))));
        let next = self.new_buffer(words);
        let tables = match stage {
            ImageStage::Resample(boxes) => Some(resample_tables(boxes, &self.samples, size_in)),
            _ => None,
        };
        let recs: Vec<Vec<u32>> = self
            .samples
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let aux = tables.as_ref().map_or(0, |t| t.aux_offsets[i]);
                let mut r = record(next_off[i], size_out(s), aux);
                set_source(&mut r, self.cur_off[i], size_in(s));
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
        let groups = self.max_over_samples(|s| image_words(size_out(s)) / 3);
        let (cur, base) = (self.cur, Params::default());
        match &tables {
            Some(t) => {
                self.aux_bytes = self.aux_bytes.max(t.aux_floats * 4);
                let words = (field::EXTRA, t.tail.as_slice());
                let widest = t.widest;
                self.enc
                    .pass("resample_vertical", next, cur, &recs, words, base, widest)?;
                self.enc
                    .pass("resample_horizontal", next, cur, &recs, words, base, groups)?;
            }
            None => {
                let words = (field::EXTRA, &[][..]);
                self.enc
                    .pass("copy_crop", next, cur, &recs, words, base, groups)?;
            }
        }
        self.cur = next;
        self.cur_off = next_off;
        Ok(())
    }

    /// Grayscale, blur or jitter, updating the current generation in place.
    fn in_place(&mut self, k: usize, stage: &ImageStage) -> Result<(), String> {
        let plan = self.plan;
        let size_in = |s: usize| plan.sizes[s][k];
        let pixels_of = |s: usize| {
            let (w, h) = size_in(s);
            u64::from(w) * u64::from(h)
        };
        let max_pixels = self.max_over_samples(pixels_of);
        let groups = max_pixels.div_ceil(4);
        let records = |extra: &dyn Fn(usize, &mut Vec<u32>), aux: &[u64]| -> Vec<Vec<u32>> {
            self.samples
                .iter()
                .enumerate()
                .map(|(i, &s)| {
                    let mut r = record(self.cur_off[i], size_in(s), aux[i]);
                    extra(s, &mut r);
                    r
                })
                .collect()
        };
        let no_aux = vec![0; self.samples.len()];
        let (cur, base) = (self.cur, Params::default());
        match stage {
            ImageStage::Grayscale(flags) => {
                let recs = records(&|s, r| r[field::FLAG] = u32::from(flags[s]), &no_aux);
                let words = (field::EXTRA, &[][..]);
                self.enc
                    .pass("grayscale", cur, RECORDS, &recs, words, base, groups)?;
            }
            ImageStage::Blur {
                sigmas,
                kernel_size,
            } => {
                let (aux_off, aux_floats) = offsets(self.samples.iter().map(|&s| pixels_of(s) * 3));
                self.aux_bytes = self.aux_bytes.max(aux_floats * 4);
                let recs = records(
                    &|s, r| {
                        r[field::FLAG] = u32::from(sigmas[s].is_some());
                        // The CPU path's weights, including its skipped (< 1e-7) taps as 0.
                        let weights = gaussian_kernel(*kernel_size, sigmas[s].unwrap_or(1.0));
                        r.extend(
                            weights
                                .iter()
                                .map(|&w| if w >= 1e-7 { w.to_bits() } else { 0 }),
                        );
                    },
                    &aux_off,
                );
                let words = (field::EXTRA + *kernel_size as usize, &[][..]);
                let params = Params {
                    taps: *kernel_size,
                    ..base
                };
                self.enc
                    .pass("blur_h", cur, RECORDS, &recs, words, params, max_pixels)?;
                self.enc
                    .pass("blur_v", cur, RECORDS, &recs, words, params, groups)?;
            }
            ImageStage::Jitter(params) => {
                let recs = records(
                    &|s, r| {
                        let p = &params[s];
                        r.extend(p.order.iter().map(|&k| {
                            if p.apply && p.factors[k as usize].is_some() {
                                u32::from(k)
                            } else {
                                JITTER_NONE
                            }
                        }));
                        r.extend(p.factors.map(|f| f.unwrap_or(0.0).to_bits()));
                    },
                    &no_aux,
                );
                // One luma sum per sample, zeroed before each slot.
                let sums = self.samples.len() as u64 * 4;
                self.aux_bytes = self.aux_bytes.max(sums);
                let words = (field::EXTRA + 8, &[][..]);
                for slot in 0..4 {
                    let params = Params { slot, ..base };
                    self.enc
                        .pass("luma_sum", cur, RECORDS, &recs, words, params, groups)?;
                    self.enc.passes.last_mut().unwrap().clear_aux = Some(sums);
                    self.enc
                        .pass("jitter_apply", cur, RECORDS, &recs, words, params, groups)?;
                }
            }
            _ => unreachable!("out-of-place stage"),
        }
        Ok(())
    }

    /// The tensor write, finishing a final resample when the plan fused one.
    fn write(&mut self, write: &super::run::TensorWrite) -> Result<Output, String> {
        let plan = self.plan;
        let last = plan.sizes[self.samples[0]].len() - 1;
        let out_words = |s: usize| write.sample_bytes(plan.sizes[s][last]).div_ceil(4);
        let (out_off, words) = offsets(self.samples.iter().map(|&s| out_words(s)));
        let out = self.new_buffer(words);
        let tables = plan
            .fused
            .map(|boxes| resample_tables(boxes, &self.samples, |s| plan.sizes[s][last - 1]));
        let recs: Vec<_> = self
            .samples
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let aux = tables.as_ref().map_or(0, |t| t.aux_offsets[i]);
                let mut r = record(out_off[i], plan.sizes[s][last], aux);
                r[field::FLAG] = u32::from(plan.flips[s]);
                match &tables {
                    Some(t) => {
                        set_source(&mut r, self.cur_off[i], plan.sizes[s][last - 1]);
                        set_resample(&mut r, &t.fields[i]);
                    }
                    None => set_source(&mut r, self.cur_off[i], plan.sizes[s][last]),
                }
                r
            })
            .collect();
        let tail = tables.as_ref().map_or(&[][..], |t| t.tail.as_slice());
        let params = Params {
            mode: u32::from(tables.is_some()),
            dtype: write.dtype_code(),
            chw: u32::from(write.layout == Layout::Chw),
            scale: [write.scale[0], write.scale[1], write.scale[2], 0.0],
            bias: [write.bias[0], write.bias[1], write.bias[2], 0.0],
            ..Params::default()
        };
        let cur = self.cur;
        if let Some(t) = &tables {
            self.aux_bytes = self.aux_bytes.max(t.aux_floats * 4);
            // The first pass writes into aux; its dst binding is unused.
            let (words, widest) = ((field::EXTRA, tail), t.widest);
            self.enc
                .pass("resample_vertical", out, cur, &recs, words, params, widest)?;
        }
        let max_words = self.max_over_samples(out_words);
        let words = (field::EXTRA, tail);
        self.enc
            .pass("write_tensor", out, cur, &recs, words, params, max_words)?;
        Ok(Output {
            buffer: out,
            offsets: out_off,
            bytes: self.sizes[out],
        })
    }
}

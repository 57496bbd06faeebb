//! Running a sequence of image operators (and the final tensor write) on a batch: upload once,
//! one command stream, one readback. Per-sample parameters arrive as arrays drawn on the host by
//! the same code as the CPU path.

use super::encode::RECORDS;
use super::encode::{axis_weights, offsets, resample_aux, ChunkEncoder, Encoding, AUX, INPUT};
use super::kernels::Params;
use super::WgpuContext;
use crate::ops::{CropBox, JitterParams, Op};
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
    pub(super) fn out_of_place(&self) -> bool {
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
        op.image_op().and_then(|o| o.tensor_write())
    }

    pub(super) fn dtype_code(&self) -> u32 {
        match self.dtype {
            DType::U8 => 0,
            DType::F16 => 1,
            DType::Bf16 => 2,
            DType::F32 => 3,
            DType::I32 => unreachable!("no image kernel writes token ids"),
        }
    }

    pub(super) fn sample_bytes(&self, (w, h): (u32, u32)) -> u64 {
        3 * u64::from(w) * u64::from(h) * self.dtype.size() as u64
    }
}

/// Words of a packed image: whole 4-pixel groups of 3 words.
pub(super) fn image_words((w, h): (u32, u32)) -> u64 {
    (u64::from(w) * u64::from(h)).div_ceil(4) * 3
}

/// The stages as they will run: trailing flips folded into the tensor write, and a resample
/// directly before the write fused with it.
pub(super) struct Plan<'a> {
    pub stages: Vec<&'a ImageStage>,
    pub write: Option<&'a TensorWrite>,
    pub flips: Vec<bool>,
    pub fused: Option<&'a [CropBox]>,
    /// Per sample, the size after each stage (index 0: input).
    pub sizes: Vec<Vec<(u32, u32)>>,
}

impl<'a> Plan<'a> {
    /// Word offset of each of `samples`' input images in the packed input, and its total words.
    pub fn input_offsets(&self, samples: &[usize]) -> (Vec<u64>, u64) {
        offsets(samples.iter().map(|&s| image_words(self.sizes[s][0])))
    }

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
    /// Tensors written one after another from byte `at` on.
    Tensor {
        out: &'a mut [u8],
        at: usize,
    },
    Images(Vec<Image>),
}

impl Sink<'_> {
    fn push_tensor(&mut self, bytes: &[u8]) {
        if let Sink::Tensor { out, at } = self {
            out[*at..*at + bytes.len()].copy_from_slice(bytes);
            *at += bytes.len();
        }
    }

    fn push_image(&mut self, image: Image) {
        if let Sink::Images(v) = self {
            v.push(image);
        }
    }
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
        check_output_len(out.len(), total as usize)?;
        let mut sink = Sink::Tensor { out, at: 0 };
        for range in plan.chunks(self.binding_limit)? {
            self.run_chunk(images, &plan, range, &mut sink)?;
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
        let mut sink = Sink::Images(Vec::with_capacity(images.len()));
        for range in plan.chunks(self.binding_limit)? {
            self.run_chunk(images, &plan, range, &mut sink)?;
        }
        match sink {
            Sink::Images(out) => Ok(out),
            Sink::Tensor { .. } => unreachable!("an image sink"),
        }
    }

    fn run_chunk(
        &self,
        images: &[Image],
        plan: &Plan,
        range: Range<usize>,
        sink: &mut Sink,
    ) -> Result<(), String> {
        let samples: Vec<usize> = range.collect();
        let align = self.min_uniform_align.max(4);
        let chunk = ChunkEncoder::new(plan, samples.clone(), align, self.poisoning());
        let (enc, sizes, output) = chunk.encode()?;
        let packed = packed_input(images, &samples, plan);
        let bytes = self.submit(&enc, &sizes, &packed, None, (output.buffer, output.bytes))?;
        for (i, &s) in samples.iter().enumerate() {
            let start = output.offsets[i] as usize * 4;
            let (w, h) = plan.final_size(s);
            match plan.write {
                Some(write) => {
                    let n = write.sample_bytes((w, h)) as usize;
                    sink.push_tensor(&bytes[start..start + n]);
                }
                _ => {
                    let n = w as usize * h as usize * 3;
                    sink.push_image(Image::new(w, h, bytes[start..start + n].to_vec()));
                }
            }
        }
        Ok(())
    }

    /// Run every pass of `batch` (encoded for any backend, e.g. the speech features of
    /// [`super::encode_spectral`]); each sample's output bytes.
    pub fn run_encoded(&self, batch: &EncodedBatch) -> Result<Vec<Vec<u8>>, String> {
        let enc = Encoding::from_encoded(batch, self.min_uniform_align.max(4), self.poisoning());
        let limit = self.binding_limit;
        if let Some(big) = batch.buffer_bytes.iter().find(|&&b| b > limit) {
            return Err(format!(
                "the batch needs a {big} byte buffer, over the device's {limit} byte storage \
                 binding limit"
            ));
        }
        if let Some(table) = batch.resident.as_ref().filter(|t| t.bytes() > limit) {
            return Err(format!(
                "the batch reads a {} byte table, over the device's {limit} byte storage \
                 binding limit",
                table.bytes()
            ));
        }
        let out = batch.output_buffer;
        let aux = batch.resident.as_ref().map(|t| self.resident_buffer(t));
        let result = (out, batch.buffer_bytes[out]);
        // Poisoning adds fill passes, whose (empty) records follow the batch's.
        let mut sizes = batch.buffer_bytes.clone();
        sizes[RECORDS] = sizes[RECORDS].max(enc.records.len() as u64 * 4);
        let bytes = self.submit(&enc, &sizes, &batch.input, aux, result)?;
        Ok(batch.split_output(&bytes))
    }

    /// Upload, encode every pass, submit, and read back `read_bytes` of buffer `result`. `aux`:
    /// a resident table bound as the aux buffer instead of the pooled one.
    fn submit(
        &self,
        enc: &Encoding,
        sizes: &[u64],
        input: &[u8],
        aux: Option<wgpu::Buffer>,
        (result, read_bytes): (usize, u64),
    ) -> Result<Vec<u8>, String> {
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

        // Upload: the packed input, the records, the uniform blocks.
        self.queue.write_buffer(&buffers[INPUT], 0, input);
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
                binding(aux.as_ref().unwrap_or(&buffers[AUX]), None),
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

/// The caller's output buffer must hold exactly the batch's tensors.
pub(crate) fn check_output_len(have: usize, need: usize) -> Result<(), String> {
    if have == need {
        Ok(())
    } else {
        Err(format!(
            "the output buffer holds {have} bytes; the batch's tensors need {need}"
        ))
    }
}

/// The chunk's input images packed as the kernels read them (whole 4-pixel groups per sample).
fn packed_input(images: &[Image], samples: &[usize], plan: &Plan) -> Vec<u8> {
    let (input_off, input_words) = plan.input_offsets(samples);
    let mut packed = vec![0u8; input_words as usize * 4];
    let chosen: Vec<&Image> = samples.iter().map(|&s| &images[s]).collect();
    let offsets: Vec<usize> = input_off.iter().map(|&o| o as usize * 4).collect();
    pack_images(&chosen, &offsets, &mut packed);
    packed
}

/// Copy image `i` to `dst[offsets[i]..]`, zeroing the padding up to the next image, each
/// sample on the worker pool (so the copies into pinned staging memory run in parallel).
fn pack_images(images: &[&Image], offsets: &[usize], dst: &mut [u8]) {
    use rayon::prelude::*;
    let mut parts = Vec::with_capacity(images.len());
    let mut rest = dst;
    for i in 0..images.len() {
        let end = offsets
            .get(i + 1)
            .map_or(rest.len(), |&next| next - offsets[i]);
        let (part, tail) = std::mem::take(&mut rest).split_at_mut(end);
        parts.push(part);
        rest = tail;
    }
    parts
        .into_par_iter()
        .zip(images.par_iter())
        .for_each(|(part, image)| {
            let n = image.data.len();
            part[..n].copy_from_slice(&image.data);
            part[n..].fill(0);
        });
}

/// A batch's device work as data — buffers, kernel passes, where the result lands — exactly what
/// the wgpu backend submits. The CUDA kernels share the records and entry points, so their
/// host-emulation tests run these same passes (tests/cuda_kernels.rs).
#[derive(Debug, Clone)]
pub struct EncodedBatch {
    /// Bytes of each buffer: 0 records, 1 aux, 2 the packed input, then the rest.
    pub buffer_bytes: Vec<u64>,
    /// The packed input images (empty from [`encode_layout`]: see [`EncodedBatch::pack_input`]).
    pub input: Vec<u8>,
    /// Each sample's byte offset in the packed input, and the packed input's length.
    pub input_offsets: Vec<usize>,
    pub input_len: usize,
    pub records: Vec<u32>,
    pub passes: Vec<EncodedPass>,
    pub output_buffer: usize,
    /// Each sample's word offset in the output buffer, and its byte length.
    pub output_offsets: Vec<u64>,
    pub output_lengths: Vec<usize>,
    /// A table bound as the aux buffer instead of the batch's own (the embedding lookup's):
    /// each device uploads it once and keeps it while batches use it.
    pub resident: Option<super::ResidentTable>,
}

#[derive(Debug, Clone)]
pub struct EncodedPass {
    pub entry: &'static str,
    pub dst: usize,
    pub src: usize,
    /// First word of this pass's records.
    pub records_start: usize,
    /// The kernel's `Params` block, as bytes (64).
    pub params: Vec<u8>,
    /// Blocks of 64 threads: (x, samples).
    pub groups: (u32, u32),
    /// Zero this many leading bytes of aux before the pass.
    pub clear_aux: Option<u64>,
}

/// Encode `images` through `stages` (and `write`) as one chunk, for running the passes elsewhere.
pub fn encode_batch(
    images: &[Image],
    stages: &[ImageStage],
    write: Option<&TensorWrite>,
) -> Result<EncodedBatch, String> {
    let mut batch = encode_layout(images, stages, write)?;
    let mut input = vec![0u8; batch.input_len];
    batch.pack_input(images, &mut input)?;
    batch.input = input;
    Ok(batch)
}

/// [`encode_batch`] without packing the input: the caller packs it where it will be uploaded
/// from (pinned staging memory) with [`EncodedBatch::pack_input`].
pub fn encode_layout(
    images: &[Image],
    stages: &[ImageStage],
    write: Option<&TensorWrite>,
) -> Result<EncodedBatch, String> {
    let plan = Plan::new(images, stages, write)?;
    let samples: Vec<usize> = (0..images.len()).collect();
    let (enc, sizes, output) = ChunkEncoder::new(&plan, samples.clone(), 256, None).encode()?;
    let passes = enc.encoded_passes();
    let output_lengths = samples
        .iter()
        .map(|&s| {
            let size = plan.final_size(s);
            match write {
                Some(w) => w.sample_bytes(size) as usize,
                None => size.0 as usize * size.1 as usize * 3,
            }
        })
        .collect();
    let (input_words, input_len) = plan.input_offsets(&samples);
    Ok(EncodedBatch {
        buffer_bytes: sizes,
        input: Vec::new(),
        input_offsets: input_words.iter().map(|&w| w as usize * 4).collect(),
        input_len: input_len as usize * 4,
        records: enc.records,
        passes,
        output_buffer: output.buffer,
        output_offsets: output.offsets,
        output_lengths,
        resident: None,
    })
}

impl EncodedBatch {
    /// Pack `images` (the ones this batch was encoded from) into `dst` as the kernels read them.
    pub fn pack_input(&self, images: &[Image], dst: &mut [u8]) -> Result<(), String> {
        if images.len() != self.input_offsets.len() || dst.len() < self.input_len {
            return Err(format!(
                "packing {} images into {} bytes; the batch was encoded for {} images, {} bytes",
                images.len(),
                dst.len(),
                self.input_offsets.len(),
                self.input_len
            ));
        }
        let chosen: Vec<&Image> = images.iter().collect();
        pack_images(&chosen, &self.input_offsets, &mut dst[..self.input_len]);
        Ok(())
    }

    /// Each sample's output bytes from the output buffer's contents (from its start).
    pub fn split_output(&self, buffer: &[u8]) -> Vec<Vec<u8>> {
        self.output_offsets
            .iter()
            .zip(&self.output_lengths)
            .map(|(&o, &n)| buffer[o as usize * 4..o as usize * 4 + n].to_vec())
            .collect()
    }

    /// Words of the output buffer the samples' outputs reach (from its start).
    pub fn output_words(&self) -> usize {
        self.output_offsets
            .iter()
            .zip(&self.output_lengths)
            .map(|(&o, &n)| o as usize + n.div_ceil(4))
            .max()
            .unwrap_or(0)
    }

    /// Whether the samples' outputs lie back to back from the start of the output buffer, as
    /// one `[n, ...]` tensor.
    pub fn output_is_contiguous(&self) -> bool {
        let mut at = 0u64;
        self.output_offsets
            .iter()
            .zip(&self.output_lengths)
            .all(|(&o, &n)| {
                let ok = o * 4 == at;
                at += n as u64;
                ok
            })
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

//! The wgpu backend: WGSL compute kernels on any GPU that speaks Vulkan, Metal or DX12 (and on
//! Mesa's lavapipe software driver, which is how CI checks the kernels without a GPU).
//!
//! Status: adapter discovery; normalize(+flip), ColorJitter, grayscale and Gaussian blur kernels
//! with upload and readback, each tested against the CPU path. Buffer pooling,
//! chunked dispatch past the storage-binding limit, asynchronous submission and the remaining
//! kernels are the open part of the wgpu issue.

use crate::ops::{JitterParams, Normalize};
use crate::tensor::{DType, Image, Layout};
use wgpu::util::DeviceExt;

/// A wgpu device with the compiled kernels.
pub struct WgpuContext {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    normalize: wgpu::ComputePipeline,
    jitter: KernelSet,
    pixel_ops: KernelSet,
}

/// The entry points of one WGSL file, sharing one explicit bind group layout (so every entry
/// point binds the same buffers whether or not it reads them all).
struct KernelSet {
    layout: wgpu::BindGroupLayout,
    pipelines: Vec<(&'static str, wgpu::ComputePipeline)>,
}

impl KernelSet {
    fn new(
        device: &wgpu::Device,
        label: &str,
        source: &str,
        bindings: &[wgpu::BufferBindingType],
        entries: &[&'static str],
    ) -> Self {
        let layout_entries: Vec<_> = bindings
            .iter()
            .enumerate()
            .map(|(i, ty)| buffer_entry(i as u32, *ty))
            .collect();
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(label),
            entries: &layout_entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(label),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(label),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let pipelines = entries
            .iter()
            .map(|&entry| {
                let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry),
                    layout: Some(&pipeline_layout),
                    module: &module,
                    entry_point: Some(entry),
                    compilation_options: Default::default(),
                    cache: None,
                });
                (entry, pipeline)
            })
            .collect();
        KernelSet { layout, pipelines }
    }

    fn pipeline(&self, entry: &str) -> &wgpu::ComputePipeline {
        &self
            .pipelines
            .iter()
            .find(|(name, _)| *name == entry)
            .expect("entry point compiled with the set")
            .1
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct JitterSlotParams {
    groups: u32,
    pixels: u32,
    stride_words: u32,
    slot: u32,
}

/// Same-size images packed for the in-place u8 kernels: each sample is a run of 4-pixel groups
/// of 3 whole words, so an invocation that owns a group never shares a word with another.
struct Packed {
    bytes: Vec<u8>,
    width: u32,
    height: u32,
    pixels: u32,
    groups: u32,
    stride_words: u32,
}

impl Packed {
    fn new(images: &[Image], per_sample_params: usize) -> Result<Packed, String> {
        let (width, height) = images.first().map_or((0, 0), |i| (i.width, i.height));
        if images
            .iter()
            .any(|i| (i.width, i.height) != (width, height))
            || per_sample_params != images.len()
        {
            return Err(
                "the wgpu image kernels need same-size images and one parameter set each".into(),
            );
        }
        let pixels = width * height;
        let groups = pixels.div_ceil(4);
        let stride_words = groups * 3;
        let mut bytes = vec![0u8; stride_words as usize * 4 * images.len()];
        for (i, image) in images.iter().enumerate() {
            bytes[i * stride_words as usize * 4..][..image.data.len()].copy_from_slice(&image.data);
        }
        Ok(Packed {
            bytes,
            width,
            height,
            pixels,
            groups,
            stride_words,
        })
    }

    fn unpack(&self, packed: &[u8], images: &mut [Image]) {
        for (i, image) in images.iter_mut().enumerate() {
            let n = image.data.len();
            image
                .data
                .copy_from_slice(&packed[i * self.stride_words as usize * 4..][..n]);
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PixelOpParams {
    groups: u32,
    pixels: u32,
    stride_words: u32,
    width: u32,
    height: u32,
    taps: u32,
    pad: [u32; 2],
}

/// "No adjustment in this slot" for the jitter kernel.
const JITTER_NONE: u32 = 4;

fn buffer_entry(binding: u32, ty: wgpu::BufferBindingType) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct NormalizeParams {
    scale: [f32; 4],
    bias: [f32; 4],
    width: u32,
    height: u32,
    samples: u32,
    sample_stride_words: u32,
}

const WORKGROUP_X: u32 = 64;

impl WgpuContext {
    /// Open the best adapter (a discrete GPU when there is one). The error says why none is
    /// usable, e.g. "no wgpu adapter: ...".
    pub fn new() -> Result<Self, String> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
            ..Default::default()
        }))
        .map_err(|e| format!("no wgpu adapter: {e}"))?;
        let info = adapter.get_info();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("sluice"),
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .map_err(|e| format!("wgpu adapter {} refused a device: {e}", info.name))?;
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("normalize.wgsl"),
            source: wgpu::ShaderSource::Wgsl(include_str!("../../shaders/normalize.wgsl").into()),
        });
        let normalize = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("normalize"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        use wgpu::BufferBindingType::{Storage, Uniform};
        let bindings = [
            Storage { read_only: false },
            Storage { read_only: true },
            Storage { read_only: true },
            Storage { read_only: false },
            Uniform,
        ];
        let jitter = KernelSet::new(
            &device,
            "color_jitter.wgsl",
            include_str!("../../shaders/color_jitter.wgsl"),
            &bindings,
            &["luma_sum", "apply"],
        );
        let pixel_ops = KernelSet::new(
            &device,
            "pixel_ops.wgsl",
            include_str!("../../shaders/pixel_ops.wgsl"),
            &bindings,
            &["grayscale", "blur_h", "blur_v"],
        );
        Ok(WgpuContext {
            device,
            queue,
            info,
            normalize,
            jitter,
            pixel_ops,
        })
    }

    fn init_buffer(&self, label: &str, contents: &[u8], usage: wgpu::BufferUsages) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage,
            })
    }

    /// A bind group with `buffers` at bindings 0, 1, 2, ... in order.
    fn bind_group(
        &self,
        label: &str,
        layout: &wgpu::BindGroupLayout,
        buffers: &[&wgpu::Buffer],
    ) -> wgpu::BindGroup {
        let entries: Vec<_> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout,
            entries: &entries,
        })
    }

    /// Copy `len` bytes of `src` into a mappable buffer at the end of `encoder`, submit, wait,
    /// and return them.
    fn submit_and_read(
        &self,
        mut encoder: wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        len: usize,
    ) -> Result<Vec<u8>, String> {
        let readback = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: len as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        encoder.copy_buffer_to_buffer(src, 0, &readback, 0, len as u64);
        self.queue.submit([encoder.finish()]);
        let slice = readback.slice(..);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| format!("waiting for the GPU failed: {e}"))?;
        let mapped = slice
            .get_mapped_range()
            .map_err(|e| format!("reading the result back failed: {e}"))?;
        let bytes = mapped.to_vec();
        drop(mapped);
        readback.unmap();
        Ok(bytes)
    }

    /// "name (backend, device type)" for reports.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// Normalize same-size u8 images into one f32 CHW batch, mirroring sample `i` when
    /// `flips[i]`. The output buffer is poisoned with NaN before the kernel runs, so an element
    /// the kernel failed to write shows up.
    pub fn normalize_batch(
        &self,
        images: &[Image],
        flips: &[bool],
        normalize: &Normalize,
    ) -> Result<Vec<f32>, String> {
        if normalize.dtype != DType::F32 || normalize.layout != Layout::Chw {
            return Err("the wgpu normalize kernel writes f32 CHW only so far".into());
        }
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let packed = Packed::new(images, flips.len())?;
        let (scale, bias) = normalize.scale_bias();
        let params = NormalizeParams {
            scale: [scale[0], scale[1], scale[2], 0.0],
            bias: [bias[0], bias[1], bias[2], 0.0],
            width: packed.width,
            height: packed.height,
            samples: images.len() as u32,
            sample_stride_words: packed.stride_words,
        };
        let flags: Vec<u32> = flips.iter().map(|&f| u32::from(f)).collect();
        let out_len = images.len() * packed.pixels as usize * 3 * 4;
        let storage = wgpu::BufferUsages::STORAGE;
        let input = self.init_buffer("pixels", &packed.bytes, storage);
        let flip_buf = self.init_buffer("flips", bytemuck::cast_slice(&flags), storage);
        let output = self.init_buffer(
            "normalized (poisoned)",
            &vec![0xFFu8; out_len],
            storage | wgpu::BufferUsages::COPY_SRC,
        );
        let uniform = self.init_buffer(
            "params",
            bytemuck::bytes_of(&params),
            wgpu::BufferUsages::UNIFORM,
        );
        let bind_group = self.bind_group(
            "normalize",
            &self.normalize.get_bind_group_layout(0),
            &[&input, &flip_buf, &output, &uniform],
        );
        let mut encoder = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&self.normalize);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(
                packed.width.div_ceil(WORKGROUP_X),
                packed.height,
                images.len() as u32,
            );
        }
        let bytes = self.submit_and_read(encoder, &output, out_len)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Apply per-sample ColorJitter parameters (drawn on the host, as the CPU path draws them)
    /// to same-size images in place.
    pub fn color_jitter_batch(
        &self,
        images: &mut [Image],
        params: &[JitterParams],
    ) -> Result<(), String> {
        if images.is_empty() {
            return Ok(());
        }
        let packed = Packed::new(images, params.len())?;
        let mut order = Vec::with_capacity(images.len() * 4);
        let mut factors = Vec::with_capacity(images.len() * 4);
        for p in params {
            for &k in &p.order {
                let enabled = p.apply && p.factors[k as usize].is_some();
                order.push(if enabled { u32::from(k) } else { JITTER_NONE });
            }
            factors.extend(p.factors.map(|f| f.unwrap_or(0.0)));
        }
        let storage = wgpu::BufferUsages::STORAGE;
        let img = self.init_buffer(
            "jitter images",
            &packed.bytes,
            storage | wgpu::BufferUsages::COPY_SRC,
        );
        let order_buf = self.init_buffer("jitter order", bytemuck::cast_slice(&order), storage);
        let factor_buf =
            self.init_buffer("jitter factors", bytemuck::cast_slice(&factors), storage);
        let sums = self.init_buffer(
            "jitter luma sums",
            &vec![0u8; images.len() * 4],
            storage | wgpu::BufferUsages::COPY_DST,
        );
        let mut encoder = self.device.create_command_encoder(&Default::default());
        for slot in 0..4 {
            let uniform = self.init_buffer(
                "jitter slot",
                bytemuck::bytes_of(&JitterSlotParams {
                    groups: packed.groups,
                    pixels: packed.pixels,
                    stride_words: packed.stride_words,
                    slot,
                }),
                wgpu::BufferUsages::UNIFORM,
            );
            let bind_group = self.bind_group(
                "color_jitter",
                &self.jitter.layout,
                &[&img, &order_buf, &factor_buf, &sums, &uniform],
            );
            // The contrast mean is of the image as it is at this slot.
            encoder.clear_buffer(&sums, 0, None);
            for entry in ["luma_sum", "apply"] {
                let pipeline = self.jitter.pipeline(entry);
                let mut pass = encoder.begin_compute_pass(&Default::default());
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                pass.dispatch_workgroups(
                    packed.groups.div_ceil(WORKGROUP_X),
                    images.len() as u32,
                    1,
                );
            }
        }
        let bytes = self.submit_and_read(encoder, &img, packed.bytes.len())?;
        packed.unpack(&bytes, images);
        Ok(())
    }

    /// RandomGrayscale: replace sample `i` by its luma (3 equal channels) when `apply[i]`.
    pub fn grayscale_batch(&self, images: &mut [Image], apply: &[bool]) -> Result<(), String> {
        self.pixel_ops(images, apply, &[], 0, &[("grayscale", Dispatch::Groups)])
    }

    /// GaussianBlur with a `kernel_size`-tap kernel and per-sample sigma (None: left as is).
    pub fn gaussian_blur_batch(
        &self,
        images: &mut [Image],
        sigmas: &[Option<f32>],
        kernel_size: u32,
    ) -> Result<(), String> {
        let apply: Vec<bool> = sigmas.iter().map(Option::is_some).collect();
        // The same weights as the CPU path, including its skipped (< 1e-7) taps as zeros.
        let weights: Vec<f32> = sigmas
            .iter()
            .flat_map(|s| {
                crate::ops::gaussian_kernel(kernel_size, s.unwrap_or(1.0))
                    .into_iter()
                    .map(|w| if w >= 1e-7 { w } else { 0.0 })
            })
            .collect();
        self.pixel_ops(
            images,
            &apply,
            &weights,
            kernel_size,
            &[("blur_h", Dispatch::Pixels), ("blur_v", Dispatch::Groups)],
        )
    }

    /// Run entry points of pixel_ops.wgsl, in order, in place on `images`.
    fn pixel_ops(
        &self,
        images: &mut [Image],
        flags: &[bool],
        weights: &[f32],
        taps: u32,
        entries: &[(&str, Dispatch)],
    ) -> Result<(), String> {
        if images.is_empty() {
            return Ok(());
        }
        let packed = Packed::new(images, flags.len())?;
        let flags: Vec<u32> = flags.iter().map(|&f| u32::from(f)).collect();
        let storage = wgpu::BufferUsages::STORAGE;
        let img = self.init_buffer(
            "images",
            &packed.bytes,
            storage | wgpu::BufferUsages::COPY_SRC,
        );
        let flag_buf = self.init_buffer("flags", bytemuck::cast_slice(&flags), storage);
        // Bindings cannot be empty: pad the optional inputs to one element.
        let weights = if weights.is_empty() {
            &[0.0][..]
        } else {
            weights
        };
        let weight_buf = self.init_buffer("weights", bytemuck::cast_slice(weights), storage);
        let tmp_len = if taps > 0 {
            packed.pixels as usize * 3 * images.len()
        } else {
            1
        };
        let tmp = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("blur rows"),
            size: (tmp_len * 4) as u64,
            usage: storage,
            mapped_at_creation: false,
        });
        let params = PixelOpParams {
            groups: packed.groups,
            pixels: packed.pixels,
            stride_words: packed.stride_words,
            width: packed.width,
            height: packed.height,
            taps,
            pad: [0; 2],
        };
        let uniform = self.init_buffer(
            "params",
            bytemuck::bytes_of(&params),
            wgpu::BufferUsages::UNIFORM,
        );
        let bind_group = self.bind_group(
            "pixel_ops",
            &self.pixel_ops.layout,
            &[&img, &flag_buf, &weight_buf, &tmp, &uniform],
        );
        let mut encoder = self.device.create_command_encoder(&Default::default());
        for (entry, dispatch) in entries {
            let pipeline = self.pixel_ops.pipeline(entry);
            let width = match dispatch {
                Dispatch::Groups => packed.groups,
                Dispatch::Pixels => packed.pixels,
            };
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(width.div_ceil(WORKGROUP_X), images.len() as u32, 1);
        }
        let bytes = self.submit_and_read(encoder, &img, packed.bytes.len())?;
        packed.unpack(&bytes, images);
        Ok(())
    }
}

/// What one invocation of a pixel_ops entry point covers.
enum Dispatch {
    /// One 4-pixel group (entries that write the packed image).
    Groups,
    /// One pixel (entries that write the f32 scratch rows).
    Pixels,
}

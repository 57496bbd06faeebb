//! The wgpu backend: WGSL compute kernels on any GPU that speaks Vulkan, Metal or DX12 (and on
//! Mesa's lavapipe software driver, which is how CI checks the kernels without a GPU).
//!
//! Status: adapter discovery, the normalize(+flip) and ColorJitter kernels with readback. Buffer pooling,
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
    jitter: JitterKernels,
}

/// The two entry points of color_jitter.wgsl, sharing one bind group layout.
struct JitterKernels {
    layout: wgpu::BindGroupLayout,
    luma_sum: wgpu::ComputePipeline,
    apply: wgpu::ComputePipeline,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct JitterSlotParams {
    groups: u32,
    pixels: u32,
    stride_words: u32,
    slot: u32,
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

impl JitterKernels {
    fn new(device: &wgpu::Device) -> Self {
        use wgpu::BufferBindingType::{Storage, Uniform};
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("color_jitter"),
            entries: &[
                buffer_entry(0, Storage { read_only: false }),
                buffer_entry(1, Storage { read_only: true }),
                buffer_entry(2, Storage { read_only: true }),
                buffer_entry(3, Storage { read_only: false }),
                buffer_entry(4, Uniform),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("color_jitter"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("color_jitter.wgsl"),
            source: wgpu::ShaderSource::Wgsl(
                include_str!("../../shaders/color_jitter.wgsl").into(),
            ),
        });
        let pipeline = |entry: &str| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
        };
        JitterKernels {
            luma_sum: pipeline("luma_sum"),
            apply: pipeline("apply"),
            layout,
        }
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
        let jitter = JitterKernels::new(&device);
        Ok(WgpuContext {
            device,
            queue,
            info,
            normalize,
            jitter,
        })
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
        let Some(first) = images.first() else {
            return Ok(Vec::new());
        };
        let (w, h) = (first.width, first.height);
        if images.iter().any(|i| (i.width, i.height) != (w, h)) || flips.len() != images.len() {
            return Err("normalize_batch needs same-size images and one flip flag each".into());
        }
        let sample_bytes = (w * h * 3) as usize;
        let stride_words = sample_bytes.div_ceil(4);
        let mut packed = vec![0u8; stride_words * 4 * images.len()];
        for (i, image) in images.iter().enumerate() {
            packed[i * stride_words * 4..][..sample_bytes].copy_from_slice(&image.data);
        }
        let (scale, bias) = normalize.scale_bias();
        let params = NormalizeParams {
            scale: [scale[0], scale[1], scale[2], 0.0],
            bias: [bias[0], bias[1], bias[2], 0.0],
            width: w,
            height: h,
            samples: images.len() as u32,
            sample_stride_words: stride_words as u32,
        };
        let flags: Vec<u32> = flips.iter().map(|&f| u32::from(f)).collect();
        let out_len = images.len() * sample_bytes;
        let storage = |label, contents: &[u8], usage| {
            self.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents,
                    usage,
                })
        };
        let input = storage("pixels", &packed, wgpu::BufferUsages::STORAGE);
        let flip_buf = storage(
            "flips",
            bytemuck::cast_slice(&flags),
            wgpu::BufferUsages::STORAGE,
        );
        let poison = vec![0xFFu8; out_len * 4];
        let output = storage(
            "out",
            &poison,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        );
        let uniform = storage(
            "params",
            bytemuck::bytes_of(&params),
            wgpu::BufferUsages::UNIFORM,
        );
        let readback = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: (out_len * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("normalize"),
            layout: &self.normalize.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: input.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: flip_buf.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: output.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: uniform.as_entire_binding(),
                },
            ],
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&self.normalize);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(w.div_ceil(WORKGROUP_X), h, images.len() as u32);
        }
        encoder.copy_buffer_to_buffer(&output, 0, &readback, 0, (out_len * 4) as u64);
        self.queue.submit([encoder.finish()]);
        let slice = readback.slice(..);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| format!("waiting for the GPU failed: {e}"))?;
        let mapped = slice
            .get_mapped_range()
            .map_err(|e| format!("reading the result back failed: {e}"))?;
        let values: Vec<f32> = bytemuck::pod_collect_to_vec(&mapped);
        drop(mapped);
        readback.unmap();
        Ok(values)
    }

    /// Apply per-sample ColorJitter parameters (drawn on the host, as the CPU path draws them)
    /// to same-size images in place.
    pub fn color_jitter_batch(
        &self,
        images: &mut [Image],
        params: &[JitterParams],
    ) -> Result<(), String> {
        let Some(first) = images.first() else {
            return Ok(());
        };
        let (w, h) = (first.width, first.height);
        if images.iter().any(|i| (i.width, i.height) != (w, h)) || params.len() != images.len() {
            return Err(
                "color_jitter_batch needs same-size images and one parameter set each".into(),
            );
        }
        let pixels = w * h;
        let groups = pixels.div_ceil(4);
        let stride_words = groups * 3;
        let sample_bytes = pixels as usize * 3;
        let mut packed = vec![0u8; stride_words as usize * 4 * images.len()];
        for (i, image) in images.iter().enumerate() {
            packed[i * stride_words as usize * 4..][..sample_bytes].copy_from_slice(&image.data);
        }
        let mut order = Vec::with_capacity(images.len() * 4);
        let mut factors = Vec::with_capacity(images.len() * 4);
        for p in params {
            for &k in &p.order {
                let enabled = p.apply && p.factors[k as usize].is_some();
                order.push(if enabled { u32::from(k) } else { JITTER_NONE });
            }
            factors.extend(p.factors.map(|f| f.unwrap_or(0.0)));
        }
        let usage = wgpu::BufferUsages::STORAGE;
        let init = |label, contents: &[u8], usage| {
            self.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents,
                    usage,
                })
        };
        let img = init(
            "jitter images",
            &packed,
            usage | wgpu::BufferUsages::COPY_SRC,
        );
        let order_buf = init("jitter order", bytemuck::cast_slice(&order), usage);
        let factor_buf = init("jitter factors", bytemuck::cast_slice(&factors), usage);
        let sums = init(
            "jitter luma sums",
            &vec![0u8; images.len() * 4],
            usage | wgpu::BufferUsages::COPY_DST,
        );
        let readback = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("jitter readback"),
            size: packed.len() as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        let mut slot_uniforms = Vec::new();
        for slot in 0..4 {
            let uniform = init(
                "jitter slot",
                bytemuck::bytes_of(&JitterSlotParams {
                    groups,
                    pixels,
                    stride_words,
                    slot,
                }),
                wgpu::BufferUsages::UNIFORM,
            );
            let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("color_jitter"),
                layout: &self.jitter.layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: img.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: order_buf.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: factor_buf.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 3,
                        resource: sums.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 4,
                        resource: uniform.as_entire_binding(),
                    },
                ],
            });
            // The contrast mean is of the image as it is at this slot.
            encoder.clear_buffer(&sums, 0, None);
            for pipeline in [&self.jitter.luma_sum, &self.jitter.apply] {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                pass.dispatch_workgroups(groups.div_ceil(WORKGROUP_X), images.len() as u32, 1);
            }
            slot_uniforms.push(uniform);
        }
        encoder.copy_buffer_to_buffer(&img, 0, &readback, 0, packed.len() as u64);
        self.queue.submit([encoder.finish()]);
        let slice = readback.slice(..);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| format!("waiting for the GPU failed: {e}"))?;
        let mapped = slice
            .get_mapped_range()
            .map_err(|e| format!("reading the result back failed: {e}"))?;
        for (i, image) in images.iter_mut().enumerate() {
            image
                .data
                .copy_from_slice(&mapped[i * stride_words as usize * 4..][..sample_bytes]);
        }
        drop(mapped);
        readback.unmap();
        Ok(())
    }
}

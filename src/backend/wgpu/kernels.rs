//! The compiled WGSL kernels: every entry point of every shader module, sharing one explicit
//! bind group layout (dst, src, records, aux, params) so any kernel binds the same way.

use std::collections::HashMap;

/// Shader modules and their entry points. Each module is compiled after `prelude.wgsl`.
const MODULES: [(&str, &str, &[&str]); 5] = [
    (
        "resample.wgsl",
        include_str!("../../../shaders/resample.wgsl"),
        &[
            "fill",
            "resample_vertical",
            "resample_horizontal",
            "write_tensor",
        ],
    ),
    (
        "pixel_ops.wgsl",
        include_str!("../../../shaders/pixel_ops.wgsl"),
        &["grayscale", "blur_h", "blur_v", "copy_crop"],
    ),
    (
        "color_jitter.wgsl",
        include_str!("../../../shaders/color_jitter.wgsl"),
        &["luma_sum", "jitter_apply"],
    ),
    (
        "spectral.wgsl",
        include_str!("../../../shaders/spectral.wgsl"),
        &SPECTRAL_ENTRIES,
    ),
    (
        "text.wgsl",
        include_str!("../../../shaders/text.wgsl"),
        &TEXT_ENTRIES,
    ),
];

/// The token kernels (shaders/text.wgsl, kernels/text.cu).
pub const TEXT_ENTRIES: [&str; 3] = ["token_pad", "token_mlm", "token_gather"];

/// The speech-feature kernels (shaders/spectral.wgsl, kernels/spectral.cu).
pub const SPECTRAL_ENTRIES: [&str; 6] = [
    "stft_power",
    "mel_project",
    "spectral_log",
    "feature_normalize",
    "spectral_mask",
    "spectral_pad",
];

const PRELUDE: &str = include_str!("../../../shaders/prelude.wgsl");

/// Record fields (words), as the constants in prelude.wgsl.
pub(super) mod field {
    pub const DST_OFF: usize = 0;
    pub const WIDTH: usize = 1;
    pub const HEIGHT: usize = 2;
    pub const AUX_OFF: usize = 3;
    pub const FLAG: usize = 4;
    pub const SRC_OFF: usize = 5;
    pub const SRC_W: usize = 6;
    pub const SRC_H: usize = 7;
    /// COL0 and COLS (set together).
    pub const COL0: usize = 8;
    pub const LEFT: usize = 10;
    pub const TOP: usize = 11;
    /// H_TAB, V_TAB, PREC_H, PREC_V, WIN_H, WIN_V (set together; resample only).
    pub const H_TAB: usize = 10;
    pub const EXTRA: usize = 16;
}

/// The uniform block every kernel reads (`Params` in prelude.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct Params {
    pub samples: u32,
    pub rec_words: u32,
    pub taps: u32,
    pub slot: u32,
    pub mode: u32,
    pub dtype: u32,
    pub chw: u32,
    pub total_words: u32,
    pub scale: [f32; 4],
    pub bias: [f32; 4],
}

pub(super) const WORKGROUP: u32 = 64;

#[derive(Clone)]
pub(super) struct Kernels {
    pub layout: wgpu::BindGroupLayout,
    pipelines: HashMap<&'static str, wgpu::ComputePipeline>,
}

fn entry(binding: u32, ty: wgpu::BufferBindingType) -> wgpu::BindGroupLayoutEntry {
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

impl Kernels {
    pub fn new(device: &wgpu::Device) -> Self {
        use wgpu::BufferBindingType::{Storage, Uniform};
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("sluice kernels"),
            entries: &[
                entry(0, Storage { read_only: false }),
                entry(1, Storage { read_only: true }),
                entry(2, Storage { read_only: true }),
                entry(3, Storage { read_only: false }),
                entry(4, Uniform),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("sluice kernels"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let mut pipelines = HashMap::new();
        for (file, source, entries) in MODULES {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(file),
                source: wgpu::ShaderSource::Wgsl(format!("{PRELUDE}\n{source}").into()),
            });
            for &name in entries {
                let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(name),
                    layout: Some(&pipeline_layout),
                    module: &module,
                    entry_point: Some(name),
                    compilation_options: Default::default(),
                    cache: None,
                });
                pipelines.insert(name, pipeline);
            }
        }
        Kernels { layout, pipelines }
    }

    pub fn get(&self, name: &str) -> &wgpu::ComputePipeline {
        self.pipelines
            .get(name)
            .unwrap_or_else(|| panic!("kernel {name} is not in any shader module"))
    }
}

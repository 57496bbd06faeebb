//! The CUDA backend, through cudarc with the driver and NVRTC loaded at run time: a machine
//! without CUDA gets a one-line reason from [`probe`], never a link error or a panic.
//!
//! The kernels (`kernels/*.cu`, the same operators, records and arithmetic as the WGSL
//! backend) compile with NVRTC (see [`nvrtc`]) to a cubin for the device's own architecture (PTX
//! as the fallback) and are cached by source hash and architecture; they are checked without a
//! GPU by compiling them for sm_80/sm_90 and by running them as C++ on the host
//! (tests/cuda_kernels.rs). Every entry point a caller's thread runs leaves that thread's
//! current CUDA context as it found it ([`context`]). [`TransferEngine`] delivers batches into
//! device memory through a ring of pinned staging slots with copy and compute streams.

mod context;
mod device;
pub mod nvrtc;
mod train_step;
mod transfer;

pub use context::default_ordinal;
pub use device::{slot_needs, CudaDevice};
pub use train_step::TrainStep;
pub use transfer::{
    DeviceBatch, DeviceTensor, StagedInput, TensorInfo, TransferEngine, TransferStats,
};

use std::sync::Arc;

/// Kernel sources and their entry points; each is compiled after `prelude.cuh`.
pub const KERNELS: [(&str, &str, &[&str]); 5] = [
    (
        "resample.cu",
        include_str!("../../../kernels/resample.cu"),
        &[
            "fill",
            "resample_vertical",
            "resample_horizontal",
            "write_tensor",
        ],
    ),
    (
        "pixel_ops.cu",
        include_str!("../../../kernels/pixel_ops.cu"),
        &["grayscale", "blur_h", "blur_v", "copy_crop"],
    ),
    (
        "color_jitter.cu",
        include_str!("../../../kernels/color_jitter.cu"),
        &["luma_sum", "jitter_apply"],
    ),
    (
        "spectral.cu",
        include_str!("../../../kernels/spectral.cu"),
        &crate::backend::wgpu::SPECTRAL_ENTRIES,
    ),
    (
        "text.cu",
        include_str!("../../../kernels/text.cu"),
        &crate::backend::wgpu::TEXT_ENTRIES,
    ),
];

/// The training-step stand-in used by overlap measurements (not a pipeline operator).
pub const TRAIN_STEP: (&str, &str, &[&str]) = (
    "train_step.cu",
    include_str!("../../../kernels/train_step.cu"),
    &["train_step"],
);

pub const PRELUDE: &str = include_str!("../../../kernels/prelude.cuh");

/// The full source NVRTC compiles for one kernel file.
pub fn source(file_source: &str) -> String {
    format!("{PRELUDE}\n{file_source}")
}

/// Whether the CUDA driver library loads and device `ordinal` answers: its name and
/// architecture, or why not ("no CUDA driver ...", "no CUDA device", ...).
pub fn probe(ordinal: usize) -> Result<String, String> {
    let _keep = context::CurrentContextGuard::new();
    let ctx = context::primary(ordinal)?;
    let name = ctx
        .name()
        .unwrap_or_else(|_| format!("CUDA device {ordinal}"));
    let (major, minor) = compute_capability(&ctx)?;
    Ok(format!("{name} (sm_{major}{minor})"))
}

fn compute_capability(ctx: &cudarc::driver::CudaContext) -> Result<(i32, i32), String> {
    use cudarc::driver::sys::CUdevice_attribute::{
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR as MAJOR,
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR as MINOR,
    };
    let get = |a| ctx.attribute(a).map_err(|e| format!("{e:?}"));
    Ok((get(MAJOR)?, get(MINOR)?))
}

/// Which NVRTC library was chosen and its version ("NVRTC 12.9 (libnvrtc.so.12 → /path)"), or
/// why none loads. It ships with the CUDA toolkit, or as the `nvidia-cuda-nvrtc-cu12` wheel
/// (put its `lib/` on LD_LIBRARY_PATH, or point SLUICE_NVRTC at the file).
pub fn nvrtc_available() -> Result<String, String> {
    nvrtc::get().map(|n| n.describe())
}

/// `file_source` (after the prelude) compiled for `arch`: a cubin for `sm_XX`, PTX for
/// `compute_XX`; once per (source hash, arch).
pub fn compile(name: &str, file_source: &str, arch: &str) -> Result<Arc<nvrtc::Image>, String> {
    nvrtc::compile_cached(name, &source(file_source), arch)
}

/// An event the host can wait on without spinning: a host thread that waits on a default event
/// (or a stream) polls a core at 100% that the decode workers need.
pub(crate) fn blocking_event(
    ctx: &Arc<cudarc::driver::CudaContext>,
) -> Result<cudarc::driver::CudaEvent, String> {
    ctx.new_event(Some(
        cudarc::driver::sys::CUevent_flags::CU_EVENT_BLOCKING_SYNC,
    ))
    .map_err(device::driver("creating an event"))
}

/// Block the host, sleeping rather than spinning, until the work queued on `s` so far is done.
pub(crate) fn host_wait(s: &cudarc::driver::CudaStream) -> Result<(), String> {
    let e = s
        .record_event(Some(
            cudarc::driver::sys::CUevent_flags::CU_EVENT_BLOCKING_SYNC,
        ))
        .map_err(device::driver("recording an event"))?;
    e.synchronize()
        .map_err(device::driver("waiting for the GPU"))
}

//! The CUDA backend, through cudarc with the driver and NVRTC loaded at run time: a machine
//! without CUDA gets a one-line reason from [`probe`], never a link error or a panic.
//!
//! The kernels (`kernels/*.cu`, the same operators, records and arithmetic as the WGSL
//! backend) compile with NVRTC for the device's architecture and are cached by source hash and
//! architecture; they are checked without a GPU by compiling them for sm_80/sm_90 and by running
//! them as C++ on the host (tests/cuda_kernels.rs). [`TransferEngine`] delivers batches into
//! device memory through a ring of pinned staging slots with copy and compute streams.

mod device;
mod train_step;
mod transfer;

pub use device::CudaDevice;
pub use train_step::TrainStep;
pub use transfer::{DeviceBatch, TensorInfo, TransferEngine, TransferStats};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Kernel sources and their entry points; each is compiled after `prelude.cuh`.
pub const KERNELS: [(&str, &str, &[&str]); 3] = [
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

/// Whether the CUDA driver library loads and a device answers; the error says why not
/// ("no CUDA driver library", "no CUDA device", ...).
pub fn probe() -> Result<String, String> {
    // SAFETY: only checks whether the shared library can be opened.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("no CUDA driver (libcuda could not be loaded)".into());
    }
    let outcome = std::panic::catch_unwind(|| {
        let ctx = cudarc::driver::CudaContext::new(0).map_err(|e| match e.0 {
            cudarc::driver::sys::cudaError_enum::CUDA_ERROR_NO_DEVICE => {
                "no CUDA device".to_string()
            }
            other => format!("CUDA device 0 unavailable: {other:?}"),
        })?;
        let name = ctx.name().unwrap_or_else(|_| "CUDA device 0".into());
        let (major, minor) = compute_capability(&ctx)?;
        Ok(format!("{name} (sm_{major}{minor})"))
    });
    outcome.unwrap_or_else(|_| Err("the CUDA driver failed while probing".into()))
}

fn compute_capability(ctx: &cudarc::driver::CudaContext) -> Result<(i32, i32), String> {
    use cudarc::driver::sys::CUdevice_attribute::{
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR as MAJOR,
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR as MINOR,
    };
    let get = |a| ctx.attribute(a).map_err(|e| format!("{e:?}"));
    Ok((get(MAJOR)?, get(MINOR)?))
}

/// Whether NVRTC loads (it ships with the CUDA toolkit, or as the `nvidia-cuda-nvrtc-cu12`
/// wheel: put its `lib/` on LD_LIBRARY_PATH).
pub fn nvrtc_available() -> Result<(), String> {
    // SAFETY: only checks whether the shared library can be opened.
    if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        Ok(())
    } else {
        Err("no NVRTC library (libnvrtc.so.12 not found on the library path)".into())
    }
}

type PtxCache = Mutex<HashMap<(u64, &'static str), Arc<String>>>;

/// PTX for `file_source` on `arch` (e.g. "compute_90"), compiled once per (source hash, arch).
/// Multiply-adds are not contracted, so results match the CPU's arithmetic.
pub fn compile(name: &str, file_source: &str, arch: &'static str) -> Result<Arc<String>, String> {
    nvrtc_available()?;
    static CACHE: OnceLock<PtxCache> = OnceLock::new();
    let src = source(file_source);
    let key = (xxhash_rust::xxh3::xxh3_64(src.as_bytes()), arch);
    let cache = CACHE.get_or_init(Default::default);
    if let Some(ptx) = cache.lock().unwrap().get(&key) {
        return Ok(ptx.clone());
    }
    let opts = cudarc::nvrtc::CompileOptions {
        arch: Some(arch),
        fmad: Some(false),
        name: Some(name.to_string()),
        ..Default::default()
    };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(&src, opts)
        .map_err(|e| format!("NVRTC could not compile {name} for {arch}: {e:?}"))?;
    let ptx = Arc::new(ptx.to_src());
    cache.lock().unwrap().insert(key, ptx.clone());
    Ok(ptx)
}

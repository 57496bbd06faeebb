//! Running encoded batches on a CUDA device: the kernels compiled by NVRTC for the device's
//! architecture and loaded once, the batch's buffers uploaded, every pass launched in order on
//! one stream, the result read back. This is the synchronous core the transfer engine (pinned
//! ring, copy/compute streams, device batches for the trainer) will build on.

use super::{compile, probe, KERNELS};
use crate::backend::wgpu::EncodedBatch;
use cudarc::driver::PushKernelArg;
use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchConfig};
use std::collections::HashMap;
use std::sync::Arc;

/// The kernels' `Params` block (64 bytes), passed by value.
#[repr(C)]
#[derive(Clone, Copy)]
struct KernelParams([u32; 16]);

// SAFETY: plain old data with the C layout the kernels declare.
unsafe impl DeviceRepr for KernelParams {}

pub struct CudaDevice {
    /// Checking mode: buffers start as 0xFF bytes so unwritten elements show.
    poison: std::sync::atomic::AtomicBool,
    stream: Arc<CudaStream>,
    functions: HashMap<&'static str, CudaFunction>,
    name: String,
}

/// NVRTC's name for a compute capability (the kernels need no newer features than sm_70).
fn arch_for(major: i32, minor: i32) -> &'static str {
    match (major, minor) {
        (7, 0) => "compute_70",
        (7, 5) => "compute_75",
        (8, 0) => "compute_80",
        (8, 6) => "compute_86",
        (8, 9) => "compute_89",
        (9, 0) => "compute_90",
        (m, _) if m >= 10 => "compute_90",
        (8, _) => "compute_80",
        _ => "compute_70",
    }
}

fn driver(what: &str) -> impl Fn(cudarc::driver::DriverError) -> String + '_ {
    move |e| format!("CUDA: {what}: {e:?}")
}

impl CudaDevice {
    /// Open device 0 and load every kernel; the error says why not (no driver, no device, ...).
    pub fn open() -> Result<Self, String> {
        probe()?;
        let ctx = CudaContext::new(0).map_err(driver("opening device 0"))?;
        let name = ctx.name().map_err(driver("device name"))?;
        use cudarc::driver::sys::CUdevice_attribute::{
            CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR as MAJOR,
            CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR as MINOR,
        };
        let major = ctx.attribute(MAJOR).map_err(driver("compute capability"))?;
        let minor = ctx.attribute(MINOR).map_err(driver("compute capability"))?;
        let arch = arch_for(major, minor);
        let mut functions = HashMap::new();
        for (file, src, entries) in KERNELS {
            let ptx = compile(file, src, arch)?;
            let module = ctx
                .load_module(cudarc::nvrtc::Ptx::from_src(ptx.as_str()))
                .map_err(driver("loading the kernels"))?;
            for &entry in entries {
                let f = module
                    .load_function(entry)
                    .map_err(driver("finding a kernel"))?;
                functions.insert(entry, f);
            }
        }
        let stream = ctx.default_stream();
        Ok(CudaDevice {
            poison: Default::default(),
            stream,
            functions,
            name: format!("{name} (sm_{major}{minor}, {arch})"),
        })
    }

    pub fn describe(&self) -> &str {
        &self.name
    }

    /// Host-to-device bandwidth of a `bytes` copy from pageable memory (best of 3), GB/s.
    pub fn upload_gbps(&self, bytes: u64) -> Result<f64, String> {
        let host = vec![7u32; (bytes / 4) as usize];
        let mut best = f64::INFINITY;
        for _ in 0..4 {
            let t = std::time::Instant::now();
            let dev = self.stream.clone_htod(&host).map_err(driver("upload"))?;
            self.stream.synchronize().map_err(driver("synchronize"))?;
            best = best.min(t.elapsed().as_secs_f64());
            drop(dev);
        }
        Ok(bytes as f64 / best / 1e9)
    }

    /// Checking mode: every buffer except the inputs starts as 0xFF bytes (NaN as float).
    pub fn set_poison(&self, on: bool) {
        self.poison.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Run every pass of `batch` on the device; each sample's output bytes.
    pub fn run_encoded(&self, batch: &EncodedBatch) -> Result<Vec<Vec<u8>>, String> {
        let s = &self.stream;
        let words = |b: u64| (b as usize).div_ceil(4).max(1);
        let mut buffers: Vec<Option<CudaSlice<u32>>> = Vec::new();
        for (i, &bytes) in batch.buffer_bytes.iter().enumerate() {
            let fill = if self.poison.load(std::sync::atomic::Ordering::Relaxed) {
                u32::MAX
            } else {
                0
            };
            let mut host = vec![fill; words(bytes)];
            match i {
                0 => host[..batch.records.len()].copy_from_slice(&batch.records),
                2 => {
                    let input: Vec<u32> = bytemuck::pod_collect_to_vec(&batch.input);
                    host[..input.len()].copy_from_slice(&input);
                }
                _ => {}
            }
            buffers.push(Some(s.clone_htod(&host).map_err(driver("upload"))?));
        }
        for pass in &batch.passes {
            let f = self
                .functions
                .get(pass.entry)
                .ok_or_else(|| format!("no CUDA kernel {}", pass.entry))?;
            let mut params = [0u32; 16];
            params.copy_from_slice(&bytemuck::pod_collect_to_vec::<u8, u32>(&pass.params));
            let params = KernelParams(params);
            if let Some(bytes) = pass.clear_aux {
                let aux = buffers[1].as_mut().expect("aux buffer");
                s.memset_zeros(&mut aux.slice_mut(..bytes as usize / 4))
                    .map_err(driver("clearing aux"))?;
            }
            // dst is never src, records or aux (the encoder's invariant): take it out to
            // borrow it mutably beside the others.
            let mut dst = buffers[pass.dst].take().expect("dst buffer");
            let mut aux = buffers[1].take().expect("aux buffer");
            let src = buffers[pass.src].as_ref().expect("src buffer");
            let records = buffers[0].as_ref().expect("records buffer");
            let rec = records.slice(pass.records_start..);
            let cfg = LaunchConfig {
                grid_dim: (pass.groups.0, pass.groups.1, 1),
                block_dim: (64, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut launch = s.launch_builder(f);
            launch
                .arg(&mut dst)
                .arg(src)
                .arg(&rec)
                .arg(&mut aux)
                .arg(&params);
            // SAFETY: the arguments match the kernel signature (SLUICE_KERNEL in prelude.cuh)
            // and every buffer has the size the encoder planned for its accesses.
            unsafe { launch.launch(cfg) }.map_err(driver(pass.entry))?;
            buffers[pass.dst] = Some(dst);
            buffers[1] = Some(aux);
        }
        let out = s
            .clone_dtoh(buffers[batch.output_buffer].as_ref().expect("output"))
            .map_err(driver("readback"))?;
        let bytes: &[u8] = bytemuck::cast_slice(&out);
        Ok(batch
            .output_offsets
            .iter()
            .zip(&batch.output_lengths)
            .map(|(&o, &n)| bytes[o as usize * 4..o as usize * 4 + n].to_vec())
            .collect())
    }
}

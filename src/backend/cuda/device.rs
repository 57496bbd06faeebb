//! Running encoded batches on a CUDA device: the kernels compiled by NVRTC for the device's
//! architecture and loaded once, the batch's buffers uploaded, every pass launched in order on
//! one stream, the result read back. This is the synchronous core the transfer engine (pinned
//! ring, copy/compute streams, device batches for the trainer) will build on.

use super::{compile, probe, KERNELS, TRAIN_STEP};
use crate::backend::wgpu::EncodedBatch;
use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchConfig};
use cudarc::driver::{DevicePtrMut, PushKernelArg};
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
    /// Checking mode: 0 off, else 0x100 | the byte outputs are filled with.
    poison: std::sync::atomic::AtomicU32,
    ctx: Arc<CudaContext>,
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

pub(super) fn driver(what: &str) -> impl Fn(cudarc::driver::DriverError) -> String + '_ {
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
        for (file, src, entries) in KERNELS.into_iter().chain([TRAIN_STEP]) {
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
            ctx,
            stream,
            functions,
            name: format!("{name} (sm_{major}{minor}, {arch})"),
        })
    }

    pub fn describe(&self) -> &str {
        &self.name
    }

    /// The context the kernels live in: make the training loop's streams from it.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    pub(super) fn function(&self, entry: &str) -> Result<&CudaFunction, String> {
        self.functions
            .get(entry)
            .ok_or_else(|| format!("no CUDA kernel {entry}"))
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
        let v = if on { 0x1FF } else { 0 };
        self.poison.store(v, std::sync::atomic::Ordering::Relaxed);
    }

    /// Checking mode with buffers filled with `byte` (two runs with different bytes must agree,
    /// or some element was never written).
    pub fn set_poison_byte(&self, byte: u8) {
        let v = 0x100 | u32::from(byte);
        self.poison.store(v, std::sync::atomic::Ordering::Relaxed);
    }

    /// Run every pass of `batch` on the device; each sample's output bytes (synchronous: the
    /// host-delivery path; device batches go through [`super::TransferEngine`]).
    pub fn run_encoded(&self, batch: &EncodedBatch) -> Result<Vec<Vec<u8>>, String> {
        let s = &self.stream;
        let mut host = vec![0u32; staged_words(batch)];
        stage_host(batch, &mut host);
        let mut buffers = DeviceBuffers {
            staged: s.clone_htod(&host).map_err(driver("upload"))?,
            work: Vec::new(),
        };
        for (i, &bytes) in batch.buffer_bytes.iter().enumerate() {
            buffers.work.push(match i {
                RECORDS | INPUT => None,
                _ => Some(
                    s.alloc_zeros::<u32>(words(bytes))
                        .map_err(driver("allocation"))?,
                ),
            });
        }
        self.launch_passes(s, batch, &mut buffers)?;
        // In-place passes without a tensor write leave the result in the staged input.
        let out = match batch.output_buffer {
            INPUT => s.clone_dtoh(&buffers.staged.slice(batch.records.len()..)),
            i => s.clone_dtoh(buffers.work[i].as_ref().ok_or("no output buffer")?),
        }
        .map_err(driver("readback"))?;
        let bytes: &[u8] = bytemuck::cast_slice(&out);
        Ok(batch
            .output_offsets
            .iter()
            .zip(&batch.output_lengths)
            .map(|(&o, &n)| bytes[o as usize * 4..o as usize * 4 + n].to_vec())
            .collect())
    }

    /// Enqueue `batch`'s passes on `s`: poison (in checking mode) then every kernel in order.
    /// The work buffers must hold at least `batch.buffer_bytes` each.
    pub(super) fn launch_passes(
        &self,
        s: &Arc<CudaStream>,
        batch: &EncodedBatch,
        bufs: &mut DeviceBuffers,
    ) -> Result<(), String> {
        let poison = self.poison.load(std::sync::atomic::Ordering::Relaxed);
        if poison != 0 {
            // A reused slot may hold buffers this batch does not use: only the batch's own.
            for (buffer, &planned) in bufs.work.iter_mut().zip(&batch.buffer_bytes) {
                if let Some(buffer) = buffer {
                    let bytes = words(planned) * 4;
                    let (ptr, _record) = buffer.device_ptr_mut(s);
                    // SAFETY: `ptr` is a live allocation of at least `bytes` bytes.
                    unsafe {
                        cudarc::driver::result::memset_d8_async(
                            ptr,
                            poison as u8,
                            bytes,
                            s.cu_stream(),
                        )
                    }
                    .map_err(driver("poisoning"))?;
                }
            }
        }
        let input_word = batch.records.len();
        // Kernels take raw addresses: in-place passes write the staged input while the records
        // beside it are read, which borrowed views cannot express. Ordering is explicit
        // instead: everything here is on `s`, and the engine's events order `s` against the
        // copy stream and the training loop's stream.
        let staged = address(&bufs.staged, s);
        let work: Vec<Option<u64>> = bufs
            .work
            .iter()
            .map(|b| b.as_ref().map(|b| address(b, s)))
            .collect();
        let buffer = |i: usize| -> Result<u64, String> {
            match i {
                RECORDS => Ok(staged),
                INPUT => Ok(staged + input_word as u64 * 4),
                _ => work
                    .get(i)
                    .copied()
                    .flatten()
                    .ok_or_else(|| format!("buffer {i} was not allocated")),
            }
        };
        for pass in &batch.passes {
            let f = self.function(pass.entry)?;
            if matches!(pass.dst, RECORDS | AUX) {
                return Err(format!("{}: writes into buffer {}", pass.entry, pass.dst));
            }
            let mut params = [0u32; 16];
            params.copy_from_slice(&bytemuck::pod_collect_to_vec::<u8, u32>(&pass.params));
            let params = KernelParams(params);
            if let Some(bytes) = pass.clear_aux {
                let aux = bufs.work[AUX].as_mut().ok_or("no aux buffer")?;
                s.memset_zeros(&mut aux.slice_mut(..bytes as usize / 4))
                    .map_err(driver("clearing aux"))?;
            }
            let (dst, src, aux) = (buffer(pass.dst)?, buffer(pass.src)?, buffer(AUX)?);
            let rec = staged + pass.records_start as u64 * 4;
            let cfg = LaunchConfig {
                grid_dim: (pass.groups.0, pass.groups.1, 1),
                block_dim: (64, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut launch = s.launch_builder(f);
            launch.arg(&dst).arg(&src).arg(&rec).arg(&aux).arg(&params);
            // SAFETY: the arguments match the kernel signature (SLUICE_KERNEL in prelude.cuh:
            // four pointers and Params by value); every address is a live allocation of at
            // least the size the encoder planned for the pass's accesses.
            unsafe { launch.launch(cfg) }.map_err(driver(pass.entry))?;
        }
        Ok(())
    }
}

/// Buffer numbers of [`EncodedBatch`]: records, aux, the packed input; then work buffers.
pub(super) const RECORDS: usize = 0;
pub(super) const AUX: usize = 1;
pub(super) const INPUT: usize = 2;

/// One batch's device memory. `staged` holds the records then the packed input (one upload);
/// `work[i]` is buffer `i` for aux and every buffer from 3 on (None for 0 and 2).
pub(super) struct DeviceBuffers {
    pub staged: CudaSlice<u32>,
    pub work: Vec<Option<CudaSlice<u32>>>,
}

/// The device address of `buffer`, for use on `s`.
fn address(buffer: &CudaSlice<u32>, s: &CudaStream) -> u64 {
    use cudarc::driver::DevicePtr;
    let (ptr, _record) = buffer.device_ptr(s);
    ptr
}

/// Whole 32-bit words for `bytes` (at least one: empty allocations are not allowed).
pub(super) fn words(bytes: u64) -> usize {
    (bytes as usize).div_ceil(4).max(1)
}

/// Words of the staged upload: the records, then the packed input.
pub(super) fn staged_words(batch: &EncodedBatch) -> usize {
    batch.records.len() + batch.input_len.div_ceil(4).max(1)
}

/// Write the records and (already packed) input of `batch` into `host`, laid out as staged.
fn stage_host(batch: &EncodedBatch, host: &mut [u32]) {
    let (records, input) = host.split_at_mut(batch.records.len());
    records.copy_from_slice(&batch.records);
    let input: &mut [u8] = bytemuck::cast_slice_mut(input);
    input[..batch.input.len()].copy_from_slice(&batch.input);
}

//! Running encoded batches on a CUDA device: the kernels compiled by NVRTC for the device's
//! architecture and loaded once, the batch's buffers uploaded, every pass launched in order on
//! one stream, the result read back. This is the synchronous core the transfer engine (pinned
//! ring, copy/compute streams, device batches for the trainer) will build on.

use super::nvrtc::Image;
use super::{compile, KERNELS, TRAIN_STEP};
use crate::backend::size_class::{Growth, SlotCapacity};
use crate::backend::wgpu::{EncodedBatch, ResidentTable};
use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchConfig};
use cudarc::driver::{DevicePtrMut, PushKernelArg};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The kernels' `Params` block (64 bytes), passed by value.
#[repr(C)]
#[derive(Clone, Copy)]
struct KernelParams([u32; 16]);

// SAFETY: plain old data with the C layout the kernels declare.
unsafe impl DeviceRepr for KernelParams {}

pub struct CudaDevice {
    /// Checking mode: 0 off, else 0x100 | the byte outputs are filled with.
    poison: std::sync::atomic::AtomicU32,
    ctx: Arc<CudaContext>,
    /// Buffers of the host-delivery path, reused across batches.
    host_path: Mutex<HostPath>,
    stream: Arc<CudaStream>,
    functions: HashMap<&'static str, CudaFunction>,
    name: String,
    /// The table the last text batch read (see [`ResidentTable`]), uploaded once.
    resident: Mutex<Option<(ResidentTable, CudaSlice<f32>)>>,
}

pub(super) fn driver(what: &str) -> impl Fn(cudarc::driver::DriverError) -> String + '_ {
    move |e| format!("CUDA: {what}: {e:?}")
}

/// What to compile for a device of compute capability `sm` (e.g. 90) with an NVRTC that makes
/// cubins for `supported`: the device's own `sm_XX` when it can, and the PTX fallback for the
/// newest virtual architecture not above the device (the kernels need nothing newer than sm_70).
fn targets(sm: u32, supported: &[u32]) -> (Option<String>, String) {
    let cubin = supported.contains(&sm).then(|| format!("sm_{sm}"));
    let virt = supported
        .iter()
        .copied()
        .filter(|&a| a <= sm)
        .max()
        .unwrap_or(sm);
    (cubin, format!("compute_{virt}"))
}

impl CudaDevice {
    /// Open device `ordinal` and load every kernel; the error says why not (no driver, no such
    /// device, no NVRTC, a module the driver rejects with its JIT log). The calling thread's
    /// current context is left as it was.
    pub fn open(ordinal: usize) -> Result<Self, String> {
        let _keep = super::context::CurrentContextGuard::new();
        let ctx = super::context::primary(ordinal)?;
        let name = ctx.name().map_err(driver("device name"))?;
        let (major, minor) = super::compute_capability(&ctx)?;
        let nvrtc = super::nvrtc::get()?;
        let sm = (major * 10 + minor) as u32;
        let (cubin, ptx) = targets(sm, &nvrtc.supported_archs()?);
        let mut functions = HashMap::new();
        let mut loaded_as = String::new();
        for (file, src, entries) in KERNELS.into_iter().chain([TRAIN_STEP]) {
            let (module, how) = load(&ctx, file, src, cubin.as_deref(), &ptx)?;
            loaded_as = how;
            for &entry in entries {
                let f = module
                    .load_function(entry)
                    .map_err(driver("finding a kernel"))?;
                functions.insert(entry, f);
            }
        }
        let stream = ctx.new_stream().map_err(driver("creating a stream"))?;
        let mut driver_version = 0;
        // SAFETY: writes one int; the driver is loaded (the context opened).
        unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut driver_version) };
        Ok(CudaDevice {
            poison: Default::default(),
            stream,
            functions,
            name: format!(
                "{name} (device {ordinal}, sm_{sm}, {loaded_as} by {}, driver {}.{})",
                nvrtc.describe(),
                driver_version / 1000,
                driver_version % 1000 / 10
            ),
            host_path: Mutex::default(),
            resident: Mutex::default(),
            ctx,
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

    /// Host-to-device bandwidth of a `bytes` copy from pageable memory (best of 3 after a
    /// warm-up copy), GB/s; on sluice's own stream into one reused device buffer.
    pub fn upload_gbps(&self, bytes: u64) -> Result<f64, String> {
        let _keep = super::context::CurrentContextGuard::new();
        let host = vec![7u32; words(bytes)];
        // SAFETY: only written by the copies.
        let mut dev =
            unsafe { self.stream.alloc::<u32>(host.len()) }.map_err(driver("allocation"))?;
        let mut best = f64::INFINITY;
        for copy in 0..4 {
            let t = std::time::Instant::now();
            self.stream
                .memcpy_htod(&host, &mut dev)
                .map_err(driver("upload"))?;
            super::host_wait(&self.stream)?;
            if copy > 0 {
                best = best.min(t.elapsed().as_secs_f64());
            }
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
    /// host-delivery path; device batches go through [`super::TransferEngine`]). Runs on
    /// sluice's own non-blocking stream (never behind the trainer's work on the legacy default
    /// stream) in buffers reused from batch to batch, grown by size class.
    pub fn run_encoded(&self, batch: &EncodedBatch) -> Result<Vec<Vec<u8>>, String> {
        if batch.output_offsets.len() != batch.output_lengths.len() {
            return Err("the encoded batch's output offsets and lengths differ in number".into());
        }
        let _keep = super::context::CurrentContextGuard::new();
        let s = &self.stream;
        let mut path = self.host_path.lock().unwrap();
        let path = &mut *path;
        let (need, work) = slot_needs(batch);
        path.host.clear();
        path.host.resize(need, 0);
        stage_host(batch, &mut path.host);
        let growth = path
            .capacity
            .grow_for(need, &work, &mut SlotCapacity::default());
        let bufs = match path.bufs.as_mut() {
            Some(b) => b,
            None => path.bufs.insert(DeviceBuffers::new(s)?),
        };
        bufs.grow(&growth, s, s)?;
        s.memcpy_htod(&path.host, &mut bufs.staged.slice_mut(..need))
            .map_err(driver("upload"))?;
        self.launch_passes(s, batch, bufs)?;
        // Sleep through the kernels; the readback below then waits only for its own copy.
        super::host_wait(s)?;
        // Only the words the samples occupy come back. In-place passes without a tensor write
        // leave the result in the staged input.
        let end = batch.output_words();
        let out = match batch.output_buffer {
            INPUT => {
                let at = batch.records.len();
                s.clone_dtoh(&bufs.staged.slice(at..at + end))
            }
            i => s.clone_dtoh(
                &bufs.work[i]
                    .as_ref()
                    .ok_or("no output buffer")?
                    .slice(..end),
            ),
        }
        .map_err(driver("readback"))?;
        Ok(batch.split_output(bytemuck::cast_slice(&out)))
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
            let aux = match &batch.resident {
                Some(table) => self.resident_address(table, s)?,
                None => buffer(AUX)?,
            };
            let (dst, src) = (buffer(pass.dst)?, buffer(pass.src)?);
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

impl CudaDevice {
    /// The device address of `table`: the copy kept from an earlier batch, or a fresh upload
    /// (finished before it returns, so any stream may read it) that replaces it.
    fn resident_address(&self, table: &ResidentTable, s: &Arc<CudaStream>) -> Result<u64, String> {
        let mut kept = self.resident.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = !matches!(kept.as_ref(), Some((t, _)) if t.key() == table.key()
            && t.data.len() == table.data.len());
        if fresh {
            *kept = None;
            let slice = s
                .clone_htod(&table.data[..])
                .map_err(driver("table upload"))?;
            s.synchronize().map_err(driver("table upload"))?;
            *kept = Some((table.clone(), slice));
        }
        let (_, slice) = kept.as_mut().expect("kept above");
        let (ptr, _record) = slice.device_ptr_mut(s);
        Ok(ptr)
    }
}

/// Buffer numbers of [`EncodedBatch`]: records, aux, the packed input; then work buffers.
pub(super) const RECORDS: usize = 0;
pub(super) const AUX: usize = 1;
pub(super) const INPUT: usize = 2;

/// One batch's device memory. `staged` holds the records then the packed input (one upload);
/// `work[i]` is buffer `i` for aux and every buffer from 3 on (None for 0 and 2). Reused from
/// batch to batch; grown by [`SlotCapacity::grow_for`]'s decisions.
pub(super) struct DeviceBuffers {
    pub staged: CudaSlice<u32>,
    pub work: Vec<Option<CudaSlice<u32>>>,
}

impl DeviceBuffers {
    pub fn new(s: &Arc<CudaStream>) -> Result<Self, String> {
        Ok(DeviceBuffers {
            // SAFETY: the staged buffer is only read after the copy that fills it.
            staged: unsafe { s.alloc::<u32>(1) }.map_err(driver("allocation"))?,
            work: Vec::new(),
        })
    }

    /// Make the allocations `growth` decided on: the staged buffer on `copy` (its writer), the
    /// work buffers zeroed on `compute` (aux must start clear; nothing reads stale words from a
    /// fresh buffer). Replaced buffers are freed stream-ordered behind their last use.
    pub fn grow(
        &mut self,
        growth: &Growth,
        copy: &Arc<CudaStream>,
        compute: &Arc<CudaStream>,
    ) -> Result<(), String> {
        if let Some(words) = growth.staged {
            // SAFETY: filled by the copy before any kernel reads it.
            self.staged = unsafe { copy.alloc::<u32>(words) }.map_err(driver("allocation"))?;
        }
        for &(i, words) in &growth.work {
            if self.work.len() <= i {
                self.work.resize_with(i + 1, || None);
            }
            self.work[i] = Some(
                compute
                    .alloc_zeros::<u32>(words)
                    .map_err(driver("allocation"))?,
            );
        }
        Ok(())
    }
}

/// What a slot must hold for `batch`: the staged words, and the work buffers' bytes (what
/// [`SlotCapacity::grow_for`] takes; the transfer engine and the host path both ask this).
pub fn slot_needs(batch: &EncodedBatch) -> (usize, Vec<Option<u64>>) {
    (staged_words(batch), work_bytes(batch))
}

/// The work buffers a batch allocates (bytes), None for records and the packed input (they
/// live in the staged buffer).
fn work_bytes(batch: &EncodedBatch) -> Vec<Option<u64>> {
    let mut work: Vec<Option<u64>> = batch.buffer_bytes.iter().map(|&b| Some(b)).collect();
    for i in [RECORDS, INPUT] {
        if let Some(w) = work.get_mut(i) {
            *w = None;
        }
    }
    work
}

/// The reused state of [`CudaDevice::run_encoded`].
#[derive(Default)]
pub(super) struct HostPath {
    host: Vec<u32>,
    capacity: SlotCapacity,
    bufs: Option<DeviceBuffers>,
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
pub(super) fn stage_host(batch: &EncodedBatch, host: &mut [u32]) {
    let (records, input) = host.split_at_mut(batch.records.len());
    records.copy_from_slice(&batch.records);
    let input: &mut [u8] = bytemuck::cast_slice_mut(input);
    input[..batch.input.len()].copy_from_slice(&batch.input);
}

/// Load `file`'s kernels: the cubin if there is one and the driver takes it, else the PTX; a
/// rejected PTX comes back with the driver's JIT log. Returns the module and what was loaded.
fn load(
    ctx: &Arc<CudaContext>,
    file: &str,
    src: &str,
    cubin: Option<&str>,
    ptx: &str,
) -> Result<(Arc<cudarc::driver::CudaModule>, String), String> {
    let mut cubin_error = String::new();
    if let Some(arch) = cubin {
        let Image::Cubin(bytes) = &*compile(file, src, arch)? else {
            unreachable!("sm_ targets compile to cubins")
        };
        match ctx.load_module(cudarc::nvrtc::Ptx::from_binary(bytes.clone())) {
            Ok(m) => return Ok((m, format!("cubin {arch}"))),
            Err(e) => cubin_error = format!("the {arch} cubin was rejected ({e:?}); "),
        }
    }
    let Image::Ptx(text) = &*compile(file, src, ptx)? else {
        unreachable!("compute_ targets compile to PTX")
    };
    match ctx.load_module(cudarc::nvrtc::Ptx::from_src(text.as_str())) {
        Ok(m) => Ok((m, format!("PTX {ptx}"))),
        Err(e) => Err(format!(
            "CUDA: loading {file}: {cubin_error}the {ptx} PTX was rejected ({e:?}): {}",
            jit_log(text)
        )),
    }
}

/// The driver's JIT error log for `ptx` (loads it again with a log buffer; only on failure).
fn jit_log(ptx: &str) -> String {
    use cudarc::driver::sys::{self, CUjit_option};
    let Ok(c_ptx) = std::ffi::CString::new(ptx) else {
        return "PTX with a NUL".into();
    };
    let mut log = vec![0u8; 16 * 1024];
    let mut options = [
        CUjit_option::CU_JIT_ERROR_LOG_BUFFER,
        CUjit_option::CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
    ];
    let mut values = [log.as_mut_ptr().cast(), log.len() as *mut std::ffi::c_void];
    let mut module = std::ptr::null_mut();
    // SAFETY: the option values are a live buffer and its size (passed by value, as the
    // driver API specifies for size options); the context is current (load_module bound it).
    let status = unsafe {
        sys::cuModuleLoadDataEx(
            &mut module,
            c_ptx.as_ptr().cast(),
            options.len() as u32,
            options.as_mut_ptr(),
            values.as_mut_ptr(),
        )
    };
    if status == sys::cudaError_enum::CUDA_SUCCESS {
        // SAFETY: loaded just now, unloaded once.
        unsafe { sys::cuModuleUnload(module) };
        return "the driver accepted it on the second try".into();
    }
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]).trim().to_string();
    if text.is_empty() {
        format!("{status:?}, no JIT log")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::targets;

    #[test]
    fn a_device_gets_its_own_cubin_and_ptx_no_newer_than_itself() {
        let nvrtc_12_9 = [75, 80, 86, 87, 89, 90, 100, 120];
        assert_eq!(
            targets(90, &nvrtc_12_9),
            (Some("sm_90".into()), "compute_90".into())
        );
        // A device newer than this NVRTC: no cubin, PTX for the newest older architecture.
        assert_eq!(targets(121, &nvrtc_12_9), (None, "compute_120".into()));
        assert_eq!(targets(86, &[80, 90]), (None, "compute_80".into()));
    }
}

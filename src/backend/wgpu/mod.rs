//! The wgpu backend: WGSL compute kernels on any GPU that speaks Vulkan, Metal or DX12 (and on
//! Mesa's lavapipe software driver, which is how CI checks the kernels without a GPU).
//!
//! A batch is uploaded once as packed u8 images (ragged: each sample its own size), every
//! operator placed on the GPU runs on it in one command stream, and one readback returns the
//! output tensor (or images). Device buffers come from a pool reused across batches; batches
//! that would overflow a storage binding (128 MiB on lavapipe) are split into chunks of samples.

mod encode;
mod kernels;
mod pool;
mod run;
mod spectral;
mod text;

pub use kernels::{SPECTRAL_ENTRIES, TEXT_ENTRIES};

pub(crate) use run::check_output_len;
pub use run::{encode_batch, encode_layout, EncodedBatch, EncodedPass, ImageStage, TensorWrite};
pub use spectral::{
    encode_spectral, fft_unsupported, spectral_frames, SpectralInput, SpectralStage, MAX_FFT,
};
pub use text::{encode_text, table_unsupported, ResidentTable, TextLayout, TextStage, TokenInput};

use pool::DevicePool;
use std::sync::atomic::{AtomicU32, Ordering};

/// A wgpu device with the compiled kernels.
pub struct WgpuContext {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    kernels: kernels::Kernels,
    pool: DevicePool,
    /// Largest storage binding (and buffer) one chunk may use.
    binding_limit: u64,
    min_uniform_align: u64,
    /// Checking mode: 0 off, else 0x100 | the byte outputs are filled with.
    poison: AtomicU32,
    /// The table the last text batch read (see [`ResidentTable`]), uploaded once.
    resident: std::sync::Mutex<Option<(ResidentTable, wgpu::Buffer)>>,
}

/// The device, queue and compiled kernels: opened once per process and shared by every
/// [`WgpuContext`] (wgpu handles are reference-counted clones).
#[derive(Clone)]
struct OpenedDevice {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    kernels: kernels::Kernels,
}

impl OpenedDevice {
    /// The process's device, opened on first use and kept until exit. One device per process
    /// is what a GPU driver expects, and it makes a pipeline's start cheap; on an NVIDIA H200,
    /// opening and dropping a Vulkan device per pipeline on several threads at once aborted
    /// inside the driver (`free()` in libnvidia-eglcore, on a driver thread). A failure is not
    /// kept: the next pipeline tries again.
    fn shared() -> Result<Self, String> {
        static OPENED: std::sync::Mutex<Option<OpenedDevice>> = std::sync::Mutex::new(None);
        let mut opened = OPENED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = opened.as_ref() {
            return Ok(d.clone());
        }
        let d = Self::open()?;
        *opened = Some(d.clone());
        Ok(d)
    }

    /// Open the best adapter (a discrete GPU when there is one) and compile the kernels.
    fn open() -> Result<Self, String> {
        // Vulkan, Metal or DX12 (WGPU_BACKEND still overrides): the kernels need compute
        // shaders, which the GL backend has only on some drivers.
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = wgpu::Backends::PRIMARY;
        let instance = wgpu::Instance::new(desc.with_env());
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
            ..Default::default()
        }))
        .map_err(|e| format!("no wgpu adapter: {e}"))?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("sluice"),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| format!("wgpu adapter {} refused a device: {e}", info.name))?;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let kernels = kernels::Kernels::new(&device);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(format!(
                "the sluice WGSL kernels do not compile on {}: {e}",
                info.name
            ));
        }
        Ok(OpenedDevice {
            device,
            queue,
            info,
            limits,
            kernels,
        })
    }
}

impl WgpuContext {
    /// A context on the process's wgpu device (opened on first use: the best adapter, a
    /// discrete GPU when there is one) with its own buffer pool and checking mode. The error
    /// says why no device is usable, e.g. "no wgpu adapter: ...".
    pub fn new() -> Result<Self, String> {
        let OpenedDevice {
            device,
            queue,
            info,
            limits,
            kernels,
        } = OpenedDevice::shared()?;
        Ok(WgpuContext {
            device,
            queue,
            info,
            kernels,
            pool: DevicePool::new(),
            binding_limit: limits
                .max_storage_buffer_binding_size
                .min(limits.max_buffer_size),
            min_uniform_align: u64::from(limits.min_uniform_buffer_offset_alignment)
                .max(u64::from(limits.min_storage_buffer_offset_alignment)),
            poison: AtomicU32::new(0),
            resident: std::sync::Mutex::new(None),
        })
    }

    /// `table` in device memory: the copy kept from an earlier batch, or a fresh upload that
    /// replaces it (one table per context: a pipeline has one lookup).
    fn resident_buffer(&self, table: &ResidentTable) -> wgpu::Buffer {
        let mut kept = self.resident.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((t, buffer)) = kept.as_ref() {
            if t.key() == table.key() && t.data.len() == table.data.len() {
                return buffer.clone();
            }
        }
        use wgpu::BufferUsages as U;
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("sluice resident table"),
            size: table.bytes().max(4),
            usage: U::STORAGE | U::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue
            .write_buffer(&buffer, 0, bytemuck::cast_slice(&table.data));
        *kept = Some((table.clone(), buffer.clone()));
        buffer
    }

    /// "name (backend, device type)" for reports.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// A software rasterizer (lavapipe, WARP): correct, but slower than the CPU path.
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// The largest storage binding a chunk may use (the adapter's limit unless lowered).
    pub fn binding_limit(&self) -> u64 {
        self.binding_limit
    }

    /// Lower the binding limit (tests use this to force chunking on small batches).
    pub fn set_binding_limit(&mut self, bytes: u64) {
        self.binding_limit = self.binding_limit.min(bytes);
    }

    /// Checking mode: fill every kernel output with 0xFF bytes (NaN as float) before the kernel
    /// runs, so an element a kernel fails to write shows in the result.
    pub fn set_poison(&self, on: bool) {
        self.poison
            .store(if on { 0x1FF } else { 0 }, Ordering::Relaxed);
    }

    /// Checking mode with outputs filled with `byte`: two runs with different bytes must give
    /// the same result, or some element was never written (whatever its value).
    pub fn set_poison_byte(&self, byte: u8) {
        self.poison
            .store(0x100 | u32::from(byte), Ordering::Relaxed);
    }

    /// The word outputs are filled with, in checking mode.
    fn poisoning(&self) -> Option<u32> {
        let v = self.poison.load(Ordering::Relaxed);
        (v != 0).then(|| u32::from_ne_bytes([v as u8; 4]))
    }

    /// Host-to-device bandwidth of a `bytes` upload (best of 3, after a warm-up), GB/s.
    pub fn upload_gbps(&self, bytes: u64) -> Result<f64, String> {
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
        let buffer = self.pool.take(&self.device, usage, bytes);
        let data = vec![7u8; bytes as usize];
        let mut best = f64::INFINITY;
        for _ in 0..4 {
            let t = std::time::Instant::now();
            self.queue.write_buffer(&buffer, 0, &data);
            self.queue.submit([]);
            self.device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| format!("waiting for the upload failed: {e}"))?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        self.pool.give(buffer);
        Ok(bytes as f64 / best / 1e9)
    }

    /// Device buffers allocated so far (flat once the pool is warm).
    pub fn buffer_allocations(&self) -> u64 {
        self.pool.allocations()
    }
}

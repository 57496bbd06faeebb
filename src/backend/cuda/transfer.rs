//! The transfer engine: batches delivered into device memory while the model trains.
//!
//! A ring of `prefetch + 2` slots (see [`SlotRing`]); each holds pinned host staging memory and
//! the device buffers of one batch. For a batch the submission thread leases a slot, the worker
//! pool packs the samples straight into its pinned memory, one asynchronous copy on the copy
//! stream moves records and pixels to the device, the kernels run on the compute stream after
//! the copy's event, and the batch's "ready" event is recorded behind them. The training loop
//! gets a [`DeviceBatch`]; the slot comes back when it drops the batch, and the next kernels
//! that write the slot's buffers wait for the loop's release event first. Slot memory grows by
//! size class (`backend::size_class`) up to the largest batch seen and is reused from then on:
//! memory never grows with the number of batches, and batches of varying size do not re-pin.

use super::context::CurrentContextGuard;
use super::device::{driver, slot_needs, stage_host, DeviceBuffers, AUX, INPUT, RECORDS};
use super::CudaDevice;
use crate::backend::size_class::SlotCapacity;
use crate::backend::staging::{SlotLease, SlotRing};
use crate::backend::wgpu::EncodedBatch;
use crate::error::Error;
use crate::tensor::{DType, Image, Layout};
use cudarc::driver::{CudaContext, CudaEvent, CudaStream, CudaView, PinnedHostSlice};
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What the engine has done so far (timings from CUDA events, settled as slots come back).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TransferStats {
    pub slots: usize,
    pub batches: u64,
    pub bytes_uploaded: u64,
    /// Time the copy stream spent on host-to-device copies, and the kernels' time, summed over
    /// the batches whose timings are settled (`timed_batches`).
    pub h2d_ms: f64,
    pub kernel_ms: f64,
    pub timed_batches: u64,
    pub timed_bytes: u64,
    /// Pinned host and device allocations made (or grown) — constant once every slot has seen
    /// the largest batch.
    pub pinned_allocations: u64,
    pub device_allocations: u64,
    /// Batches whose memory was handed out (`words`/`view`/`device_ptr`) and that were dropped
    /// without `release_after`: their slot may be rewritten while the loop's stream still reads
    /// it. Always 0 in a correct training loop.
    pub unreleased_drops: u64,
}

impl TransferStats {
    /// Achieved host-to-device bandwidth, GB/s.
    pub fn h2d_gbps(&self) -> f64 {
        self.timed_bytes as f64 / (self.h2d_ms * 1e6).max(f64::MIN_POSITIVE)
    }
}

/// The events of one slot's current use.
struct SlotEvents {
    h2d_start: CudaEvent,
    h2d_end: CudaEvent,
    kernel_start: CudaEvent,
    /// Recorded after the last kernel: the batch is ready.
    ready: CudaEvent,
    /// Recorded by the training loop on its stream when it is done with the batch.
    release: CudaEvent,
}
// `h2d_end`, `ready` and `release` are waited on by the host (before rewriting pinned memory,
// `DeviceBatch::synchronize`, before freeing): blocking-sync events, so those waits sleep.

/// A slot's device side: moves into the [`DeviceBatch`] while the training loop holds it.
struct SlotDevice {
    bufs: DeviceBuffers,
    events: SlotEvents,
    /// Where the batch's tensors start: (buffer number, word offset in it).
    output: (usize, usize),
    uploaded: u64,
}

#[derive(Default)]
struct Slot {
    host: Option<PinnedHostSlice<u32>>,
    /// What `host` and the device buffers hold (the growth policy's bookkeeping).
    capacity: SlotCapacity,
    device: Option<SlotDevice>,
    /// Events of a use whose timings are not yet counted.
    timing_pending: bool,
}

struct Core {
    // Dropped by hand inside a context guard (see Drop), so freeing them leaves the dropping
    // thread's current context alone.
    device: ManuallyDrop<Arc<CudaDevice>>,
    copy: ManuallyDrop<Arc<CudaStream>>,
    compute: ManuallyDrop<Arc<CudaStream>>,
    ring: Arc<SlotRing>,
    slots: Vec<Mutex<Slot>>,
    /// The largest capacity any slot has per buffer: a slot that must grow goes straight there.
    high_water: Mutex<SlotCapacity>,
    stats: Mutex<TransferStats>,
}

impl Drop for Core {
    fn drop(&mut self) {
        let _keep = CurrentContextGuard::new();
        // Copies may still read the pinned slots and kernels write the device buffers; and a
        // training loop that read a batch in its own kernels may still be reading a slot: its
        // release event marks the end. Wait for all of it before any memory goes.
        let _ = super::host_wait(&self.copy);
        let _ = super::host_wait(&self.compute);
        for slot in &self.slots {
            let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(dev) = &slot.device {
                let _ = dev.events.release.synchronize();
            }
            slot.device = None;
            slot.host = None;
        }
        // SAFETY: dropped once, here; no method runs after drop.
        unsafe {
            ManuallyDrop::drop(&mut self.copy);
            ManuallyDrop::drop(&mut self.compute);
            ManuallyDrop::drop(&mut self.device);
        }
    }
}

pub struct TransferEngine(Arc<Core>);

/// Where a device batch's tensor sits and what it is.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub dtype: DType,
    pub layout: Layout,
    /// Batch dimension first.
    pub shape: Vec<usize>,
}

impl TensorInfo {
    /// Bytes of the tensor (`shape` × dtype size).
    pub fn bytes(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.size()
    }
}

/// One named tensor of a device batch: `info` at byte `offset` of the batch's output (a
/// multiple of 4: every tensor starts on a 32-bit word). The first is the batch's main tensor
/// (`images`, `features`, `input_ids` or `embeddings`); a masked-LM batch adds `labels`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceTensor {
    pub name: &'static str,
    pub info: TensorInfo,
    pub offset: usize,
}

/// What goes into a slot's pinned memory after the records: images the pool's workers pack
/// (a layout from `encode_layout`), or the input the encoder already packed (speech, tokens).
pub enum StagedInput<'a> {
    Images(&'a [Image]),
    Encoded,
}

impl TransferEngine {
    /// An engine with `slots` slots on `device`, with its own copy and compute streams.
    pub fn new(device: Arc<CudaDevice>, slots: usize) -> Result<Self, String> {
        let _keep = CurrentContextGuard::new();
        let ctx = device.context().clone();
        let copy = ctx
            .new_stream()
            .map_err(driver("creating the copy stream"))?;
        let compute = ctx
            .new_stream()
            .map_err(driver("creating the compute stream"))?;
        Ok(TransferEngine(Arc::new(Core {
            device: ManuallyDrop::new(device),
            copy: ManuallyDrop::new(copy),
            compute: ManuallyDrop::new(compute),
            ring: SlotRing::new(slots),
            slots: (0..slots).map(|_| Mutex::default()).collect(),
            high_water: Mutex::default(),
            stats: Mutex::new(TransferStats {
                slots,
                ..Default::default()
            }),
        })))
    }

    pub fn ring(&self) -> &Arc<SlotRing> {
        &self.0.ring
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        self.0.device.context()
    }

    pub fn device(&self) -> &Arc<CudaDevice> {
        &self.0.device
    }

    /// Run `layout` on `input` into a slot; the batch is on its way when this returns (the
    /// copy and kernels are queued, not finished). `workers` pack images into the slot's
    /// pinned memory. `tensors` (the main one first) must lie inside the samples' outputs.
    pub fn submit(
        &self,
        layout: &EncodedBatch,
        input: StagedInput,
        tensors: Vec<DeviceTensor>,
        cancel: &AtomicBool,
        workers: &rayon::ThreadPool,
    ) -> Result<DeviceBatch, String> {
        check_tensors(layout, &tensors)?;
        let _keep = CurrentContextGuard::new();
        let core = &self.0;
        let lease = core.ring.acquire(cancel)?;
        let mut slot = core.slots[lease.index()].lock().unwrap();
        let mut dev = match slot.device.take() {
            Some(d) => d,
            None => core.new_slot_device()?,
        };
        if std::mem::take(&mut slot.timing_pending) {
            core.settle_timing(&dev);
        }
        // Restore the slot's device side whatever happens, so a failed batch leaks nothing.
        if let Err(e) = core.stage_and_launch(&mut slot, &mut dev, layout, input, workers) {
            slot.device = Some(dev);
            return Err(e);
        }
        drop(slot);
        let mut stats = core.stats.lock().unwrap();
        stats.batches += 1;
        stats.bytes_uploaded += dev.uploaded;
        drop(stats);
        Ok(DeviceBatch {
            core: core.clone(),
            lease,
            device: Some(dev),
            tensors,
            exposed: false.into(),
            released: false.into(),
        })
    }

    /// Counters so far; settles the timings of every slot not held by the training loop.
    pub fn stats(&self) -> TransferStats {
        let _keep = CurrentContextGuard::new();
        for slot in &self.0.slots {
            let mut slot = slot.lock().unwrap();
            if let (true, Some(dev)) = (slot.timing_pending, slot.device.as_ref()) {
                self.0.settle_timing(dev);
                slot.timing_pending = false;
            }
        }
        self.0.stats.lock().unwrap().clone()
    }

    /// Host-to-device bandwidth of a plain pinned copy of `bytes` on the copy stream (best of
    /// 5 after a warm-up copy), GB/s: what the engine's achieved bandwidth is compared with.
    pub fn raw_pinned_gbps(&self, bytes: usize) -> Result<f64, String> {
        let _keep = CurrentContextGuard::new();
        let core = &self.0;
        let n = bytes.div_ceil(4).max(1);
        // SAFETY: written below before any read.
        let mut host = unsafe { core.device.context().alloc_pinned::<u32>(n) }
            .map_err(driver("pinned allocation"))?;
        host.as_mut_slice()
            .map_err(driver("pinned memory"))?
            .fill(0x5A5A_5A5A);
        // SAFETY: only written by the copies.
        let mut dst = unsafe { core.copy.alloc::<u32>(n) }.map_err(driver("allocation"))?;
        let timing = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let ctx = core.device.context();
        let (start, end) = (
            ctx.new_event(timing).map_err(driver("event"))?,
            ctx.new_event(timing).map_err(driver("event"))?,
        );
        let mut best = f32::INFINITY;
        for copy in 0..6 {
            start.record(&core.copy).map_err(driver("event"))?;
            core.copy
                .memcpy_htod(&host, &mut dst)
                .map_err(driver("pinned copy"))?;
            end.record(&core.copy).map_err(driver("event"))?;
            super::host_wait(&core.copy)?;
            let ms = start.elapsed_ms(&end).map_err(driver("timing"))?;
            if copy > 0 {
                best = best.min(ms);
            }
        }
        Ok(n as f64 * 4.0 / (f64::from(best) * 1e6))
    }
}

impl Core {
    fn new_slot_device(&self) -> Result<SlotDevice, String> {
        let ctx = self.device.context();
        let timed = || {
            ctx.new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(driver("creating an event"))
        };
        let waited = || super::blocking_event(ctx);
        Ok(SlotDevice {
            bufs: DeviceBuffers::new(&self.copy)?,
            events: SlotEvents {
                h2d_start: timed()?,
                h2d_end: waited()?,
                kernel_start: timed()?,
                ready: waited()?,
                release: waited()?,
            },
            output: (INPUT, 0),
            uploaded: 0,
        })
    }

    /// Count a finished use's copy and kernel times (waits for them if they are still running).
    fn settle_timing(&self, dev: &SlotDevice) {
        let e = &dev.events;
        let h2d = e.h2d_start.elapsed_ms(&e.h2d_end);
        let kernels = e.kernel_start.elapsed_ms(&e.ready);
        if let (Ok(h2d), Ok(kernels)) = (h2d, kernels) {
            let mut stats = self.stats.lock().unwrap();
            stats.h2d_ms += f64::from(h2d);
            stats.kernel_ms += f64::from(kernels);
            stats.timed_batches += 1;
            stats.timed_bytes += dev.uploaded;
        }
    }

    /// Pack the batch into the slot's pinned memory, copy it up on the copy stream, and queue
    /// the kernels on the compute stream behind the copy and the previous user's release.
    fn stage_and_launch(
        &self,
        slot: &mut Slot,
        dev: &mut SlotDevice,
        layout: &EncodedBatch,
        input: StagedInput,
        workers: &rayon::ThreadPool,
    ) -> Result<(), String> {
        let (need, work) = slot_needs(layout);
        let (e, copy, compute) = (&dev.events, &self.copy, &self.compute);
        // Reuse order: the copy stream waits for the previous use's kernels (they read the
        // staged buffer until `ready`), the compute stream for the training loop's release
        // (it reads the output until then). Both come first, so a buffer replaced by a larger
        // one below is freed (stream-ordered) only after its last reader.
        copy.wait(&e.ready).map_err(driver("stream wait"))?;
        compute.wait(&e.release).map_err(driver("stream wait"))?;
        // The previous copy out of this pinned memory must be done before it is rewritten.
        e.h2d_end
            .synchronize()
            .map_err(driver("waiting for a copy"))?;
        // The new capacities count once every allocation has succeeded: after a failure the
        // bookkeeping never claims memory the slot does not have.
        // (The high-water mark is only a target size: raising it before the allocations
        // succeed costs nothing.)
        let mut capacity = slot.capacity.clone();
        let growth = capacity.grow_for(need, &work, &mut self.high_water.lock().unwrap());
        if let Some(words) = growth.pinned {
            // Free the old one before allocating its replacement.
            slot.host = None;
            // SAFETY: written below before the copy reads it.
            let host = unsafe { self.device.context().alloc_pinned::<u32>(words) }
                .map_err(driver("pinned allocation"))?;
            slot.host = Some(host);
        }
        let host = slot.host.as_mut().expect("allocated above");
        let host = &mut host.as_mut_slice().map_err(driver("pinned memory"))?[..need];
        match input {
            // The pipeline's workers copy the samples into pinned memory, one task per sample.
            StagedInput::Images(images) => {
                let (records, staged) = host.split_at_mut(layout.records.len());
                records.copy_from_slice(&layout.records);
                let staged = bytemuck::cast_slice_mut(staged);
                workers.install(|| layout.pack_input(images, staged))?;
            }
            StagedInput::Encoded => stage_host(layout, host),
        }

        dev.bufs.grow(&growth, copy, compute)?;
        slot.capacity = capacity;
        debug_assert!(dev.bufs.work[AUX].is_some());
        let mut stats = self.stats.lock().unwrap();
        stats.pinned_allocations += growth.pinned_allocations();
        stats.device_allocations += growth.device_allocations();
        drop(stats);
        let e = &dev.events;
        e.h2d_start.record(copy).map_err(driver("event"))?;
        copy.memcpy_htod(&host[..], &mut dev.bufs.staged.slice_mut(..need))
            .map_err(driver("host-to-device copy"))?;
        e.h2d_end.record(copy).map_err(driver("event"))?;
        dev.uploaded = need as u64 * 4;

        compute.wait(&e.h2d_end).map_err(driver("stream wait"))?;
        e.kernel_start.record(compute).map_err(driver("event"))?;
        self.device.launch_passes(compute, layout, &mut dev.bufs)?;
        e.ready.record(compute).map_err(driver("event"))?;
        // In-place passes leave their result in the staged input, after the records.
        dev.output = match layout.output_buffer {
            INPUT => (INPUT, layout.records.len()),
            b => (b, 0),
        };
        Ok(())
    }
}

/// u32 words as their bytes.
fn bytes_of(words: CudaView<'_, u32>) -> CudaView<'_, u8> {
    let n = words.len() * 4;
    // SAFETY: u32 words reinterpreted as their bytes; the length is in range.
    unsafe { words.transmute::<u8>(n) }.expect("in range")
}

/// A driver error as the pipeline's error type.
fn cuda_error(what: &str) -> impl Fn(cudarc::driver::DriverError) -> Error + '_ {
    move |e| Error::Worker(driver(what)(e))
}

/// One batch in device memory, handed to the training loop. Its tensor lives in a slot of
/// sluice's ring until the batch is dropped.
///
/// Use it on your stream (made from [`crate::Pipeline::cuda_context`]):
/// 1. [`DeviceBatch::wait_on`]`(&stream)`: your stream waits for the batch's ready event;
/// 2. launch your step reading [`DeviceBatch::words`] / [`DeviceBatch::view`] (or the raw
///    [`DeviceBatch::device_ptr`]);
/// 3. [`DeviceBatch::release_after`]`(&stream)`: sluice reuses the slot only after the work
///    queued so far on your stream; then drop the batch.
///
/// Hold at most two device batches at a time (the ring has `prefetch + 2` slots).
pub struct DeviceBatch {
    core: Arc<Core>,
    lease: SlotLease,
    device: Option<SlotDevice>,
    /// The main tensor first.
    tensors: Vec<DeviceTensor>,
    /// Whether the memory was handed out, and whether a release was recorded since.
    exposed: AtomicBool,
    released: AtomicBool,
}

impl std::fmt::Debug for DeviceBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceBatch")
            .field("slot", &self.lease.index())
            .field("tensors", &self.tensors)
            .finish()
    }
}

/// Check that every tensor of a device batch lies inside the samples' outputs, starting on a
/// word and covering whole words.
fn check_tensors(layout: &EncodedBatch, tensors: &[DeviceTensor]) -> Result<(), String> {
    if matches!(layout.output_buffer, RECORDS | AUX) {
        return Err("a device batch needs its output in a buffer of its own".into());
    }
    if tensors.is_empty() {
        return Err("a device batch needs a tensor".into());
    }
    if !layout.output_is_contiguous() {
        return Err(
            "the samples' tensors are not whole 32-bit words, so they cannot lie back to back \
             on the device; use an f16/f32 output or an even image size"
                .into(),
        );
    }
    let end = layout.output_words() * 4;
    for t in tensors {
        let bytes = t.info.bytes();
        if t.offset % 4 != 0 || bytes % 4 != 0 {
            return Err(format!(
                "{} ({bytes} bytes at byte {}) is not whole 32-bit words, so it cannot lie in \
                 device memory as one tensor; use an f16/f32 output or an even image size",
                t.name, t.offset
            ));
        }
        if t.offset + bytes > end {
            return Err(format!(
                "{} ({bytes} bytes at byte {}) runs past the batch's {end} output bytes",
                t.name, t.offset
            ));
        }
    }
    Ok(())
}

impl DeviceBatch {
    fn dev(&self) -> &SlotDevice {
        self.device.as_ref().expect("present until drop")
    }

    /// The words of `t`, handed to the caller: from now on dropping needs a release first.
    fn exposed_words(&self, t: &DeviceTensor) -> CudaView<'_, u32> {
        self.exposed.store(true, Ordering::Relaxed);
        self.words_of(t)
    }

    fn words_of(&self, t: &DeviceTensor) -> CudaView<'_, u32> {
        let dev = self.dev();
        let (buffer, first) = dev.output;
        let buffer = match buffer {
            INPUT => &dev.bufs.staged,
            b => dev.bufs.work[b].as_ref().expect("output buffer"),
        };
        let start = first + t.offset / 4;
        buffer.slice(start..start + t.info.bytes() / 4)
    }

    fn main(&self) -> &DeviceTensor {
        &self.tensors[0]
    }

    /// The tensor called `name`.
    fn named(&self, name: &str) -> crate::Result<&DeviceTensor> {
        self.tensor_named(name).ok_or_else(|| {
            Error::Worker(format!(
                "this device batch has no tensor {name}; it has {}",
                self.tensors
                    .iter()
                    .map(|t| t.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    /// The main tensor (the first of [`DeviceBatch::tensors`]).
    pub fn tensor(&self) -> &TensorInfo {
        &self.main().info
    }

    /// Every tensor of the batch, the main one first.
    pub fn tensors(&self) -> &[DeviceTensor] {
        &self.tensors
    }

    /// The tensor called `name` (e.g. `labels`), if the batch has it.
    pub fn tensor_named(&self, name: &str) -> Option<&DeviceTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    pub fn shape(&self) -> &[usize] {
        &self.main().info.shape
    }

    pub fn dtype(&self) -> DType {
        self.main().info.dtype
    }

    /// The CUDA device ordinal the batch lives on.
    pub fn ordinal(&self) -> usize {
        self.core.device.context().ordinal()
    }

    /// Bytes of the main tensor (`shape` × dtype size).
    pub fn len_bytes(&self) -> usize {
        self.main().info.bytes()
    }

    /// The main tensor as 32-bit words (every device tensor is whole words).
    pub fn words(&self) -> CudaView<'_, u32> {
        self.exposed_words(self.main())
    }

    /// The main tensor's bytes.
    pub fn view(&self) -> CudaView<'_, u8> {
        bytes_of(self.words())
    }

    /// The bytes of the tensor called `name`.
    pub fn view_of(&self, name: &str) -> crate::Result<CudaView<'_, u8>> {
        Ok(bytes_of(self.exposed_words(self.named(name)?)))
    }

    /// The main tensor's device address, for kernels launched outside cudarc. Pair it with
    /// [`DeviceBatch::wait_on`] and [`DeviceBatch::release_after`].
    pub fn device_ptr(&self) -> cudarc::driver::sys::CUdeviceptr {
        self.address(self.main())
    }

    /// The address every [`DeviceTensor::offset`] counts from (the batch's output).
    pub fn output_ptr(&self) -> cudarc::driver::sys::CUdeviceptr {
        self.device_ptr() - self.main().offset as u64
    }

    /// [`DeviceBatch::device_ptr`] of the tensor called `name`.
    pub fn device_ptr_of(&self, name: &str) -> crate::Result<cudarc::driver::sys::CUdeviceptr> {
        Ok(self.address(self.named(name)?))
    }

    fn address(&self, t: &DeviceTensor) -> cudarc::driver::sys::CUdeviceptr {
        use cudarc::driver::{DevicePtr, DeviceSlice};
        let _keep = CurrentContextGuard::new();
        let words = self.exposed_words(t);
        let (ptr, _no_record) = words.device_ptr(words.stream());
        ptr
    }

    /// The event recorded when the batch's kernels have finished.
    pub fn ready_event(&self) -> &CudaEvent {
        &self.dev().events.ready
    }

    /// Make `stream` wait (on the device, not the host) until the batch is ready.
    pub fn wait_on(&self, stream: &CudaStream) -> crate::Result<()> {
        let _keep = CurrentContextGuard::new();
        stream
            .wait(self.ready_event())
            .map_err(cuda_error("stream wait"))
    }

    /// [`DeviceBatch::wait_on`] for a stream made outside cudarc (a framework's
    /// `cudaStream_t`, as DLPack hands it over); null is the legacy default stream.
    ///
    /// # Safety
    /// `stream` must be null or a live stream of this batch's context.
    pub unsafe fn wait_on_raw(&self, stream: cudarc::driver::sys::CUstream) -> crate::Result<()> {
        let _keep = CurrentContextGuard::new();
        let event = self.ready_event().cu_event();
        // SAFETY: both handles are live (the caller vouches for the stream).
        unsafe {
            cudarc::driver::result::stream::wait_event(
                stream,
                event,
                cudarc::driver::sys::CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT,
            )
        }
        .map_err(cuda_error("stream wait"))
    }

    /// [`DeviceBatch::release_after`] for a stream made outside cudarc (see
    /// [`DeviceBatch::wait_on_raw`]).
    ///
    /// # Safety
    /// `stream` must be null or a live stream of this batch's context.
    pub unsafe fn release_after_raw(
        &self,
        stream: cudarc::driver::sys::CUstream,
    ) -> crate::Result<()> {
        let _keep = CurrentContextGuard::new();
        let event = self.dev().events.release.cu_event();
        // SAFETY: both handles are live (the caller vouches for the stream).
        unsafe { cudarc::driver::result::event::record(event, stream) }
            .map_err(cuda_error("recording the release"))?;
        self.released.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Block the host until the batch is ready.
    pub fn synchronize(&self) -> crate::Result<()> {
        let _keep = CurrentContextGuard::new();
        self.ready_event()
            .synchronize()
            .map_err(cuda_error("waiting for a batch"))
    }

    /// sluice may reuse this batch's memory once the work queued so far on `stream` is done.
    /// Required before dropping a batch your stream still reads: sluice's kernels use raw
    /// addresses, which cudarc's per-buffer tracking does not see.
    pub fn release_after(&self, stream: &CudaStream) -> crate::Result<()> {
        let _keep = CurrentContextGuard::new();
        self.dev()
            .events
            .release
            .record(stream)
            .map_err(cuda_error("recording the release"))?;
        self.released.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Copy the main tensor to host memory (waits for it): for checks, not for training.
    pub fn to_host(&self) -> crate::Result<Vec<u8>> {
        self.copy_back(self.main())
    }

    /// [`DeviceBatch::to_host`] for the tensor called `name`.
    pub fn to_host_of(&self, name: &str) -> crate::Result<Vec<u8>> {
        self.copy_back(self.named(name)?)
    }

    fn copy_back(&self, t: &DeviceTensor) -> crate::Result<Vec<u8>> {
        let _keep = CurrentContextGuard::new();
        let words = self
            .core
            .compute
            // Ordered on sluice's compute stream and finished before returning: no release.
            .clone_dtoh(&self.words_of(t))
            .map_err(cuda_error("readback"))?;
        Ok(bytemuck::cast_slice(&words).to_vec())
    }

    /// Called as the batch is handed to the training loop.
    pub(crate) fn mark_delivered(&mut self) {
        self.lease.mark_delivered();
    }
}

impl Drop for DeviceBatch {
    fn drop(&mut self) {
        if self.exposed.load(Ordering::Relaxed) && !self.released.load(Ordering::Relaxed) {
            self.core.stats.lock().unwrap().unreleased_drops += 1;
            if cfg!(debug_assertions) {
                eprintln!(
                    "sluice: a device batch (slot {}) was dropped without release_after after \
                     its memory was handed out: its slot may be rewritten while your stream \
                     still reads it",
                    self.lease.index()
                );
            }
        }
        // The slot's device side goes home before the lease frees the slot (field order).
        let mut slot = self.core.slots[self.lease.index()].lock().unwrap();
        slot.device = self.device.take();
        slot.timing_pending = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An encoded batch whose output is `words` words of buffer 3 (one sample).
    fn layout(words: u64) -> EncodedBatch {
        EncodedBatch {
            buffer_bytes: vec![4, 4, 4, words * 4],
            input: Vec::new(),
            input_offsets: Vec::new(),
            input_len: 0,
            records: Vec::new(),
            passes: Vec::new(),
            output_buffer: 3,
            output_offsets: vec![0],
            output_lengths: vec![words as usize * 4],
            resident: None,
        }
    }

    fn tensor(name: &'static str, dtype: DType, shape: &[usize], offset: usize) -> DeviceTensor {
        DeviceTensor {
            name,
            info: TensorInfo {
                dtype,
                layout: Layout::Chw,
                shape: shape.to_vec(),
            },
            offset,
        }
    }

    #[test]
    fn device_tensors_must_be_whole_words_inside_the_output() {
        let l = layout(16);
        // ids [2, 4] at 0 and labels [2, 4] right after: the whole output.
        let ids = tensor("input_ids", DType::I32, &[2, 4], 0);
        let labels = tensor("labels", DType::I32, &[2, 4], 32);
        assert_eq!(check_tensors(&l, &[ids.clone(), labels.clone()]), Ok(()));
        // One word too far, a misaligned start, an odd u8 size, none at all.
        let past = tensor("labels", DType::I32, &[2, 4], 36);
        assert!(check_tensors(&l, &[ids.clone(), past])
            .unwrap_err()
            .contains("runs past"));
        let skewed = tensor("labels", DType::I32, &[2, 2], 2);
        assert!(check_tensors(&l, &[skewed])
            .unwrap_err()
            .contains("32-bit words"));
        let odd = tensor("images", DType::U8, &[1, 3, 3, 3], 0);
        assert!(check_tensors(&l, &[odd])
            .unwrap_err()
            .contains("32-bit words"));
        assert!(check_tensors(&l, &[]).is_err());
        // The records and aux buffers are never a batch's output; the staged input may be.
        for (buffer, ok) in [(RECORDS, false), (AUX, false), (INPUT, true)] {
            let l = EncodedBatch {
                output_buffer: buffer,
                ..layout(24)
            };
            assert_eq!(
                check_tensors(&l, std::slice::from_ref(&ids)).is_ok(),
                ok,
                "buffer {buffer}"
            );
        }
        // Samples of 27 bytes: the second starts on the next word, not back to back.
        let gappy = EncodedBatch {
            output_offsets: vec![0, 7],
            output_lengths: vec![27, 27],
            ..layout(16)
        };
        let pair = tensor("images", DType::U8, &[2, 3, 3, 3], 0);
        assert!(check_tensors(&gappy, &[pair])
            .unwrap_err()
            .contains("back to back"));
        assert_eq!(tensor("x", DType::F32, &[2, 3, 5], 0).info.bytes(), 120);
    }
}

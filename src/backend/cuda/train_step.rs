//! A training-step stand-in on the training loop's own stream (kernels/train_step.cu): it reads
//! the batch and keeps the GPU busy for a set wall time (the global timer, not SM clocks), so
//! `sluice bench --backend cuda --train-step-ms T` can measure how much of the step sluice's
//! copies and kernels hide.
//!
//! The loop it stands for reads its loss every step: after queuing step k it waits (sleeping,
//! on a blocking-sync event) for step k to end, so exactly one step is in flight and the time
//! from one step's end to the next one's start (fetching the batch, waiting for it, launching)
//! shows in the step interval.

use super::context::CurrentContextGuard;
use super::device::driver;
use super::CudaDevice;
use cudarc::driver::{CudaEvent, CudaSlice, CudaStream, CudaView, LaunchConfig, PushKernelArg};
use std::sync::Arc;

pub struct TrainStep {
    device: Arc<CudaDevice>,
    stream: Arc<CudaStream>,
    ns: u64,
    blocks: u32,
    sink: CudaSlice<u32>,
    /// Recorded after each step; the host sleeps on it.
    end: CudaEvent,
}

impl TrainStep {
    /// A step of `ms` milliseconds of GPU wall time.
    pub fn new(device: Arc<CudaDevice>, ms: f64) -> Result<Self, String> {
        let _keep = CurrentContextGuard::new();
        let ctx = device.context().clone();
        let stream = ctx
            .new_stream()
            .map_err(driver("creating the training stream"))?;
        use cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT as SMS;
        let blocks = ctx.attribute(SMS).map_err(driver("SM count"))?.max(1) as u32;
        let sink = stream.alloc_zeros::<u32>(1).map_err(driver("allocation"))?;
        let end = super::blocking_event(&ctx)?;
        Ok(TrainStep {
            device,
            stream,
            ns: (ms.max(0.0) * 1e6) as u64,
            blocks,
            sink,
            end,
        })
    }

    /// The training loop's stream (the consumer's stream in the overlap measurement).
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    fn launch(&mut self, batch: &CudaView<'_, u32>) -> Result<(), String> {
        let (ns, blocks) = (self.ns, self.blocks);
        launch_step(
            &self.device,
            &self.stream,
            blocks,
            ns,
            batch,
            &mut self.sink,
        )
    }

    /// One step on `batch` (already made ready for this stream): queue it and wait for it, as
    /// a loop that reads its loss every step.
    pub fn run(&mut self, batch: &CudaView<'_, u32>) -> Result<(), String> {
        let _keep = CurrentContextGuard::new();
        self.launch(batch)?;
        self.end.record(&self.stream).map_err(driver("event"))?;
        self.end.synchronize().map_err(driver("waiting for a step"))
    }

    /// Queue a step on `batch` without waiting, XOR-ing its words into `sink[0]` (for tests that
    /// keep many steps queued, each with its own checksum).
    pub fn queue_into(
        &self,
        batch: &CudaView<'_, u32>,
        sink: &mut CudaSlice<u32>,
    ) -> Result<(), String> {
        let _keep = CurrentContextGuard::new();
        launch_step(
            &self.device,
            &self.stream,
            self.blocks,
            self.ns,
            batch,
            sink,
        )
    }

    /// Wait for every queued step.
    pub fn finish(&mut self) -> Result<(), String> {
        let _keep = CurrentContextGuard::new();
        super::host_wait(&self.stream)
    }

    /// XOR of every word the steps read since the last reset (for tests).
    pub fn checksum(&mut self) -> Result<u32, String> {
        self.finish()?;
        let _keep = CurrentContextGuard::new();
        let v = self
            .stream
            .clone_dtoh(&self.sink)
            .map_err(driver("readback"))?;
        self.stream
            .memset_zeros(&mut self.sink)
            .map_err(driver("clear"))?;
        Ok(v[0])
    }
}

/// Launch train_step on `stream`: one block per SM, spinning `ns` after reading `batch`.
fn launch_step(
    device: &CudaDevice,
    stream: &Arc<CudaStream>,
    blocks: u32,
    ns: u64,
    batch: &CudaView<'_, u32>,
    sink: &mut CudaSlice<u32>,
) -> Result<(), String> {
    let f = device.function("train_step")?;
    let words = batch.len() as u32;
    let cfg = LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut launch = stream.launch_builder(f);
    launch.arg(batch).arg(&words).arg(&ns).arg(sink);
    // SAFETY: matches train_step(const uint32_t*, uint32_t, unsigned long long, uint32_t*).
    unsafe { launch.launch(cfg) }
        .map(|_| ())
        .map_err(driver("train_step"))
}

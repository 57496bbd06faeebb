//! A training-step stand-in on the training loop's own stream (kernels/train_step.cu): it reads
//! the batch and keeps the GPU busy for a set time, so `sluice bench --backend cuda
//! --train-step-ms T` can measure how much of the step sluice's copies and kernels hide.

use super::device::driver;
use super::CudaDevice;
use cudarc::driver::{CudaEvent, CudaSlice, CudaStream, CudaView, LaunchConfig, PushKernelArg};
use std::sync::Arc;

pub struct TrainStep {
    device: Arc<CudaDevice>,
    stream: Arc<CudaStream>,
    cycles: u64,
    blocks: u32,
    sink: CudaSlice<u32>,
    /// The end of the step before the last: the host waits for it, keeping one step queued
    /// ahead like a training loop that reads its loss once per step.
    previous_end: Option<CudaEvent>,
    last_end: Option<CudaEvent>,
}

impl TrainStep {
    /// A step of about `ms` milliseconds (calibrated against CUDA event timings).
    pub fn new(device: Arc<CudaDevice>, ms: f64) -> Result<Self, String> {
        let ctx = device.context().clone();
        let stream = ctx
            .new_stream()
            .map_err(driver("creating the training stream"))?;
        use cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT as SMS;
        let blocks = ctx.attribute(SMS).map_err(driver("SM count"))?.max(1) as u32;
        let sink = stream.alloc_zeros::<u32>(1).map_err(driver("allocation"))?;
        let mut step = TrainStep {
            device,
            stream,
            cycles: 0,
            blocks,
            sink,
            previous_end: None,
            last_end: None,
        };
        step.cycles = step.calibrate(ms)?;
        Ok(step)
    }

    /// The training loop's stream (the consumer's stream in the overlap measurement).
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Clock ticks for `ms`: time a known spin, scale, and check once more.
    fn calibrate(&mut self, ms: f64) -> Result<u64, String> {
        let empty = self
            .stream
            .alloc_zeros::<u32>(1)
            .map_err(driver("allocation"))?;
        let mut cycles = 1_000_000u64;
        for _ in 0..3 {
            let took = self.time_one(&empty.slice(..0), cycles)?;
            let per_ms = cycles as f64 / took.max(1e-3);
            cycles = (per_ms * ms).max(1.0) as u64;
        }
        Ok(cycles)
    }

    fn time_one(&mut self, batch: &CudaView<'_, u32>, cycles: u64) -> Result<f64, String> {
        let ctx = self.device.context();
        let timing = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let start = ctx.new_event(timing).map_err(driver("event"))?;
        let end = ctx.new_event(timing).map_err(driver("event"))?;
        start.record(&self.stream).map_err(driver("event"))?;
        self.launch(batch, cycles)?;
        end.record(&self.stream).map_err(driver("event"))?;
        Ok(f64::from(start.elapsed_ms(&end).map_err(driver("timing"))?))
    }

    fn launch(&mut self, batch: &CudaView<'_, u32>, cycles: u64) -> Result<(), String> {
        let f = self.device.function("train_step")?;
        let words = batch.len() as u32;
        let cfg = LaunchConfig {
            grid_dim: (self.blocks, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = self.stream.launch_builder(f);
        launch
            .arg(batch)
            .arg(&words)
            .arg(&cycles)
            .arg(&mut self.sink);
        // SAFETY: matches train_step(const uint32_t*, uint32_t, unsigned long long, uint32_t*).
        unsafe { launch.launch(cfg) }
            .map(|_| ())
            .map_err(driver("train_step"))
    }

    /// One step on `batch` (already made ready for this stream): queue it, then wait on the
    /// host for the step before it.
    pub fn run(&mut self, batch: &CudaView<'_, u32>) -> Result<(), String> {
        self.launch(batch, self.cycles)?;
        let end = self.stream.record_event(None).map_err(driver("event"))?;
        if let Some(previous) = self.previous_end.take() {
            previous
                .synchronize()
                .map_err(driver("waiting for a step"))?;
        }
        self.previous_end = self.last_end.replace(end);
        Ok(())
    }

    /// Wait for every queued step.
    pub fn finish(&mut self) -> Result<(), String> {
        self.previous_end = None;
        self.last_end = None;
        self.stream.synchronize().map_err(driver("synchronize"))
    }

    /// XOR of every word the steps read since the last reset (for tests).
    pub fn checksum(&mut self) -> Result<u32, String> {
        self.finish()?;
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

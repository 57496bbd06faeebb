//! `sluice bench --backend cuda`: the training loop as a trainer would write it, on device
//! batches. With `--train-step-ms T` each batch feeds a T-ms step kernel on the loop's own
//! stream; afterwards the same steps run on a pre-made device buffer, and the ratio of the two
//! step times is the data stall sluice leaves. The transfer engine's events give the
//! host-to-device bandwidth it reached (beside a plain pinned copy's) and the kernel time.

use crate::backend::cuda::{DeviceBatch, TrainStep};
use crate::error::{Error, Result};
use crate::pipeline::Pipeline;
use serde::Serialize;
use std::time::Instant;

/// What the device-batch run measured.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceFeedReport {
    pub device: String,
    pub slots: usize,
    /// The step stand-in's length (0: no step; the loop only waits for each batch).
    pub train_step_ms: f64,
    /// Median step interval fed by sluice over the steady phase (within epochs), and on
    /// pre-made device data.
    pub fed_step_ms: f64,
    pub premade_step_ms: f64,
    /// fed / pre-made: 1.0 means sluice hides all of its work behind the step.
    pub step_ratio: f64,
    pub h2d_gbps: f64,
    pub raw_pinned_gbps: f64,
    pub h2d_ms_per_batch: f64,
    pub kernel_ms_per_batch: f64,
    pub mib_uploaded_per_batch: f64,
    pub pinned_allocations: u64,
    pub device_allocations: u64,
    /// Batches dropped without `release_after` after their memory was handed out (0).
    pub unreleased_drops: u64,
}

impl DeviceFeedReport {
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "device       {} ({} slots)   per batch: H2D {:.2} ms ({:.1} MiB), kernels {:.2} ms\n",
            self.device,
            self.slots,
            self.h2d_ms_per_batch,
            self.mib_uploaded_per_batch,
            self.kernel_ms_per_batch
        );
        s += &format!(
            "H2D          {:.1} GB/s achieved vs {:.1} GB/s plain pinned copy ({:.0}%)\n",
            self.h2d_gbps,
            self.raw_pinned_gbps,
            100.0 * self.h2d_gbps / self.raw_pinned_gbps.max(f64::MIN_POSITIVE)
        );
        if self.train_step_ms > 0.0 {
            s += &format!(
                "train step   {:.2} ms fed by sluice vs {:.2} ms on pre-made device data: ratio {:.3}\n",
                self.fed_step_ms, self.premade_step_ms, self.step_ratio
            );
        }
        s += &format!(
            "allocations  pinned {}, device {} (constant after warm-up)\n",
            self.pinned_allocations, self.device_allocations
        );
        s
    }
}

/// The training loop's side: a step kernel on its own stream when `--train-step-ms` is set.
pub struct DeviceConsumer {
    step: Option<TrainStep>,
    batch_bytes: usize,
}

impl DeviceConsumer {
    pub fn new(pipeline: &Pipeline, train_step_ms: f64) -> Result<Self> {
        let device = pipeline
            .cuda_device()
            .ok_or_else(|| Error::Worker("device batches need a CUDA device".into()))?;
        let step = if train_step_ms > 0.0 {
            Some(TrainStep::new(device, train_step_ms).map_err(Error::Worker)?)
        } else {
            None
        };
        Ok(DeviceConsumer {
            step,
            batch_bytes: 0,
        })
    }

    /// One batch, as a trainer uses it: wait on the device, step, release, drop.
    pub fn consume(&mut self, batch: &DeviceBatch) -> Result<()> {
        self.batch_bytes = self.batch_bytes.max(batch.len_bytes());
        match &mut self.step {
            Some(step) => {
                batch.wait_on(step.stream())?;
                step.run(&batch.words()).map_err(Error::Worker)?;
                batch.release_after(step.stream())
            }
            None => batch.synchronize(),
        }
    }

    /// After the run: wait for the last steps, time `steps` steps on pre-made device data, and
    /// put the engine's numbers together. `fed_step_ms` is the steady-phase median interval.
    pub fn finish(
        mut self,
        pipeline: &Pipeline,
        train_step_ms: f64,
        fed_step_ms: f64,
        steps: usize,
    ) -> Result<DeviceFeedReport> {
        let worker = |e: String| Error::Worker(e);
        let premade_step_ms = match &mut self.step {
            Some(step) => {
                step.finish().map_err(worker)?;
                let words = self.batch_bytes.div_ceil(4).max(1);
                let data = step
                    .stream()
                    .alloc_zeros::<u32>(words)
                    .map_err(|e| worker(format!("CUDA: allocation: {e:?}")))?;
                // Timed like the fed loop: the median interval between one step's return and
                // the next's, here with no batch to fetch.
                let n = steps.clamp(3, 200);
                let mut last = Instant::now();
                let mut intervals = Vec::with_capacity(n);
                for _ in 0..n {
                    step.run(&data.slice(..)).map_err(worker)?;
                    let now = Instant::now();
                    intervals.push((now - last).as_secs_f64() * 1e3);
                    last = now;
                }
                crate::bench::median(&mut intervals)
            }
            None => 0.0,
        };
        let stats = pipeline.transfer_stats().expect("device batches");
        let per_batch = |total: f64| total / stats.timed_batches.max(1) as f64;
        let mib_per_batch = stats.bytes_uploaded as f64 / stats.batches.max(1) as f64 / 1048576.0;
        let raw = pipeline
            .raw_pinned_gbps((mib_per_batch * 1048576.0) as usize)
            .expect("device batches")
            .map_err(worker)?;
        Ok(DeviceFeedReport {
            device: pipeline.gpu_device().unwrap_or_default(),
            slots: stats.slots,
            train_step_ms,
            fed_step_ms,
            premade_step_ms,
            step_ratio: if premade_step_ms > 0.0 {
                fed_step_ms / premade_step_ms
            } else {
                0.0
            },
            h2d_gbps: stats.h2d_gbps(),
            raw_pinned_gbps: raw,
            h2d_ms_per_batch: per_batch(stats.h2d_ms),
            kernel_ms_per_batch: per_batch(stats.kernel_ms),
            mib_uploaded_per_batch: mib_per_batch,
            pinned_allocations: stats.pinned_allocations,
            device_allocations: stats.device_allocations,
            unreleased_drops: stats.unreleased_drops,
        })
    }
}

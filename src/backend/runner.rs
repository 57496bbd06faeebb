//! What the executor needs from a GPU backend: run a batch's image stages and tensor write,
//! writing the finished tensors into host memory. Both wgpu and CUDA implement it.

use super::wgpu::{EncodedBatch, ImageStage, TensorWrite};
use crate::tensor::Image;

pub trait GpuRunner: Send + Sync {
    /// "backend: device" for reports.
    fn describe(&self) -> String;
    /// Run `stages` then `write` on `images`; tensors in order, contiguous, into `out`.
    fn run_to_tensor(
        &self,
        images: &[Image],
        stages: &[ImageStage],
        write: &TensorWrite,
        out: &mut [u8],
    ) -> Result<(), String>;
    /// Run every pass of an encoded batch (e.g. the speech features); each sample's output.
    fn run_encoded(&self, batch: &EncodedBatch) -> Result<Vec<Vec<u8>>, String>;
    /// The largest buffer one encoded batch may use (wgpu's storage binding limit).
    fn max_buffer_bytes(&self) -> u64;
    /// Checking mode: poison outputs (0xFF bytes) before kernels run.
    fn set_poison(&self, on: bool);
    /// Checking mode with outputs filled with `byte`.
    fn set_poison_byte(&self, byte: u8);
}

impl GpuRunner for super::wgpu::WgpuContext {
    fn describe(&self) -> String {
        format!("wgpu: {}", super::wgpu::WgpuContext::describe(self))
    }
    fn run_to_tensor(
        &self,
        images: &[Image],
        stages: &[ImageStage],
        write: &TensorWrite,
        out: &mut [u8],
    ) -> Result<(), String> {
        super::wgpu::WgpuContext::run_to_tensor(self, images, stages, write, out)
    }
    fn run_encoded(&self, batch: &EncodedBatch) -> Result<Vec<Vec<u8>>, String> {
        super::wgpu::WgpuContext::run_encoded(self, batch)
    }
    fn max_buffer_bytes(&self) -> u64 {
        self.binding_limit()
    }
    fn set_poison(&self, on: bool) {
        super::wgpu::WgpuContext::set_poison(self, on)
    }
    fn set_poison_byte(&self, byte: u8) {
        super::wgpu::WgpuContext::set_poison_byte(self, byte)
    }
}

impl GpuRunner for super::cuda::CudaDevice {
    fn describe(&self) -> String {
        format!("cuda: {}", super::cuda::CudaDevice::describe(self))
    }
    fn run_to_tensor(
        &self,
        images: &[Image],
        stages: &[ImageStage],
        write: &TensorWrite,
        out: &mut [u8],
    ) -> Result<(), String> {
        let batch = super::wgpu::encode_batch(images, stages, Some(write))?;
        super::wgpu::check_output_len(out.len(), batch.output_lengths.iter().sum())?;
        let mut at = 0;
        for sample in self.run_encoded(&batch)? {
            out[at..at + sample.len()].copy_from_slice(&sample);
            at += sample.len();
        }
        Ok(())
    }
    fn run_encoded(&self, batch: &EncodedBatch) -> Result<Vec<Vec<u8>>, String> {
        super::cuda::CudaDevice::run_encoded(self, batch)
    }
    fn max_buffer_bytes(&self) -> u64 {
        u64::MAX
    }
    fn set_poison(&self, on: bool) {
        super::cuda::CudaDevice::set_poison(self, on)
    }
    fn set_poison_byte(&self, byte: u8) {
        super::cuda::CudaDevice::set_poison_byte(self, byte)
    }
}

//! Compute backends other than the CPU threads. Each one probes for its hardware and says why it
//! cannot run, so callers fall back to the CPU path with a one-line reason instead of a panic.

pub mod cuda;
mod runner;
pub mod size_class;
pub mod staging;
pub mod wgpu;

pub use runner::GpuRunner;

//! Compute backends other than the CPU threads. Each one probes for its hardware and says why it
//! cannot run, so callers fall back to the CPU path with a one-line reason instead of a panic.

pub mod cuda;
mod runner;
pub mod size_class;
pub mod staging;
pub mod wgpu;

pub use runner::GpuRunner;

/// Held while a GPU backend opens (driver, context, Vulkan instance, kernel loading). On an
/// NVIDIA H200 a test binary that opened CUDA and wgpu devices from several threads at once
/// crashed in 2 of 3 runs (never one at a time, never under a debugger): driver start-up is
/// not something to race. Opening is rare and slow anyway; running is not serialized.
pub(crate) fn opening_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

//! Opening a device's primary context without disturbing the caller.
//!
//! cudarc binds its context to the calling thread before each call and leaves it bound. On a
//! training loop's thread that would change the framework's current device (PyTorch and JAX
//! use the primary contexts too), so every sluice entry point that may run on a caller's thread
//! holds a [`CurrentContextGuard`], which puts the thread's previous context back.

use cudarc::driver::{result, sys, CudaContext};
use std::sync::Arc;

/// Restores the calling thread's current CUDA context when dropped.
pub struct CurrentContextGuard(Option<Option<sys::CUcontext>>);

impl CurrentContextGuard {
    /// Remember the current context (nothing, if no driver is loaded).
    pub fn new() -> Self {
        // SAFETY: only checks whether the shared library can be opened.
        if !unsafe { sys::is_culib_present() } {
            return CurrentContextGuard(None);
        }
        CurrentContextGuard(result::ctx::get_current().ok())
    }
}

impl Default for CurrentContextGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for CurrentContextGuard {
    fn drop(&mut self) {
        let Some(previous) = self.0 else { return };
        if result::ctx::get_current().ok() != Some(previous) {
            // SAFETY: `previous` was current on this thread (or null: no context) and primary
            // contexts stay alive while retained, which the caller's framework does.
            let _ = unsafe { result::ctx::set_current(previous.unwrap_or(std::ptr::null_mut())) };
        }
    }
}

/// Device `ordinal`'s primary context, or why not: no driver, no device, no such ordinal.
pub fn primary(ordinal: usize) -> Result<Arc<CudaContext>, String> {
    // SAFETY: only checks whether the shared library can be opened.
    if !unsafe { sys::is_culib_present() } {
        return Err("no CUDA driver (libcuda could not be loaded)".into());
    }
    let outcome = std::panic::catch_unwind(|| {
        CudaContext::new(ordinal).map_err(|e| match e.0 {
            sys::cudaError_enum::CUDA_ERROR_NO_DEVICE => "no CUDA device".to_string(),
            sys::cudaError_enum::CUDA_ERROR_INVALID_DEVICE => {
                let count = CudaContext::device_count().unwrap_or(0);
                format!("no CUDA device {ordinal} (this machine has {count})")
            }
            other => format!("CUDA device {ordinal} unavailable: {other:?}"),
        })
    });
    outcome.unwrap_or_else(|_| Err("the CUDA driver failed while probing".into()))
}

/// The device to use when the caller names none: `LOCAL_RANK` (one process per GPU, as
/// torchrun and Ray set it) or 0. A `LOCAL_RANK` that is not a number is an error, not 0.
pub fn default_ordinal() -> Result<usize, String> {
    ordinal_from(std::env::var("LOCAL_RANK").ok().as_deref())
}

pub(crate) fn ordinal_from(local_rank: Option<&str>) -> Result<usize, String> {
    match local_rank.map(str::trim) {
        None | Some("") => Ok(0),
        Some(v) => v
            .parse()
            .map_err(|_| format!("LOCAL_RANK={v:?} is not a device number")),
    }
}

#[cfg(test)]
mod tests {
    use super::ordinal_from;

    #[test]
    fn the_device_comes_from_local_rank_when_the_caller_names_none() {
        assert_eq!(ordinal_from(None), Ok(0));
        assert_eq!(ordinal_from(Some("")), Ok(0));
        assert_eq!(ordinal_from(Some("3")), Ok(3));
        assert_eq!(ordinal_from(Some(" 7\n")), Ok(7));
        let err = ordinal_from(Some("gpu1")).unwrap_err();
        assert!(err.contains("LOCAL_RANK") && err.contains("gpu1"), "{err}");
    }
}

//! `sluice bench --verify`: run the same pipeline on the CPU alongside and compare every batch,
//! so a GPU placement's output is checked against the CPU reference on the same samples.

use crate::batch::Batch;
use crate::error::{Error, Result};
use serde::Serialize;

/// What the comparison found. Values are compared as f32 in the output's units; a "step" is
/// one u8 input step after normalization (the largest per-channel scale), so 1.0 step is the
/// smallest difference a u8 rounding can make.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    pub batches: u64,
    pub values: u64,
    pub max_abs_error: f64,
    pub max_error_steps: f64,
    /// Values more than one step off.
    pub values_over_one_step: u64,
    /// Whether it is within the stated tolerance (see [`Verification::passes`]).
    pub pass: bool,
}

impl Verification {
    /// The tolerance: every value within one u8 step, or at most 0.5% of values further off
    /// (ColorJitter's float truncations can land a step the other way, which hue can widen).
    pub fn passes(&self) -> bool {
        self.max_error_steps <= 1.0 + 1e-3 || self.values_over_one_step * 200 <= self.values
    }

    /// Compare one batch against the CPU's; errors when they do not describe the same samples.
    pub fn add(&mut self, got: &Batch, cpu: &Batch, step: f64) -> Result<()> {
        let mismatch = |what: &str| {
            Err(Error::Worker(format!(
                "verify: batch {} of epoch {}: {what} differ from the CPU run",
                got.index, got.epoch
            )))
        };
        if got.sample_indices != cpu.sample_indices || got.labels != cpu.labels {
            return mismatch("samples or labels");
        }
        // A device batch is copied back to compare.
        let on_host;
        let (dtype, a) = match (got.dense(), got.device(), cpu.dense()) {
            (Some(a), _, Some(b)) if a.shape == b.shape && a.dtype == b.dtype => {
                (a.dtype, got.bytes())
            }
            (_, Some(d), Some(b)) if d.shape() == b.shape && d.dtype() == b.dtype => {
                on_host = d.to_host()?;
                (d.dtype(), &on_host[..])
            }
            (None, None, None) if got.bytes().len() == cpu.bytes().len() => {
                (crate::tensor::DType::U8, got.bytes())
            }
            _ => return mismatch("shapes or types"),
        };
        let (other, b) = (dtype, cpu.bytes());
        for i in 0..a.len() / dtype.size() {
            let d = f64::from((dtype.load(a, i) - other.load(b, i)).abs());
            let d = if d.is_nan() { f64::INFINITY } else { d };
            self.max_abs_error = self.max_abs_error.max(d);
            self.max_error_steps = self.max_error_steps.max(d / step);
            self.values_over_one_step += u64::from(d / step > 1.0 + 1e-3);
            self.values += 1;
        }
        self.batches += 1;
        self.pass = self.passes();
        Ok(())
    }

    pub fn to_text(&self) -> String {
        format!(
            "verify       {} vs the CPU on {} batches ({} values): max |error| {:.3e} = {:.2} u8 steps, {} values more than one step off\n",
            if self.pass { "PASS" } else { "FAIL" },
            self.batches,
            self.values,
            self.max_abs_error,
            self.max_error_steps,
            self.values_over_one_step
        )
    }
}

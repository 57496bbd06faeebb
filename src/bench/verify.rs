//! `sluice bench --verify`: run the same pipeline on the CPU alongside and compare every batch,
//! so a GPU placement's output is checked against the CPU reference on the same samples.

use crate::batch::Batch;
use crate::error::{Error, Result};
use serde::Serialize;

/// What the comparison found. Values are compared as f32 in the output's units; a "step" is
/// one u8 input step after normalization (the largest per-channel scale), so 1.0 step is the
/// smallest difference a u8 rounding can make. For speech features (`features`) a step is
/// [`FEATURE_STEP`] of the CPU batch's largest magnitude (at least 1): the GPU's f32 FFT and
/// sums round differently from the CPU's, and the log widens that in quiet bands.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    /// Speech features: steps relative to the batch's largest value, lengths compared too.
    pub features: bool,
    pub batches: u64,
    pub values: u64,
    pub max_abs_error: f64,
    pub max_error_steps: f64,
    /// Values more than one step off.
    pub values_over_one_step: u64,
    /// Whether it is within the stated tolerance (see [`Verification::passes`]).
    pub pass: bool,
}

/// The largest error any value may have, in u8 steps: a rounding difference that hue widens
/// stays within it, while a wrong value, a swapped channel or a NaN (an infinite error) fails
/// however few values it touches.
pub const MAX_ERROR_STEPS: f64 = 4.0;

/// A speech-feature step, relative to the CPU batch's largest |value| (at least 1).
pub const FEATURE_STEP: f64 = 1e-3;

impl Verification {
    /// The tolerance: no value more than [`MAX_ERROR_STEPS`] off, and every value within one
    /// u8 step or at most 0.5% of values further off (ColorJitter's float truncations can land a
    /// step the other way, which hue can widen).
    pub fn passes(&self) -> bool {
        self.max_error_steps <= MAX_ERROR_STEPS
            && (self.max_error_steps <= 1.0 + 1e-3
                || self.values_over_one_step * 200 <= self.values)
    }

    /// Compare one batch (in host memory: a device batch copied back) against the CPU's; errors
    /// when they do not describe the same samples.
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
        if got.lengths != cpu.lengths {
            return mismatch("lengths");
        }
        // Token labels are integers: equal, or the batches differ.
        let labels = |b: &Batch| b.token_labels.as_ref().map(|t| t.bytes().to_vec());
        if labels(got) != labels(cpu) {
            return mismatch("token labels");
        }
        let (dtype, a) = match (got.dense(), cpu.dense()) {
            (Some(a), Some(b)) if a.shape == b.shape && a.dtype == b.dtype => {
                (a.dtype, got.bytes())
            }
            (None, None) if got.bytes().len() == cpu.bytes().len() => {
                (crate::tensor::DType::U8, got.bytes())
            }
            _ => return mismatch("shapes or types"),
        };
        let (other, b) = (dtype, cpu.bytes());
        let step = if self.features {
            let largest = (0..b.len() / other.size())
                .map(|i| f64::from(other.load(b, i).abs()))
                .fold(1f64, f64::max);
            FEATURE_STEP * largest
        } else {
            step
        };
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
            "verify       {} vs the CPU on {} batches ({} values): max |error| {:.3e} = {:.2} {}, {} values more than one step off\n",
            if self.pass { "PASS" } else { "FAIL" },
            self.batches,
            self.values,
            self.max_abs_error,
            self.max_error_steps,
            if self.features {
                "steps (1e-3 of the batch's largest |value|)"
            } else {
                "u8 steps"
            },
            self.values_over_one_step
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BufferPool, DenseBatch, Images};
    use crate::tensor::{DType, Layout};

    /// A one-sample f32 batch holding `values`.
    fn batch(values: &[f32]) -> Batch {
        let pool = BufferPool::new();
        let mut data = pool.take(values.len() * 4);
        DType::F32.store(values, data.as_mut_slice());
        Batch {
            epoch: 0,
            index: 0,
            images: Images::Dense(DenseBatch {
                dtype: DType::F32,
                layout: Layout::Chw,
                shape: vec![1, values.len()],
                data,
            }),
            labels: vec![7],
            sample_indices: vec![3],
            skipped: Vec::new(),
            lengths: Vec::new(),
            texts: Vec::new(),
            token_labels: None,
            token_offsets: None,
            cu_seqlens: Vec::new(),
        }
    }

    /// Verify `got` against `want` with a step of 0.01.
    fn verify(got: &[f32], want: &[f32]) -> Verification {
        let mut v = Verification::default();
        v.add(&batch(got), &batch(want), 0.01).unwrap();
        v
    }

    #[test]
    fn equal_values_pass_and_rounding_differences_within_the_share_pass() {
        let want: Vec<f32> = (0..1000).map(|i| i as f32 * 0.001).collect();
        assert!(verify(&want, &want).pass);
        let mut got = want.clone();
        for v in &mut got[..5] {
            *v += 0.015; // 1.5 steps on 0.5% of the values
        }
        let v = verify(&got, &want);
        assert!(v.pass, "{v:?}");
        got[5] += 0.015; // one more: 0.6% of the values
        assert!(!verify(&got, &want).pass);
    }

    #[test]
    fn one_wrong_value_or_nan_fails_even_among_many() {
        let want: Vec<f32> = (0..1000).map(|i| i as f32 * 0.001).collect();
        let mut got = want.clone();
        got[500] += 0.5; // 50 steps off, on 0.1% of the values
        let v = verify(&got, &want);
        assert!(!v.pass, "{v:?}");
        let mut got = want.clone();
        got[17] = f32::NAN;
        let v = verify(&got, &want);
        assert!(!v.pass && v.max_error_steps.is_infinite(), "{v:?}");
    }

    #[test]
    fn different_samples_or_labels_are_an_error() {
        let mut other = batch(&[1.0]);
        other.labels = vec![8];
        assert!(Verification::default()
            .add(&other, &batch(&[1.0]), 0.01)
            .is_err());
    }
}

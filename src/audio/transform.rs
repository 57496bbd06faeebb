//! The element-wise and per-row operators of the speech chain.

use super::Features;

/// `PreEmphasis`: `y[0] = x[0]`, `y[t] = x[t] − a·x[t−1]`.
pub fn pre_emphasis(x: &mut [f32], a: f32) {
    for t in (1..x.len()).rev() {
        x[t] -= a * x[t - 1];
    }
}

/// `Log`: `ln(x + eps)` (vectorized, within 2 ulp of the true log: [`super::ln`]).
pub fn log_compress(f: &mut Features, eps: f32) {
    super::ln::ln_plus(&mut f.data, eps);
}

/// `AmplitudeToDB`: `multiplier · log10(max(x, amin)) − multiplier · log10(max(amin, reference))`
/// (multiplier 10 for power, 20 for magnitude), then, with `top_db`, floored at the maximum
/// minus `top_db` (over the whole matrix), as torchaudio's `amplitude_to_DB` for one spectrogram.
pub fn amplitude_to_db(
    f: &mut Features,
    multiplier: f32,
    amin: f32,
    reference: f32,
    top_db: Option<f32>,
) {
    let offset = multiplier * amin.max(reference).log10();
    f.data
        .iter_mut()
        .for_each(|v| *v = multiplier * v.max(amin).log10() - offset);
    if let Some(top) = top_db {
        let floor = f.data.iter().copied().fold(f32::NEG_INFINITY, f32::max) - top;
        f.data.iter_mut().for_each(|v| *v = v.max(floor));
    }
}

/// `FeatureNormalize`: per bin over the first `valid` frames, `(x − mean) / (std + 1e-5)` with the
/// unbiased std (0 for a single frame), applied to the valid frames; frames past `valid`
/// (padding) are left as they are. Sums in f64.
pub fn feature_normalize(f: &mut Features, valid: usize) {
    let valid = valid.min(f.frames);
    if valid == 0 {
        return;
    }
    for bin in 0..f.bins {
        let row = &mut f.row_mut(bin)[..valid];
        let n = row.len() as f64;
        let mean = sum_f64(row, |v| v) / n;
        let var = if row.len() > 1 {
            sum_f64(row, |v| (v - mean).powi(2)) / (n - 1.0)
        } else {
            0.0
        };
        let scale = 1.0 / (var.sqrt() + 1e-5);
        row.iter_mut()
            .for_each(|v| *v = ((f64::from(*v) - mean) * scale) as f32);
    }
}

/// `Σ f(v)` in f64 over four interleaved partial sums, added `(s0 + s1) + (s2 + s3)`: one
/// running sum would wait on every add (the order is fixed, so the result is too).
#[inline]
fn sum_f64(row: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    let mut s = [0f64; 4];
    let chunks = row.chunks_exact(4);
    let tail: f64 = chunks.remainder().iter().map(|&v| f(f64::from(v))).sum();
    for c in chunks {
        for k in 0..4 {
            s[k] += f(f64::from(c[k]));
        }
    }
    (s[0] + s[1]) + (s[2] + s[3]) + tail
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskAxis {
    /// Rows (bins): FrequencyMasking.
    Frequency,
    /// Columns (frames): TimeMasking.
    Time,
}

/// The range [`mask_along_axis`] masks along an axis of `size` (the GPU kernels take it as a
/// per-sample parameter).
pub fn mask_range(size: usize, max_width: f64, u1: f64, u2: f64) -> (usize, usize) {
    let value = u1 * max_width;
    let start = (u2 * (size as f64 - value)).max(0.0).floor() as usize;
    (start, (start + value.floor() as usize).min(size))
}

/// One SpecAugment mask from two uniform draws `u1`, `u2` in [0, 1), torchaudio's
/// `mask_along_axis`: `value = u1 · max_width`, `start = floor(u2 · (size − value))`,
/// `end = start + floor(value)`; `[start, end)` along `axis` is set to `fill`. Returns the
/// masked range. `max_width` is already limited by the caller (e.g. `p · size`).
pub fn mask_along_axis(
    f: &mut Features,
    axis: MaskAxis,
    max_width: f64,
    u1: f64,
    u2: f64,
    fill: f32,
) -> (usize, usize) {
    let size = match axis {
        MaskAxis::Frequency => f.bins,
        MaskAxis::Time => f.frames,
    };
    let (start, end) = mask_range(size, max_width, u1, u2);
    match axis {
        MaskAxis::Frequency => {
            for bin in start..end {
                f.row_mut(bin).fill(fill);
            }
        }
        MaskAxis::Time => {
            let frames = f.frames;
            for row in f.data.chunks_exact_mut(frames) {
                row[start..end].fill(fill);
            }
        }
    }
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(bins: usize, frames: usize) -> Features {
        Features {
            bins,
            frames,
            data: (0..bins * frames)
                .map(|i| ((i * 37) % 11) as f32 + 0.5)
                .collect(),
            rate: 16_000,
        }
    }

    #[test]
    fn pre_emphasis_keeps_the_first_sample() {
        let mut x = vec![1.0, 2.0, 4.0, 8.0];
        pre_emphasis(&mut x, 0.97);
        assert_eq!(x, vec![1.0, 2.0 - 0.97, 4.0 - 1.94, 8.0 - 3.88]);
    }

    #[test]
    fn normalized_rows_have_zero_mean_and_unit_unbiased_std() {
        let mut f = features(3, 50);
        let padding = f.row(1)[45..].to_vec();
        feature_normalize(&mut f, 45);
        for bin in 0..3 {
            let row: Vec<f64> = f.row(bin)[..45].iter().map(|&v| f64::from(v)).collect();
            let mean = row.iter().sum::<f64>() / 45.0;
            let std = (row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 44.0).sqrt();
            assert!(
                mean.abs() < 1e-6 && (std - 1.0).abs() < 1e-4,
                "bin {bin}: {mean} {std}"
            );
        }
        assert_eq!(&f.row(1)[45..], &padding[..], "padding untouched");
        // One frame: std 0, the value becomes 0.
        let mut one = features(2, 1);
        feature_normalize(&mut one, 1);
        assert_eq!(one.data, vec![0.0, 0.0]);
    }

    #[test]
    fn masks_follow_torchaudios_formula() {
        let mut f = features(80, 100);
        // value = 0.5 · 27 = 13.5, start = floor(0.25 · (80 − 13.5)) = 16, end = 16 + 13.
        assert_eq!(
            mask_along_axis(&mut f, MaskAxis::Frequency, 27.0, 0.5, 0.25, 0.0),
            (16, 29)
        );
        for bin in 0..80 {
            let masked = f.row(bin).iter().all(|&v| v == 0.0);
            assert_eq!(masked, (16..29).contains(&bin), "bin {bin}");
        }
        let mut f = features(4, 100);
        // value = 4.95, start = floor(0.999 · 95.05) = 94, end = 94 + 4.
        assert_eq!(
            mask_along_axis(&mut f, MaskAxis::Time, 5.0, 0.99, 0.999, -1.0),
            (94, 98)
        );
        for bin in 0..4 {
            for t in 0..100 {
                assert_eq!(f.at(bin, t) == -1.0, (94..98).contains(&t), "({bin}, {t})");
            }
        }
    }

    #[test]
    fn db_and_log_follow_their_formulas() {
        let mut f = Features {
            bins: 1,
            frames: 3,
            data: vec![1.0, 100.0, 1e-12],
            rate: 0,
        };
        amplitude_to_db(&mut f, 10.0, 1e-10, 1.0, Some(80.0));
        assert_eq!(f.data, vec![0.0, 20.0, -60.0]);
        let mut f = Features {
            bins: 1,
            frames: 2,
            data: vec![0.0, 1.0],
            rate: 0,
        };
        log_compress(&mut f, 2f32.powi(-24));
        assert_eq!(
            f.data,
            vec![2f32.powi(-24).ln(), (1.0 + 2f32.powi(-24)).ln()]
        );
    }
}

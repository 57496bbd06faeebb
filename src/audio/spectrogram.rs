//! `Spectrogram`: the short-time Fourier transform's magnitude (power 1) or power (power 2), as
//! torchaudio's `Spectrogram(n_fft, win_length, hop_length, window_fn=hann_window, center,
//! pad_mode, power, normalized=False)`.
//!
//! The Hann window of `win_length` (periodic: `0.5 − 0.5·cos(2πn/N)`; symmetric: over `N − 1`)
//! sits centred in `n_fft` (zeros around it). With `center` the signal is padded by `n_fft/2` on
//! both sides (reflect without repeating the edge, or zeros); frame t covers samples
//! `[t·hop, t·hop + n_fft)` of the padded signal, there are `1 + (len − n_fft) / hop` frames, and
//! bin k of frame t is `|Σ_n x[t·hop + n] · w[n] · e^{−2πi·kn/n_fft}|^power`, k in 0..=n_fft/2.

use super::rfft::RealFft;
use super::{Features, Spectrum};
use rustfft::num_complex::Complex32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    HannPeriodic,
    HannSymmetric,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    Reflect,
    Constant,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpectrogramSpec {
    pub n_fft: usize,
    pub win_length: usize,
    pub hop: usize,
    pub window: WindowKind,
    /// Pad by n_fft/2 on both sides with `padding` (false: frames start at sample 0).
    pub center: bool,
    pub padding: Padding,
    /// Some(1): magnitude, Some(2): power; None: the complex STFT ([`stft`]).
    pub power: Option<f32>,
}

impl SpectrogramSpec {
    /// Frames for a signal of `len` samples (0 when it is too short for one).
    pub fn frames(&self, len: usize) -> usize {
        let padded = if self.center {
            len + 2 * (self.n_fft / 2)
        } else {
            len
        };
        if padded < self.n_fft {
            0
        } else {
            1 + (padded - self.n_fft) / self.hop
        }
    }

    /// The window, `n_fft` long with `win_length` Hann samples centred in it.
    pub fn window(&self) -> Vec<f32> {
        let n = self.win_length;
        let denom = match self.window {
            WindowKind::HannPeriodic => n as f64,
            WindowKind::HannSymmetric => (n as f64 - 1.0).max(1.0),
        };
        let left = (self.n_fft - n) / 2;
        let mut w = vec![0f32; self.n_fft];
        for (i, v) in w[left..left + n].iter_mut().enumerate() {
            *v = if n == 1 {
                1.0
            } else {
                (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / denom).cos()) as f32
            };
        }
        w
    }

    pub(crate) fn check(&self, len: usize) -> Result<(), String> {
        if self.n_fft == 0 || self.hop == 0 || self.win_length == 0 || self.win_length > self.n_fft
        {
            return Err(format!(
                "n_fft {}, win_length {}, hop {}: need 0 < win_length <= n_fft and hop > 0",
                self.n_fft, self.win_length, self.hop
            ));
        }
        if self.center && self.padding == Padding::Reflect && len <= self.n_fft / 2 {
            return Err(format!(
                "{len} samples: reflect padding by {} needs more",
                self.n_fft / 2
            ));
        }
        if self.frames(len) == 0 {
            return Err(format!(
                "{len} samples: shorter than one frame of {}",
                self.n_fft
            ));
        }
        Ok(())
    }
}

/// The signal padded as `spec` says.
fn padded(x: &[f32], spec: &SpectrogramSpec) -> Vec<f32> {
    if !spec.center {
        return x.to_vec();
    }
    let p = spec.n_fft / 2;
    let mut out = Vec::with_capacity(x.len() + 2 * p);
    match spec.padding {
        Padding::Constant => {
            out.resize(p, 0.0);
            out.extend_from_slice(x);
            out.resize(x.len() + 2 * p, 0.0);
        }
        Padding::Reflect => {
            out.extend((1..=p).rev().map(|i| x[i]));
            out.extend_from_slice(x);
            out.extend((0..p).map(|i| x[x.len() - 2 - i]));
        }
    }
    out
}

/// `|c|^power`, exact (no square root) for the power spectrogram's power 2.
pub(super) fn magnitude_power(c: Complex32, power: f32) -> f32 {
    let p = c.norm_sqr();
    if power == 2.0 {
        p
    } else {
        p.sqrt().powf(power)
    }
}

/// Run the STFT of `x` frame by frame, handing each frame's `n_fft/2 + 1` complex bins to
/// `emit(frame, bins)`; returns the frame count.
fn stft_frames(
    x: &[f32],
    spec: &SpectrogramSpec,
    mut emit: impl FnMut(usize, &[Complex32]),
) -> Result<usize, String> {
    spec.check(x.len())?;
    let signal = padded(x, spec);
    let window = spec.window();
    let frames = spec.frames(x.len());
    let fft = RealFft::for_len(spec.n_fft);
    let mut input = vec![0f32; spec.n_fft];
    let mut output = vec![Complex32::default(); spec.n_fft / 2 + 1];
    let mut scratch = vec![Complex32::default(); fft.scratch_len()];
    for t in 0..frames {
        let start = t * spec.hop;
        apply_window(&mut input, &signal[start..], &window);
        fft.process(&mut input, &mut output, &mut scratch);
        emit(t, &output);
    }
    Ok(frames)
}

/// `[n_fft/2 + 1, frames]` magnitudes or powers of `x` (see the module docs); `spec.power` must
/// be set (None asks for the complex values: [`stft`]).
pub fn spectrogram(x: &[f32], spec: &SpectrogramSpec) -> Result<Features, String> {
    let Some(power) = spec.power else {
        return Err("power None gives complex values (stft), not a spectrogram".into());
    };
    let frames = spec.frames(x.len());
    let mut out = Features::zeros(spec.n_fft / 2 + 1, frames);
    stft_frames(x, spec, |t, bins| {
        if power == 2.0 {
            store_power_column(&mut out.data[t..], frames, bins);
        } else {
            for (k, c) in bins.iter().enumerate() {
                out.data[k * frames + t] = magnitude_power(*c, power);
            }
        }
    })?;
    Ok(out)
}

crate::simd::with_avx2! {
/// `frame[i] = signal[i] · window[i]` over the frame.
fn apply_window(frame: &mut [f32], signal: &[f32], window: &[f32]) {
    for ((f, s), w) in frame.iter_mut().zip(signal).zip(window) {
        *f = s * w;
    }
}
}

crate::simd::with_avx2! {
/// `|bins[k]|²` into `column[k · stride]` (one frame of a bin-major power spectrogram).
fn store_power_column(column: &mut [f32], stride: usize, bins: &[Complex32]) {
    for (k, c) in bins.iter().enumerate() {
        column[k * stride] = c.re * c.re + c.im * c.im;
    }
}
}

/// The complex STFT `[n_fft/2 + 1, frames]` of `x` (torchaudio's `Spectrogram(power=None)`),
/// carrying `spec.hop` for a phase vocoder.
pub fn stft(x: &[f32], spec: &SpectrogramSpec) -> Result<Spectrum, String> {
    let frames = spec.frames(x.len());
    let mut out = Spectrum::zeros(spec.n_fft / 2 + 1, frames);
    stft_frames(x, spec, |t, bins| {
        for (k, c) in bins.iter().enumerate() {
            out.data[k * frames + t] = *c;
        }
    })?;
    out.hop = spec.hop;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asr_spec() -> SpectrogramSpec {
        crate::bench::ASR_SPECTROGRAM
    }

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// A naive f64 DFT of each frame, padding and window written out independently.
    fn naive(x: &[f32], spec: &SpectrogramSpec) -> Vec<Vec<(f64, f64)>> {
        let p = spec.n_fft / 2;
        let at = |i: isize| -> f64 {
            let n = x.len() as isize;
            let j = if !spec.center {
                i
            } else {
                let i = i - p as isize;
                match spec.padding {
                    Padding::Reflect if i < 0 => -i,
                    Padding::Reflect if i >= n => 2 * (n - 1) - i,
                    Padding::Constant if i < 0 || i >= n => return 0.0,
                    _ => i,
                }
            };
            f64::from(x[j as usize])
        };
        let left = (spec.n_fft - spec.win_length) / 2;
        let denom = match spec.window {
            WindowKind::HannPeriodic => spec.win_length as f64,
            WindowKind::HannSymmetric => spec.win_length as f64 - 1.0,
        };
        let w = |n: usize| -> f64 {
            if n < left || n >= left + spec.win_length {
                0.0
            } else {
                0.5 - 0.5 * (2.0 * std::f64::consts::PI * (n - left) as f64 / denom).cos()
            }
        };
        (0..spec.frames(x.len()))
            .map(|t| {
                (0..=spec.n_fft / 2)
                    .map(|k| {
                        let (mut re, mut im) = (0.0, 0.0);
                        for n in 0..spec.n_fft {
                            let v = at((t * spec.hop + n) as isize) * w(n);
                            let a =
                                -2.0 * std::f64::consts::PI * (k * n) as f64 / spec.n_fft as f64;
                            re += v * a.cos();
                            im += v * a.sin();
                        }
                        (re, im)
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn matches_a_naive_dft_for_the_asr_and_cedar_settings() {
        let cedar = SpectrogramSpec {
            power: Some(2.0),
            ..crate::bench::CEDAR_STFT
        };
        let other = SpectrogramSpec {
            window: WindowKind::HannSymmetric,
            padding: Padding::Constant,
            power: Some(1.0),
            ..asr_spec()
        };
        let uncentred = SpectrogramSpec {
            center: false,
            ..asr_spec()
        };
        for (i, spec) in [asr_spec(), cedar, other, uncentred].iter().enumerate() {
            let x = noise(1603, i as u64 + 1);
            let got = spectrogram(&x, spec).unwrap();
            let power = f64::from(spec.power.unwrap());
            let want: Vec<Vec<f64>> = naive(&x, spec)
                .iter()
                .map(|f| {
                    f.iter()
                        .map(|(re, im)| (re * re + im * im).powf(power / 2.0))
                        .collect()
                })
                .collect();
            assert_eq!((got.bins, got.frames), (spec.n_fft / 2 + 1, want.len()));
            let peak = want.iter().flatten().fold(0f64, |a, &b| a.max(b));
            for (t, frame) in want.iter().enumerate() {
                for (k, w) in frame.iter().enumerate() {
                    let g = f64::from(got.at(k, t));
                    assert!(
                        (g - w).abs() <= 1e-5 * peak + 1e-4 * w.abs(),
                        "spec {i} bin {k} frame {t}: {g} vs {w}"
                    );
                }
            }
        }
        // T = 1 + samples // hop with centring.
        assert_eq!(
            spectrogram(&noise(16_000, 9), &asr_spec()).unwrap().frames,
            101
        );
    }

    #[test]
    fn the_complex_stft_matches_a_naive_dft() {
        let spec = crate::bench::CEDAR_STFT;
        let x = noise(1203, 17);
        let got = stft(&x, &spec).unwrap();
        let want = naive(&x, &spec);
        assert_eq!((got.bins, got.frames, got.hop), (201, want.len(), 100));
        let peak = want
            .iter()
            .flatten()
            .fold(0f64, |a, (re, im)| a.max(re.hypot(*im)));
        for (t, frame) in want.iter().enumerate() {
            for (k, (re, im)) in frame.iter().enumerate() {
                let g = got.data[k * got.frames + t];
                assert!(
                    (f64::from(g.re) - re).abs() <= 1e-5 * peak
                        && (f64::from(g.im) - im).abs() <= 1e-5 * peak,
                    "bin {k} frame {t}: {g} vs ({re}, {im})"
                );
            }
        }
        assert!(spectrogram(&x, &spec).unwrap_err().contains("complex"));
    }

    #[test]
    fn too_short_or_nonsense_settings_are_errors() {
        assert!(spectrogram(&noise(200, 1), &asr_spec())
            .unwrap_err()
            .contains("reflect"));
        let bad = SpectrogramSpec {
            win_length: 600,
            ..asr_spec()
        };
        assert!(spectrogram(&noise(2000, 1), &bad)
            .unwrap_err()
            .contains("win_length"));
    }
}

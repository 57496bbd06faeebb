//! `TimeStretch`: torchaudio's phase vocoder on a complex STFT, and `ComplexNorm`.
//!
//! For a complex spectrogram X `[bins, T]` from an STFT with hop `h` and `n_fft = 2·(bins − 1)`,
//! stretching by `rate` (> 1 faster, < 1 slower) gives `ceil(T / rate)` frames. Output frame k
//! reads the input at `t_k = k·rate`, between frames `i = ⌊t_k⌋` and `i + 1` (frames past the end
//! are zero), with `α = t_k − i`:
//!
//! - magnitude `α·|X[i+1]| + (1 − α)·|X[i]|`;
//! - phase: frame 0 keeps `∠X[0]`; each later frame adds the previous step's measured phase
//!   advance `Δ = ∠X[i+1] − ∠X[i]`, taken as the bin's expected advance `ω_f = π·h·f/(bins − 1)`
//!   plus the deviation wrapped into [−π, π]: `ω_f + wrap(Δ − ω_f)`.
//!
//! (torchaudio's `phase_vocoder(X, rate, linspace(0, π·hop, bins)[..., None])`; rate 1 returns X.)

use super::spectrogram::magnitude_power;
use super::Features;
use rustfft::num_complex::Complex32;
use std::f64::consts::PI;

/// A complex spectrogram `[bins, frames]`, row-major, with the STFT hop it came from (the phase
/// vocoder needs it) and the audio's sample rate.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Spectrum {
    pub bins: usize,
    pub frames: usize,
    pub data: Vec<Complex32>,
    pub hop: usize,
    pub rate: u32,
}

impl Spectrum {
    pub fn zeros(bins: usize, frames: usize) -> Self {
        Spectrum {
            bins,
            frames,
            data: vec![Complex32::new(0.0, 0.0); bins * frames],
            hop: 0,
            rate: 0,
        }
    }
}

/// Frames after stretching `frames` by `rate`: `ceil(frames / rate)` (as `arange(0, T, rate)`).
pub fn stretched_frames(frames: usize, rate: f64) -> usize {
    // Count k with k·rate < frames exactly as the positions are computed below.
    let mut n = (frames as f64 / rate).ceil() as usize;
    while n > 0 && (n - 1) as f64 * rate >= frames as f64 {
        n -= 1;
    }
    while (n as f64) * rate < frames as f64 {
        n += 1;
    }
    n
}

/// `x` stretched by `rate` (see the module docs). The arithmetic is f64 per element and stored
/// as f32.
pub fn time_stretch(x: &Spectrum, rate: f64) -> Result<Spectrum, String> {
    if !(rate > 0.0 && rate.is_finite()) {
        return Err(format!("stretch rate {rate} must be positive"));
    }
    if rate == 1.0 {
        return Ok(x.clone());
    }
    if x.bins < 2 {
        return Err(format!("{} bins: a phase vocoder needs at least 2", x.bins));
    }
    let out_frames = stretched_frames(x.frames, rate);
    let mut out = Spectrum {
        bins: x.bins,
        frames: out_frames,
        data: Vec::with_capacity(x.bins * out_frames),
        hop: x.hop,
        rate: x.rate,
    };
    // Per input frame (two zero frames past the end), its magnitude and the phase step taken
    // when an output frame reads between it and the next; then each output frame is an
    // interpolation and one sin/cos. The running phase is kept in [−π, π) (f64), so the f32
    // sin/cos sees a small argument whatever the length.
    let mut norms = vec![0f64; x.frames + 2];
    let mut steps = vec![0f64; x.frames + 1];
    let mut angles = vec![0f64; x.frames + 2];
    for f in 0..x.bins {
        let row = &x.data[f * x.frames..(f + 1) * x.frames];
        for (i, c) in row.iter().enumerate() {
            norms[i] = f64::from(c.re).hypot(f64::from(c.im));
            angles[i] = f64::from(c.im).atan2(f64::from(c.re));
        }
        let advance = PI * x.hop as f64 * f as f64 / (x.bins - 1) as f64;
        for (i, step) in steps.iter_mut().enumerate() {
            let deviation = angles[i + 1] - angles[i] - advance;
            *step = advance + deviation - 2.0 * PI * (deviation / (2.0 * PI)).round();
        }
        let mut phase = angles[0];
        for k in 0..out_frames {
            let t = k as f64 * rate;
            let i = t.floor() as usize;
            let alpha = t - i as f64;
            let magnitude = (alpha * norms[i + 1] + (1.0 - alpha) * norms[i]) as f32;
            let (sin, cos) = (phase as f32).sin_cos();
            out.data
                .push(Complex32::new(magnitude * cos, magnitude * sin));
            phase = (phase + steps[i] + PI).rem_euclid(2.0 * PI) - PI;
        }
    }
    Ok(out)
}

/// `|time_stretch(x, rate)|^power` without the phases: the magnitudes interpolated as the phase
/// vocoder does, raised to `power`. What TimeStretch → ComplexNorm computes when fused (no
/// atan2 or sin/cos per element); equal to the two steps up to float rounding (the unfused path
/// goes through `m·cos φ`, `m·sin φ` in f32).
pub fn time_stretch_norm(x: &Spectrum, rate: f64, power: f32) -> Result<Features, String> {
    if !(rate > 0.0 && rate.is_finite()) {
        return Err(format!("stretch rate {rate} must be positive"));
    }
    if rate == 1.0 {
        return Ok(complex_norm(x, power));
    }
    let out_frames = stretched_frames(x.frames, rate);
    let mut out = Features::zeros(x.bins, out_frames);
    out.rate = x.rate;
    // Which input frames and weight each output frame reads: the same for every bin.
    let taps: Vec<(usize, f64)> = (0..out_frames)
        .map(|k| {
            let t = k as f64 * rate;
            (t.floor() as usize, t - t.floor())
        })
        .collect();
    let mut norms = vec![0f64; x.frames + 2];
    for f in 0..x.bins {
        let row = &x.data[f * x.frames..(f + 1) * x.frames];
        for (n, c) in norms.iter_mut().zip(row) {
            *n = f64::from(c.norm_sqr()).sqrt();
        }
        let dst = &mut out.data[f * out_frames..(f + 1) * out_frames];
        for (o, &(i, alpha)) in dst.iter_mut().zip(&taps) {
            let m = (alpha * norms[i + 1] + (1.0 - alpha) * norms[i]) as f32;
            *o = if power == 2.0 { m * m } else { m.powf(power) };
        }
    }
    Ok(out)
}

/// `|x|^power` per element (torchaudio's `ComplexNorm`; power 2 gives the power spectrogram).
pub fn complex_norm(x: &Spectrum, power: f32) -> Features {
    let mut out = Features::zeros(x.bins, x.frames);
    for (o, c) in out.data.iter_mut().zip(&x.data) {
        *o = magnitude_power(*c, power);
    }
    out.rate = x.rate;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spectrum(bins: usize, frames: usize, seed: u64) -> Spectrum {
        let mut s = seed;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let mut x = Spectrum::zeros(bins, frames);
        for c in &mut x.data {
            *c = Complex32::new(next(), next());
        }
        x.hop = 100;
        x
    }

    /// The formula written out per output frame with explicit sums (no running phase).
    fn reference(x: &Spectrum, rate: f64) -> Vec<(f64, f64)> {
        let n = stretched_frames(x.frames, rate);
        let get = |f: usize, i: usize| -> (f64, f64) {
            if i < x.frames {
                let c = x.data[f * x.frames + i];
                (f64::from(c.re), f64::from(c.im))
            } else {
                (0.0, 0.0)
            }
        };
        let mut out = vec![(0.0, 0.0); x.bins * n];
        for f in 0..x.bins {
            let w = PI * 100.0 * f as f64 / (x.bins - 1) as f64;
            for k in 0..n {
                let mut phase = get(f, 0).1.atan2(get(f, 0).0);
                for j in 0..k {
                    let i = (j as f64 * rate).floor() as usize;
                    let (a, b) = (get(f, i), get(f, i + 1));
                    let d = b.1.atan2(b.0) - a.1.atan2(a.0) - w;
                    phase += w + d - 2.0 * PI * (d / (2.0 * PI)).round();
                }
                let t = k as f64 * rate;
                let i = t.floor() as usize;
                let alpha = t - i as f64;
                let (a, b) = (get(f, i), get(f, i + 1));
                let m = alpha * b.0.hypot(b.1) + (1.0 - alpha) * a.0.hypot(a.1);
                out[f * n + k] = (m * phase.cos(), m * phase.sin());
            }
        }
        out
    }

    #[test]
    fn stretch_matches_the_phase_vocoder_formula() {
        for (rate, frames) in [(0.8, 37), (1.25, 40), (0.5, 9), (2.0, 1)] {
            let x = spectrum(11, frames, frames as u64);
            let y = time_stretch(&x, rate).unwrap();
            assert_eq!(
                y.frames,
                (frames as f64 / rate).ceil() as usize,
                "rate {rate}"
            );
            let want = reference(&x, rate);
            for (got, want) in y.data.iter().zip(&want) {
                // Phases accumulate over up to ~50 steps in f64: 1e-4 is f32 storage rounding.
                assert!(
                    (f64::from(got.re) - want.0).abs() < 1e-4
                        && (f64::from(got.im) - want.1).abs() < 1e-4,
                    "rate {rate}: {got} vs {want:?}"
                );
            }
        }
        let x = spectrum(5, 8, 1);
        assert_eq!(time_stretch(&x, 1.0).unwrap(), x);
        assert!(time_stretch(&x, 0.0).is_err());
    }

    #[test]
    fn frame_counts_are_the_arange_length() {
        for frames in 0..200 {
            for rate in [0.8, 0.9, 1.1, 1.2, 0.3, 3.0] {
                let arange = (0..)
                    .take_while(|k| (*k as f64) * rate < frames as f64)
                    .count();
                assert_eq!(stretched_frames(frames, rate), arange, "{frames} / {rate}");
            }
        }
    }

    #[test]
    fn the_fused_norm_equals_stretch_then_norm_up_to_rounding() {
        for rate in [0.8, 1.3, 1.0] {
            let x = spectrum(13, 29, 5);
            for power in [1.0, 2.0] {
                let fused = time_stretch_norm(&x, rate, power).unwrap();
                let steps = complex_norm(&time_stretch(&x, rate).unwrap(), power);
                assert_eq!((fused.bins, fused.frames), (steps.bins, steps.frames));
                for (a, b) in fused.data.iter().zip(&steps.data) {
                    assert!((a - b).abs() <= 1e-6 * b.abs().max(1e-3), "{a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn norm_is_the_magnitude_to_a_power() {
        let x = spectrum(3, 4, 9);
        let p2 = complex_norm(&x, 2.0);
        let p1 = complex_norm(&x, 1.0);
        for ((c, a), b) in x.data.iter().zip(&p2.data).zip(&p1.data) {
            assert!((a - c.norm_sqr()).abs() < 1e-6);
            assert!((b - c.norm()).abs() < 1e-6);
        }
    }
}

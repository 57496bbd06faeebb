//! `MelScale`: triangular filterbanks over the STFT bins, as torchaudio's `melscale_fbanks`.
//!
//! Scales: HTK `m = 2595·log10(1 + f/700)`; Slaney `m = f / (200/3)` below 1 kHz and
//! `15 + ln(f/1000) / (ln 6.4 / 27)` above. `n_mels + 2` points equally spaced in mel between
//! f_min and f_max, back to Hz: `f_0..f_{n+1}`. Filter m at bin frequency `f` (the bins are
//! `linspace(0, rate/2, n_fft/2 + 1)`) is `max(0, min((f − f_m)/(f_{m+1} − f_m),
//! (f_{m+2} − f)/(f_{m+2} − f_{m+1})))`; with Slaney norm it is scaled by
//! `2 / (f_{m+2} − f_m)` (equal area). Applied as `mel[m][t] = Σ_k fb[k][m] · spec[k][t]`.

use super::Features;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MelScale {
    Htk,
    Slaney,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MelNorm {
    None,
    Slaney,
}

const F_SP: f64 = 200.0 / 3.0;
const MIN_LOG_HZ: f64 = 1000.0;
const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;

fn log_step() -> f64 {
    6.4f64.ln() / 27.0
}

pub fn hz_to_mel(f: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 2595.0 * (1.0 + f / 700.0).log10(),
        MelScale::Slaney if f >= MIN_LOG_HZ => MIN_LOG_MEL + (f / MIN_LOG_HZ).ln() / log_step(),
        MelScale::Slaney => f / F_SP,
    }
}

pub fn mel_to_hz(m: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 700.0 * (10f64.powf(m / 2595.0) - 1.0),
        MelScale::Slaney if m >= MIN_LOG_MEL => MIN_LOG_HZ * (log_step() * (m - MIN_LOG_MEL)).exp(),
        MelScale::Slaney => F_SP * m,
    }
}

/// The filterbank `[n_freqs][n_mels]` (row-major, `n_freqs = n_fft/2 + 1`), computed in f64.
pub fn mel_filterbank(
    n_freqs: usize,
    f_min: f64,
    f_max: f64,
    n_mels: usize,
    rate: u32,
    norm: MelNorm,
    scale: MelScale,
) -> Vec<f32> {
    let nyquist = f64::from(rate) / 2.0;
    let bin_hz = |k: usize| {
        if n_freqs == 1 {
            0.0
        } else {
            nyquist * k as f64 / (n_freqs - 1) as f64
        }
    };
    let (m_min, m_max) = (hz_to_mel(f_min, scale), hz_to_mel(f_max, scale));
    let f_pts: Vec<f64> = (0..n_mels + 2)
        .map(|i| {
            mel_to_hz(
                m_min + (m_max - m_min) * i as f64 / (n_mels + 1) as f64,
                scale,
            )
        })
        .collect();
    let mut fb = vec![0f32; n_freqs * n_mels];
    for k in 0..n_freqs {
        let f = bin_hz(k);
        for m in 0..n_mels {
            let down = (f - f_pts[m]) / (f_pts[m + 1] - f_pts[m]);
            let up = (f_pts[m + 2] - f) / (f_pts[m + 2] - f_pts[m + 1]);
            let mut v = down.min(up).max(0.0);
            if norm == MelNorm::Slaney {
                v *= 2.0 / (f_pts[m + 2] - f_pts[m]);
            }
            fb[k * n_mels + m] = v as f32;
        }
    }
    fb
}

impl Features {
    /// `fb^T · self`: `[n_freqs, frames]` → `[n_mels, frames]`.
    pub fn project(&self, fb: &[f32], n_mels: usize) -> Features {
        assert_eq!(fb.len(), self.bins * n_mels, "filterbank shape");
        let mut out = Features::zeros(n_mels, self.frames);
        out.rate = self.rate;
        for k in 0..self.bins {
            let row = self.row(k);
            for m in 0..n_mels {
                let w = fb[k * n_mels + m];
                if w == 0.0 {
                    continue;
                }
                for (o, s) in out.row_mut(m).iter_mut().zip(row) {
                    *o += w * s;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scales_match_their_closed_forms_and_invert() {
        // HTK: 1000 Hz ≈ 1000 mel; Slaney: linear below 1 kHz (15 mel at 1 kHz), log above.
        assert!((hz_to_mel(1000.0, MelScale::Htk) - 999.985_6).abs() < 1e-3);
        assert!((hz_to_mel(1000.0, MelScale::Slaney) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel(500.0, MelScale::Slaney) - 7.5).abs() < 1e-12);
        let above = 15.0 + (6.4f64).ln() / (6.4f64.ln() / 27.0);
        assert!((hz_to_mel(6400.0, MelScale::Slaney) - above).abs() < 1e-9);
        for scale in [MelScale::Htk, MelScale::Slaney] {
            for f in [0.0, 100.0, 999.0, 1000.0, 1001.0, 4000.0, 8000.0, 22050.0] {
                let back = mel_to_hz(hz_to_mel(f, scale), scale);
                assert!(
                    (back - f).abs() < 1e-6 * f.max(1.0),
                    "{scale:?} {f} -> {back}"
                );
            }
        }
    }

    #[test]
    fn filters_are_triangles_peaking_at_their_centres() {
        // 80 slaney-normalized filters over 257 bins at 16 kHz, as asr-val uses.
        let (n_freqs, n_mels) = (257, 80);
        let fb = mel_filterbank(
            n_freqs,
            0.0,
            8000.0,
            n_mels,
            16_000,
            MelNorm::None,
            MelScale::Slaney,
        );
        let m_max = hz_to_mel(8000.0, MelScale::Slaney);
        for m in 0..n_mels {
            let col: Vec<f64> = (0..n_freqs)
                .map(|k| f64::from(fb[k * n_mels + m]))
                .collect();
            let lo = mel_to_hz(m_max * m as f64 / 81.0, MelScale::Slaney);
            let centre = mel_to_hz(m_max * (m + 1) as f64 / 81.0, MelScale::Slaney);
            let hi = mel_to_hz(m_max * (m + 2) as f64 / 81.0, MelScale::Slaney);
            for (k, v) in col.iter().enumerate() {
                let f = 8000.0 * k as f64 / 256.0;
                let want = ((f - lo) / (centre - lo))
                    .min((hi - f) / (hi - centre))
                    .max(0.0);
                assert!((v - want).abs() < 1e-6, "filter {m} bin {k}: {v} vs {want}");
            }
        }
        // Slaney norm: each filter's area over frequency is 1 (2/(hi-lo) × (hi-lo)/2); summed on
        // the 31.25 Hz bin grid, checked where filters span many bins (above ~2 kHz).
        let normed = mel_filterbank(
            n_freqs,
            0.0,
            8000.0,
            n_mels,
            16_000,
            MelNorm::Slaney,
            MelScale::Slaney,
        );
        for m in 45..n_mels {
            let area: f64 = (0..n_freqs)
                .map(|k| f64::from(normed[k * n_mels + m]) * 8000.0 / 256.0)
                .sum();
            assert!((area - 1.0).abs() < 0.05, "filter {m}: area {area}");
        }
    }
}

//! `Resample`: band-limited windowed-sinc interpolation, the formula of torchaudio's
//! `resample(..., resampling_method="sinc_interp_hann", lowpass_filter_width=6, rolloff=0.99)`.
//!
//! With `o = from / g`, `n = to / g` (g = gcd), cutoff `b = min(o, n) · rolloff` and half-width
//! `w = ceil(width · o / b)` input samples, output sample `j·n + i` (phase i of block j) is
//! `Σ_k x[j·o + k − w] · h_i[k]`, k in 0..2w+o, x zero outside the signal, where
//! `h_i[k] = (b/o) · sinc(π·t) · cos²(π·t / (2·width))`, `t = clamp(b·((k − w)/o − i/n), ±width)`.
//! The output has `ceil(len · to / from)` samples. Kernels are computed in f64, rounded to f32.

/// Resample one channel from `from` Hz to `to` Hz (`width` 6 and `rolloff` 0.99 for torchaudio's
/// defaults).
pub fn resample(x: &[f32], from: u32, to: u32, width: u32, rolloff: f64) -> Vec<f32> {
    assert!(
        from > 0 && to > 0 && width > 0,
        "rates and width must be positive"
    );
    if from == to {
        return x.to_vec();
    }
    let g = gcd(from, to);
    let (o, n) = ((from / g) as usize, (to / g) as usize);
    let bank = bank(o, n, width, rolloff);
    let (kernels, support, w) = (&bank.kernels, &bank.support, bank.half_width);
    let taps = 2 * w + o;
    let out_len = (x.len() as u64 * u64::from(to)).div_ceil(u64::from(from)) as usize;
    let mut out = Vec::with_capacity(out_len);
    let at = |i: isize| -> f32 {
        if i < 0 || i as usize >= x.len() {
            0.0
        } else {
            x[i as usize]
        }
    };
    'blocks: for j in 0.. {
        let first = (j * o) as isize - w as isize;
        for (h, &(lo, hi)) in kernels.chunks_exact(taps).zip(support) {
            if out.len() == out_len {
                break 'blocks;
            }
            let start = first + lo as isize;
            let inside = start >= 0 && (first + hi as isize) as usize <= x.len();
            let acc = if inside {
                dot(&x[start as usize..start as usize + (hi - lo)], &h[lo..hi])
            } else {
                (lo..hi).map(|k| at(first + k as isize) * h[k]).sum::<f32>()
            };
            out.push(acc);
        }
    }
    out
}

/// `Σ a[i]·b[i]` with eight partial sums (the compiler vectorizes independent lanes; one
/// running sum would serialize every add).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            lanes[k] += x[k] * y[k];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}

/// The kernels of one (from, to, width, rolloff), with each phase's non-zero range: the kernel
/// is zero outside |t| < width, so only those taps are summed (adding zero products changes
/// nothing: the result is the full sum's).
struct Bank {
    kernels: Vec<f32>,
    support: Vec<(usize, usize)>,
    half_width: usize,
}

type BankCache =
    std::sync::Mutex<std::collections::HashMap<(usize, usize, u32, u64), std::sync::Arc<Bank>>>;

/// Computed once per rate pair (their sines and cosines cost more than the resampling itself).
fn bank(o: usize, n: usize, width: u32, rolloff: f64) -> std::sync::Arc<Bank> {
    static CACHE: std::sync::OnceLock<BankCache> = std::sync::OnceLock::new();
    let key = (o, n, width, rolloff.to_bits());
    let cache = CACHE.get_or_init(Default::default);
    if let Some(b) = cache.lock().unwrap().get(&key) {
        return b.clone();
    }
    let kernels = kernels(o, n, width, rolloff);
    let half_width = half_width(o, n, width, rolloff);
    let support = kernels
        .chunks_exact(2 * half_width + o)
        .map(|h| {
            let first = h.iter().position(|&v| v != 0.0).unwrap_or(0);
            let end = h.iter().rposition(|&v| v != 0.0).map_or(0, |i| i + 1);
            (first, end.max(first))
        })
        .collect();
    let b = std::sync::Arc::new(Bank {
        kernels,
        support,
        half_width,
    });
    cache.lock().unwrap().insert(key, b.clone());
    b
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn half_width(o: usize, n: usize, width: u32, rolloff: f64) -> usize {
    let base = o.min(n) as f64 * rolloff;
    (f64::from(width) * o as f64 / base).ceil() as usize
}

/// `n` kernels of `2w + o` taps each, phase-major.
fn kernels(o: usize, n: usize, width: u32, rolloff: f64) -> Vec<f32> {
    let base = o.min(n) as f64 * rolloff;
    let w = half_width(o, n, width, rolloff);
    let lw = f64::from(width);
    let mut h = Vec::with_capacity(n * (2 * w + o));
    for i in 0..n {
        for k in 0..2 * w + o {
            let idx = (k as f64 - w as f64) / o as f64;
            let t = ((idx - i as f64 / n as f64) * base).clamp(-lw, lw);
            let window = (t * std::f64::consts::PI / lw / 2.0).cos().powi(2);
            let pt = t * std::f64::consts::PI;
            let sinc = if pt == 0.0 { 1.0 } else { pt.sin() / pt };
            h.push((sinc * window * base / o as f64) as f32);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same sum in f64, term by term from the formula in the module docs.
    fn reference(x: &[f32], from: u32, to: u32) -> Vec<f64> {
        let g = gcd(from, to);
        let (o, n) = ((from / g) as usize, (to / g) as usize);
        let base = o.min(n) as f64 * 0.99;
        let w = (6.0 * o as f64 / base).ceil() as isize;
        let len = (x.len() * to as usize).div_ceil(from as usize);
        (0..len)
            .map(|m| {
                let (j, i) = ((m / n) as isize, m % n);
                (0..2 * w + o as isize)
                    .map(|k| {
                        let src = j * o as isize + k - w;
                        let v = if src < 0 || src as usize >= x.len() {
                            0.0
                        } else {
                            f64::from(x[src as usize])
                        };
                        let t = (((k - w) as f64 / o as f64 - i as f64 / n as f64) * base)
                            .clamp(-6.0, 6.0);
                        let pt = t * std::f64::consts::PI;
                        let sinc = if pt == 0.0 { 1.0 } else { pt.sin() / pt };
                        v * sinc * (pt / 12.0).cos().powi(2) * base / o as f64
                    })
                    .sum()
            })
            .collect()
    }

    #[test]
    fn matches_the_sinc_sum_for_up_and_down_sampling() {
        let mut state = 12345u64;
        let x: Vec<f32> = (0..2000)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect();
        for (from, to) in [
            (44_100, 16_000),
            (8_000, 16_000),
            (48_000, 16_000),
            (22_050, 8_000),
        ] {
            let got = resample(&x, from, to, 6, 0.99);
            let want = reference(&x, from, to);
            assert_eq!(got.len(), want.len(), "{from}->{to}");
            assert_eq!(got.len(), (2000 * to as usize).div_ceil(from as usize));
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (f64::from(*g) - w).abs() < 2e-5,
                    "{from}->{to} sample {i}: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn a_tone_below_both_nyquists_survives() {
        // 440 Hz at 48 kHz → 16 kHz: the same tone, away from the edges.
        let x: Vec<f32> = (0..48_000)
            .map(|t| (2.0 * std::f64::consts::PI * 440.0 * t as f64 / 48_000.0).sin() as f32)
            .collect();
        let y = resample(&x, 48_000, 16_000, 6, 0.99);
        assert_eq!(y.len(), 16_000);
        for (t, v) in y.iter().enumerate().skip(100).take(15_800) {
            let want = (2.0 * std::f64::consts::PI * 440.0 * t as f64 / 16_000.0).sin();
            assert!((f64::from(*v) - want).abs() < 2e-3, "t={t}: {v} vs {want}");
        }
        assert_eq!(resample(&x[..10], 16_000, 16_000, 6, 0.99), &x[..10]);
    }
}

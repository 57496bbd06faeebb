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
    let out_len = (x.len() as u64 * u64::from(to)).div_ceil(u64::from(from)) as usize;
    let mut out = vec![0f32; out_len];
    filter(x, &bank, &mut out);
    out
}

/// Every output sample: block `j`, phase `i` reads `stride` inputs from `j·o − w + lo_i`. Near the
/// edges the window is copied with zeros outside the signal, so every output takes the same sum
/// in the same order; the AVX and portable dot products add in the same order too (the vector
/// width changes speed, not bytes).
fn filter(x: &[f32], bank: &Bank, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU supports AVX, checked just above.
        return unsafe { filter_avx(x, bank, out) };
    }
    filter_with(x, bank, out, dot8)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn filter_avx(x: &[f32], bank: &Bank, out: &mut [f32]) {
    // SAFETY (of the closure): AVX is enabled for this function, and so for what it inlines.
    filter_with(x, bank, out, |a, b| unsafe { dot8_avx(a, b) })
}

#[inline(always)]
fn filter_with(x: &[f32], bank: &Bank, out: &mut [f32], dot: impl Fn(&[f32], &[f32]) -> f32) {
    let (o, stride) = (bank.o, bank.stride);
    let mut edge = vec![0f32; stride];
    for (j, block) in out.chunks_mut(bank.n).enumerate() {
        let rows = bank.taps.chunks_exact(stride).zip(&bank.first);
        for (y, (h, &lo)) in block.iter_mut().zip(rows) {
            let start = (j * o) as isize - bank.half_width as isize + lo as isize;
            *y = if start >= 0 && start as usize + stride <= x.len() {
                dot(&x[start as usize..start as usize + stride], h)
            } else {
                for (k, e) in edge.iter_mut().enumerate() {
                    let i = start + k as isize;
                    *e = if i < 0 || i as usize >= x.len() {
                        0.0
                    } else {
                        x[i as usize]
                    };
                }
                dot(&edge, h)
            };
        }
    }
}

/// `Σ a[i]·b[i]` for lengths that are multiples of 8: eight independent lanes (one running sum
/// would serialize every add), then `q[k] = l[k] + l[k+4]` and `(q0 + q2) + (q1 + q3)`.
#[inline(always)]
fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let mut l = [0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for k in 0..8 {
            l[k] += x[k] * y[k];
        }
    }
    let q = [l[0] + l[4], l[1] + l[5], l[2] + l[6], l[3] + l[7]];
    (q[0] + q[2]) + (q[1] + q[3])
}

/// [`dot8`] with AVX, the same operations in the same order (the compiler's own vectorization
/// of `dot8` pairs lanes two by two, at half this speed).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn dot8_avx(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    assert_eq!(a.len(), b.len());
    let mut l = _mm256_setzero_ps();
    for i in (0..a.len() / 8 * 8).step_by(8) {
        // SAFETY: i + 8 <= a.len() == b.len().
        let (x, y) = unsafe {
            (
                _mm256_loadu_ps(a.as_ptr().add(i)),
                _mm256_loadu_ps(b.as_ptr().add(i)),
            )
        };
        l = _mm256_add_ps(l, _mm256_mul_ps(x, y));
    }
    let q = _mm_add_ps(_mm256_castps256_ps128(l), _mm256_extractf128_ps::<1>(l));
    let pair = _mm_add_ps(q, _mm_movehl_ps(q, q));
    _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps::<1>(pair, pair)))
}

/// The kernels of one (from, to, width, rolloff), compacted: the kernel is zero outside
/// |t| < width, so each phase keeps only the taps from its first non-zero one, `stride` of them
/// (the longest support rounded up to 8, zero-padded). Adding zero products changes nothing but
/// the order of the sum's rounding.
struct Bank {
    o: usize,
    n: usize,
    half_width: usize,
    stride: usize,
    /// `n` rows of `stride` taps.
    taps: Vec<f32>,
    /// Each phase's first kept tap, as an index into its full `2w + o` kernel.
    first: Vec<usize>,
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
    let half_width = half_width(o, n, width, rolloff);
    let full = kernels(o, n, width, rolloff);
    let support: Vec<(usize, usize)> = full
        .chunks_exact(2 * half_width + o)
        .map(|h| {
            let first = h.iter().position(|&v| v != 0.0).unwrap_or(0);
            let end = h.iter().rposition(|&v| v != 0.0).map_or(0, |i| i + 1);
            (first, end.max(first))
        })
        .collect();
    let stride = support
        .iter()
        .map(|(lo, hi)| hi - lo)
        .max()
        .unwrap_or(0)
        .max(1)
        .next_multiple_of(8);
    let mut taps = vec![0f32; n * stride];
    for ((row, h), &(lo, hi)) in taps
        .chunks_exact_mut(stride)
        .zip(full.chunks_exact(2 * half_width + o))
        .zip(&support)
    {
        row[..hi - lo].copy_from_slice(&h[lo..hi]);
    }
    let b = std::sync::Arc::new(Bank {
        o,
        n,
        half_width,
        stride,
        taps,
        first: support.iter().map(|&(lo, _)| lo).collect(),
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
    fn the_vector_and_portable_sums_are_bit_identical() {
        // Long signals (mostly inside) and short ones (mostly edges).
        for (o, n, samples) in [
            (441, 160, 5000),
            (3, 1, 5000),
            (1, 2, 5000),
            (441, 320, 5000),
            (441, 160, 131),
            (1, 2, 37),
        ] {
            let x: Vec<f32> = (0..samples)
                .map(|i| ((i * 7919) % 2003) as f32 / 1001.0 - 1.0)
                .collect();
            let b = bank(o, n, 6, 0.99);
            let len = x.len() * n / o;
            let (mut fast, mut portable) = (vec![f32::NAN; len], vec![f32::NAN; len]);
            filter(&x, &b, &mut fast);
            filter_with(&x, &b, &mut portable, dot8);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&portable), "{o}:{n}");
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

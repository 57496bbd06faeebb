//! Forward FFT of real input, as `realfft`'s `RealToComplexEven` computes it, with its
//! post-processing pass vectorized.
//!
//! For even `n`, the `n` reals are read as `n/2` complex values `z[j] = x[2j] + i·x[2j+1]`,
//! transformed by rustfft's complex FFT of `n/2` (the plan realfft would make), and bins
//! `X[k]` and `X[n/2 − k]` are recovered together from `Z[k]` and `Z[n/2 − k]` with the twiddle
//! `½·e^{−2πik/n}`. realfft does that pass one bin pair at a time in scalar code (compiled for
//! baseline x86-64: a quarter of the STFT's time on asr-val); here it runs four bin pairs per
//! AVX2 step with realfft's very operations in realfft's order (no FMA; a − b written as
//! a + (−b), which IEEE arithmetic rounds identically), so the output is bit-identical to
//! realfft's (unit test), whichever copy runs.

use rustfft::num_complex::Complex32;
use std::sync::Arc;

pub(crate) struct RealFft {
    n: usize,
    fft: Arc<dyn rustfft::Fft<f32>>,
    /// `½·e^{−2πik/n}` for k in 1..⌈n/4⌉, rounded as realfft rounds them.
    twiddles: Vec<Complex32>,
}

impl RealFft {
    /// This thread's transform of `n` reals, made on first use (plans and twiddles are kept
    /// per thread: the spectral operators ask for the same sizes for every sample).
    pub fn for_len(n: usize) -> std::rc::Rc<RealFft> {
        thread_local! {
            static MADE: std::cell::RefCell<Vec<std::rc::Rc<RealFft>>> = const {
                std::cell::RefCell::new(Vec::new())
            };
        }
        MADE.with(|made| {
            let mut made = made.borrow_mut();
            if let Some(f) = made.iter().find(|f| f.n == n) {
                return f.clone();
            }
            let f = std::rc::Rc::new(RealFft::new(n));
            made.push(f.clone());
            f
        })
    }

    /// A forward transform of `n` reals (`n` even and at least 2), planned by this thread's
    /// rustfft planner.
    pub fn new(n: usize) -> Self {
        assert!(
            n >= 2 && n.is_multiple_of(2),
            "real FFT length {n} must be even"
        );
        thread_local! {
            static PLANNER: std::cell::RefCell<rustfft::FftPlanner<f32>> =
                std::cell::RefCell::new(rustfft::FftPlanner::new());
        }
        let fft = PLANNER.with(|p| p.borrow_mut().plan_fft_forward(n / 2));
        let count = n / 4 + usize::from(!n.is_multiple_of(4));
        let twiddles = (1..count)
            .map(|k| {
                let angle = -2.0 * std::f64::consts::PI / n as f64 * k as f64;
                Complex32::new(angle.cos() as f32, angle.sin() as f32) * 0.5
            })
            .collect();
        RealFft { n, fft, twiddles }
    }

    /// Scratch the transform needs (complex values).
    pub fn scratch_len(&self) -> usize {
        self.fft.get_outofplace_scratch_len()
    }

    /// `output[k] = Σ_j input[j]·e^{−2πijk/n}` for k in 0..=n/2; `input` is used as working
    /// space (its contents are unspecified afterwards).
    pub fn process(&self, input: &mut [f32], output: &mut [Complex32], scratch: &mut [Complex32]) {
        let half = self.n / 2;
        assert_eq!(input.len(), self.n, "real FFT input length");
        assert_eq!(output.len(), half + 1, "real FFT output length");
        // SAFETY: Complex32 is #[repr(C)] { re: f32, im: f32 } (alignment 4, as f32's), and
        // `input` holds exactly 2·half floats; the borrow of `input` covers `z`'s lifetime.
        let z =
            unsafe { std::slice::from_raw_parts_mut(input.as_mut_ptr() as *mut Complex32, half) };
        self.fft
            .process_outofplace_with_scratch(z, &mut output[..half], scratch);
        let first = output[0];
        output[0] = Complex32::new(first.re + first.im, 0.0);
        output[half] = Complex32::new(first.re - first.im, 0.0);
        let pairs = self.twiddles.len();
        #[cfg(target_arch = "x86_64")]
        let done = if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { post_process_avx2(output, &self.twiddles) }
        } else {
            0
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = 0;
        for k in done + 1..=pairs {
            let (a, b) = post_process_pair(output[k], output[half - k], self.twiddles[k - 1]);
            output[k] = a;
            output[half - k] = b;
        }
        if half.is_multiple_of(2) {
            // The centre bin pairs with itself: its twiddle is −i/2, leaving the conjugate.
            output[half / 2].im = -output[half / 2].im;
        }
    }
}

/// Bins k and n/2 − k from the complex FFT's `out` (at k) and `rev` (at n/2 − k), realfft's
/// formula step by step.
fn post_process_pair(out: Complex32, rev: Complex32, t: Complex32) -> (Complex32, Complex32) {
    let sum = out + rev;
    let diff = out - rev;
    let half_sum_re = 0.5 * sum.re;
    let half_diff_im = 0.5 * diff.im;
    let twiddled_re = sum.im * t.re + diff.re * t.im;
    let twiddled_im = sum.im * t.im - diff.re * t.re;
    (
        Complex32::new(half_sum_re + twiddled_re, half_diff_im + twiddled_im),
        Complex32::new(half_sum_re - twiddled_re, twiddled_im - half_diff_im),
    )
}

/// [`post_process_pair`] for bins 1..=4·m (m: whole groups of four twiddles) and their mirror
/// bins, four pairs per step; returns 4·m.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn post_process_avx2(output: &mut [Complex32], twiddles: &[Complex32]) -> usize {
    use std::arch::x86_64::*;
    let half = output.len() - 1;
    let groups = twiddles.len() / 4;
    let base = output.as_mut_ptr() as *mut f32;
    // Lanes are (re, im) pairs: the sign bit of each im lane, and 0.5 everywhere.
    let odd_sign = _mm256_castsi256_ps(_mm256_setr_epi32(
        0,
        i32::MIN,
        0,
        i32::MIN,
        0,
        i32::MIN,
        0,
        i32::MIN,
    ));
    let halves = _mm256_set1_ps(0.5);
    for g in 0..groups {
        let k = 1 + 4 * g;
        // Bins k..k+4, and n/2−k−3..=n/2−k reversed so lane j holds bin n/2 − (k + j).
        let a = _mm256_loadu_ps(base.add(2 * k));
        let b = _mm256_loadu_ps(base.add(2 * (half - k - 3)));
        let b = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b00_01_10_11>(_mm256_castps_pd(b)));
        let t = _mm256_loadu_ps(twiddles.as_ptr().add(4 * g) as *const f32);
        let t_swapped = _mm256_permute_ps::<0b10_11_00_01>(t);
        let sum = _mm256_add_ps(a, b);
        let diff = _mm256_sub_ps(a, b);
        // (sum.im·t.re, sum.im·t.im) and (diff.re·t.im, diff.re·t.re).
        let p = _mm256_mul_ps(_mm256_movehdup_ps(sum), t);
        let q = _mm256_mul_ps(_mm256_moveldup_ps(diff), t_swapped);
        // (twiddled_re, twiddled_im) = (p.re + q.re, p.im − q.im).
        let twiddled = _mm256_add_ps(p, _mm256_xor_ps(q, odd_sign));
        // (½·sum.re, ½·diff.im).
        let h = _mm256_mul_ps(_mm256_blend_ps::<0b1010_1010>(sum, diff), halves);
        let out = _mm256_add_ps(h, twiddled);
        // (h.re − tw.re, tw.im − h.im) = (h − tw) with the im lane negated.
        let rev = _mm256_xor_ps(_mm256_sub_ps(h, twiddled), odd_sign);
        let rev = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b00_01_10_11>(_mm256_castps_pd(
            rev,
        )));
        _mm256_storeu_ps(base.add(2 * k), out);
        _mm256_storeu_ps(base.add(2 * (half - k - 3)), rev);
    }
    4 * groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use realfft::RealFftPlanner;

    /// Bit for bit realfft's output, for the STFT sizes the workloads use and sizes whose
    /// twiddle count leaves scalar pairs or has a centre bin or not; a NaN-poisoned output
    /// shows any bin left unwritten.
    #[test]
    fn equals_realfft_bit_for_bit() {
        let mut planner = RealFftPlanner::<f32>::new();
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        for n in [
            2usize, 4, 6, 10, 16, 18, 30, 34, 64, 200, 256, 400, 512, 1024,
        ] {
            let ours = RealFft::new(n);
            let theirs = planner.plan_fft_forward(n);
            for _ in 0..4 {
                let x: Vec<f32> = (0..n)
                    .map(|_| {
                        s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                        (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
                    })
                    .collect();
                let mut want = theirs.make_output_vec();
                theirs.process(&mut x.clone(), &mut want).unwrap();
                let mut got = vec![Complex32::new(f32::NAN, f32::NAN); n / 2 + 1];
                let mut scratch = vec![Complex32::default(); ours.scratch_len()];
                ours.process(&mut x.clone(), &mut got, &mut scratch);
                for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        g.re.to_bits() == w.re.to_bits() && g.im.to_bits() == w.im.to_bits(),
                        "n {n} bin {k}: {g} vs realfft's {w}"
                    );
                }
            }
        }
    }
}

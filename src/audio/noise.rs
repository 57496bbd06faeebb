//! Standard normal noise for `Dither`, vectorized: Box–Muller on blocks of 32-bit uniforms.
//!
//! For `n` bits (n even), pair `i < n/2` takes `u1 = (b[i] + 1) / 2^32` in (0, 1] and
//! `u2 = b[i + n/2] / 2^32` in [0, 1), and gives `r·cos(2π·u2)` at `i` and `r·sin(2π·u2)` at
//! `i + n/2`, `r = √(−2·ln u1)`. The log is [`super::ln::ln_normal`] (within 2 ulp); sine and
//! cosine of a turn fraction come from a quadrant split and Taylor polynomials on [0, π/2)
//! (error < 1e-7). Contiguous halves instead of interleaved pairs let the compiler use full
//! vector registers; every operation is a plain IEEE one, so the AVX2 and baseline copies agree.

const SCALE: f32 = 1.0 / 4_294_967_296.0;

/// `(sin 2πu, cos 2πu)` for `u` in [0, 1).
#[inline(always)]
pub(crate) fn sin_cos_turns(u: f32) -> (f32, f32) {
    let quarters = u * 4.0;
    let q = (quarters as u32).min(3);
    let x = (quarters - q as f32) * std::f32::consts::FRAC_PI_2;
    let z = x * x;
    // sin x = x − x³/3! + … − x¹¹/11!, cos x = 1 − x²/2! + … + x¹²/12!, x in [0, π/2).
    let s = x
        * (1.0
            + z * (-1.0 / 6.0
                + z * (1.0 / 120.0
                    + z * (-1.0 / 5040.0 + z * (1.0 / 362_880.0 + z * (-1.0 / 39_916_800.0))))));
    let c = 1.0
        + z * (-0.5
            + z * (1.0 / 24.0
                + z * (-1.0 / 720.0
                    + z * (1.0 / 40_320.0
                        + z * (-1.0 / 3_628_800.0 + z * (1.0 / 479_001_600.0))))));
    // Rotate by the quadrant: θ = q·π/2 + x.
    match q {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

crate::simd::with_avx2! {
    /// Standard normals from `bits` (see the module docs); `out.len() == bits.len()`, even.
    pub(crate) fn normals_from_bits(bits: &[u32], out: &mut [f32]) {
        assert!(bits.len() == out.len() && bits.len().is_multiple_of(2));
        let half = bits.len() / 2;
        let (b1, b2) = bits.split_at(half);
        let (cos_out, sin_out) = out.split_at_mut(half);
        for (((&a, &b), c), s) in b1.iter().zip(b2).zip(cos_out).zip(sin_out) {
            let u1 = ((a as f32 + 1.0) * SCALE).min(1.0);
            let r = (-2.0 * super::ln::ln_normal(u1)).sqrt();
            let (sin, cos) = sin_cos_turns(b as f32 * SCALE);
            *c = r * cos;
            *s = r * sin;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sine_and_cosine_of_a_turn_within_2e_7() {
        let mut worst = 0f64;
        for i in 0..=100_000u32 {
            let u = (i as f32 / 100_000.0).min(0.999_999_9);
            let (s, c) = sin_cos_turns(u);
            let t = 2.0 * std::f64::consts::PI * f64::from(u);
            worst = worst
                .max((f64::from(s) - t.sin()).abs())
                .max((f64::from(c) - t.cos()).abs());
        }
        assert!(worst < 2e-7, "worst error {worst:e}");
    }

    #[test]
    fn normals_are_standard_normal_and_use_every_bit_pair() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let bits: Vec<u32> = (0..400_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u32
            })
            .collect();
        let mut z = vec![f32::NAN; bits.len()];
        normals_from_bits(&bits, &mut z);
        let values: Vec<f64> = z.iter().map(|&v| f64::from(v)).collect();
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let within_1sd = values.iter().filter(|v| v.abs() < 1.0).count() as f64 / n;
        let beyond_3sd = values.iter().filter(|v| v.abs() > 3.0).count() as f64 / n;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "variance {var}");
        assert!(
            (within_1sd - 0.6827).abs() < 0.005,
            "{within_1sd} within one sd"
        );
        assert!(
            (beyond_3sd - 0.0027).abs() < 0.0005,
            "{beyond_3sd} beyond 3 sd"
        );
        assert!(values.iter().all(|v| v.is_finite()));
        // The two halves are the cosine and sine of one angle: r² = c² + s².
        let (c, s) = z.split_at(z.len() / 2);
        let u1 = ((bits[0] as f32 + 1.0) * SCALE).min(1.0);
        let r2 = -2.0 * f64::from(u1).ln();
        assert!(
            (f64::from(c[0]).powi(2) + f64::from(s[0]).powi(2) - r2).abs() < 1e-5 * r2.max(1.0)
        );
    }
}

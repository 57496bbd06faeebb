//! `ln(x + eps)` over a slice, vectorized: the `Log` operator takes the log of every mel value
//! (80 × 100 per second of audio), and libm's scalar `logf` was 6% of asr-val's CPU time.
//!
//! Cephes' `logf` method: `x = m · 2^e` with `m` in [√½, √2), `ln x = e·ln 2 + ln(1 + f)`,
//! `f = m − 1`, `ln(1 + f)` by its degree-9 minimax polynomial, `ln 2` split in two parts so
//! `e·ln 2` adds exactly. Error within 2 ulp of the true value for positive normal inputs
//! (tested against f64 `ln`); zero, negative, subnormal, infinite and NaN inputs go to libm, so
//! they give its values (−∞, NaN, …). Every operation is a plain IEEE one in a fixed order, so the
//! AVX2 copy and the baseline copy give the same bits.

const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const POLY: [f32; 9] = [
    7.037_683_6e-2,
    -1.151_461e-1,
    1.167_699_9e-1,
    -1.242_014_1e-1,
    1.424_932_3e-1,
    -1.666_805_8e-1,
    2.000_071_4e-1,
    -2.499_999_4e-1,
    3.333_333e-1,
];

/// `ln(v)` for a positive normal finite `v` (other inputs give a wrong value, which the caller
/// replaces).
#[inline(always)]
pub(crate) fn ln_normal(v: f32) -> f32 {
    let bits = v.to_bits();
    // m in [0.5, 1): the mantissa with the exponent of 0.5.
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
    let e = ((bits >> 23) & 0xff) as i32 - 126;
    let low = m < SQRT_HALF;
    let e = (e - i32::from(low)) as f32;
    let f = if low { m + m - 1.0 } else { m - 1.0 };
    let z = f * f;
    let mut p = POLY[0];
    for c in &POLY[1..] {
        p = p * f + c;
    }
    let y = p * f * z + LN2_LO * e - 0.5 * z;
    (f + y) + LN2_HI * e
}

crate::simd::with_avx2! {
    /// `v ← ln(v + eps)` for every element.
    pub fn ln_plus(data: &mut [f32], eps: f32) {
        let mut chunks = data.chunks_exact_mut(8);
        for chunk in &mut chunks {
            let chunk: &mut [f32; 8] = chunk.try_into().unwrap();
            let x = chunk.map(|v| v + eps);
            let mut special = false;
            for (v, &x) in chunk.iter_mut().zip(&x) {
                special |= !is_normal(x);
                *v = ln_normal(x);
            }
            if special {
                // Rare (silence gives eps, not zero): libm for the odd inputs.
                fix_special(chunk, &x);
            }
        }
        for v in chunks.into_remainder() {
            let x = *v + eps;
            *v = if is_normal(x) { ln_normal(x) } else { x.ln() };
        }
    }
}

#[inline(always)]
fn is_normal(x: f32) -> bool {
    (f32::MIN_POSITIVE..f32::INFINITY).contains(&x)
}

#[cold]
fn fix_special(out: &mut [f32], x: &[f32]) {
    for (v, &x) in out.iter_mut().zip(x) {
        if !is_normal(x) {
            *v = x.ln();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    /// Within 2 ulp of the correctly rounded f64 `ln` over every binade of the normal range
    /// (random mantissas) and the values around 1, √½ and √2 where the reduction switches.
    #[test]
    fn within_two_ulp_of_the_true_log() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 41) as u32
        };
        let mut values: Vec<f32> = (1..=254u32)
            .flat_map(|e| (0..64).map(move |_| e))
            .map(|e| f32::from_bits((e << 23) | (next() & 0x007f_ffff)))
            .collect();
        for centre in [
            1.0f32,
            std::f32::consts::FRAC_1_SQRT_2,
            std::f32::consts::SQRT_2,
        ] {
            let b = centre.to_bits();
            values.extend((b - 300..b + 300).map(f32::from_bits));
        }
        let mut got = values.clone();
        ln_plus(&mut got, 0.0);
        let mut worst = 0;
        for (&x, &g) in values.iter().zip(&got) {
            // The vectorized copy gives the scalar formula's bits.
            assert_eq!(g.to_bits(), ln_normal(x).to_bits(), "ln({x:e})");
            let want = f64::from(x).ln() as f32;
            worst = worst.max(ulps(g, want));
            assert!(ulps(g, want) <= 2, "ln({x:e}) = {g:e}, want {want:e}");
        }
        assert!(worst >= 1, "compared against something that is not the log");
    }

    #[test]
    fn odd_inputs_give_libms_values_and_eps_is_added_first() {
        let inputs = [
            0.0f32,
            -0.0,
            -1.0,
            1e-40,
            f32::INFINITY,
            f32::NAN,
            2.0,
            3.0,
            0.5,
            7.0,
        ];
        for eps in [0.0f32, 2f32.powi(-24)] {
            let mut got = inputs;
            ln_plus(&mut got, eps);
            for (&x, &g) in inputs.iter().zip(&got) {
                let want = (x + eps).ln();
                let same = g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan());
                let close = ulps(g, want) <= 2;
                assert!(same || close, "ln({x:e} + {eps:e}) = {g:e}, want {want:e}");
            }
            assert_eq!(got[0], eps.ln());
        }
    }
}

//! GaussianBlur (torchvision semantics): a `kernel`-tap Gaussian with per-sample sigma drawn
//! uniformly from `sigma`, reflect padding, computed in f32 and rounded half-to-even to u8.
//! The 2-D kernel is separable; the CPU path runs a horizontal then a vertical pass. Taps whose
//! normalised weight is below 1e-7 are skipped (their total contribution is < 0.003 of a level).

use super::image_op::{check_probability, check_range, drawn, ImageOperator};
use super::spec::{Commute, OpKind, OpSpec, SizeRule};
use super::{OpParams, Scratch};
use crate::backend::wgpu::ImageStage;
use crate::rng::Uniform;
use crate::simd::with_avx2;
use crate::tensor::Image;

#[derive(Debug, Clone, PartialEq)]
pub struct GaussianBlur {
    pub kernel_size: u32,
    pub sigma: (f32, f32),
    /// Probability the blur is applied (RandomApply); 1.0 for plain GaussianBlur.
    pub p: f32,
}

/// torchvision `_get_gaussian_kernel1d`: `exp(-x²/2σ²)` on `linspace(-(k-1)/2, (k-1)/2, k)`,
/// normalised to sum 1.
pub fn gaussian_kernel(kernel_size: u32, sigma: f32) -> Vec<f32> {
    let half = (kernel_size as f32 - 1.0) * 0.5;
    let pdf: Vec<f32> = (0..kernel_size)
        .map(|i| {
            let x = -half + i as f32;
            (-0.5 * (x / sigma) * (x / sigma)).exp()
        })
        .collect();
    let sum: f32 = pdf.iter().sum();
    pdf.into_iter().map(|p| p / sum).collect()
}

/// Index of `i` in `0..n` under reflect padding (edge pixel not repeated).
#[inline]
pub fn reflect(i: i64, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as i64 - 1);
    let m = i.rem_euclid(period);
    (if m < n as i64 { m } else { period - m }) as usize
}

/// Round half to even and saturate to u8. Adding and subtracting 2^23 rounds to the nearest
/// integer (ties to even) in IEEE arithmetic; unlike `round_ties_even` this vectorises on
/// baseline x86-64.
#[inline(always)]
pub fn round_half_even_u8(v: f32) -> u8 {
    const MAGIC: f32 = 8_388_608.0; // 2^23
    ((v.clamp(0.0, 255.0) + MAGIC) - MAGIC) as u8
}

impl GaussianBlur {
    pub fn new(kernel_size: u32, sigma: (f32, f32)) -> Self {
        GaussianBlur {
            kernel_size,
            sigma,
            p: 1.0,
        }
    }

    pub fn with_probability(mut self, p: f32) -> Self {
        self.p = p;
        self
    }
}

impl ImageOperator for GaussianBlur {
    fn spec(&self) -> OpSpec {
        OpSpec::image_op(OpKind::GaussianBlur, SizeRule::Same, true).commuting(&[
            (OpKind::RandomHorizontalFlip, Commute::Exact),
            (OpKind::RandomGrayscale, Commute::Approx),
        ])
    }

    fn validate(&self) -> Result<(), String> {
        check_probability(self.p)?;
        if self.kernel_size.is_multiple_of(2) {
            return Err(format!("kernel size {} must be odd", self.kernel_size));
        }
        check_range("sigma", (f64::from(self.sigma.0), f64::from(self.sigma.1)))
    }

    fn draw_params(&self, rng: &mut dyn Uniform, _width: u32, _height: u32) -> OpParams {
        OpParams::Blur(self.draw(rng))
    }

    fn apply_params(&self, params: &OpParams, image: &mut Image, scratch: &mut Scratch) {
        if let OpParams::Blur(Some(sigma)) = params {
            self.apply(*sigma, image, &mut scratch.floats)
        }
    }

    fn gpu_stage(&self, params: &[OpParams]) -> Option<ImageStage> {
        let sigmas = drawn(params, "GaussianBlur", |p| match p {
            OpParams::Blur(s) => Some(*s),
            _ => None,
        });
        Some(ImageStage::Blur {
            sigmas,
            kernel_size: self.kernel_size,
        })
    }
}

impl GaussianBlur {
    /// Sigma for this sample, or None when RandomApply skips it. Both numbers are always drawn.
    pub fn draw(&self, rng: &mut (impl Uniform + ?Sized)) -> Option<f32> {
        let apply = rng.bernoulli(f64::from(self.p));
        let sigma = rng.uniform(f64::from(self.sigma.0), f64::from(self.sigma.1)) as f32;
        apply.then_some(sigma)
    }

    pub fn apply(&self, sigma: f32, image: &mut Image, floats: &mut Vec<f32>) {
        let kernel = gaussian_kernel(self.kernel_size, sigma);
        let half = (kernel.len() / 2) as i64;
        // Only taps that matter: (offset from centre, weight).
        let taps: Vec<(i64, f32)> = kernel
            .iter()
            .enumerate()
            .filter(|(_, w)| **w >= 1e-7)
            .map(|(i, w)| (i as i64 - half, *w))
            .collect();
        if image.width == 0 || image.height == 0 {
            return;
        }
        blur_separable(image, &taps, floats);
    }
}

with_avx2! {
/// Horizontal then vertical pass of `taps` over `image`, with reflect padding.
fn blur_separable(image: &mut Image, taps: &[(i64, f32)], floats: &mut Vec<f32>) {
    let (w, h) = (image.width as usize, image.height as usize);
    let reach = taps.iter().map(|t| t.0.unsigned_abs() as usize).max().unwrap_or(0);
    let row_len = w * 3;
    // Layout of `floats`: [horizontal result: h rows][one padded source row][one output row].
    let padded_len = (w + 2 * reach) * 3;
    floats.clear();
    floats.resize(h * row_len + padded_len + row_len, 0.0);
    let (horizontal, rest) = floats.split_at_mut(h * row_len);
    let (padded, out_row) = rest.split_at_mut(padded_len);

    for y in 0..h {
        let src = &image.data[y * row_len..(y + 1) * row_len];
        for (d, s) in padded[reach * 3..reach * 3 + row_len].iter_mut().zip(src) {
            *d = f32::from(*s);
        }
        // Reflected borders: only 2·reach pixels per row need the index arithmetic.
        for px in (0..reach).chain(w + reach..w + 2 * reach) {
            let sx = reflect(px as i64 - reach as i64, w) * 3;
            for c in 0..3 {
                padded[px * 3 + c] = f32::from(src[sx + c]);
            }
        }
        // Centre tap, then each symmetric pair summed before weighting: a mirrored row gives
        // the mirrored result bit for bit, so the blur commutes exactly with a flip.
        let dst = &mut horizontal[y * row_len..(y + 1) * row_len];
        dst.fill(0.0);
        for &(off, wt) in taps.iter().filter(|t| t.0 >= 0) {
            let right = ((reach as i64 + off) * 3) as usize;
            let left = ((reach as i64 - off) * 3) as usize;
            let (l, r) = (&padded[left..left + row_len], &padded[right..right + row_len]);
            if off == 0 {
                for (d, s) in dst.iter_mut().zip(r) {
                    *d += wt * s;
                }
            } else {
                for ((d, a), b) in dst.iter_mut().zip(l).zip(r) {
                    *d += wt * (a + b);
                }
            }
        }
    }
    for y in 0..h {
        out_row.fill(0.0);
        for &(off, wt) in taps {
            let sy = reflect(y as i64 + off, h);
            let src = &horizontal[sy * row_len..(sy + 1) * row_len];
            for (d, s) in out_row.iter_mut().zip(src) {
                *d += wt * s;
            }
        }
        let dst = &mut image.data[y * row_len..(y + 1) * row_len];
        for (d, s) in dst.iter_mut().zip(out_row.iter()) {
            *d = round_half_even_u8(*s);
        }
    }
}
}

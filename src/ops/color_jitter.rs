//! ColorJitter with torchvision's definitions (uint8 tensor path), optionally wrapped in
//! RandomApply(p):
//! - brightness f: `clamp(f·x)`;
//! - contrast f: `clamp(f·x + (1−f)·mean(gray(img)))`;
//! - saturation f: `clamp(f·x + (1−f)·gray(pixel))`;
//! - hue h: RGB→HSV, `H = (H + h) mod 1`, HSV→RGB, back to u8 as `⌊x·255.999⌋`.
//!
//! Clamp is to [0, 255] followed by truncation, computed in f32. The four adjustments run
//! in a per-sample random order (torch.randperm(4)).

use super::grayscale::grayscale_value;
use super::image_op::{check_probability, drawn, ImageOperator};
use super::spec::{Commute, OpKind, OpSpec, SizeRule};
use super::{OpParams, Scratch};
use crate::backend::wgpu::ImageStage;
use crate::rng::Uniform;
use crate::simd::with_avx2;
use crate::tensor::Image;

#[derive(Debug, Clone, PartialEq)]
pub struct ColorJitter {
    /// Factor ranges; `None` leaves that adjustment out.
    pub brightness: Option<(f32, f32)>,
    pub contrast: Option<(f32, f32)>,
    pub saturation: Option<(f32, f32)>,
    pub hue: Option<(f32, f32)>,
    /// Probability the whole jitter is applied (RandomApply); 1.0 for plain ColorJitter.
    pub p: f32,
}

/// Per-sample parameters: which adjustments, in which order, with which factors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JitterParams {
    pub apply: bool,
    /// Adjustment indices 0 brightness, 1 contrast, 2 saturation, 3 hue, in application order.
    pub order: [u8; 4],
    /// Factor per adjustment index; `None` when that adjustment is disabled.
    pub factors: [Option<f32>; 4],
}

/// torchvision's range for a non-negative jitter strength `s`: `[max(0, 1 − s), 1 + s]`.
fn factor_range(s: f32) -> Option<(f32, f32)> {
    (s > 0.0).then(|| ((1.0 - s).max(0.0), 1.0 + s))
}

impl ColorJitter {
    /// `ColorJitter(brightness, contrast, saturation, hue)` as torchvision takes them.
    pub fn new(brightness: f32, contrast: f32, saturation: f32, hue: f32) -> Self {
        ColorJitter {
            brightness: factor_range(brightness),
            contrast: factor_range(contrast),
            saturation: factor_range(saturation),
            hue: (hue > 0.0).then_some((-hue, hue)),
            p: 1.0,
        }
    }

    /// Apply with probability `p` (torchvision `RandomApply([ColorJitter(..)], p)`).
    pub fn with_probability(mut self, p: f32) -> Self {
        self.p = p;
        self
    }
}

impl ImageOperator for ColorJitter {
    fn spec(&self) -> OpSpec {
        OpSpec::image_op(OpKind::ColorJitter, SizeRule::Same, true).commuting(&[
            (OpKind::RandomHorizontalFlip, Commute::Exact),
            (OpKind::RandomResizedCrop, Commute::Approx),
        ])
    }

    fn validate(&self) -> Result<(), String> {
        check_probability(self.p)?;
        for (name, r) in [
            ("brightness", self.brightness),
            ("contrast", self.contrast),
            ("saturation", self.saturation),
        ] {
            if let Some((lo, hi)) = r {
                if !(lo >= 0.0 && lo <= hi && hi.is_finite()) {
                    return Err(format!(
                        "{name} factors ({lo}, {hi}) must satisfy 0 <= low <= high"
                    ));
                }
            }
        }
        match self.hue {
            Some((lo, hi)) if !(-0.5 <= lo && lo <= hi && hi <= 0.5) => {
                Err(format!("hue shifts ({lo}, {hi}) must lie in [-0.5, 0.5]"))
            }
            _ => Ok(()),
        }
    }

    fn draw_params(&self, rng: &mut dyn Uniform, _width: u32, _height: u32) -> OpParams {
        OpParams::Jitter(self.draw(rng))
    }

    fn apply_params(&self, params: &OpParams, image: &mut Image, _scratch: &mut Scratch) {
        if let OpParams::Jitter(p) = params {
            apply(p, image)
        }
    }

    fn gpu_stage(&self, params: &[OpParams]) -> Option<ImageStage> {
        Some(ImageStage::Jitter(drawn(
            params,
            "ColorJitter",
            |p| match p {
                OpParams::Jitter(j) => Some(*j),
                _ => None,
            },
        )))
    }
}

impl ColorJitter {
    pub fn draw(&self, rng: &mut (impl Uniform + ?Sized)) -> JitterParams {
        let apply = rng.bernoulli(f64::from(self.p));
        let mut order = [0u8, 1, 2, 3];
        for i in (1..4).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut factors = [None; 4];
        let ranges = [self.brightness, self.contrast, self.saturation, self.hue];
        for (f, range) in factors.iter_mut().zip(ranges) {
            // Always draw, so later parameters do not shift when one adjustment is disabled.
            let u = rng.next_f64() as f32;
            *f = range.map(|(lo, hi)| lo + (hi - lo) * u);
        }
        JitterParams {
            apply,
            order,
            factors,
        }
    }
}

/// Apply drawn jitter parameters to an image.
pub fn apply(params: &JitterParams, image: &mut Image) {
    if !params.apply {
        return;
    }
    for &index in &params.order {
        let Some(f) = params.factors[index as usize] else {
            continue;
        };
        match index {
            0 => adjust_brightness(image, f),
            1 => adjust_contrast(image, f),
            2 => adjust_saturation(image, f),
            _ => adjust_hue(image, f),
        }
    }
}

#[inline]
fn blend(x: f32, other: f32, ratio: f32) -> u8 {
    (ratio * x + (1.0 - ratio) * other).clamp(0.0, 255.0) as u8
}

/// Apply a per-value function through a 256-entry table (exact: the result depends on x only).
fn map_through_table(image: &mut Image, f: impl Fn(f32) -> u8) {
    let table: [u8; 256] = std::array::from_fn(|x| f(x as f32));
    for v in image.data.iter_mut() {
        *v = table[*v as usize];
    }
}

pub fn adjust_brightness(image: &mut Image, factor: f32) {
    map_through_table(image, |x| blend(x, 0.0, factor));
}

/// Mean of the truncated grayscale image, as torchvision's contrast uses.
pub fn mean_gray(image: &Image) -> f32 {
    let sum: u64 = image
        .data
        .chunks_exact(3)
        .map(|p| u64::from(grayscale_value(p[0], p[1], p[2])))
        .sum();
    let n = (image.data.len() / 3).max(1);
    (sum as f64 / n as f64) as f32
}

pub fn adjust_contrast(image: &mut Image, factor: f32) {
    let mean = mean_gray(image);
    map_through_table(image, |x| blend(x, mean, factor));
}

/// Pixels per block: the kernels below de-interleave a block into planes so that the
/// per-pixel arithmetic is branch-free and the compiler vectorises it.
const BLOCK: usize = 64;

/// Run `f` over blocks of pixels as separate R, G, B planes (f32, 0–255), writing results back
/// with `store`.
#[inline(always)]
fn for_each_block(
    image: &mut Image,
    mut f: impl FnMut(&mut [f32; BLOCK], &mut [f32; BLOCK], &mut [f32; BLOCK]),
    store: impl Fn(f32) -> u8,
) {
    let (mut r, mut g, mut b) = ([0f32; BLOCK], [0f32; BLOCK], [0f32; BLOCK]);
    for chunk in image.data.chunks_mut(BLOCK * 3) {
        let n = chunk.len() / 3;
        for (i, px) in chunk.chunks_exact(3).enumerate() {
            (r[i], g[i], b[i]) = (f32::from(px[0]), f32::from(px[1]), f32::from(px[2]));
        }
        f(&mut r, &mut g, &mut b);
        for (i, px) in chunk.chunks_exact_mut(3).enumerate().take(n) {
            px[0] = store(r[i]);
            px[1] = store(g[i]);
            px[2] = store(b[i]);
        }
    }
}

with_avx2! {
pub fn adjust_saturation(image: &mut Image, factor: f32) {
    let blend_plane = |x: &mut [f32; BLOCK], gray: &[f32; BLOCK]| {
        for (v, l) in x.iter_mut().zip(gray) {
            *v = (factor * *v + (1.0 - factor) * l).clamp(0.0, 255.0);
        }
    };
    for_each_block(
        image,
        |r, g, b| {
            // Truncated luma, exactly as `grayscale_value` computes it.
            let gray: [f32; BLOCK] = std::array::from_fn(|i| {
                (0.2989f32 * r[i] + 0.587f32 * g[i] + 0.114f32 * b[i]) as i32 as f32
            });
            blend_plane(r, &gray);
            blend_plane(g, &gray);
            blend_plane(b, &gray);
        },
        |v| v as u8,
    );
}
}

with_avx2! {
pub fn adjust_hue(image: &mut Image, shift: f32) {
    for_each_block(
        image,
        |r, g, b| {
            for i in 0..BLOCK {
                let [h, s, v] = rgb_to_hsv([r[i] / 255.0, g[i] / 255.0, b[i] / 255.0]);
                let [ro, go, bo] = hsv_to_rgb([wrap_unit(h + shift), s, v]);
                r[i] = ro * 255.999;
                g[i] = go * 255.999;
                b[i] = bo * 255.999;
            }
        },
        |v| v.clamp(0.0, 255.0) as u8,
    );
}
}

/// `x mod 1` for x in [-1, 2), as `x - floor(x)` (exact in that range). Written with selects
/// rather than `floor`, which is a libm call (no vector form) on baseline x86-64.
#[inline(always)]
fn wrap_unit(x: f32) -> f32 {
    let floor = if x < 0.0 {
        -1.0
    } else if x >= 1.0 {
        1.0
    } else {
        0.0
    };
    x - floor
}

/// torchvision `_rgb2hsv` for one pixel, in f32, written branch-free (selects) so it
/// vectorises.
#[inline(always)]
pub fn rgb_to_hsv([r, g, b]: [f32; 3]) -> [f32; 3] {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let eqc = maxc == minc;
    let cr = maxc - minc;
    let s = cr / if eqc { 1.0 } else { maxc };
    let div = if eqc { 1.0 } else { cr };
    let (rc, gc, bc) = ((maxc - r) / div, (maxc - g) / div, (maxc - b) / div);
    let from_g_or_b = if maxc == g {
        2.0 + rc - bc
    } else {
        4.0 + gc - rc
    };
    let h = if maxc == r { bc - gc } else { from_g_or_b };
    // (h/6 + 1) mod 1: the argument is in [5/6, 11/6), where x - floor(x) is exact.
    [wrap_unit(h / 6.0 + 1.0), s, maxc]
}

/// torchvision `_hsv2rgb` for one pixel, in f32, branch-free.
#[inline(always)]
pub fn hsv_to_rgb([h, s, v]: [f32; 3]) -> [f32; 3] {
    let i = (h * 6.0) as i32 as f32; // floor, as h ≥ 0
    let f = h * 6.0 - i;
    let p = (v * (1.0 - s)).clamp(0.0, 1.0);
    let q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
    let t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0);
    // Sector i mod 6 (i is 6 only when h rounded up to 1.0).
    let sector = if i >= 6.0 { i - 6.0 } else { i };
    // Select by sector without branches: each table row is (r, g, b) for sectors 0..5.
    let (mut r, mut g, mut b) = (v, t, p);
    let sel =
        |k: f32, cond_r: f32, cond_g: f32, cond_b: f32, r: &mut f32, g: &mut f32, b: &mut f32| {
            if sector == k {
                (*r, *g, *b) = (cond_r, cond_g, cond_b);
            }
        };
    sel(1.0, q, v, p, &mut r, &mut g, &mut b);
    sel(2.0, p, v, t, &mut r, &mut g, &mut b);
    sel(3.0, p, q, v, &mut r, &mut g, &mut b);
    sel(4.0, t, p, v, &mut r, &mut g, &mut b);
    sel(5.0, v, p, q, &mut r, &mut g, &mut b);
    [r, g, b]
}

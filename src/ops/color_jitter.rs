//! ColorJitter with torchvision's definitions (uint8 tensor path), optionally wrapped in
//! RandomApply(p):
//! - brightness f: `clamp(f·x)`;
//! - contrast f: `clamp(f·x + (1−f)·mean(gray(img)))`;
//! - saturation f: `clamp(f·x + (1−f)·gray(pixel))`;
//! - hue h: RGB→HSV, `H = (H + h) mod 1`, HSV→RGB, back to u8 as `⌊x·255.999⌋`;
//! where clamp is to [0, 255] followed by truncation, computed in f32. The four adjustments run
//! in a per-sample random order (torch.randperm(4)).

use super::grayscale::grayscale_value;
use super::spec::{Commute, OpKind, OpSpec, SizeRule};
use crate::rng::Uniform;
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

    pub fn spec(&self) -> OpSpec {
        OpSpec::image_op(OpKind::ColorJitter, SizeRule::Same, true).commuting(&[
            (OpKind::RandomHorizontalFlip, Commute::Exact),
            (OpKind::RandomResizedCrop, Commute::Approx),
        ])
    }

    pub fn draw(&self, rng: &mut impl Uniform) -> JitterParams {
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

pub fn adjust_saturation(image: &mut Image, factor: f32) {
    for px in image.data.chunks_exact_mut(3) {
        let g = f32::from(grayscale_value(px[0], px[1], px[2]));
        for v in px.iter_mut() {
            *v = blend(f32::from(*v), g, factor);
        }
    }
}

pub fn adjust_hue(image: &mut Image, shift: f32) {
    for px in image.data.chunks_exact_mut(3) {
        let rgb = [px[0], px[1], px[2]].map(|v| f32::from(v) / 255.0);
        let [h, s, v] = rgb_to_hsv(rgb);
        let h = (h + shift).rem_euclid(1.0);
        let out = hsv_to_rgb([h, s, v]);
        for (o, c) in px.iter_mut().zip(out) {
            *o = (c * 255.999).clamp(0.0, 255.0) as u8;
        }
    }
}

/// torchvision `_rgb2hsv` for one pixel, in f32.
pub fn rgb_to_hsv([r, g, b]: [f32; 3]) -> [f32; 3] {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let eqc = maxc == minc;
    let cr = maxc - minc;
    let s = cr / if eqc { 1.0 } else { maxc };
    let div = if eqc { 1.0 } else { cr };
    let (rc, gc, bc) = ((maxc - r) / div, (maxc - g) / div, (maxc - b) / div);
    let h = if maxc == r {
        bc - gc
    } else if maxc == g {
        2.0 + rc - bc
    } else {
        4.0 + gc - rc
    };
    let h = (h / 6.0 + 1.0) % 1.0;
    [h, s, maxc]
}

/// torchvision `_hsv2rgb` for one pixel, in f32.
pub fn hsv_to_rgb([h, s, v]: [f32; 3]) -> [f32; 3] {
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let p = (v * (1.0 - s)).clamp(0.0, 1.0);
    let q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
    let t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0);
    match (i as i32).rem_euclid(6) {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

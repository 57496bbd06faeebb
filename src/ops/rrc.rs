//! RandomResizedCrop with torchvision's parameter sampling: up to 10 attempts at a random area
//! fraction in `scale` and log-uniform aspect ratio in `ratio`; then the central fallback.

use super::image_op::{apply_crop, check_range, check_size, crop_stage, ImageOperator};
use super::resample::CropBox;
use super::spec::{Commute, OpKind, OpSpec, SizeRule};
use super::{OpParams, Scratch};
use crate::backend::wgpu::ImageStage;
use crate::rng::Uniform;
use crate::tensor::Image;

#[derive(Debug, Clone, PartialEq)]
pub struct RandomResizedCrop {
    pub height: u32,
    pub width: u32,
    pub scale: (f64, f64),
    pub ratio: (f64, f64),
}

impl RandomResizedCrop {
    /// Square output of side `size`, torchvision's defaults (scale 0.08–1, ratio 3/4–4/3).
    pub fn new(size: u32) -> Self {
        RandomResizedCrop {
            height: size,
            width: size,
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
        }
    }
}

impl ImageOperator for RandomResizedCrop {
    fn spec(&self) -> OpSpec {
        OpSpec::image_op(
            OpKind::RandomResizedCrop,
            SizeRule::Fixed {
                height: self.height,
                width: self.width,
            },
            true,
        )
        .commuting(&[
            (OpKind::RandomGrayscale, Commute::Approx),
            (OpKind::ColorJitter, Commute::Approx),
        ])
    }

    fn validate(&self) -> Result<(), String> {
        check_size(self.height, self.width)?;
        check_range("scale", self.scale)?;
        if self.scale.1 > 1.0 {
            return Err(format!("scale upper bound {} exceeds 1", self.scale.1));
        }
        check_range("ratio", self.ratio)
    }

    fn draw_params(&self, rng: &mut dyn Uniform, width: u32, height: u32) -> OpParams {
        OpParams::Crop(self.draw(rng, width, height))
    }

    fn apply_params(&self, params: &OpParams, image: &mut Image, scratch: &mut Scratch) {
        apply_crop(params, image, scratch)
    }

    fn gpu_stage(&self, params: &[OpParams]) -> Option<ImageStage> {
        Some(crop_stage(params, "RandomResizedCrop"))
    }
}

impl RandomResizedCrop {
    /// torchvision `RandomResizedCrop.get_params` (Python `round` is round-half-to-even).
    pub fn draw(&self, rng: &mut (impl Uniform + ?Sized), width: u32, height: u32) -> CropBox {
        let (w_in, h_in) = (f64::from(width), f64::from(height));
        let area = w_in * h_in;
        let (log_lo, log_hi) = (self.ratio.0.ln(), self.ratio.1.ln());
        let out = |left: f64, top: f64, w: f64, h: f64| CropBox {
            left,
            top,
            width: w,
            height: h,
            out_width: self.width,
            out_height: self.height,
        };
        for _ in 0..10 {
            let target_area = area * rng.uniform(self.scale.0, self.scale.1);
            let aspect = rng.uniform(log_lo, log_hi).exp();
            let w = (target_area * aspect).sqrt().round_ties_even();
            let h = (target_area / aspect).sqrt().round_ties_even();
            if 0.0 < w && w <= w_in && 0.0 < h && h <= h_in {
                let top = rng.below((h_in - h) as u64 + 1) as f64;
                let left = rng.below((w_in - w) as u64 + 1) as f64;
                return out(left, top, w, h);
            }
        }
        // Fallback: the largest central crop with the ratio clamped into range.
        let in_ratio = w_in / h_in;
        let (w, h) = if in_ratio < self.ratio.0.min(self.ratio.1) {
            (
                w_in,
                (w_in / self.ratio.0.min(self.ratio.1)).round_ties_even(),
            )
        } else if in_ratio > self.ratio.0.max(self.ratio.1) {
            (
                (h_in * self.ratio.0.max(self.ratio.1)).round_ties_even(),
                h_in,
            )
        } else {
            (w_in, h_in)
        };
        out(((w_in - w) / 2.0).floor(), ((h_in - h) / 2.0).floor(), w, h)
    }
}

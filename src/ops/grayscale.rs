//! RandomGrayscale: with probability `p`, replace RGB by luma (ITU-R 601-2 weights, torchvision's
//! `rgb_to_grayscale`, truncated to u8), kept as 3 equal channels.

use super::image_op::{applied, check_probability, ImageOperator};
use super::spec::{Commute, OpKind, OpSpec, SizeRule};
use super::{OpParams, Scratch};
use crate::backend::wgpu::ImageStage;
use crate::rng::Uniform;
use crate::tensor::Image;

#[derive(Debug, Clone, PartialEq)]
pub struct RandomGrayscale {
    pub p: f32,
}

impl RandomGrayscale {
    pub fn new(p: f32) -> Self {
        RandomGrayscale { p }
    }
}

impl ImageOperator for RandomGrayscale {
    fn spec(&self) -> OpSpec {
        OpSpec::image_op(OpKind::RandomGrayscale, SizeRule::Same, true).commuting(&[
            (OpKind::RandomHorizontalFlip, Commute::Exact),
            (OpKind::CenterCrop, Commute::Exact),
            (OpKind::RandomResizedCrop, Commute::Approx),
            (OpKind::Resize, Commute::Approx),
            (OpKind::GaussianBlur, Commute::Approx),
        ])
    }

    fn validate(&self) -> Result<(), String> {
        check_probability(self.p)
    }

    fn draw_params(&self, rng: &mut dyn Uniform, _width: u32, _height: u32) -> OpParams {
        OpParams::Apply(rng.bernoulli(f64::from(self.p)))
    }

    fn apply_params(&self, params: &OpParams, image: &mut Image, _scratch: &mut Scratch) {
        if *params == OpParams::Apply(true) {
            apply(image)
        }
    }

    fn gpu_stage(&self, params: &[OpParams]) -> Option<ImageStage> {
        Some(ImageStage::Grayscale(applied(params)))
    }
}

/// Luma of one pixel as torchvision computes it on uint8 tensors (float32, then truncation).
#[inline]
pub fn grayscale_value(r: u8, g: u8, b: u8) -> u8 {
    (0.2989f32 * f32::from(r) + 0.587f32 * f32::from(g) + 0.114f32 * f32::from(b)) as u8
}

pub fn apply(image: &mut Image) {
    for px in image.data.chunks_exact_mut(3) {
        let l = grayscale_value(px[0], px[1], px[2]);
        px.fill(l);
    }
}

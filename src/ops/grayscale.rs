//! RandomGrayscale: with probability `p`, replace RGB by luma (ITU-R 601-2 weights, torchvision's
//! `rgb_to_grayscale`, truncated to u8), kept as 3 equal channels.

use super::image_op::AppliedWithProbability;
use super::spec::{Commute, OpKind, OpSpec, SizeRule};
use crate::backend::wgpu::ImageStage;
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

impl AppliedWithProbability for RandomGrayscale {
    fn declared(&self) -> OpSpec {
        OpSpec::image_op(OpKind::RandomGrayscale, SizeRule::Same, true).commuting(&[
            (OpKind::RandomHorizontalFlip, Commute::Exact),
            (OpKind::CenterCrop, Commute::Exact),
            (OpKind::RandomResizedCrop, Commute::Approx),
            (OpKind::Resize, Commute::Approx),
            (OpKind::GaussianBlur, Commute::Approx),
        ])
    }

    fn probability(&self) -> f32 {
        self.p
    }

    fn kernel(image: &mut Image) {
        apply(image)
    }

    fn stage(applies: Vec<bool>) -> ImageStage {
        ImageStage::Grayscale(applies)
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

//! Resize so that the shorter side is `size` (torchvision `Resize(int)`), keeping the aspect ratio.

use super::image_op::{apply_crop, check_size, crop_stage, ImageOperator};
use super::resample::CropBox;
use super::spec::{Commute, OpKind, OpSpec, SizeRule};
use super::{OpParams, Scratch};
use crate::backend::wgpu::ImageStage;
use crate::rng::Uniform;
use crate::tensor::Image;

#[derive(Debug, Clone, PartialEq)]
pub struct Resize {
    pub shorter_side: u32,
}

impl Resize {
    pub fn new(shorter_side: u32) -> Self {
        Resize { shorter_side }
    }
}

impl ImageOperator for Resize {
    fn spec(&self) -> OpSpec {
        OpSpec::image_op(
            OpKind::Resize,
            SizeRule::ShorterSide {
                size: self.shorter_side,
            },
            false,
        )
        .commuting(&[
            (OpKind::RandomGrayscale, Commute::Approx),
            (OpKind::RandomHorizontalFlip, Commute::Approx),
        ])
    }

    fn validate(&self) -> Result<(), String> {
        check_size(self.shorter_side, self.shorter_side)
    }

    fn draw_params(&self, _rng: &mut dyn Uniform, width: u32, height: u32) -> OpParams {
        OpParams::Crop(self.crop_box(width, height))
    }

    fn apply_params(&self, params: &OpParams, image: &mut Image, scratch: &mut Scratch) {
        apply_crop(params, image, scratch)
    }

    fn gpu_stage(&self, params: &[OpParams]) -> Option<ImageStage> {
        Some(crop_stage(params, "Resize"))
    }
}

impl Resize {
    /// Output (width, height): the long side is truncated, as torchvision does.
    pub fn output_size(&self, width: u32, height: u32) -> (u32, u32) {
        let s = u64::from(self.shorter_side);
        if width <= height {
            let long = (s * u64::from(height) / u64::from(width.max(1))) as u32;
            (self.shorter_side, long.max(1))
        } else {
            let long = (s * u64::from(width) / u64::from(height.max(1))) as u32;
            (long.max(1), self.shorter_side)
        }
    }

    pub fn crop_box(&self, width: u32, height: u32) -> CropBox {
        let (w, h) = self.output_size(width, height);
        CropBox::whole(width, height, w, h)
    }
}

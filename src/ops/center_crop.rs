//! CenterCrop (torchvision semantics): offsets `round((in - out) / 2)`; an image smaller than the
//! crop is zero-padded, centred.

use super::image_op::{check_size, ImageOperator};
use super::spec::{Commute, OpKind, OpSpec, SizeRule};
use super::{OpParams, Scratch};
use crate::backend::wgpu::ImageStage;
use crate::tensor::Image;

#[derive(Debug, Clone, PartialEq)]
pub struct CenterCrop {
    pub height: u32,
    pub width: u32,
}

/// Offset of the crop inside the source (positive) or of the source inside the padded output
/// (negative), along one axis.
pub fn center_offset(input: u32, output: u32) -> i64 {
    if input >= output {
        (f64::from(input - output) / 2.0).round_ties_even() as i64
    } else {
        -(i64::from(output - input) / 2)
    }
}

impl CenterCrop {
    pub fn new(size: u32) -> Self {
        CenterCrop {
            height: size,
            width: size,
        }
    }
}

impl ImageOperator for CenterCrop {
    fn spec(&self) -> OpSpec {
        OpSpec::image_op(
            OpKind::CenterCrop,
            SizeRule::Fixed {
                height: self.height,
                width: self.width,
            },
            false,
        )
        .commuting(&[(OpKind::RandomGrayscale, Commute::Exact)])
    }

    fn validate(&self) -> Result<(), String> {
        check_size(self.height, self.width)
    }

    fn output_size(&self, _params: &OpParams, _size: (u32, u32)) -> (u32, u32) {
        (self.width, self.height)
    }

    fn apply_params(&self, _params: &OpParams, image: &mut Image, scratch: &mut Scratch) {
        self.apply(image, &mut scratch.spare);
        std::mem::swap(image, &mut scratch.spare);
    }

    fn gpu_stage(&self, _params: &[OpParams]) -> Option<ImageStage> {
        Some(ImageStage::CenterCrop {
            width: self.width,
            height: self.height,
        })
    }
}

impl CenterCrop {
    pub fn apply(&self, src: &Image, dst: &mut Image) {
        dst.width = self.width;
        dst.height = self.height;
        dst.data.clear();
        dst.data
            .resize(self.width as usize * self.height as usize * 3, 0);
        let dx = center_offset(src.width, self.width);
        let dy = center_offset(src.height, self.height);
        for y in 0..i64::from(self.height) {
            let sy = y + dy;
            if sy < 0 || sy >= i64::from(src.height) {
                continue;
            }
            // Columns where both source and destination are in range.
            let x0 = (-dx).max(0);
            let x1 = i64::from(self.width).min(i64::from(src.width) - dx);
            if x1 <= x0 {
                continue;
            }
            let s = (sy as usize * src.width as usize + (x0 + dx) as usize) * 3;
            let d = (y as usize * self.width as usize + x0 as usize) * 3;
            let n = (x1 - x0) as usize * 3;
            dst.data[d..d + n].copy_from_slice(&src.data[s..s + n]);
        }
    }
}

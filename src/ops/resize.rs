//! Resize so that the shorter side is `size` (torchvision `Resize(int)`), keeping the aspect ratio.

use super::resample::CropBox;
use super::spec::{Commute, OpKind, OpSpec, SizeRule};

#[derive(Debug, Clone, PartialEq)]
pub struct Resize {
    pub shorter_side: u32,
}

impl Resize {
    pub fn new(shorter_side: u32) -> Self {
        Resize { shorter_side }
    }

    pub fn spec(&self) -> OpSpec {
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

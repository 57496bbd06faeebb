//! RandomHorizontalFlip: mirror left-right with probability `p`.

use super::image_op::AppliedWithProbability;
use super::spec::{Commute, OpKind, OpSpec, SizeRule};
use crate::backend::wgpu::ImageStage;
use crate::tensor::Image;

#[derive(Debug, Clone, PartialEq)]
pub struct RandomHorizontalFlip {
    pub p: f32,
}

impl RandomHorizontalFlip {
    pub fn new(p: f32) -> Self {
        RandomHorizontalFlip { p }
    }
}

impl AppliedWithProbability for RandomHorizontalFlip {
    fn declared(&self) -> OpSpec {
        let mut spec = OpSpec::image_op(OpKind::RandomHorizontalFlip, SizeRule::Same, true)
            .commuting(&[
                (OpKind::ColorJitter, Commute::Exact),
                (OpKind::RandomGrayscale, Commute::Exact),
                (OpKind::Normalize, Commute::Exact),
                (OpKind::Cast, Commute::Exact),
                (OpKind::GaussianBlur, Commute::Exact),
                (OpKind::Resize, Commute::Approx),
            ]);
        spec.cpu_fuses_with = vec![OpKind::Normalize, OpKind::Cast];
        spec
    }

    fn probability(&self) -> f32 {
        self.p
    }

    fn kernel(image: &mut Image) {
        flip_in_place(image)
    }

    fn stage(applies: Vec<bool>) -> ImageStage {
        ImageStage::Flip(applies)
    }
}

pub fn flip_in_place(image: &mut Image) {
    let w = image.width as usize;
    for row in image.data.chunks_exact_mut(w * 3) {
        for x in 0..w / 2 {
            let (a, b) = (x * 3, (w - 1 - x) * 3);
            for c in 0..3 {
                row.swap(a + c, b + c);
            }
        }
    }
}

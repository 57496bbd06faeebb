//! RandomHorizontalFlip: mirror left-right with probability `p`.

use super::image_op::{applied, check_probability, ImageOperator};
use super::spec::{Commute, OpKind, OpSpec, SizeRule};
use super::{OpParams, Scratch};
use crate::backend::wgpu::ImageStage;
use crate::rng::Uniform;
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

impl ImageOperator for RandomHorizontalFlip {
    fn spec(&self) -> OpSpec {
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

    fn validate(&self) -> Result<(), String> {
        check_probability(self.p)
    }

    fn draw_params(&self, rng: &mut dyn Uniform, _width: u32, _height: u32) -> OpParams {
        OpParams::Apply(rng.bernoulli(f64::from(self.p)))
    }

    fn apply_params(&self, params: &OpParams, image: &mut Image, _scratch: &mut Scratch) {
        if *params == OpParams::Apply(true) {
            flip_in_place(image)
        }
    }

    fn gpu_stage(&self, params: &[OpParams]) -> Option<ImageStage> {
        Some(ImageStage::Flip(applied(params)))
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

//! What a built-in image operator implements, in its own module: its declaration, its checks,
//! its per-sample draw, its CPU kernel and how a GPU batch applies it. The executor, the
//! planners and the GPU staging ask an operator through this trait instead of matching on
//! operator names; a new image operator is its module, its kernel files and one line in
//! [`builtin_image_ops!`](super) (ops/mod.rs).

use super::{OpParams, OpSpec, Scratch};
use crate::backend::wgpu::{ImageStage, TensorWrite};
use crate::rng::Uniform;
use crate::tensor::Image;

pub trait ImageOperator {
    /// What it declares about itself (kinds in and out, size rule, randomness, commutation,
    /// backends).
    fn spec(&self) -> OpSpec;

    /// Check the configuration; the message says which setting is wrong and why.
    fn validate(&self) -> Result<(), String>;

    /// Draw this sample's parameters for an input of `width`×`height` (deterministic
    /// operators draw nothing).
    fn draw_params(&self, _rng: &mut dyn Uniform, _width: u32, _height: u32) -> OpParams {
        OpParams::None
    }

    /// The (width, height) it gives a sample of `size` with these parameters.
    fn output_size(&self, params: &OpParams, size: (u32, u32)) -> (u32, u32) {
        match params {
            OpParams::Crop(b) => (b.out_width, b.out_height),
            _ => size,
        }
    }

    /// Apply to an image in place with the drawn parameters (out-of-place kernels write
    /// `scratch.spare` and swap). Tensor writers do nothing here: see `tensor_write`.
    fn apply_params(&self, params: &OpParams, image: &mut Image, scratch: &mut Scratch);

    /// How a GPU batch applies it, from each sample's drawn parameters; None for the tensor
    /// write that ends a pipeline (`tensor_write`).
    fn gpu_stage(&self, params: &[OpParams]) -> Option<ImageStage>;

    /// For an operator that turns the image into the batch's tensor (Normalize, Cast): the
    /// affine map, dtype and layout it writes.
    fn tensor_write(&self) -> Option<TensorWrite> {
        None
    }
}

/// An operator applied to each sample with probability `p`, unchanged otherwise
/// (RandomHorizontalFlip, RandomGrayscale): it declares these and gets its [`ImageOperator`].
pub(super) trait AppliedWithProbability {
    fn declared(&self) -> OpSpec;
    fn probability(&self) -> f32;
    /// The CPU kernel, for a sample it applies to.
    fn kernel(image: &mut Image);
    /// The GPU stage, from whether it applies to each sample.
    fn stage(applies: Vec<bool>) -> ImageStage;
}

impl<T: AppliedWithProbability> ImageOperator for T {
    fn spec(&self) -> OpSpec {
        self.declared()
    }

    fn validate(&self) -> Result<(), String> {
        check_probability(self.probability())
    }

    fn draw_params(&self, rng: &mut dyn Uniform, _width: u32, _height: u32) -> OpParams {
        OpParams::Apply(rng.bernoulli(f64::from(self.probability())))
    }

    fn apply_params(&self, params: &OpParams, image: &mut Image, _scratch: &mut Scratch) {
        if *params == OpParams::Apply(true) {
            T::kernel(image)
        }
    }

    fn gpu_stage(&self, params: &[OpParams]) -> Option<ImageStage> {
        Some(T::stage(
            params.iter().map(|p| *p == OpParams::Apply(true)).collect(),
        ))
    }
}

/// `p` is a probability.
pub(super) fn check_probability(p: f32) -> Result<(), String> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(format!("probability {p} is not in [0, 1]"))
    }
}

/// `0 < low <= high`, both finite.
pub(super) fn check_range(what: &str, (lo, hi): (f64, f64)) -> Result<(), String> {
    if lo > 0.0 && lo <= hi && hi.is_finite() {
        Ok(())
    } else {
        Err(format!(
            "{what} range ({lo}, {hi}) must satisfy 0 < low <= high"
        ))
    }
}

/// An output size of at least 1×1.
pub(super) fn check_size(height: u32, width: u32) -> Result<(), String> {
    if height > 0 && width > 0 {
        Ok(())
    } else {
        Err(format!("output size {width}x{height} must be at least 1x1"))
    }
}

/// Each sample's value of one kind of parameter; anything else is a broken invariant (the
/// operator drew these parameters itself).
pub(super) fn drawn<T>(
    params: &[OpParams],
    op: &str,
    pick: impl Fn(&OpParams) -> Option<T>,
) -> Vec<T> {
    params
        .iter()
        .map(|p| pick(p).unwrap_or_else(|| unreachable!("{op} drew {p:?}")))
        .collect()
}

/// Crop and resize by the drawn box (RandomResizedCrop, Resize).
pub(super) fn apply_crop(params: &OpParams, image: &mut Image, scratch: &mut Scratch) {
    if let OpParams::Crop(b) = params {
        scratch.resizer.resize(image, b, &mut scratch.spare);
        std::mem::swap(image, &mut scratch.spare);
    }
}

/// The GPU stage of a crop operator: each sample's box.
pub(super) fn crop_stage(params: &[OpParams], op: &str) -> ImageStage {
    ImageStage::Resample(drawn(params, op, |p| match p {
        OpParams::Crop(b) => Some(*b),
        _ => None,
    }))
}

//! Operators. Each operator is a value (its configuration) that declares its properties in an
//! [`OpSpec`], draws its per-sample random parameters on the host ([`Op::draw`]), and applies
//! them with a CPU kernel. GPU backends will take the same [`OpParams`] as arrays, so a random
//! decision is made once per sample, in one place, whatever runs the kernel.

mod audio;
mod blur;
mod center_crop;
mod color_jitter;
mod decode;
mod flip;
mod grayscale;
pub mod jpeg;
mod normalize;
pub mod resample;
mod resize;
mod rrc;
mod spec;
mod text;
mod user;
mod value;

pub(crate) use audio::mel_bank;
pub use audio::{mask_ranges, stretch_then_norm, AudioOp, DecodeAudio, MaskSpec, MelSpec};
pub use blur::{gaussian_kernel, GaussianBlur};
pub use center_crop::{center_offset, CenterCrop};
pub use color_jitter::{
    adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, ColorJitter, JitterParams,
};
pub use decode::{DecodeImage, DecodeLimits, Decoded, Region};
pub use flip::RandomHorizontalFlip;
pub use grayscale::{grayscale_value, RandomGrayscale};
pub use jpeg::Rect;
pub use normalize::{Cast, Normalize};
pub use resample::CropBox;
pub use resize::Resize;
pub use rrc::RandomResizedCrop;
pub use spec::{Backend, Commute, OpKind, OpSpec, SizeRule, ValueKind};
pub use text::{DecodeText, TextOp};
pub use user::{Operator, UserOp};
pub use value::Value;

use crate::rng::{SampleRng, Uniform};
use crate::tensor::Image;

/// One step of a pipeline, as the user declared it.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    RandomResizedCrop(RandomResizedCrop),
    Resize(Resize),
    CenterCrop(CenterCrop),
    RandomHorizontalFlip(RandomHorizontalFlip),
    ColorJitter(ColorJitter),
    RandomGrayscale(RandomGrayscale),
    GaussianBlur(GaussianBlur),
    Normalize(Normalize),
    Cast(Cast),
    /// A speech operator (audio or spectral features in, the same or features out).
    Audio(AudioOp),
    /// A token-sequence operator.
    Text(TextOp),
    /// A user-defined operator (CPU only, opaque to the optimizer).
    User(UserOp),
}

/// What turns a sample's bytes into the pipeline's first value.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoder {
    Image(DecodeImage),
    Audio(DecodeAudio),
    /// Tokenize text (the sample's bytes, UTF-8).
    Text(DecodeText),
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::Image(DecodeImage::default())
    }
}

impl Decoder {
    pub fn name(&self) -> &'static str {
        match self {
            Decoder::Image(_) => "DecodeImage",
            Decoder::Audio(_) => "DecodeAudio",
            Decoder::Text(_) => "Tokenize",
        }
    }

    /// The kind of value it produces.
    pub fn output(&self) -> ValueKind {
        match self {
            Decoder::Image(_) => ValueKind::ImageU8,
            Decoder::Audio(_) => ValueKind::Audio,
            Decoder::Text(_) => ValueKind::Tokens,
        }
    }
}

/// The random parameters one operator drew for one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OpParams {
    /// Deterministic operator.
    None,
    /// Source region and output size of a crop/resize.
    Crop(CropBox),
    /// Apply (true) or skip the operator for this sample.
    Apply(bool),
    Jitter(JitterParams),
    /// Blur sigma, or None when the operator is skipped for this sample.
    Blur(Option<f32>),
}

/// Per-thread reusable buffers, so steady-state processing does not allocate.
#[derive(Default)]
pub struct Scratch {
    pub spare: Image,
    pub floats: Vec<f32>,
    pub resizer: resample::Resampler,
}

impl Op {
    pub fn spec(&self) -> OpSpec {
        match self {
            Op::RandomResizedCrop(o) => o.spec(),
            Op::Resize(o) => o.spec(),
            Op::CenterCrop(o) => o.spec(),
            Op::RandomHorizontalFlip(o) => o.spec(),
            Op::ColorJitter(o) => o.spec(),
            Op::RandomGrayscale(o) => o.spec(),
            Op::GaussianBlur(o) => o.spec(),
            Op::Normalize(o) => o.spec(),
            Op::Cast(o) => o.spec(),
            Op::Audio(o) => o.spec(),
            Op::Text(o) => o.spec(),
            Op::User(o) => o.spec(),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Op::User(o) => o.name(),
            _ => self.spec().kind.name(),
        }
    }

    /// Check the configuration; the message says which setting is wrong and why.
    pub fn validate(&self) -> Result<(), String> {
        let probability = |p: f32| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(format!("probability {p} is not in [0, 1]"))
            }
        };
        let range = |what: &str, (lo, hi): (f64, f64)| {
            if lo > 0.0 && lo <= hi && hi.is_finite() {
                Ok(())
            } else {
                Err(format!(
                    "{what} range ({lo}, {hi}) must satisfy 0 < low <= high"
                ))
            }
        };
        let size = |h: u32, w: u32| {
            if h > 0 && w > 0 {
                Ok(())
            } else {
                Err(format!("output size {w}x{h} must be at least 1x1"))
            }
        };
        match self {
            Op::RandomResizedCrop(o) => {
                size(o.height, o.width)?;
                range("scale", o.scale)?;
                if o.scale.1 > 1.0 {
                    return Err(format!("scale upper bound {} exceeds 1", o.scale.1));
                }
                range("ratio", o.ratio)
            }
            Op::Resize(o) => size(o.shorter_side, o.shorter_side),
            Op::CenterCrop(o) => size(o.height, o.width),
            Op::RandomHorizontalFlip(o) => probability(o.p),
            Op::RandomGrayscale(o) => probability(o.p),
            Op::ColorJitter(o) => {
                probability(o.p)?;
                for (name, r) in [
                    ("brightness", o.brightness),
                    ("contrast", o.contrast),
                    ("saturation", o.saturation),
                ] {
                    if let Some((lo, hi)) = r {
                        if !(lo >= 0.0 && lo <= hi && hi.is_finite()) {
                            return Err(format!(
                                "{name} factors ({lo}, {hi}) must satisfy 0 <= low <= high"
                            ));
                        }
                    }
                }
                match o.hue {
                    Some((lo, hi)) if !(-0.5 <= lo && lo <= hi && hi <= 0.5) => {
                        Err(format!("hue shifts ({lo}, {hi}) must lie in [-0.5, 0.5]"))
                    }
                    _ => Ok(()),
                }
            }
            Op::GaussianBlur(o) => {
                probability(o.p)?;
                if o.kernel_size % 2 == 0 {
                    return Err(format!("kernel size {} must be odd", o.kernel_size));
                }
                range("sigma", (f64::from(o.sigma.0), f64::from(o.sigma.1)))
            }
            Op::Normalize(o) => match o.std.iter().find(|s| !(**s > 0.0 && s.is_finite())) {
                Some(s) => Err(format!("std {s} must be positive")),
                None => Ok(()),
            },
            Op::Cast(_) => Ok(()),
            Op::Audio(o) => o.validate(),
            Op::Text(o) => o.validate(),
            Op::User(o) => o.validate(),
        }
    }

    /// Draw this operator's parameters for an input image of `width`×`height`.
    pub fn draw(&self, rng: &mut impl Uniform, width: u32, height: u32) -> OpParams {
        match self {
            Op::RandomResizedCrop(o) => OpParams::Crop(o.draw(rng, width, height)),
            Op::Resize(o) => OpParams::Crop(o.crop_box(width, height)),
            Op::CenterCrop(_) => OpParams::None,
            Op::RandomHorizontalFlip(o) => OpParams::Apply(rng.bernoulli(f64::from(o.p))),
            Op::ColorJitter(o) => OpParams::Jitter(o.draw(rng)),
            Op::RandomGrayscale(o) => OpParams::Apply(rng.bernoulli(f64::from(o.p))),
            Op::GaussianBlur(o) => OpParams::Blur(o.draw(rng)),
            // User-defined operators draw from their stream while they run.
            Op::Normalize(_) | Op::Cast(_) | Op::Audio(_) | Op::Text(_) | Op::User(_) => {
                OpParams::None
            }
        }
    }

    /// Apply an image-to-image operator in place (out-of-place kernels use `scratch.spare`).
    /// Tensor-producing operators (Normalize, Cast) are applied by [`Op::write_tensor`].
    pub fn apply_image(&self, params: &OpParams, image: &mut Image, scratch: &mut Scratch) {
        match (self, params) {
            (Op::RandomResizedCrop(_) | Op::Resize(_), OpParams::Crop(b)) => {
                scratch.resizer.resize(image, b, &mut scratch.spare);
                std::mem::swap(image, &mut scratch.spare);
            }
            (Op::CenterCrop(o), _) => {
                o.apply(image, &mut scratch.spare);
                std::mem::swap(image, &mut scratch.spare);
            }
            (Op::RandomHorizontalFlip(_), OpParams::Apply(true)) => flip::flip_in_place(image),
            (Op::ColorJitter(_), OpParams::Jitter(p)) => color_jitter::apply(p, image),
            (Op::RandomGrayscale(_), OpParams::Apply(true)) => grayscale::apply(image),
            (Op::GaussianBlur(o), OpParams::Blur(Some(sigma))) => {
                o.apply(*sigma, image, &mut scratch.floats)
            }
            _ => {}
        }
    }

    /// Draw and apply an image-to-image operator, built-in or user-defined, with the sample's
    /// stream for it; returns what was drawn. Only a user-defined operator can fail.
    pub fn run_image(
        &self,
        rng: &mut SampleRng,
        image: &mut Image,
        scratch: &mut Scratch,
    ) -> Result<OpParams, String> {
        if let Op::User(u) = self {
            u.run_on_image(image, rng)?;
            return Ok(OpParams::None);
        }
        let params = self.draw(rng, image.width, image.height);
        self.apply_image(&params, image, scratch);
        Ok(params)
    }

    /// Whether this operator turns an image into a tensor.
    pub fn produces_tensor(&self) -> bool {
        matches!(self, Op::Normalize(_) | Op::Cast(_))
    }

    /// Write an image as this operator's output tensor into `out` (the sample's slot in the batch).
    /// `flip` mirrors horizontally while writing, which is how the fused CPU path folds a flip
    /// into normalization without a pass of its own.
    pub fn write_tensor(&self, image: &Image, flip: bool, out: &mut [u8]) {
        match self {
            Op::Normalize(n) => n.write(image, flip, out),
            Op::Cast(c) => c.write(image, flip, out),
            _ => unreachable!("{} does not produce a tensor", self.name()),
        }
    }
}

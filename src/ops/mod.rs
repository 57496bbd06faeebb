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
mod image_op;
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
pub use image_op::ImageOperator;
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

/// Declares the built-in image operators: each becomes a variant of [`Op`] holding the
/// operator's struct (named as its kind), a `From` conversion, and an arm of
/// [`Op::image_op`], through which everything else reaches it ([`ImageOperator`]).
macro_rules! builtin_image_ops {
    ($($name:ident),* $(,)?) => {
        /// One step of a pipeline, as the user declared it.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Op {
            $($name($name),)*
            /// A speech operator (audio or spectral features in, the same or features out).
            Audio(AudioOp),
            /// A token-sequence operator.
            Text(TextOp),
            /// A user-defined operator (CPU only, opaque to the optimizer).
            User(UserOp),
        }

        impl Op {
            /// The built-in image operator this is, if it is one.
            pub fn image_op(&self) -> Option<&dyn ImageOperator> {
                match self {
                    $(Op::$name(o) => Some(o),)*
                    Op::Audio(_) | Op::Text(_) | Op::User(_) => None,
                }
            }
        }

        $(impl From<$name> for Op {
            fn from(o: $name) -> Op {
                Op::$name(o)
            }
        })*
    };
}

builtin_image_ops!(
    RandomResizedCrop,
    Resize,
    CenterCrop,
    RandomHorizontalFlip,
    ColorJitter,
    RandomGrayscale,
    GaussianBlur,
    Normalize,
    Cast,
);

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

/// An operator of any family, to dispatch on.
enum Family<'a> {
    Image(&'a dyn ImageOperator),
    Audio(&'a AudioOp),
    Text(&'a TextOp),
    User(&'a UserOp),
}

impl Op {
    fn family(&self) -> Family<'_> {
        match self {
            Op::Audio(o) => Family::Audio(o),
            Op::Text(o) => Family::Text(o),
            Op::User(o) => Family::User(o),
            _ => Family::Image(
                self.image_op()
                    .expect("every other operator is an image one"),
            ),
        }
    }

    pub fn spec(&self) -> OpSpec {
        match self.family() {
            Family::Image(o) => o.spec(),
            Family::Audio(o) => o.spec(),
            Family::Text(o) => o.spec(),
            Family::User(o) => o.spec(),
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
        match self.family() {
            Family::Image(o) => o.validate(),
            Family::Audio(o) => o.validate(),
            Family::Text(o) => o.validate(),
            Family::User(o) => o.validate(),
        }
    }

    /// Draw this operator's parameters for an input image of `width`×`height`. Operators on
    /// other values, and user-defined ones (which draw from their stream while they run), draw
    /// nothing here.
    pub fn draw(&self, rng: &mut impl Uniform, width: u32, height: u32) -> OpParams {
        match self.image_op() {
            Some(o) => o.draw_params(rng, width, height),
            None => OpParams::None,
        }
    }

    /// Apply an image-to-image operator in place (out-of-place kernels use `scratch.spare`).
    /// Tensor-producing operators (Normalize, Cast) are applied by [`Op::write_tensor`].
    pub fn apply_image(&self, params: &OpParams, image: &mut Image, scratch: &mut Scratch) {
        if let Some(o) = self.image_op() {
            o.apply_params(params, image, scratch)
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
        self.image_op().is_some_and(|o| o.tensor_write().is_some())
    }

    /// Write an image as this operator's output tensor into `out` (the sample's slot in the batch).
    /// `flip` mirrors horizontally while writing, which is how the fused CPU path folds a flip
    /// into normalization without a pass of its own.
    pub fn write_tensor(&self, image: &Image, flip: bool, out: &mut [u8]) {
        match self.image_op().and_then(|o| o.tensor_write()) {
            Some(write) => normalize::write_affine(&write, image, flip, out),
            None => unreachable!("{} does not produce a tensor", self.name()),
        }
    }
}

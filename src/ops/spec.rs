//! What an operator declares about itself, so planners never need to know operators by name.

use crate::tensor::{DType, Layout};
use serde::Serialize;

/// Declares the operator kinds and the name each is shown by: adding a kind is one line.
macro_rules! op_kinds {
    ($($(#[$doc:meta])* $kind:ident => $name:literal,)*) => {
        /// Operator kinds, without configuration: the vocabulary of commutation facts.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        pub enum OpKind {
            $($(#[$doc])* $kind,)*
        }

        impl OpKind {
            pub fn name(self) -> &'static str {
                match self {
                    $(OpKind::$kind => $name,)*
                }
            }
        }
    };
}

op_kinds! {
    Decode => "DecodeImage",
    RandomResizedCrop => "RandomResizedCrop",
    Resize => "Resize",
    CenterCrop => "CenterCrop",
    RandomHorizontalFlip => "RandomHorizontalFlip",
    ColorJitter => "ColorJitter",
    RandomGrayscale => "RandomGrayscale",
    GaussianBlur => "GaussianBlur",
    Normalize => "Normalize",
    Cast => "Cast",
    DecodeAudio => "DecodeAudio",
    AudioResample => "Resample",
    Dither => "Dither",
    PreEmphasis => "PreEmphasis",
    Spectrogram => "Spectrogram",
    MelScale => "MelScale",
    Log => "Log",
    FeatureNormalize => "FeatureNormalize",
    FrequencyMasking => "FrequencyMasking",
    TimeMasking => "TimeMasking",
    TimeStretch => "TimeStretch",
    ComplexNorm => "ComplexNorm",
    Tokenize => "Tokenize",
    Truncate => "Truncate",
    AddSpecialTokens => "AddSpecialTokens",
    MlmMask => "MlmMask",
    Pack => "Pack",
    EmbeddingLookup => "EmbeddingLookup",
    /// A user-defined operator ([`crate::ops::UserOp`]); its own name is the operator's.
    User => "user-defined operator",
}

/// How two operators commute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Commute {
    /// Same bytes in either order.
    Exact,
    /// Equal up to rounding or resampling; reordered only when the user allows it.
    Approx,
}

/// What flows between operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ValueKind {
    Encoded,
    /// 8-bit RGB, HWC, any size.
    ImageU8,
    Tensor {
        dtype: DType,
        layout: Layout,
    },
    /// f32 PCM, channels × samples, with its sample rate.
    Audio,
    /// f32 spectral features `[bins, frames]`.
    Features,
    /// A complex STFT `[bins, frames]` (what a phase vocoder works on).
    Complex,
    /// Token ids `[tokens]`.
    Tokens,
    /// f32 embedding vectors `[tokens, dim]`.
    Embeddings,
}

/// Output size as a function of the input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SizeRule {
    Same,
    /// Always `height`×`width`: makes the batch dense from here on.
    Fixed {
        height: u32,
        width: u32,
    },
    /// Shorter side becomes `size`, aspect kept: output is ragged.
    ShorterSide {
        size: u32,
    },
    /// Depends on the data (decode).
    DataDependent,
}

impl SizeRule {
    /// Output (width, height) for an input of `w`×`h`, where known.
    pub fn apply(self, w: u32, h: u32) -> Option<(u32, u32)> {
        match self {
            SizeRule::Same => Some((w, h)),
            SizeRule::Fixed { height, width } => Some((width, height)),
            SizeRule::ShorterSide { size } => Some(crate::ops::Resize::new(size).output_size(w, h)),
            SizeRule::DataDependent => None,
        }
    }
}

/// Where an operator can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Backend {
    Cpu,
    Cuda,
    Wgpu,
}

/// Everything an operator declares about itself.
#[derive(Debug, Clone, Serialize)]
pub struct OpSpec {
    pub kind: OpKind,
    pub input: ValueKind,
    pub output: ValueKind,
    pub size: SizeRule,
    /// Bytes out per pixel of output (3 for RGB u8, 12 for f32 RGB).
    pub bytes_per_output_pixel: usize,
    /// Draws random numbers (from its own stream keyed by its declared position).
    pub random: bool,
    /// Operators this one commutes with, and how.
    pub commutes_with: Vec<(OpKind, Commute)>,
    pub backends: Vec<Backend>,
    /// Neighbours it fuses with on the CPU (the next operator's kind).
    pub cpu_fuses_with: Vec<OpKind>,
}

impl OpSpec {
    pub fn commutes(&self, other: OpKind) -> Option<Commute> {
        self.commutes_with
            .iter()
            .find(|(k, _)| *k == other)
            .map(|(_, c)| *c)
    }

    /// Every backend: the CPU threads and both GPU backends' kernels (the built-in image
    /// operators have all three).
    pub const ALL_BACKENDS: [Backend; 3] = [Backend::Cpu, Backend::Wgpu, Backend::Cuda];

    /// Whether a GPU backend has a kernel for it (placement keeps the others on the CPU).
    pub fn runs_on_gpu(&self) -> bool {
        self.backends.iter().any(|b| *b != Backend::Cpu)
    }

    /// A built-in u8 image operator with the given size rule (a kernel on every backend).
    pub fn image_op(kind: OpKind, size: SizeRule, random: bool) -> Self {
        OpSpec {
            kind,
            input: ValueKind::ImageU8,
            output: ValueKind::ImageU8,
            size,
            bytes_per_output_pixel: 3,
            random,
            commutes_with: Vec::new(),
            backends: Self::ALL_BACKENDS.to_vec(),
            cpu_fuses_with: Vec::new(),
        }
    }

    pub fn commuting(mut self, facts: &[(OpKind, Commute)]) -> Self {
        self.commutes_with = facts.to_vec();
        self
    }
}

//! User-defined operators: a closure or a trait object with a declared spec, run on CPU threads
//! like a built-in. The optimizer treats one as opaque: it never moves one unless the user
//! declared what it commutes with, never fuses it, and keeps it (and everything before it) off
//! the GPU. A random one draws from its own counter-RNG stream, keyed by its declared position,
//! so its draws depend only on (seed, epoch, sample) — not on threads, batch size or placement.

use super::spec::{Backend, Commute, OpKind, OpSpec, SizeRule, ValueKind};
use super::Value;
use crate::rng::SampleRng;
use crate::tensor::Image;
use std::sync::Arc;

/// What a user-defined operator does to one sample's value. Implemented for every
/// `Fn(&mut Value, &mut SampleRng) -> Result<(), String> + Send + Sync` closure. The error
/// message says what about the sample is unusable; sluice adds the sample and the operator.
pub trait Operator: Send + Sync {
    fn apply(&self, value: &mut Value, rng: &mut SampleRng) -> Result<(), String>;
}

impl<F> Operator for F
where
    F: Fn(&mut Value, &mut SampleRng) -> Result<(), String> + Send + Sync,
{
    fn apply(&self, value: &mut Value, rng: &mut SampleRng) -> Result<(), String> {
        self(value, rng)
    }
}

/// A user-defined operator and its declaration.
///
/// ```
/// use sluice::ops::{SizeRule, UserOp, Value, ValueKind};
/// use sluice::rng::{SampleRng, Uniform};
///
/// // Add uniform noise of up to ±8 levels to each pixel; same size out as in.
/// let noise = UserOp::new("PixelNoise", ValueKind::ImageU8, ValueKind::ImageU8,
///     |v: &mut Value, rng: &mut SampleRng| {
///         let Value::Image(image) = v else { return Err("expected an image".into()) };
///         for p in &mut image.data {
///             *p = (f64::from(*p) + rng.uniform(-8.0, 8.0)).round().clamp(0.0, 255.0) as u8;
///         }
///         Ok(())
///     })
///     .random(true)
///     .size(SizeRule::Same);
/// assert_eq!(noise.name(), "PixelNoise");
/// ```
#[derive(Clone)]
pub struct UserOp {
    name: Arc<str>,
    input: ValueKind,
    output: ValueKind,
    size: SizeRule,
    random: bool,
    commutes_with: Vec<(OpKind, Commute)>,
    body: Arc<dyn Operator>,
}

impl UserOp {
    /// An operator taking `input` and giving `output`: deterministic, of data-dependent size
    /// (declare [`SizeRule::Same`] or a fixed size with [`UserOp::size`] to keep batches dense),
    /// commuting with nothing.
    pub fn new(
        name: impl Into<String>,
        input: ValueKind,
        output: ValueKind,
        body: impl Operator + 'static,
    ) -> Self {
        UserOp {
            name: Arc::from(name.into()),
            input,
            output,
            size: SizeRule::DataDependent,
            random: false,
            commutes_with: Vec::new(),
            body: Arc::new(body),
        }
    }

    /// Declare that it draws random numbers: it gets its own stream, like a built-in. A
    /// deterministic operator's output may be cached across epochs; a random one's never is.
    pub fn random(mut self, yes: bool) -> Self {
        self.random = yes;
        self
    }

    /// Declare the output image size as a function of the input's (images only). sluice checks
    /// the declaration on every sample: a broken one is an error naming the sample.
    pub fn size(mut self, rule: SizeRule) -> Self {
        self.size = rule;
        self
    }

    /// Declare that it may trade places with a built-in operator of `kind` (exactly, or up to
    /// rounding when the user allows approximate reorders).
    pub fn commutes_with(mut self, kind: OpKind, how: Commute) -> Self {
        self.commutes_with.push((kind, how));
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn spec(&self) -> OpSpec {
        let image = self.output == ValueKind::ImageU8;
        OpSpec {
            kind: OpKind::User,
            input: self.input,
            output: self.output,
            size: if image {
                self.size
            } else {
                SizeRule::DataDependent
            },
            bytes_per_output_pixel: if image { 3 } else { 4 },
            random: self.random,
            commutes_with: self.commutes_with.clone(),
            backends: vec![Backend::Cpu],
            cpu_fuses_with: Vec::new(),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        use ValueKind::{Audio, Complex, Features, ImageU8};
        if self.name.trim().is_empty() {
            return Err("a user-defined operator needs a name".into());
        }
        match (self.input, self.output) {
            (ImageU8, ImageU8) | (Audio | Features | Complex, Audio | Features | Complex) => {}
            (i, o) => {
                return Err(format!(
                    "takes {i:?} and gives {o:?}: user-defined operators map an image to an \
                     image, or audio/features/complex spectra to one of those"
                ))
            }
        }
        if self.input != ImageU8 && self.size != SizeRule::DataDependent {
            return Err("a size rule applies to images only".into());
        }
        if let Some((kind, _)) = self
            .commutes_with
            .iter()
            .find(|(k, _)| matches!(k, OpKind::User | OpKind::Decode | OpKind::DecodeAudio))
        {
            return Err(format!(
                "declares it commutes with {kind:?}: commutations name built-in operators that \
                 follow decode"
            ));
        }
        Ok(())
    }

    /// Run on `value` (of the declared input kind) and check what comes back: the declared
    /// output kind, a consistent value, and (images) the declared size.
    pub fn run(&self, value: &mut Value, rng: &mut SampleRng) -> Result<(), String> {
        let before = match value {
            Value::Image(i) => Some((i.width, i.height)),
            _ => None,
        };
        self.body.apply(value, rng)?;
        if value.kind() != self.output {
            return Err(format!(
                "returned {:?}, but it declares {:?}",
                value.kind(),
                self.output
            ));
        }
        value.check()?;
        if let (Some((w, h)), Value::Image(out)) = (before, &*value) {
            let declared = self.size.apply(w, h);
            if declared.is_some_and(|d| d != (out.width, out.height)) {
                let (dw, dh) = declared.unwrap();
                return Err(format!(
                    "made a {}x{} image from {w}x{h}, but its size rule says {dw}x{dh}",
                    out.width, out.height
                ));
            }
        }
        Ok(())
    }

    /// [`UserOp::run`] on an image, in place (the image moves in and out, no copy).
    pub fn run_on_image(&self, image: &mut Image, rng: &mut SampleRng) -> Result<(), String> {
        let mut value = Value::Image(std::mem::take(image));
        self.run(&mut value, rng)?;
        let Value::Image(out) = value else {
            unreachable!("run checked the output kind")
        };
        *image = out;
        Ok(())
    }
}

impl std::fmt::Debug for UserOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "UserOp({:?}: {:?} -> {:?}{})",
            self.name,
            self.input,
            self.output,
            if self.random { ", random" } else { "" }
        )
    }
}

/// Two declarations are equal when they run the same body with the same declaration.
impl PartialEq for UserOp {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.body, &other.body)
            && self.name == other.name
            && (self.input, self.output, self.size, self.random)
                == (other.input, other.output, other.size, other.random)
            && self.commutes_with == other.commutes_with
    }
}

//! The value a pipeline carries from one operator to the next. Each variant is one
//! [`ValueKind`]; operators declare which kind they take and give, `build()` checks the chain,
//! and user-defined operators ([`super::UserOp`]) receive and return these.

use super::spec::ValueKind;
use crate::audio::{Audio, Features, Spectrum};
use crate::tensor::Image;
use crate::text::{Embedded, Tokens};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// 8-bit RGB, HWC.
    Image(Image),
    /// f32 PCM, channels × samples, with its sample rate.
    Audio(Audio),
    /// f32 spectral features `[bins, frames]`.
    Features(Features),
    /// A complex STFT `[bins, frames]`.
    Complex(Spectrum),
    /// Token ids.
    Tokens(Tokens),
    /// Embedding vectors `[tokens, dim]`.
    Embedded(Embedded),
}

impl Default for Value {
    fn default() -> Self {
        Value::Audio(Audio::default())
    }
}

impl Value {
    pub fn kind(&self) -> ValueKind {
        match self {
            Value::Image(_) => ValueKind::ImageU8,
            Value::Audio(_) => ValueKind::Audio,
            Value::Features(_) => ValueKind::Features,
            Value::Complex(_) => ValueKind::Complex,
            Value::Tokens(_) => ValueKind::Tokens,
            Value::Embedded(_) => ValueKind::Embeddings,
        }
    }

    /// The output tensor's shape: `[height, width, 3]`, `[channels, samples]`,
    /// `[bins, frames]`, `[tokens]` or `[tokens, dim]`.
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Value::Image(i) => vec![i.height as usize, i.width as usize, Image::CHANNELS],
            Value::Audio(a) => vec![a.channels.len(), a.frames()],
            Value::Features(f) => vec![f.bins, f.frames],
            Value::Complex(c) => vec![c.bins, c.frames],
            Value::Tokens(t) => vec![t.ids.len()],
            Value::Embedded(e) => vec![e.tokens, e.dim],
        }
    }

    /// Write a value of 32-bit elements (f32 audio, features or embeddings; token ids as i32,
    /// then their labels and their offsets' pairs if they have any; row-major, little-endian)
    /// into `out`, which is
    /// `4 * len_f32()` bytes.
    pub fn write_f32(&self, out: &mut [u8]) {
        let mut chunks = out.chunks_exact_mut(4);
        let mut put = |v: &f32| chunks.next().unwrap().copy_from_slice(&v.to_le_bytes());
        match self {
            Value::Audio(a) => a.channels.iter().flatten().for_each(&mut put),
            Value::Features(f) => f.data.iter().for_each(&mut put),
            Value::Embedded(e) => e.data.iter().for_each(&mut put),
            Value::Tokens(t) => {
                let words = t
                    .ids
                    .iter()
                    .map(|&id| id as i32)
                    .chain(t.labels.iter().copied())
                    .chain(t.offsets.iter().flatten().map(|&o| o as i32));
                for (o, w) in out.chunks_exact_mut(4).zip(words) {
                    o.copy_from_slice(&w.to_le_bytes());
                }
            }
            Value::Image(_) | Value::Complex(_) => {
                unreachable!("only 32-bit values are written (build() checks the output kind)")
            }
        }
    }

    /// 32-bit words [`Value::write_f32`] writes: the shape's elements (token ids: and labels).
    pub fn len_f32(&self) -> usize {
        match self {
            Value::Tokens(t) => t.ids.len() + t.labels.len() + 2 * t.offsets.len(),
            _ => self.shape().iter().product(),
        }
    }

    /// Whether the value is internally consistent (what a user-defined operator hands back is
    /// checked with this before anything indexes it).
    pub fn check(&self) -> Result<(), String> {
        match self {
            Value::Image(i) => {
                let want = i.width as usize * i.height as usize * Image::CHANNELS;
                if i.data.len() != want {
                    return Err(format!(
                        "a {}x{} image has {} bytes, not {want}",
                        i.width,
                        i.height,
                        i.data.len()
                    ));
                }
            }
            Value::Audio(a) => {
                let frames = a.frames();
                if a.channels.iter().any(|c| c.len() != frames) {
                    return Err("audio channels of different lengths".into());
                }
                if a.rate == 0 && frames > 0 {
                    return Err("audio with a sample rate of 0 Hz".into());
                }
            }
            Value::Features(f) => matrix_holds("features", f.bins, f.frames, f.data.len())?,
            Value::Complex(c) => {
                matrix_holds("a complex spectrum", c.bins, c.frames, c.data.len())?
            }
            Value::Tokens(t) => {
                if let Some(id) = t.ids.iter().find(|&&id| id > i32::MAX as u32) {
                    return Err(format!("token id {id} does not fit the batch's i32 ids"));
                }
                if !t.labels.is_empty() && t.labels.len() != t.ids.len() {
                    return Err(format!(
                        "{} token ids with {} labels: give one label per id or none",
                        t.ids.len(),
                        t.labels.len()
                    ));
                }
                if !t.offsets.is_empty() && t.offsets.len() != t.ids.len() {
                    return Err(format!(
                        "{} token ids with {} offsets: give one span per id or none",
                        t.ids.len(),
                        t.offsets.len()
                    ));
                }
            }
            Value::Embedded(e) => matrix_holds("embeddings", e.tokens, e.dim, e.data.len())?,
        }
        Ok(())
    }
}

/// A `[bins, frames]` matrix must hold exactly `bins × frames` values.
fn matrix_holds(what: &str, bins: usize, frames: usize, len: usize) -> Result<(), String> {
    if len == bins * frames {
        Ok(())
    } else {
        Err(format!(
            "{what} [{bins}, {frames}] hold {len} values, not {}",
            bins * frames
        ))
    }
}

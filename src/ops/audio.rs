//! Speech operators as pipeline steps: each one's configuration, its declaration (input and
//! output kind, randomness) and its application to a sample's audio value, with the arithmetic
//! of [`crate::audio`]. Random ones (Dither, the SpecAugment masks) draw from the sample's own
//! counter-RNG stream, so results do not depend on threads or batch size.

use super::spec::{Backend, OpKind, OpSpec, SizeRule, ValueKind};
use super::Value;
use crate::audio::{
    self, Audio, AudioLimits, ChannelChoice, Features, MaskAxis, MelNorm, MelScale, SpectrogramSpec,
};
use crate::rng::{SampleRng, Uniform};

/// `DecodeAudio`: WAV or FLAC bytes to f32 PCM (see [`audio::decode_audio`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DecodeAudio {
    pub keep: ChannelChoice,
    pub limits: AudioLimits,
}

impl DecodeAudio {
    pub fn decode(&self, bytes: &[u8]) -> Result<Audio, String> {
        audio::decode_audio(bytes.to_vec(), &self.limits, self.keep)
    }
}

/// `MelScale`'s settings (`f_max` None: half the sample rate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MelSpec {
    pub n_mels: usize,
    pub f_min: f64,
    pub f_max: Option<f64>,
    pub scale: MelScale,
    pub norm: MelNorm,
}

/// A SpecAugment mask operator: `count` masks, each at most `min(max_width, max_fraction ·
/// size)` wide (torchaudio's `mask_param` and `p`), filled with `fill`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskSpec {
    pub count: u32,
    pub max_width: f64,
    pub max_fraction: f64,
    pub fill: f32,
}

/// The speech operators.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioOp {
    /// To `rate` Hz (torchaudio's sinc_interp_hann, width 6, rolloff 0.99).
    Resample {
        rate: u32,
    },
    /// Adds `scale` × standard normal noise to every sample.
    Dither {
        scale: f32,
    },
    /// `y[t] = x[t] − coefficient · x[t−1]`.
    PreEmphasis {
        coefficient: f32,
    },
    Spectrogram(SpectrogramSpec),
    MelScale(MelSpec),
    /// `ln(x + eps)`.
    Log {
        eps: f32,
    },
    /// Per bin over the frames: zero mean, unit (unbiased) std + 1e-5.
    FeatureNormalize,
    /// Phase vocoder on the complex STFT (see [`audio::time_stretch`]), its rate drawn per
    /// sample uniformly from `[min_rate, max_rate]` (one rate when they are equal).
    TimeStretch {
        min_rate: f64,
        max_rate: f64,
    },
    /// `|z|^power` of a complex STFT: back to magnitudes (1) or powers (2).
    ComplexNorm {
        power: f32,
    },
    FrequencyMasking(MaskSpec),
    TimeMasking(MaskSpec),
}

impl AudioOp {
    pub fn kind(&self) -> OpKind {
        match self {
            AudioOp::Resample { .. } => OpKind::AudioResample,
            AudioOp::Dither { .. } => OpKind::Dither,
            AudioOp::PreEmphasis { .. } => OpKind::PreEmphasis,
            AudioOp::Spectrogram(_) => OpKind::Spectrogram,
            AudioOp::MelScale(_) => OpKind::MelScale,
            AudioOp::Log { .. } => OpKind::Log,
            AudioOp::FeatureNormalize => OpKind::FeatureNormalize,
            AudioOp::FrequencyMasking(_) => OpKind::FrequencyMasking,
            AudioOp::TimeMasking(_) => OpKind::TimeMasking,
            AudioOp::TimeStretch { .. } => OpKind::TimeStretch,
            AudioOp::ComplexNorm { .. } => OpKind::ComplexNorm,
        }
    }

    /// (input, output) kinds.
    pub fn kinds(&self) -> (ValueKind, ValueKind) {
        use ValueKind::{Audio as A, Complex as C, Features as F};
        match self {
            AudioOp::Resample { .. } | AudioOp::Dither { .. } | AudioOp::PreEmphasis { .. } => {
                (A, A)
            }
            AudioOp::Spectrogram(s) if s.power.is_none() => (A, C),
            AudioOp::Spectrogram(_) => (A, F),
            AudioOp::TimeStretch { .. } => (C, C),
            AudioOp::ComplexNorm { .. } => (C, F),
            _ => (F, F),
        }
    }

    pub fn spec(&self) -> OpSpec {
        let (input, output) = self.kinds();
        OpSpec {
            kind: self.kind(),
            input,
            output,
            size: SizeRule::DataDependent,
            bytes_per_output_pixel: 4,
            random: match self {
                AudioOp::Dither { .. } | AudioOp::FrequencyMasking(_) | AudioOp::TimeMasking(_) => {
                    true
                }
                AudioOp::TimeStretch { min_rate, max_rate } => min_rate != max_rate,
                _ => false,
            },
            commutes_with: Vec::new(),
            backends: if self.has_gpu_kernel() {
                OpSpec::ALL_BACKENDS.to_vec()
            } else {
                vec![Backend::Cpu]
            },
            cpu_fuses_with: Vec::new(),
        }
    }

    /// Whether the spectral kernels (shaders/spectral.wgsl, kernels/spectral.cu) implement it:
    /// the real-valued spectrogram (n_fft a product of 2, 3 and 5 up to
    /// [`crate::backend::wgpu::MAX_FFT`]), mel, log, normalization and the masks.
    pub fn has_gpu_kernel(&self) -> bool {
        match self {
            AudioOp::Spectrogram(s) => {
                matches!(s.power, Some(p) if p == 1.0 || p == 2.0)
                    && crate::backend::wgpu::fft_unsupported(s.n_fft).is_none()
            }
            AudioOp::MelScale(_)
            | AudioOp::Log { .. }
            | AudioOp::FeatureNormalize
            | AudioOp::FrequencyMasking(_)
            | AudioOp::TimeMasking(_) => true,
            _ => false,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let finite = |what: &str, v: f64| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(format!("{what} {v} is not finite"))
            }
        };
        match self {
            AudioOp::Resample { rate } if *rate == 0 => Err("rate 0 Hz".into()),
            AudioOp::Dither { scale } if !(*scale >= 0.0 && scale.is_finite()) => {
                Err(format!("scale {scale} must be >= 0"))
            }
            AudioOp::PreEmphasis { coefficient } => finite("coefficient", f64::from(*coefficient)),
            AudioOp::Spectrogram(s) => {
                if s.n_fft == 0 || s.hop == 0 || s.win_length == 0 || s.win_length > s.n_fft {
                    Err(format!(
                        "n_fft {}, win_length {}, hop {}: need 0 < win_length <= n_fft, hop > 0",
                        s.n_fft, s.win_length, s.hop
                    ))
                } else if !matches!(s.power, None | Some(1.0) | Some(2.0)) {
                    Err(format!(
                        "power {:?} must be 1, 2 or None (complex)",
                        s.power
                    ))
                } else {
                    Ok(())
                }
            }
            AudioOp::MelScale(m) => {
                let f_max = m.f_max.unwrap_or(f64::INFINITY);
                if m.n_mels == 0 || !(m.f_min >= 0.0 && m.f_min < f_max) {
                    Err(format!(
                        "n_mels {} and f_min {} < f_max {f_max} required",
                        m.n_mels, m.f_min
                    ))
                } else {
                    Ok(())
                }
            }
            AudioOp::TimeStretch { min_rate, max_rate }
                if !(*min_rate > 0.0 && min_rate <= max_rate && max_rate.is_finite()) =>
            {
                Err(format!(
                    "rates ({min_rate}, {max_rate}) must satisfy 0 < min <= max"
                ))
            }
            AudioOp::ComplexNorm { power } if !(*power > 0.0 && power.is_finite()) => {
                Err(format!("power {power} must be positive"))
            }
            AudioOp::Log { eps } if !(*eps > 0.0 && eps.is_finite()) => {
                Err(format!("eps {eps} must be positive"))
            }
            AudioOp::FrequencyMasking(m) | AudioOp::TimeMasking(m) => {
                let width_ok = m.max_width >= 0.0; // false for NaN
                let fraction_ok = m.max_fraction > 0.0 && m.max_fraction <= 1.0;
                if !(width_ok && fraction_ok) {
                    Err(format!(
                        "max width {} must be >= 0 and max fraction {} in (0, 1]",
                        m.max_width, m.max_fraction
                    ))
                } else {
                    finite("fill", f64::from(m.fill))
                }
            }
            _ => Ok(()),
        }
    }

    /// Apply to `value` (of this operator's input kind; the pipeline checked the chain), drawing
    /// from `rng` if random. The error says what about the sample is unusable.
    pub fn apply(&self, value: &mut Value, rng: &mut SampleRng) -> Result<(), String> {
        match (self, value) {
            (AudioOp::Resample { rate }, Value::Audio(a)) => {
                if a.rate != *rate {
                    for c in &mut a.channels {
                        *c = audio::resample(c, a.rate, *rate, 6, 0.99);
                    }
                    a.rate = *rate;
                }
            }
            (AudioOp::Dither { scale }, Value::Audio(a)) => {
                for channel in &mut a.channels {
                    dither(channel, *scale, rng);
                }
            }
            (AudioOp::PreEmphasis { coefficient }, Value::Audio(a)) => {
                for c in &mut a.channels {
                    audio::pre_emphasis(c, *coefficient);
                }
            }
            (AudioOp::Spectrogram(spec), v @ Value::Audio(_)) => {
                let Value::Audio(a) = &*v else { unreachable!() };
                if a.channels.len() != 1 {
                    return Err(format!(
                        "{} channels: a spectrogram needs mono audio (DecodeAudio mixes down \
                         unless told to keep the channels)",
                        a.channels.len()
                    ));
                }
                *v = if spec.power.is_none() {
                    let mut c = audio::stft(&a.channels[0], spec)?;
                    c.rate = a.rate;
                    Value::Complex(c)
                } else {
                    let mut f = audio::spectrogram(&a.channels[0], spec)?;
                    f.rate = a.rate;
                    Value::Features(f)
                };
            }
            (AudioOp::MelScale(m), Value::Features(f)) => {
                let nyquist = f64::from(f.rate) / 2.0;
                let f_max = m.f_max.unwrap_or(nyquist);
                if f_max > nyquist {
                    return Err(format!(
                        "f_max {f_max} Hz is above the Nyquist frequency {nyquist} Hz"
                    ));
                }
                let fb = mel_bank(f.bins, f_max, f.rate, m);
                *f = f.project(&fb, m.n_mels);
            }
            (AudioOp::TimeStretch { min_rate, max_rate }, Value::Complex(c)) => {
                *c = audio::time_stretch(c, stretch_rate(*min_rate, *max_rate, rng))?;
            }
            (AudioOp::ComplexNorm { power }, v @ Value::Complex(_)) => {
                let Value::Complex(c) = &*v else {
                    unreachable!()
                };
                *v = Value::Features(audio::complex_norm(c, *power));
            }
            (AudioOp::Log { eps }, Value::Features(f)) => audio::log_compress(f, *eps),
            (AudioOp::FeatureNormalize, Value::Features(f)) => {
                let frames = f.frames;
                audio::feature_normalize(f, frames)
            }
            (AudioOp::FrequencyMasking(m), Value::Features(f)) => {
                mask(f, MaskAxis::Frequency, m, rng)
            }
            (AudioOp::TimeMasking(m), Value::Features(f)) => mask(f, MaskAxis::Time, m, rng),
            (op, v) => {
                return Err(format!(
                    "{} takes {:?}, got {:?}",
                    op.kind().name(),
                    op.kinds().0,
                    v.kind()
                ))
            }
        }
        Ok(())
    }
}

/// The sample's stretch rate: drawn from its stream unless the range is one rate.
fn stretch_rate(min_rate: f64, max_rate: f64, rng: &mut SampleRng) -> f64 {
    if min_rate == max_rate {
        min_rate
    } else {
        rng.uniform(min_rate, max_rate)
    }
}

/// TimeStretch → ComplexNorm as one step (the executor's fusion): the same rate draw, the
/// magnitudes without phases ([`audio::time_stretch_norm`]).
pub fn stretch_then_norm(
    stretch: &AudioOp,
    norm: &AudioOp,
    value: &mut Value,
    rng: &mut SampleRng,
) -> Result<(), String> {
    let (
        AudioOp::TimeStretch { min_rate, max_rate },
        AudioOp::ComplexNorm { power },
        Value::Complex(c),
    ) = (stretch, norm, &*value)
    else {
        unreachable!("the executor fuses TimeStretch → ComplexNorm on a complex STFT only")
    };
    let rate = stretch_rate(*min_rate, *max_rate, rng);
    *value = Value::Features(audio::time_stretch_norm(c, rate, *power)?);
    Ok(())
}

/// (bins, rate, n_mels, f_min bits, f_max bits, scale, norm): everything a filterbank depends on.
type MelKey = (usize, u32, usize, u64, u64, MelScale, MelNorm);
type MelCache = std::sync::Mutex<std::collections::HashMap<MelKey, std::sync::Arc<Vec<f32>>>>;

/// The filterbank for this many bins at this rate, made once (it depends on nothing else).
pub(crate) fn mel_bank(
    bins: usize,
    f_max: f64,
    rate: u32,
    m: &MelSpec,
) -> std::sync::Arc<Vec<f32>> {
    static CACHE: std::sync::OnceLock<MelCache> = std::sync::OnceLock::new();
    // A plain tuple key: this runs once per sample, so no formatting or allocation.
    let key = (
        bins,
        rate,
        m.n_mels,
        m.f_min.to_bits(),
        f_max.to_bits(),
        m.scale,
        m.norm,
    );
    let cache = CACHE.get_or_init(Default::default);
    if let Some(fb) = cache.lock().unwrap().get(&key) {
        return fb.clone();
    }
    let fb = audio::mel_filterbank(bins, m.f_min, f_max, m.n_mels, rate, m.norm, m.scale);
    let fb = std::sync::Arc::new(fb);
    cache.lock().unwrap().insert(key, fb.clone());
    fb
}

fn mask(f: &mut Features, axis: MaskAxis, m: &MaskSpec, rng: &mut impl Uniform) {
    let size = match axis {
        MaskAxis::Frequency => f.bins,
        MaskAxis::Time => f.frames,
    };
    let width = mask_width(m, size);
    for _ in 0..m.count {
        let (u1, u2) = (rng.next_f64(), rng.next_f64());
        audio::mask_along_axis(f, axis, width, u1, u2, m.fill);
    }
}

fn mask_width(m: &MaskSpec, size: usize) -> f64 {
    m.max_width.min(m.max_fraction * size as f64)
}

/// The ranges a mask operator masks along an axis of `size`: the same draws as the CPU path,
/// for the GPU kernels.
pub fn mask_ranges(m: &MaskSpec, size: usize, rng: &mut impl Uniform) -> Vec<(u32, u32)> {
    let width = mask_width(m, size);
    (0..m.count)
        .map(|_| {
            let (u1, u2) = (rng.next_f64(), rng.next_f64());
            let (start, end) = audio::mask_range(size, width, u1, u2);
            (start as u32, end as u32)
        })
        .collect()
}

/// `x += scale · z` with `z` standard normal, one 32-bit draw per sample (rounded up to a whole
/// Philox block of four), turned into normals a block of 256 at a time
/// ([`audio::normals_from_bits`]: Box–Muller, vectorized).
fn dither(channel: &mut [f32], scale: f32, rng: &mut SampleRng) {
    const BLOCK: usize = 256;
    let (mut bits, mut noise) = ([0u32; BLOCK], [0f32; BLOCK]);
    for chunk in channel.chunks_mut(BLOCK) {
        let n = chunk.len().next_multiple_of(4);
        rng.fill_u32(&mut bits[..n]);
        audio::normals_from_bits(&bits[..n], &mut noise[..n]);
        for (x, z) in chunk.iter_mut().zip(&noise) {
            *x += scale * z;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dither_adds_scaled_standard_normal_noise_reproducibly() {
        let op = AudioOp::Dither { scale: 0.5 };
        let run = |len: usize| {
            let mut v = Value::Audio(audio::Audio {
                rate: 16_000,
                channels: vec![vec![1.0; len]],
            });
            op.apply(&mut v, &mut SampleRng::new(1, 2, 3, 4)).unwrap();
            let Value::Audio(a) = v else { unreachable!() };
            a.channels.into_iter().next().unwrap()
        };
        let long = run(100_003);
        assert_eq!(long, run(100_003), "the same stream gives the same noise");
        // A shorter signal is a prefix of the same draws, block by block.
        assert_eq!(long[..512], run(512)[..]);
        let noise: Vec<f64> = long.iter().map(|&x| (f64::from(x) - 1.0) / 0.5).collect();
        let n = noise.len() as f64;
        let mean = noise.iter().sum::<f64>() / n;
        let var = noise.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        assert!(
            mean.abs() < 0.02 && (var - 1.0).abs() < 0.02,
            "mean {mean}, var {var}"
        );
    }
}

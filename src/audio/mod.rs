//! Audio values and the speech operators' CPU arithmetic: decoding (WAV, FLAC), resampling,
//! pre-emphasis, the STFT (complex, magnitude or power), the phase vocoder, mel filterbanks, log and dB compression,
//! per-feature normalization and SpecAugment masks. Each function states its formula; the tests
//! check them against f64 references (a naive DFT, the closed-form mel scales, direct sinc sums).
//!
//! These are the building blocks of the speech workloads (issue 12). The typed pipeline values
//! that carry [`Audio`] and [`Features`] through the executor, batcher and optimizer come next;
//! until then the functions are a library of their own.

mod decode;
mod ln;
mod mel;
mod noise;
mod resample;
mod rfft;
mod spectrogram;
mod stretch;
mod transform;

pub use decode::{decode_audio, AudioLimits, ChannelChoice};
pub use mel::{hz_to_mel, mel_filterbank, mel_to_hz, MelNorm, MelScale};
pub(crate) use noise::normals_from_bits;
pub use resample::resample;
pub use spectrogram::{spectrogram, stft, Padding, SpectrogramSpec, WindowKind};
pub use stretch::{complex_norm, stretched_frames, time_stretch, time_stretch_norm, Spectrum};
pub use transform::{
    amplitude_to_db, feature_normalize, log_compress, mask_along_axis, mask_range, pre_emphasis,
    MaskAxis,
};

/// PCM audio: `channels[c][t]`, every channel the same length, samples in [-1, 1] for integer
/// sources (floating-point files keep their values).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Audio {
    pub rate: u32,
    pub channels: Vec<Vec<f32>>,
}

impl Audio {
    /// Samples per channel.
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }

    /// Length in seconds.
    pub fn seconds(&self) -> f64 {
        self.frames() as f64 / f64::from(self.rate.max(1))
    }
}

/// A feature matrix `[bins, frames]`, row-major (`data[bin * frames + frame]`), with the
/// sample rate of the audio it was computed from (what a mel filterbank needs).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Features {
    pub bins: usize,
    pub frames: usize,
    pub data: Vec<f32>,
    pub rate: u32,
}

impl Features {
    pub fn zeros(bins: usize, frames: usize) -> Self {
        Features {
            bins,
            frames,
            data: vec![0.0; bins * frames],
            rate: 0,
        }
    }

    pub fn at(&self, bin: usize, frame: usize) -> f32 {
        self.data[bin * self.frames + frame]
    }

    pub fn row(&self, bin: usize) -> &[f32] {
        &self.data[bin * self.frames..(bin + 1) * self.frames]
    }

    pub fn row_mut(&mut self, bin: usize) -> &mut [f32] {
        &mut self.data[bin * self.frames..(bin + 1) * self.frames]
    }
}

//! A deterministic speech-like dataset for the audio workloads: voiced stretches (a glottal
//! pulse train's harmonics under three moving formants, with vibrato), unvoiced noise bursts and
//! silences; 1–15 s per file; 8, 16, 22.05, 44.1 or 48 kHz; mono or stereo; 16-bit, 24-bit or
//! float WAV, and a third of the integer files as FLAC. Written as
//! `ROOT/class_NNN/utt_NNNNNN.wav|flac` (the AudioFolder layout). Every file is a pure function
//! of (seed, index).

use crate::error::{Error, Result};
use crate::rng::{SampleRng, Uniform};
use std::path::Path;

#[derive(Debug, Clone)]
pub struct AudioDatasetSpec {
    pub files: usize,
    pub classes: usize,
    pub seed: u64,
    /// Longest file, seconds (files are 1 s to this).
    pub max_seconds: f64,
}

impl Default for AudioDatasetSpec {
    fn default() -> Self {
        AudioDatasetSpec {
            files: 256,
            classes: 10,
            seed: 0,
            max_seconds: 15.0,
        }
    }
}

const RATES: [u32; 5] = [8_000, 16_000, 22_050, 44_100, 48_000];

/// How file `index` is stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudioFormat {
    pub rate: u32,
    pub channels: u16,
    /// 16 or 24 (integer PCM), or 32 (float).
    pub bits: u16,
    pub seconds: f64,
    /// Stored as FLAC (integer PCM only) instead of WAV.
    pub flac: bool,
}

fn format_of(spec: &AudioDatasetSpec, index: u64) -> AudioFormat {
    let mut r = SampleRng::new(spec.seed, 0, index, 1);
    let rate = RATES[(r.next_f64() * RATES.len() as f64) as usize];
    let channels = if r.bernoulli(0.2) { 2 } else { 1 };
    let bits = match r.next_f64() {
        x if x < 0.6 => 16,
        x if x < 0.8 => 24,
        _ => 32,
    };
    let seconds = r.uniform(1.0, spec.max_seconds.max(1.0));
    // Drawn last, so the other properties are those of the WAV-only generator.
    let flac = bits != 32 && r.next_f64() < 1.0 / 3.0;
    AudioFormat {
        rate,
        channels,
        bits,
        seconds,
        flac,
    }
}

/// File `index`'s samples (channel-major planes) and class.
pub fn generate_utterance(
    spec: &AudioDatasetSpec,
    index: u64,
) -> (AudioFormat, Vec<Vec<f32>>, usize) {
    let format = format_of(spec, index);
    let planes = synthesize(&format, spec.seed, index);
    (
        format,
        planes,
        (index % spec.classes.max(1) as u64) as usize,
    )
}

/// The samples (channel-major planes) of an utterance of `format`'s rate, length and channels,
/// a pure function of (seed, index); `generate_utterance` draws the format, the benchmarks
/// choose it.
pub fn synthesize(format: &AudioFormat, seed: u64, index: u64) -> Vec<Vec<f32>> {
    let mut r = SampleRng::new(seed, 0, index, 2);
    let n = (format.seconds * f64::from(format.rate)) as usize;
    let rate = f64::from(format.rate);
    let mut mono = vec![0f32; n];
    // Segments of 80–400 ms: voiced (60%), unvoiced noise (25%) or silence.
    let mut at = 0;
    let base_f0 = r.uniform(90.0, 240.0);
    while at < n {
        let len = ((r.uniform(0.08, 0.4) * rate) as usize).min(n - at);
        let kind = r.next_f64();
        if kind < 0.6 {
            let formants = [
                (r.uniform(300.0, 900.0), r.uniform(300.0, 900.0)),
                (r.uniform(900.0, 2400.0), r.uniform(900.0, 2400.0)),
                (r.uniform(2400.0, 3400.0), r.uniform(2400.0, 3400.0)),
            ];
            let loudness = r.uniform(0.1, 0.5);
            let mut phase = 0.0f64;
            for t in 0..len {
                let u = t as f64 / len.max(1) as f64;
                let f0 = base_f0
                    * (1.0 + 0.03 * (2.0 * std::f64::consts::PI * 5.0 * t as f64 / rate).sin());
                phase += 2.0 * std::f64::consts::PI * f0 / rate;
                let mut v = 0.0;
                for h in 1..=12 {
                    let f = f0 * h as f64;
                    if f >= rate / 2.0 {
                        break;
                    }
                    // Gain: each formant a resonance moving linearly across the segment.
                    let gain: f64 = formants
                        .iter()
                        .map(|(a, b)| {
                            let centre = a + (b - a) * u;
                            1.0 / (1.0 + ((f - centre) / 120.0).powi(2))
                        })
                        .sum();
                    v += gain / h as f64 * (phase * h as f64).sin();
                }
                // Fade in and out over 10 ms to avoid clicks.
                let edge = (t.min(len - 1 - t) as f64 / (0.01 * rate)).min(1.0);
                mono[at + t] = (loudness * edge * v / 3.0) as f32;
            }
        } else if kind < 0.85 {
            let loudness = r.uniform(0.02, 0.15);
            for t in 0..len {
                mono[at + t] = (loudness * r.uniform(-1.0, 1.0)) as f32;
            }
        }
        at += len;
    }
    // A faint noise floor everywhere, so no file is digital silence.
    for v in &mut mono {
        *v = (*v + (1e-3 * r.uniform(-1.0, 1.0)) as f32).clamp(-1.0, 1.0);
    }
    if format.channels == 2 {
        // The second channel: slightly quieter and delayed by 0.5 ms.
        let delay = (0.0005 * rate) as usize;
        let right = (0..n)
            .map(|t| {
                if t >= delay {
                    0.8 * mono[t - delay]
                } else {
                    0.0
                }
            })
            .collect();
        vec![mono, right]
    } else {
        vec![mono]
    }
}

/// A sample in [-1, 1] as `bits`-bit integer PCM (rounded, clamped to the code range).
fn quantize(v: f32, bits: u16) -> i32 {
    let scale = (1i32 << (bits - 1)) as f32;
    (v * scale).round().clamp(-scale, scale - 1.0) as i32
}

/// The file's bytes (WAV or FLAC as `format` says) and its file name extension.
pub fn encode_utterance(
    format: &AudioFormat,
    planes: &[Vec<f32>],
) -> Result<(Vec<u8>, &'static str)> {
    if format.flac {
        Ok((encode_flac(format, planes)?, "flac"))
    } else {
        Ok((encode_wav(format, planes)?, "wav"))
    }
}

/// FLAC bytes of one utterance (integer PCM, flacenc's default encoder settings).
pub fn encode_flac(format: &AudioFormat, planes: &[Vec<f32>]) -> Result<Vec<u8>> {
    use flacenc::component::BitRepr;
    use flacenc::error::Verify;
    let fail = |what: String| Error::Worker(format!("writing FLAC: {what}"));
    if format.bits == 32 {
        return Err(fail("float samples have no FLAC encoding".into()));
    }
    let frames = planes[0].len();
    let mut interleaved = Vec::with_capacity(frames * planes.len());
    for t in 0..frames {
        interleaved.extend(planes.iter().map(|p| quantize(p[t], format.bits)));
    }
    // Fixed-predictor subframes off: flacenc 0.5.1 wrote a 436 MB "fixed, order 0" subframe
    // for a near-silent 4096-sample block of 24-bit audio (libFLAC decodes it; symphonia lost
    // the frame). LPC subframes cover what fixed ones would.
    let mut config = flacenc::config::Encoder::default();
    config.subframe_coding.use_fixed = false;
    let config = config.into_verified().map_err(|e| fail(format!("{e:?}")))?;
    let source = flacenc::source::MemSource::from_samples(
        &interleaved,
        planes.len(),
        usize::from(format.bits),
        format.rate as usize,
    );
    let stream = flacenc::encode_with_fixed_block_size(&config, source, config.block_size)
        .map_err(|e| fail(format!("{e:?}")))?;
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream
        .write(&mut sink)
        .map_err(|e| fail(format!("{e:?}")))?;
    let mut bytes = sink.as_slice().to_vec();
    // STREAMINFO's minimum block size excludes the last block (FLAC format spec); flacenc counts
    // the short last block, and symphonia then cannot sync to the first frame. With a fixed
    // block size every other block is the maximum, so that is the minimum.
    if bytes.len() < 12 || &bytes[..4] != b"fLaC" || bytes[4] & 0x7f != 0 {
        return Err(fail("the encoder did not start with STREAMINFO".into()));
    }
    let max_block: [u8; 2] = bytes[10..12].try_into().unwrap();
    bytes[8..10].copy_from_slice(&max_block);
    // Never larger than the samples stored verbatim (plus headers): a guard against the
    // encoder misbehaving again.
    let verbatim = interleaved.len() * usize::from(format.bits) / 8;
    if bytes.len() > verbatim + verbatim / 16 + 4096 {
        return Err(fail(format!(
            "the encoder made {} bytes of {verbatim} bytes of samples",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// WAV bytes of one utterance.
pub fn encode_wav(format: &AudioFormat, planes: &[Vec<f32>]) -> Result<Vec<u8>> {
    let wav_spec = hound::WavSpec {
        channels: format.channels,
        sample_rate: format.rate,
        bits_per_sample: format.bits,
        sample_format: if format.bits == 32 {
            hound::SampleFormat::Float
        } else {
            hound::SampleFormat::Int
        },
    };
    let fail = |e: hound::Error| Error::Worker(format!("writing WAV: {e}"));
    let mut out = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut out, wav_spec).map_err(fail)?;
    let frames = planes[0].len();
    for t in 0..frames {
        for plane in planes {
            let v = plane[t];
            match format.bits {
                32 => w.write_sample(v).map_err(fail)?,
                bits => w.write_sample(quantize(v, bits)).map_err(fail)?,
            }
        }
    }
    w.finalize().map_err(fail)?;
    Ok(out.into_inner())
}

/// Write the dataset under `root` (in parallel); `progress` gets the number of files written.
pub fn write_audio_dataset(
    root: &Path,
    spec: &AudioDatasetSpec,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    super::write_class_files(root, spec.files, spec.classes, "file", progress, &|i| {
        let (format, planes, class) = generate_utterance(spec, i);
        let (bytes, extension) = encode_utterance(&format, &planes)?;
        Ok((class, format!("utt_{i:06}.{extension}"), bytes))
    })?;
    let marker = root.join(".complete");
    std::fs::write(&marker, marker_text(spec))
        .map_err(|e| Error::io(marker.display().to_string(), e))
}

fn marker_text(spec: &AudioDatasetSpec) -> String {
    format!(
        // v2: a third of the integer files are FLAC.
        "audio v2 {} {} {} {}\n",
        spec.files, spec.classes, spec.seed, spec.max_seconds
    )
}

/// Generate the dataset at `root` unless a complete one with the same spec is already there.
pub fn ensure_audio_dataset(
    root: &Path,
    spec: &AudioDatasetSpec,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<bool> {
    if std::fs::read_to_string(root.join(".complete")).is_ok_and(|s| s == marker_text(spec)) {
        return Ok(false);
    }
    write_audio_dataset(root, spec, progress)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{decode_audio, AudioLimits, ChannelChoice};

    #[test]
    fn utterances_are_deterministic_varied_and_decode_to_what_was_written() {
        let spec = AudioDatasetSpec {
            files: 40,
            classes: 4,
            seed: 3,
            max_seconds: 2.0,
        };
        let mut rates = std::collections::HashSet::new();
        let mut bits = std::collections::HashSet::new();
        let mut stereo = 0;
        let mut flac = 0;
        for i in 0..spec.files as u64 {
            let (format, planes, class) = generate_utterance(&spec, i);
            assert_eq!(class, i as usize % 4);
            assert_eq!(
                generate_utterance(&spec, i).1,
                planes,
                "file {i} is deterministic"
            );
            rates.insert(format.rate);
            bits.insert(format.bits);
            stereo += usize::from(format.channels == 2);
            assert!(format.seconds >= 1.0 && format.seconds <= 2.0);
            let peak = planes[0].iter().fold(0f32, |a, v| a.max(v.abs()));
            assert!(peak > 0.01 && peak <= 1.0, "file {i}: peak {peak}");
            let (bytes, extension) = encode_utterance(&format, &planes).unwrap();
            assert_eq!(extension == "flac", format.flac);
            flac += usize::from(format.flac);
            let audio = decode_audio(bytes, &AudioLimits::default(), ChannelChoice::All).unwrap();
            assert_eq!(
                (audio.rate, audio.channels.len()),
                (format.rate, planes.len())
            );
            let step = if format.bits == 32 {
                0.0
            } else {
                1.0 / (1u32 << (format.bits - 1)) as f32
            };
            for (c, plane) in planes.iter().enumerate() {
                for (t, (a, b)) in audio.channels[c].iter().zip(plane).enumerate() {
                    assert!(
                        (a - b).abs() <= step,
                        "file {i} channel {c} sample {t}: {a} vs {b}"
                    );
                }
            }
        }
        assert!(
            rates.len() >= 4 && bits.len() == 3 && stereo > 0 && flac > 3,
            "{rates:?} {bits:?} {stereo} {flac}"
        );
    }

    #[test]
    fn flac_files_stay_small_and_decode_whole() {
        // File 52 of the default dataset: 11.7 s of 24-bit 48 kHz mono with near-silent blocks,
        // which flacenc's fixed predictor once turned into a 436 MB frame.
        let spec = AudioDatasetSpec::default();
        let (format, planes, _) = generate_utterance(&spec, 52);
        assert!(format.flac && format.bits == 24);
        let bytes = encode_flac(&format, &planes).unwrap();
        let verbatim = planes[0].len() * 3;
        assert!(bytes.len() < verbatim, "{} of {verbatim}", bytes.len());
        let audio = decode_audio(bytes, &AudioLimits::default(), ChannelChoice::All).unwrap();
        assert_eq!(audio.frames(), planes[0].len());
    }
}

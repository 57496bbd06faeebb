//! Encoding a batch's speech-feature stages (power spectrogram, mel projection, log, per-bin
//! normalization, SpecAugment masks) as kernel passes of `shaders/spectral.wgsl` and its CUDA
//! twin `kernels/spectral.cu`. Every stage works on padded matrices, one `[rows, width]` per
//! sample back to back, where `width` is the batch's padded frame count: the last stage's buffer
//! is the batch's `[n, rows, width]` tensor, its padding written by a final pass. Per-sample
//! parameters (mask ranges) are drawn on the host by the CPU path's code. Nothing here touches
//! a device: the result is an [`EncodedBatch`], which wgpu and CUDA run alike.

use super::encode::{offsets, Encoding, INPUT, RECORDS};
use super::kernels::Params;
use super::run::EncodedBatch;
use crate::audio::{MaskAxis, SpectrogramSpec};
use std::collections::HashMap;
use std::sync::Arc;

/// The largest `n_fft` the FFT kernel takes (a frame lives in one invocation's memory).
pub const MAX_FFT: usize = 1024;
/// Record words (the `S_*` fields of spectral.wgsl, up to 12 radices of n_fft/2).
const REC_WORDS: usize = 26;
const MAX_RADICES: usize = REC_WORDS - S_RADIX0;

// Record fields, as spectral.wgsl.
const S_DST: usize = 0;
const S_ROWS: usize = 1;
const S_FRAMES: usize = 2;
const S_SRC: usize = 3;
const S_LEN: usize = 4;
const S_WIDTH: usize = 5;
const S_SRC_ROWS: usize = 6;
const S_N_FFT: usize = 7;
const S_HOP: usize = 8;
const S_PAD_MODE: usize = 9;
const S_POWER: usize = 10;
const S_TWIDDLES: usize = 11;
const S_WINDOW: usize = 12;
const S_RADICES: usize = 13;
const S_RADIX0: usize = 14;
const S_BANK: usize = 7;
const S_BANK_RANGES: usize = 8;
const S_LOG: usize = 9;
const S_EPS: usize = 10;
const S_AXIS: usize = 7;
const S_FILL: usize = 8;
const S_RANGES: usize = 9;
const S_RANGES_OFF: usize = 10;

/// One speech operator applied to a batch, with each sample's parameters.
#[derive(Debug, Clone)]
pub enum SpectralStage {
    /// Audio → `[n_fft/2 + 1, frames]` magnitudes (power 1) or powers (2).
    Spectrogram(SpectrogramSpec),
    /// `[bins, t]` → `[n_mels, t]` with each sample's filterbank (`[bins][n_mels]`, row-major:
    /// samples at different rates have different banks); `log_eps` fuses a following Log.
    Mel {
        banks: Vec<Arc<Vec<f32>>>,
        n_mels: usize,
        log_eps: Option<f32>,
    },
    /// `ln(x + eps)`.
    Log { eps: f32 },
    /// Per bin over the sample's frames: zero mean, unit unbiased std + 1e-5.
    Normalize,
    /// Each sample's `[start, end)` ranges along `axis` set to `fill`.
    Mask {
        axis: MaskAxis,
        fill: f32,
        ranges: Vec<Vec<(u32, u32)>>,
    },
}

impl SpectralStage {
    /// Rows after this stage, from `rows` before it.
    pub fn rows_after(&self, rows: usize) -> usize {
        match self {
            SpectralStage::Spectrogram(spec) => spec.n_fft / 2 + 1,
            SpectralStage::Mel { n_mels, .. } => *n_mels,
            _ => rows,
        }
    }
}

/// One sample's input: mono audio (`rows` 1, `len` samples) when the first stage is the
/// spectrogram, else a `[rows, len]` row-major feature matrix (len = frames).
#[derive(Debug, Clone, Copy)]
pub struct SpectralInput<'a> {
    pub rows: usize,
    pub len: usize,
    pub data: &'a [f32],
}

/// Why `n_fft` cannot run on the GPU kernels (None: it can): odd, too long, or half of it has a
/// prime factor above 5 (the kernel transforms a real frame as n_fft/2 complex points).
pub fn fft_unsupported(n_fft: usize) -> Option<String> {
    if n_fft % 2 == 1 || n_fft < 4 {
        return Some(format!(
            "n_fft {n_fft}: the GPU FFT takes even sizes from 4"
        ));
    }
    if n_fft > MAX_FFT {
        return Some(format!("n_fft {n_fft} is over the GPU kernel's {MAX_FFT}"));
    }
    if radices(n_fft / 2).is_none() {
        return Some(format!(
            "n_fft {n_fft} has a prime factor above 5 (the GPU FFT is mixed radix 2, 3, 4, 5)"
        ));
    }
    None
}

/// `n` as a product of radices 4, 2, 3 and 5 (at most [`MAX_RADICES`]), or None.
fn radices(mut n: usize) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for r in [4, 2, 3, 5] {
        while n.is_multiple_of(r) && n > 1 {
            out.push(r as u32);
            n /= r;
        }
    }
    (n == 1 && !out.is_empty() && out.len() <= MAX_RADICES).then_some(out)
}

/// Frames of each sample after the stages (the spectrogram decides them; the rest keep them).
pub fn spectral_frames(
    inputs: &[SpectralInput],
    stages: &[SpectralStage],
) -> Result<Vec<usize>, String> {
    inputs
        .iter()
        .enumerate()
        .map(|(s, input)| match stages.first() {
            Some(SpectralStage::Spectrogram(spec)) => {
                if input.rows != 1 {
                    return Err(format!(
                        "sample {s}: {} channels; the spectrogram needs mono audio",
                        input.rows
                    ));
                }
                spec.check(input.len)
                    .map(|()| spec.frames(input.len))
                    .map_err(|e| format!("sample {s}: {e}"))
            }
            _ => Ok(input.len),
        })
        .collect()
}

/// Encode `inputs` through `stages` into one padded `[n, rows, width]` f32 tensor (`width` at
/// least the longest sample's frames), padded with `pad_value`.
pub fn encode_spectral(
    inputs: &[SpectralInput],
    stages: &[SpectralStage],
    width: usize,
    pad_value: f32,
) -> Result<EncodedBatch, String> {
    let n = inputs.len();
    let frames = spectral_frames(inputs, stages)?;
    if let Some(longest) = frames.iter().copied().max().filter(|&f| f > width) {
        return Err(format!("{longest} frames do not fit a width of {width}"));
    }
    let audio_in = matches!(stages.first(), Some(SpectralStage::Spectrogram(_)));
    let rows_in = inputs.first().map_or(0, |i| i.rows);
    if let Some(s) = inputs.iter().position(|i| i.rows != rows_in) {
        return Err(format!(
            "sample {s} has {} rows, sample 0 {rows_in}: a batch needs the same rows",
            inputs[s].rows
        ));
    }
    // The packed input: audio back to back, or matrices at the padded width.
    let (input_off, input_words) = if audio_in {
        offsets(inputs.iter().map(|i| i.len as u64))
    } else {
        offsets(inputs.iter().map(|_| (rows_in * width) as u64))
    };
    // Written as little-endian bytes in place: the batch's upload, with no second copy.
    let mut input = vec![0u8; input_words as usize * 4];
    let mut put = |at: usize, values: &[f32]| {
        for (d, v) in input[at * 4..(at + values.len()) * 4]
            .chunks_exact_mut(4)
            .zip(values)
        {
            d.copy_from_slice(&v.to_le_bytes());
        }
    };
    for (i, x) in inputs.iter().enumerate() {
        let at = input_off[i] as usize;
        if x.data.len() != x.rows * x.len {
            return Err(format!(
                "sample {i}: {} values for {} × {}",
                x.data.len(),
                x.rows,
                x.len
            ));
        }
        if audio_in {
            put(at, x.data);
        } else {
            for (r, row) in x.data.chunks_exact(x.len.max(1)).enumerate() {
                put(at + r * width, row);
            }
        }
    }
    let mut enc = Encoding {
        records: Vec::new(),
        uniforms: Vec::new(),
        passes: Vec::new(),
        align: 256,
    };
    let mut sizes = vec![0u64, 4, input_words.max(1) * 4];
    let (mut cur, mut rows) = (INPUT, rows_in);
    let base = |s: usize, rows: usize, dst_off: u64| {
        let mut r = vec![0u32; REC_WORDS];
        r[S_DST] = dst_off as u32;
        r[S_ROWS] = rows as u32;
        r[S_FRAMES] = frames[s] as u32;
        r[S_WIDTH] = width as u32;
        r
    };
    let matrix = |rows: usize| (rows * width) as u64;
    // A pass updating the current matrices in place: (entry, buffer, rows, invocations per
    // sample); each sample's record is its base record with `extra` applied.
    let in_place = |enc: &mut Encoding,
                    (entry, buffer, rows, work): (&'static str, usize, usize, u64),
                    tail: &[u32],
                    extra: &dyn Fn(usize, &mut [u32])| {
        let recs: Vec<Vec<u32>> = (0..n)
            .map(|s| {
                let mut r = base(s, rows, s as u64 * matrix(rows));
                extra(s, &mut r);
                r
            })
            .collect();
        let words = (REC_WORDS, tail);
        enc.pass(
            entry,
            buffer,
            RECORDS,
            &recs,
            words,
            Params::default(),
            work,
        )
    };
    let new_buffer = |sizes: &mut Vec<u64>, words: u64| {
        sizes.push(words.max(1) * 4);
        sizes.len() - 1
    };
    for stage in stages {
        let out_rows = stage.rows_after(rows);
        let params = Params::default();
        match stage {
            SpectralStage::Spectrogram(spec) => {
                if cur != INPUT {
                    return Err("the spectrogram must be the first GPU stage".into());
                }
                if let Some(why) = fft_unsupported(spec.n_fft) {
                    return Err(why);
                }
                let radix = radices(spec.n_fft / 2).expect("checked by fft_unsupported");
                let power = match spec.power {
                    Some(p) if p == 1.0 || p == 2.0 => p as u32,
                    other => return Err(format!("spectrogram power {other:?}: 1 or 2 on the GPU")),
                };
                let out = new_buffer(&mut sizes, n as u64 * matrix(out_rows));
                // Tables after the records: twiddles e^{-2πit/N} (f64, rounded once), window.
                let table = (n * REC_WORDS) as u32;
                let mut tail = Vec::with_capacity(3 * spec.n_fft);
                for t in 0..spec.n_fft {
                    let angle = 2.0 * std::f64::consts::PI * t as f64 / spec.n_fft as f64;
                    tail.push((angle.cos() as f32).to_bits());
                    tail.push((-angle.sin() as f32).to_bits());
                }
                tail.extend(spec.window().iter().map(|w| w.to_bits()));
                let recs: Vec<Vec<u32>> = (0..n)
                    .map(|s| {
                        let mut r = base(s, out_rows, s as u64 * matrix(out_rows));
                        r[S_SRC] = input_off[s] as u32;
                        r[S_LEN] = inputs[s].len as u32;
                        r[S_N_FFT] = spec.n_fft as u32;
                        r[S_HOP] = spec.hop as u32;
                        r[S_PAD_MODE] = match (spec.center, spec.padding) {
                            (false, _) => 0,
                            (true, crate::audio::Padding::Reflect) => 1,
                            (true, crate::audio::Padding::Constant) => 2,
                        };
                        r[S_POWER] = power;
                        r[S_TWIDDLES] = table;
                        r[S_WINDOW] = table + 2 * spec.n_fft as u32;
                        r[S_RADICES] = radix.len() as u32;
                        r[S_RADIX0..S_RADIX0 + radix.len()].copy_from_slice(&radix);
                        r
                    })
                    .collect();
                let words = (REC_WORDS, tail.as_slice());
                enc.pass("stft_power", out, cur, &recs, words, params, width as u64)?;
                cur = out;
            }
            SpectralStage::Mel {
                banks,
                n_mels,
                log_eps,
            } => {
                if banks.len() != n {
                    return Err(format!("{} filterbanks for {n} samples", banks.len()));
                }
                let out = new_buffer(&mut sizes, n as u64 * matrix(out_rows));
                // Each distinct bank once, then its mels' non-zero bin ranges.
                let mut tail = Vec::new();
                let mut placed: HashMap<*const Vec<f32>, (u32, u32)> = HashMap::new();
                let mut at = Vec::with_capacity(n);
                for bank in banks {
                    if bank.len() != rows * n_mels {
                        return Err(format!(
                            "a filterbank of {} weights for {rows} bins × {n_mels} mels",
                            bank.len()
                        ));
                    }
                    let table = (n * REC_WORDS) as u32;
                    let (b, r) = *placed.entry(Arc::as_ptr(bank)).or_insert_with(|| {
                        let b = table + tail.len() as u32;
                        tail.extend(bank.iter().map(|w| w.to_bits()));
                        let r = table + tail.len() as u32;
                        for m in 0..*n_mels {
                            let nonzero = |k: &usize| bank[k * n_mels + m] != 0.0;
                            let lo = (0..rows).find(nonzero).unwrap_or(0);
                            let hi = (0..rows).rfind(nonzero).map_or(0, |k| k + 1);
                            tail.extend([lo as u32, hi as u32]);
                        }
                        (b, r)
                    });
                    at.push((b, r));
                }
                let recs: Vec<Vec<u32>> = (0..n)
                    .map(|s| {
                        let mut r = base(s, out_rows, s as u64 * matrix(out_rows));
                        r[S_SRC] = (s as u64 * matrix(rows)) as u32;
                        r[S_SRC_ROWS] = rows as u32;
                        (r[S_BANK], r[S_BANK_RANGES]) = at[s];
                        r[S_LOG] = u32::from(log_eps.is_some());
                        r[S_EPS] = log_eps.unwrap_or(0.0).to_bits();
                        r
                    })
                    .collect();
                let words = (REC_WORDS, tail.as_slice());
                enc.pass(
                    "mel_project",
                    out,
                    cur,
                    &recs,
                    words,
                    params,
                    matrix(out_rows),
                )?;
                cur = out;
            }
            SpectralStage::Log { eps } => {
                let eps = |_: usize, r: &mut [u32]| r[S_EPS] = eps.to_bits();
                let cells = matrix(rows);
                in_place(&mut enc, ("spectral_log", cur, rows, cells), &[], &eps)?;
            }
            SpectralStage::Normalize => {
                let pass = ("feature_normalize", cur, rows, rows as u64);
                in_place(&mut enc, pass, &[], &|_, _| {})?;
            }
            SpectralStage::Mask { axis, fill, ranges } => {
                if ranges.len() != n {
                    return Err(format!("{} mask range sets for {n} samples", ranges.len()));
                }
                let tail: Vec<u32> = ranges.iter().flatten().flat_map(|&(a, b)| [a, b]).collect();
                let (starts, _) = offsets(ranges.iter().map(|r| 2 * r.len() as u64));
                let table = (n * REC_WORDS) as u64;
                let mask = |s: usize, r: &mut [u32]| {
                    r[S_AXIS] = u32::from(*axis == MaskAxis::Time);
                    r[S_FILL] = fill.to_bits();
                    r[S_RANGES] = ranges[s].len() as u32;
                    r[S_RANGES_OFF] = (table + starts[s]) as u32;
                };
                in_place(
                    &mut enc,
                    ("spectral_mask", cur, rows, matrix(rows)),
                    &tail,
                    &mask,
                )?;
            }
        }
        rows = out_rows;
    }
    if stages.is_empty() {
        return Err("no spectral stage to run".into());
    }
    let pad = |_: usize, r: &mut [u32]| r[S_FILL] = pad_value.to_bits();
    in_place(
        &mut enc,
        ("spectral_pad", cur, rows, matrix(rows)),
        &[],
        &pad,
    )?;
    sizes[RECORDS] = (enc.records.len() as u64 * 4).max(4);
    let sample_words = matrix(rows);
    let passes = enc.encoded_passes();
    let batch = EncodedBatch {
        buffer_bytes: sizes,
        input_offsets: input_off.iter().map(|&w| w as usize * 4).collect(),
        input_len: input.len(),
        input,
        records: enc.records,
        passes,
        output_buffer: cur,
        output_offsets: (0..n as u64).map(|s| s * sample_words).collect(),
        output_lengths: vec![sample_words as usize * 4; n],
        resident: None,
    };
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radices_cover_the_speech_sizes_and_reject_other_primes() {
        assert_eq!(radices(256), Some(vec![4, 4, 4, 4]));
        assert_eq!(radices(200), Some(vec![4, 2, 5, 5]));
        assert_eq!(radices(1), None);
        assert_eq!(radices(7 * 64), None);
        assert!(fft_unsupported(2048).unwrap().contains("over"));
        assert!(fft_unsupported(448).unwrap().contains("prime factor"));
        assert!(fft_unsupported(401).unwrap().contains("even"));
        assert_eq!(fft_unsupported(320), None);
        assert_eq!(fft_unsupported(48), None);
    }
}

//! The speech operators of a GPU suffix: per sample, the host-side draws (mask ranges, from the
//! same counter-RNG streams and code as the CPU path) and the checks the CPU operators would
//! make, so a bad sample is reported against its operator before the batch goes to the GPU;
//! per batch, the [`SpectralStage`]s the kernels run.

use crate::audio::MaskAxis;
use crate::backend::wgpu::{SpectralInput, SpectralStage};
use crate::ops::{mask_ranges, mel_bank, AudioOp, Op, Value};
use crate::rng::SampleRng;

/// One sample's parameters for the suffix: its rate, its frames at the end and, per suffix
/// operator, its mask ranges (empty for the others).
#[derive(Debug, Clone, PartialEq)]
pub struct SpectralDraws {
    pub rate: u32,
    pub frames: usize,
    pub masks: Vec<Vec<(u32, u32)>>,
}

/// Rows, frames and rate of a value entering the suffix.
fn dims(value: &Value) -> Result<(usize, usize, u32), String> {
    match value {
        Value::Audio(a) => Ok((
            a.channels.len(),
            a.channels.first().map_or(0, Vec::len),
            a.rate,
        )),
        Value::Features(f) => Ok((f.bins, f.frames, f.rate)),
        other => Err(format!("{:?} values have no GPU kernels", other.kind())),
    }
}

/// Draw sample `index`'s suffix parameters (`ops`/`op_ids`: the suffix), checking the value
/// as each CPU operator would; an error names the suffix operator (its position in `ops`).
pub fn draw_spectral(
    ops: &[Op],
    op_ids: &[u32],
    (seed, epoch, index): (u64, u32, u64),
    value: &Value,
) -> Result<SpectralDraws, (usize, String)> {
    let (mut rows, mut frames, rate) = dims(value).map_err(|e| (0, e))?;
    let mut masks = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let Op::Audio(op) = op else {
            return Err((i, format!("{} has no GPU kernel", op.name())));
        };
        let mut ranges = Vec::new();
        match op {
            AudioOp::Spectrogram(spec) => {
                if rows != 1 {
                    return Err((
                        i,
                        format!("{rows} channels: a spectrogram needs mono audio"),
                    ));
                }
                spec.check(frames).map_err(|e| (i, e))?;
                (rows, frames) = (spec.n_fft / 2 + 1, spec.frames(frames));
            }
            AudioOp::MelScale(m) => {
                let nyquist = f64::from(rate) / 2.0;
                if m.f_max.unwrap_or(nyquist) > nyquist {
                    return Err((
                        i,
                        format!(
                            "f_max {} Hz is above the Nyquist frequency {nyquist} Hz",
                            m.f_max.unwrap_or(nyquist)
                        ),
                    ));
                }
                rows = m.n_mels;
            }
            AudioOp::FrequencyMasking(m) | AudioOp::TimeMasking(m) => {
                let time = matches!(op, AudioOp::TimeMasking(_));
                let mut rng = SampleRng::new(seed, epoch, index, op_ids[i]);
                ranges = mask_ranges(m, if time { frames } else { rows }, &mut rng);
            }
            AudioOp::Log { .. } | AudioOp::FeatureNormalize => {}
            other => return Err((i, format!("{} has no GPU kernel", other.kind().name()))),
        }
        masks.push(ranges);
    }
    Ok(SpectralDraws {
        rate,
        frames,
        masks,
    })
}

/// The batch's stages for the suffix `ops`, from each sample's draws; a Log right after
/// MelScale is fused into it. `bins`: rows of the value entering the suffix.
pub fn spectral_stages(ops: &[Op], draws: &[SpectralDraws], bins: usize) -> Vec<SpectralStage> {
    let through = rows_through(ops, bins);
    let mut stages: Vec<SpectralStage> = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let Op::Audio(op) = op else {
            unreachable!("{} has no GPU kernel: never placed there", op.name())
        };
        let column = |i: usize| draws.iter().map(|d| d.masks[i].clone()).collect();
        let stage = match op {
            AudioOp::Spectrogram(spec) => SpectralStage::Spectrogram(*spec),
            AudioOp::MelScale(m) => SpectralStage::Mel {
                banks: draws
                    .iter()
                    .map(|d| {
                        let f_max = m.f_max.unwrap_or(f64::from(d.rate) / 2.0);
                        let bins = i.checked_sub(1).map_or(bins, |j| through[j]);
                        mel_bank(bins, f_max, d.rate, m)
                    })
                    .collect(),
                n_mels: m.n_mels,
                log_eps: None,
            },
            AudioOp::Log { eps } => match stages.last_mut() {
                Some(SpectralStage::Mel { log_eps, .. }) if log_eps.is_none() => {
                    *log_eps = Some(*eps);
                    continue;
                }
                _ => SpectralStage::Log { eps: *eps },
            },
            AudioOp::FeatureNormalize => SpectralStage::Normalize,
            AudioOp::FrequencyMasking(m) | AudioOp::TimeMasking(m) => SpectralStage::Mask {
                axis: if matches!(op, AudioOp::TimeMasking(_)) {
                    MaskAxis::Time
                } else {
                    MaskAxis::Frequency
                },
                fill: m.fill,
                ranges: column(i),
            },
            other => unreachable!(
                "{} has no GPU kernel: never placed there",
                other.kind().name()
            ),
        };
        stages.push(stage);
    }
    stages
}

/// The kernels' view of a value entering the suffix (mono audio or a feature matrix).
pub fn spectral_input(value: &Value) -> SpectralInput<'_> {
    match value {
        Value::Audio(a) => SpectralInput {
            rows: a.channels.len(),
            len: a.channels.first().map_or(0, Vec::len),
            data: a.channels.first().map_or(&[][..], Vec::as_slice),
        },
        Value::Features(f) => SpectralInput {
            rows: f.bins,
            len: f.frames,
            data: &f.data,
        },
        other => unreachable!("{:?} never enters a GPU suffix", other.kind()),
    }
}

/// Rows after each suffix operator, from `bins` rows entering the suffix.
fn rows_through(ops: &[Op], mut bins: usize) -> Vec<usize> {
    ops.iter()
        .map(|op| {
            bins = match op {
                Op::Audio(AudioOp::Spectrogram(spec)) => spec.n_fft / 2 + 1,
                Op::Audio(AudioOp::MelScale(m)) => m.n_mels,
                _ => bins,
            };
            bins
        })
        .collect()
}

/// The padded batch the suffix makes from values of `bins` rows: `[n, rows, width]`.
pub fn spectral_layout(
    ops: &[Op],
    draws: &[SpectralDraws],
    bins: usize,
    pad_multiple: usize,
) -> (usize, usize) {
    let rows = rows_through(ops, bins).last().copied().unwrap_or(bins);
    let longest = draws.iter().map(|d| d.frames).max().unwrap_or(0);
    (rows, longest.next_multiple_of(pad_multiple.max(1)))
}

/// Encode `values` (with their draws) through the suffix `ops` as one batch of padded `width`.
pub fn encode_values(
    ops: &[Op],
    values: &[Value],
    draws: &[SpectralDraws],
    (width, pad_value): (usize, f32),
) -> Result<crate::backend::wgpu::EncodedBatch, String> {
    let inputs: Vec<SpectralInput> = values.iter().map(spectral_input).collect();
    let bins = inputs.first().map_or(0, |i| i.rows);
    let stages = spectral_stages(ops, draws, bins);
    crate::backend::wgpu::encode_spectral(&inputs, &stages, width, pad_value)
}

/// Run the suffix `ops` on `values` on `gpu` into `out` (`[n, rows, width]` f32 from
/// [`spectral_layout`]), in chunks of samples whose buffers fit the device's limit.
pub fn run_spectral(
    gpu: &dyn crate::backend::GpuRunner,
    ops: &[Op],
    values: &[Value],
    draws: &[SpectralDraws],
    (width, pad_value): (usize, f32),
    out: &mut [u8],
) -> Result<(), String> {
    let inputs: Vec<SpectralInput> = values.iter().map(spectral_input).collect();
    let bins = inputs.first().map_or(0, |i| i.rows);
    // The widest matrix any stage holds, and the longest input, bound a sample's buffers.
    let through = rows_through(ops, bins);
    let rows = through.last().copied().unwrap_or(bins);
    let widest = through.iter().copied().fold(bins, usize::max);
    let longest_input = inputs.iter().map(|i| i.len).max().unwrap_or(0);
    let per_sample = (widest * width).max(longest_input) as u64 * 4;
    let chunk = (gpu.max_buffer_bytes() / per_sample.max(1)).clamp(1, u16::MAX as u64) as usize;
    let sample_bytes = rows * width * 4;
    for (k, part) in values.chunks(chunk).enumerate() {
        let first = k * chunk;
        let part_draws = &draws[first..first + part.len()];
        let batch = encode_values(ops, part, part_draws, (width, pad_value))?;
        for (i, sample) in gpu.run_encoded(&batch)?.into_iter().enumerate() {
            let at = (first + i) * sample_bytes;
            out[at..at + sample_bytes].copy_from_slice(&sample);
        }
    }
    Ok(())
}

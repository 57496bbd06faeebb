//! Speech-kernel cases shared by the wgpu test (lavapipe in CI) and the CUDA host emulation:
//! fresh random signals of ragged lengths, the CPU reference (each operator's own `apply`, with
//! the same counter-RNG streams), the batch the GPU path encodes (the executor's own draws and
//! stages), and the comparison with its stated tolerances:
//! - spectrogram: |gpu − cpu| ≤ 2e-6 × the frame's total power (power 2; for magnitudes, the
//!   root of the frame's summed squares): both are f32 FFTs, different algorithms, so a bin's
//!   error scales with the whole frame's energy, not with the bin's own value;
//! - log-mel chains (mel → log → normalize): within 5e-4 absolute of the CPU's values (f32 FFT
//!   rounding amplified by the log in quiet bands, f32 vs f64 sums in the normalization);
//! - mel without log: 2e-6 × the frame's total mel energy;
//! - masked cells exactly the fill value, padding exactly the pad value, lengths equal.

use super::test_seed;
use sluice::audio::{Audio, MelNorm, MelScale, Padding, SpectrogramSpec, WindowKind};
use sluice::backend::wgpu::{encode_spectral, EncodedBatch};
use sluice::exec::{draw_spectral, spectral_input, spectral_stages, SpectralDraws};
use sluice::ops::{AudioOp, MaskSpec, MelSpec, Op, Value};
use sluice::rng::{SampleRng, Uniform};

pub const PAD_VALUE: f32 = -7.5;
const PAD_MULTIPLE: usize = 4;

/// How a case's output is compared (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Compare {
    /// Power (2) or magnitude (1) spectrogram: relative to the frame's total power.
    Spectrum { power: u32 },
    /// Mel energies without log: relative to the frame's total.
    Mel,
    /// Log features: absolute.
    Log,
}

pub struct Case {
    pub name: String,
    pub ops: Vec<Op>,
    pub values: Vec<Value>,
    pub compare: Compare,
}

/// Noise, two sines and a stretch of exact silence, `len` samples at `rate`.
fn signal(r: &mut SampleRng, len: usize, rate: u32) -> Value {
    let (f1, f2) = (r.uniform(50.0, 3000.0), r.uniform(100.0, 3500.0));
    let quiet = r.uniform(0.0, len as f64) as usize;
    let samples = (0..len)
        .map(|i| {
            if (quiet..quiet + len / 8).contains(&i) {
                return 0.0;
            }
            let t = i as f64 / f64::from(rate);
            let tone = 0.3 * (2.0 * std::f64::consts::PI * f1 * t).sin()
                + 0.1 * (2.0 * std::f64::consts::PI * f2 * t).sin();
            (tone + 0.05 * r.uniform(-1.0, 1.0)) as f32
        })
        .collect();
    Value::Audio(Audio {
        rate,
        channels: vec![samples],
    })
}

fn spec(n_fft: usize, win: usize, hop: usize, power: f32) -> SpectrogramSpec {
    SpectrogramSpec {
        n_fft,
        win_length: win,
        hop,
        window: WindowKind::HannPeriodic,
        center: true,
        padding: Padding::Reflect,
        power: Some(power),
    }
}

fn mel(n_mels: usize, scale: MelScale, norm: MelNorm) -> Op {
    Op::Audio(AudioOp::MelScale(MelSpec {
        n_mels,
        f_min: 0.0,
        f_max: None,
        scale,
        norm,
    }))
}

fn mask(count: u32, max_width: f64, max_fraction: f64, fill: f32) -> MaskSpec {
    MaskSpec {
        count,
        max_width,
        max_fraction,
        fill,
    }
}

/// The cases, each on `n` fresh signals of ragged lengths (`lens` range) at 8 kHz.
pub fn cases(n: usize, lens: (usize, usize)) -> Vec<Case> {
    let mut r = SampleRng::new(test_seed(), 0, 0, 77);
    let mut signals = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|_| {
                let len = r.uniform(lens.0 as f64, lens.1 as f64) as usize;
                signal(&mut r, len, 8000)
            })
            .collect()
    };
    let spectrogram = |s: SpectrogramSpec| Op::Audio(AudioOp::Spectrogram(s));
    let a = |op: AudioOp| Op::Audio(op);
    let mut zero_padded = spec(64, 50, 16, 1.0);
    zero_padded.padding = Padding::Constant;
    let mut uncentred = spec(48, 48, 20, 2.0);
    uncentred.center = false;
    uncentred.window = WindowKind::HannSymmetric;
    vec![
        Case {
            name: "cedar STFT n_fft 400 hop 100, power 2".into(),
            ops: vec![spectrogram(spec(400, 400, 100, 2.0))],
            values: signals(n),
            compare: Compare::Spectrum { power: 2 },
        },
        Case {
            name: "zero-padded n_fft 64, win 50, magnitude".into(),
            ops: vec![spectrogram(zero_padded)],
            values: signals(n),
            compare: Compare::Spectrum { power: 1 },
        },
        Case {
            name: "uncentred n_fft 48 (radix 3), symmetric window".into(),
            ops: vec![spectrogram(uncentred)],
            values: signals(n),
            compare: Compare::Spectrum { power: 2 },
        },
        Case {
            name: "mel 40 htk, no norm".into(),
            ops: vec![
                spectrogram(spec(256, 200, 80, 2.0)),
                mel(40, MelScale::Htk, MelNorm::None),
            ],
            values: signals(n),
            compare: Compare::Mel,
        },
        Case {
            name: "asr chain: n_fft 512 → mel 80 slaney → log → normalize → masks".into(),
            ops: vec![
                spectrogram(spec(512, 400, 160, 2.0)),
                mel(80, MelScale::Slaney, MelNorm::Slaney),
                a(AudioOp::Log {
                    eps: 2f32.powi(-24),
                }),
                a(AudioOp::FeatureNormalize),
                a(AudioOp::FrequencyMasking(mask(2, 27.0, 1.0, 0.0))),
                a(AudioOp::TimeMasking(mask(3, 100.0, 0.2, -1.0))),
            ],
            values: signals(n),
            compare: Compare::Log,
        },
        Case {
            name: "features in (cut after a CPU spectrogram): masks → mel → log".into(),
            ops: vec![
                a(AudioOp::TimeMasking(mask(2, 10.0, 1.0, 0.0))),
                a(AudioOp::FrequencyMasking(mask(2, 30.0, 1.0, 0.0))),
                mel(32, MelScale::Htk, MelNorm::Slaney),
                a(AudioOp::Log { eps: 1e-6 }),
            ],
            values: signals(n)
                .into_iter()
                .map(|mut v| {
                    let op = AudioOp::Spectrogram(spec(200, 200, 50, 2.0));
                    op.apply(&mut v, &mut SampleRng::new(0, 0, 0, 0)).unwrap();
                    v
                })
                .collect(),
            compare: Compare::Log,
        },
    ]
}

fn op_ids(case: &Case) -> Vec<u32> {
    (1..=case.ops.len() as u32).collect()
}

/// Each sample's CPU result, `[rows, frames]`.
pub fn cpu_reference(case: &Case) -> Vec<(usize, usize, Vec<f32>)> {
    case.values
        .iter()
        .enumerate()
        .map(|(s, v)| {
            let mut v = v.clone();
            for (op, id) in case.ops.iter().zip(op_ids(case)) {
                let Op::Audio(op) = op else { unreachable!() };
                let mut rng = SampleRng::new(test_seed(), 0, s as u64, id);
                op.apply(&mut v, &mut rng).unwrap();
            }
            let Value::Features(f) = v else {
                panic!("{}: the chain ends with features", case.name)
            };
            (f.bins, f.frames, f.data)
        })
        .collect()
}

/// The batch the executor's GPU path encodes for the case, the draws, and the padded width.
pub fn encode(case: &Case) -> (EncodedBatch, Vec<SpectralDraws>, usize) {
    let ids = op_ids(case);
    let draws: Vec<SpectralDraws> = case
        .values
        .iter()
        .enumerate()
        .map(|(s, v)| draw_spectral(&case.ops, &ids, (test_seed(), 0, s as u64), v).unwrap())
        .collect();
    let inputs: Vec<_> = case.values.iter().map(spectral_input).collect();
    let stages = spectral_stages(&case.ops, &draws, inputs[0].rows);
    let longest = draws.iter().map(|d| d.frames).max().unwrap();
    let width = longest.next_multiple_of(PAD_MULTIPLE);
    let batch = encode_spectral(&inputs, &stages, width, PAD_VALUE).unwrap();
    (batch, draws, width)
}

/// Compare the GPU's per-sample outputs with the CPU's (module docs); returns the largest
/// error relative to the tolerance (≤ 1 passes).
pub fn check(case: &Case, got: &[Vec<u8>], draws: &[SpectralDraws], width: usize) -> f64 {
    let want = cpu_reference(case);
    let masked = trailing_masks(case, draws, width);
    assert_eq!(got.len(), want.len(), "{}: samples", case.name);
    let mut worst = 0f64;
    for (s, ((rows, frames, cpu), bytes)) in want.iter().zip(got).enumerate() {
        assert_eq!(draws[s].frames, *frames, "{}: sample {s} frames", case.name);
        let gpu: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(gpu.len(), rows * width, "{}: sample {s} size", case.name);
        for t in 0..width {
            let column = |m: &dyn Fn(usize) -> f32| (0..*rows).map(m).collect::<Vec<f32>>();
            if t >= *frames {
                let pad = column(&|k| gpu[k * width + t]);
                assert!(
                    pad.iter().all(|&v| v.to_bits() == PAD_VALUE.to_bits()),
                    "{}: sample {s} frame {t} (padding): {pad:?}",
                    case.name
                );
                continue;
            }
            let c = column(&|k| cpu[k * frames + t]);
            let g = column(&|k| gpu[k * width + t]);
            let total: f64 = c.iter().map(|&v| f64::from(v).abs()).sum();
            let tolerance = match case.compare {
                Compare::Spectrum { power: 2 } | Compare::Mel => 2e-6 * total,
                Compare::Spectrum { .. } => {
                    let power: f64 = c.iter().map(|&v| f64::from(v).powi(2)).sum();
                    2e-6 * power.sqrt()
                }
                Compare::Log => 5e-4,
            }
            .max(1e-30);
            for k in 0..*rows {
                if let Some(fill) = masked[s][k * width + t] {
                    assert_eq!(
                        g[k].to_bits(),
                        fill.to_bits(),
                        "{}: sample {s} row {k} frame {t} is masked",
                        case.name
                    );
                }
                let d = f64::from((g[k] - c[k]).abs());
                let ratio = if d.is_nan() {
                    f64::INFINITY
                } else {
                    d / tolerance
                };
                if ratio > 1.0 {
                    panic!(
                        "{}: sample {s} row {k} frame {t}: gpu {} cpu {} (|d| {d:e}, \
                         tolerance {tolerance:e})",
                        case.name, g[k], c[k]
                    );
                }
                worst = worst.max(ratio);
            }
        }
    }
    eprintln!("{}: worst error {:.3} of the tolerance", case.name, worst);
    worst
}

/// Per sample, the cells the case's trailing mask operators set (to their fill values).
fn trailing_masks(case: &Case, draws: &[SpectralDraws], width: usize) -> Vec<Vec<Option<f32>>> {
    let first = case
        .ops
        .iter()
        .rposition(|op| {
            !matches!(
                op,
                Op::Audio(AudioOp::FrequencyMasking(_) | AudioOp::TimeMasking(_))
            )
        })
        .map_or(0, |i| i + 1);
    draws
        .iter()
        .map(|d| {
            let rows = 1024;
            let mut cells = vec![None; rows * width];
            for (i, op) in case.ops.iter().enumerate().skip(first) {
                let (time, fill) = match op {
                    Op::Audio(AudioOp::TimeMasking(m)) => (true, m.fill),
                    Op::Audio(AudioOp::FrequencyMasking(m)) => (false, m.fill),
                    _ => unreachable!(),
                };
                for &(a, b) in &d.masks[i] {
                    for k in 0..rows {
                        for t in 0..d.frames {
                            let at = if time { t } else { k };
                            if (a as usize..b as usize).contains(&at) {
                                cells[k * width + t] = Some(fill);
                            }
                        }
                    }
                }
            }
            cells
        })
        .collect()
}

/// Every case's mask draws cover some cells (so the exact-fill comparison means something).
pub fn masks_were_drawn(cases: &[Case]) -> bool {
    cases.iter().any(|c| {
        encode(c)
            .1
            .iter()
            .any(|d| d.masks.iter().any(|m| m.iter().any(|(a, b)| b > a)))
    })
}

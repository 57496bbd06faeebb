//! The speech spectral chain (asr-val's: Spectrogram n_fft 512 / win 400 / hop 160 → MelScale 80
//! slaney → Log → FeatureNormalize) on a batch of 16 two-second utterances at 16 kHz, CPU vs GPU
//! side by side: `cargo bench --bench spectral_ops`. The CPU side runs the batch on all cores
//! (rayon); each GPU side is end to end for the batch (encode, upload, kernels, readback), what
//! placement pays. Without an adapter or device a side prints why it is skipped. On lavapipe the
//! wgpu numbers are correctness evidence and a proxy for the kernels' arithmetic, not GPU speed.
//!
//! A second group times the CPU-only front end that comes before the chain, one thread, on one
//! 8-second speech-like utterance: `DecodeAudio` per file format and `Resample` to 16 kHz per
//! source rate (`cargo bench --bench spectral_ops -- front`).

use criterion::{criterion_group, criterion_main, Criterion};
use rayon::prelude::*;
use sluice::audio::{Audio, MelNorm, MelScale};
use sluice::backend::wgpu::{encode_spectral, WgpuContext};
use sluice::backend::GpuRunner;
use sluice::exec::{draw_spectral, spectral_input, spectral_stages};
use sluice::ops::{AudioOp, MelSpec, Op, Value};
use sluice::rng::SampleRng;
use std::time::Duration;

const BATCH: usize = 16;
const RATE: u32 = 16_000;

fn utterances() -> Vec<Value> {
    (0..BATCH)
        .map(|s| {
            let n = 2 * RATE as usize;
            let samples = (0..n)
                .map(|i| {
                    let t = i as f64 / f64::from(RATE);
                    let f = 120.0 + 10.0 * s as f64;
                    (0.3 * (2.0 * std::f64::consts::PI * f * t).sin()
                        + 0.1 * (2.0 * std::f64::consts::PI * 7.3 * f * t).sin())
                        as f32
                })
                .collect();
            Value::Audio(Audio {
                rate: RATE,
                channels: vec![samples],
            })
        })
        .collect()
}

fn chain() -> Vec<Op> {
    vec![
        Op::Audio(AudioOp::Spectrogram(sluice::bench::ASR_SPECTROGRAM)),
        Op::Audio(AudioOp::MelScale(MelSpec {
            n_mels: 80,
            f_min: 0.0,
            f_max: Some(8000.0),
            scale: MelScale::Slaney,
            norm: MelNorm::Slaney,
        })),
        Op::Audio(AudioOp::Log {
            eps: 2f32.powi(-24),
        }),
        Op::Audio(AudioOp::FeatureNormalize),
    ]
}

fn cpu_batch(ops: &[Op], values: &[Value]) -> Vec<Value> {
    values
        .par_iter()
        .map(|v| {
            let mut v = v.clone();
            for op in ops {
                let Op::Audio(a) = op else { unreachable!() };
                a.apply(&mut v, &mut SampleRng::new(0, 0, 0, 0)).unwrap();
            }
            v
        })
        .collect()
}

/// The batch on `gpu` as the executor runs it: draws, stages, encoding, kernels, readback.
fn gpu_batch(gpu: &dyn GpuRunner, ops: &[Op], values: &[Value]) -> Vec<Vec<u8>> {
    let ids: Vec<u32> = (1..=ops.len() as u32).collect();
    let draws: Vec<_> = values
        .iter()
        .enumerate()
        .map(|(s, v)| draw_spectral(ops, &ids, (0, 0, s as u64), v).unwrap())
        .collect();
    let inputs: Vec<_> = values.iter().map(spectral_input).collect();
    let stages = spectral_stages(ops, &draws, 1);
    let width = draws.iter().map(|d| d.frames).max().unwrap();
    let batch = encode_spectral(&inputs, &stages, width, 0.0).unwrap();
    gpu.run_encoded(&batch).unwrap()
}

fn bench(c: &mut Criterion) {
    let values = utterances();
    let ops = chain();
    let mut g = c.benchmark_group("asr-val spectral chain, batch of 16 × 2 s");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.bench_function("cpu (all cores)", |b| b.iter(|| cpu_batch(&ops, &values)));
    match WgpuContext::new() {
        Ok(ctx) => {
            let name = format!("wgpu ({})", ctx.describe());
            g.bench_function(name, |b| b.iter(|| gpu_batch(&ctx, &ops, &values)));
        }
        Err(why) => eprintln!("skipped wgpu: {why}"),
    }
    match sluice::backend::cuda::CudaDevice::open(0) {
        Ok(dev) => {
            let name = format!("cuda ({})", dev.describe());
            g.bench_function(name, |b| b.iter(|| gpu_batch(&dev, &ops, &values)));
        }
        Err(why) => eprintln!("skipped cuda: {why}"),
    }
    g.finish();
}

/// One 8-second utterance of the generated dataset's kind, stored as `format` says.
fn encoded(rate: u32, channels: u16, bits: u16, flac: bool) -> (Vec<u8>, Vec<f32>) {
    use sluice::gen::audio::{encode_utterance, synthesize, AudioFormat};
    let format = AudioFormat {
        rate,
        channels,
        bits,
        seconds: 8.0,
        flac,
    };
    let planes = synthesize(&format, 0, 7);
    let mono = planes[0].clone();
    (encode_utterance(&format, &planes).unwrap().0, mono)
}

fn front_end(c: &mut Criterion) {
    use sluice::audio::{decode_audio, resample, AudioLimits, ChannelChoice};
    let mut g = c.benchmark_group("front end, one 8 s utterance, one thread");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    for (name, channels, bits, flac) in [
        ("wav s16 mono", 1, 16, false),
        ("wav s16 stereo", 2, 16, false),
        ("wav s24 mono", 1, 24, false),
        ("wav f32 mono", 1, 32, false),
        ("flac s16 mono", 1, 16, true),
    ] {
        let (bytes, _) = encoded(44_100, channels, bits, flac);
        g.bench_function(format!("DecodeAudio {name} 44.1 kHz"), |b| {
            b.iter(|| decode_audio(bytes.clone(), &AudioLimits::default(), ChannelChoice::Mono))
        });
    }
    for from in [8_000, 22_050, 44_100, 48_000] {
        let (_, x) = encoded(from, 1, 16, false);
        g.bench_function(format!("Resample {from} -> 16000"), |b| {
            b.iter(|| resample(&x, from, 16_000, 6, 0.99))
        });
    }
    let (_, x) = encoded(16_000, 1, 16, false);
    g.bench_function("Spectrogram asr-val (n_fft 512, hop 160) 16 kHz", |b| {
        b.iter(|| sluice::audio::spectrogram(&x, &sluice::bench::ASR_SPECTROGRAM))
    });
    g.finish();
}

criterion_group!(benches, bench, front_end);
criterion_main!(benches);

//! The profiler for speech pipelines: read and DecodeAudio, then each operator's CPU time on one
//! thread with the bytes of the values it takes and makes (f32 audio, features or complex
//! spectra), and — when a GPU is given — each operator with a spectral kernel timed alone on a
//! batch of the values it saw (the executor's own draws, stages and encoding).

use super::profile::{best_of_three, profiling_failed, CostProfile, ProfileGpu, Sums};
use crate::backend::wgpu::encode_spectral;
use crate::error::{Error, Result};
use crate::exec::{draw_spectral, spectral_input, spectral_stages};
use crate::ops::{AudioOp, DecodeAudio, Op, Value};
use crate::rng::SampleRng;
use crate::source::Source;
use std::time::Instant;

/// Samples each GPU timing runs on (a batch's worth; the cost is per sample).
pub(super) const GPU_SAMPLES: usize = 16;

/// Bytes a value holds (32-bit values; complex: two per bin; token ids and their labels).
pub(super) fn value_bytes(v: &Value) -> f64 {
    (v.len_f32() * 4) as f64
}

/// Measure `ops` after `decoder` over the first `samples` samples of `source`.
pub fn measure_audio(
    source: &dyn Source,
    decoder: &DecodeAudio,
    ops: &[Op],
    samples: usize,
    gpu: Option<&ProfileGpu>,
) -> Result<CostProfile> {
    let mut sums = Sums::over(source, samples, ops.len());
    let mut bytes = Vec::new();
    // Per operator, the values it took (for the GPU timings).
    let mut inputs: Vec<Vec<Value>> = vec![Vec::new(); ops.len()];
    let failed = profiling_failed;
    for index in 0..sums.n as u64 {
        sums.read(source, index, &mut bytes)?;
        let t = Instant::now();
        let mut value = Value::Audio(
            decoder
                .decode(&bytes)
                .map_err(|e| failed(index, "DecodeAudio", e))?,
        );
        sums.decode_ns += t.elapsed().as_nanos() as f64;
        sums.decoded_bytes += value_bytes(&value);
        let mut i = 0;
        while i < ops.len() {
            let op = &ops[i];
            if gpu.is_some() && op.spec().runs_on_gpu() && (index as usize) < GPU_SAMPLES {
                inputs[i].push(value.clone());
            }
            sums.bytes_in[i] += value_bytes(&value);
            let mut rng = SampleRng::new(0, 0, index, i as u32 + 1);
            let t = Instant::now();
            if let Some(norm) = fused_norm(ops, i) {
                // The executor runs TimeStretch → ComplexNorm as one step: time that step, book
                // it on TimeStretch, and give both their bytes (the complex intermediate holds
                // two floats per value of the result).
                let Op::Audio(stretch) = op else {
                    unreachable!("fused_norm matched a TimeStretch")
                };
                crate::ops::stretch_then_norm(stretch, norm, &mut value, &mut rng)
                    .map_err(|e| failed(index, op.name(), e))?;
                sums.cpu_ns[i] += t.elapsed().as_nanos() as f64;
                let out = value_bytes(&value);
                sums.bytes_out[i] += 2.0 * out;
                sums.bytes_in[i + 1] += 2.0 * out;
                sums.bytes_out[i + 1] += out;
                i += 2;
                continue;
            }
            match op {
                Op::Audio(a) => a.apply(&mut value, &mut rng),
                Op::User(u) => u.run(&mut value, &mut rng),
                other => Err(format!("{} is not a speech operator", other.name())),
            }
            .map_err(|e| failed(index, op.name(), e))?;
            sums.cpu_ns[i] += t.elapsed().as_nanos() as f64;
            sums.bytes_out[i] += value_bytes(&value);
            i += 1;
        }
    }
    sums.profile(source, ops, gpu, |i, op| match gpu {
        Some(gpu) if !inputs[i].is_empty() => Ok(Some(
            time_spectral(gpu, op, &inputs[i])? / inputs[i].len() as f64,
        )),
        _ => Ok(None),
    })
}

/// The ComplexNorm that the executor fuses with the TimeStretch at `i` (fusion is always on in
/// an optimized plan), if one follows it.
fn fused_norm(ops: &[Op], i: usize) -> Option<&AudioOp> {
    match (&ops[i], ops.get(i + 1)) {
        (
            Op::Audio(AudioOp::TimeStretch { .. }),
            Some(Op::Audio(n @ AudioOp::ComplexNorm { .. })),
        ) => Some(n),
        _ => None,
    }
}

/// One speech operator alone on the GPU over `values` (end to end, best of 3), ns.
fn time_spectral(gpu: &ProfileGpu, op: &Op, values: &[Value]) -> Result<f64> {
    let fail =
        |e: String| Error::Worker(format!("profiling {} on {}: {e}", op.name(), gpu.backend()));
    let ops = std::slice::from_ref(op);
    let draws = values
        .iter()
        .enumerate()
        .map(|(s, v)| draw_spectral(ops, &[1], (0, 0, s as u64), v).map_err(|(_, e)| e))
        .collect::<std::result::Result<Vec<_>, String>>()
        .map_err(fail)?;
    let inputs: Vec<_> = values.iter().map(spectral_input).collect();
    let stages = spectral_stages(ops, &draws, inputs[0].rows);
    let width = draws.iter().map(|d| d.frames).max().unwrap_or(0);
    let batch = encode_spectral(&inputs, &stages, width, 0.0).map_err(fail)?;
    let runner = gpu.runner();
    best_of_three(|| runner.run_encoded(&batch).map(|_| ())).map_err(fail)
}

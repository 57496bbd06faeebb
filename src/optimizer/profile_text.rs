//! The profiler for text pipelines: read and Tokenize, then each operator's CPU time on one
//! thread with the bytes of the values it takes and makes (i32 ids, their labels, f32
//! embeddings). Pack is timed as the epoch iterator runs it (appending ids to the token stream).
//! When a GPU is given, each operator with a token kernel (MlmMask, EmbeddingLookup) is timed
//! alone on a batch of the values it saw, padded as the executor pads them (its own draws and
//! encoding, the table resident on the device as in a run).

use super::profile::{best_of_three, profiling_failed, CostProfile, ProfileGpu, Sums};
use super::profile_audio::{value_bytes, GPU_SAMPLES};
use crate::backend::wgpu::{encode_text, TokenInput};
use crate::error::{Error, Result};
use crate::exec::{draw_tokens, token_input, tokens_unsupported};
use crate::ops::{DecodeText, Op, TextOp, Value};
use crate::rng::SampleRng;
use crate::source::Source;
use crate::text::TokenStream;
use std::time::Instant;

/// Measure `ops` after `decoder` over the first `samples` samples of `source`.
pub fn measure_text(
    source: &dyn Source,
    decoder: &DecodeText,
    ops: &[Op],
    samples: usize,
    gpu: Option<&ProfileGpu>,
) -> Result<CostProfile> {
    let mut sums = Sums::over(source, samples, ops.len());
    let mut bytes = Vec::new();
    let mut stream = TokenStream::default();
    // Per operator, the values it took (for the GPU timings).
    let mut inputs: Vec<Vec<Value>> = vec![Vec::new(); ops.len()];
    for index in 0..sums.n as u64 {
        sums.read(source, index, &mut bytes)?;
        let t = Instant::now();
        let tokens = decoder
            .decode(&bytes)
            .map_err(|e| profiling_failed(index, "Tokenize", e))?;
        sums.decode_ns += t.elapsed().as_nanos() as f64;
        let mut value = Value::Tokens(tokens);
        sums.decoded_bytes += value_bytes(&value);
        for (i, op) in ops.iter().enumerate() {
            if gpu.is_some() && op.spec().runs_on_gpu() && (index as usize) < GPU_SAMPLES {
                inputs[i].push(value.clone());
            }
            sums.bytes_in[i] += value_bytes(&value);
            let mut rng = SampleRng::new(0, 0, index, i as u32 + 1);
            let t = Instant::now();
            match (op, &value) {
                (Op::Text(TextOp::Pack(spec)), Value::Tokens(tokens)) => {
                    let ids = tokens.ids.iter().map(|&id| id as i32);
                    stream.push(index, ids, spec);
                    Ok(())
                }
                (Op::Text(t), _) => t.apply(&mut value, &rng),
                (Op::User(u), _) => u.run(&mut value, &mut rng),
                (other, _) => Err(format!("{} is not a text operator", other.name())),
            }
            .map_err(|e| profiling_failed(index, op.name(), e))?;
            sums.cpu_ns[i] += t.elapsed().as_nanos() as f64;
            sums.bytes_out[i] += value_bytes(&value);
        }
    }
    sums.profile(source, ops, gpu, |i, op| match gpu {
        Some(gpu) if !inputs[i].is_empty() => time_tokens(gpu, op, &inputs[i]),
        _ => Ok(None),
    })
}

/// One token operator alone on the GPU over `values` (end to end, best of 3), ns per sample;
/// None when the device cannot run it (a table over its buffer limit).
fn time_tokens(gpu: &ProfileGpu, op: &Op, values: &[Value]) -> Result<Option<f64>> {
    let runner = gpu.runner();
    let ops = std::slice::from_ref(op);
    if tokens_unsupported(ops, runner.max_buffer_bytes()).is_some() {
        return Ok(None);
    }
    let fail =
        |e: String| Error::Worker(format!("profiling {} on {}: {e}", op.name(), gpu.backend()));
    let draws = values
        .iter()
        .enumerate()
        .map(|(s, v)| draw_tokens(ops, &[1], (0, 0, s as u64), v).map_err(|(_, e)| e))
        .collect::<std::result::Result<Vec<_>, String>>()
        .map_err(fail)?;
    let inputs: Vec<TokenInput> = values.iter().map(token_input).collect();
    let width = inputs.iter().map(|x| x.ids.len()).max().unwrap_or(0);
    let stages = crate::exec::token_stages(ops, &draws);
    let (batch, _) = encode_text(&inputs, &stages, width, (0, 0.0)).map_err(fail)?;
    let ns = best_of_three(|| runner.run_encoded(&batch).map(|_| ())).map_err(fail)?;
    Ok(Some(ns / values.len() as f64))
}

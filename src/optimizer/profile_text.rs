//! The profiler for text pipelines: read and Tokenize, then each operator's CPU time on one
//! thread with the bytes of the values it takes and makes (i32 ids, their labels, f32
//! embeddings). Pack is timed as the epoch iterator runs it (appending ids to the token stream).
//! No text operator has a GPU kernel yet, so no GPU timings are taken.

use super::profile::{profiling_failed, CostProfile, ProfileGpu, Sums};
use super::profile_audio::value_bytes;
use crate::error::Result;
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
    sums.profile(source, ops, gpu, |_, _| Ok(None))
}

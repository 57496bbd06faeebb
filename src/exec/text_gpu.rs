//! The token operators of a GPU suffix (MlmMask, EmbeddingLookup, and the batch's padding):
//! per sample, the checks the CPU operators would make (ids inside the table, the fixed pad
//! length) and each MlmMask's counter-RNG stream, so a bad sample is reported against its
//! operator before the batch goes to the GPU; per batch, the [`TextStage`]s the kernels run,
//! in chunks of samples that fit the device's buffers.

use crate::backend::wgpu::{
    encode_text, table_unsupported, EncodedBatch, TextLayout, TextStage, TokenInput,
};
use crate::backend::GpuRunner;
use crate::ops::{Op, TextOp, Value};
use crate::rng::SampleRng;
use crate::text::IGNORE_LABEL;

/// One sample's suffix parameters: each suffix operator's stream (MlmMask; unused otherwise).
pub type TokenDraws = Vec<([u32; 2], [u32; 3])>;

/// Why the suffix `ops` cannot run on a device whose buffers may not exceed `limit` bytes
/// (None: it can): an operator without a token kernel, a table over the limit, or an MlmMask
/// whose random ids could fall outside the lookup's table.
pub fn tokens_unsupported(ops: &[Op], limit: u64) -> Option<String> {
    let mut vocab = None;
    for op in ops {
        match op {
            Op::Text(TextOp::MlmMask(spec)) => vocab = Some(spec.vocab_size.max(spec.mask_id + 1)),
            Op::Text(TextOp::EmbeddingLookup(table)) => {
                if let Some(why) = table_unsupported(table, limit) {
                    return Some(why);
                }
                if let Some(v) = vocab.filter(|&v| v as usize > table.rows) {
                    return Some(format!(
                        "MlmMask draws ids below {v}, but the embedding table has {} rows",
                        table.rows
                    ));
                }
            }
            other => return Some(format!("{} has no token kernel", other.name())),
        }
    }
    None
}

/// Sample `index`'s suffix parameters, checking its tokens as the CPU operators would; an error
/// names the suffix operator (its position in `ops`).
pub fn draw_tokens(
    ops: &[Op],
    op_ids: &[u32],
    (seed, epoch, index): (u64, u32, u64),
    value: &Value,
) -> Result<TokenDraws, (usize, String)> {
    let Value::Tokens(tokens) = value else {
        return Err((
            0,
            format!("{:?} values have no token kernels", value.kind()),
        ));
    };
    let stream = |i: usize| SampleRng::new(seed, epoch, index, op_ids[i]);
    ops.iter()
        .enumerate()
        .map(|(i, op)| match op {
            Op::Text(TextOp::EmbeddingLookup(table)) => {
                if table.check(tokens).is_err() {
                    // The lookup sees the ids after the masks: a bad id a mask replaced is
                    // no error on the CPU. Rare, so only then are the masks run here.
                    let mut masked = tokens.clone();
                    for (k, op) in ops[..i].iter().enumerate() {
                        if let Op::Text(TextOp::MlmMask(spec)) = op {
                            spec.apply(&mut masked, &stream(k));
                        }
                    }
                    table.check(&masked).map_err(|e| (i, e))?;
                }
                Ok(([0; 2], [0; 3]))
            }
            _ => Ok(stream(i).stream()),
        })
        .collect()
}

/// The stages of the suffix `ops` for samples with `draws`.
pub fn token_stages(ops: &[Op], draws: &[TokenDraws]) -> Vec<TextStage> {
    ops.iter()
        .enumerate()
        .map(|(i, op)| match op {
            Op::Text(TextOp::MlmMask(spec)) => TextStage::Mlm {
                spec: spec.clone(),
                streams: draws.iter().map(|d| d[i]).collect(),
            },
            Op::Text(TextOp::EmbeddingLookup(table)) => TextStage::Gather(table.clone()),
            other => unreachable!("{} has no token kernel: never placed there", other.name()),
        })
        .collect()
}

/// The kernels' view of a value entering the token suffix (its ids and labels).
pub fn token_input(value: &Value) -> TokenInput<'_> {
    match value {
        Value::Tokens(t) => TokenInput {
            ids: &t.ids,
            labels: &t.labels,
        },
        other => unreachable!("{:?} never enters a token suffix", other.kind()),
    }
}

/// The width of a sample's row in the main tensor: `dim` floats with a lookup, else one id.
pub fn row_words(ops: &[Op]) -> usize {
    ops.iter()
        .find_map(|op| match op {
            Op::Text(TextOp::EmbeddingLookup(t)) => Some(t.dim),
            _ => None,
        })
        .unwrap_or(1)
}

/// Whether the batch carries labels: an MlmMask sets them, or a sample brought its own.
pub fn labelled(ops: &[Op], values: &[Value]) -> bool {
    ops.iter()
        .any(|op| matches!(op, Op::Text(TextOp::MlmMask(_))))
        || values
            .iter()
            .any(|v| matches!(v, Value::Tokens(t) if !t.labels.is_empty()))
}

/// Encode `values` (token ids and their draws) through the suffix `ops` as one batch, every
/// sample padded to `width`.
pub fn encode_values(
    ops: &[Op],
    (values, draws): (&[Value], &[TokenDraws]),
    width: usize,
    pad: (u32, f32),
) -> Result<(EncodedBatch, TextLayout), String> {
    let inputs: Vec<TokenInput> = values.iter().map(token_input).collect();
    encode_text(&inputs, &token_stages(ops, draws), width, pad)
}

/// Run the suffix `ops` on `values` (token ids, each padded to `width`) on `gpu`, in chunks of
/// samples whose batch fits the device's buffer limit, into `main` (`[n, width, row_words]`
/// 32-bit values) and, when the batch is [`labelled`], `labels` (`[n, width]` i32).
pub fn run_tokens(
    gpu: &dyn GpuRunner,
    ops: &[Op],
    (values, draws): (&[Value], &[TokenDraws]),
    (width, pad): (usize, (u32, f32)),
    main: &mut [u8],
    mut labels: Option<&mut [u8]>,
) -> Result<(), String> {
    let row = row_words(ops);
    let one = TextLayout {
        samples: 1,
        width,
        labelled: true,
        dim: (row > 1).then_some(row),
    };
    let chunk = (gpu.max_buffer_bytes() / (one.words() as u64 * 4).max(1)).clamp(1, 65535);
    let (main_bytes, label_bytes) = (width * row * 4, width * 4);
    for (k, part) in values.chunks(chunk as usize).enumerate() {
        let first = k * chunk as usize;
        let part_draws = &draws[first..first + part.len()];
        let (batch, layout) = encode_values(ops, (part, part_draws), width, pad)?;
        let bytes = gpu.run_encoded(&batch)?;
        let (got, got_labels) = layout.split(&bytes[0]);
        main[first * main_bytes..][..got.len()].copy_from_slice(got);
        if let Some(out) = labels.as_deref_mut() {
            let out = &mut out[first * label_bytes..][..part.len() * label_bytes];
            match got_labels {
                Some(l) => out.copy_from_slice(l),
                // This chunk's samples brought no labels, others did.
                None => out
                    .chunks_exact_mut(4)
                    .for_each(|w| w.copy_from_slice(&IGNORE_LABEL.to_le_bytes())),
            }
        }
    }
    Ok(())
}

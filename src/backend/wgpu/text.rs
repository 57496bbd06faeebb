//! Encoding a batch's token stages — padding, MlmMask, EmbeddingLookup — as kernel passes of
//! `shaders/text.wgsl` and its CUDA twin `kernels/text.cu`. Integer kernels, bit-exact with the
//! CPU operators. The batch lives in one buffer: the padded ids `[n, width]` (i32), the labels
//! `[n, width]` when the batch has any, the embeddings `[n, width, dim]` (f32) when it ends in
//! a lookup ([`TextLayout`]). The embedding table is not part of the batch: it is bound as the
//! kernels' aux buffer from a copy each device keeps ([`ResidentTable`]), uploaded once.
//! Nothing here touches a device: the result is an [`EncodedBatch`], run by wgpu and CUDA alike.

use super::encode::{offsets, Encoding, INPUT, RECORDS};
use super::kernels::{Params, WORKGROUP};
use super::run::EncodedBatch;
use crate::text::{EmbeddingTable, MlmSpec};
use std::sync::Arc;

/// Record words (the `T_*` fields of text.wgsl).
const REC_WORDS: usize = 13;
const T_DST: usize = 0;
const T_LEN: usize = 1;
const T_SRC: usize = 2;
const T_WIDTH: usize = 3;
const T_LABEL_SRC: usize = 4;
const T_LABEL_DST: usize = 5;
const T_PAD_ID: usize = 6;
const T_KEY0: usize = 7;
const T_C1: usize = 9;
const T_TABLE: usize = 12;
const T_OUT: usize = 7;
const T_DIM: usize = 8;
const T_ROWS: usize = 9;
const T_PAD_VALUE: usize = 10;
/// "No labels" in a label offset field.
const NONE: u32 = u32::MAX;
/// The most workgroups one dispatch dimension takes; the gather loops past it.
const MAX_GROUPS: u64 = 65535;

/// One token operator applied to a batch on the GPU.
#[derive(Debug, Clone)]
pub enum TextStage {
    /// BERT's corruption; each sample's counter-RNG stream (its `SampleRng::stream`).
    Mlm {
        spec: MlmSpec,
        streams: Vec<([u32; 2], [u32; 3])>,
    },
    /// Each id's row of the table: the batch becomes `[n, width, dim]` f32.
    Gather(EmbeddingTable),
}

/// One sample's tokens: its ids and, when an operator before set them, its labels.
#[derive(Debug, Clone, Copy)]
pub struct TokenInput<'a> {
    pub ids: &'a [u32],
    pub labels: &'a [i32],
}

/// A table the kernels read as their aux buffer, kept on the device across batches: `key`
/// identifies it (the address of its shared values, which the holder keeps alive).
#[derive(Clone)]
pub struct ResidentTable {
    pub data: Arc<[f32]>,
}

impl ResidentTable {
    pub fn key(&self) -> usize {
        Arc::as_ptr(&self.data) as *const f32 as usize
    }

    pub fn bytes(&self) -> u64 {
        self.data.len() as u64 * 4
    }
}

impl std::fmt::Debug for ResidentTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ResidentTable({} values)", self.data.len())
    }
}

/// Where a text batch's tensors lie in its output buffer (words): ids at 0, labels after
/// them (when `labelled`), embeddings after those (when `dim` is set).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextLayout {
    pub samples: usize,
    pub width: usize,
    pub labelled: bool,
    pub dim: Option<usize>,
}

impl TextLayout {
    fn matrix(&self) -> usize {
        self.samples * self.width
    }

    fn labels_at(&self) -> usize {
        self.matrix()
    }

    fn embeddings_at(&self) -> usize {
        self.matrix() * (1 + usize::from(self.labelled))
    }

    /// Words of the whole buffer.
    pub fn words(&self) -> usize {
        self.embeddings_at() + self.dim.map_or(0, |d| self.matrix() * d)
    }

    /// Where the batch's main tensor (embeddings when there are, else ids) and its labels lie
    /// in the output buffer, as byte ranges.
    pub fn ranges(&self) -> (std::ops::Range<usize>, Option<std::ops::Range<usize>>) {
        let m = self.matrix() * 4;
        let labels = self.labelled.then_some(m..2 * m);
        let main = match self.dim {
            Some(_) => self.embeddings_at() * 4..self.words() * 4,
            None => 0..m,
        };
        (main, labels)
    }

    /// The main tensor and the labels out of the output buffer's bytes.
    pub fn split<'a>(&self, bytes: &'a [u8]) -> (&'a [u8], Option<&'a [u8]>) {
        let (main, labels) = self.ranges();
        (&bytes[main], labels.map(|l| &bytes[l]))
    }
}

/// Why `table` cannot be read by kernels whose buffers may not exceed `limit` bytes.
pub fn table_unsupported(table: &EmbeddingTable, limit: u64) -> Option<String> {
    let bytes = (table.rows * table.dim * 4) as u64;
    (bytes > limit || table.rows * table.dim > u32::MAX as usize).then(|| {
        format!(
            "the embedding table ({} × {}, {bytes} bytes) is over the device's {limit} byte \
             storage binding limit",
            table.rows, table.dim
        )
    })
}

/// Encode `inputs` through `stages` into the batch [`TextLayout`] describes: every sample padded
/// to `width` with `pad_id` (ids), −100 (labels) and `pad_value` (embeddings).
pub fn encode_text(
    inputs: &[TokenInput],
    stages: &[TextStage],
    width: usize,
    (pad_id, pad_value): (u32, f32),
) -> Result<(EncodedBatch, TextLayout), String> {
    let n = inputs.len();
    for (s, x) in inputs.iter().enumerate() {
        if x.ids.len() > width {
            return Err(format!(
                "sample {s}: {} tokens do not fit a width of {width}",
                x.ids.len()
            ));
        }
        if !x.labels.is_empty() && x.labels.len() != x.ids.len() {
            return Err(format!(
                "sample {s}: {} labels for {} ids",
                x.labels.len(),
                x.ids.len()
            ));
        }
    }
    let mlm = stages.iter().any(|s| matches!(s, TextStage::Mlm { .. }));
    let table = stages.iter().find_map(|s| match s {
        TextStage::Gather(t) => Some(t),
        _ => None,
    });
    if let Some(i) = stages
        .iter()
        .position(|s| matches!(s, TextStage::Gather(_)))
    {
        if i + 1 != stages.len() {
            return Err("EmbeddingLookup must be the last GPU stage".into());
        }
    }
    let layout = TextLayout {
        samples: n,
        width,
        labelled: mlm || inputs.iter().any(|x| !x.labels.is_empty()),
        dim: table.map(|t| t.dim),
    };
    // The input: every sample's ids, then the labels of those that have them.
    let (id_off, id_words) = offsets(inputs.iter().map(|x| x.ids.len() as u64));
    let (label_off, label_words) = offsets(inputs.iter().map(|x| x.labels.len() as u64));
    let mut input = Vec::with_capacity((id_words + label_words) as usize * 4);
    for x in inputs {
        input.extend(x.ids.iter().flat_map(|v| v.to_le_bytes()));
    }
    for x in inputs {
        input.extend(x.labels.iter().flat_map(|v| v.to_le_bytes()));
    }
    let mut enc = Encoding {
        records: Vec::new(),
        uniforms: Vec::new(),
        passes: Vec::new(),
        align: 256,
    };
    const OUT: usize = INPUT + 1;
    let mut sizes = vec![
        0u64,
        4,
        (input.len() as u64).max(4),
        layout.words() as u64 * 4,
    ];
    let base = |s: usize| {
        let mut r = vec![0u32; REC_WORDS];
        r[T_DST] = (s * width) as u32;
        r[T_LEN] = inputs[s].ids.len() as u32;
        r[T_WIDTH] = width as u32;
        r[T_LABEL_DST] = match layout.labelled {
            true => (layout.labels_at() + s * width) as u32,
            false => NONE,
        };
        r
    };
    let pad: Vec<Vec<u32>> = (0..n)
        .map(|s| {
            let mut r = base(s);
            r[T_SRC] = id_off[s] as u32;
            r[T_LABEL_SRC] = match inputs[s].labels.is_empty() {
                true => NONE,
                false => (id_words + label_off[s]) as u32,
            };
            r[T_PAD_ID] = pad_id;
            r
        })
        .collect();
    let params = Params::default();
    let no_tail = (REC_WORDS, &[][..]);
    enc.pass("token_pad", OUT, INPUT, &pad, no_tail, params, width as u64)?;
    let mut resident = None;
    for stage in stages {
        match stage {
            TextStage::Mlm { spec, streams } => {
                if streams.len() != n {
                    return Err(format!("{} MLM streams for {n} samples", streams.len()));
                }
                let (select, mask, random) = spec.thresholds();
                let split = |t: u64| [t as u32, (t >> 32) as u32];
                let mut tail = Vec::with_capacity(9 + spec.special.len());
                for t in [select, mask, random] {
                    tail.extend(split(t));
                }
                tail.extend([spec.mask_id, spec.vocab_size, spec.special.len() as u32]);
                tail.extend(&spec.special);
                let table_at = (n * REC_WORDS) as u32;
                let recs: Vec<Vec<u32>> = (0..n)
                    .map(|s| {
                        let mut r = base(s);
                        let (key, counter) = streams[s];
                        r[T_KEY0..T_KEY0 + 2].copy_from_slice(&key);
                        r[T_C1..T_C1 + 3].copy_from_slice(&counter);
                        r[T_TABLE] = table_at;
                        r
                    })
                    .collect();
                let work = width as u64;
                enc.pass(
                    "token_mlm",
                    OUT,
                    INPUT,
                    &recs,
                    (REC_WORDS, &tail),
                    params,
                    work,
                )?;
            }
            TextStage::Gather(table) => {
                let plane = width * table.dim;
                let recs: Vec<Vec<u32>> = (0..n)
                    .map(|s| {
                        let mut r = base(s);
                        r[T_OUT] = (layout.embeddings_at() + s * plane) as u32;
                        r[T_DIM] = table.dim as u32;
                        r[T_ROWS] = table.rows as u32;
                        r[T_PAD_VALUE] = pad_value.to_bits();
                        r
                    })
                    .collect();
                let work = (plane as u64).min(MAX_GROUPS * u64::from(WORKGROUP));
                enc.pass("token_gather", OUT, INPUT, &recs, no_tail, params, work)?;
                resident = Some(ResidentTable {
                    data: table.shared_data().clone(),
                });
            }
        }
    }
    if layout.words() > u32::MAX as usize {
        return Err(format!(
            "the batch's {} words are over a kernel's 32-bit offsets: use smaller batches",
            layout.words()
        ));
    }
    sizes[RECORDS] = (enc.records.len() as u64 * 4).max(4);
    let passes = enc.encoded_passes();
    let batch = EncodedBatch {
        buffer_bytes: sizes,
        input_offsets: id_off.iter().map(|&w| w as usize * 4).collect(),
        input_len: input.len(),
        input,
        records: enc.records,
        passes,
        output_buffer: OUT,
        output_offsets: vec![0],
        output_lengths: vec![layout.words() * 4],
        resident,
    };
    Ok((batch, layout))
}

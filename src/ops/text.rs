//! The text operators: `Tokenize` (the decoder of a text pipeline: bytes → token ids),
//! `Truncate`, `AddSpecialTokens`, `MlmMask` and `EmbeddingLookup`. Their arithmetic is in
//! [`crate::text`]; here they declare themselves and apply to pipeline values.

use super::spec::{OpKind, OpSpec, SizeRule, ValueKind};
use super::Value;
use crate::rng::SampleRng;
use crate::text::{
    self, Embedded, EmbeddingTable, MlmSpec, PackSpec, TextTokenizer, Tokens, Utf8Policy,
};

/// What turns a text sample's bytes into token ids.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeText {
    pub tokenizer: TextTokenizer,
    pub invalid_utf8: Utf8Policy,
    /// Keep each token's character span (batches gain `[n, width, 2]` offsets).
    pub offsets: bool,
}

impl Default for DecodeText {
    fn default() -> Self {
        DecodeText::new(TextTokenizer::gpt2())
    }
}

impl DecodeText {
    pub fn new(tokenizer: TextTokenizer) -> Self {
        DecodeText {
            tokenizer,
            invalid_utf8: Utf8Policy::Error,
            offsets: false,
        }
    }

    /// Keep each token's character span `[start, end)` in the sample's text (Hugging Face's
    /// `return_offsets_mapping`); the batch carries them as [`crate::Batch::token_offsets`].
    pub fn with_offsets(mut self, on: bool) -> Self {
        self.offsets = on;
        self
    }

    pub fn with_invalid_utf8(mut self, policy: Utf8Policy) -> Self {
        self.invalid_utf8 = policy;
        self
    }

    /// The ids of one sample's text; empty text is an error (a sample with nothing in it).
    pub fn decode(&self, bytes: &[u8]) -> Result<Tokens, String> {
        let text = TextTokenizer::text(bytes, self.invalid_utf8)?;
        if text.trim().is_empty() {
            return Err("the sample has no text (empty or only whitespace)".into());
        }
        if self.offsets {
            let (ids, offsets) = self.tokenizer.encode_with_offsets(&text)?;
            return Ok(Tokens {
                ids,
                offsets,
                ..Tokens::default()
            });
        }
        Ok(Tokens::new(self.tokenizer.encode(&text)?))
    }
}

/// A token-sequence operator.
#[derive(Debug, Clone, PartialEq)]
pub enum TextOp {
    /// Keep the first `max_len` tokens; a sequence that ended in `keep_end` (an EOS added
    /// before) still ends in it.
    Truncate {
        max_len: usize,
        keep_end: Option<u32>,
    },
    /// `bos` before the sequence and `eos` after it (GPT-2: both `<|endoftext|>`; BERT: [CLS],
    /// [SEP]).
    AddSpecialTokens { bos: Option<u32>, eos: Option<u32> },
    /// BERT's masking: tokens selected at random become the mask token, a random id or stay,
    /// and the sequence gains labels (see [`MlmSpec`]). Random, keyed by token position.
    MlmMask(MlmSpec),
    /// Documents concatenated with a separator into blocks of `seq_len` (see [`PackSpec`]):
    /// the batch-forming last operator of a pipeline, run by the epoch iterator, not per sample.
    Pack(PackSpec),
    /// Each id's row of a frozen table: tokens `[L]` → f32 `[L, dim]`.
    EmbeddingLookup(EmbeddingTable),
}

impl TextOp {
    pub fn kind(&self) -> OpKind {
        match self {
            TextOp::Truncate { .. } => OpKind::Truncate,
            TextOp::AddSpecialTokens { .. } => OpKind::AddSpecialTokens,
            TextOp::MlmMask(_) => OpKind::MlmMask,
            TextOp::Pack(_) => OpKind::Pack,
            TextOp::EmbeddingLookup(_) => OpKind::EmbeddingLookup,
        }
    }

    pub fn spec(&self) -> OpSpec {
        let output = match self {
            TextOp::EmbeddingLookup(_) => ValueKind::Embeddings,
            _ => ValueKind::Tokens,
        };
        OpSpec {
            kind: self.kind(),
            input: ValueKind::Tokens,
            output,
            size: SizeRule::DataDependent,
            bytes_per_output_pixel: 4,
            random: matches!(self, TextOp::MlmMask(_)),
            commutes_with: Vec::new(),
            backends: match self.has_gpu_kernel() {
                true => vec![
                    super::Backend::Cpu,
                    super::Backend::Wgpu,
                    super::Backend::Cuda,
                ],
                false => vec![super::Backend::Cpu],
            },
            cpu_fuses_with: Vec::new(),
        }
    }

    /// MlmMask and EmbeddingLookup have token kernels (shaders/text.wgsl, kernels/text.cu);
    /// Truncate, AddSpecialTokens and Pack are cheap, data-dependent and stay on the CPU.
    pub fn has_gpu_kernel(&self) -> bool {
        matches!(self, TextOp::MlmMask(_) | TextOp::EmbeddingLookup(_))
    }

    pub fn validate(&self) -> Result<(), String> {
        match self {
            TextOp::Truncate { max_len: 0, .. } => Err("max_len must be at least 1".into()),
            TextOp::AddSpecialTokens {
                bos: None,
                eos: None,
            } => Err("give a BOS or an EOS token (the tokenizer has neither)".into()),
            TextOp::MlmMask(spec) => spec.validate(),
            TextOp::Pack(PackSpec { seq_len: 0, .. }) => Err("seq_len must be at least 1".into()),
            _ => Ok(()),
        }
    }

    /// Apply to a token sequence in place (EmbeddingLookup turns it into embeddings); `rng` is
    /// the sample's stream for this operator.
    pub fn apply(&self, value: &mut Value, rng: &SampleRng) -> Result<(), String> {
        let Value::Tokens(tokens) = value else {
            return Err(format!("{:?} takes tokens", self.kind()));
        };
        match self {
            TextOp::Truncate { max_len, keep_end } => {
                text::truncate(tokens, *max_len, keep_end.as_slice())
            }
            TextOp::AddSpecialTokens { bos, eos } => text::add_special_tokens(tokens, *bos, *eos),
            TextOp::MlmMask(spec) => spec.apply(tokens, rng),
            TextOp::Pack(_) => {
                return Err(
                    "Pack forms batches from many samples: it runs as the pipeline's \
                            last operator, not on one sample"
                        .into(),
                )
            }
            TextOp::EmbeddingLookup(table) => {
                let mut out = Embedded::default();
                table.lookup(tokens, &mut out)?;
                *value = Value::Embedded(out);
            }
        }
        Ok(())
    }
}

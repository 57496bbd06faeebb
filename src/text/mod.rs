//! Text values and the text operators' CPU arithmetic: tokenizing (Hugging Face `tokenizers`),
//! truncation, special tokens, and the embedding lookup (issue 13). The pipeline's text
//! operators ([`crate::ops::TextOp`], [`crate::ops::DecodeText`]) are thin wrappers over these.

mod byte_level;
mod embedding;
mod mlm;
mod pack;
mod tokenizer;

pub use embedding::EmbeddingTable;
pub use mlm::{MlmSpec, IGNORE_LABEL};
pub use pack::{PackSpec, PackedBlocks, TokenStream};
pub use tokenizer::{TextTokenizer, Utf8Policy, BUILTIN_TOKENIZERS, MLM_SPECIALS};

/// A token sequence: vocabulary ids in text order, and after `MlmMask` one label per id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tokens {
    pub ids: Vec<u32>,
    /// Empty, or each position's training label ([`IGNORE_LABEL`] where there is nothing to
    /// predict); the sequence operators keep it aligned with `ids`.
    pub labels: Vec<i32>,
    /// Empty, or each token's character span `[start, end)` in the sample's text (Hugging Face's
    /// `offset_mapping`); special tokens added later get `[0, 0]`.
    pub offsets: Vec<[u32; 2]>,
}

impl Tokens {
    pub fn new(ids: Vec<u32>) -> Self {
        Tokens {
            ids,
            ..Tokens::default()
        }
    }
}

/// Embedding vectors of a token sequence: `[tokens, dim]`, row-major (one row per token).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Embedded {
    pub tokens: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

/// Keep at most `max_len` tokens: the first `max_len`, except that a sequence ending in one of
/// `keep_last` (an end-of-sequence token added earlier) keeps that token (and its label) as its
/// last.
pub fn truncate(tokens: &mut Tokens, max_len: usize, keep_last: &[u32]) {
    let ids = &mut tokens.ids;
    if ids.len() <= max_len {
        return;
    }
    let last = *ids.last().unwrap();
    let last_label = tokens.labels.last().copied();
    let last_offset = tokens.offsets.last().copied();
    ids.truncate(max_len);
    tokens.labels.truncate(max_len);
    tokens.offsets.truncate(max_len);
    if max_len > 0 && keep_last.contains(&last) {
        ids[max_len - 1] = last;
        if let Some(label) = last_label {
            tokens.labels[max_len - 1] = label;
        }
        if let Some(offset) = last_offset {
            tokens.offsets[max_len - 1] = offset;
        }
    }
}

/// `bos` before and `eos` after the sequence (either may be absent); labels, if any, get
/// [`IGNORE_LABEL`] for them, offsets `[0, 0]`.
pub fn add_special_tokens(tokens: &mut Tokens, bos: Option<u32>, eos: Option<u32>) {
    let labelled = !tokens.labels.is_empty();
    let spans = !tokens.offsets.is_empty();
    if let Some(b) = bos {
        tokens.ids.insert(0, b);
        if labelled {
            tokens.labels.insert(0, IGNORE_LABEL);
        }
        if spans {
            tokens.offsets.insert(0, [0, 0]);
        }
    }
    if let Some(e) = eos {
        tokens.ids.push(e);
        if labelled {
            tokens.labels.push(IGNORE_LABEL);
        }
        if spans {
            tokens.offsets.push([0, 0]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn truncated(ids: &[u32], max_len: usize) -> Vec<u32> {
        let mut t = Tokens::new(ids.to_vec());
        truncate(&mut t, max_len, &[2]);
        t.ids
    }

    #[test]
    fn truncate_keeps_the_end_token() {
        assert_eq!(truncated(&[1, 5, 6, 7, 2], 3), [1, 5, 2]);
        assert_eq!(truncated(&[1, 5, 6, 7], 3), [1, 5, 6]);
        assert_eq!(truncated(&[1, 5], 3), [1, 5]);
    }

    #[test]
    fn special_tokens_wrap_the_sequence() {
        let mut t = Tokens::new(vec![7, 8]);
        add_special_tokens(&mut t, Some(1), Some(2));
        assert_eq!(t.ids, [1, 7, 8, 2]);
        add_special_tokens(&mut t, None, Some(3));
        assert_eq!(t.ids, [1, 7, 8, 2, 3]);
        assert!(t.labels.is_empty());
    }

    #[test]
    fn labels_follow_the_ids() {
        let mut t = Tokens {
            ids: vec![7, 8, 9, 2],
            labels: vec![-100, 8, -100, -100],
            offsets: vec![[0, 3], [4, 6], [6, 9], [9, 10]],
        };
        add_special_tokens(&mut t, Some(1), None);
        assert_eq!(t.labels, [-100, -100, 8, -100, -100]);
        assert_eq!(t.offsets[..2], [[0, 0], [0, 3]]);
        truncate(&mut t, 3, &[2]);
        assert_eq!(
            (t.ids.as_slice(), t.labels.as_slice()),
            (&[1, 7, 2][..], &[-100, -100, -100][..])
        );
        assert_eq!(t.offsets, [[0, 0], [0, 3], [9, 10]]);
    }
}

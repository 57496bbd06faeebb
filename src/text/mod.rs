//! Text values and the text operators' CPU arithmetic: tokenizing (Hugging Face `tokenizers`),
//! truncation, special tokens, and the embedding lookup (issue 13). The pipeline's text
//! operators ([`crate::ops::TextOp`], [`crate::ops::DecodeText`]) are thin wrappers over these.

mod byte_level;
mod embedding;
mod tokenizer;

pub use embedding::EmbeddingTable;
pub use tokenizer::{TextTokenizer, Utf8Policy};

/// A token sequence: vocabulary ids in text order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tokens {
    pub ids: Vec<u32>,
}

/// Embedding vectors of a token sequence: `[tokens, dim]`, row-major (one row per token).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Embedded {
    pub tokens: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

/// Keep at most `max_len` tokens: the first `max_len`, except that a sequence ending in one of
/// `keep_last` (an end-of-sequence token added earlier) keeps that token as its last.
pub fn truncate(ids: &mut Vec<u32>, max_len: usize, keep_last: &[u32]) {
    if ids.len() <= max_len {
        return;
    }
    let last = *ids.last().unwrap();
    ids.truncate(max_len);
    if max_len > 0 && keep_last.contains(&last) {
        ids[max_len - 1] = last;
    }
}

/// `bos` before and `eos` after the sequence (either may be absent).
pub fn add_special_tokens(ids: &mut Vec<u32>, bos: Option<u32>, eos: Option<u32>) {
    if let Some(b) = bos {
        ids.insert(0, b);
    }
    if let Some(e) = eos {
        ids.push(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_keeps_the_end_token() {
        let mut ids = vec![1, 5, 6, 7, 2];
        truncate(&mut ids, 3, &[2]);
        assert_eq!(ids, [1, 5, 2]);
        let mut ids = vec![1, 5, 6, 7];
        truncate(&mut ids, 3, &[2]);
        assert_eq!(ids, [1, 5, 6]);
        let mut ids = vec![1, 5];
        truncate(&mut ids, 3, &[2]);
        assert_eq!(ids, [1, 5]);
    }

    #[test]
    fn special_tokens_wrap_the_sequence() {
        let mut ids = vec![7, 8];
        add_special_tokens(&mut ids, Some(1), Some(2));
        assert_eq!(ids, [1, 7, 8, 2]);
        add_special_tokens(&mut ids, None, Some(3));
        assert_eq!(ids, [1, 7, 8, 2, 3]);
    }
}

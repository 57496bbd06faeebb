//! Packing (`Pack`): documents' token ids concatenated in epoch order, each followed by a
//! separator, and cut into blocks of `seq_len` — no padding inside an epoch, no document
//! dropped or cut short except at block edges. Each batch of blocks carries `cu_seqlens`
//! (flash-attention's varlen boundaries over the flattened batch: every document start and
//! every block start), so attention can be masked per document, and causal-LM labels: the ids,
//! except [`IGNORE_LABEL`] at each segment's first position (nothing there predicts across a
//! boundary; Hugging Face's `DataCollatorWithFlattening` does the same). What does not fill a
//! batch waits for the next; the epoch's last batch holds the remainder, its last block padded.

use super::IGNORE_LABEL;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackSpec {
    /// Tokens per block.
    pub seq_len: usize,
    /// Appended after every document (GPT-2: `<|endoftext|>`); None: documents abut.
    pub separator: Option<u32>,
}

/// One batch of packed blocks, `[blocks, seq_len]` row-major.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PackedBlocks {
    pub ids: Vec<i32>,
    pub labels: Vec<i32>,
    /// Segment boundaries over the flattened blocks, from 0 to the real tokens' count.
    pub cu_seqlens: Vec<i32>,
    /// Real tokens per block (`seq_len` except in an epoch's last block).
    pub lengths: Vec<usize>,
    /// The documents with tokens in these blocks, in stream order (a document cut by a batch
    /// edge is listed in both batches).
    pub documents: Vec<u64>,
}

/// The token stream between batches: tokens not yet delivered and where documents start.
#[derive(Debug, Default)]
pub struct TokenStream {
    ids: Vec<i32>,
    /// (position in `ids`, document) for each document with tokens in `ids`; the first may
    /// start before `ids` (position 0, continued from the previous batch).
    starts: Vec<(usize, u64)>,
}

impl TokenStream {
    /// Tokens waiting.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Append document `doc`'s ids and the separator.
    pub fn push(&mut self, doc: u64, ids: impl IntoIterator<Item = i32>, spec: &PackSpec) {
        let at = self.ids.len();
        self.ids.extend(ids);
        self.ids.extend(spec.separator.map(|s| s as i32));
        if self.ids.len() > at {
            self.starts.push((at, doc));
        }
    }

    /// Drop the first `n` tokens (delivered): the document cut at `n`, if any, continues from
    /// position 0.
    pub fn drop_front(&mut self, n: usize) {
        let n = n.min(self.ids.len());
        let first_kept = self.starts.partition_point(|&(at, _)| at < n);
        self.ids.drain(..n);
        let mut rest: Vec<(usize, u64)> = self.starts[first_kept..]
            .iter()
            .map(|&(at, doc)| (at - n, doc))
            .collect();
        if let Some(i) = first_kept.checked_sub(1) {
            let cut = !self.ids.is_empty() && rest.first().is_none_or(|&(at, _)| at > 0);
            if cut {
                rest.insert(0, (0, self.starts[i].1));
            }
        }
        self.starts = rest;
    }

    /// Take the first `blocks × seq_len` tokens (fewer at the epoch's end: the last block is
    /// padded with `pad_id`) as one batch of blocks.
    pub fn take(&mut self, blocks: usize, spec: &PackSpec, pad_id: i32) -> PackedBlocks {
        let len = spec.seq_len;
        let n = self.ids.len().min(blocks * len);
        let blocks = n.div_ceil(len);
        let mut ids = Vec::with_capacity(blocks * len);
        ids.extend_from_slice(&self.ids[..n]);
        ids.resize(blocks * len, pad_id);
        // Document starts within the batch, then block starts: the segment boundaries.
        let first_kept = self.starts.partition_point(|&(at, _)| at < n);
        let mut bounds: Vec<usize> = self.starts[..first_kept].iter().map(|s| s.0).collect();
        bounds.extend((0..blocks).map(|b| b * len));
        bounds.push(n);
        bounds.sort_unstable();
        bounds.dedup();
        let mut labels = ids.clone();
        labels[n..].fill(IGNORE_LABEL);
        for &b in &bounds[..bounds.len() - 1] {
            labels[b] = IGNORE_LABEL;
        }
        let documents = self.starts[..first_kept].iter().map(|s| s.1).collect();
        let lengths = (0..blocks).map(|b| (n - b * len).min(len)).collect();
        self.drop_front(n);
        PackedBlocks {
            ids,
            labels,
            cu_seqlens: bounds.iter().map(|&b| b as i32).collect(),
            lengths,
            documents,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: PackSpec = PackSpec {
        seq_len: 4,
        separator: Some(0),
    };

    #[test]
    fn blocks_cut_documents_and_carry_the_rest() {
        let mut s = TokenStream::default();
        s.push(7, [1, 2, 3], &SPEC); // 1 2 3 0
        s.push(8, [4, 5, 6, 7, 8], &SPEC); // 4 5 6 7 8 0
        let b = s.take(1, &SPEC, -1);
        assert_eq!(b.ids, [1, 2, 3, 0]);
        assert_eq!(b.labels, [-100, 2, 3, 0]);
        assert_eq!(b.cu_seqlens, [0, 4]);
        assert_eq!(b.documents, [7]);
        assert_eq!(s.len(), 6);
        s.push(9, [9], &SPEC); // 9 0
        let b = s.take(2, &SPEC, -1);
        assert_eq!(b.ids, [4, 5, 6, 7, 8, 0, 9, 0]);
        assert_eq!(b.labels, [-100, 5, 6, 7, -100, 0, -100, 0]);
        assert_eq!(b.cu_seqlens, [0, 4, 6, 8]);
        assert_eq!(b.documents, [8, 9]);
        assert_eq!(b.lengths, [4, 4]);
        assert!(s.is_empty());
    }

    #[test]
    fn a_document_spanning_batches_is_listed_in_each_and_the_end_is_padded() {
        let mut s = TokenStream::default();
        s.push(1, 10..20, &SPEC); // 11 tokens with the separator
        let b = s.take(2, &SPEC, -1);
        assert_eq!(
            (b.documents.as_slice(), b.cu_seqlens.as_slice()),
            (&[1][..], &[0, 4, 8][..])
        );
        let b = s.take(2, &SPEC, -1);
        assert_eq!(b.ids, [18, 19, 0, -1]);
        assert_eq!(b.labels, [-100, 19, 0, -100]);
        assert_eq!(
            (b.cu_seqlens.as_slice(), b.lengths.as_slice()),
            (&[0, 3][..], &[3][..])
        );
        assert_eq!(b.documents, [1]);
        assert!(s.is_empty());
    }

    #[test]
    fn blocks_concatenate_back_to_the_stream() {
        let mut s = TokenStream::default();
        let mut want = Vec::new();
        let mut got: Vec<i32> = Vec::new();
        let mut seen = Vec::new();
        for doc in 0..50u64 {
            let ids: Vec<i32> = (0..(doc * 7 % 13) as i32).map(|i| 100 + i).collect();
            want.extend(&ids);
            want.push(0);
            s.push(doc, ids, &SPEC);
            while s.len() >= 8 {
                let b = s.take(2, &SPEC, -1);
                got.extend(&b.ids);
                seen.extend(b.documents);
            }
        }
        let b = s.take(2, &SPEC, -1);
        let n = *b.cu_seqlens.last().unwrap() as usize;
        got.extend(&b.ids[..n]);
        seen.extend(b.documents);
        assert_eq!(got, want);
        seen.dedup();
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
    }
}

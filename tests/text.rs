//! Text pipelines: GPT-2 ids through the executor, padded token and embedding batches with
//! lengths and attention masks, determinism across thread counts, and bad text input (invalid
//! UTF-8, empty lines, an over-long line, a binary file) failing with the sample's PATH:LINE and
//! the operator, or skipped and counted.

use sluice::bench::{TextAssets, Workload, BERT_MAX_TOKENS, NLP_EMBEDDING_DIM, NLP_MAX_TOKENS};
use sluice::gen::text::{write_text_corpus, TextCorpusSpec};
use sluice::ops::{DecodeText, TextOp};
use sluice::source::{open_text_path, Source, TextLines};
use sluice::text::PackSpec;
use sluice::text::{EmbeddingTable, TextTokenizer, Utf8Policy, IGNORE_LABEL};
use sluice::{DType, ErrorPolicy, Pipeline, PipelineBuilder};
use std::path::Path;
use std::sync::Arc;

mod common;

fn corpus(dir: &Path, documents: usize) -> Arc<dyn Source> {
    let path = write_text_corpus(dir, &TextCorpusSpec { documents, seed: 5 }).unwrap();
    open_text_path(&path, None).unwrap()
}

/// GPT-2 → Truncate → BOS/EOS, batches of padded ids.
fn ids_pipeline(source: Arc<dyn Source>, max_len: usize) -> PipelineBuilder {
    let t = TextTokenizer::gpt2();
    Pipeline::builder_shared(source)
        .decode_text(DecodeText::new(t.clone()))
        .op(TextOp::Truncate {
            max_len,
            keep_end: None,
        })
        .op(TextOp::AddSpecialTokens {
            bos: t.bos,
            eos: t.eos,
        })
        .pad_id(50256)
}

fn i32s(bytes: &[u8]) -> Vec<i32> {
    bytes
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn padded_ids_match_the_tokenizer_with_lengths_and_masks() {
    let dir = tempfile::tempdir().unwrap();
    let source = corpus(dir.path(), 60);
    let pipeline = ids_pipeline(source.clone(), 40)
        .batch_size(16)
        .pad_to_multiple_of(8)
        .threads(2)
        .build()
        .unwrap();
    assert_eq!(pipeline.output().dtype, DType::I32);
    let tokenizer = TextTokenizer::gpt2();
    let mut seen = 0;
    let mut buf = Vec::new();
    for batch in pipeline.epoch(0).unwrap() {
        let batch = batch.unwrap();
        let dense = batch.dense().unwrap();
        let width = dense.shape[1];
        assert_eq!(dense.shape, [batch.len(), width]);
        assert_eq!(width % 8, 0, "padded to a multiple of 8");
        assert_eq!(
            width,
            batch.lengths.iter().max().unwrap().next_multiple_of(8)
        );
        let mask = batch.attention_mask(width);
        for (k, &index) in batch.sample_indices.iter().enumerate() {
            source.read(index, &mut buf).unwrap();
            let mut want: Vec<i32> = tokenizer
                .encode(std::str::from_utf8(&buf).unwrap())
                .unwrap()
                .into_iter()
                .take(40)
                .map(|id| id as i32)
                .collect();
            want.insert(0, 50256);
            want.push(50256);
            let row = i32s(dense.sample(k));
            assert_eq!(batch.lengths[k], want.len());
            assert_eq!(row[..want.len()], want[..], "sample {index}");
            assert!(row[want.len()..].iter().all(|&id| id == 50256), "pad id");
            let m = &mask[k * width..(k + 1) * width];
            assert!(m[..want.len()].iter().all(|&b| b == 1));
            assert!(m[want.len()..].iter().all(|&b| b == 0));
            seen += 1;
        }
    }
    assert_eq!(seen, 60);
}

#[test]
fn nlp_embeddings_are_the_table_rows_and_do_not_depend_on_threads() {
    let dir = tempfile::tempdir().unwrap();
    let source = corpus(dir.path(), 40);
    let table = EmbeddingTable::random(50257, NLP_EMBEDDING_DIM, 9);
    let assets = TextAssets {
        tokenizer: Some(TextTokenizer::gpt2()),
        embeddings: Some(table.clone()),
    };
    let run = |threads: usize| {
        let builder = Pipeline::builder_shared(source.clone())
            .batch_size(8)
            .threads(threads)
            .shuffle(true)
            .seed(3);
        let pipeline = Workload::Nlp
            .add_ops_with(builder, &assets)
            .build()
            .unwrap();
        common::epoch_outputs(&pipeline, 1)
    };
    let one = run(1);
    assert_eq!(one, run(2), "same batches on 1 and 2 threads");
    let ids = ids_pipeline(source.clone(), NLP_MAX_TOKENS)
        .batch_size(8)
        .shuffle(true)
        .seed(3)
        .build()
        .unwrap();
    for ((bytes, lengths, indices), id_batch) in one.iter().zip(ids.epoch(1).unwrap()) {
        let id_batch = id_batch.unwrap();
        assert_eq!(&id_batch.sample_indices, indices);
        assert_eq!(&id_batch.lengths, lengths);
        assert!(lengths.iter().all(|&l| l <= NLP_MAX_TOKENS + 2));
        let longest = *lengths.iter().max().unwrap();
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(values.len(), lengths.len() * longest * NLP_EMBEDDING_DIM);
        for (k, &length) in lengths.iter().enumerate() {
            let ids = i32s(id_batch.sample(k));
            for (t, value_row) in values[k * longest * NLP_EMBEDDING_DIM..]
                .chunks_exact(NLP_EMBEDDING_DIM)
                .take(longest)
                .enumerate()
            {
                if t < length {
                    assert_eq!(value_row, table.row(ids[t] as u32), "sample {k} token {t}");
                } else {
                    assert!(value_row.iter().all(|&v| v == 0.0), "padding is zero");
                }
            }
        }
    }
}

/// A text file of lines with the given bytes, as a source.
fn lines_source(dir: &Path, bytes: &[u8]) -> Arc<dyn Source> {
    let path = dir.join("bad.txt");
    std::fs::write(&path, bytes).unwrap();
    Arc::new(TextLines::open(&path).unwrap().with_max_bytes(1 << 20))
}

fn first_error(pipeline: &Pipeline) -> String {
    pipeline
        .epoch(0)
        .unwrap()
        .find_map(Result::err)
        .map(|e| e.to_string())
        .expect("an error")
}

#[test]
fn bad_text_fails_naming_line_and_operator_or_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = b"good line one\n\n   \nbad \xff\xfe utf8\n".to_vec();
    bytes.extend(std::iter::repeat_n(b'x', (1 << 20) + 10));
    bytes.extend(b"\nlast good line\n");
    let source = lines_source(dir.path(), &bytes);
    // The empty line is left out by the source; the whitespace one is a sample.
    assert_eq!(source.len(), 5);
    let origin = dir.path().join("bad.txt").display().to_string();

    let strict = ids_pipeline(source.clone(), 64)
        .batch_size(2)
        .build()
        .unwrap();
    let err = first_error(&strict);
    assert!(
        err.contains(&format!("{origin}:3")) && err.contains("Tokenize"),
        "{err}"
    );
    assert!(err.contains("no text"), "{err}");

    let skip = ids_pipeline(source.clone(), 64)
        .batch_size(8)
        .on_error(ErrorPolicy::Skip)
        .build()
        .unwrap();
    let batch = skip.epoch(0).unwrap().next().unwrap().unwrap();
    assert_eq!(batch.sample_indices, [0, 4]);
    let reasons: Vec<String> = batch.skipped.iter().map(|e| e.to_string()).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons[1].contains(&format!("{origin}:4"))
            && reasons[1].contains("invalid UTF-8 at byte 4")
    );
    assert!(reasons[2].contains(&format!("{origin}:5")) && reasons[2].contains("over the limit"));
    assert_eq!(skip.stats().skipped, 3);

    // Replacing invalid bytes makes line 4 a sample.
    let t = TextTokenizer::gpt2();
    let lossy = Pipeline::builder_shared(source)
        .decode_text(DecodeText::new(t).with_invalid_utf8(Utf8Policy::Replace))
        .batch_size(8)
        .on_error(ErrorPolicy::Skip)
        .build()
        .unwrap();
    let batch = lossy.epoch(0).unwrap().next().unwrap().unwrap();
    assert_eq!(batch.sample_indices, [0, 2, 4]);
}

#[test]
fn a_binary_file_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = sluice::rng::SampleRng::new(1, 0, 0, 0);
    let bytes: Vec<u8> = (0..200_000).map(|_| rng.next_u32() as u8).collect();
    let source = lines_source(dir.path(), &bytes);
    let pipeline = ids_pipeline(source.clone(), 64)
        .batch_size(64)
        .on_error(ErrorPolicy::Skip)
        .build()
        .unwrap();
    let mut kept = 0;
    let mut skipped = 0;
    for batch in pipeline.epoch(0).unwrap() {
        let batch = batch.unwrap();
        kept += batch.len();
        skipped += batch.skipped.len();
        assert!(batch
            .skipped
            .iter()
            .all(|e| e.to_string().contains("invalid UTF-8") || e.to_string().contains("no text")));
    }
    assert_eq!(kept + skipped, source.len());
    assert!(skipped > 0);
}

/// Offsets are each token's character span in the sample's text (special tokens `[0, 0]`, as the
/// padding); they cannot follow the ids into embeddings or packed blocks.
#[test]
fn offsets_are_character_spans_and_stay_with_token_ids() {
    let dir = tempfile::tempdir().unwrap();
    let text = "naïve café 東京 🙂 tokenizers\nsecond line, don't\n";
    let source = lines_source(dir.path(), text.as_bytes());
    let t = TextTokenizer::gpt2();
    let pipeline = ids_pipeline(source.clone(), 64)
        .decode_text(DecodeText::new(t.clone()).with_offsets(true))
        .batch_size(2)
        .build()
        .unwrap();
    let batch = pipeline.epoch(0).unwrap().next().unwrap().unwrap();
    let spans = i32s(batch.token_offsets.as_ref().expect("offsets kept").bytes());
    let width = batch.dense().unwrap().shape[1];
    for (row, line) in text.lines().enumerate() {
        let n = batch.lengths[row];
        let chars: Vec<char> = line.chars().collect();
        let row_spans = &spans[row * width * 2..(row + 1) * width * 2];
        assert_eq!(row_spans[..2], [0, 0], "BOS spans nothing");
        assert!(
            row_spans[(n - 1) * 2..].iter().all(|&s| s == 0),
            "EOS and padding"
        );
        // The tokens' spans cover the line in order without gaps (the byte tokens of one
        // character, e.g. an emoji's, share its span).
        let mut text_back = String::new();
        let mut end = 0;
        for pair in row_spans[2..(n - 1) * 2].chunks(2) {
            assert!(
                pair[0] <= end && end <= pair[1],
                "{line:?}: {pair:?} after {end}"
            );
            text_back.extend(&chars[end as usize..pair[1] as usize]);
            end = pair[1];
        }
        assert_eq!(text_back, line);
    }
    let err = Pipeline::builder_shared(source)
        .decode_text(DecodeText::new(t).with_offsets(true))
        .op(TextOp::EmbeddingLookup(EmbeddingTable::random(50257, 2, 1)))
        .build()
        .err()
        .expect("offsets do not go into embeddings")
        .to_string();
    assert!(err.contains("offsets go out with token ids"), "{err}");
}

#[test]
fn text_operators_check_their_input_kind() {
    let dir = tempfile::tempdir().unwrap();
    let source = corpus(dir.path(), 4);
    let err = Pipeline::builder_shared(source)
        .op(TextOp::Truncate {
            max_len: 4,
            keep_end: None,
        })
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("Truncate (operator 1) takes token ids but DecodeImage produces an image"),
        "{err}"
    );
}

#[test]
fn the_lookup_fused_into_the_batch_gives_the_per_sample_bytes_and_checks_ids() {
    let dir = tempfile::tempdir().unwrap();
    let source = corpus(dir.path(), 30);
    // 20000 rows: some of the corpus's GPT-2 ids go past them, so some samples fail.
    let table = EmbeddingTable::random(20000, 5, 2);
    let run = |fuse: bool| {
        let pipeline = Pipeline::builder_shared(source.clone())
            .decode_text(DecodeText::default())
            .op(TextOp::Truncate {
                max_len: 6,
                keep_end: None,
            })
            .op(TextOp::EmbeddingLookup(table.clone()))
            .batch_size(8)
            .pad_to_multiple_of(4)
            .pad_value(-1.0)
            .on_error(ErrorPolicy::Skip)
            .fuse(fuse)
            .build()
            .unwrap();
        let fused_step = pipeline.steps().last().unwrap().name.clone();
        let batches: Vec<_> = pipeline
            .epoch(0)
            .unwrap()
            .map(|b| {
                let b = b.unwrap();
                let skipped: Vec<(u64, String)> = b
                    .skipped
                    .iter()
                    .map(|e| (e.sample.index, e.message.clone()))
                    .collect();
                (
                    b.bytes().to_vec(),
                    b.lengths.clone(),
                    b.sample_indices.clone(),
                    skipped,
                )
            })
            .collect();
        (fused_step, batches)
    };
    let (fused_name, fused) = run(true);
    let (plain_name, plain) = run(false);
    assert_eq!(fused_name, "EmbeddingLookup (into the batch)");
    assert_eq!(plain_name, "EmbeddingLookup");
    assert_eq!(fused, plain, "same bytes, lengths, samples and skips");
    let skipped: Vec<_> = fused.iter().flat_map(|b| &b.3).collect();
    assert!(
        !skipped.is_empty() && skipped.len() < 20,
        "{}",
        skipped.len()
    );
    assert!(skipped
        .iter()
        .all(|(_, e)| e.contains("outside the embedding table's 20000 rows")));
}

#[test]
fn length_bucketing_pads_less_and_keeps_every_sample_once() {
    let dir = tempfile::tempdir().unwrap();
    let source = corpus(dir.path(), 203);
    let run = |bucket: usize, epoch: u32| {
        let pipeline = ids_pipeline(source.clone(), 400)
            .batch_size(8)
            .shuffle(true)
            .seed(4)
            .length_bucketing(bucket)
            .build()
            .unwrap();
        let (mut indices, mut padded, mut total) = (Vec::new(), 0, 0);
        for batch in pipeline.epoch(epoch).unwrap() {
            let batch = batch.unwrap();
            let width = batch.dense().unwrap().shape[1];
            padded += batch.lengths.iter().map(|l| width - l).sum::<usize>();
            total += width * batch.len();
            indices.extend(batch.sample_indices);
        }
        (indices, padded as f64 / total as f64)
    };
    let (plain, plain_padding) = run(0, 0);
    let (bucketed, padding) = run(4, 0);
    assert_eq!(bucketed, run(4, 0).0, "reproducible");
    assert_ne!(bucketed, run(4, 1).0, "another epoch, another order");
    let mut sorted = bucketed.clone();
    sorted.sort();
    assert_eq!(sorted, (0..203).collect::<Vec<u64>>(), "every sample once");
    assert_ne!(bucketed, plain);
    assert!(
        padding < plain_padding / 2.0,
        "padding {padding:.3} bucketed vs {plain_padding:.3}"
    );
}

#[test]
fn length_bucketing_needs_lengths() {
    let err = Pipeline::builder(sluice::source::InMemory::new(vec![(b"abc".to_vec(), 0)]))
        .decode_text(DecodeText::default())
        .length_bucketing(2)
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("length bucketing needs sample lengths"),
        "{err}"
    );
}

/// bert-mlm as the bench runs it: each batch's labels are -100 except where a token was
/// selected, selected tokens are never [CLS]/[SEP]/padding, unselected ids are the tokenizer's,
/// the padded width is a multiple of 8, and the batches (labels included) do not depend on the
/// thread count.
#[test]
fn bert_mlm_labels_follow_the_ids_and_do_not_depend_on_threads() {
    let dir = tempfile::tempdir().unwrap();
    let source = corpus(dir.path(), 48);
    let assets = TextAssets::default();
    let tokenizer = assets.tokenizer(Workload::BertMlm);
    let defaults = Workload::BertMlm.batch_defaults(&assets);
    let run = |threads: usize| {
        let builder = Pipeline::builder_shared(source.clone())
            .batch_size(8)
            .threads(threads)
            .shuffle(true)
            .seed(4)
            .pad_to_multiple_of(defaults.pad_multiple)
            .length_bucketing(defaults.bucket_windows)
            .pad_id(defaults.pad_id);
        let pipeline = Workload::BertMlm.add_ops(builder).build().unwrap();
        let mut out = Vec::new();
        for batch in pipeline.epoch(1).unwrap() {
            let batch = batch.unwrap();
            let labels = batch.token_labels.as_ref().expect("MlmMask gives labels");
            let d = batch.dense().unwrap();
            assert_eq!(labels.shape, d.shape);
            assert_eq!(d.shape[1] % 8, 0);
            out.push((
                d.bytes().to_vec(),
                labels.bytes().to_vec(),
                batch.sample_indices.clone(),
                batch.lengths.clone(),
            ));
        }
        out
    };
    let one = run(1);
    assert_eq!(one, run(2), "threads changed the masking");
    let (mut selected, mut tokens) = (0, 0);
    let mut text = Vec::new();
    for (ids, labels, indices, lengths) in &one {
        let (ids, labels) = (i32s(ids), i32s(labels));
        let width = ids.len() / indices.len();
        for (k, (&index, &length)) in indices.iter().zip(lengths).enumerate() {
            source.read(index, &mut text).unwrap();
            let mut want = tokenizer
                .encode(std::str::from_utf8(&text).unwrap())
                .unwrap();
            want.truncate(BERT_MAX_TOKENS);
            assert_eq!(length, want.len() + 2);
            let row = &ids[k * width..(k + 1) * width];
            let row_labels = &labels[k * width..(k + 1) * width];
            assert_eq!(row[0], tokenizer.bos.unwrap() as i32);
            assert_eq!(row[length - 1], tokenizer.eos.unwrap() as i32);
            assert!(row[length..].iter().all(|&id| id == defaults.pad_id as i32));
            assert!(row_labels[length..].iter().all(|&l| l == IGNORE_LABEL));
            assert_eq!(
                (row_labels[0], row_labels[length - 1]),
                (IGNORE_LABEL, IGNORE_LABEL)
            );
            for p in 1..length - 1 {
                let was = want[p - 1] as i32;
                match row_labels[p] {
                    IGNORE_LABEL => assert_eq!(row[p], was, "an unselected token changed"),
                    label => {
                        assert_eq!(label, was);
                        selected += 1;
                    }
                }
                tokens += 1;
            }
        }
    }
    let rate = selected as f64 / tokens as f64;
    assert!(
        (0.12..0.18).contains(&rate),
        "selected {rate} of {tokens} tokens"
    );
}

/// A fixed padded length: every batch exactly that wide; a longer sample fails naming its
/// PATH:LINE and `Pad`, or is skipped and counted.
#[test]
fn fixed_pad_length_never_cuts_a_sample() {
    let dir = tempfile::tempdir().unwrap();
    let source = corpus(dir.path(), 30);
    let builder = || ids_pipeline(source.clone(), 400).batch_size(10).threads(2);
    let wide = builder().pad_to_length(512).build().unwrap();
    for batch in wide.epoch(0).unwrap() {
        assert_eq!(batch.unwrap().dense().unwrap().shape[1], 512);
    }
    let err = builder()
        .pad_to_length(16)
        .build()
        .unwrap()
        .epoch(0)
        .unwrap()
        .find_map(|b| b.err())
        .expect("a sample longer than 16 tokens fails");
    let message = err.to_string();
    assert!(
        message.contains("Pad") && message.contains("corpus.txt:"),
        "{message}"
    );
    let skipping = builder()
        .pad_to_length(64)
        .on_error(ErrorPolicy::Skip)
        .build()
        .unwrap();
    let (mut kept, mut skipped) = (0, 0);
    for batch in skipping.epoch(0).unwrap() {
        let batch = batch.unwrap();
        assert!(batch.lengths.iter().all(|&l| l <= 64));
        kept += batch.len();
        skipped += batch.skipped.len();
    }
    assert_eq!(kept + skipped, 30);
    assert!(skipped > 0 && kept > 0, "kept {kept}, skipped {skipped}");
    let odd = builder().pad_to_multiple_of(8).pad_to_length(100).build();
    assert!(odd.err().unwrap().to_string().contains("multiple"));
}

/// GPT-2 → Pack(`seq_len`) with <|endoftext|> separators, shuffled.
fn packed(source: Arc<dyn Source>, seq_len: usize, blocks: usize, threads: usize) -> Pipeline {
    Pipeline::builder_shared(source)
        .decode_text(DecodeText::new(TextTokenizer::gpt2()))
        .op(TextOp::Pack(PackSpec {
            seq_len,
            separator: Some(50256),
        }))
        .batch_size(blocks)
        .threads(threads)
        .shuffle(true)
        .seed(6)
        .pad_id(50256)
        .build()
        .unwrap()
}

/// One packed epoch: (ids, labels, cu_seqlens, lengths, documents) per batch.
type Packed = Vec<(Vec<i32>, Vec<i32>, Vec<i32>, Vec<usize>, Vec<u64>)>;

fn packed_epoch(p: &Pipeline, epoch: u32, start: u64) -> Packed {
    packed_batches(p.epoch_from(epoch, start).unwrap())
}

fn packed_batches(iter: sluice::exec::EpochIter) -> Packed {
    iter.map(|b| {
        let b = b.unwrap();
        let labels = i32s(b.token_labels.as_ref().unwrap().bytes());
        (
            i32s(b.bytes()),
            labels,
            b.cu_seqlens.clone(),
            b.lengths.clone(),
            b.sample_indices.clone(),
        )
    })
    .collect()
}

/// Packed blocks concatenate back to the epoch's documents in order, each followed by
/// <|endoftext|>: nothing lost or duplicated; every block full but the epoch's last; labels are
/// the ids except at segment starts; cu_seqlens mark every document and block start; the same
/// batches with 1 or 2 threads, and from a resumed position.
#[test]
fn packed_blocks_concatenate_back_to_the_documents() {
    let dir = tempfile::tempdir().unwrap();
    let source = corpus(dir.path(), 70);
    let (seq_len, blocks) = (64, 3);
    let pipeline = packed(source.clone(), seq_len, blocks, 2);
    assert_eq!(pipeline.batches_per_epoch(), None);
    let epoch = packed_epoch(&pipeline, 1, 0);
    let tokenizer = TextTokenizer::gpt2();
    let order = sluice::rng::epoch_order(70, 6, 1, true);
    let mut want = Vec::new();
    let mut text = Vec::new();
    for &i in &order {
        source.read(i, &mut text).unwrap();
        let ids = tokenizer
            .encode(std::str::from_utf8(&text).unwrap())
            .unwrap();
        want.extend(ids.iter().map(|&id| id as i32));
        want.push(50256);
    }
    let mut got = Vec::new();
    let mut documents: Vec<u64> = Vec::new();
    for (k, (ids, labels, cu, lengths, docs)) in epoch.iter().enumerate() {
        let last = k + 1 == epoch.len();
        let real: usize = lengths.iter().sum();
        assert_eq!(ids.len(), lengths.len() * seq_len);
        if !last {
            assert_eq!(
                lengths,
                &vec![seq_len; blocks],
                "only the last batch is short"
            );
        }
        assert_eq!((cu[0], *cu.last().unwrap()), (0, real as i32));
        assert!(cu.windows(2).all(|w| w[0] < w[1]));
        for b in 0..lengths.len() {
            assert!(
                cu.contains(&((b * seq_len) as i32)),
                "block {b} starts a segment"
            );
        }
        for p in 0..ids.len() {
            let starts = cu[..cu.len() - 1].contains(&(p as i32));
            let want_label = if starts || p >= real { -100 } else { ids[p] };
            assert_eq!(labels[p], want_label, "batch {k} position {p}");
            if p >= real {
                assert_eq!(ids[p], 50256, "padding");
            }
        }
        // Every document after the first in a batch starts right after a separator.
        got.extend_from_slice(&ids[..real]);
        documents.extend(docs);
    }
    assert_eq!(
        got, want,
        "blocks are the documents' ids with separators, in order"
    );
    documents.dedup();
    assert_eq!(
        documents, order,
        "each document listed, in order, once per batch it is in"
    );
    // (assert! rather than assert_eq!: a mismatch would print every id of the epoch)
    let one_thread = packed_epoch(&packed(source.clone(), seq_len, blocks, 1), 1, 0);
    assert!(epoch == one_thread, "1 and 2 threads pack differently");
    let resumed = packed_epoch(&pipeline, 1, 2);
    assert!(resumed == epoch[2..], "resumed at batch 2: other batches");
    assert!(packed_epoch(&pipeline, 1, 1000).is_empty());

    // A saved state carries the stream's position: resuming from it tokenizes only the chunks
    // still in the stream (not the epoch so far) and gives the same batches, at every point.
    for k in 0..=epoch.len() {
        let mut it = pipeline.epoch(1).unwrap();
        for _ in 0..k {
            it.next().unwrap().unwrap();
        }
        let state = it.state();
        drop(it);
        let at = state
            .packed
            .expect("a packed pipeline saves its stream position");
        assert!(
            at.next_chunk - at.chunk <= 2,
            "batch {k}: the stream spans chunks {}..{}",
            at.chunk,
            at.next_chunk
        );
        let state = sluice::state::PipelineState::from_json(&state.to_json()).unwrap();
        let rest = packed_batches(pipeline.resume(&state).unwrap());
        assert!(
            rest == epoch[k..],
            "resumed from the stream position after {k} batches"
        );
    }
}

/// A packed pipeline under the skip policy leaves bad documents out, counted and reported in
/// the next batch; Pack anywhere but last, or after MlmMask, is refused.
#[test]
fn packing_skips_bad_documents_and_checks_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let source = lines_source(
        dir.path(),
        b"one two three\n   \nfour \xff five\nsix seven\n",
    );
    let skip = Pipeline::builder_shared(source.clone())
        .decode_text(DecodeText::new(TextTokenizer::gpt2()))
        .op(TextOp::Pack(PackSpec {
            seq_len: 4,
            separator: Some(50256),
        }))
        .batch_size(2)
        .on_error(ErrorPolicy::Skip)
        .build()
        .unwrap();
    let batches: Vec<_> = skip.epoch(0).unwrap().map(|b| b.unwrap()).collect();
    let skipped: usize = batches.iter().map(|b| b.skipped.len()).sum();
    assert_eq!(skipped, 2);
    let docs: Vec<u64> = batches
        .iter()
        .flat_map(|b| b.sample_indices.clone())
        .collect();
    assert!(docs.iter().all(|&d| d == 0 || d == 3), "{docs:?}");
    // Under the fail policy the first bad document ends the epoch: tokens waiting in the
    // stream are not delivered after the error.
    let other = dir.path().join("strict");
    std::fs::create_dir(&other).unwrap();
    let strict = Pipeline::builder_shared(lines_source(&other, b"one two\nthree\n \nfour\n"))
        .decode_text(DecodeText::new(TextTokenizer::gpt2()))
        .op(TextOp::Pack(PackSpec {
            seq_len: 64,
            separator: Some(50256),
        }))
        .batch_size(2)
        .build()
        .unwrap();
    let mut epoch = strict.epoch(0).unwrap();
    let err = epoch.next().unwrap().unwrap_err().to_string();
    assert!(
        err.contains("bad.txt:3") && err.contains("Tokenize"),
        "{err}"
    );
    assert!(epoch.next().is_none(), "a batch after the error");
    let t = TextTokenizer::gpt2();
    let pack = TextOp::Pack(PackSpec {
        seq_len: 8,
        separator: t.eos,
    });
    let early = Pipeline::builder_shared(source.clone())
        .decode_text(DecodeText::new(t.clone()))
        .op(pack.clone())
        .op(TextOp::Truncate {
            max_len: 4,
            keep_end: None,
        })
        .build();
    assert!(early
        .err()
        .unwrap()
        .to_string()
        .contains("must be the last operator"));
    let masked = Pipeline::builder_shared(source)
        .decode_text(DecodeText::new(TextTokenizer::gpt2_mlm()))
        .op(TextOp::MlmMask(sluice::text::MlmSpec::bert(
            50260,
            50261,
            vec![],
        )))
        .op(pack)
        .build();
    assert!(masked.err().unwrap().to_string().contains("MlmMask"));
}

/// The optimizer profiles text pipelines (tokenizer, masking, packing: CPU costs and bytes, the
/// lookup's bytes multiplied by the embedding width) and its plan keeps every text operator on
/// the CPU with the declared bytes.
#[test]
fn text_pipelines_are_profiled_and_optimized_without_changing_their_batches() {
    let dir = tempfile::tempdir().unwrap();
    let source = corpus(dir.path(), 24);
    let goal = sluice::optimizer::Goal {
        batch_size: 8,
        train_step_ms: 0.0,
        epochs: 1,
        memory_budget_bytes: 0,
        allow_approx: false,
    };
    for workload in [Workload::BertMlm, Workload::GptPack, Workload::Nlp] {
        let builder = || {
            let b = Pipeline::builder_shared(source.clone())
                .batch_size(8)
                .threads(2)
                .seed(2);
            workload.add_ops(b)
        };
        let logical = builder().logical_plan();
        let profile = sluice::optimizer::profile::for_pipeline(
            source.as_ref(),
            &logical.decoder,
            &logical.ops,
            None,
            dir.path(),
        )
        .unwrap();
        assert_eq!(profile.ops.len(), logical.ops.len());
        assert!(profile.decode_ns > 0.0);
        // GPU times (with a usable adapter) only for the operators with token kernels.
        for (op, cost) in logical.ops.iter().zip(&profile.ops) {
            assert!(cost.gpu_ns.is_none() || op.spec().runs_on_gpu(), "{cost:?}");
        }
        if workload == Workload::Nlp {
            let lookup = profile.ops.last().unwrap();
            assert_eq!(lookup.bytes_out, lookup.bytes_in * NLP_EMBEDDING_DIM as f64);
        }
        let (optimized, _) = builder().optimize(&profile, &goal).unwrap();
        let optimized = optimized.build().unwrap();
        // On lavapipe (or no adapter) every GPU cut costs more than the CPU.
        assert_eq!(optimized.gpu_cut(), logical.ops.len(), "all on the CPU");
        let declared = builder().build().unwrap();
        let bytes = |p: &Pipeline| -> Vec<Vec<u8>> {
            p.epoch(0)
                .unwrap()
                .map(|b| b.unwrap().bytes().to_vec())
                .collect()
        };
        assert!(bytes(&optimized) == bytes(&declared), "{}", workload.name());
    }
}

/// With MlmMask and EmbeddingLookup placed on wgpu (lavapipe in CI), the token kernels deliver
/// the CPU pipeline's batches byte for byte — embeddings, labels, lengths, samples — and the
/// same samples fail the same way: ids outside the table (EmbeddingLookup, checked after the
/// masks as on the CPU) and samples over `pad_to_length` (Pad), skipped and counted.
#[test]
fn token_kernels_on_wgpu_deliver_the_cpu_batches_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let source = corpus(dir.path(), 40);
    let eos = 50256;
    // Some of the corpus's GPT-2 ids are past the table's rows: those samples fail.
    let table = EmbeddingTable::random(50000, 6, 9);
    let build = |placement, lookup: bool| {
        // Offsets ride with the ids (not into embeddings): padded on the host beside the kernels.
        let mut b = Pipeline::builder_shared(source.clone())
            .decode_text(DecodeText::default().with_offsets(!lookup))
            .op(TextOp::Truncate {
                max_len: 200,
                keep_end: None,
            })
            .op(TextOp::MlmMask(sluice::text::MlmSpec::bert(
                3,
                20000,
                vec![eos],
            )));
        if lookup {
            b = b.op(TextOp::EmbeddingLookup(table.clone()));
        }
        b.batch_size(8)
            .threads(2)
            .shuffle(true)
            .seed(3)
            .pad_to_length(180)
            .pad_id(eos)
            .pad_value(-2.0)
            .on_error(ErrorPolicy::Skip)
            .placement(placement)
            .build()
            .unwrap()
    };
    let outputs = |p: &Pipeline| -> Vec<_> {
        p.epoch(1)
            .unwrap()
            .map(|b| {
                let b = b.unwrap();
                let skipped: Vec<(u64, String)> = b
                    .skipped
                    .iter()
                    .map(|e| {
                        // The CPU's fused lookup step names itself "... (into the batch)".
                        let op = e.operator.split(" (").next().unwrap().to_string();
                        (e.sample.index, op)
                    })
                    .collect();
                let labels = b.token_labels.as_ref().map(|l| l.bytes().to_vec());
                let offsets = b
                    .token_offsets
                    .as_ref()
                    .map(|o| (o.shape.clone(), o.bytes().to_vec()));
                let shape = b.dense().unwrap().shape.clone();
                (
                    b.bytes().to_vec(),
                    shape,
                    labels,
                    b.lengths.clone(),
                    b.sample_indices.clone(),
                    skipped,
                    offsets,
                )
            })
            .collect()
    };
    for lookup in [false, true] {
        let gpu = build(sluice::Placement::Wgpu, lookup);
        if gpu.gpu_device().is_none() {
            eprintln!("skipped: {}", gpu.placement_reason());
            assert!(std::env::var_os("SLUICE_REQUIRE_WGPU").is_none());
            return;
        }
        let reason = gpu.placement_reason();
        assert!(reason.contains("from MlmMask on, on"), "{reason}");
        let cpu = build(sluice::Placement::Cpu, lookup);
        let (got, want) = (outputs(&gpu), outputs(&cpu));
        assert_eq!(got, want, "lookup {lookup}");
        let skipped: Vec<&String> = want.iter().flat_map(|b| &b.5).map(|(_, op)| op).collect();
        assert!(skipped.iter().any(|op| *op == "Pad"), "{skipped:?}");
        assert!(skipped.len() < 25, "most samples fit: {skipped:?}");
        if lookup {
            assert!(
                skipped.iter().any(|op| *op == "EmbeddingLookup"),
                "{skipped:?}"
            );
        }
        assert!(want.iter().all(|b| b.2.is_some()), "MlmMask gives labels");
        let spans = want.iter().filter(|b| !b.4.is_empty()).all(|b| {
            b.6.as_ref()
                .is_some_and(|(shape, _)| *shape == [b.4.len(), b.1[1], 2])
        });
        assert_eq!(spans, !lookup, "offsets [n, width, 2] with the ids");
        assert_eq!(gpu.stats().skipped, cpu.stats().skipped);
    }
}

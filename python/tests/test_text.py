"""Text pipelines from Python: Tokenize first, ids equal to Hugging Face `tokenizers` on fresh
text, padded ids/embeddings with attention masks and lengths, the `nlp` workload with the same
bytes as `sluice bench nlp`, bad text named by file and line."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import sluice
from sluice import ops

from conftest import REPO

tokenizers = pytest.importorskip("tokenizers", reason="skipped: the tokenizers package is not installed")


def _reference_gpt2(mlm=False):
    """GPT-2 as Hugging Face's gpt2 tokenizer.json declares it, from the same vocabulary (with
    `mlm`, BERT's special tokens added)."""
    sys.path.insert(0, str(REPO / "benches" / "peers"))
    from gpt2_reference import gpt2

    return gpt2(mlm)


def _fresh_texts(rng, n):
    """Random text: Zipf-ish words, digits, punctuation, whitespace runs (spaces, tabs,
    newlines, NBSP, ideographic space), accented/CJK/emoji/RTL characters, the special token."""
    words = ["the", "of", "and", "tokenizer", "don't", "I'm", "we'll", "naïve", "café", "東京",
             "数据", "Москва", "🙂", "👩‍👩‍👧", "مرحبا", "<|endoftext|>", "3.14159", "x_y", "--",
             "'s", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u200b", "e\u0301"]
    texts = []
    for _ in range(n):
        parts = []
        for _ in range(int(rng.integers(1, 60))):
            r = rng.random()
            if r < 0.6:
                parts.append(words[min(int(rng.zipf(1.3)) - 1, len(words) - 1)])
            elif r < 0.8:
                parts.append(str(int(rng.integers(0, 10**6))))
            else:
                # Any code point outside the surrogates.
                cp = int(rng.integers(0x20, 0x2FFFF))
                parts.append(chr(cp) if not 0xD800 <= cp < 0xE000 else "?")
            parts.append(" " * int(rng.integers(0, 3)))
        text = "".join(parts)
        texts.append(text if text.strip() else text + "x")
    return texts


def test_ids_equal_hugging_face_tokenizers_on_fresh_text(tmp_path):
    rng = np.random.default_rng()  # fresh every run
    texts = _fresh_texts(rng, 200)
    path = tmp_path / "fresh.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    pipe = sluice.Pipeline(str(path), [ops.Tokenize()], batch_size=32, threads=2, pad_id=7)
    reference = _reference_gpt2()
    seen = 0
    for batch in pipe.epoch(0):
        ids = np.from_dlpack(batch["input_ids"])
        assert ids.dtype == np.int32
        lengths = np.from_dlpack(batch["lengths"])
        mask = np.from_dlpack(batch["attention_mask"])
        for row, index in enumerate(np.from_dlpack(batch["indices"])):
            want = reference.encode(texts[index], add_special_tokens=False).ids
            got = ids[row, : lengths[row]].tolist()
            assert got == want, f"text {texts[index]!r}"
            assert (ids[row, lengths[row]:] == 7).all()
            assert mask[row].tolist() == [1] * lengths[row] + [0] * (ids.shape[1] - lengths[row])
            seen += 1
    assert seen == len(texts)


def test_truncate_special_tokens_and_an_npy_table(tmp_path):
    corpus = sluice.generated_dataset(images=64, kind="text")
    table = np.random.default_rng(2).standard_normal((50257, 16)).astype(np.float32)
    np.save(tmp_path / "table.npy", table)
    common = dict(batch_size=8, pad_multiple=8)
    ids_pipe = sluice.Pipeline(
        corpus, [ops.Tokenize(), ops.Truncate(30), ops.AddSpecialTokens()], **common
    )
    emb_pipe = sluice.Pipeline(
        corpus,
        [ops.Tokenize(), ops.Truncate(30), ops.AddSpecialTokens(),
         ops.EmbeddingLookup(str(tmp_path / "table.npy"))],
        **common,
    )
    for ib, eb in zip(ids_pipe.epoch(0), emb_pipe.epoch(0)):
        assert set(eb.keys()) == {"embeddings", "attention_mask", "lengths", "indices"}
        ids = np.from_dlpack(ib["input_ids"])
        emb = np.from_dlpack(eb["embeddings"])
        lengths = np.from_dlpack(eb["lengths"])
        assert ids.shape[1] % 8 == 0 and emb.shape == (ids.shape[0], ids.shape[1], 16)
        assert (lengths <= 32).all()
        for row, n in enumerate(lengths):
            assert ids[row, 0] == 50256 and ids[row, n - 1] == 50256
            np.testing.assert_array_equal(emb[row, :n], table[ids[row, :n]])
            assert (emb[row, n:] == 0).all()


def test_nlp_workload_matches_the_cli(sluice_bin):
    corpus = sluice.generated_dataset(images=96, kind="text")
    pipe = sluice.workload("nlp", corpus, batch_size=32, threads=2)
    assert [type(o).__name__ for o in pipe.ops] == [
        "Tokenize", "Truncate", "AddSpecialTokens", "EmbeddingLookup"]
    checksum = sluice.Checksum()
    for batch in pipe.epoch(0):
        emb = np.from_dlpack(batch["embeddings"])
        assert emb.shape[2] == 768 and emb.shape[1] == max(np.from_dlpack(batch["lengths"]))
        checksum.update(batch)
    out = subprocess.run(
        [sluice_bin, "bench", "nlp", "--data", str(corpus), "--batch", "32", "--epochs", "1",
         "--threads", "2", "--json"],
        check=True, capture_output=True, text=True,
    )
    report = json.loads(out.stdout)
    assert report["checksum"] == checksum.hexdigest()
    assert report["tokens_per_second"] > 0


def test_bad_text_is_named_by_line_or_skipped(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"fine text\nbroken \xff byte\n\nmore fine text\n")
    pipe = sluice.Pipeline(str(path), [ops.Tokenize()], batch_size=4)
    with pytest.raises(sluice.SampleError, match=r"bad\.txt:2.*Tokenize.*invalid UTF-8 at byte 7"):
        list(pipe.epoch(0))
    skip = sluice.Pipeline(str(path), [ops.Tokenize()], batch_size=4, on_error="skip")
    (batch,) = list(skip.epoch(0))
    assert batch.size == 2 and [s.path for s in batch.skipped] == [f"{path}:2"]
    lossy = sluice.Pipeline(str(path), [ops.Tokenize(invalid_utf8="replace")], batch_size=4)
    assert next(iter(lossy.epoch(0))).size == 3
    with pytest.raises(ValueError, match="start the pipeline with sluice.ops.Tokenize"):
        sluice.Pipeline(str(path), [ops.Truncate(4)])
    with pytest.raises(ValueError, match="Tokenize.invalid_utf8"):
        sluice.Pipeline(str(path), [ops.Tokenize(invalid_utf8="drop")])


def test_length_bucketing_pads_less():
    corpus = sluice.generated_dataset(images=200, kind="text")

    def run(bucket):
        pipe = sluice.Pipeline(corpus, [ops.Tokenize(), ops.Truncate(128)], batch_size=8,
                               shuffle=True, seed=1, bucket=bucket)
        indices, padding, total = [], 0, 0
        for b in pipe.epoch(0):
            lengths = np.from_dlpack(b["lengths"])
            width = np.from_dlpack(b["input_ids"]).shape[1]
            padding += int((width - lengths).sum())
            total += width * len(lengths)
            indices += np.from_dlpack(b["indices"]).tolist()
        return indices, padding / total

    plain, plain_padding = run(0)
    bucketed, padding = run(8)
    assert sorted(bucketed) == list(range(200)) and bucketed != plain
    assert padding < plain_padding / 2
    with pytest.raises(ValueError, match="bucket"):
        sluice.Pipeline(corpus, [ops.Tokenize()], bucket=-1)


def test_mlm_labels_rates_and_the_mlm_tokenizer_ids(tmp_path):
    rng = np.random.default_rng()
    texts = _fresh_texts(rng, 120)
    texts = [t.replace("<|endoftext|>", "[MASK] [SEP]") for t in texts]
    path = tmp_path / "fresh.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    reference = _reference_gpt2(mlm=True)
    special = {50256, 50257, 50258, 50259, 50260}
    plain = sluice.Pipeline(str(path), [ops.Tokenize("gpt2-mlm")], batch_size=16)
    masked = sluice.Pipeline(
        str(path), [ops.Tokenize("gpt2-mlm"), ops.AddSpecialTokens(), ops.MlmMask()],
        batch_size=16, threads=2, seed=int(rng.integers(1 << 30)), pad_multiple=8,
    )
    selected = total = 0
    for pb, mb in zip(plain.epoch(0), masked.epoch(0)):
        assert list(mb.keys()) == ["input_ids", "attention_mask", "labels", "lengths", "indices"]
        ids, labels = np.from_dlpack(mb["input_ids"]), np.from_dlpack(mb["labels"])
        plain_ids = np.from_dlpack(pb["input_ids"])
        assert labels.dtype == np.int32 and labels.shape == ids.shape and ids.shape[1] % 8 == 0
        for row, (i, n) in enumerate(zip(np.from_dlpack(mb["indices"]), np.from_dlpack(mb["lengths"]))):
            want = reference.encode(texts[i], add_special_tokens=False).ids
            assert plain_ids[row, : len(want)].tolist() == want, texts[i]
            original = np.array([50257] + want + [50258])
            assert n == len(original)
            assert (ids[row, n:] == 50259).all() and (labels[row, n:] == -100).all()
            chosen = labels[row, :n] != -100
            np.testing.assert_array_equal(labels[row, :n][chosen], original[chosen])
            np.testing.assert_array_equal(ids[row, :n][~chosen], original[~chosen])
            assert not any(int(t) in special for t in original[chosen])
            selected += int(chosen.sum())
            total += sum(int(t) not in special for t in original)
    assert 0.10 < selected / total < 0.20
    with pytest.raises(ValueError, match="MlmMask.mask_token"):
        sluice.Pipeline(str(path), [ops.Tokenize(), ops.MlmMask()])


def test_packed_blocks_and_the_workloads_match_the_cli(sluice_bin, tmp_path):
    corpus = sluice.generated_dataset(images=96, kind="text")
    pipe = sluice.Pipeline(corpus, [ops.Tokenize(), ops.Pack(seq_len=128)], batch_size=4,
                           shuffle=True, seed=3, threads=2)
    with pytest.raises(TypeError, match="no length"):
        len(pipe)
    stream, docs = [], []
    for b in pipe.epoch(0):
        assert list(b.keys()) == ["input_ids", "attention_mask", "labels", "cu_seqlens",
                                  "lengths", "indices"]
        ids, cu = np.from_dlpack(b["input_ids"]), np.from_dlpack(b["cu_seqlens"])
        labels = np.from_dlpack(b["labels"])
        real = int(cu[-1])
        assert ids.shape[1] == 128 and real == int(np.from_dlpack(b["lengths"]).sum())
        flat, flat_labels = ids.reshape(-1), labels.reshape(-1)
        assert (flat_labels[cu[:-1]] == -100).all() and (flat_labels[real:] == -100).all()
        stream += flat[:real].tolist()
        docs += [d for d in np.from_dlpack(b["indices"]).tolist() if not docs or d != docs[-1]]
    reference = _reference_gpt2()
    lines = pathlib.Path(corpus).read_text(encoding="utf-8").splitlines()
    want = []
    for d in docs:
        want += reference.encode(lines[d], add_special_tokens=False).ids + [50256]
    assert sorted(docs) == list(range(96)) and stream == want

    # Resume a packed epoch from a state_dict: the same remaining batches.
    def digests(batches):
        out = []
        for b in batches:
            c = sluice.Checksum()
            c.update(b)
            out.append((b.index, c.hexdigest()))
        return out

    full = digests(pipe.epoch(1))
    it = pipe.epoch(1)
    next(it), next(it)
    state = pipe.state_dict()
    assert state["position"] == 2 and state["batches_per_epoch"] is None
    del it
    resumed = sluice.Pipeline(corpus, [ops.Tokenize(), ops.Pack(seq_len=128)], batch_size=4,
                              shuffle=True, seed=3, threads=2)
    resumed.load_state_dict(state)
    assert resumed.state_dict()["packed"] == state["packed"]
    assert digests(resumed) == full[2:]
    # The stream position makes the resume cheap; without it the epoch is replayed: the same.
    packed = state["packed"]
    assert packed["next_chunk"] - packed["chunk"] <= 2 and packed["next_chunk"] >= 2
    replay = sluice.Pipeline(corpus, [ops.Tokenize(), ops.Pack(seq_len=128)], batch_size=4,
                             shuffle=True, seed=3, threads=2)
    replay.load_state_dict({k: v for k, v in state.items() if k != "packed"})
    assert digests(replay) == full[2:]
    for name in ["gpt-pack", "bert-mlm"]:
        w = sluice.workload(name, corpus, batch_size=8, threads=2)
        checksum = sluice.Checksum()
        for batch in w.epoch(0):
            checksum.update(batch)
        out = subprocess.run(
            [sluice_bin, "bench", name, "--data", str(corpus), "--batch", "8", "--epochs", "1",
             "--threads", "2", "--json"],
            check=True, capture_output=True, text=True,
        )
        assert json.loads(out.stdout)["checksum"] == checksum.hexdigest(), name


def test_mlm_and_the_lookup_on_wgpu_give_the_cpu_batches(tmp_path):
    rng = np.random.default_rng()
    path = tmp_path / "fresh.jsonl"
    texts = _fresh_texts(rng, 40)
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    table = tmp_path / "table.npy"
    np.save(table, rng.standard_normal((50261, 8)).astype(np.float32))
    seed = int(rng.integers(1 << 30))
    for lookup in (False, True):
        chain = [ops.Tokenize("gpt2-mlm"), ops.Truncate(64), ops.AddSpecialTokens(), ops.MlmMask()]
        if lookup:
            chain.append(ops.EmbeddingLookup(str(table)))
        build = lambda placement: sluice.Pipeline(
            str(path), chain, batch_size=8, threads=2, seed=seed, pad_multiple=8, placement=placement
        )
        gpu = build("wgpu")
        described = gpu.describe()
        if "from MlmMask on" not in described:
            import os

            assert "SLUICE_REQUIRE_WGPU" not in os.environ, described
            pytest.skip(f"no wgpu adapter: {described}")
        for g, c in zip(gpu.epoch(1), build("cpu").epoch(1), strict=True):
            assert list(g.keys()) == list(c.keys())
            for key in g.keys():
                np.testing.assert_array_equal(np.from_dlpack(g[key]), np.from_dlpack(c[key]), err_msg=key)


def test_offsets_equal_hugging_face_tokenizers_on_fresh_text(tmp_path):
    rng = np.random.default_rng()
    texts = _fresh_texts(rng, 120)
    path = tmp_path / "fresh.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    chain = [ops.Tokenize(offsets=True), ops.Truncate(40), ops.AddSpecialTokens(), ops.MlmMask(mask_token=50256)]
    pipe = sluice.Pipeline(str(path), chain, batch_size=16, threads=2, pad_multiple=8)
    reference = _reference_gpt2()
    seen = 0
    for batch in pipe.epoch(0):
        assert list(batch.keys()) == ["input_ids", "attention_mask", "labels", "offset_mapping", "lengths", "indices"]
        spans = np.from_dlpack(batch["offset_mapping"])
        ids = np.from_dlpack(batch["input_ids"])
        assert spans.dtype == np.int32 and spans.shape == ids.shape + (2,)
        for row, (index, n) in enumerate(zip(np.from_dlpack(batch["indices"]), np.from_dlpack(batch["lengths"]))):
            want = reference.encode(texts[index], add_special_tokens=False).offsets[:40]
            # BOS and EOS (added, not in the text) span nothing; so does the padding.
            assert [tuple(s) for s in spans[row, 1 : n - 1]] == want, texts[index]
            assert (spans[row, 0] == 0).all() and (spans[row, n - 1 :] == 0).all()
            seen += 1
    assert seen == len(texts)
    with pytest.raises(ValueError, match="offsets go out with token ids"):
        sluice.Pipeline(str(path), [ops.Tokenize(offsets=True), ops.EmbeddingLookup(dim=4)])

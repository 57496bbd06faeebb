"""cedar's NLP pipeline (GPT-2 BPE -> truncate 254 -> BOS/EOS -> embedding lookup, 768 f32 ->
batch padded to the longest, with lengths) in PyTorch: a DataLoader over the lines of a text
file with Hugging Face `tokenizers` (Rust), the way a PyTorch user writes it, in two recipes:

- `sample`: tokenize and look up per sample in `__getitem__`, pad in `collate_fn`;
- `batch`:  a batch sampler hands each worker a whole batch: `encode_batch` (HF's fast path),
  ids padded with the index of an extra zero row, and one `F.embedding` call for the batch
  (written straight into the padded tensor, as sluice does).

Same vocabulary file as sluice (assets/gpt2), same text, same batch size and worker count,
shuffled every epoch as `sluice bench nlp` is.
Prints one JSON line: samples/s and tokens/s over the timed epochs after one warm-up epoch.

    python benches/peers/nlp_torch.py CORPUS --workers 2 --batch 64 --epochs 2 [--recipe batch]
"""

import argparse
import json
import os
import pathlib
import time

import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from gpt2_reference import gpt2  # noqa: E402

EOT = 50256


class Lines(torch.utils.data.Dataset):
    """Non-empty lines of a text file, read by offset (the file is never loaded whole)."""

    def __init__(self, path, table):
        self.path = path
        self.offsets = []
        with open(path, "rb") as f:
            at = 0
            for line in f:
                if line.strip(b"\r\n"):
                    self.offsets.append((at, len(line)))
                at += len(line)
        self.table = table
        self.tokenizer = None
        self.file = None

    def __len__(self):
        return len(self.offsets)

    def _text(self, i):
        if self.file is None:
            self.file = open(self.path, "rb")
            self.tokenizer = gpt2()
        at, n = self.offsets[i]
        self.file.seek(at)
        return self.file.read(n).rstrip(b"\r\n").decode("utf-8")

    @staticmethod
    def _ids(encoding):
        return [EOT] + encoding.ids[:254] + [EOT]

    def __getitem__(self, i):
        if isinstance(i, list):  # the batch recipe
            texts = [self._text(j) for j in i]
            ids = [self._ids(e) for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]
            lengths = torch.tensor([len(x) for x in ids])
            # Padding points at the table's last row, which is zeros.
            padded = torch.full((len(ids), int(lengths.max())), self.table.shape[0] - 1)
            for k, x in enumerate(ids):
                padded[k, : len(x)] = torch.tensor(x)
            return F.embedding(padded, self.table), lengths
        text = self._text(i)
        ids = self._ids(self.tokenizer.encode(text, add_special_tokens=False))
        return F.embedding(torch.tensor(ids), self.table[:-1]), len(ids)


def pad(samples):
    longest = max(n for _, n in samples)
    out = torch.zeros(len(samples), longest, samples[0][0].shape[1])
    for k, (e, n) in enumerate(samples):
        out[k, :n] = e
    return out, torch.tensor([n for _, n in samples])


def arguments():
    """The peers' command line: CORPUS --workers --batch --epochs --recipe."""
    p = argparse.ArgumentParser()
    p.add_argument("corpus")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--recipe", choices=["sample", "batch"], default="batch")
    a = p.parse_args()
    torch.set_num_threads(1)
    return a


def time_and_report(loader, a, peer, workload, count):
    """One warm-up epoch, then `a.epochs` timed ones; prints the JSON line. `count(batch)` gives
    the batch's (samples, tokens)."""
    samples = tokens = 0
    start = None
    for epoch in range(a.epochs + 1):
        if epoch == 1:
            start, samples, tokens = time.perf_counter(), 0, 0
        for batch in loader:
            n, t = count(batch)
            samples, tokens = samples + n, tokens + t
    wall = time.perf_counter() - start
    print(json.dumps({
        "peer": peer, "workload": workload, "workers": a.workers,
        "samples_per_second": samples / wall, "tokens_per_second": tokens / wall,
        "torch": torch.__version__, "cpus": os.cpu_count(),
    }))


def main():
    a = arguments()
    g = torch.Generator().manual_seed(0)
    table = (torch.rand(50257, 768, generator=g) - 0.5) * 0.1
    table = torch.cat([table, torch.zeros(1, 768)])  # the padding row (batch recipe)
    data = Lines(a.corpus, table)
    if a.recipe == "batch":
        sampler = torch.utils.data.BatchSampler(
            torch.utils.data.RandomSampler(data, generator=g), a.batch, drop_last=False)
        loader = torch.utils.data.DataLoader(
            data, sampler=sampler, batch_size=None, num_workers=a.workers, prefetch_factor=2,
            persistent_workers=a.workers > 0)
    else:
        loader = torch.utils.data.DataLoader(
            data, batch_size=a.batch, collate_fn=pad, num_workers=a.workers, prefetch_factor=2,
            persistent_workers=a.workers > 0, shuffle=True, generator=g)
    count = lambda batch: (batch[0].shape[0], int(batch[1].sum()))  # noqa: E731
    time_and_report(loader, a, f"torch-{a.recipe}", "nlp", count)


if __name__ == "__main__":
    main()

"""`gpt-pack` in PyTorch: the constant-length packing recipe (TRL's `ConstantLengthDataset`,
the `group_texts` step of Hugging Face's `run_clm.py`) as an `IterableDataset` — each DataLoader
worker takes its share of the shuffled documents, tokenizes them with `encode_batch` (Hugging
Face `tokenizers`, the same GPT-2 vocabulary as sluice), appends `<|endoftext|>` after each,
and yields `[batch, 2048]` blocks with labels, the remainder carried to its next batch.

Prints one JSON line: documents/s and tokens/s over the timed epochs after one warm-up epoch.

    python benches/peers/pack_torch.py CORPUS --workers 2 --batch 8 --epochs 2
"""

import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from gpt2_reference import gpt2  # noqa: E402
from nlp_torch import EOT, Lines, arguments, time_and_report  # noqa: E402

SEQ_LEN = 2048
# Documents tokenized per encode_batch call.
CHUNK = 64


class PackedBlocks(torch.utils.data.IterableDataset):
    def __init__(self, path, batch, seed):
        self.lines = Lines(path, table=None)
        self.batch = batch
        self.seed = seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        # (Workers get a fresh copy of the dataset each epoch: the same shuffle every epoch,
        # which changes nothing about the throughput measured.)
        g = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(len(self.lines), generator=g).tolist()[worker::workers]
        self.lines._text(0)  # opens the file and the tokenizer in this worker
        tokenizer = gpt2()
        stream, documents = [], 0
        block_tokens = self.batch * SEQ_LEN
        for at in range(0, len(order), CHUNK):
            texts = [self.lines._text(i) for i in order[at:at + CHUNK]]
            for e in tokenizer.encode_batch(texts, add_special_tokens=False):
                stream.extend(e.ids)
                stream.append(EOT)
            documents += len(texts)
            while len(stream) >= block_tokens:
                ids = torch.tensor(stream[:block_tokens]).view(self.batch, SEQ_LEN)
                del stream[:block_tokens]
                yield {"input_ids": ids, "labels": ids.clone(), "documents": documents}
                documents = 0
        if stream:
            n = len(stream)
            rows = -(-n // SEQ_LEN)
            ids = torch.full((rows * SEQ_LEN,), EOT)
            ids[:n] = torch.tensor(stream)
            labels = ids.clone()
            labels[n:] = -100
            yield {"input_ids": ids.view(rows, SEQ_LEN), "labels": labels.view(rows, SEQ_LEN),
                   "documents": documents}


def main():
    a = arguments()
    data = PackedBlocks(a.corpus, a.batch, seed=0)
    loader = torch.utils.data.DataLoader(
        data, batch_size=None, num_workers=a.workers, prefetch_factor=2 if a.workers else None)
    count = lambda b: (b["documents"], int((b["labels"] != -100).sum()))  # noqa: E731
    time_and_report(loader, a, "torch-constant-length", "gpt-pack", count)


if __name__ == "__main__":
    main()

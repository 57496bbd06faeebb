"""`bert-mlm` in PyTorch + Hugging Face: a DataLoader over the lines of a text file, tokenized
with the same GPT-2 + [CLS] [SEP] [PAD] [MASK] vocabulary sluice's `gpt2-mlm` is (Hugging Face
`tokenizers`, wrapped as a `PreTrainedTokenizerFast`), truncated to 510, [CLS]/[SEP] added, and
batched by `transformers.DataCollatorForLanguageModeling(mlm_probability=0.15,
pad_to_multiple_of=8)` — the collator HF's own MLM examples use — with HF's
`LengthGroupedSampler` (what `Trainer(group_by_length=True)` uses) ordering samples by length, as
sluice's bucketing does. Two recipes:

- `sample`: tokenize per sample in `__getitem__`, mask and pad in the collator;
- `batch`:  a batch sampler hands each worker a whole batch, tokenized with `encode_batch`
  (HF's fast path), then the collator.

Prints one JSON line: samples/s and tokens/s over the timed epochs after one warm-up epoch.

    python benches/peers/mlm_torch.py CORPUS --workers 2 --batch 64 --epochs 2 [--recipe batch]
"""

import pathlib
import sys

import torch
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerFast
from transformers.trainer_pt_utils import LengthGroupedSampler

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from gpt2_reference import gpt2  # noqa: E402
from nlp_torch import Lines, arguments, time_and_report  # noqa: E402

CLS, SEP = 50257, 50258


def hf_tokenizer():
    return PreTrainedTokenizerFast(
        tokenizer_object=gpt2(mlm=True), cls_token="[CLS]", sep_token="[SEP]",
        pad_token="[PAD]", mask_token="[MASK]")


class MlmLines(Lines):
    """Lines of the corpus as {"input_ids": [CLS] + ids[:510] + [SEP]} (one or a batch)."""

    def __init__(self, path):
        super().__init__(path, table=None)

    def _tokens(self, encoding):
        return {"input_ids": [CLS] + encoding.ids[:510] + [SEP]}

    def __getitem__(self, i):
        if self.file is None:
            self._text(0)
            self.tokenizer = gpt2(mlm=True)
        if isinstance(i, list):
            texts = [self._text(j) for j in i]
            encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
            return collator([self._tokens(e) for e in encodings])
        return self._tokens(self.tokenizer.encode(self._text(i), add_special_tokens=False))


collator = DataCollatorForLanguageModeling(
    hf_tokenizer(), mlm=True, mlm_probability=0.15, pad_to_multiple_of=8, return_tensors="pt")


def main():
    a = arguments()
    g = torch.Generator().manual_seed(0)
    data = MlmLines(a.corpus)
    # Lengths as sluice's bucketing sees them: each line's size in bytes.
    sampler = LengthGroupedSampler(a.batch, lengths=[n for _, n in data.offsets], generator=g)
    common = dict(num_workers=a.workers, prefetch_factor=2, persistent_workers=a.workers > 0)
    if a.recipe == "batch":
        batches = torch.utils.data.BatchSampler(sampler, a.batch, drop_last=False)
        loader = torch.utils.data.DataLoader(data, sampler=batches, batch_size=None, **common)
    else:
        loader = torch.utils.data.DataLoader(
            data, batch_size=a.batch, sampler=sampler, collate_fn=collator, **common)
    count = lambda b: (b["input_ids"].shape[0], int(b["attention_mask"].sum()))  # noqa: E731
    time_and_report(loader, a, f"hf-collator-{a.recipe}", "bert-mlm", count)


if __name__ == "__main__":
    main()

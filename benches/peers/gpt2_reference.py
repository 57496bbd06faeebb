"""GPT-2 in the Python `tokenizers` package, built as Hugging Face's gpt2 `tokenizer.json`
declares it (BPE + ByteLevel without prefix space, `<|endoftext|>` special), from the
vocabulary sluice ships (assets/gpt2): the reference the tests and the nlp peer use."""

import pathlib

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

ASSETS = pathlib.Path(__file__).resolve().parents[2] / "assets" / "gpt2"


def gpt2(mlm=False):
    """GPT-2; with `mlm`, BERT's [CLS] [SEP] [PAD] [MASK] added after it (sluice's gpt2-mlm)."""
    t = Tokenizer(models.BPE.from_file(str(ASSETS / "vocab.json"), str(ASSETS / "merges.txt")))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>"] + (["[CLS]", "[SEP]", "[PAD]", "[MASK]"] if mlm else [])
    t.add_special_tokens([AddedToken(s, special=True) for s in specials])
    return t

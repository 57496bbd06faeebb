"""Type stubs for the native module `sluice._sluice` (the PyO3 binding)."""

from __future__ import annotations

import os
import pathlib
from typing import Any, Iterator, Literal, Mapping, Optional, Sequence, Union

from .ops import Operator

__version__: str

PathLike = Union[str, os.PathLike[str]]
SourceLike = Union["ImageFolder", "FileList", "InMemory", "Shards", PathLike, str]

class SampleError(RuntimeError):
    """A sample failed in an operator (on_error="fail")."""

    index: int
    """Dataset index of the sample."""
    path: str
    """Where the sample came from (file path, or shard and offset)."""
    operator: str
    """The operator that failed, e.g. "DecodeImage"."""
    reason: str

class ImageFolder:
    """`ROOT/CLASS/*.jpg|jpeg|png`; labels are class indices in sorted class order."""

    def __init__(self, root: PathLike) -> None: ...
    @property
    def classes(self) -> list[str]:
        """Class names, in label order."""
    @property
    def root(self) -> str: ...
    def __len__(self) -> int: ...

class FileList:
    """A list of files: `path,label` CSV lines, a CSV/TSV table with a header (`path` or
    `audio_filepath`, optional `label`, optional `text`/`transcript`/`sentence`), or a
    JSON-lines manifest (`.jsonl`) with the same keys. Without labels every label is -1;
    transcripts come out as the batch's "text"."""

    def __init__(self, path: PathLike) -> None: ...
    def __len__(self) -> int: ...

class InMemory:
    """Encoded samples held in memory: a list of `(bytes, label)` pairs."""

    def __init__(self, samples: Sequence[tuple[bytes, int]]) -> None: ...
    def __len__(self) -> int: ...

class Shards:
    """WebDataset tar shards, local or on object storage: a folder of .tar files, a manifest
    (sluice-index.json, written by `sluice index`), or paths/URLs with brace patterns
    (s3://bucket/train-{000000..000127}.tar; gs://, az://, http(s)://). Credentials and
    endpoints come from the standard environment variables (AWS_ENDPOINT_URL, ...). A path
    or URL string given to Pipeline opens the same way.

    `window` (bytes, or a size such as "256MiB") bounds the bytes read ahead and not yet
    consumed; `concurrency` range requests run at once; a failed request is retried `retries`
    times with backoff; `timeout` (seconds) limits one request. None keeps the default
    (256 MiB, 16, 6, 30 s)."""

    def __init__(
        self,
        location: str,
        window: int | str | None = None,
        concurrency: int | None = None,
        retries: int | None = None,
        timeout: float | None = None,
    ) -> None: ...
    def __len__(self) -> int: ...
    @property
    def num_shards(self) -> int: ...
    @property
    def io_counts(self) -> tuple[int, int]:
        """Range requests made and bytes fetched so far (remote shards)."""
    @property
    def io_config(self) -> dict[str, float]:
        """The I/O settings in force: window (bytes), concurrency, retries, timeout (s)."""
    @property
    def peak_read_ahead_bytes(self) -> int:
        """The most bytes the read-ahead ever held at once (remote shards; at most the
        window plus one sample)."""

class Tensor:
    """One batch tensor. Pass it to `torch.from_dlpack`, `jax.numpy.from_dlpack` or
    `numpy.from_dlpack`: no copy is made, and sluice reuses the memory only after the last
    consumer tensor is freed."""

    def __dlpack__(
        self,
        *,
        stream: Optional[Any] = None,
        max_version: Optional[tuple[int, int]] = None,
        dl_device: Optional[tuple[int, int]] = None,
        copy: Optional[bool] = None,
    ) -> Any:
        """A DLPack capsule (versioned when `max_version` >= (1, 0)). For a CUDA tensor,
        `stream` is made to wait for the batch on the device (-1: no synchronization; None:
        the legacy default stream)."""
    def __dlpack_device__(self) -> tuple[int, int]:
        """(1, 0) for host memory, (2, ordinal) for CUDA."""
    @property
    def shape(self) -> list[int]: ...
    @property
    def dtype(self) -> Literal["float32", "float16", "bfloat16", "uint8", "int64"]: ...
    @property
    def device(self) -> str:
        """"cpu" or "cuda:N"."""
    @property
    def nbytes(self) -> int: ...
    @property
    def data_ptr(self) -> int:
        """Address of the first element (a zero-copy consumer's data pointer equals it)."""
    def tobytes(self) -> bytes:
        """A copy of the little-endian bytes (from the device for CUDA tensors)."""
    def numpy(self) -> Any:
        """`numpy.from_dlpack(self)`: host tensors only, not bfloat16."""
    def __len__(self) -> int: ...

class SkippedSample:
    """A sample the `on_error="skip"` policy left out of its batch."""

    index: int
    path: str
    operator: str
    reason: str

class Batch(Mapping[str, Any]):
    """One batch in sampler order: a mapping of named tensors. "images" is a Tensor (a list of
    per-sample Tensors when the output size is not fixed), "labels" and "indices" are int64
    Tensors. Audio pipelines (ops starting with DecodeAudio) hold "features" (float32
    [n, rows, time], padded along time) and "lengths" (int64) instead of "images". With a
    manifest that has transcripts (a `text`/`transcript`/`sentence` column or JSON key),
    "text" is a list of str in batch order. Text pipelines (ops starting with Tokenize) hold
    "input_ids" (int32 [n, tokens], padded with pad_id) or, after EmbeddingLookup,
    "embeddings" (float32 [n, tokens, dim], zero-padded), "attention_mask" (uint8 [n, tokens]),
    "lengths" and "indices"; after MlmMask also "labels" (int32 [n, tokens]: the original id
    where a token was selected, -100 elsewhere and in the padding)."""

    epoch: int
    index: int
    """Position of the batch in its epoch."""
    size: int
    """Number of samples (len(batch) is the number of named tensors)."""
    @property
    def skipped(self) -> list[SkippedSample]:
        """Samples of this batch's range left out under on_error="skip"."""
    def __getitem__(self, key: str) -> Any: ...
    def __iter__(self) -> Iterator[str]: ...
    def __len__(self) -> int: ...

class EpochIterator(Iterator[Batch]):
    """The batches of one epoch. Dropping it (or close()) cancels queued work; Ctrl-C while it
    waits raises KeyboardInterrupt and cancels the epoch."""

    epoch: int
    @property
    def position(self) -> int:
        """Position of the next batch to be delivered."""
    def __next__(self) -> Batch: ...
    def __len__(self) -> int: ...
    def close(self) -> None: ...
    def __enter__(self) -> EpochIterator: ...
    def __exit__(self, *exc: Any) -> None: ...

class Pipeline:
    """A declared pipeline: source, operators and settings. Bad settings raise ValueError
    naming the setting. Padded batches (audio, text): the padded axis is the batch's longest
    rounded up to `pad_multiple`, or exactly `pad_to_length` (a longer sample fails, or is
    skipped under on_error="skip"); token ids pad with `pad_id` (default: the tokenizer's pad
    token, else its EOS, else 0), values with `pad_value`. `bucket=K` batches samples of similar length
    (sorting windows of K batches). Sharded data: `shard_window=K` shuffles shards, then
    samples within windows of K shards (only K shards read at a time); `rank`/`world` deliver
    this rank's share of each epoch (equal batch counts on every rank; `uneven` pads by
    wrapping or drops the remainder). `allow_approx=True` lets the optimizer use approximate
    reorders and, whether or not it plans the run, decodes a JPEG at 1/2, 1/4 or 1/8 scale where
    the leading crop shrinks it ≥ 2× (stats()["scaled_decodes"] counts them)."""

    def __init__(
        self,
        source: SourceLike,
        ops: Optional[Sequence[Operator]] = None,
        *,
        batch_size: int = 32,
        shuffle: bool = False,
        seed: int = 0,
        threads: Optional[int] = None,
        prefetch: int = 2,
        max_prefetch: int = 0,
        drop_last: bool = False,
        on_error: Literal["fail", "skip"] = "fail",
        placement: Literal["cpu", "wgpu", "cuda", "auto"] = "cpu",
        device_batches: bool = False,
        cuda_device: Optional[int] = None,
        cache_mib: int = 0,
        fuse: bool = True,
        max_pixels: Optional[int] = None,
        max_side: Optional[int] = None,
        optimize: bool = False,
        profile: Optional[PathLike] = None,
        save_profile: Optional[PathLike] = None,
        train_step_ms: float = 0.0,
        epochs: int = 1,
        cache_budget_mib: int = 0,
        allow_approx: bool = False,
        pad_multiple: int = 1,
        pad_value: float = 0.0,
        pad_id: Optional[int] = None,
        bucket: int = 0,
        pad_to_length: int = 0,
        shard_window: int = 0,
        rank: int = 0,
        world: int = 1,
        uneven: Literal["wrap", "drop"] = "wrap",
    ) -> None: ...
    def epoch(self, epoch: int) -> EpochIterator:
        """The batches of `epoch` in sampler order (from the saved position after
        load_state_dict)."""
    def epoch_strided(self, epoch: int, start: int = 0, step: int = 1) -> EpochIterator:
        """Batches start, start + step, start + 2*step, ... of `epoch`: one of `step`
        iterators that split an epoch by batch (together they deliver exactly the epoch's
        batches; sluice.ray runs one per worker). Not tracked by state_dict. ValueError for a
        packed pipeline with step > 1."""
    def __iter__(self) -> EpochIterator:
        """The next epoch: 0, 1, 2, ... (or the one a loaded state resumes)."""
    def __len__(self) -> int:
        """Batches per epoch."""
    @property
    def num_samples(self) -> int: ...
    def state_dict(self) -> dict[str, Any]:
        """{"epoch", "position", "batches_per_epoch", "seed", "fingerprint", "rank", "world"}."""
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume: the next iteration over the saved epoch starts at the saved position.
        Refused (ValueError) for a state of other data, another declaration or another rank."""
    @property
    def placement_reason(self) -> str: ...
    @property
    def device_batches(self) -> bool: ...
    @property
    def gpu_cut(self) -> int: ...
    @property
    def ops(self) -> list[Operator]: ...
    @property
    def source(self) -> SourceLike: ...
    @property
    def settings(self) -> dict[str, Any]: ...
    def describe(self) -> str: ...
    def explain(
        self,
        profile: Optional[PathLike] = None,
        train_step_ms: Optional[float] = None,
        epochs: Optional[int] = None,
        cache_budget_mib: Optional[int] = None,
        allow_approx: Optional[bool] = None,
    ) -> str:
        """The optimizer's plan and the predicted cost of every alternative."""
    def stats(self) -> dict[str, Any]:
        """Counters: time per stage, samples, skips, buffer allocations, cache."""

class Checksum:
    """The checksum `sluice bench` prints, over batches as Python receives them."""

    def __init__(self) -> None: ...
    def update(self, batch: Batch) -> None: ...
    def hexdigest(self) -> str: ...

def workload(
    name: str,
    data: Optional[SourceLike] = None,
    *,
    images: Optional[int] = None,
    batch_size: int = 64,
    threads: Optional[int] = None,
    seed: int = 0,
    prefetch: int = 2,
    on_error: Literal["fail", "skip"] = "fail",
    placement: Literal["cpu", "wgpu", "cuda", "auto"] = "cpu",
    device_batches: bool = False,
    cuda_device: Optional[int] = None,
    cache_mib: int = 0,
    fuse: bool = True,
    allow_approx: bool = False,
    shard_window: int = 0,
    rank: int = 0,
    world: int = 1,
) -> Pipeline:
    """The pipeline `sluice bench NAME` runs (same bytes, same checksum); `data` defaults to
    the generated dataset of `images` images (default 1024; for the speech workloads asr-val,
    asr and cedar-asr, that many generated audio files, default 256). `allow_approx=True` is
    `sluice bench NAME --allow-approx`: JPEGs whose leading crop shrinks them ≥ 2× are decoded
    at 1/2, 1/4 or 1/8 scale (faster on large photos; pixels differ from the exact path)."""

def workloads() -> list[str]:
    """Names of the built-in workloads."""

def generated_dataset(
    images: int = 1024, classes: int = 10, seed: int = 0, kind: Literal["images", "audio", "text"] = "images"
) -> pathlib.Path:
    """Path of the generated JPEG (kind="audio": speech-like WAV; kind="text": the corpus file,
    one English-like document per line) dataset, made once
    under $SLUICE_CACHE_DIR or ~/.cache/sluice."""

def gen_data(
    dir: PathLike,
    n: int = 1024,
    classes: int = 10,
    seed: int = 0,
    kind: Literal["images", "audio", "text"] = "images",
    long_side: int | None = None,
) -> None:
    """Write the generated dataset (JPEGs; speech-like WAVs with kind="audio"; dir/corpus.txt with
    kind="text") to `dir`. `long_side`: images with a long side of N to 1.1·N pixels (e.g. 3000
    for camera-size photos) instead of ImageNet-like 200–600."""

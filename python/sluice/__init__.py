"""sluice: an ML input-data pipeline runtime (Rust), for PyTorch, JAX and NumPy training loops.

Declare a pipeline once; sluice decodes, augments and batches on its own threads (or GPU
kernels) with the GIL released, and hands each batch over without a copy through DLPack::

    import sluice, torch
    pipe = sluice.Pipeline(
        sluice.ImageFolder("data/train"),
        ops=[sluice.ops.RandomResizedCrop(224), sluice.ops.RandomHorizontalFlip(),
             sluice.ops.Normalize.imagenet()],
        batch_size=256, shuffle=True, seed=0, threads=8)
    for batch in pipe.epoch(0):
        x = torch.from_dlpack(batch["images"])   # [B, 3, 224, 224] float32, no copy
        y = torch.from_dlpack(batch["labels"])   # [B] int64
"""

from collections.abc import Mapping as _Mapping

from . import ops
from ._sluice import (
    Batch,
    Checksum,
    EpochIterator,
    FileList,
    ImageFolder,
    InMemory,
    Pipeline,
    SampleError,
    Shards,
    SkippedSample,
    Tensor,
    __version__,
    gen_data,
    generated_dataset,
    workload,
    workloads,
)

# A batch behaves as a read-only mapping of named tensors.
_Mapping.register(Batch)


def _rebuild_pipeline(source, ops, settings):
    """Unpickle a Pipeline from its declaration (see Pipeline.__reduce__)."""
    return Pipeline(source, ops, **settings)


__all__ = [
    "Batch",
    "Checksum",
    "EpochIterator",
    "FileList",
    "ImageFolder",
    "InMemory",
    "Pipeline",
    "SampleError",
    "Shards",
    "SkippedSample",
    "Tensor",
    "__version__",
    "gen_data",
    "generated_dataset",
    "ops",
    "workload",
    "workloads",
]

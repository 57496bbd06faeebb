from . import ops as ops
from ._sluice import (
    Batch as Batch,
    Checksum as Checksum,
    EpochIterator as EpochIterator,
    FileList as FileList,
    ImageFolder as ImageFolder,
    InMemory as InMemory,
    Pipeline as Pipeline,
    SampleError as SampleError,
    Shards as Shards,
    SkippedSample as SkippedSample,
    Tensor as Tensor,
    __version__ as __version__,
    gen_data as gen_data,
    generated_dataset as generated_dataset,
    workload as workload,
    workloads as workloads,
)

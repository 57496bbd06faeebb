"""Operators, declared as values. Each class mirrors the Rust operator of the same name and
follows torchvision's semantics; sluice validates the values when a Pipeline is built (a bad
value raises ValueError naming the operator and the setting).

Every operator takes two keyword-only settings:

- ``on``: pin it to ``"cpu"``, ``"wgpu"`` or ``"cuda"`` (a GPU pin takes every operator after
  it to the GPU too: a pipeline has one CPU-to-GPU cut). ``None`` follows the pipeline's
  ``placement``.
- ``fixed``: the optimizer never moves it (its position is part of the recipe).

Declarations are plain frozen dataclasses: they compare, print and pickle as values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Optional, Sequence, Tuple, Union

Size = Union[int, Tuple[int, int]]
Range = Union[float, Tuple[float, float]]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Operator:
    """Base of every operator declaration."""

    _kind: ClassVar[str] = ""
    on: Optional[str] = field(default=None, kw_only=True)
    fixed: bool = field(default=False, kw_only=True)


@dataclass(frozen=True)
class RandomResizedCrop(Operator):
    """Crop a random area fraction in ``scale`` with log-uniform aspect ratio in ``ratio``
    (up to 10 tries, then a central crop), resized to ``size`` (int or (height, width))."""

    _kind: ClassVar[str] = "RandomResizedCrop"
    size: Size
    scale: Tuple[float, float] = (0.08, 1.0)
    ratio: Tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)


@dataclass(frozen=True)
class Resize(Operator):
    """Resize so the shorter side is ``size``, keeping the aspect ratio (torchvision
    ``Resize(int)``)."""

    _kind: ClassVar[str] = "Resize"
    size: int


@dataclass(frozen=True)
class CenterCrop(Operator):
    """Crop the centre ``size`` (int or (height, width)); pads with zeros when larger."""

    _kind: ClassVar[str] = "CenterCrop"
    size: Size


@dataclass(frozen=True)
class RandomHorizontalFlip(Operator):
    """Mirror left-right with probability ``p``."""

    _kind: ClassVar[str] = "RandomHorizontalFlip"
    p: float = 0.5


@dataclass(frozen=True)
class ColorJitter(Operator):
    """Random brightness, contrast, saturation and hue in random order (torchvision). Each is a
    strength ``s`` (factor in [max(0, 1 - s), 1 + s]; hue shift in [-s, s]; 0 leaves it out)
    or a (low, high) range. Applied with probability ``p`` (RandomApply)."""

    _kind: ClassVar[str] = "ColorJitter"
    brightness: Range = 0.0
    contrast: Range = 0.0
    saturation: Range = 0.0
    hue: Range = 0.0
    p: float = 1.0


@dataclass(frozen=True)
class RandomGrayscale(Operator):
    """Convert to grayscale (ITU-R 601-2 luma, kept as 3 channels) with probability ``p``."""

    _kind: ClassVar[str] = "RandomGrayscale"
    p: float = 0.1


@dataclass(frozen=True)
class GaussianBlur(Operator):
    """Gaussian blur with a ``kernel_size``-tap kernel and sigma drawn uniformly from ``sigma``
    (reflect padding), applied with probability ``p``."""

    _kind: ClassVar[str] = "GaussianBlur"
    kernel_size: int
    sigma: Range = (0.1, 2.0)
    p: float = 1.0


@dataclass(frozen=True)
class Normalize(Operator):
    """``(x / 255 - mean) / std`` per channel, written as ``dtype`` ("float32", "float16",
    "bfloat16") in ``layout`` ("chw" or "hwc"). Ends the pipeline."""

    _kind: ClassVar[str] = "Normalize"
    mean: Sequence[float]
    std: Sequence[float]
    dtype: str = "float32"
    layout: str = "chw"

    @classmethod
    def imagenet(cls, dtype: str = "float32", layout: str = "chw", **kw) -> "Normalize":
        """ImageNet mean and std: what torchvision's ResNet recipes feed the model."""
        return cls(IMAGENET_MEAN, IMAGENET_STD, dtype=dtype, layout=layout, **kw)

    def __post_init__(self) -> None:
        # Tuples, so declarations compare and hash as values.
        object.__setattr__(self, "mean", tuple(self.mean))
        object.__setattr__(self, "std", tuple(self.std))


@dataclass(frozen=True)
class Cast(Operator):
    """The u8 pixel values unchanged, as ``dtype`` (e.g. "uint8", "float32") in ``layout``.
    Ends the pipeline."""

    _kind: ClassVar[str] = "Cast"
    dtype: str = "uint8"
    layout: str = "chw"


# Speech. A pipeline that starts with DecodeAudio reads WAV/FLAC and its batches hold
# "features" (float32 [n, bins or channels, time], zero-padded along time) and "lengths"
# (int64, each sample's length before padding) instead of "images". These run on the CPU.


@dataclass(frozen=True)
class DecodeAudio(Operator):
    """First in an audio pipeline: WAV (PCM 8/16/24/32-bit, float, extensible) or FLAC to float32.
    ``channels``: "mono" (the mean of the channels), "all", or a channel number.
    ``max_seconds``: longer files (or headers claiming so) are errors."""

    _kind: ClassVar[str] = "DecodeAudio"
    channels: Union[str, int] = "mono"
    max_seconds: float = 600.0


@dataclass(frozen=True)
class Resample(Operator):
    """To ``rate`` Hz with torchaudio's ``sinc_interp_hann`` (width 6, rolloff 0.99)."""

    _kind: ClassVar[str] = "Resample"
    rate: int


@dataclass(frozen=True)
class Dither(Operator):
    """Adds ``scale`` x standard normal noise to every sample (random per sample)."""

    _kind: ClassVar[str] = "Dither"
    scale: float = 1e-5


@dataclass(frozen=True)
class PreEmphasis(Operator):
    """``y[t] = x[t] - coefficient * x[t-1]``, ``y[0] = x[0]``."""

    _kind: ClassVar[str] = "PreEmphasis"
    coefficient: float = 0.97


@dataclass(frozen=True)
class Spectrogram(Operator):
    """STFT magnitude (``power`` 1), power (2) or complex values (``power=None``, for
    ``TimeStretch``) as torchaudio's ``Spectrogram``: a Hann window of ``win_length`` (default
    ``n_fft``; ``periodic`` or symmetric) centred in ``n_fft``, hop ``hop_length`` (default
    ``win_length // 2``), the signal padded by ``n_fft // 2`` on both sides when ``center``
    (``pad_mode`` "reflect" or "constant"). Output [n_fft // 2 + 1, frames]."""

    _kind: ClassVar[str] = "Spectrogram"
    n_fft: int = 400
    win_length: Optional[int] = None
    hop_length: Optional[int] = None
    periodic: bool = True
    center: bool = True
    pad_mode: str = "reflect"
    power: Optional[float] = 2.0


@dataclass(frozen=True)
class TimeStretch(Operator):
    """Phase vocoder on a complex STFT (torchaudio's ``phase_vocoder``): ``ceil(frames / rate)``
    frames, magnitudes interpolated between neighbouring frames, phases advanced by each bin's
    measured step. ``rate`` is one number or a ``(low, high)`` range drawn per sample."""

    _kind: ClassVar[str] = "TimeStretch"
    rate: Union[float, Tuple[float, float]] = 0.8


@dataclass(frozen=True)
class ComplexNorm(Operator):
    """``|z| ** power`` of a complex STFT: magnitudes (1) or powers (2)."""

    _kind: ClassVar[str] = "ComplexNorm"
    power: float = 2.0


@dataclass(frozen=True)
class MelScale(Operator):
    """Triangular mel filterbank (torchaudio's ``melscale_fbanks``): ``n_mels`` filters between
    ``f_min`` and ``f_max`` (default: half the sample rate), ``mel_scale`` "htk" or "slaney",
    ``norm`` None or "slaney"."""

    _kind: ClassVar[str] = "MelScale"
    n_mels: int = 128
    f_min: float = 0.0
    f_max: Optional[float] = None
    mel_scale: str = "htk"
    norm: Optional[str] = None


@dataclass(frozen=True)
class Log(Operator):
    """``ln(x + eps)``."""

    _kind: ClassVar[str] = "Log"
    eps: float = 2.0**-24


@dataclass(frozen=True)
class FeatureNormalize(Operator):
    """Per feature row over the frames: zero mean, unit unbiased standard deviation (+1e-5)."""

    _kind: ClassVar[str] = "FeatureNormalize"


@dataclass(frozen=True)
class FrequencyMasking(Operator):
    """SpecAugment: ``count`` masks of rows, each up to ``min(max_width, max_fraction * rows)``
    wide (torchaudio's ``mask_along_axis``), filled with ``fill``."""

    _kind: ClassVar[str] = "FrequencyMasking"
    max_width: float
    count: int = 1
    max_fraction: float = 1.0
    fill: float = 0.0


@dataclass(frozen=True)
class TimeMasking(Operator):
    """SpecAugment: ``count`` masks of frames, each up to ``min(max_width, max_fraction *
    frames)`` wide, filled with ``fill``."""

    _kind: ClassVar[str] = "TimeMasking"
    max_width: float = float("inf")
    count: int = 1
    max_fraction: float = 1.0
    fill: float = 0.0


@dataclass(frozen=True)
class Tokenize(Operator):
    """Start a text pipeline: each sample's text (UTF-8: a line, a JSON field or a document)
    becomes token ids with Hugging Face ``tokenizers`` (the same ids as the Python package).
    ``tokenizer``: None or ``"gpt2"`` for GPT-2 (built in, no download), ``"gpt2-mlm"`` for
    GPT-2 with BERT's ``[CLS] [SEP] [PAD] [MASK]`` added (built in), a ``tokenizer.json``, or a
    folder holding ``encoder.json`` + ``vocab.bpe`` (or ``vocab.json`` + ``merges.txt``).
    ``invalid_utf8``: ``"error"`` (the sample fails, naming file, line and byte) or
    ``"replace"`` (U+FFFD). Empty text is the sample's error. ``offsets=True`` keeps each
    token's character span: batches gain ``batch["offset_mapping"]`` (int32 ``[B, L, 2]``,
    ``[start, end)`` in the sample's text as ``tokenizers`` reports ``offsets``; ``[0, 0]`` for
    special tokens and padding). Not with ``EmbeddingLookup`` or ``Pack``."""

    _kind: ClassVar[str] = "Tokenize"
    tokenizer: Optional[str] = None
    invalid_utf8: str = "error"
    offsets: bool = False


@dataclass(frozen=True)
class Truncate(Operator):
    """Keep the first ``max_len`` tokens; a sequence that ended in the id ``keep_end`` (an
    EOS added before) still ends in it."""

    _kind: ClassVar[str] = "Truncate"
    max_len: int
    keep_end: Optional[int] = None


@dataclass(frozen=True)
class AddSpecialTokens(Operator):
    """Put ``bos`` before and ``eos`` after each sequence: ``"default"`` takes the
    tokenizer's (GPT-2: ``<|endoftext|>``; BERT: ``[CLS]``/``[SEP]``), ``None`` leaves it out,
    or give an id or a token string."""

    _kind: ClassVar[str] = "AddSpecialTokens"
    bos: Union[None, int, str] = "default"
    eos: Union[None, int, str] = "default"


@dataclass(frozen=True)
class MlmMask(Operator):
    """BERT's masked-language-model corruption (Hugging Face's
    ``DataCollatorForLanguageModeling``): each token that is not a special token is selected
    with ``probability``; of those a ``mask_fraction`` share becomes ``mask_token``
    (``"default"``: the tokenizer's ``[MASK]``/``<mask>``; or an id or a token string), a
    ``random_fraction`` share a random id, the rest stay. The batch gains ``labels`` (int32: the
    original id where selected, -100 elsewhere). Every draw is keyed by (seed, epoch, sample,
    token position), so it does not depend on threads or batching."""

    _kind: ClassVar[str] = "MlmMask"
    probability: float = 0.15
    mask_fraction: float = 0.8
    random_fraction: float = 0.1
    mask_token: Union[int, str] = "default"


@dataclass(frozen=True)
class Pack(Operator):
    """Concatenate the documents in epoch order, ``separator`` after each (``"default"``: the
    tokenizer's EOS, GPT-2's ``<|endoftext|>``; None: nothing; or an id or a token string), and
    cut the stream into blocks of ``seq_len`` tokens: no padding inside an epoch, nothing
    dropped (the epoch's last block holds the remainder, padded with ``pad_id``). Must be the
    last operator; ``batch_size`` counts blocks. Batches hold ``input_ids`` [blocks, seq_len],
    causal-LM ``labels`` (the ids, -100 at each document's and block's first position),
    ``cu_seqlens`` (int32 boundaries over the flattened blocks, for flash-attention's varlen
    kernels), ``attention_mask``, ``lengths`` and ``indices`` (the documents in the batch). A
    packed pipeline has no ``len()``."""

    _kind: ClassVar[str] = "Pack"
    seq_len: int = 2048
    separator: Union[None, int, str] = "default"


@dataclass(frozen=True)
class EmbeddingLookup(Operator):
    """Each token's row of a frozen table (cedar's NLP op): ids ``[tokens]`` become float32
    ``[tokens, dim]``. ``table``: a ``.npy`` (2-D f32/f16) or ``.safetensors`` file (f32, f16
    or bf16; the 2-D tensor, or the one named ``tensor``); None: a deterministic random table
    of the tokenizer's vocabulary × ``dim``, values uniform in [-0.05, 0.05) from ``seed``."""

    _kind: ClassVar[str] = "EmbeddingLookup"
    table: Optional[str] = None
    dim: int = 768
    seed: int = 0
    tensor: Optional[str] = None


__all__ = [
    "Tokenize",
    "Truncate",
    "AddSpecialTokens",
    "MlmMask",
    "Pack",
    "EmbeddingLookup",
    "DecodeAudio",
    "Resample",
    "Dither",
    "PreEmphasis",
    "Spectrogram",
    "TimeStretch",
    "ComplexNorm",
    "MelScale",
    "Log",
    "FeatureNormalize",
    "FrequencyMasking",
    "TimeMasking",
    "Operator",
    "RandomResizedCrop",
    "Resize",
    "CenterCrop",
    "RandomHorizontalFlip",
    "ColorJitter",
    "RandomGrayscale",
    "GaussianBlur",
    "Normalize",
    "Cast",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]


@dataclass(frozen=True)
class Lambda(Operator):
    """Your own operator: ``fn`` takes one sample's value as a writable NumPy array and returns
    the new value (torchvision's ``Lambda``, tf.data's ``map``, DALI's ``python_function``).

    ``input``/``output``: ``"image"`` (uint8 ``(H, W, 3)``), ``"audio"`` (float32
    ``(channels, samples)``; ``(samples,)`` is mono on output; the rate is kept) or
    ``"features"`` (float32 ``(bins, frames)``); ``output`` defaults to ``input``. With
    ``random=True``, ``fn(x, rng)`` also gets a ``numpy.random.Generator`` seeded from the
    sample's own stream, so its draws depend only on (seed, epoch, sample) — never on threads or
    batches. It runs on sluice's worker threads, taking the GIL for each call (Python code runs
    one sample at a time); the optimizer never moves it (it commutes with nothing) and keeps it
    and every operator before it on the CPU.
    An exception, or a result of the wrong shape, is the sample's error naming the operator
    (skipped and counted under ``on_error="skip"``). Images: ``size`` declares the output size,
    ``"same"`` as the input or a fixed ``(height, width)`` (checked on every sample); by default
    it depends on the data, so the batch is ragged unless a later operator fixes the size."""

    _kind: ClassVar[str] = "Lambda"
    fn: Callable
    input: str = "image"
    output: Optional[str] = None
    random: bool = False
    name: Optional[str] = None
    size: Union[None, str, Tuple[int, int]] = None


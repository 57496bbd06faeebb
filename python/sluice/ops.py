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
from typing import ClassVar, Optional, Sequence, Tuple, Union

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


__all__ = [
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

"""Image preprocessing: one typed description used identically for calibration and evaluation."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from PIL import Image


class ValueRange(enum.StrEnum):
    """The pixel value range a model expects at its input."""

    ZERO_ONE = "0,1"
    MINUS_ONE_ONE = "-1,1"
    RAW = "0,255"

    @property
    def bounds(self) -> tuple[float, float]:
        """(low, high) of the range."""
        low, high = self.value.split(",")
        return float(low), float(high)

    def scale(self, pixels: np.ndarray) -> np.ndarray:
        """Maps uint8 pixels (0..255) into this range as float32."""
        low, high = self.bounds
        return (pixels.astype(np.float32) * np.float32((high - low) / 255.0) + np.float32(low)).astype(
            np.float32
        )


class ResizeMethod(enum.StrEnum):
    """Interpolation used to resize images to the model's input size."""

    BILINEAR = "bilinear"
    NEAREST = "nearest"
    BICUBIC = "bicubic"
    AREA = "area"


class ChannelOrder(enum.StrEnum):
    """Channel order of 3-channel inputs."""

    RGB = "rgb"
    BGR = "bgr"


_PIL_RESAMPLE = {
    ResizeMethod.BILINEAR: Image.Resampling.BILINEAR,
    ResizeMethod.NEAREST: Image.Resampling.NEAREST,
    ResizeMethod.BICUBIC: Image.Resampling.BICUBIC,
    ResizeMethod.AREA: Image.Resampling.BOX,
}


@dataclass(frozen=True)
class Preprocessing:
    """How raw images become model input.

    Attributes:
        height, width, channels: the model's input size (1 = grayscale, 3 = colour).
        value_range: pixel range the model expects.
        resize: interpolation used when an image is not already at the input size.
        channel_order: RGB or BGR (3-channel models only).
        center_crop: crop the largest centred square before resizing (keeps aspect).
        source: how value_range was chosen, in words, for the report.
    """

    height: int
    width: int
    channels: int
    value_range: ValueRange = ValueRange.ZERO_ONE
    resize: ResizeMethod = ResizeMethod.BILINEAR
    channel_order: ChannelOrder = ChannelOrder.RGB
    center_crop: bool = False
    source: str = "default"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class PreprocessingOverride:
    """User choices that replace inferred preprocessing; None keeps the inferred value."""

    value_range: ValueRange | None = None
    resize: ResizeMethod | None = None
    channel_order: ChannelOrder | None = None
    center_crop: bool | None = None

    def __post_init__(self) -> None:
        for name, kind in (("value_range", ValueRange), ("resize", ResizeMethod), ("channel_order", ChannelOrder)):
            value = getattr(self, name)
            if value is not None and not isinstance(value, kind):
                object.__setattr__(self, name, kind(value))

    def apply(self, pre: Preprocessing) -> Preprocessing:
        """Returns `pre` with every non-None choice applied."""
        changes = {k: v for k, v in asdict(self).items() if v is not None}
        if "value_range" in changes:
            changes["source"] = "chosen by the user"
        return replace(pre, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in asdict(self).items()}


def resize_pixels(pixels: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """Returns uint8 HxWxC pixels at the model's size and channel count (before scaling)."""
    image = Image.fromarray(pixels)
    if pre.center_crop:
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if pre.channels == 1:
        image = image.convert("L")
    if image.size != (pre.width, pre.height):
        image = image.resize((pre.width, pre.height), _PIL_RESAMPLE[pre.resize])
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    if pre.channels == 3 and pre.channel_order is ChannelOrder.BGR:
        array = array[:, :, ::-1]
    return array


def to_model_input(images: Sequence[np.ndarray], pre: Preprocessing) -> np.ndarray:
    """Stacks RGB uint8 images into a float32 batch [N, H, W, C] in the model's range."""
    if not images:
        return np.zeros((0, pre.height, pre.width, pre.channels), np.float32)
    batch = np.stack([resize_pixels(p, pre) for p in images])
    return np.ascontiguousarray(pre.value_range.scale(batch))

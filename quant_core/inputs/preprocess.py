"""Image preprocessing: one typed description used identically for calibration and evaluation."""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from PIL import Image

from quant_core._serde import to_jsonable
from quant_core.errors import InputError, parse_choice


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


class Preset(enum.StrEnum):
    """Named input normalizations: how 0..255 pixels become the numbers a model expects.

    Choosing the wrong one silently ruins accuracy, so the workbench infers it (see
    `compare.infer_preprocessing`) and shows how.
    """

    ZERO_ONE = "0,1"  # x/255: most Keras models trained from scratch
    MINUS_ONE_ONE = "-1,1"  # x/127.5 - 1: keras.applications MobileNet/Inception ("tf" mode)
    RAW = "0,255"  # raw pixels: models that rescale inside, or were trained on raw values
    IMAGENET = "imagenet"  # RGB (x/255 - mean)/std with ImageNet statistics: torchvision ports ("torch" mode)
    CAFFE = "caffe"  # BGR, ImageNet mean subtracted, no scaling: keras.applications ResNet50/VGG ("caffe" mode)
    CUSTOM = "custom"  # the user's own per-channel mean and std

    @property
    def description(self) -> str:
        """One line for the UI and the CLI help."""
        return _PRESET_TEXT[self]

    @property
    def channel_order(self) -> ChannelOrder:
        """The channel order this preset implies (Caffe models take BGR)."""
        return ChannelOrder.BGR if self is Preset.CAFFE else ChannelOrder.RGB


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939 / 255, 116.779 / 255, 123.68 / 255)
_PRESET_TEXT = {
    Preset.ZERO_ONE: "[0,1]: x/255",
    Preset.MINUS_ONE_ONE: "[-1,1]: x/127.5 - 1",
    Preset.RAW: "[0,255]: raw pixel values",
    Preset.IMAGENET: "ImageNet mean/std (torchvision): (x/255 - mean)/std per RGB channel",
    Preset.CAFFE: "Caffe: BGR, ImageNet mean subtracted, no scaling",
    Preset.CUSTOM: "custom mean/std: (x/255 - mean)/std per channel",
}
# mean and std in units of x/255, in the model's channel order (see Normalization).
_PRESET_VALUES: dict[Preset, tuple[tuple[float, ...], tuple[float, ...]]] = {
    Preset.ZERO_ONE: ((0.0,), (1.0,)),
    Preset.MINUS_ONE_ONE: ((0.5,), (0.5,)),
    Preset.RAW: ((0.0,), (1 / 255,)),
    Preset.IMAGENET: (_IMAGENET_MEAN, _IMAGENET_STD),
    Preset.CAFFE: (_CAFFE_MEAN_BGR, (1 / 255,)),
}


@dataclass(frozen=True)
class Normalization:
    """Per-channel normalization: model input = (x/255 - mean) / std.

    `x` are the 0..255 pixel values after resizing and channel reordering; `mean` and
    `std` are in units of x/255 (torchvision's convention: ImageNet mean 0.485, ...) and in
    the model's channel order. One value applies to every channel. Every preset is a
    case of this: [-1,1] is mean 0.5, std 0.5; raw pixels are mean 0, std 1/255.

    Attributes:
        preset: the named preset, or CUSTOM.
        mean: one value, or one per channel.
        std: one value, or one per channel; every value > 0.
    """

    preset: Preset = Preset.ZERO_ONE
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        object.__setattr__(self, "preset", _preset(self.preset))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, 3) or not all(math.isfinite(v) for v in values):
                raise InputError(f"{name} must be one number or three (one per channel), got {list(values)}")
        if any(v <= 0 for v in self.std):
            raise InputError(f"std values must be positive, got {list(self.std)}")
        if self.preset is not Preset.CUSTOM and (self.mean, self.std) != _PRESET_VALUES[self.preset]:
            raise InputError(f"the {self.preset.value} preset has fixed mean/std; use the custom preset for others")

    @classmethod
    def of(cls, preset: Preset | str) -> Normalization:
        """The named preset (not CUSTOM, which needs values: use `custom`)."""
        preset = _preset(preset)
        if preset is Preset.CUSTOM:
            raise InputError("the custom normalization needs a mean and a std (CLI: --mean and --std)")
        mean, std = _PRESET_VALUES[preset]
        return cls(preset, mean, std)

    @classmethod
    def custom(cls, mean: Sequence[float], std: Sequence[float]) -> Normalization:
        """A custom per-channel mean/std, in units of x/255."""
        return cls(Preset.CUSTOM, tuple(mean), tuple(std))

    @classmethod
    def presets(cls, *, channels: int = 3) -> tuple[Normalization, ...]:
        """Every named preset that fits a model with this many input channels."""
        found = (cls.of(p) for p in Preset if p is not Preset.CUSTOM)
        return tuple(n for n in found if n.fits(channels))

    def fits(self, channels: int) -> bool:
        """Whether this normalization can apply to images with this many channels."""
        return max(len(self.mean), len(self.std)) in (1, channels)

    @property
    def label(self) -> str:
        """Short name for tables and captions."""
        if self.preset is Preset.CUSTOM:
            return f"custom mean {format_numbers(self.mean)}, std {format_numbers(self.std)}"
        return {Preset.IMAGENET: "ImageNet mean/std", Preset.CAFFE: "Caffe (BGR, mean subtracted)"}.get(
            self.preset, f"[{self.preset.value}]")

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """Maps uint8 pixels [..., C] (0..255) to float32 model input.

        Computed as one float32 multiply-add per channel, pixel * scale + offset with
        scale = 1/(255 std) and offset = -mean/std, so the [0,1], [-1,1] and [0,255]
        presets give exactly x/255, x*(2/255) - 1 and x.
        """
        channels = pixels.shape[-1]
        if not self.fits(channels):
            raise InputError(f"{self.label} has values for 3 channels; the model takes {channels}")
        mean, std = np.asarray(self.mean, np.float64), np.asarray(self.std, np.float64)
        scale = (1.0 / (255.0 * std)).astype(np.float32)
        offset = (-mean / std).astype(np.float32)
        return (pixels.astype(np.float32) * scale + offset).astype(np.float32)

def _preset(value: Preset | str) -> Preset:
    """A preset from its name; InputError naming the valid ones otherwise."""
    return parse_choice(Preset, value, "normalization")


def format_numbers(values: Sequence[float]) -> str:
    """(0.485, 0.456, 0.406) as '0.485,0.456,0.406' (6 significant digits)."""
    return ",".join(f"{v:.6g}" for v in values)


def parse_numbers(text: str, *, name: str) -> tuple[float, ...]:
    """'0.485,0.456,0.406' as floats; InputError for anything else."""
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise InputError(f"{name} must be comma-separated numbers such as 0.485,0.456,0.406, got {text!r}") from None
    return values


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
        normalization: how pixels become model input (a preset or a custom mean/std).
        resize: interpolation used when an image is not already at the input size.
        channel_order: RGB or BGR (3-channel models only).
        center_crop: crop the largest centred square before resizing (keeps aspect).
        source: how the normalization was chosen, in words, for the report.
    """

    height: int
    width: int
    channels: int
    normalization: Normalization = field(default_factory=Normalization)
    resize: ResizeMethod = ResizeMethod.BILINEAR
    channel_order: ChannelOrder = ChannelOrder.RGB
    center_crop: bool = False
    source: str = "default"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return to_jsonable(self)


@dataclass(frozen=True)
class PreprocessingOverride:
    """User choices that replace inferred preprocessing; None keeps the inferred value."""

    normalization: Normalization | None = None
    resize: ResizeMethod | None = None
    channel_order: ChannelOrder | None = None
    center_crop: bool | None = None

    def __post_init__(self) -> None:
        if isinstance(self.normalization, str):  # a preset name, e.g. from a link or a test
            object.__setattr__(self, "normalization", Normalization.of(self.normalization))
        for name, kind in (("resize", ResizeMethod), ("channel_order", ChannelOrder)):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, parse_choice(kind, value, name.replace("_", " ")))

    def apply(self, pre: Preprocessing) -> Preprocessing:
        """Returns `pre` with every non-None choice applied.

        A chosen normalization brings its preset's channel order (Caffe: BGR) unless a
        channel order is chosen too.
        """
        changes = {f: getattr(self, f) for f in ("normalization", "resize", "channel_order", "center_crop")
                   if getattr(self, f) is not None}
        if self.normalization is not None:
            changes["source"] = "chosen by the user"
            changes.setdefault("channel_order", self.normalization.preset.channel_order)
        return replace(pre, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return to_jsonable(self)


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
    return np.ascontiguousarray(pre.normalization.apply(batch))

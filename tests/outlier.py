"""A model made hard to quantize in one known layer, and labelled images for it (tests of layers and tune).

The model is the tiny colour classifier's shape, really trained, then given one outlier:
conv_a's channel 0 never fires (a large negative bias before its ReLU), and every output
channel of conv_b carries a weight of 100 on that dead channel. The float model is
unchanged by this (the weight always multiplies zero), but conv_b's per-channel weight
scales grow ~100x, so int8 rounds its real weights to zero and conv_b's output is noise.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from conftest import CLASSES, SIZE, colour_images
from quant_core.inputs.images import ImageSet, load_images

OUTLIER_WEIGHT = 100.0


def build_outlier_model():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(16, activation="relu", name="fc")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="probs")(x)
    model = keras.Model(inputs, outputs, name="outlier")
    images, labels = colour_images(240, seed=1)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(images.astype("float32"), labels, epochs=12, batch_size=32, verbose=0)
    weights, bias = model.get_layer("conv_a").get_weights()
    bias[0] = -1000.0  # channel 0 of conv_a is dead
    model.get_layer("conv_a").set_weights([weights, bias])
    weights, bias = model.get_layer("conv_b").get_weights()
    weights[1, 1, 0, :] = OUTLIER_WEIGHT  # ...and every output channel of conv_b reads it with a huge weight
    model.get_layer("conv_b").set_weights([weights, bias])
    return model


def write_outlier(root: Path) -> tuple[Path, ImageSet, Path]:
    """The outlier model, 48 labelled colour images and the class names file, written under `root`."""
    path = root / "outlier.keras"
    build_outlier_model().save(path)
    images, labels = colour_images(48, seed=3)
    for name in CLASSES:
        (root / "images" / name).mkdir(parents=True)
    for k, (pixels, label) in enumerate(zip(images, labels)):
        Image.fromarray(pixels).save(root / "images" / CLASSES[label] / f"{k:03d}.png")
    (root / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    return path, load_images([root / "images"]), root / "labels.txt"

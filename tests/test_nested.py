"""Models that nest a whole base model as one layer (the transfer-learning pattern).

keras.applications bases sit inside the user's model as one Functional layer; the
evidence for the input normalization (the first BatchNormalization layer's training
statistics) is inside that base, so inference must descend into it.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SIZE, colour_images
from quant_core.compare import infer_preprocessing
from quant_core.inputs.images import load_images, resolve_labels
from quant_core.inputs.models import load_model
from quant_core.inputs.preprocess import ChannelOrder, Normalization, PreprocessingOverride, Preset


def build_nested(preset: str, *, sequential: bool = False):
    """A classifier whose Functional base (conv, BN, ReLU6) was trained on inputs normalised with `preset`.

    After training, the BN moving statistics are set to the exact statistics of the
    training inputs, as a long training run would leave them.
    """
    import keras

    keras.utils.set_random_seed(0)
    inner_in = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, use_bias=False, name="stem")(inner_in)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(6.0)(x)
    base = keras.Model(inner_in, keras.layers.GlobalAveragePooling2D()(x), name="base")
    head = keras.layers.Dense(3, activation="softmax", name="head")
    if sequential:
        model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), base, head], name="nested_seq")
    else:
        outer_in = keras.Input((SIZE, SIZE, 3), name="image")
        model = keras.Model(outer_in, head(base(outer_in)), name="nested")
    images, labels = colour_images(120, seed=3)
    norm = Normalization.of(preset)
    order = norm.preset.channel_order
    x_train = norm.apply(images[..., ::-1] if order is ChannelOrder.BGR else images)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(x_train, labels, epochs=3, batch_size=32, verbose=0)
    acts = np.asarray(keras.Model(inner_in, base.get_layer("stem_bn").input)(x_train)).reshape(-1, 8)
    bn = base.get_layer("stem_bn")
    bn.moving_mean.assign(acts.mean(0))
    bn.moving_variance.assign(acts.var(0))
    return model


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("preset", ["-1,1", "imagenet", "caffe", "0,1"])
def test_inference_descends_into_a_nested_base_model(preset, suffix, tmp_path, image_dir):
    path = tmp_path / f"nested{suffix}"
    build_nested(preset).save(path)
    source = load_model(path)
    images = load_images([image_dir])
    labels = resolve_labels(images, source.info.num_classes, None)
    pre = infer_preprocessing(source, images, labels, PreprocessingOverride())
    assert pre.normalization == Normalization.of(preset), pre.source
    assert pre.channel_order is Normalization.of(preset).preset.channel_order
    assert "BatchNormalization" in pre.source and "could not be inferred" not in pre.source
    assert f"{Normalization.of(preset).label}, mismatch" in pre.source


def test_a_nested_base_in_a_sequential_model_is_searched_too(tmp_path, image_dir):
    path = tmp_path / "nested_seq.keras"
    build_nested("imagenet", sequential=True).save(path)
    source = load_model(path)
    images = load_images([image_dir])
    pre = infer_preprocessing(source, images, resolve_labels(images, 3, None), PreprocessingOverride())
    assert pre.normalization.preset is Preset.IMAGENET, pre.source


def test_a_rescaling_layer_inside_a_nested_base_means_raw_pixels(tmp_path, image_dir):
    import keras

    inner_in = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inner_in)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x))
    base = keras.Model(inner_in, x, name="base_with_rescaling")
    outer_in = keras.Input((SIZE, SIZE, 3))
    model = keras.Model(outer_in, keras.layers.Dense(3, activation="softmax")(base(outer_in)))
    path = tmp_path / "nested_rescaling.keras"
    model.save(path)
    source = load_model(path)
    assert any("Rescaling" in layer for layer in source.info.preprocessing_layers)
    images = load_images([image_dir])
    pre = infer_preprocessing(source, images, resolve_labels(images, 3, None), PreprocessingOverride())
    assert pre.normalization.preset is Preset.RAW and "scales its input itself" in pre.source

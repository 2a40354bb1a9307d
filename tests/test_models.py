"""Loading every supported model format, describing it, and refusing what is unsafe or out of scope."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import SIZE, colour_images
from quant_core.errors import InputError, UnsafeModelError, UnsupportedModelError
from quant_core.models import ModelFormat, load_model

FORMATS = ["keras", "h5", "saved_model", "zip", "tflite"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_loads_describes_and_predicts_like_keras(fmt, model_files, tiny_model):
    source = load_model(model_files[fmt])
    info = source.info
    assert info.input_shape == (None, SIZE, SIZE, 3)
    assert info.num_classes == 3
    assert info.input_dtype == "float32"
    assert len(info.sha256) == 64
    assert info.param_count > 1000
    if fmt in ("keras", "h5"):
        assert info.param_count == tiny_model.count_params()
        assert info.has_preprocessing_layer and "Rescaling" in info.preprocessing_layers[0]
        assert info.input_scale == pytest.approx(1 / 255)
    assert source.is_tflite == (fmt == "tflite")
    x = colour_images(5, seed=3)[0].astype(np.float32)
    expected = tiny_model.predict(x, verbose=0)
    np.testing.assert_allclose(source.predict(x), expected, atol=1e-5)
    # The float .tflite built for every format reproduces the model (not a weightless graph).
    from quant_core.runner import TFLiteRunner

    np.testing.assert_allclose(TFLiteRunner(source.float_tflite).predict(x), expected, atol=1e-4)


def test_format_detection_from_names(model_files):
    assert load_model(model_files["zip"]).info.format is ModelFormat.SAVED_MODEL
    assert load_model(model_files["h5"]).info.format is ModelFormat.H5


def _save(model, path: Path) -> Path:
    model.save(path)
    return path


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_lambda_layer_is_refused_without_running_it(tmp_path, suffix):
    import keras

    marker = tmp_path / "ran.txt"
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)  # the code a hostile file would carry
    x = keras.layers.Flatten()(x)
    path = _save(keras.Model(inputs, keras.layers.Dense(2)(x)), tmp_path / f"lambda{suffix}")
    with pytest.raises(UnsafeModelError, match="Lambda"):
        load_model(path)
    assert not marker.exists()


def test_unregistered_custom_layer_is_refused(tmp_path):
    import keras

    @keras.saving.register_keras_serializable(package="hostile")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Flatten()(Doubler()(inputs))
    path = _save(keras.Model(inputs, keras.layers.Dense(2)(x)), tmp_path / "custom.keras")
    keras.saving.get_custom_objects().clear()  # the loading process does not know the class
    with pytest.raises(UnsafeModelError, match="custom code"):
        load_model(path)


def test_two_inputs_are_out_of_scope(tmp_path):
    import keras

    a, b = keras.Input((8, 8, 3)), keras.Input((8, 8, 3))
    x = keras.layers.Flatten()(keras.layers.Add()([a, b]))
    path = _save(keras.Model([a, b], keras.layers.Dense(2)(x)), tmp_path / "two.keras")
    with pytest.raises(UnsupportedModelError, match="2 inputs.*image classifiers"):
        load_model(path)


def test_non_image_input_is_out_of_scope(tmp_path):
    import keras

    inputs = keras.Input((10,))
    path = _save(keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs)), tmp_path / "tab.keras")
    with pytest.raises(UnsupportedModelError, match=r"input shape \[\?, 10\] is not an image"):
        load_model(path)


def test_quantized_tflite_is_refused(model_files, tmp_path):
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(model_files["saved_model"]))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    path = tmp_path / "dynamic.tflite"
    path.write_bytes(conv.convert())
    with pytest.raises(UnsupportedModelError, match="already quantized"):
        load_model(path)


@pytest.mark.parametrize("name,content,match", [
    ("broken.keras", b"not a zip", "not a valid .keras"),
    ("broken.tflite", b"\x00" * 64, "cannot load"),
    ("model.onnx", b"onnx", "unsupported model file"),
    ("broken.h5", b"garbage", "cannot load the model"),
])
def test_broken_files_give_one_line_errors(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=match) as err:
        load_model(path)
    assert "\n" not in str(err.value)


def test_zip_without_saved_model_is_refused(tmp_path):
    path = tmp_path / "nothing.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(InputError, match="one SavedModel folder, found 0"):
        load_model(path)


def test_saved_model_that_reads_files_is_refused_before_running(tmp_path):
    import tensorflow as tf

    secret = tmp_path / "secret.txt"
    secret.write_text("token")

    class Reader(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32)])
        def serve(self, x):
            leak = tf.strings.length(tf.io.read_file(str(secret)))
            return {"scores": tf.reduce_mean(x, axis=[1, 2]) + tf.cast(leak, tf.float32)}

    module = Reader()
    folder = tmp_path / "reader"
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    with pytest.raises(UnsafeModelError, match="ReadFile"):
        load_model(folder)

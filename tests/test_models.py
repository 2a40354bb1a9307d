"""Loading every supported model format, describing it, and refusing what is unsafe or out of scope."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import SIZE, colour_images
from quant_core.errors import InputError, UnsafeModelError, UnsupportedModelError
from quant_core.inputs import keras_introspection
from quant_core.inputs.models import ModelFormat, load_model
from quant_core.runner import batch_size

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


def test_keras_predictions_equal_the_model_call_for_full_and_partial_batches(model_files, tiny_model):
    source = load_model(model_files["keras"])
    step = batch_size((SIZE, SIZE, 3))
    for n in (3, step, 2 * step + 5):  # one short batch; one full batch; two full and a short last one
        x = colour_images(n, seed=n)[0].astype(np.float32)
        np.testing.assert_allclose(source.predict(x), np.asarray(tiny_model(x, training=False)), rtol=0, atol=1e-5)


def test_keras_predictions_are_not_retraced_per_batch_size(model_files, monkeypatch):
    made = []
    real = keras_introspection.traced_call

    def recording(*args):
        made.append(real(*args))
        return made[-1]

    monkeypatch.setattr(keras_introspection, "traced_call", recording)
    source = load_model(model_files["keras"])
    x = colour_images(2 * batch_size((SIZE, SIZE, 3)) + 5, seed=4)[0].astype(np.float32)
    for n in (1, 7, len(x), 2, len(x) - 1):
        assert source.predict(x[:n]).shape == (n, 3)
    assert len(made) == 1
    assert 1 <= made[0].experimental_get_tracing_count() <= 2


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

    def hostile(t):
        marker.write_text("ran")  # the code a hostile file would carry
        return t * 2.0

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Flatten()(keras.layers.Lambda(hostile)(inputs))
    path = _save(keras.Model(inputs, keras.layers.Dense(2)(x)), tmp_path / f"lambda{suffix}")
    marker.unlink()  # building the model ran it once, here in the test
    # .keras stores the function's bytecode (refused by safe_mode); .h5 names it (an unknown custom function)
    with pytest.raises(UnsafeModelError, match=r"Lambda layer|custom code \(hostile\)"):
        load_model(path)
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_unregistered_custom_layer_is_refused(tmp_path, suffix):
    import keras

    calls = []

    @keras.saving.register_keras_serializable(package="hostile")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            calls.append(1)
            return x * 2.0

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Flatten()(Doubler()(inputs))
    path = _save(keras.Model(inputs, keras.layers.Dense(2)(x)), tmp_path / f"custom{suffix}")
    keras.saving.get_custom_objects().clear()  # the loading process does not know the class
    calls.clear()
    with pytest.raises(UnsafeModelError, match="custom code"):
        load_model(path)
    assert not calls


def test_two_inputs_are_out_of_scope(tmp_path):
    import keras

    a, b = keras.Input((8, 8, 3)), keras.Input((8, 8, 3))
    x = keras.layers.Flatten()(keras.layers.Add()([a, b]))
    path = _save(keras.Model([a, b], keras.layers.Dense(2)(x)), tmp_path / "two.keras")
    with pytest.raises(UnsupportedModelError, match="2 inputs.*image models with one image input"):
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


# Each case: a serving graph with exactly one unsafe op, and the op the refusal must name.
UNSAFE_CASES = {
    "write_file": "WriteFile",
    "py_function": "EagerPyFunc",
    "numpy_function": "PyFunc",
    "matching_files": "MatchingFiles",
    "nested_function": "WriteFile",  # inside a tf.function that the serving function calls
    "print": "PrintV2",
}


def _unsafe_body(case: str, evidence: Path, calls: list[str]):
    """The serving computation of a case; running it leaves `evidence` or appends to `calls`."""
    import tensorflow as tf

    def scores(x):
        return tf.reduce_mean(x, axis=[1, 2])

    def callback(t):
        calls.append(case)
        return t

    @tf.function
    def hidden_write(x):
        tf.io.write_file(str(evidence), "owned")
        return x

    def write_file(x):
        tf.io.write_file(str(evidence), "owned")
        return scores(x)

    def print_to_file(x):
        tf.print("ran", output_stream=f"file://{evidence}")
        return scores(x)

    return {
        "write_file": write_file,
        "py_function": lambda x: scores(tf.py_function(callback, [x], tf.float32)),
        "numpy_function": lambda x: scores(tf.numpy_function(callback, [x], tf.float32)),
        "matching_files": lambda x: scores(x) + tf.cast(tf.size(tf.io.matching_files(f"{evidence.parent}/*")),
                                                        tf.float32),
        "nested_function": lambda x: scores(hidden_write(x)),
        "print": print_to_file,
    }[case]


@pytest.mark.parametrize("case,op", UNSAFE_CASES.items(), ids=list(UNSAFE_CASES))
def test_saved_model_with_unsafe_op_is_refused_before_tensorflow_loads_it(case, op, tmp_path, monkeypatch, capfd):
    import tensorflow as tf

    from quant_core.cli import main

    evidence, calls = tmp_path / "evidence.txt", []
    body = _unsafe_body(case, evidence, calls)

    class Hostile(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32)])
        def serve(self, x):
            return {"scores": body(x)}

    module = Hostile()
    folder = tmp_path / case
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    loads = []
    real_load = tf.saved_model.load
    monkeypatch.setattr(tf.saved_model, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))

    with pytest.raises(UnsafeModelError, match=rf"contains the op {op}\b") as err:
        load_model(folder)
    assert "\n" not in str(err.value)
    capfd.readouterr()
    assert main(["inspect", str(folder)]) == 2
    stderr = capfd.readouterr().err.splitlines()
    assert len(stderr) == 1 and stderr[0].startswith("error: ") and re.search(rf"the op {op}\b", stderr[0]), stderr

    assert loads == []  # refused from the protobuf alone: TensorFlow never loaded the graph
    assert not evidence.exists() and calls == []
    module.serve(tf.zeros([1, 8, 8, 3]))  # the same graph run for real does leave evidence
    if case == "matching_files":  # no side effect to observe; the loader check above is the proof
        assert not evidence.exists() and calls == []
    else:
        assert evidence.exists() or calls == [case]

"""Every field of a user's .tflite and JSON, broken one way at a time: always one clear line, never a crash.

Each .tflite kind starts from the tiny model's real conversion and breaks one field the
workbench or a backend after it reads (see `hostile.TFLITE_MUTATIONS`). Before the fields
were checked up front, these ended as "internal error" (IndexError, ValueError,
UnicodeDecodeError), as a segfault of the interpreter or of the TF converter's quantizer,
or were accepted and measured as if they were classifiers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from hostile import RUNTIME_MUTATIONS, TFLITE_MUTATIONS, edit_tflite
from quant_core.errors import InputError, UnsupportedModelError
from quant_core.inputs.images import read_labels_file
from quant_core.inputs.models import load_model
from quant_core.recipe import Recipe

ALL_MUTATIONS = {**TFLITE_MUTATIONS, **RUNTIME_MUTATIONS}


def run_cli(*args, cache_dir) -> subprocess.CompletedProcess:
    env = dict(os.environ, QUANT_CACHE_DIR=str(cache_dir), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "quant_core", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=600)


def assert_refused(proc: subprocess.CompletedProcess, fragment: str) -> None:
    """Exit 2, nothing on stdout, one `error:` line on stderr holding the fragment."""
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-600:])
    assert proc.stdout == "" and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-600:]
    assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def tiny_tflite(model_files) -> bytes:
    return model_files["tflite"].read_bytes()


def test_the_unbroken_model_passes_every_check(tiny_tflite):
    """The checks refuse the mutations, not the converter's own output."""
    from quant_core.inputs.tflite_info import check_structure

    declared = check_structure(tiny_tflite, name="tiny.tflite")
    assert declared.inputs == ((None, 16, 16, 3),) and declared.outputs == ((None, 3),)
    assert edit_tflite(tiny_tflite, lambda m: None) != b""  # packing an unedited tree gives a loadable model
    assert check_structure(edit_tflite(tiny_tflite, lambda m: None), name="repacked.tflite") == declared


@pytest.mark.parametrize("kind", sorted(TFLITE_MUTATIONS))
def test_a_broken_tflite_field_is_refused_by_inspect_and_compare_in_one_line(kind, tiny_tflite, image_dir,
                                                                             tmp_path):
    edit, fragment = TFLITE_MUTATIONS[kind]
    path = tmp_path / f"{kind}.tflite"
    path.write_bytes(edit_tflite(tiny_tflite, edit))
    inspect = run_cli("inspect", path, cache_dir=tmp_path / "cache")
    assert_refused(inspect, fragment)
    assert inspect.stderr.startswith(f"error: {kind}.tflite: ")  # the line names the file
    compare = run_cli("compare", path, "--images", image_dir, "--no-latency", "--calibration-count", "8",
                      "--modes", "float32,dynamic_range,float16,int8,int16x8", cache_dir=tmp_path / "cache")
    assert_refused(compare, fragment)


@pytest.mark.parametrize("kind", sorted(RUNTIME_MUTATIONS))
def test_a_model_that_mixes_the_images_of_a_batch_is_refused_when_it_runs(kind, tiny_tflite, image_dir, tmp_path):
    edit, fragment = RUNTIME_MUTATIONS[kind]
    path = tmp_path / f"{kind}.tflite"
    path.write_bytes(edit_tflite(tiny_tflite, edit))
    proc = run_cli("compare", path, "--images", image_dir, "--no-latency", "--modes", "int8",
                   cache_dir=tmp_path / "cache")
    assert_refused(proc, fragment)


@pytest.fixture(scope="module")
def two_output_tflite(tmp_path_factory):
    """A real float .tflite with two outputs [N, 213] and [N, 15], shaped like an eye-landmark model."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3)(inputs))
    model = keras.Model(inputs, [keras.layers.Dense(213)(features), keras.layers.Dense(15)(features)])
    path = tmp_path_factory.mktemp("two_outputs") / "eye_landmarks.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def test_a_valid_model_with_two_outputs_is_compared_output_by_output(two_output_tflite, image_dir, tmp_path):
    from quant_core import ArtifactCache, CompareOptions, CompareRequest, Mode, Recipe, run_compare

    info = load_model(two_output_tflite).info
    assert info.num_classes == 0 and sorted(s[1] for s in info.outputs) == [15, 213]
    result = run_compare(CompareRequest(str(two_output_tflite), (str(image_dir),), None, CompareOptions(
        recipes=(Recipe(Mode.INT8, calibration_count=8),), measure_latency=False)), cache=ArtifactCache(tmp_path))
    assert [len(s.description) > 0 for s in result.output_specs] == [True, True]
    int8 = result.variant("int8")
    assert int8.ok and [o.name for o in int8.outputs] == [s.name for s in result.output_specs]
    assert all(o.whole.sqnr_db is not None and o.whole.sqnr_db > 10 for o in int8.outputs), int8.outputs
    assert int8.top1 == () and int8.accuracy is None  # not read as class scores


def test_broken_models_are_refused_in_the_app_with_one_error(tiny_tflite, model_files, image_dir):
    from streamlit.testing.v1 import AppTest

    uploads = [(f"{kind}.tflite", edit_tflite(tiny_tflite, ALL_MUTATIONS[kind][0]), ALL_MUTATIONS[kind][1])
               for kind in ("outputs_empty", "subgraphs_absent", "signature_tensor_past_end",
                            "fully_connected_without_options", "tensor_name_not_utf8")]
    images = [(p.name, p.read_bytes(), "image/png") for p in sorted(image_dir.rglob("*.png"))[:6]]
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=600)
    at.run()
    at.radio(key="w.source").set_value("Upload my own").run()
    for name, data, fragment in uploads:
        at.file_uploader[0].set_value((name, data, "application/octet-stream"))
        at.file_uploader[1].set_value(images)
        next(b for b in at.button if b.label == "Use these files").click().run()
        assert not at.exception, (name, [e.value for e in at.exception])
        errors = [e.value for e in at.error]
        assert len(errors) == 1 and fragment in errors[0] and "\n" not in errors[0], (name, errors)


# ----------------------------------------------------------------------------- labels JSON

DEEP = 200_000
LABELS_JSON = {
    "nested_lists": ("[" * DEEP + "]" * DEEP, "nested too deeply"),
    "nested_objects": ('{"0": ' * DEEP + '"x"' + "}" * DEEP, "nested too deeply"),
    "number_too_long": ("[" + "7" * 5000 + "]", "unreadable JSON"),
    "names_that_are_objects": (json.dumps({"0": {"name": "cat"}, "1": "dog"}), "holding an object of 1 key"),
    "names_that_are_null": (json.dumps({"0": None, "1": "dog"}), "holding null"),
    "index_too_long": (json.dumps({"0": "cat", "1" * 5000: "dog"}), "with indices 0 to N-1"),
}


@pytest.mark.parametrize("kind", sorted(LABELS_JSON))
def test_a_hostile_labels_json_is_an_input_error(kind, tmp_path):
    text, fragment = LABELS_JSON[kind]
    path = tmp_path / "labels.json"
    path.write_text(text)
    with pytest.raises(InputError, match="labels.json: ") as caught:
        read_labels_file(path)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    assert len(str(caught.value)) < 300


def test_an_oversized_labels_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_bytes(b"cat\n" * (5 * 1024 * 1024))  # 20 MB
    with pytest.raises(InputError, match=r"labels.txt: labels file of 20,971,520 bytes; expected at most"):
        read_labels_file(path)


def test_a_deeply_nested_labels_json_exits_2_from_the_cli(model_files, image_dir, tmp_path):
    labels = tmp_path / "labels.json"
    labels.write_text(LABELS_JSON["nested_lists"][0])
    proc = run_cli("compare", model_files["tflite"], "--images", image_dir, "--labels", labels, "--no-latency",
                   "--modes", "int8", cache_dir=tmp_path / "cache")
    assert_refused(proc, "labels.json: JSON nested too deeply to read")


def test_a_deeply_nested_labels_json_is_one_error_in_the_app(model_files, image_dir):
    from streamlit.testing.v1 import AppTest

    images = [(p.name, p.read_bytes(), "image/png") for p in sorted(image_dir.rglob("*.png"))[:6]]
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=600)
    at.run()
    at.radio(key="w.source").set_value("Upload my own").run()
    at.file_uploader[0].set_value(("tiny.keras", model_files["keras"].read_bytes(), "application/octet-stream"))
    at.file_uploader[1].set_value(images)
    at.file_uploader[2].set_value(("labels.json", LABELS_JSON["nested_lists"][0].encode(), "application/json"))
    next(b for b in at.button if b.label == "Use these files").click().run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "JSON nested too deeply" in errors[0] and "\n" not in errors[0], errors


# ----------------------------------------------------------------------------- recipe JSON

RECIPES = {
    "not_an_object": (["int8"], "expected a recipe object"),
    "null": (None, "expected a recipe object"),
    "no_mode": ({"per_channel": True}, "a recipe needs a mode"),
    "mode_null": ({"mode": None}, "recipe field mode must be a mode name, got null"),
    "per_channel_as_text": ({"mode": "int8", "per_channel": "no"}, "per_channel must be true or false"),
    "count_as_bool": ({"mode": "int8", "calibration_count": True}, "calibration_count must be an integer, got true"),
    "float_layers_number": ({"mode": "int8", "float_layers": 5}, "float_layers must be a list of tensor names"),
    "float_layers_null": ({"mode": "int8", "float_layers": None}, "float_layers must be a list of tensor names"),
    "float_layers_object": ({"mode": "int8", "float_layers": {"conv": 1}}, "float_layers must be a list"),
    "non_string_key": ({"mode": "int8", 3: "x"}, "unknown recipe fields: 3"),
}


@pytest.mark.parametrize("kind", sorted(RECIPES))
def test_a_recipe_of_the_wrong_json_shape_is_an_input_error(kind):
    data, fragment = RECIPES[kind]
    with pytest.raises(InputError) as caught:
        Recipe.from_dict(data)
    assert fragment in str(caught.value)


def test_a_recipe_written_beside_a_variant_still_reads_back():
    recipe = Recipe("int8", calibration_count=50, per_channel=False, float_layers=("b", "a"))
    assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe


def test_a_savedmodel_whose_input_has_no_rank_is_refused(tmp_path):
    import tensorflow as tf

    class Any(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec(None, tf.float32)])
        def serve(self, x):
            return {"scores": tf.reshape(tf.reduce_mean(x), [1, 1]) * tf.ones([1, 3])}

    module = Any()
    tf.saved_model.save(module, str(tmp_path / "any_rank"), signatures={"serving_default": module.serve})
    with pytest.raises(UnsupportedModelError, match=r"any_rank: input shape \[\] is not an image"):
        load_model(tmp_path / "any_rank")


def test_a_share_link_with_deeply_nested_json_is_ignored_with_a_message():
    """Older links carry float layers as JSON (`keep=`); a nested one is a bad link, not a crash."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=300)
    at.query_params.update({"sample": "digits_cnn", "modes": "float32,int8", "keep": "[" * 5000 + "]" * 5000})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.toast] == ["Ignored the link's settings: the link's keep setting: JSON nested too "
                                           "deeply to read; expected a flat list or object"]

"""Choices that name one model's layers end when the model changes; a recipe naming layers its model does not have is
refused in one line, never built as a silent copy of the mode without them."""

from __future__ import annotations

import io
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from quant_core import ArtifactCache, Backend, Mode, Recipe
from quant_core.builders import graph_layers
from quant_core.compare import CompareOptions, CompareRequest, Workbench, run_compare
from quant_core.errors import InputError
from quant_core.inputs.images import load_images
from test_layers_app import APP, ok  # the same app under AppTest, and its check for errors


def keep_three_layers_in_float(at: AppTest) -> AppTest:
    """The digits sample's int8 run, then Layers' one-click build of int8 with its worst three layers in float."""
    at.query_params.update({"sample": "digits_cnn", "modes": "float32,int8"})
    at.run()
    next(b for b in at.button if b.label == "Run the full comparison").click().run()
    at.switch_page("pages/layers.py").run()
    next(b for b in at.button if b.label.startswith("Build int8 + 3 float layers")).click().run()
    ok(at)
    assert "int8+3float" in list(at.table[0].value["variant"])
    return at


def use_another_sample(at: AppTest, _) -> None:
    at.selectbox(key="w.sample").set_value("digits_mobilenet").run()


def upload_another_model(at: AppTest, model_files) -> None:
    at.radio(key="w.source").set_value("Upload my own").run()
    at.file_uploader[0].set_value(("tiny.keras", model_files["keras"].read_bytes(), "application/octet-stream"))
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buf, format="PNG")
    at.file_uploader[1].set_value([(f"red{k}.png", buf.getvalue(), "image/png") for k in range(3)])
    next(b for b in at.button if b.label == "Use these files").click().run()


@pytest.mark.parametrize("switch", [use_another_sample, upload_another_model])
def test_another_model_does_not_inherit_the_float_layers_of_the_one_before(switch, model_files):
    at = keep_three_layers_in_float(AppTest.from_file(APP, default_timeout=600))
    at.session_state["qw.sweep"] = at.session_state["qw.result"].variant("int8").recipe  # as Measure leaves it
    at.switch_page("pages/model_data.py").run()
    switch(at, model_files)
    ok(at)
    assert at.session_state["qw.settings"].float_layers == ()
    assert at.session_state["qw.sweep"] is None  # the same int8 recipe on the new model: it would sweep unasked
    at.switch_page("pages/quantize.py").run()
    assert "float" not in next(c.value for c in at.caption if c.value.startswith("Will build"))
    at.button(key="w.run").click().run()
    ok(at)
    assert list(at.table[0].value["variant"]) == ["float32", "int8"]
    assert not any("kept in float" in w.value for w in at.warning)


FOREIGN = "other_1/conv_b_1/Relu;other_1/conv_b_1/BiasAdd;other_1/conv_b_1/convolution"  # no layer of the tiny model


@pytest.mark.parametrize("mode,backend", [(Mode.INT8, Backend.TF_CONVERTER), (Mode.INT8, Backend.LITERT_QUANTIZER),
                                          (Mode.INT16X8, Backend.LITERT_QUANTIZER)])
def test_a_recipe_keeping_layers_of_another_model_is_refused_by_both_backends(model_files, image_dir, mode, backend):
    bench = Workbench.open(model_files["keras"], load_images([image_dir]),
                           options=CompareOptions(measure_latency=False))
    real = graph_layers(bench.source.float_tflite)[1]
    recipe = Recipe(mode, backend=backend, float_layers=(FOREIGN, real))
    with pytest.raises(InputError, match=rf"^{mode.value}\+2float: 1 of the 2 layers it keeps in float are not in "
                                         r"this model \(other_1/conv_b_1/Relu\); they were chosen on another model"):
        bench.build(recipe)
    assert bench.build(replace(recipe, float_layers=(real,))).model != bench.build(Recipe(mode, backend=backend)).model
    # A comparison asking for it is refused as a whole, before anything is built: not a row that looks like int8.
    request = CompareRequest(str(model_files["keras"]), (str(image_dir),), None,
                             CompareOptions(recipes=(Recipe(Mode.FLOAT32), recipe), measure_latency=False))
    with pytest.raises(InputError, match=r"not in this model"):
        run_compare(request, cache=ArtifactCache(Path(tempfile.mkdtemp(prefix="qw-cache-"))))

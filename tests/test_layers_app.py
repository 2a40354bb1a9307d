"""The Layers page through AppTest on a real run of the digits sample: the error by layer, then one click to keep
the worst layers in float, which comes back as a new variant beside the others."""

from __future__ import annotations

import os
import tempfile

from conftest import REPO

os.environ.setdefault("QUANT_CACHE_DIR", tempfile.mkdtemp(prefix="qw-apptest-cache-"))
from streamlit.testing.v1 import AppTest

APP = str(REPO / "streamlit_app.py")


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def test_layers_names_the_worst_layers_and_keeping_them_in_float_adds_a_variant():
    at = AppTest.from_file(APP, default_timeout=600)
    at.query_params.update({"sample": "digits_cnn", "modes": "float32,int8,dynamic_range"})
    at.run()
    next(b for b in at.button if b.label == "Run the full comparison").click().run()
    ok(at)
    at.switch_page("pages/layers.py").run()
    ok(at)
    assert at.title[0].value == "Layers"
    assert at.selectbox(key="w.layers_variant").options == ["int8"]  # dynamic range quantizes no activations
    assert "The output of int8 is off by" in at.markdown[0].value and "add" in at.markdown[0].value
    assert len(at.get("plotly_chart")) == 1
    worst = at.dataframe[0].value
    assert 5 <= len(worst) <= 10 and list(worst.columns)[:4] == ["#", "op", "layer", "adds"]
    adds = [float(a.rstrip("%")) for a in worst["adds"]]
    assert adds == sorted(adds, reverse=True) and adds[0] > 0  # worst first
    chosen = list(at.multiselect(key="w.layers_keep").value)
    assert len(chosen) == 3  # the worst three, by default
    overlay = [d for d in at.get("download_button") if "Model Explorer" in d.proto.label]
    assert len(overlay) == 1  # the error by layer as Model Explorer node data (its content: tests/test_explorer.py)
    button = next(b for b in at.button if b.label.startswith("Build int8 + 3 float layers"))
    button.click().run()  # a what-if run of the settings plus this variant; then Compare
    ok(at)
    assert at.title[0].value == "Compare"
    table = at.table[0].value.set_index("variant")
    assert list(table.index) == ["float32", "dynamic_range", "int8", "int8+3float"]
    assert table.loc["int8+3float", "status"] == "ok" and table.loc["int8+3float", "integer-only"] == "no"
    assert table.loc["int8", "integer-only"] == "yes"
    result = at.session_state["qw.result"]
    kept = result.variant("int8+3float")
    assert kept.recipe.float_layers == tuple(sorted(chosen))
    assert any("3 layers kept in float" in w.value for w in at.warning)  # the what-if banner names it
    # The choice is part of the settings: a share link carries it.
    assert '"int8",' in at.session_state["qw.settings"].to_query()["keep"]


def test_the_search_runs_step_by_step_and_its_winner_joins_the_comparison(tmp_path):
    from outlier import write_outlier
    from quant_core import Mode
    from ui.inputs import Inputs, files_digest
    from ui.settings import Settings

    model, _, labels = write_outlier(tmp_path)  # one layer breaks int8 (tests/outlier.py)
    images = (tmp_path / "images",)
    at = AppTest.from_file(APP, default_timeout=600)
    at.session_state["qw.inputs"] = Inputs("outlier.keras", model, images, labels,
                                           digest=files_digest(model, images, labels))
    at.session_state["qw.settings"] = Settings(modes=(Mode.FLOAT32, Mode.INT8))
    at.switch_page("pages/quantize.py").run()
    at.button(key="w.run").click().run()
    at.switch_page("pages/layers.py").run()
    ok(at)
    assert at.radio(key="w.tune_target").options == ["Phone or desktop CPU", "Mobile GPU",
                                                     "Integer-only NPU, DSP or microcontroller"]  # the verdict's
    at.radio(key="w.tune_target").set_value("integer-only").run()
    at.button(key="w.tune_go").click().run()  # within 1 point of float32's accuracy (the default)
    ok(at)
    assert [s.name for s in at.session_state["qw.tune"][2]] == ["int8", "int16x8"]  # integer-only recipes only
    assert any("Nothing integer-only meets it" in w.value for w in at.warning)
    at.radio(key="w.tune_target").set_value("cpu").run()
    at.button(key="w.tune_go").click().run()
    ok(at)
    steps = at.session_state["qw.tune"][2]
    assert [s.name for s in steps] == ["int8", "int8_float_io", "int16x8", "dynamic_range", "weight_only", "float16",
                                       "int8+1float"]  # every mode a CPU runs, then int8's worst layer in float
    assert "keeps CONV_2D conv_b in float: it adds the most error" in steps[6].why
    assert len(at.get("plotly_chart")) == 2  # the error by layer, and the search's trail
    assert at.success[0].value.startswith("Winner: **float16** (step 6), accuracy 100.0%")  # the smaller of two
    next(b for b in at.button if b.label == "Add float16 beside the others").click().run()
    ok(at)
    assert at.title[0].value == "Compare"
    table = at.table[0].value.set_index("variant")
    assert set(table.index) == {"float32", "int8", "float16"} and table.loc["float16", "accuracy"] == 1.0


def test_the_calibration_sweep_draws_fidelity_against_the_number_of_images():
    at = AppTest.from_file(APP, default_timeout=600)
    at.query_params.update({"sample": "digits_cnn", "modes": "float32,int8"})
    at.run()
    next(b for b in at.button if b.label == "Run the full comparison").click().run()
    at.switch_page("pages/layers.py").run()
    assert len(at.get("plotly_chart")) == 1  # nothing measured until asked
    # Whole op types can be kept in float too: the worst three plus every layer of the least harmful one's type.
    options = at.multiselect(key="w.layers_keep").options  # "#k OP name (adds x%)", worst first; 3 chosen
    op = options[-1].split()[1]
    at.multiselect(key="w.layers_ops").set_value([op]).run()
    label = next(b.label for b in at.button if b.label.startswith("Build int8 + "))
    expected = {0, 1, 2} | {k for k, option in enumerate(options) if option.split()[1] == op}
    assert label == f"Build int8 + {len(expected)} float layers beside the others" and len(expected) > 3
    at.button(key="w.calibration_go").click().run()
    ok(at)
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    import json

    figure = json.loads(charts[1].proto.spec)
    names = [trace["name"] for trace in figure["data"]]
    assert names == ["agreement with float32", "agreement with float32, random calibration", "accuracy",
                     "accuracy, random calibration"]
    assert figure["data"][0]["x"][:4] == [1, 5, 10, 20]  # then all the images

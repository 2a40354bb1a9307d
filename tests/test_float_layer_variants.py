"""A float-layer variant added on Layers is one of the settings like any mode: listed on Quantize, removable there and
in What if…, and shared by a short link (its layers by place in the model's graph) that reopens exactly it."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
from streamlit.testing.v1 import AppTest

from quant_core import Mode
from quant_core.errors import InputError
from test_layers_app import APP, ok  # the same app under AppTest, and its check for errors
from ui.settings import Settings


def keep_three_layers_in_float() -> AppTest:
    """The digits sample's int8 run, then Layers' one-click build of int8 with its worst three layers in float."""
    at = AppTest.from_file(APP, default_timeout=600)
    at.query_params.update({"sample": "digits_cnn", "modes": "float32,int8"})
    at.run()
    next(b for b in at.button if b.label == "Run the full comparison").click().run()
    at.switch_page("pages/layers.py").run()
    next(b for b in at.button if b.label.startswith("Build int8 + 3 float layers")).click().run()
    at.switch_page("pages/compare.py").run()  # where the build went (AppTest reruns the page it was told last)
    ok(at)
    assert list(at.table[0].value["variant"]) == ["float32", "int8", "int8+3float"]
    return at


def float_toggle(at: AppTest):
    return next(t for t in at.toggle if t.label == "int8 + 3 float layers")


def test_quantize_lists_the_float_layer_variant_and_both_quantize_and_what_if_remove_it():
    at = keep_three_layers_in_float()
    kept = at.session_state["qw.settings"].float_layers
    float_toggle(at).set_value(False).run()  # What if… on Compare
    ok(at)
    assert list(at.table[0].value["variant"]) == ["float32", "int8"]
    assert at.session_state["qw.settings"].float_layers == ()

    at.session_state["qw.settings"] = Settings(modes=(Mode.FLOAT32, Mode.INT8), float_layers=kept)
    at.switch_page("pages/quantize.py").run()
    will_build = next(c.value for c in at.caption if c.value.startswith("Will build"))
    assert will_build.endswith(", int8 + 3 float layers")
    float_toggle(at).set_value(False).run()
    ok(at)
    assert at.session_state["qw.settings"].float_layers == ()
    assert "float layers" not in next(c.value for c in at.caption if c.value.startswith("Will build"))
    at.button(key="w.run").click().run()
    assert list(at.table[0].value["variant"]) == ["float32", "int8"]


def test_the_share_link_names_float_layers_by_place_and_reopens_exactly_them():
    at = keep_three_layers_in_float()
    settings = at.session_state["qw.settings"]
    at.switch_page("pages/report.py").run()
    ok(at)
    link = next(c.value for c in at.code if "sample=digits_cnn" in c.value)
    query = urlsplit(link).query
    assert "keep=" not in query and "fl=" in query
    assert len(query) < 120, query  # three tensor names took ~500 characters; their places take a few each

    opened = AppTest.from_file(APP, default_timeout=600)
    opened.query_params.update(dict(parse_qsl(query)))
    opened.run()
    ok(opened)
    assert opened.session_state["qw.settings"] == settings
    assert list(opened.table[0].value["variant"]) == ["float32", "int8", "int8+3float"]


LAYERS = ("model_1/a_1/Relu;model_1/a_1/BiasAdd", "model_1/b_1/Relu", "model_1/c_1/Mean", "StatefulPartitionedCall:0")


def test_float_layers_round_trip_by_place_and_a_link_for_another_graph_is_refused():
    s = Settings(modes=(Mode.FLOAT32, Mode.INT8)).with_float_layers(Mode.INT8, (LAYERS[2], LAYERS[0]))
    s = s.with_float_layers(Mode.INT16X8, (LAYERS[1],))
    params = s.to_query(layers=LAYERS)
    assert "keep" not in params and params["fl"].endswith("~int8-0.2~int16x8-1")
    assert Settings.from_query(params, layers=lambda: LAYERS) == s
    assert Settings.from_query(s.to_query(), layers=lambda: LAYERS) == s  # by name (keep=), as older links do
    with pytest.raises(InputError, match=r"^the link's float layers were chosen on another build of this model"):
        Settings.from_query(params, layers=lambda: LAYERS[:3])
    with pytest.raises(InputError, match=r"^the link keeps in float 1 layer\(s\) this model does not have "
                                         r"\(model_1/a_1/Relu\)"):
        Settings.from_query(s.to_query(), layers=lambda: LAYERS[1:])
    with pytest.raises(InputError, match=r"names no sample"):
        Settings.from_query(params)
    for bad in ("int8-9", "int8--1", "int8-x", "int9-0"):
        with pytest.raises(InputError):
            Settings.from_query({"fl": params["fl"].split("~")[0] + "~" + bad}, layers=lambda: LAYERS)

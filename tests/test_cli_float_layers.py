"""The CLI keeps layers in float as the app does: a variant found on the Layers page is rebuilt from a shell, byte
for byte, and a layer the model does not have is a one-line error (exit 2), never a silent plain int8."""

from __future__ import annotations

import json

import pytest

from outlier import write_outlier
from quant_core.builders import graph_layers
from quant_core.compare import CompareOptions, Workbench
from quant_core.modes import Backend, Mode
from quant_core.recipe import Recipe
from test_cli import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def outlier(tmp_path_factory):
    """The outlier model (conv_b breaks int8), its labelled images, and its float graph's layers."""
    root = tmp_path_factory.mktemp("outlier")
    model, images, labels = write_outlier(root)
    bench = Workbench.open(model, images, options=CompareOptions(measure_latency=False))
    return model, root / "images", labels, bench


def conv_b(bench: Workbench) -> str:
    """conv_b's output tensor in the float graph (what the Layers page names and a recipe keeps)."""
    return next(t for t in graph_layers(bench.source.float_tflite) if "/conv_b_1/" in t)


@pytest.mark.parametrize("backend", [Backend.TF_CONVERTER, Backend.LITERT_QUANTIZER])
def test_quantize_keeps_a_keras_layer_in_float_with_the_bytes_the_app_builds(outlier, tmp_path, backend):
    model, images, _, bench = outlier
    out = tmp_path / "kept.tflite"
    proc = run_cli("quantize", model, "--mode", "int8", "--images", images, "--backend", backend.value,
                   "--float-layers", "conv_b", "-o", out, cache_dir=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    recipe = json.loads(out.with_suffix(".recipe.json").read_text())["recipe"]
    assert recipe["float_layers"] == [conv_b(bench)]
    app = bench.build(Recipe(Mode.INT8, backend=backend, float_layers=(conv_b(bench),))).model
    assert out.read_bytes() == app
    assert out.read_bytes() != bench.build(Recipe(Mode.INT8, backend=backend)).model


def test_compare_adds_the_float_layer_variant_beside_the_modes(outlier, tmp_path):
    model, images, labels, bench = outlier
    report = tmp_path / "report.json"
    proc = run_cli("compare", model, "--images", images, "--labels", labels, "--modes", "float32,int8",
                   "--float-layers", f"fc,{conv_b(bench)}", "--no-latency", "--report-json", report,
                   cache_dir=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    variants = {v["name"]: v for v in json.loads(report.read_text())["variants"]}
    assert list(variants) == ["float32", "int8", "int8+2float"]
    kept = variants["int8+2float"]
    assert kept["status"] == "ok" and kept["recipe"]["mode"] == "int8"
    assert sorted(kept["recipe"]["float_layers"]) == sorted([conv_b(bench), next(
        t for t in graph_layers(bench.source.float_tflite) if "/fc_1/" in t)])
    assert kept["accuracy"] > variants["int8"]["accuracy"]  # conv_b is the layer that breaks int8


@pytest.mark.parametrize("command,extra,pattern", [
    ("quantize", ["--mode", "int8", "--float-layers", "conv_b,conv_z"], r"no layer named conv_z in this model; "
                                                                         r"its layers include conv_a, conv_b"),
    ("compare", ["--float-layers", "nope/Relu"], r"no layer named nope/Relu"),
    ("compare", ["--float-layers", "conv_b", "--float-layers-mode", "float16"], r"float16 quantizes no activations"),
    ("quantize", ["--mode", "dynamic_range", "--float-layers", "conv_b"], r"dynamic_range quantizes no activations"),
    ("compare", ["--float-layers-mode", "int16x8"], r"give --float-layers too"),
    ("compare", ["--float-layers", ","], r"at least one layer name"),
])
def test_a_layer_the_model_does_not_have_is_a_one_line_error(outlier, tmp_path, command, extra, pattern):
    model, images, _, _ = outlier
    output = ["-o", tmp_path / "x.tflite"] if command == "quantize" else []
    proc = run_cli(command, model, "--images", images, *extra, *output, cache_dir=tmp_path / "cache")
    assert_one_line_error(proc, pattern)
    assert not (tmp_path / "x.tflite").exists()

"""Per-layer error as Model Explorer node data: the format of ai-edge-model-explorer's own data classes, keys that
its TFLite adapters resolve to the op each layer measured, and the outlier model's broken layer painted red.

Model: the outlier model (tests/outlier.py), whose conv_b int8 ruins; three calibrated variants of it, one with
QUANTIZE/DEQUANTIZE ops the report does not measure (int8 with float I/O).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from conftest import CLASSES
from hostile import edit_tflite
from outlier import write_outlier
from quant_core import Backend, CompareOptions, InputError, Mode, Recipe
from quant_core.cache import ArtifactCache
from quant_core.compare import Workbench, float_tflite
from quant_core.explorer import LEGEND, WORST, node_data, node_data_json
from quant_core.inputs.tflite_info import plain_interpreter
from quant_core.layers import LayerReport

NOT_INSTALLED = ("ai-edge-model-explorer is not installed (pip install ai-edge-model-explorer==0.1.34): its own "
                 "data classes and TFLite adapters are what check the file here")
VARIANTS = [(Mode.INT8, None), (Mode.INT8_FLOAT_IO, None), (Mode.INT8, Backend.LITERT_QUANTIZER)]
Variant = tuple[LayerReport, bytes]


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Workbench:
    path, images, _ = write_outlier(tmp_path_factory.mktemp("explorer-outlier"))
    return Workbench.open(path, images, class_names=CLASSES, options=CompareOptions(measure_latency=False),
                          cache=ArtifactCache(tmp_path_factory.mktemp("explorer-cache")))


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda v: f"{v[0].value}-{v[1].value if v[1] else 'default'}")
def variant(request, bench) -> Variant:
    """A calibrated variant's layer report and its .tflite."""
    recipe = Recipe(request.param[0], backend=request.param[1])
    return bench.layer_report(recipe), bench.build(recipe).model


def painted(data: dict, key: str) -> str | None:
    """The colour Model Explorer paints a node with: the first threshold at or above its value (None: unpainted)."""
    value = data["results"][key]["value"]
    return next((t["bgColor"] for t in data["thresholds"] if value <= t["value"]), None)


def interpreter_ops(model: bytes) -> tuple[list[tuple[str, str]], list[str]]:
    """(op name, first output's name) of every op by index, as the LiteRT interpreter lists them; every tensor name."""
    interp = plain_interpreter(model)
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()  # pylint: disable=protected-access
    return [(op["op_name"], names[op["outputs"][0]]) for op in ops], list(names.values())


def the_op(key: str, model: bytes) -> tuple[str, str]:
    """The (op, output name) a key names, resolved as Model Explorer does: a unique tensor name, else a node id."""
    ops, names = interpreter_ops(model)
    if key in names:
        assert names.count(key) == 1
        return next(op for op in ops if op[1] == key)
    return ops[int(key)]


def test_the_broken_layer_is_painted_red_and_the_one_before_it_green(variant):
    report, model = variant
    data = node_data(report, model=model)
    worst = report.worst(1)[0]
    assert "/conv_b" in worst.tensor and data["results"][worst.tensor]["value"] > 40  # % of the signal it adds
    assert painted(data, worst.tensor) == WORST
    assert painted(data, report.layers[0].tensor) in (LEGEND[0][1], LEGEND[1][1])  # conv_a: under 1%
    assert all(painted(data, key) is not None for key in data["results"])  # every measured layer has a colour
    assert data["name"] == f"{report.variant}: error added per layer, % of the signal (RMS)"


def test_each_key_names_the_op_its_layer_measured_with_its_added_error(variant):
    report, model = variant
    data = node_data(report, model=model)
    assert len(data["results"]) == len(report.layers)
    for key, layer in zip(data["results"], report.layers):
        assert the_op(key, model) == (layer.op, layer.tensor)
        assert data["results"][key]["value"] == pytest.approx(100 * layer.added, abs=0.05)
    ops, _ = interpreter_ops(model)
    unmeasured = {name for op, name in ops if op in ("QUANTIZE", "DEQUANTIZE")}
    assert not unmeasured & set(data["results"])
    assert bool(unmeasured) == (report.variant == Recipe(Mode.INT8_FLOAT_IO).name)  # float I/O: left unpainted


def test_the_file_has_the_documented_shape(variant):
    """GraphNodeData as node_data_builder.py defines it, without the package: name, results of {value}, thresholds."""
    report, model = variant
    data = json.loads(node_data_json(report, model=model))
    assert set(data) == {"name", "results", "thresholds"}
    assert all(set(r) == {"value"} and isinstance(r["value"], float) for r in data["results"].values())
    levels = [t["value"] for t in data["thresholds"]]
    assert levels == sorted(levels) and levels[-1] >= max(r["value"] for r in data["results"].values())
    assert all(set(t) == {"value", "bgColor"} and len(t["bgColor"]) == 7 for t in data["thresholds"])


def test_without_the_model_the_keys_are_the_tensor_names_with_the_same_values(variant):
    report, model = variant
    assert node_data(report) == node_data(report, model=model)  # the outlier model's tensor names are unique
    assert json.loads(node_data_json(report)) == node_data(report)


def test_the_file_is_model_explorers_own_graph_node_data(variant):
    builder = pytest.importorskip("model_explorer.node_data_builder", reason=NOT_INSTALLED)
    import dacite

    report, model = variant
    data = json.loads(node_data_json(report, model=model))
    typed = dacite.from_dict(builder.GraphNodeData, data, config=dacite.Config(strict=True))  # no unknown field
    assert all(isinstance(r, builder.NodeDataResult) for r in typed.results.values())
    assert all(isinstance(t, builder.ThresholdItem) for t in typed.thresholds) and not typed.gradient
    written = json.loads(typed.to_json_string())  # what the package writes: the same, plus its defaults
    assert {key: written[key] for key in data} == data


@pytest.mark.parametrize("adapter", ["builtin_tflite_flatbuffer_adapter", "builtin_tflite_mlir_adapter"])
def test_model_explorers_tflite_adapters_resolve_every_key_to_its_layers_op(variant, adapter, tmp_path):
    report, model = variant
    path = tmp_path / "variant.tflite"
    path.write_bytes(model)
    graph = adapter_graph(adapter, path)
    data = node_data(report, model=model)
    for key, layer in zip(data["results"], report.layers):
        node = graph[resolve(graph, key)]
        assert node["label"] == layer.op.lower()
        assert output_names(node)[0] == layer.tensor


def test_a_tensor_name_the_graph_repeats_is_keyed_by_the_default_adapters_node_id(variant):
    report, model = variant
    conv_a = report.layers[0]
    edited = renamed_weight(model, report)
    data = node_data(report, model=edited)
    ops, _ = interpreter_ops(edited)
    key = str(next(k for k, op in enumerate(ops) if op == (conv_a.op, conv_a.tensor)))
    assert next(iter(data["results"])) == key and conv_a.tensor not in data["results"]
    assert list(data["results"])[1:] == [layer.tensor for layer in report.layers[1:]]


def test_model_explorer_paints_the_op_not_the_weight_that_shares_its_name(variant, tmp_path):
    report, model = variant
    conv_a = report.layers[0]
    path = tmp_path / "renamed.tflite"
    path.write_bytes(renamed_weight(model, report))
    graph = adapter_graph("builtin_tflite_flatbuffer_adapter", path)
    key = next(iter(node_data(report, model=path.read_bytes())["results"]))
    assert graph[resolve(graph, key)]["label"] == conv_a.op.lower()
    assert resolve(graph, conv_a.tensor) != resolve(graph, key)  # the name alone paints the weight's node


def test_the_float_models_graph_can_carry_the_variants_error(bench, variant):
    report, _ = variant
    reference = float_tflite(bench.source, bench.cache)
    data = node_data(report, model=reference)
    for key, layer in zip(data["results"], report.layers):
        assert the_op(key, reference) == (layer.op, layer.tensor)


def test_a_report_it_cannot_map_is_refused_in_one_line(variant):
    report, model = variant
    stranger = dataclasses.replace(report.layers[1], tensor="other_model/conv/Relu")
    cases = [
        (dataclasses.replace(report, layers=(report.layers[0], stranger)), model, "is not an op of this model"),
        (dataclasses.replace(report, layers=tuple(reversed(report.layers))), model, "in that order"),
        (dataclasses.replace(report, layers=()), model, "has no layers: nothing to colour"),
        (report, b"not a model at all", "not a TFLite flatbuffer"),
    ]
    for bad_report, bad_model, message in cases:
        with pytest.raises(InputError, match=message) as err:
            node_data(bad_report, model=bad_model)
        assert "\n" not in str(err.value)


def renamed_weight(model: bytes, report: LayerReport) -> bytes:
    """The model with the second layer's weights named as the first layer's output: a name the graph then repeats,
    on a node Model Explorer lists after the first layer's."""
    first, second = report.layers[0].tensor, report.layers[1].tensor

    def rename(tree) -> None:
        graph = tree.subgraphs[0]
        op = next(o for o in graph.operators if graph.tensors[o.outputs[0]].name.decode() == second)
        graph.tensors[op.inputs[1]].name = first.encode()

    return edit_tflite(model, rename)


def adapter_graph(adapter: str, path: Path) -> dict[str, dict]:
    """The main graph's nodes by id, as one of Model Explorer's TFLite adapters builds it."""
    module = pytest.importorskip(f"model_explorer.{adapter}", reason=NOT_INSTALLED)
    cls = next(v for k, v in vars(module).items() if k.startswith("BuiltinTflite") and k.endswith("Adapter"))
    collections = cls().convert(str(path), {})["graphCollections"]
    return {node["id"]: node for node in collections[0].graphs[0]["nodes"]}


def output_names(node: dict) -> list[str]:
    return [a["value"] for m in node["outputsMetadata"] for a in m["attrs"] if a["key"] == "tensor_name"]


def resolve(graph: dict[str, dict], key: str) -> str:
    """The node a result key paints, as Model Explorer's UI resolves it: a tensor name of a node's outputs (the last
    such node), else the key itself as a node id (node_data_provider_extension_service.ts)."""
    by_tensor = {name: node_id for node_id, node in graph.items() for name in output_names(node)}
    node_id = by_tensor.get(key, key)
    assert node_id in graph, key
    return node_id

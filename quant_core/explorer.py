"""A variant's per-layer error as node data for Google's Model Explorer, so its graph opens coloured by error.

Model Explorer (`pip install ai-edge-model-explorer`) opens a .tflite and overlays "node data":
a JSON file of one number per node and a colour legend. The format is that of its
`model_explorer/node_data_builder.py` (`GraphNodeData`, `NodeDataResult`, `ThresholdItem`):
`{"name": ..., "results": {key: {"value": number}}, "thresholds": [{"value": v, "bgColor": c}, ...]}`.
A node is painted with the colour of the first threshold whose value is at least the node's;
a node above the last threshold stays unpainted. A file of that shape applies to the graph on
screen (a file keyed by graph ids, `ModelNodeData`, would have to match the graph's id, which
differs between Model Explorer's two TFLite adapters).

A key is one of a node's output tensor names (the UI looks up the `tensor_name` in each node's
outputs metadata) or a node id. Tensor names are the layers' own names in quant_core, and both
TFLite adapters ("Flatbuffer", the default, and "MLIR") put them on their nodes; node ids are
the adapter's own numbering (the default numbers a subgraph's operators "0", "1", ... in file
order, the MLIR one numbers constants among them). So layers are keyed by tensor name, and by
the default adapter's node id only where the tensor's name is not unique in the graph.

The value is the layer's `added` (quant_core.layers): the error the layer itself adds, in % of
the signal's RMS, one decimal, as the Layers page shows it. It is the number the Layers page
ranks layers by ("keep it in float"), and along the output's path the layers' values add up to
the output's error. It is negative where a layer evens noise out (pooling, a softmax).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from ai_edge_litert import schema_py_generated as schema

from quant_core.errors import InputError
from quant_core.inputs.tflite_info import check_structure
from quant_core.layers import LayerReport

# The legend, in % of the signal's RMS added by a layer, from green to red; as noise-to-signal ratios,
# 1% is about 40 dB SQNR, 5% about 26 dB and 20% about 14 dB. Absolute levels rather than a gradient,
# which Model Explorer stretches from the smallest value to the largest: then every variant's worst
# layer would look alike, however little it adds.
LEGEND: tuple[tuple[float, str], ...] = (
    (0.0, "#1e8e3e"),  # adds nothing, or evens noise out
    (1.0, "#a8dab5"),  # rounding-level noise
    (5.0, "#fdd663"),  # noticeable
    (20.0, "#f29900"),  # worth keeping in float
)
WORST = "#d93025"  # above the last level, up to 100% or the largest value: every measured layer is painted
_BUILTIN_OPS = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def node_data(report: LayerReport, *, model: bytes | None = None) -> dict[str, Any]:
    """One variant's per-layer error as Model Explorer node data (a JSON-ready `GraphNodeData` dict).

    Every layer the report measured gets its `added` error in %; QUANTIZE/DEQUANTIZE and other
    ops the report does not measure stay unpainted. Open the variant's .tflite in Model Explorer,
    then load the file (`node_data_json`) as node data.

    Args:
        report: the variant's per-layer error (`Workbench.layer_report`).
        model: the .tflite that will be opened: the variant's own file (the float model works
            too: its layers carry the same tensor names). With it, every layer is checked to be an
            op of the model, and a layer whose tensor name is not unique there is keyed by node id.

    Raises:
        InputError: a report without layers, a model that is not a readable .tflite, or a layer the
            model does not have (a report of another model).
    """
    if not report.layers:
        raise InputError(f"the layer report of {report.variant} has no layers: nothing to colour in Model Explorer")
    keys = [layer.tensor for layer in report.layers] if model is None else _keys(report, model)
    results = {key: {"value": round(layer.added * 100, 1) + 0.0} for key, layer in zip(keys, report.layers)}
    top = max([100.0, *(result["value"] for result in results.values())])
    thresholds = [{"value": value, "bgColor": colour} for value, colour in LEGEND] + [{"value": top, "bgColor": WORST}]
    return {"name": f"{report.variant}: error added per layer, % of the signal (RMS)", "results": results,
            "thresholds": thresholds}


def node_data_json(report: LayerReport, *, model: bytes | None = None) -> bytes:
    """`node_data` as the JSON file Model Explorer loads (its node data panel, or
    `model_explorer.config().add_node_data_from_path`).

    Raises:
        InputError: as `node_data`.
    """
    return json.dumps(node_data(report, model=model), indent=2).encode("utf-8")


def _keys(report: LayerReport, model: bytes) -> list[str]:
    """Each layer's key: its tensor's name, or its op's node id where another tensor of the graph has that name.

    The layers come in execution order, which is the operators' order in the file: each is
    looked for after the previous one's op.
    """
    ops, names = _main_graph(model)
    keys: list[str] = []
    start = 0
    for layer in report.layers:
        index = next((k for k in range(start, len(ops)) if ops[k] == (layer.op, layer.tensor)), None)
        if index is None:
            raise InputError(f"layer {layer.position} of {report.variant} ({layer.op} writing '{layer.tensor}') is "
                             "not an op of this model, in that order; expected the .tflite the report was measured "
                             "on (the variant's own file)")
        keys.append(layer.tensor if names[layer.tensor] == 1 else str(index))
        start = index + 1
    return keys


def _main_graph(model: bytes) -> tuple[list[tuple[str, str]], Counter[str]]:
    """(op name, first output's name) of each operator of subgraph 0 in file order, and how often each tensor name
    occurs there."""
    check_structure(model, name="the model")
    root = schema.Model.GetRootAs(bytes(model), 0)
    graph = root.Subgraphs(0)
    codes = [_op_name(root.OperatorCodes(c)) for c in range(root.OperatorCodesLength())]
    tensors = [(graph.Tensors(t).Name() or b"").decode("utf-8") for t in range(graph.TensorsLength())]
    ops = []
    for o in range(graph.OperatorsLength()):
        op = graph.Operators(o)
        first = int(op.Outputs(0)) if op.OutputsLength() else -1
        ops.append((codes[op.OpcodeIndex()], tensors[first] if first >= 0 else ""))
    return ops, Counter(tensors)


def _op_name(code: Any) -> str:
    """An operator code's name as the interpreter reports it: CONV_2D, or a custom op's own name."""
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    if builtin == schema.BuiltinOperator.CUSTOM:
        return (code.CustomCode() or b"").decode("utf-8")
    return _BUILTIN_OPS[builtin]

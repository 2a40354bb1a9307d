"""Refusing SavedModels whose serving graph could touch files, the network or Python.

The check reads saved_model.pb as data (protobuf) and walks every op reachable from the
`serving_default` signature, through function calls, before TensorFlow loads anything.
"""

from __future__ import annotations

from pathlib import Path

from quant_core import _quiet
from quant_core.errors import InputError, UnsafeModelError

# Ops that read or write files, call back into Python or talk to other processes.
UNSAFE_OPS = frozenset({
    "ReadFile", "WriteFile", "MatchingFiles", "DeleteFile", "PyFunc", "PyFuncStateless", "EagerPyFunc",
    "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice", "MergeV2Checkpoints",
    "ShardedFilename", "ImmutableConst", "PrintV2", "CreateSummaryFileWriter", "WriteSummary",
    "WriteScalarSummary", "WriteImageSummary", "WriteRawProtoSummary", "DatasetToTFRecord",
    "TextLineDataset", "TextLineDatasetV2", "TFRecordDataset", "TFRecordDatasetV2",
    "FixedLengthRecordDataset", "FixedLengthRecordDatasetV2", "LoadAndRemapMatrix",
    "InitializeTableFromTextFile", "InitializeTableFromTextFileV2", "_Send", "_Recv", "_HostSend",
    "_HostRecv", "RemoteCall", "CollectiveReduce", "CollectiveBcastSend", "CollectiveBcastRecv",
    "DebugIdentityV2", "DebugIdentityV3", "SnapshotDatasetV2", "SaveDataset", "SaveDatasetV2",
})


def check_saved_model(folder: Path, *, name: str) -> None:
    """Raises UnsafeModelError naming the first unsafe op reachable from serving_default."""
    _quiet.silence_tf_logging()
    from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=import-outside-toplevel

    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((folder / "saved_model.pb").read_bytes())
    except Exception:  # noqa: BLE001 - protobuf raises DecodeError and others for garbage.
        raise InputError(f"{name}: saved_model.pb is not a valid SavedModel") from None
    if len(proto.meta_graphs) != 1:
        raise InputError(f"{name}: expected one meta graph, found {len(proto.meta_graphs)}")
    meta = proto.meta_graphs[0]
    if "serving_default" not in meta.signature_def:
        raise InputError(f"{name}: the SavedModel has no 'serving_default' signature")
    for op in reachable_ops(meta, "serving_default"):
        if op in UNSAFE_OPS:
            raise UnsafeModelError(
                f"{name}: the serving graph contains the op {op}, which can touch files, the network or "
                "Python; refused before running anything"
            )


def reachable_ops(meta, signature: str) -> set[str]:
    """Op types reachable from a signature's outputs, following inputs and function calls."""
    graph = meta.graph_def
    nodes = {n.name: n for n in graph.node}
    functions = {f.signature.name: f for f in graph.library.function}
    seen_nodes: set[str] = set()
    seen_funcs: set[str] = set()
    ops: set[str] = set()
    stack = [t.name.split(":")[0].lstrip("^") for t in meta.signature_def[signature].outputs.values()]
    while stack:
        node = nodes.get(stack.pop())
        if node is None or node.name in seen_nodes:
            continue
        seen_nodes.add(node.name)
        ops.add(node.op)
        stack.extend(i.split(":")[0].lstrip("^") for i in node.input)
        _visit_functions([*_called(node), node.op], functions, seen_funcs, ops)
    return ops


def _visit_functions(names: list[str], functions: dict, seen: set[str], ops: set[str]) -> None:
    """Adds all ops of the named functions and the functions they call."""
    pending = list(names)
    while pending:
        name = pending.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        for node in functions[name].node_def:
            ops.add(node.op)
            pending.extend([*_called(node), node.op])


def _called(node) -> list[str]:
    """Names of functions a node refers to (attrs of type func or list of func), and its op."""
    names = []
    for attr in node.attr.values():
        if attr.HasField("func"):
            names.append(attr.func.name)
        names.extend(f.name for f in attr.list.func)
    return names

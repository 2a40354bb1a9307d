"""A corpus of hostile and broken inputs, generated on the spot (never downloaded).

Each entry is (file name, bytes, kind, expected message fragment), kind being "model"
(used with valid images) or "images" (used with the valid tiny model).
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from PIL import Image


def _zip(entries: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def _png(size=(8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "red").save(buf, format="PNG")
    return buf.getvalue()


def _png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header declaring 10 gigapixels, with almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def _keras_models(tmp: Path) -> list[tuple[str, bytes, str, str]]:
    import keras

    out = []
    inputs = keras.Input((16, 16, 3))
    lam = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(
        keras.layers.Lambda(lambda t: t * 2.0)(inputs))))
    for suffix in (".keras", ".h5"):
        path = tmp / f"lambda{suffix}"
        lam.save(path)
        out.append((path.name, path.read_bytes(), "model", "Lambda layer"))
    a, b = keras.Input((16, 16, 3)), keras.Input((16, 16, 3))
    two = keras.Model([a, b], keras.layers.Dense(3)(keras.layers.Flatten()(keras.layers.Add()([a, b]))))
    path = tmp / "two_inputs.keras"
    two.save(path)
    out.append((path.name, path.read_bytes(), "model", "2 inputs"))
    return out


def _reader_saved_model(tmp: Path) -> bytes:
    import tensorflow as tf

    class Reader(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 16, 16, 3], tf.float32)])
        def serve(self, x):
            leak = tf.strings.length(tf.io.read_file("/etc/hostname"))
            return {"scores": tf.reduce_mean(x, axis=[1, 2]) + tf.cast(leak, tf.float32)}

    module = Reader()
    folder = tmp / "reader"
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return _zip({f"reader/{p.relative_to(folder).as_posix()}": p.read_bytes()
                 for p in folder.rglob("*") if p.is_file()})


def corpus(tmp: Path, valid_tflite: bytes) -> list[tuple[str, bytes, str, str]]:
    """Every hostile input with its expected one-line message fragment."""
    bomb = _zip({"model/saved_model.pb": b"\0" * (60 * 1024 * 1024)})
    return [
        *_keras_models(tmp),
        ("garbage.keras", b"PK\x03\x04 not really a zip", "model", "not a valid .keras"),
        ("empty.h5", b"", "model", "cannot load the model"),
        ("truncated.tflite", valid_tflite[: len(valid_tflite) // 3], "model", "cannot load"),
        ("random.tflite", bytes(range(256)) * 8, "model", "cannot load"),
        ("slip.zip", _zip({"../../evil.txt": b"owned", "m/saved_model.pb": b"x"}), "model", "outside the archive"),
        ("absolute.zip", _zip({"/tmp/evil.txt": b"owned"}), "model", "outside the archive"),
        ("link.zip", _zip({"m/saved_model.pb": b"x"}, symlink="m/variables"), "model", "link or special file"),
        ("bomb.zip", bomb, "model", "zip bomb"),
        ("reader.zip", _reader_saved_model(tmp), "model", "ReadFile"),
        ("model.onnx", b"\x08\x07onnx", "model", "unsupported model file"),
        ("bomb.png", _png_bomb(), "images", "no usable images"),
        ("truncated.png", _png()[:40], "images", "no usable images"),
        ("empty.png", b"", "images", "no usable images"),
        ("text.png", b"hello, I am not an image", "images", "no usable images"),
        ("slip_images.zip", _zip({"../evil.png": _png()}), "images", "outside the archive"),
        ("bomb_images.zip", _zip({"a/big.png": b"\0" * (60 * 1024 * 1024)}), "images", "zip bomb"),
    ]


# ----------------------------------------------------------------------------- mutated .tflite files
# Each field the workbench (or a backend after it) reads from a .tflite, broken one way at a
# time in a real converted model: unpacked with TFLite's schema object API, edited, packed again.


def edit_tflite(model: bytes, edit) -> bytes:
    """The model with `edit(tree)` applied to its unpacked flatbuffer (`schema_py_generated.ModelT`), packed again."""
    import flatbuffers

    tree = schema.ModelT.InitFromPackedBuf(model, 0)
    edit(tree)
    builder = flatbuffers.Builder(1024)
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _graph(m):
    return m.subgraphs[0]


def _ints(*values):
    return np.array(values, np.int32)


def _op(m, name: str):
    """The first operator of the main graph running builtin `name`."""
    code = getattr(schema.BuiltinOperator, name)
    return next(op for op in _graph(m).operators
                if max(m.operatorCodes[op.opcodeIndex].builtinCode,
                       m.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode) == code)


def _weight(m):
    """Index of the main graph's largest constant float tensor (a weight matrix or kernel)."""
    sizes = {t: len(m.buffers[tensor.buffer].data) for t, tensor in enumerate(_graph(m).tensors)
             if tensor.type == schema.TensorType.FLOAT32 and m.buffers[tensor.buffer].data is not None}
    return max(sizes, key=sizes.get)


def _set(obj, **fields):
    for name, value in fields.items():
        setattr(obj, name, value)


def _input(m):
    return _graph(m).tensors[_graph(m).inputs[0]]


def _output(m):
    return _graph(m).tensors[_graph(m).outputs[0]]


def _quantize(m, scales, zero_points, dimension=0):
    params = schema.QuantizationParametersT()
    _set(params, scale=np.array(scales, np.float32), zeroPoint=np.array(zero_points, np.int64),
         quantizedDimension=dimension)
    _graph(m).tensors[_weight(m)].quantization = params


def _options(op, kind, table):
    _set(op, builtinOptionsType=kind, builtinOptions=table)


def _external_buffer(m):
    buffer = m.buffers[_graph(m).tensors[_weight(m)].buffer]
    _set(buffer, data=None, offset=10**9, size=len(buffer.data))


def _metadata(m, name, buffer):
    entry = schema.MetadataT()
    _set(entry, name=name, buffer=buffer)
    m.metadata = [*(m.metadata or []), entry]


def _mixes_batch(m):
    """Global average pooling over one axis only: each image then gives 16 rows of scores."""
    mean = _op(m, "MEAN")
    _set(_graph(m).tensors[mean.inputs[1]], shape=_ints(1))


# kind -> (edit, a fragment of the one-line refusal). The tiny model's ops: CONV_2D, DEPTHWISE_CONV_2D, MEAN,
# two FULLY_CONNECTED, SOFTMAX.
TFLITE_MUTATIONS = {
    # the main graph's input and output lists
    "outputs_empty": (lambda m: _set(_graph(m), outputs=_ints()), "got no output"),
    "outputs_absent": (lambda m: _set(_graph(m), outputs=None), "got no output"),
    "inputs_empty": (lambda m: _set(_graph(m), inputs=_ints()), "got no input"),
    "input_listed_twice": (lambda m: _set(_graph(m), inputs=_ints(_graph(m).inputs[0], _graph(m).inputs[0])),
                           "got 2 inputs"),
    "seventeen_outputs": (lambda m: _set(_graph(m), outputs=_ints(*[_graph(m).outputs[0]] * 17)),
                          "expected 1 to 16 outputs, got 17 outputs"),
    "output_index_past_end": (lambda m: _set(_graph(m), outputs=_ints(999)), "outputs name tensor 999"),
    "output_index_negative": (lambda m: _set(_graph(m), outputs=_ints(-1)), "outputs name tensor -1"),
    "input_index_past_end": (lambda m: _set(_graph(m), inputs=_ints(999)), "inputs name tensor 999"),
    "input_index_negative": (lambda m: _set(_graph(m), inputs=_ints(-1)), "inputs name tensor -1"),
    # tensors: shapes, types, names
    "input_shape_empty": (lambda m: _set(_input(m), shape=_ints(), shapeSignature=None), "input shape [] is not"),
    "output_shape_empty": (lambda m: _set(_output(m), shape=_ints(), shapeSignature=None),
                           "output shape [] is not one row"),
    "weight_shape_negative": (lambda m: _set(_graph(m).tensors[_weight(m)], shape=_ints(-96, 16)),
                              "expected sizes of 0 or more"),
    "input_shape_huge": (lambda m: _set(_input(m), shape=_ints(1, 2**30, 2**30, 3), shapeSignature=None),
                         "declares shape [1, 1073741824, 1073741824, 3]"),
    "input_image_too_large": (lambda m: _set(_input(m), shape=_ints(1, 8192, 8192, 3), shapeSignature=None),
                              "at most 4096x4096 pixels"),
    "shape_signature_of_another_rank": (lambda m: _set(_input(m), shapeSignature=_ints(-1, 16)), "shape signature"),
    "tensor_type_unknown": (lambda m: _set(_graph(m).tensors[_weight(m)], type=99), "has type 99"),
    "tensor_name_not_utf8": (lambda m: _set(_input(m), name=b"image\xff\xfe"), "is not UTF-8 text"),
    # buffers and metadata
    "buffer_index_past_end": (lambda m: _set(_graph(m).tensors[_weight(m)], buffer=9999), "uses buffer 9999"),
    "buffer_too_short": (lambda m: _set(m.buffers[_graph(m).tensors[_weight(m)].buffer],
                                        data=m.buffers[_graph(m).tensors[_weight(m)].buffer].data[:100]),
                         "bytes of constant data; its buffer"),
    "buffer_outside_the_file": (_external_buffer, "past the end of the"),
    "buffers_absent": (lambda m: _set(m, buffers=[]), "the model has 0 buffers"),
    "metadata_buffer_past_end": (lambda m: _metadata(m, "notes", 9999), "metadata points at buffer 9999"),
    "metadata_without_name": (lambda m: _metadata(m, None, 0), "has no name"),
    # quantization parameters
    "quantization_counts_differ": (lambda m: _quantize(m, [], [3, 4]), "expected as many of each"),
    "quantized_dimension_past_rank": (lambda m: _quantize(m, [0.1] * 3, [0] * 3, dimension=7),
                                      "expected an existing dimension"),
    # operator codes and options
    "opcode_index_past_end": (lambda m: _set(_graph(m).operators[0], opcodeIndex=999), "uses operator code 999"),
    "builtin_code_unknown": (lambda m: _set(m.operatorCodes[0], builtinCode=250, deprecatedBuiltinCode=127),
                             "names builtin op 250"),
    "opcodes_absent": (lambda m: _set(m, operatorCodes=[]), "uses operator code 0; the model has 0"),
    "options_type_unknown": (lambda m: _options(_op(m, "SOFTMAX"), 127, None), "builtin options of type 127"),
    "options_table_missing": (lambda m: _options(_op(m, "SOFTMAX"), schema.BuiltinOptions.SoftmaxOptions, None),
                              "holds none"),
    "fully_connected_without_options": (lambda m: _options(_op(m, "FULLY_CONNECTED"), 0, None),
                                        "(FULLY_CONNECTED) has options of type 0"),
    "fully_connected_with_conv_options": (lambda m: _options(_op(m, "FULLY_CONNECTED"),
                                                             schema.BuiltinOptions.Conv2DOptions,
                                                             schema.Conv2DOptionsT()), "expected its own options"),
    # operators' tensor indices
    "op_input_past_end": (lambda m: _set(_graph(m).operators[0], inputs=_ints(0, 999, 2)), "inputs name tensor 999"),
    "op_input_negative": (lambda m: _set(_graph(m).operators[0], inputs=_ints(0, -5, 2)), "inputs name tensor -5"),
    "op_output_past_end": (lambda m: _set(_op(m, "SOFTMAX"), outputs=_ints(999)), "outputs name tensor 999"),
    "intermediates_past_end": (lambda m: _set(_graph(m).operators[0], intermediates=_ints(999)),
                               "intermediates name tensor 999"),
    "operators_absent": (lambda m: _set(_graph(m), operators=[]), "is computed by no operator"),
    # subgraphs, signatures, schema
    "subgraphs_absent": (lambda m: _set(m, subgraphs=None, signatureDefs=None), "the model has no subgraph"),
    "subgraphs_empty": (lambda m: _set(m, subgraphs=[], signatureDefs=None), "the model has no subgraph"),
    "signature_tensor_past_end": (lambda m: _set(m.signatureDefs[0].outputs[0], tensorIndex=999),
                                  "signature 0's inputs and outputs name tensor 999"),
    "signature_subgraph_past_end": (lambda m: _set(m.signatureDefs[0], subgraphIndex=7), "names subgraph 7"),
    "schema_version": (lambda m: _set(m, version=99), "schema version 99"),
}
# Faults that only show when the model runs (inspect loads the model but runs no image).
RUNTIME_MUTATIONS = {"batch_mixed": (_mixes_batch, "output rows for 24 images")}

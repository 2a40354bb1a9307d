"""The bare backends and interpreter quant_core is compared against: TFLiteConverter, LiteRT Quantizer, Interpreter.

Each is configured with the same settings quant_core uses for a mode (FIELD_NOTES documents
them), so a difference in time or bytes is quant_core's own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from engine_models import load_keras
from quant_core import Mode, _quiet


def bare_tf_convert(kmodel: Any, mode: Mode, data: np.ndarray | None) -> bytes:
    """The bare TFLiteConverter with the settings FIELD_NOTES documents for each mode."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(kmodel)
    conv.exclude_conversion_metadata = True  # quant_core sets this too (bytes depend on the model only)
    if mode is not Mode.FLOAT32:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode is Mode.FLOAT16:
        conv.target_spec.supported_types = [tf.float16]
    if data is not None:
        def rep():
            for i in range(len(data)):
                yield [data[i : i + 1]]
        conv.representative_dataset = rep
    if mode is Mode.INT8:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    if mode is Mode.INT16X8:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    with _quiet.stdout_to_stderr():
        return bytes(conv.convert())


def bare_keras_float(path: Path) -> bytes:
    """What quant_core does at load, done bare: `keras.saving.load_model` + `from_keras_model(...).convert()`."""
    return bare_tf_convert(load_keras(path), Mode.FLOAT32, None)


def bare_litert(float_tflite: bytes, mode: Mode, data: np.ndarray | None) -> bytes:
    """The bare LiteRT Quantizer, configured with the same calls and arguments as quant_core."""
    from litert_quantizer import Quantizer, qtyping
    from litert_quantizer.algorithm_manager import AlgorithmName

    ops = qtyping.TFLOperationName.ALL_SUPPORTED
    channelwise = qtyping.QuantGranularity.CHANNELWISE
    q = Quantizer(float_tflite)
    configure: dict[Mode, Callable[[], Any]] = {
        Mode.WEIGHT_ONLY: lambda: q.add_weight_only_config(regex=".*", operation_name=ops, num_bits=8,
                                                           granularity=channelwise),
        Mode.DYNAMIC_RANGE: lambda: q.add_dynamic_config(regex=".*", operation_name=ops, num_bits=8,
                                                         granularity=channelwise),
        Mode.FLOAT16: lambda: q.add_weight_only_config(regex=".*", operation_name=ops, num_bits=16,
                                                       algorithm_key=AlgorithmName.FLOAT_CASTING),
        Mode.INT8: lambda: q.add_static_config(regex=".*", operation_name=ops, activation_num_bits=8,
                                               weight_num_bits=8, weight_granularity=channelwise),
        Mode.INT16X8: lambda: q.add_static_config(regex=".*", operation_name=ops, activation_num_bits=16,
                                                  weight_num_bits=8, weight_granularity=channelwise),
    }
    if mode not in configure:
        raise ValueError(f"expected a mode the LiteRT Quantizer builds ({', '.join(configure)}), got {mode}")
    configure[mode]()
    result = None
    with _quiet.stdout_to_stderr():
        if q.need_calibration:
            assert data is not None
            signatures = Interpreter(model_content=float_tflite).get_signature_list()
            key = next(iter(signatures))
            name = signatures[key]["inputs"][0]
            result = q.calibrate({key: [{name: data[i : i + 1]} for i in range(len(data))]},
                                 num_threads=os.cpu_count() or 1)
        return bytes(q.quantize(result, enable_progress_bar=False, enable_progress_report=False).quantized_model)


class BareInterpreterLoop:
    """The plain batched interpreter loop: resize to the batch (and to a shorter tail), set, invoke, get.

    Quantized inputs and outputs are converted with the tensors' scale and zero point, as
    TFLiteRunner does, so both return the same floats.
    """

    def __init__(self, model: bytes, *, threads: int, batch: int) -> None:
        self._interp = Interpreter(model_content=model, num_threads=threads)
        self._batch = batch
        self._size = 0
        self._io: tuple[dict, dict] = ({}, {})
        self._resize(batch)

    def _resize(self, n: int) -> tuple[dict, dict]:
        """Input and output details at batch size `n`, resizing and reallocating on a change."""
        if self._size != n:
            inp = self._interp.get_input_details()[0]
            self._interp.resize_tensor_input(inp["index"], [n, *inp["shape"][1:]], strict=False)
            self._interp.allocate_tensors()
            self._size = n
            self._io = (self._interp.get_input_details()[0], self._interp.get_output_details()[0])
        return self._io

    def __call__(self, batch_all: np.ndarray) -> np.ndarray:
        outs = []
        for i in range(0, len(batch_all), self._batch):
            b = batch_all[i : i + self._batch]
            inp, out = self._resize(len(b))
            in_dtype = np.dtype(inp["dtype"])
            if in_dtype.kind in "iu":
                scale, zero = inp["quantization"]
                lim = np.iinfo(in_dtype)
                b = np.clip(np.round(b / scale + zero), lim.min, lim.max).astype(in_dtype)
            self._interp.set_tensor(inp["index"], b)
            self._interp.invoke()
            o = self._interp.get_tensor(out["index"])
            if o.dtype.kind in "iu":
                o = (o.astype(np.float32) - out["quantization"][1]) * out["quantization"][0]
            outs.append(o.astype(np.float32))
        return np.concatenate(outs)

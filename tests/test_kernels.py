"""Each variant on the kernels other targets run (quant_core.kernels), carried by the comparison: the builtin kernels
without XNNPACK for every variant, TFLite Micro for integer-only ones; the integer-only verdict reads those numbers
and says whether TFLite Micro's measured arena fits a microcontroller budget; the JSON report and the CLI carry them."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from conftest import REPO
from quant_core import ArtifactCache, CompareOptions, CompareRequest, CompareResult, Mode, Recipe, run_compare
from quant_core.micro import KB, MB, Budget
from quant_core.results.report import kernel_lines, report_dict
from quant_core.results.verdict import Target, decide

MODEL = REPO / "sample_models" / "digits_cnn.keras"
IMAGES = REPO / "sample_models" / "digits_images"


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> CompareResult:
    options = CompareOptions(recipes=(Recipe(Mode.FLOAT32), Recipe(Mode.INT8), Recipe(Mode.DYNAMIC_RANGE)),
                             measure_latency=False)
    return run_compare(CompareRequest(str(MODEL), (str(IMAGES),), None, options),
                       cache=ArtifactCache(tmp_path_factory.mktemp("kernels-cache")))


def test_every_variant_is_run_on_the_builtin_kernels_and_the_integer_one_in_tflite_micro(digits):
    for v in digits.variants:
        k = v.kernels
        assert k is not None and not k.error, v.name
        assert k.reference_agreement is not None and 0.9 <= k.reference_agreement <= 1.0, v.name
        assert 0.0 <= k.reference_max_diff < 0.05, (v.name, k.reference_max_diff)  # probabilities: close
    assert digits.variant("float32").kernels.micro is None and digits.variant("dynamic_range").kernels.micro is None
    int8 = digits.variant("int8")
    m = int8.kernels.micro
    assert m is not None and m.ran and m.missing_ops == () and m.interpreter.startswith("tflite-micro ")
    assert m.flash_bytes == int8.size_bytes and 1 * KB < (m.arena_bytes or 0) < 256 * KB
    assert m.agreement is not None and m.agreement >= 0.9
    assert m.max_steps is not None and m.max_steps <= 3  # int8 output steps from XNNPACK's
    assert int8.kernels.integer_agreement == m.agreement


def test_the_integer_only_pick_reads_tflite_micros_numbers_and_the_budget(digits):
    pick = decide(digits).pick(Target.INTEGER)
    assert pick.variant == "int8"
    assert "Measured in TFLite Micro" in pick.reason and "Fits a 512 KB RAM / 2 MB flash microcontroller" in pick.reason
    tight = decide(digits, budget=Budget(1 * KB, 1 * MB)).pick(Target.INTEGER)
    assert "Does not fit a 1 KB RAM / 1 MB flash microcontroller: the tensor arena needs" in tight.reason
    # The same variant, as if TFLite Micro's kernels had lost agreement: the integer-only card no longer picks it,
    # while the CPU card (XNNPACK's numbers) is unchanged.
    int8 = digits.variant("int8")
    worse = replace(int8, kernels=replace(int8.kernels, micro=replace(int8.kernels.micro, agreement=0.5)))
    changed = replace(digits, variants=tuple(worse if v is int8 else v for v in digits.variants))
    assert decide(changed).pick(Target.INTEGER).variant is None
    assert "int8, has 50.0% agreement with float32" in decide(changed).pick(Target.INTEGER).reason
    assert decide(changed).pick(Target.CPU) == decide(digits).pick(Target.CPU)


def test_the_json_report_and_the_cli_lines_carry_the_kernels(digits):
    data = json.loads(json.dumps(report_dict(digits)))
    kernels = {v["name"]: v["kernels"] for v in data["variants"]}
    assert kernels["int8"]["micro"]["arena_bytes"] == digits.variant("int8").kernels.micro.arena_bytes
    assert kernels["float32"]["micro"] is None and kernels["float32"]["reference_agreement"] == 1.0
    lines = kernel_lines(digits)
    assert len(lines) == 3 and lines[1].startswith("  int8: builtin kernels without XNNPACK ")
    assert "; TFLite Micro: " in lines[1] and "arena " in lines[1]
    again = CompareResult.from_dict(json.loads(json.dumps(digits.to_dict())))
    assert again.variant("int8").kernels == digits.variant("int8").kernels


def test_kernels_can_be_left_out(tmp_path):
    options = CompareOptions(recipes=(Recipe(Mode.INT8),), measure_latency=False, device_kernels=False)
    result = run_compare(CompareRequest(str(MODEL), (str(IMAGES),), None, options), cache=ArtifactCache(tmp_path))
    assert all(v.kernels is None for v in result.variants) and kernel_lines(result) == []


def test_compare_shows_the_kernels_and_the_integer_card_tflite_micro_with_a_budget():
    import os
    import tempfile

    os.environ.setdefault("QUANT_CACHE_DIR", tempfile.mkdtemp(prefix="qw-apptest-cache-"))
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=600)
    at.query_params.update({"sample": "digits_cnn", "modes": "float32,int8"})
    at.run()
    next(b for b in at.button if b.label == "Run the full comparison").click().run()
    at.run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    table = next(d.value for d in at.dataframe if "TFLite Micro" in d.value.columns)
    rows = {r["variant"]: r for r in table.to_dict("records")}
    assert set(rows) == {"float32", "int8"} and rows["int8"]["TFLM arena (KB)"] > 1
    card = next(m.value for m in at.markdown if "in TFLite Micro**" in m.value)
    assert card.startswith("**int8 in TFLite Micro**: tensor arena ") and "Fits a 512 KB RAM / 2 MB flash" in card
    at.selectbox(key="w.mcu_budget").set_value("256 KB RAM / 1 MB flash").run()
    card = next(m.value for m in at.markdown if "in TFLite Micro**" in m.value)
    assert "a 256 KB RAM / 1 MB flash microcontroller" in card

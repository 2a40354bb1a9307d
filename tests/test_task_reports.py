"""Summary, verdict, JSON report and HTML report of models that are not classifiers, in the task's own terms.

Comparisons are built from real fidelity figures (quant_core.outputs on float32 outputs and noisy
copies of them), so every number asserted is worked out here from the arrays themselves.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace

import numpy as np
import pytest

from quant_core import outputs
from quant_core.modes import Mode
from quant_core.results.compare_result import CompareResult
from quant_core.results.report import REPORT_VERSION, report_dict, variants_csv
from quant_core.results.summary import summarize
from quant_core.results.verdict import Floor, FloorKind, decide
from quant_core.tasks import Task
from synthetic_results import comparison
from test_summary import app_view, cli_view, csv_view, html_view, markdown_view
from ui.html_report import render_report

HW = (64, 64)
COMMON = ["variant", "status", "size (KB)", "x smaller", "memory (KB)", "median ms", "p90 ms"]
TAIL = ["min SQNR dB", "worst", "integer-only"]


def measured(names: list[str], floats: list[np.ndarray], variants: dict[str, list[np.ndarray]], *,
             task: Task | None = None) -> CompareResult:
    """A comparison of float32, float16 and int8 whose outputs are `variants` (float32's: `floats`)."""
    shapes = [(1, *f.shape[1:]) for f in floats]
    specs, task = outputs.specs_of(names, shapes, floats, input_hw=HW, task=task)
    base = comparison({"float32": 3.0, "float16": 3.0, "int8": 1.5})
    got = {"float32": floats, **variants}
    vs = []
    for v in base.variants:
        found = outputs.fidelities(specs, floats, got[v.name], input_hw=HW)
        vs.append(replace(v, outputs=found, top1_agreement=outputs.agreement(task, specs, found), top1=(), topk=(),
                          accuracy=None, top5_agreement=None))
    images = tuple(replace(i, label=None, label_index=None) for i in base.images[:len(floats[0])])
    return replace(base, variants=tuple(vs), task=task, output_specs=specs, class_names=(), images=images,
                   source_accuracy=None, source_top5_accuracy=None, labels_source="not used")


def sqnr(ref: np.ndarray, got: np.ndarray) -> float:
    return 10 * math.log10(float(np.sum(ref.astype(np.float64) ** 2) / np.sum((ref - got).astype(np.float64) ** 2)))


# ------------------------------------------------------------------------------------------------ landmarks


def landmark_arrays(n: int = 8) -> tuple[np.ndarray, np.ndarray, dict[str, list[np.ndarray]]]:
    """10 points (x, y, z) in a 64x64 input and a presence score; int8 moves point 7 by 6 px along x."""
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.uniform(8, 56, (n, 10, 2)), rng.normal(0, 3, (n, 10, 1))], axis=-1)
    marks = points.reshape(n, 1, 1, 30).astype(np.float32)
    presence = rng.uniform(2, 9, (n, 1)).astype(np.float32)
    moved = points.copy()
    moved[:, :, :2] += rng.normal(0, 0.3, (n, 10, 2))
    moved[:, 7, 0] += 6.0
    variants = {"float16": [marks + np.float32(1e-3), presence], "int8": [moved.reshape(marks.shape).astype(np.float32),
                                                                          presence * np.float32(1.0001)]}
    return marks, presence, variants


@pytest.fixture(scope="module")
def landmarks() -> CompareResult:
    marks, presence, variants = landmark_arrays()
    return measured(["face_landmarks", "face_presence"], [marks, presence], variants)


def test_a_landmark_model_gets_the_tasks_columns_in_every_view(landmarks):
    titles = [*COMMON, "PCK@5%", "mean point error (px)", "error / image size", *TAIL]
    assert landmarks.task is Task.LANDMARKS
    assert [c.title for c in summarize(landmarks).columns] == titles
    app, highlighted = app_view(landmarks)
    page, html_best, _ = html_view(landmarks)
    markdown, bold = markdown_view(landmarks)
    assert app == page == markdown
    cli = cli_view(landmarks)
    assert cli["int8"] == app["int8"] and cli["float16"] == app["float16"]  # float32's empty "worst" cell is cut
    assert set(app["int8"]) == set(titles) and app["float32"]["worst"] == ""
    assert highlighted == html_best == bold
    header, rows = csv_view(landmarks)
    assert header[7:14] == ["pck_5", "mean_point_error", "mean_point_error_share", "truth_score", "min_sqnr_db",
                            "worst", "integer_only"]  # the CSV has every column; tables only those with values
    assert "vs ground truth" not in titles  # no ground truth given: its column stays out of the tables
    assert rows["int8"]["worst"] == app["int8"]["worst"]


def test_the_worst_output_channel_and_axis_are_named_with_the_lowest_sqnr(landmarks):
    marks, presence, variants = landmark_arrays()
    int8 = cli_view(landmarks)["int8"]
    lowest = min(sqnr(marks, variants["int8"][0]), sqnr(presence, variants["int8"][1]))
    assert int8["min SQNR dB"] == f"{lowest:.1f}"
    assert int8["worst"] == "face_landmarks point 7, axis x"  # the point moved, along x
    shift = np.linalg.norm((variants["int8"][0] - marks).reshape(8, 10, 3)[..., :2], axis=-1)
    assert int8["mean point error (px)"] == f"{shift.mean():.3f}"
    assert int8["PCK@5%"] == f"{np.mean(shift <= 0.05 * 64):.1%}"
    assert cli_view(landmarks)["float16"]["min SQNR dB"] == f"{sqnr(marks, variants['float16'][0]):.1f}"
    assert cli_view(landmarks)["float32"]["min SQNR dB"] == "exact"


def test_the_best_values_follow_each_columns_direction(landmarks):
    _, best = app_view(landmarks)
    assert ("float16", "mean point error (px)") in best and ("int8", "mean point error (px)") not in best  # lower
    assert ("float16", "min SQNR dB") in best  # higher
    assert not any(name == "float32" and title in ("PCK@5%", "min SQNR dB", "mean point error (px)")
                   for name, title in best)  # float32 against itself never wins


def test_the_verdict_says_the_tasks_measure(landmarks):
    verdict = decide(landmarks)
    assert verdict.floor_label == "PCK@5% with float32 ≥ 99%"
    assert verdict.floor_plain == "at least 99% of the points within 5% of the image size of the original's"
    integer = verdict.pick(verdict.picks[2].target)
    assert integer.variant is None  # int8 moved a point in ten by 6 px: 90 % of points within 5 % at best
    assert integer.reason.startswith("No variant meets PCK@5% with float32 ≥ 99%: the closest, int8, has ")
    assert "% PCK@5% with float32" in integer.reason
    assert "The closest, int8, puts " in integer.plain and "of its points within 5% of the image size" in integer.plain
    cpu = verdict.picks[0]
    assert cpu.variant == "float16" and "of points within 5% of the image size of float32's" in cpu.reason
    for text in (p.reason + p.plain for p in verdict.picks):
        assert "top-1" not in text and "same answer" not in text and "original's answer" not in text


def test_an_accuracy_floor_on_a_model_that_is_not_a_classifier_falls_back_to_its_measure(landmarks):
    verdict = decide(landmarks, floor=Floor(FloorKind.ACCURACY_DROP, 0.02))
    assert verdict.floor == Floor()
    assert verdict.note.startswith("Not a classifier: accuracy drop ≤ 2 points cannot be checked, so PCK@5% with "
                                   "float32 ≥ 99% is used.")
    assert "does not answer with classes" in verdict.plain_note
    assert not Floor(FloorKind.ACCURACY_DROP, 0.02).applies(landmarks)


def test_the_json_report_has_every_output_per_channel_and_per_axis(landmarks):
    data = report_dict(landmarks)
    text = json.dumps(data, allow_nan=False)  # no NaN, no infinity: plain JSON
    assert json.loads(text)["report_version"] == REPORT_VERSION == 3
    assert data["task"] == "landmarks" and data["agreement"]["title"] == "PCK@5%"
    assert [o["role"] for o in data["outputs"]] == ["landmarks", "score"]
    assert data["outputs"][0]["points"] == 10 and data["outputs"][0]["space"] == "pixels"
    assert data["outputs"][0]["description"].startswith("face_landmarks [1,1,1,30]: 10 landmarks (x, y, z)")
    assert data["verdict"]["floor"]["label"] == "PCK@5% with float32 ≥ 99%"
    marks, _, variants = landmark_arrays()
    for v in data["variants"]:
        assert [o["name"] for o in v["outputs"]] == ["face_landmarks", "face_presence"]
        first = v["outputs"][0]
        assert len(first["channels"]) == 10 and first["channel"] == "point"
        assert first["axis_names"] == ["x", "y", "z"] and len(first["axes"]) == 3
        assert set(first["whole"]) >= {"sqnr_db", "cosine", "max_abs", "rel_rmse", "exact"}
        assert set(first["channels"][0]) >= {"sqnr_db", "cosine", "max_abs", "rel_rmse"}
        assert len(first["landmarks"]["per_point_error"]) == 10
        assert v["agreement"] == v["top1_agreement"]
    int8 = data["variants"][2]["outputs"][0]
    assert int8["worst_channel"] == 7 and int8["worst_axis"] == 0 and int8["worst"] == "face_landmarks point 7, axis x"
    point7 = marks.reshape(8, 10, 3)[:, 7], variants["int8"][0].reshape(8, 10, 3)[:, 7]
    assert int8["channels"][7]["sqnr_db"] == pytest.approx(sqnr(*point7), abs=1e-3)
    assert int8["whole"]["max_abs"] == pytest.approx(float(np.abs(variants["int8"][0] - marks).max()), rel=1e-5)
    assert data["variants"][0]["outputs"][0]["whole"]["exact"] is True
    assert data["variants"][0]["outputs"][0]["whole"]["sqnr_db"] is None
    assert data["images"][0]["predictions"] == {} and set(data["images"][0]["agreement"]) == {
        "float32", "float16", "int8"}


def test_the_html_report_lists_each_output_and_its_fidelity_per_variant(landmarks):
    page = render_report(landmarks)
    section = re.search(r"<h2>Outputs</h2>(.*?)<h2>", page, re.S).group(1)
    for spec in landmarks.output_specs:
        assert f"<h3>{spec.description}</h3>" in section
    rows = re.findall(r"<tr><td>(int8)</td>(.*?)</tr>", section)
    assert len(rows) == 2  # one table per output, a row per variant
    assert "point 7: " in rows[0][1] and "axis x: " in rows[0][1]
    assert "Fidelity floor: <b>PCK@5% with float32 ≥ 99%</b>" in page
    summary = page.split("<h2>Summary</h2>")[1].split('<div class="grid">')[0]  # the text and table, not the charts
    assert "top-1" not in summary and "<b>PCK@5%</b> is share of points within 5%" in summary
    per_image = page.split("<h2>Per image</h2>")[1]
    assert "<th>int8</th>" in per_image and "<th>float32</th>" not in per_image and " px</td>" in per_image


# ------------------------------------------------------------------------------------------------ segmentation


def masks(n: int = 6, classes: int = 1) -> tuple[np.ndarray, dict[str, list[np.ndarray]]]:
    """Masks (or class maps) of 16x16; int8 flips a 4x4 corner of each."""
    rng = np.random.default_rng(1)
    if classes == 1:
        ref = (rng.uniform(0, 1, (n, 16, 16, 1)) ** 3).astype(np.float32)
        ref[:, 4:12, 4:12] = 0.9
        flipped = ref.copy()
        flipped[:, :4, :4] = 1 - flipped[:, :4, :4]
    else:
        logits = rng.normal(0, 1, (n, 16, 16, classes))
        ref = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
        flipped = ref.copy()
        flipped[:, :4, :4] = np.roll(ref[:, :4, :4], 1, axis=-1)
    return ref, {"float16": [ref * np.float32(0.9999)], "int8": [flipped]}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([(x & y).sum() / (x | y).sum() if (x | y).any() else 1.0 for x, y in zip(a, b)]))


def test_a_segmenter_is_summed_up_by_mask_iou_and_pixel_agreement():
    ref, variants = masks()
    result = measured(["segment_back"], [ref], variants)
    view = cli_view(result)
    assert list(view["int8"]) == [*COMMON, "mask IoU", "pixel agreement", *TAIL]
    a, b = ref[..., 0] > 0.5, variants["int8"][0][..., 0] > 0.5
    assert view["int8"]["mask IoU"] == f"{iou(a, b):.1%}"
    assert view["int8"]["pixel agreement"] == f"{np.mean(a == b):.2%}"
    assert view["int8"]["worst"] == "segment_back"  # one channel: the output's name alone
    verdict = decide(result, floor=Floor(FloorKind.AGREEMENT, 0.999))
    assert verdict.floor_label == "mask IoU with float32 ≥ 99.9%"
    integer = verdict.picks[2]
    assert integer.variant is None and f"has {iou(a, b):.1%} mask IoU with float32" in integer.reason
    assert f"has masks that overlap the original's by {iou(a, b):.1%}" in integer.plain
    assert "masks that overlap the original's by at least 99.9% (intersection over union)" in integer.plain
    assert verdict.note == ""  # a mask IoU is no count of images: no coarseness note
    header, rows = csv_view(result)
    assert header[7:9] == ["mask_iou", "pixel_agreement"] and float(rows["int8"]["mask_iou"]) == round(iou(a, b), 3)


def test_a_class_map_shows_its_lowest_class_iou():
    ref, variants = masks(classes=3)
    result = measured(["segmentation"], [ref], variants)
    view = cli_view(result)
    assert list(view["int8"]) == [*COMMON, "mask IoU", "pixel agreement", "lowest class IoU", *TAIL]
    a, b = ref.argmax(-1), variants["int8"][0].argmax(-1)
    per_class = [((a == c) & (b == c)).sum() / ((a == c) | (b == c)).sum() for c in range(3)]
    assert view["int8"]["lowest class IoU"] == f"{min(per_class):.1%}"
    assert view["int8"]["mask IoU"] == f"{np.mean(per_class):.1%}"


# ------------------------------------------------------------------------------------------------ embeddings, generic


def test_an_embedding_counts_nearest_neighbours_and_says_how_coarse_that_is():
    n, rng = 6, np.random.default_rng(2)
    ref = rng.normal(0, 1, (n, 32)).astype(np.float32)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    swapped = ref.copy()
    swapped[[0, 1]] = ref[[1, 0]]  # two images trade embeddings: their neighbours change
    result = measured(["embedding"], [ref], {"float16": [ref * np.float32(0.999)], "int8": [swapped]})
    assert result.task is Task.EMBEDDING
    view = cli_view(result)
    assert list(view["int8"]) == [*COMMON, "NN agreement", "mean cosine", "min cosine", *TAIL]
    cosines = np.sum(ref * swapped, axis=1)
    assert view["int8"]["mean cosine"] == f"{cosines.mean():.4f}"
    assert view["int8"]["min cosine"] == f"{cosines.min():.4f}"
    verdict = decide(result)
    assert verdict.floor_label == "NN agreement with float32 ≥ 99%"
    assert verdict.note == (f"With {n} images one image with another nearest neighbour is {100 / n:.1f} points, so "
                            "NN agreement with float32 ≥ 99% allows none; add images for a finer verdict.")
    assert "finds the original's nearest neighbour on" in verdict.picks[2].plain


def test_a_generic_model_is_measured_by_cosine_similarity_written_as_a_number():
    ref = np.random.default_rng(3).normal(0, 1, (5, 7, 9)).astype(np.float32)
    result = measured(["Identity"], [ref], {"float16": [ref], "int8": [ref + np.float32(0.5)]}, task=Task.GENERIC)
    view = cli_view(result)
    assert list(view["int8"]) == [*COMMON, "cosine", *TAIL]
    flat_ref, flat = ref.ravel().astype(np.float64), (ref + np.float32(0.5)).ravel().astype(np.float64)
    cosine = flat_ref @ flat / np.linalg.norm(flat_ref) / np.linalg.norm(flat)
    assert view["int8"]["cosine"] == f"{cosine:.4f}"
    verdict = decide(result)
    assert verdict.floor_label == "cosine with float32 ≥ 0.99"
    assert f"cosine {cosine:.4f} with float32" in verdict.picks[2].reason
    shifted = ref + np.float32(0.5)
    worst = min(range(9), key=lambda c: sqnr(ref[..., c], shifted[..., c]))  # the channel nearest zero suffers most
    assert view["int8"]["worst"] == f"Identity channel {worst}"


def test_a_classifier_keeps_its_columns_floor_and_csv_header():
    result = comparison({"float32": 3.0, "int8": 1.5})
    assert result.task is Task.CLASSIFICATION
    assert decide(result).floor_label == Floor().label == "agreement with float32 ≥ 99%"
    assert Floor().plain == "the original's answer on at least 99% of the images"
    assert variants_csv(result).splitlines()[0] == (
        "mode,status,size_bytes,x_smaller,runtime_memory_bytes,latency_median_ms,latency_p90_ms,top1_agreement,"
        "top5_agreement,accuracy,top5_accuracy,mean_abs_prob_diff,integer_only,warning,error")
    assert report_dict(result)["task"] == "classification" and report_dict(result)["outputs"] == []
    assert [v.mode for v in result.variants] == [Mode.FLOAT32, Mode.INT8]


# ------------------------------------------------------------------------------------------ the app's verdict card


def verdict_page() -> None:
    """The verdict card alone, on the result a test puts in the session."""
    import streamlit as st

    from ui.verdict import verdict_card

    verdict_card(st.session_state["result"])


def test_the_apps_verdict_card_sets_the_floor_in_the_tasks_terms(landmarks):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(verdict_page, default_timeout=60)
    at.session_state["result"] = landmarks
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    (popover,) = at.get("popover")
    assert popover.proto.popover.label == ("Required: at least 99% of the points within 5% of the image size of the "
                                           "original's")
    (radio,) = at.radio
    assert radio.options == ["points within 5% of the image size of the original's (PCK@5%) for at least"]
    at.number_input(key="w.floor_agreement").set_value(90.0).run()
    assert "at least 90% of the points" in at.get("popover")[0].proto.popover.label
    assert all("top-1" not in m.value for m in at.markdown)

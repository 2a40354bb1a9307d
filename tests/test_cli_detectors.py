"""The CLI on the bundled YOLO-style shapes detector: its table and JSON report speak boxes (box F1, recall, missed
and extra boxes, mAP against its bundled YOLO truth), its worst channel is named as what it holds, a decoder that does
not fit is one line, and the search's budget is box F1 against float32, or mAP@0.5 with ground truth."""

from __future__ import annotations

import json
import re

import pytest

from conftest import REPO
from test_cli import assert_one_line_error, run_cli
from test_cli_tasks import table

MODEL = REPO / "sample_models" / "shapes_detector.keras"
IMAGES = REPO / "sample_models" / "shapes_images"
TRUTH = REPO / "sample_models" / "shapes_truth"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("detector-cli-cache")


@pytest.fixture(scope="module")
def compared(cache_dir, tmp_path_factory) -> tuple[str, dict]:
    report = tmp_path_factory.mktemp("shapes") / "report.json"
    proc = run_cli("compare", MODEL, "--images", IMAGES, "--truth", TRUTH, "--modes", "float32,int8,int16x8",
                   "--no-latency", "--json", report, cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, json.loads(report.read_text())


def test_the_table_has_box_columns_and_map_against_the_truth(compared):
    stdout, _ = compared
    assert "\ndecoder: yolo: YOLO-style output head_output [1,7,64]: read as [1, 4+C, A] with C = 3 classes" in stdout
    titles, rows = table(stdout)
    for title in ("box F1", "recall", "precision", "missed / extra", "box IoU", "mAP@0.5", "mAP@0.5:0.95"):
        assert title in titles, titles
    assert re.search(r"float32 .* 100\.0% +100\.0% +100\.0% +0 / 0 ", rows["float32"]), rows["float32"]
    assert re.search(r"int8 .* 9 / 0 ", rows["int8"]), rows["int8"]  # nine of float32's boxes missed (the collapse)
    assert "head_output class score 1" in rows["int8"]  # the worst channel: a class score squeezed by the boxes' scale


def test_the_json_report_carries_the_decoder_and_box_metrics(compared):
    _, data = compared
    assert data["task"] == "detection" and data["agreement"]["title"] == "box F1"
    assert data["decoder"]["kind"] == "yolo" and data["decoder"]["score_threshold"] == 0.25
    variants = {v["name"]: v for v in data["variants"]}
    float32, int8 = (variants[n]["outputs"][0] for n in ("float32", "int8"))
    assert float32["boxes"]["f1"] == 1.0 and float32["boxes"]["reference_boxes"] == 63
    boxes = int8["boxes"]
    assert (boxes["true_positives"], boxes["missed"], boxes["extra"]) == (54, 9, 0)
    assert boxes["f1"] == pytest.approx(108 / 117, abs=1e-6)  # 2 x 54 / (2 x 54 + 9 + 0)
    assert variants["int8"]["top1_agreement"] == pytest.approx(boxes["f1"], abs=1e-4)  # the variant's agreement
    assert boxes["map_50"] < float32["boxes"]["map_50"]
    assert 0.5 < float32["boxes"]["map_50"] <= 1.0
    assert variants["float32"]["accuracy"] == pytest.approx(float32["boxes"]["map_50"], abs=1e-4)
    assert data["labels"]["ground_truth"].startswith("YOLO boxes of 24 images")
    assert int8["worst_channel_name"] == "class score 1" and int8["channel_names"][:4] == ["box cx", "box cy",
                                                                                          "box w", "box h"]
    per_image = [image["agreement"]["int8"] for image in data["images"]]
    assert len(per_image) == 24 and min(per_image) < 1.0 and all(0.0 <= f <= 1.0 for f in per_image)


def test_a_decoder_the_outputs_do_not_fit_is_one_line(cache_dir):
    assert_one_line_error(run_cli("compare", MODEL, "--images", IMAGES, "--modes", "float32", "--no-latency",
                                  "--decoder", "ssd:face_detection_short_range", cache_dir=cache_dir),
                          r"^error: SSD decoding reads two outputs, box regressors \[1, A, K\]")
    assert_one_line_error(run_cli("compare", MODEL, "--images", IMAGES, "--modes", "float32", "--no-latency",
                                  "--decoder", "retina", cache_dir=cache_dir),
                          r"^error: decoder 'retina': expected ssd:<preset>, ssd:custom key=value \.\.\., yolo or "
                          r"postprocess")


def test_the_search_budget_is_box_f1_without_truth_and_map_with_it(cache_dir):
    quick = ("--no-latency", "--max-steps", "3", "--max-drop", "2")
    proc = run_cli("tune", MODEL, "--images", IMAGES, *quick, cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("budget: box F1 with float32 ≥ 98%;"), lines[0]
    assert re.match(r" 1\. int8: box F1 92\.3%, [\d,]+ bytes; outside the budget", lines[2]), lines[2]

    proc = run_cli("tune", MODEL, "--images", IMAGES, "--truth", TRUTH, *quick, "--json", "-", cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert found["budget"] == {"kind": "accuracy_drop", "value": 0.02, "label": "mAP@0.5 drop ≤ 2 points"}
    int8 = found["steps"][0]
    assert int8["name"] == "int8" and int8["accuracy_measure"] == "mAP@0.5" and not int8["within_budget"]
    assert int8["accuracy"] < found["baseline_accuracy"] - 0.02  # mAP lost: outside a 2-point budget


def test_the_microcontroller_budget_is_a_setting_checked_before_any_work(cache_dir, tmp_path):
    report = tmp_path / "report.json"
    proc = run_cli("compare", MODEL, "--images", IMAGES, "--modes", "float32,int8", "--no-latency",
                   "--mcu-budget", "128,1024", "--json", report, cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())
    assert data["verdict"]["mcu_budget"] == {"ram_bytes": 131072, "flash_bytes": 1048576,
                                             "label": "128 KB RAM / 1 MB flash"}
    int8 = next(v for v in data["variants"] if v["name"] == "int8")
    assert int8["kernels"]["micro"]["arena_bytes"] > 131072  # the shapes detector's arena: 264 KB, over 128 KB
    assert "  int8: builtin kernels without XNNPACK " in proc.stdout and "; TFLite Micro: 92.3%, arena " in proc.stdout
    assert_one_line_error(run_cli("compare", MODEL, "--images", IMAGES, "--mcu-budget", "lots",
                                  cache_dir=cache_dir), r"^error: --mcu-budget 'lots': expected RAM_KB,FLASH_KB")

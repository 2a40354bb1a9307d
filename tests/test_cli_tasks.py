"""The CLI on real models that are not classifiers: the task's table, verdict and per-output report, and overrides.

The bundled MediaPipe samples (sample_models/README.md): a face landmark model (468 points and a
face presence score) on face crops, and a person segmenter on photos of people.
"""

from __future__ import annotations

import json
import re

import pytest

from conftest import REPO
from test_cli import assert_one_line_error, run_cli

FACE = REPO / "sample_models" / "face_landmark.tflite"
FACES = REPO / "sample_models" / "face_images"
SELFIE = REPO / "sample_models" / "selfie_segmentation.tflite"
PEOPLE = REPO / "sample_models" / "people_images"
QUICK = ("--modes", "float32,float16,dynamic_range", "--no-latency")
COMMON = ["variant", "status", "size (KB)", "x smaller", "memory (KB)", "median ms", "p90 ms"]
TAIL = ["min SQNR dB", "worst", "integer-only"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("task-cli-cache")


def table(stdout: str) -> tuple[list[str], dict[str, str]]:
    """The text table's column titles and each variant's row (as its line)."""
    lines = stdout.splitlines()
    start = lines.index("") + 1
    header, *rows = lines[start:lines.index("", start)]
    return re.split(r" {2,}", header.strip()), {row.split()[0]: row for row in rows}


def verdict_line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("Which variant to ship"))


@pytest.fixture(scope="module")
def face(cache_dir, tmp_path_factory) -> tuple[str, dict]:
    report = tmp_path_factory.mktemp("face") / "report.json"
    proc = run_cli("compare", FACE, "--images", FACES, *QUICK, "--json", report, cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout, json.loads(report.read_text())


def test_a_landmark_model_gets_its_tasks_table_and_verdict(face):
    stdout, _ = face
    lines = stdout.splitlines()
    assert lines[0].startswith("model: face_landmark (tflite), input [1, 192, 192, 3], 2 outputs,")
    assert lines[1].startswith("task: landmarks (PCK@5%: share of points within 5% of the image size")
    assert lines[2:5] == [
        "outputs:", "  conv2d_21 [1,1,1,1404]: 468 landmarks (x, y, z) in input pixels, values in [-33.62, 171.2]",
        "  conv2d_31 [1,1,1,1]: a score, values in [4.282, 28.2]"]
    titles, rows = table(stdout)
    assert titles == [*COMMON, "PCK@5%", "mean point error (px)", "error / image size", *TAIL]
    assert list(rows) == ["float32", "float16", "dynamic_range"]
    assert "exact" in rows["float32"]
    assert verdict_line(stdout) == "Which variant to ship (PCK@5% with float32 ≥ 99%):"
    picks = stdout.split(verdict_line(stdout))[1]
    assert "of points within 5% of the image size of float32's" in picks and "top-1" not in picks


def test_the_report_has_per_output_and_per_channel_fidelity_for_every_variant(face):
    _, data = face
    assert data["report_version"] == 3 and data["task"] == "landmarks"
    assert [(o["name"], o["role"], o["shape"]) for o in data["outputs"]] == [
        ("conv2d_21", "landmarks", [1, 1, 1, 1404]), ("conv2d_31", "score", [1, 1, 1, 1])]
    assert data["outputs"][0]["description"].startswith("conv2d_21 [1,1,1,1404]: 468 landmarks")
    assert data["verdict"]["floor"]["label"] == "PCK@5% with float32 ≥ 99%"
    for v in data["variants"]:
        assert v["status"] == "ok"
        points, presence = v["outputs"]
        assert len(points["channels"]) == 468 and points["axis_names"] == ["x", "y", "z"]
        assert all(set(c) >= {"sqnr_db", "cosine", "max_abs", "rel_rmse"} for c in points["channels"])
        assert len(points["landmarks"]["per_point_error"]) == 468 and len(presence["channels"]) == 1
        assert v["agreement"] == pytest.approx(points["landmarks"]["pck_5"], abs=1e-4)
    float32, _, dynamic = data["variants"]
    assert float32["outputs"][0]["whole"]["exact"] is True
    whole = dynamic["outputs"][0]["whole"]
    assert 30 < whole["sqnr_db"] < 90 and whole["cosine"] > 0.999 and 0 < whole["max_abs"] < 10
    worst = dynamic["outputs"][0]["worst_channel"]
    assert dynamic["outputs"][0]["channels"][worst]["sqnr_db"] == min(
        c["sqnr_db"] for c in dynamic["outputs"][0]["channels"])
    assert 0 < dynamic["outputs"][0]["landmarks"]["mean_error"] < 2  # pixels of a 192x192 crop
    assert len(data["images"]) == 7 and data["images"][0]["predictions"] == {}
    assert "NaN" not in json.dumps(data) and "Infinity" not in json.dumps(data)


def test_a_segmenter_is_measured_by_mask_iou_and_labels_are_said_to_be_unused(cache_dir, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("person\nbackground\n")
    report = tmp_path / "report.json"
    proc = run_cli("compare", SELFIE, "--images", PEOPLE, *QUICK, "--labels", labels, "--json", report,
                   cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "warning: --labels not used: the model's task is segmentation, not classification\n"
    titles, rows = table(proc.stdout)
    assert titles == [*COMMON, "mask IoU", "pixel agreement", *TAIL]
    assert verdict_line(proc.stdout) == "Which variant to ship (mask IoU with float32 ≥ 99%):"
    data = json.loads(report.read_text())
    assert data["task"] == "segmentation" and data["outputs"][0]["role"] == "mask"
    dynamic = data["variants"][2]["outputs"][0]
    assert len(dynamic["mask"]["per_image_iou"]) == 7 and 0.9 < dynamic["mask"]["iou"] <= 1
    assert dynamic["mask"]["iou"] == pytest.approx(data["variants"][2]["agreement"], abs=1e-4)
    assert f"{dynamic['mask']['iou']:.1%}" in rows["dynamic_range"]
    assert set(data["images"][0]["agreement"]) == {"float32", "float16", "dynamic_range"}


def test_task_and_roles_override_what_was_inferred(cache_dir, tmp_path):
    report = tmp_path / "report.json"
    proc = run_cli("compare", SELFIE, "--images", PEOPLE, *QUICK, "--roles", "activation_10=generic",
                   "--json", report, cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    titles, _ = table(proc.stdout)
    assert titles == [*COMMON, "cosine", *TAIL]
    assert verdict_line(proc.stdout) == "Which variant to ship (cosine with float32 ≥ 0.99):"
    data = json.loads(report.read_text())
    assert data["task"] == "generic" and data["outputs"][0]["set_by_user"] is True
    proc = run_cli("compare", FACE, "--images", FACES, *QUICK, "--task", "generic", cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].startswith("task: generic (cosine:")
    assert table(proc.stdout)[0] == [*COMMON, "cosine", *TAIL]


def test_roles_take_an_output_index(cache_dir):
    proc = run_cli("compare", SELFIE, "--images", PEOPLE, *QUICK, "--roles", "0=generic", cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert table(proc.stdout)[0] == [*COMMON, "cosine", *TAIL]


@pytest.mark.parametrize(("args", "pattern"), [
    (("--task", "segmentaton"), r"^error: unknown task 'segmentaton'.*segmentation"),
    (("--roles", "0mask"), r"^error: roles: expected OUTPUT=ROLE pairs"),
    (("--roles", "0=blob"), r"^error: unknown role 'blob'.*mask"),
])
def test_bad_task_or_roles_exit_2_with_one_line_before_any_work(args, pattern, tmp_path):
    for command in ("compare", "tune"):
        proc = run_cli(command, FACE, "--images", FACES, *args, cache_dir=tmp_path / "cache")
        assert_one_line_error(proc, pattern)
    assert not (tmp_path / "cache").exists()  # refused before anything was converted or cached


@pytest.mark.parametrize(("args", "pattern"), [
    (("--roles", "nosuch=mask"), r"^error: no output 'nosuch'; expected an output index or name: 0 \(conv2d_21\)"),
    (("--roles", "conv2d_31=mask"), r"^error: output 1 \(conv2d_31 \[1,1,1,1\]\) cannot hold mask"),
    (("--task", "segmentation"), r"^error: no output can be read as segmentation"),
])
def test_roles_or_a_task_the_outputs_cannot_hold_exit_2_with_one_line(args, pattern, cache_dir):
    proc = run_cli("compare", FACE, "--images", FACES, *QUICK, *args, cache_dir=cache_dir)
    assert_one_line_error(proc, pattern)


def test_inspect_describes_each_output_with_images_and_its_shape_without(cache_dir, tmp_path):
    proc = run_cli("inspect", FACE, cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("outputs (shapes only; give --images to read what each holds):\n"
                                "  conv2d_21 [1,1,1,1404]\n  conv2d_31 [1,1,1,1]\n")
    path = tmp_path / "inspect.json"
    proc = run_cli("inspect", FACE, "--images", FACES, "--json", path, cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert "task: landmarks (PCK@5%" in proc.stdout
    assert "  conv2d_21 [1,1,1,1404]: 468 landmarks (x, y, z) in input pixels" in proc.stdout
    data = json.loads(path.read_text())
    assert data["task"] == "landmarks" and [s["role"] for s in data["output_specs"]] == ["landmarks", "score"]
    proc = run_cli("inspect", SELFIE, "--images", PEOPLE, "--roles", "activation_10=generic", cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert "  activation_10 [1,256,256,1]: a tensor (set by you), values in [0, 1]" in proc.stdout
    assert_one_line_error(run_cli("inspect", FACE, "--task", "generic", cache_dir=cache_dir),
                          r"^error: --task and --roles are checked against the model's outputs on images")


def test_tune_measures_a_landmark_model_by_its_tasks_agreement(cache_dir):
    proc = run_cli("tune", FACE, "--images", FACES, "--no-latency", "--max-steps", "1", "--calibration-count", "4",
                   cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("budget: PCK@5% with float32 ≥ 99%;")
    assert re.match(r" 1\. int8: PCK@5% \d+\.\d%, ", lines[2]), lines[2]


def test_ground_truth_points_score_every_variant(cache_dir, tmp_path):
    """--truth: points in the images' pixels (here float32's own, so float32 scores 100%)."""
    from quant_core import ArtifactCache, CompareOptions, CompareRequest, Mode, Recipe, run_compare

    found = run_compare(CompareRequest(str(FACE), (str(FACES),), None, CompareOptions(
        recipes=(Recipe(Mode.FLOAT32),), measure_latency=False)), cache=ArtifactCache(cache_dir))
    points = found.variant("float32").views[0].images
    names = [image.file for image in found.images]
    truth = tmp_path / "points.json"
    truth.write_text(json.dumps({name: [list(p) for p in view.points] for name, view in zip(names, points)}))
    report = tmp_path / "report.json"
    proc = run_cli("compare", FACE, "--images", FACES, *QUICK, "--truth", truth, "--json", report,
                   cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    titles, rows = table(proc.stdout)
    assert "vs ground truth" in titles and "100.0%" in rows["float32"]
    data = json.loads(report.read_text())
    assert data["labels"]["ground_truth"] == "ground-truth points of 7 images"
    assert data["source_accuracy"] == 1.0


def test_ground_truth_that_does_not_exist_is_one_line(cache_dir, tmp_path):
    proc = run_cli("compare", FACE, "--images", FACES, *QUICK, "--truth", tmp_path / "nope.json",
                   cache_dir=cache_dir)
    assert_one_line_error(proc, "nope.json: no such file or folder")

"""The Full dataset and Layers pages through AppTest on a model that is not a classifier: the bundled MediaPipe face
landmarker (468 points and a presence score), uploaded with its face crops."""

from __future__ import annotations

import shutil

import numpy as np
from PIL import Image
from streamlit.testing.v1 import AppTest

from conftest import REPO
from quant_core.modes import Mode
from test_layers_app import APP, ok  # the same app under AppTest, and its check for errors

SAMPLES = REPO / "sample_models"
FACES = SAMPLES / "face_images"


def _datasets(root):
    """A set of 12 face crops (copies of the bundled 7, renamed) with a broken file, a set of photos, the compared
    crops themselves with a few more, and tiny 8x8 images: none has classes."""
    originals = sorted(FACES.iterdir())
    (root / "faces_val").mkdir(parents=True)
    for k in range(12):
        shutil.copy(originals[k % len(originals)], root / "faces_val" / f"face{k:02d}.png")
    (root / "faces_val" / "broken.png").write_bytes(b"not a png")
    shutil.copytree(SAMPLES / "people_images", root / "people")
    shutil.copytree(FACES, root / "zz_crops")
    shutil.copy(SAMPLES / "people_images" / "face_recognition_biden.jpg", root / "zz_crops" / "more.jpg")
    (root / "aa_tiny").mkdir()
    for k in range(3):
        Image.fromarray(np.full((8, 8, 3), 40 * k, np.uint8)).save(root / "aa_tiny" / f"{k}.png")
    return root


def _compared(at: AppTest) -> AppTest:
    """The landmarker and its crops uploaded, then float32 and int8 compared."""
    at.run()
    at.radio(key="w.source").set_value("Upload my own").run()
    at.file_uploader[0].set_value(("face_landmark.tflite", (SAMPLES / "face_landmark.tflite").read_bytes(),
                                   "application/octet-stream"))
    at.file_uploader[1].set_value([(p.name, p.read_bytes(), "image/png") for p in sorted(FACES.iterdir())])
    next(b for b in at.button if b.label == "Use these files").click().run(timeout=300)
    ok(at)
    at.switch_page("pages/quantize.py").run()
    for mode in Mode:
        if mode is not Mode.FLOAT32:
            at.checkbox(key=f"w.mode.{mode.value}").set_value(mode is Mode.INT8)
    at.run()
    at.button(key="w.run").click().run(timeout=600)
    return ok(at)


def test_a_landmark_model_is_scored_on_a_server_dataset_and_its_layers_traced(tmp_path, monkeypatch):
    monkeypatch.setenv("QW_DATASETS_DIR", str(_datasets(tmp_path / "datasets")))
    monkeypatch.delenv("QW_EXECUTOR", raising=False)
    at = _compared(AppTest.from_file(APP, default_timeout=600))
    result = at.session_state["qw.result"]
    assert result.task.value == "landmarks" and [v.name for v in result.variants] == ["float32", "int8"]

    at.switch_page("pages/evaluate.py").run()
    ok(at)
    assert any("coarse PCK@5%" in c.value for c in at.caption)
    box = at.selectbox(key="w.evaluate_dataset")
    # Any images (no class folders asked for): the set holding the compared crops first, tiny images last.
    assert box.options == ["zz_crops (8 images, holds 7 of the 7 images compared)", "faces_val (13 images)",
                           "people (7 images)", "aa_tiny (3 images, images about 8 px, under half the model's 192 px "
                           "input)"]
    assert "not a classifier" in box.help and box.index == 0
    box.select_index(1).run()
    next(b for b in at.button if b.label == "Evaluate on 13 images").click().run()
    ok(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images evaluated"] == "12" and metrics["Skipped"] == "1"
    evaluation = at.session_state["qw.evaluation"][1]
    table = at.dataframe[0].value.set_index("variant")
    assert list(table.columns) == ["PCK@5%", "PCK@5% on 7", "conv2d_21 SQNR", "conv2d_31 SQNR"]
    assert table.loc["float32", "PCK@5%"] == "100.00%" and table.loc["float32", "conv2d_21 SQNR"] == "exact"
    int8 = evaluation.score("int8")
    assert table.loc["int8", "PCK@5%"] == f"{int8.top1_agreement:.2%}"
    assert table.loc["int8", "conv2d_31 SQNR"] == f"{int8.outputs[1].whole.sqnr_db:.1f} dB"
    assert table.loc["int8", "PCK@5% on 7"] == f"{result.variant('int8').top1_agreement:.2%}"
    assert any("PCK@5% with float32 is measured on every image" in c.value for c in at.caption)
    assert [d.proto.label for d in at.get("download_button")] == ["Scores and per-image PCK@5% (JSON)"]

    at.switch_page("pages/layers.py").run()
    ok(at)
    assert at.selectbox(key="w.layers_variant").options == ["int8"]
    summary = at.markdown[0].value
    assert summary.startswith("Output conv2d_21 of int8 is off by") and "its other outputs: conv2d_31" in summary
    assert at.number_input(key="w.tune_points").label == "Budget: points of PCK@5% below float32"

"""A detector's ground truth on Model & data (AppTest, real engine): the shapes sample's bundled YOLO boxes can be
removed without touching the bundled files; the same boxes uploaded as YOLO .txt files, or as one COCO .json, score
every variant by mAP; files that are not boxes, or boxes for no image, are refused in one line."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from conftest import REPO
from quant_core import Mode

os.environ.setdefault("QUANT_CACHE_DIR", tempfile.mkdtemp(prefix="qw-apptest-cache-"))
from streamlit.testing.v1 import AppTest

APP = str(REPO / "streamlit_app.py")
SAMPLES = REPO / "sample_models"
TRUTH = SAMPLES / "shapes_truth"
IMAGES = SAMPLES / "shapes_images"


def yolo_files() -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in sorted(TRUTH.glob("*.txt"))]


def coco_json() -> bytes:
    """The sample's YOLO boxes written as COCO annotations ([x, y, w, h] in each image's pixels, categories 1..3)."""
    images, annotations = [], []
    for k, photo in enumerate(sorted(IMAGES.iterdir())):
        width, height = Image.open(photo).size
        images.append({"id": k, "file_name": photo.name, "width": width, "height": height})
        for line in (TRUTH / f"{photo.stem}.txt").read_text().splitlines():
            cls, cx, cy, w, h = (float(v) for v in line.split())
            annotations.append({"id": len(annotations) + 1, "image_id": k, "category_id": int(cls) + 1, "iscrowd": 0,
                                "bbox": [(cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height]})
    categories = [{"id": c, "name": n} for c, n in ((1, "circle"), (2, "square"), (3, "triangle"))]
    return json.dumps({"images": images, "annotations": annotations, "categories": categories}).encode()


def no_failures(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def shapes_session() -> AppTest:
    from ui.settings import Settings

    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.session_state["qw.settings"] = Settings(modes=(Mode.FLOAT32, Mode.INT8))
    at.selectbox(key="w.sample").set_value("shapes_detector").run()
    no_failures(at)
    return at


def in_use(at: AppTest) -> str:
    return next(c.value for c in at.caption if "In use:" in c.value)


def give_truth(at: AppTest, files: list[tuple[str, bytes]]) -> AppTest:
    uploader = next(u for u in at.file_uploader if u.key and u.key.startswith("w.truth."))
    assert "YOLO .txt" in uploader.label
    uploader.set_value([(name, data, "application/octet-stream") for name, data in files])
    next(b for b in at.button if b.label == "Use this ground truth").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def remove_truth(at: AppTest) -> AppTest:
    next(b for b in at.button if b.label == "Remove the ground truth").click().run()
    no_failures(at)
    return at


def map_scores(at: AppTest) -> dict[str, float]:
    next(b for b in at.button if b.label == "Run the full comparison").click().run(timeout=900)
    at.run()
    no_failures(at)
    summary = at.table[0].value
    return dict(zip(summary["variant"], summary["mAP@0.5"]))


@pytest.fixture(scope="module")
def bundled() -> dict[str, float]:
    """mAP@0.5 of float32 and int8 against the sample's own bundled truth."""
    return map_scores(shapes_session())


def test_removing_a_samples_bundled_truth_keeps_its_files():
    at = shapes_session()
    count = len(list(TRUTH.glob("*.txt")))
    assert in_use(at).endswith(f"In use: {count} YOLO .txt files.")
    remove_truth(at)
    assert in_use(at).endswith("In use: none.") and not at.session_state["qw.inputs"].truth
    assert len(list(TRUTH.glob("*.txt"))) == count  # the bundled files are not the session's to delete


@pytest.mark.parametrize("files,said", [(yolo_files, "24 YOLO .txt files"), (lambda: [("shapes.json", coco_json())],
                                                                              "shapes.json")], ids=["yolo", "coco"])
def test_uploaded_boxes_score_every_variant_by_map(files, said, bundled):
    at = remove_truth(shapes_session())
    at = give_truth(at, files())
    no_failures(at)
    assert in_use(at).endswith(f"In use: {said}.")
    (truth,) = at.session_state["qw.inputs"].truth
    kept = truth if truth.is_dir() else truth.parent
    assert kept.parent == at.session_state["qw.inputs"].folder  # the session's own folder, not the sample's
    scores = map_scores(at)
    assert scores == pytest.approx(bundled, abs=1e-6)  # the same boxes, however written
    assert 0.5 < scores["int8"] < scores["float32"] <= 1.0
    result = at.session_state["qw.result"]
    assert result.labelled and ("COCO boxes of 24 images" if said.endswith(".json") else "YOLO boxes of 24 images") \
        in result.truth_source
    at.switch_page("pages/model_data.py").run()
    remove_truth(at)
    assert not kept.exists()  # an upload is removed with its button


@pytest.mark.parametrize("files,message", [
    ([("shapes_00.png", b"\x89PNG")], "shapes_00.png: not ground truth; expected YOLO .txt files"),
    ([("cat.txt", b"0 0.5 0.5 0.2 0.2\n")], "YOLO labels: none of the 1 label files names one of the 24 images"),
    ([("shapes_00.txt", b"0 0.5 0.5\n")], "shapes_00.txt"),
])
def test_boxes_that_do_not_fit_are_refused_in_one_line(files, message):
    at = give_truth(remove_truth(shapes_session()), files)
    assert len(at.error) == 1 and message in at.error[0].value, [e.value for e in at.error]
    assert "\n" not in at.error[0].value
    assert in_use(at).endswith("In use: none.")
    folder = at.session_state["qw.inputs"].folder
    assert folder is None or not list(Path(folder).glob("truth-*"))  # nothing left behind


def test_the_search_on_layers_budgets_map_when_the_truth_is_given():
    at = shapes_session()
    next(b for b in at.button if b.label == "Run the full comparison").click().run(timeout=900)
    at.switch_page("pages/layers.py").run()
    no_failures(at)
    assert at.number_input(key="w.tune_points").label == "Budget: points of mAP@0.5 below float32"
    at.radio(key="w.tune_target").set_value("integer-only").run()
    at.number_input(key="w.tune_points").set_value(2.0)
    at.button(key="w.tune_go").click().run(timeout=900)
    assert not at.exception, [e.value for e in at.exception]
    steps = at.session_state["qw.tune"][2]
    assert [s.name for s in steps] == ["int8", "int16x8"] and [s.within_budget for s in steps] == [False, True]
    assert steps[0].fidelity_text.startswith("mAP@0.5 ") and steps[0].variant.accuracy < steps[1].variant.accuracy
    assert at.success[0].value.startswith("Winner: **int16x8** (step 2), mAP@0.5 "), at.success[0].value

"""Ground truth uploaded on Model & data (AppTest, real engine): PNG masks for the bundled selfie segmenter, uploaded
with three of its photos, score every variant in the summary's "vs ground truth" column (float32 against its own
thresholded mask: 100 %); masks missing an image, or points for a segmenter, are refused in one line; removing the
ground truth goes back to none."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from quant_core import Mode
from quant_core.inputs.preprocess import Normalization, Preprocessing, Preset, to_model_input

os.environ.setdefault("QUANT_CACHE_DIR", tempfile.mkdtemp(prefix="qw-apptest-cache-"))
from streamlit.testing.v1 import AppTest

APP = str(REPO / "streamlit_app.py")
MODEL = REPO / "sample_models" / "selfie_segmentation.tflite"
PHOTOS = [REPO / "sample_models" / "people_images" / n
          for n in ("skimage_astronaut.png", "matplotlib_grace_hopper.jpg", "face_recognition_obama.jpg")]


def float_masks() -> dict[str, bytes]:
    """The float model's own person mask of each photo (threshold 0.5) as a 0/255 PNG at the output's 256x256."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(MODEL))
    interpreter.allocate_tensors()
    pre = Preprocessing(256, 256, 3, Normalization(Preset.ZERO_ONE))
    masks = {}
    for photo in PHOTOS:
        pixels = np.asarray(Image.open(photo).convert("RGB"))
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], to_model_input([pixels], pre))
        interpreter.invoke()
        mask = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0, :, :, 0]
        buf = io.BytesIO()
        Image.fromarray(np.where(mask > 0.5, 255, 0).astype(np.uint8)).save(buf, format="PNG")
        masks[f"{photo.stem}.png"] = buf.getvalue()
    return masks


@pytest.fixture(scope="module")
def masks() -> dict[str, bytes]:
    return float_masks()


def uploaded_segmenter() -> AppTest:
    """A session on the selfie segmenter uploaded with three photos, float32 and dynamic range chosen."""
    from ui.settings import Settings

    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.session_state["qw.settings"] = Settings(modes=(Mode.FLOAT32, Mode.DYNAMIC_RANGE))
    at.radio(key="w.source").set_value("Upload my own").run()
    at.file_uploader[0].set_value((MODEL.name, MODEL.read_bytes(), "application/octet-stream"))
    at.file_uploader[1].set_value([(p.name, p.read_bytes(), "image/png") for p in PHOTOS])
    next(b for b in at.button if b.label == "Use these files").click().run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    return at


def give_truth(at: AppTest, files: list[tuple[str, bytes]]) -> AppTest:
    uploader = next(u for u in at.file_uploader if u.key and u.key.startswith("w.truth."))
    uploader.set_value([(name, data, "application/octet-stream") for name, data in files])
    next(b for b in at.button if b.label == "Use this ground truth").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def in_use(at: AppTest) -> str:
    return next(c.value for c in at.caption if "In use:" in c.value)


def test_uploaded_masks_score_every_variant_and_can_be_removed(masks):
    at = give_truth(uploaded_segmenter(), list(masks.items()))
    assert not at.error, [e.value for e in at.error]
    assert in_use(at).endswith("In use: 3 PNG masks.")
    truth = at.session_state["qw.inputs"].truth
    assert len(truth) == 1 and truth[0].is_dir()

    next(b for b in at.button if b.label == "Run the full comparison").click().run(timeout=900)
    at.run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    result = at.session_state["qw.result"]
    assert result.labelled and "3 ground-truth masks" in result.truth_source
    summary = at.table[0].value
    scores = dict(zip(summary["variant"], summary["vs ground truth"]))
    assert scores["float32"] == pytest.approx(1.0)
    assert scores["dynamic_range"] == pytest.approx(result.variants[1].accuracy, abs=5e-4)
    assert result.variants[0].accuracy == pytest.approx(1.0)
    assert 0.5 < result.variants[1].accuracy <= 1.0  # dynamic range: a real, slightly different mask
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert any("ground truth" in f["layout"]["title"]["text"] for f in charts), \
        [f["layout"]["title"]["text"] for f in charts]

    at.switch_page("pages/model_data.py").run()
    next(b for b in at.button if b.label == "Remove the ground truth").click().run()
    assert not at.exception and not at.error
    assert in_use(at).endswith("In use: none.") and not at.session_state["qw.inputs"].truth
    assert not truth[0].exists()


@pytest.mark.parametrize("files,message", [
    ("two masks", "no ground truth for 1 of 3 images (face_recognition_obama.jpg)"),
    ([("points.json", b'{"skimage_astronaut": [[1, 2]]}')], "points.json: expected a PNG mask named like its image"),
    ([("notes.txt", b"hello")], "notes.txt: not ground truth; expected PNG masks"),
])
def test_ground_truth_that_does_not_fit_is_one_line(files, message, masks):
    if files == "two masks":
        files = [(n, b) for n, b in masks.items() if "obama" not in n]
    at = give_truth(uploaded_segmenter(), files)
    assert len(at.error) == 1 and message in at.error[0].value, [e.value for e in at.error]
    assert "\n" not in at.error[0].value
    assert in_use(at).endswith("In use: none.") and not at.session_state["qw.inputs"].truth
    folder = at.session_state["qw.inputs"].folder
    assert not list(Path(folder).glob("truth-*"))  # nothing left behind


def test_a_reading_that_leaves_the_masks_nothing_to_score_removes_them_in_one_line(masks):
    from quant_core.tasks import Task

    at = give_truth(uploaded_segmenter(), list(masks.items()))
    truth = at.session_state["qw.inputs"].truth
    assert in_use(at).endswith("In use: 3 PNG masks.")
    task = next(s for s in at.selectbox if s.key and s.key.startswith("w.reading.") and s.key.endswith(".task"))
    task.set_value(Task.GENERIC).run()  # the mask read as any tensor: masks have no main output to score
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    (said,) = [w.value for w in at.warning]
    assert said.startswith("The ground truth (3 PNG masks) was removed: ground truth is for a mask, a class map "
                            "or landmarks") and "\n" not in said
    assert in_use(at).endswith("In use: none.") and not at.session_state["qw.inputs"].truth
    assert truth[0].parent == at.session_state["qw.inputs"].folder  # left in the session's folder, removed with it
    task = next(s for s in at.selectbox if s.key and s.key.startswith("w.reading.") and s.key.endswith(".task"))
    task.set_value(Task.SEGMENTATION).run()  # back: nothing to refit, nothing said
    assert not at.warning and not at.error

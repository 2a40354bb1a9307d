"""The app on models that are not classifiers (AppTest, real engine): the bundled selfie segmenter and face landmark
model picked on Model & data, their task and outputs said and overridable, compared, and drawn on Compare (masks,
points, the error per output); Ops, Report & share, a published link and a reload work on them; the ImageNet
classifier's page is unchanged afterwards."""

from __future__ import annotations

import json
import os
import re
import tempfile

import pytest

from conftest import REPO
from quant_core import Mode
from quant_core.tasks import Role, Task

os.environ.setdefault("QUANT_CACHE_DIR", tempfile.mkdtemp(prefix="qw-apptest-cache-"))
from streamlit.testing.v1 import AppTest

APP = str(REPO / "streamlit_app.py")
MODES = ["float32", "dynamic_range", "float16"]


def no_failures(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def open_sample(name: str) -> AppTest:
    """A new session on Model & data with the sample picked and a small comparison chosen (3 modes)."""
    from ui.settings import Settings

    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.session_state["qw.settings"] = Settings(modes=tuple(Mode(m) for m in MODES))
    at.selectbox(key="w.sample").set_value(name).run()
    no_failures(at)
    return at


def run_comparison(at: AppTest) -> AppTest:
    next(b for b in at.button if b.label == "Run the full comparison").click().run(timeout=900)
    at.run()  # the follow-up run a browser's timer starts after Compare's first paint: charts and images
    no_failures(at)
    assert at.title[0].value == "Compare"
    return at


def texts(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption])


def figures(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def titled(at: AppTest, words: str) -> dict:
    return next(f for f in figures(at) if words in f["layout"]["title"]["text"])


def open_tab(at: AppTest, label: str) -> AppTest:
    """Opens one of Compare's detail tabs (only the open one is drawn)."""
    assert [t.label for t in at.tabs] == ["Per image", "Error per output"]
    at.session_state["w.detail_tab"] = label
    at.run()
    no_failures(at)
    return at


@pytest.fixture(scope="module")
def segmentation() -> AppTest:
    """The selfie segmenter's Model & data page, then its comparison on Compare."""
    at = open_sample("selfie_segmentation")
    facts = {"markdown": [m.value for m in at.markdown], "metrics": {m.label: m.value for m in at.metric},
             "captions": [c.value for c in at.caption], "expanders": [e.label for e in at.expander],
             "dataframes": len(at.dataframe)}
    at.session_state["test.model_data"] = facts  # what Model & data showed before the run
    return run_comparison(at)


def test_model_and_data_says_the_segmenters_task_and_its_output(segmentation):
    facts = segmentation.session_state["test.model_data"]
    assert facts["metrics"]["Task"] == "segmentation" and "Classes" not in facts["metrics"]
    said = facts["markdown"][1]
    assert said.startswith("Task: **segmentation** (inferred from activation\\_10: one channel per pixel")
    assert "- activation\\_10 \\[1,256,256,1\\]: a mask, values in \\[0, 1\\]" in said
    assert "Task and output roles: change them if they are wrong" in facts["expanders"]
    assert any(c.startswith("These images are not labelled by class: the model is not a classifier") for c in
               facts["captions"])
    assert not any(c.startswith("Labels:") for c in facts["captions"]) and facts["dataframes"] == 0


def test_compare_draws_masks_their_differences_and_the_error_per_output(segmentation):
    at = segmentation
    result = at.session_state["qw.result"]
    assert result.task is Task.SEGMENTATION and [v.name for v in result.variants] == MODES
    table = at.table[0].value
    assert list(table["variant"]) == MODES and "mask IoU" in table.columns
    assert "Confusion matrix" not in [s.value for s in at.subheader]
    # Per image, the tab open first: 7 photos, 6 on the first page: float32's mask, then each variant's mask and
    # its difference map (one picture); the error charts are not drawn until their tab is opened.
    assert [t.label for t in at.tabs] == ["Per image", "Error per output"]
    assert len(at.get("image")) == 6 * (1 + 2) and not [f for f in figures(at) if "Error per output" in
                                                         f["layout"]["title"]["text"]]
    assert at.number_input(key="w.view_page").value == 1
    body = texts(at)
    ious = [float(x) for x in re.findall(r"IoU (\d\.\d{3}) with float32", body)]
    dynamic = next(f for f in result.variant("dynamic_range").outputs if f.index == 0).mask
    assert len(ious) == 6 and min(ious) == pytest.approx(min(dynamic.per_image_iou), abs=5e-4)
    assert body.count("the same mask as float32's") == 6  # float16's masks are float32's
    # The error per output: dynamic range's measured SQNR; float16's bar is exact (identical outputs).
    open_tab(at, "Error per output")
    assert not at.get("image")
    body = texts(at)
    bars = {t["name"]: t for t in titled(at, "Error per output")["data"]}
    whole = next(f for f in result.variant("dynamic_range").outputs if f.index == 0).whole
    assert bars["dynamic_range"]["y"][0] == pytest.approx(whole.sqnr_db) and 10 < whole.sqnr_db < 60
    assert bars["float16"]["text"] == ["exact"] and bars["float16"]["marker"]["pattern"]["shape"] == ["/"]
    assert "activation_10 has no channels to tell apart: its SQNR is the output's, above." in body


def test_a_display_change_redraws_only_the_views(segmentation):
    at = open_tab(segmentation, "Per image")
    at.multiselect(key="w.view_variants").set_value(["float32", "float16"]).run()
    no_failures(at)
    assert len(at.get("image")) == 6 * (1 + 1)
    at.number_input(key="w.view_page").set_value(2).run()
    assert len(at.get("image")) == 1 * (1 + 1)  # the seventh photo
    at.multiselect(key="w.view_variants").set_value(["float32", "dynamic_range", "float16"]).run()
    at.number_input(key="w.view_page").set_value(1).run()


def test_ops_and_report_work_on_a_segmentation_and_a_published_link_shows_its_views(segmentation):
    at = segmentation
    at.switch_page("pages/ops.py").run()
    no_failures(at)
    assert at.title[0].value == "Ops" and len(at.expander) == len(MODES)
    at.switch_page("pages/report.py").run()
    no_failures(at)
    labels = [d.label for d in at.get("download_button")]
    assert {"HTML report", "Numbers (JSON)", "Numbers (CSV)", "All models + recipes (.zip)"} <= set(labels)
    assert labels.count(".tflite") == len(MODES)
    next(b for b in at.button if b.label == "Publish").click().run()
    no_failures(at)
    share = next(c.value for c in at.code if "view=" in c.value and "delete=" not in c.value)

    reader = AppTest.from_file(APP, default_timeout=120)
    reader.query_params["view"] = share.split("view=")[1]
    reader.run()
    reader.run()  # the follow-up run: charts and views
    no_failures(reader)
    assert reader.title[0].value == "Compare" and "A published comparison" in reader.info[0].value
    assert [t.label for t in reader.tabs] == ["Per image", "Error per output"]
    assert len(reader.get("image")) == 6 * (1 + 2)  # drawn from the views kept in the result
    assert len(re.findall(r"IoU \d\.\d{3} with float32", texts(reader))) == 6


@pytest.fixture(scope="module")
def landmarks() -> AppTest:
    """The face landmark model with its presence score read as a generic tensor, compared."""
    at = open_sample("face_landmark")
    said = at.markdown[1].value
    assert said.startswith("Task: **landmarks** (inferred from conv2d\\_21: 1404 values as 468 points of 3")
    assert "- conv2d\\_31 \\[1,1,1,1\\]: a score, values in" in said
    at.selectbox(key="w.reading." + _ident(at) + ".role.1.score").set_value(Role.GENERIC).run()
    no_failures(at)
    assert at.session_state["qw.reading"].roles == (("conv2d_31", Role.GENERIC),)
    assert "- conv2d\\_31 \\[1,1,1,1\\]: a tensor (set by you), values in" in at.markdown[1].value
    assert next(e for e in at.expander if e.label.startswith("Task and output roles")).proto.expanded
    return run_comparison(at)


def _ident(at: AppTest) -> str:
    """The reading widgets' key part for the model in use."""
    key = next(s.key for s in at.selectbox if s.key and s.key.startswith("w.reading.") and s.key.endswith(".task"))
    return key.split(".")[2]


def test_a_role_set_on_model_and_data_enters_the_comparison(landmarks):
    result = landmarks.session_state["qw.result"]
    assert result.task is Task.LANDMARKS
    presence = result.output_specs[1]
    assert presence.role is Role.GENERIC and presence.set_by_user
    body = texts(landmarks)
    assert len(re.findall(r"mean point error \d+\.\d\d px from float32's · PCK@5% \d+%", body)) == 6
    assert body.count("the same points as float32's") == 6  # float16
    assert len(landmarks.get("image")) == 6 * 3  # float32's points, then each variant's over them
    open_tab(landmarks, "Error per output")
    body = texts(landmarks)
    # Per point: the 468 points' SQNR, dynamic range's worst point starred where the result says it is.
    per_point = titled(landmarks, "conv2d_21: SQNR per point")
    dynamic = next(f for f in result.variant("dynamic_range").outputs if f.index == 0)
    line = next(t for t in per_point["data"] if t["name"] == "dynamic_range")
    star = next(t for t in per_point["data"] if t.get("text") == [f"worst: point {dynamic.worst_channel}"])
    assert len(line["y"]) == 468 and star["x"] == [dynamic.worst_channel]
    assert min(y for y in line["y"] if y is not None) == pytest.approx(star["y"][0])
    assert re.search(r"SQNR per coordinate, over every point: dynamic_range: x [\d.]+ dB, y [\d.]+ dB, z [\d.]+ dB",
                     body)
    landmarks.selectbox(key="w.output_detail").set_value("conv2d_31").run()
    no_failures(landmarks)
    assert "conv2d_31 has no channels to tell apart" in texts(landmarks)


def test_the_reading_goes_into_links_and_comes_back_with_a_reload(landmarks):
    at = landmarks
    saved = at.query_params["r"]
    at.switch_page("pages/report.py").run()
    no_failures(at)
    link = next(c.value for c in at.code if "sample=face_landmark" in c.value)
    assert "roles=conv2d_31%3Dgeneric" in link
    again = AppTest.from_file(APP, default_timeout=120)
    again.query_params["r"] = saved
    again.run()
    no_failures(again)
    assert again.session_state["qw.reading"].roles == (("conv2d_31", Role.GENERIC),)
    assert "a tensor (set by you)" in again.markdown[1].value


def test_a_link_with_a_reading_opens_the_sample_read_that_way_and_a_bad_one_is_ignored():
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params.update({"sample": "face_landmark", "roles": "conv2d_31=generic"})
    at.run()
    no_failures(at)
    assert at.session_state["qw.reading"].roles == (("conv2d_31", Role.GENERIC),)
    assert "a tensor (set by you)" in at.markdown[1].value
    bad = AppTest.from_file(APP, default_timeout=300)
    bad.query_params.update({"sample": "face_landmark", "roles": "conv2d_31=halo"})
    bad.run()
    assert next(t.value for t in bad.toast).startswith("Ignored the link's settings: unknown role 'halo'")
    assert "qw.reading" not in bad.session_state or bad.session_state["qw.reading"].inferred


def test_back_on_the_imagenet_sample_the_classifier_page_is_unchanged_and_the_reading_gone(landmarks):
    at = landmarks
    at.switch_page("pages/model_data.py").run()
    at.selectbox(key="w.sample").set_value("mobilenet_v2_imagenet").run()
    no_failures(at)
    assert at.session_state["qw.reading"].inferred
    assert {m.label: m.value for m in at.metric} == {"Input": "224×224×3", "Classes": "1000",
                                                      "Parameters": "3,538,984", "Format": "keras"}
    assert not any(m.value.startswith("Task:") for m in at.markdown)  # a classifier says its task in an expander
    assert any(c.value.startswith("Labels: ") for c in at.caption) and len(at.dataframe) == 1
    expander = next(e for e in at.expander if e.label.startswith("Task: **classification** (inferred from "))
    assert not expander.proto.expanded

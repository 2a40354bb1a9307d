"""Compare on small Keras models built here (AppTest with the real comparison injected): a two-headed model (a mask
and keypoint heatmaps) shows both outputs' error, each output's views, and heatmap peaks as points; an embedder,
whose output has no picture, lists each image's cosine similarity."""

from __future__ import annotations

import json
import os
import tempfile

import pytest

from conftest import REPO
from quant_core import ArtifactCache, CompareOptions, CompareRequest, CompareResult, Mode, Recipe, run_compare
from quant_core.tasks import Role, Task

os.environ.setdefault("QUANT_CACHE_DIR", tempfile.mkdtemp(prefix="qw-apptest-cache-"))
from streamlit.testing.v1 import AppTest

APP = str(REPO / "streamlit_app.py")
SIDE = 32
INPUTS: list = []


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A mask and 3 keypoint heatmaps [1, 8, 8, 3] from one trunk, and an embedder (deterministic weights)."""
    import keras

    keras.utils.set_random_seed(3)
    folder = tmp_path_factory.mktemp("multi_output")
    inputs = keras.Input((SIDE, SIDE, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    hidden = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    mask = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid", name="segment_mask")(hidden)
    heatmaps = keras.layers.Conv2D(3, 3, strides=4, padding="same", name="keypoint_heatmap")(hidden)
    embedding = keras.layers.Dense(32, name="embedding")(keras.layers.GlobalAveragePooling2D()(hidden))
    paths = {"two_heads": folder / "two_heads.keras", "embedder": folder / "embedder.keras"}
    keras.Model(inputs, [mask, heatmaps]).save(paths["two_heads"])
    keras.Model(inputs, embedding).save(paths["embedder"])
    return paths


def compare(model, image_dir, tmp_path_factory) -> CompareResult:
    request = CompareRequest(str(model), (str(image_dir),), None, CompareOptions(
        recipes=(Recipe(Mode.INT8, calibration_count=24), Recipe(Mode.FLOAT16)), measure_latency=False))
    return run_compare(request, cache=ArtifactCache(tmp_path_factory.mktemp("multi-cache")))


def compare_page(result: CompareResult, model, image_dir) -> AppTest:
    from ui.inputs import Inputs, files_digest

    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["qw.inputs"] = Inputs("your model", model, (image_dir,), None,
                                           digest=files_digest(model, (image_dir,), None))
    at.session_state["qw.result"] = result
    at.switch_page("pages/compare.py").run()
    at.run()  # the follow-up run: charts and views
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_tab(at: AppTest, label: str) -> AppTest:
    """Opens one of Compare's detail tabs (only the open one is drawn)."""
    at.session_state["w.detail_tab"] = label
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def figure(at: AppTest, words: str) -> dict:
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return next(f for f in specs if words in f["layout"]["title"]["text"])


@pytest.fixture(scope="module")
def two_heads(models, image_dir, tmp_path_factory) -> tuple[CompareResult, AppTest]:
    result = compare(models["two_heads"], image_dir, tmp_path_factory)
    assert sorted(s.role.value for s in result.output_specs) == ["heatmaps", "mask"]
    assert result.task is Task.LANDMARKS  # the heatmaps' keypoints outrank the mask
    return result, compare_page(result, models["two_heads"], image_dir)


def test_every_output_of_a_two_headed_model_has_its_error_bars(two_heads):
    result, at = two_heads
    open_tab(at, "Error per output")
    bars = {t["name"]: t for t in figure(at, "Error per output")["data"]}
    assert set(bars) == {"int8", "float16"}
    names = [s.name for s in result.output_specs]
    assert [x.split("<br>")[0] for x in bars["int8"]["x"]] == names
    int8 = result.variant("int8")
    for k, spec in enumerate(result.output_specs):
        f = next(f for f in int8.outputs if f.index == spec.index)
        assert bars["int8"]["y"][k] == pytest.approx(f.whole.sqnr_db)
    # The heatmaps, chosen first (the main output): SQNR per heatmap, int8's worst starred where the result says.
    heat = next(s for s in result.output_specs if s.role is Role.HEATMAPS)
    assert at.selectbox(key="w.output_detail").value == heat.name
    chart = figure(at, f"{heat.name}: SQNR per heatmap")
    worst = next(f for f in int8.outputs if f.index == heat.index).worst_channel
    assert next(t for t in chart["data"] if t.get("text") == [f"worst: heatmap {worst}"])["x"] == [worst]


def test_each_pictured_output_has_its_views_and_heatmaps_show_their_peaks(two_heads):
    result, at = two_heads
    open_tab(at, "Per image")
    heat = next(s for s in result.output_specs if s.role is Role.HEATMAPS)
    mask = next(s for s in result.output_specs if s.role is Role.MASK)
    assert at.selectbox(key="w.view_output").options == [heat.name, mask.name]  # the main output first
    # Heatmap peaks as points: float32's, then int8's and float16's over them, 6 images to a page.
    assert len(at.get("image")) == 6 * 3
    captions = " ".join(c.value for c in at.caption)
    assert "float32's points in green" in captions
    # Each variant's caption says how far its peaks are from float32's on that image, the furthest images first.
    errors = next(f for f in result.variant("int8").outputs if f.index == heat.index).landmarks.per_image_error
    said = captions.count("the same points as float32's") + captions.count("mean point error")
    assert said == 6 * 2 and captions.count("mean point error") == min(6, sum(bool(e) for e in errors[:12]))
    at.selectbox(key="w.view_output").set_value(mask.name).run()
    assert not at.exception
    assert len(at.get("image")) == 6 * (1 + 2)  # masks, and each variant's mask beside its difference map
    assert "the mask in blue" in " ".join(c.value for c in at.caption)


def test_an_embedders_images_list_their_cosine_similarity(models, image_dir, tmp_path_factory):
    result = compare(models["embedder"], image_dir, tmp_path_factory)
    assert result.task is Task.EMBEDDING
    at = compare_page(result, models["embedder"], image_dir)
    assert [t.label for t in at.tabs] == ["Per image", "Error per output"]  # the images' table in the first
    table = at.dataframe[-1].value
    cosines = next(f for f in result.variant("int8").outputs if f.index == 0).embedding.per_image_cosine
    row = table[table["variant"] == "int8"].iloc[0]
    assert [row[i.file.split("/")[-1]] for i in result.images] == pytest.approx(list(cosines))
    assert not at.get("image")

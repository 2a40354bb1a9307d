"""The Model & data page: what it shows first, class order and preview, and uploads that never lose a result."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from conftest import REPO
from quant_core.inputs.images import Labels, class_counts, spread_over_classes

os.environ.setdefault("QUANT_CACHE_DIR", tempfile.mkdtemp(prefix="qw-apptest-cache-"))
from streamlit.testing.v1 import AppTest

APP = str(REPO / "streamlit_app.py")
RUN = "Run the full comparison"
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def test_class_counts_follow_the_class_index_with_unlabelled_last():
    labels = Labels(("cat", "ant", "dog", "bee"), (2, None, 0, 2, 3, None, 2), "test")
    assert class_counts(labels) == (("cat", 1), ("dog", 3), ("bee", 1), ("unlabelled", 2))  # "ant": no image


@pytest.mark.parametrize(("indices", "limit", "expected"), [
    ((1, 1, 1, 0, 0, 2), 16, (3, 0, 5, 4, 1, 2)),  # first of each class (index order), then the second ones...
    ((1, 1, 1, 0, 0, 2), 4, (3, 0, 5, 4)),
    ((None, 0, None, 0), 3, (1, 0, 3)),  # unlabelled images are one group, last
    ((None, None, None), 2, (0, 1)),  # nothing labelled: the first images
    ((), 16, ()),
])
def test_preview_takes_images_round_robin_over_classes(indices, limit, expected):
    assert spread_over_classes(indices, limit=limit) == expected


def test_preview_of_the_bundled_digits_shows_every_class():
    digits = tuple(k % 10 for k in range(5)) + (3,) * 100 + tuple(range(10)) * 2  # class 3 first and dominant
    chosen = spread_over_classes(digits, limit=16)
    assert sorted(digits[p] for p in chosen[:10]) == list(range(10)) and len(chosen) == 16
    assert chosen == spread_over_classes(digits, limit=16)  # deterministic


def _app(sample: str = "digits_cnn") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params.update({"sample": sample, "modes": "float32"})  # a one-variant run: seconds
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _order(at: AppTest) -> list[str]:
    """The page's top-level elements in the order they are drawn, as 'type label-or-text'."""
    return [f"{n.type} {getattr(n, 'label', None) or getattr(n, 'value', '')}" for n in at.main.children.values()]


def _upload(at: AppTest, model: tuple[str, bytes], images: list[tuple[str, bytes]]) -> AppTest:
    at.radio(key="w.source").set_value("Upload my own").run()
    at.file_uploader[0].set_value((model[0], model[1], "application/octet-stream"))
    at.file_uploader[1].set_value([(n, b, "image/png") for n, b in images])
    next(b for b in at.button if b.label == "Use these files").click().run(timeout=300)
    assert not at.exception, [e.value for e in at.exception]
    return at


def _png(colour: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buf, format="PNG")
    return buf.getvalue()


def _run_and_return(at: AppTest) -> AppTest:
    next(b for b in at.button if b.label == RUN).click().run(timeout=600)
    assert not at.exception and at.title[0].value == "Compare"
    at.switch_page("pages/model_data.py").run()
    return at


def test_the_run_button_comes_right_after_the_summary_and_before_the_details():
    at = _app()
    order = _order(at)
    position = {kind: next(k for k, e in enumerate(order) if e.startswith(kind))
                for kind in ("subheader What we understood", "button", "expander Preprocessing", "dataframe")}
    assert order[position["button"]].endswith(RUN)
    assert (position["subheader What we understood"] < position["button"] < position["expander Preprocessing"]
            < position["dataframe"])


def test_class_table_is_in_class_order_and_the_preview_spreads_over_classes():
    at = _app()
    table = at.dataframe[0].value
    assert list(table["class"]) == DIGITS and list(table["images"]) == [12] * 10
    shown = [i.proto.imgs[0].caption for i in at.get("image")]  # e.g. "7_0.png": class 7
    assert len(shown) == 16
    classes = [name.split("_")[0] for name in shown]
    assert set(classes) == set("0123456789") and max(classes.count(c) for c in classes) == 2


def test_upload_mode_shows_only_the_form_until_files_are_accepted(model_files, image_dir):
    at = _app()
    at.radio(key="w.source").set_value("Upload my own").run()
    assert not at.exception
    assert RUN not in [b.label for b in at.button]  # nothing that would run the sample instead
    assert not [s.value for s in at.subheader if s.value.startswith("What we understood")] and not at.metric
    assert any("keeps working on the bundled sample digits_cnn" in c.value for c in at.caption)
    images = [(p.name, p.read_bytes()) for p in sorted(image_dir.rglob("*.png"))[:6]]
    _upload(at, ("tiny.keras", model_files["keras"].read_bytes()), images)
    assert not at.error, [e.value for e in at.error]
    assert "What we understood: tiny" in [s.value for s in at.subheader]
    assert RUN in [b.label for b in at.button]


def _uploads_in(at: AppTest) -> list[Path]:
    return sorted(Path(at.session_state["qw.workdir"]).glob("upload-*"))


@pytest.mark.parametrize(("model", "message"), [
    (("weights.pt", b"torch"), "weights.pt: unsupported model file"),  # refused by type, before anything is saved
    (("broken.keras", b"not a model"), "not a valid .keras file"),  # saved, then refused by the engine
])
def test_a_refused_upload_keeps_the_sample_result(model, message):
    at = _run_and_return(_app())
    result, inputs = at.session_state["qw.result"], at.session_state["qw.inputs"]
    assert result is not None
    _upload(at, model, [("a.png", _png("red"))])
    assert len(at.error) == 1 and message in at.error[0].value
    assert at.session_state["qw.result"] is result and at.session_state["qw.inputs"] is inputs
    assert not _uploads_in(at)  # the refused files' folder is gone
    models = at.session_state["qw.models"]  # the result's downloads: kept in the session's folder, untouched
    assert all(models.model_bytes(v.tflite_sha256) for v in result.variants)
    at.switch_page("pages/compare.py").run()
    assert not at.exception and list(at.table[0].value["variant"]) == ["float32"]
    at.switch_page("pages/report.py").run()
    assert not at.exception and not [i.value for i in at.info if "No comparison yet" in i.value]


def test_a_refused_upload_keeps_the_previous_upload_its_files_and_its_result(model_files, image_dir):
    images = [(p.name, p.read_bytes()) for p in sorted(image_dir.rglob("*.png"))[:6]]
    at = _upload(_app(), ("tiny.keras", model_files["keras"].read_bytes()), images)
    at = _run_and_return(at)
    result, inputs = at.session_state["qw.result"], at.session_state["qw.inputs"]
    assert result is not None and inputs.folder is not None and _uploads_in(at) == [inputs.folder]
    _upload(at, ("broken.keras", b"not a model"), [("a.png", _png("red"))])
    assert len(at.error) == 1 and "not a valid .keras file" in at.error[0].value
    assert at.session_state["qw.result"] is result and at.session_state["qw.inputs"] is inputs
    assert _uploads_in(at) == [inputs.folder] and inputs.model.is_file()  # the files in use were not touched
    at.switch_page("pages/compare.py").run()
    assert not at.exception and list(at.table[0].value["variant"]) == ["float32"]
    # a new accepted upload replaces it: the old files are removed with its result
    at.switch_page("pages/model_data.py").run()
    _upload(at, ("tiny.keras", model_files["keras"].read_bytes()), images[:3])
    assert not at.error and at.session_state["qw.result"] is None
    assert not inputs.folder.exists() and _uploads_in(at) == [at.session_state["qw.inputs"].folder]

"""Publish on Report & share, open the link read-only, delete with the private link (AppTest, real store)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest

from conftest import REPO
from quant_core import CompareOptions, CompareRequest, CompareResult, Mode, Recipe, run_compare
from quant_core.cache import ArtifactCache
from quant_core.store.publications import PublicationStore

os.environ.setdefault("QUANT_CACHE_DIR", tempfile.mkdtemp(prefix="qw-apptest-cache-"))
from streamlit.testing.v1 import AppTest

APP = str(REPO / "streamlit_app.py")
MODELS: list[ArtifactCache] = []
FILES: list = []


@pytest.fixture(scope="module")
def result(model_files, image_dir, labels_file, tmp_path_factory) -> CompareResult:
    MODELS.append(ArtifactCache(tmp_path_factory.mktemp("publish-cache")))
    FILES.extend([model_files["keras"], (image_dir,), labels_file])
    request = CompareRequest(str(model_files["keras"]), (str(image_dir),), str(labels_file), CompareOptions(
        recipes=(Recipe(Mode.FLOAT16), Recipe(Mode.INT8)), measure_latency=False))
    return run_compare(request, cache=MODELS[0])


def owner(result: CompareResult) -> AppTest:
    """The owner's session: the tiny model's files in use and their comparison done."""
    from ui.inputs import Inputs, files_digest

    model, images, labels = FILES
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["qw.inputs"] = Inputs("your model tiny.keras", model, images, labels,
                                           digest=files_digest(model, images, labels))
    at.session_state["qw.result"] = result
    at.session_state["qw.models"] = MODELS[0]
    at.switch_page("pages/report.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def publish(result: CompareResult, *, models: bool = False, anonymise: bool = False,
            source: bool = False) -> tuple[str, str]:
    """Publishes as the owner; returns the share link and the delete link shown."""
    at = owner(result)
    at.checkbox(key="w.pub_models").set_value(models)
    at.checkbox(key="w.pub_source").set_value(source)
    at.checkbox(key="w.pub_anon").set_value(anonymise)
    next(b for b in at.button if b.label == "Publish").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    share, delete = [c.value for c in at.code if "view=" in c.value]
    return share, delete


def visit(link: str, page: str | None = None) -> AppTest:
    """A stranger's session opened on a link (its query string)."""
    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in re.findall(r"[?&](\w+)=([^&]+)", link):
        at.query_params[key] = value
    at.run()
    page = page or ("pages/report.py" if "/report?" in link else None)  # AppTest does not route by URL path
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_published_link_opens_compare_read_only_with_everything_shown(result):
    share, delete = publish(result)
    assert re.fullmatch(r"\S*/\?view=[\w-]{22}", share)  # AppTest has no address: the links start at "/"
    assert re.fullmatch(r"\S*/report\?view=[\w-]{22}&delete=[\w-]{22}", delete)
    at = visit(share)
    assert at.title[0].value == "Compare"
    assert "A published comparison, read-only: published on" in at.info[0].value
    assert f"model tiny, {len(result.images)} images" in at.info[0].value
    assert not any("What if" in e.label for e in at.expander)  # nothing to run
    assert list(at.table[0].value["variant"]) == ["float32", "float16", "int8"]
    assert "Which variant to ship" in [s.value for s in at.subheader]
    assert not at.get("plotly_chart")  # the first paint: verdict and table; the rest follows by itself
    at.run()
    grid = next(h.value for h in at.get("html") if "data-qw-grid" in h.value)
    # charts, and the per-image grid with the published thumbnails
    assert len(at.get("plotly_chart")) >= 4
    assert grid.count('<img src="data:image/png;base64,') == min(12, len(result.images))
    at.switch_page("pages/ops.py").run()
    assert not at.exception and at.title[0].value == "Ops"
    at.switch_page("pages/report.py").run()
    assert "The owner published the numbers without the .tflite files." in [c.value for c in at.caption]
    assert not any(b.label == "Publish" for b in at.button)  # a reader cannot publish or delete
    assert not any(b.label == "Delete it now" for b in at.button)


def test_published_models_download_and_anonymised_names(result):
    share, _ = publish(result, models=True, anonymise=True)
    at = visit(share, "pages/report.py")
    labels = [b.label for b in at.get("download_button")]
    assert "All models + recipes (.zip)" in labels and labels.count(".tflite") == 3
    at.switch_page("pages/compare.py").run()
    grid = next(h.value for h in at.get("html") if "data-qw-grid" in h.value)
    text = " ".join(c.value for c in at.caption) + grid
    assert "image_001.png" in text and not re.search(r"(?<!image_)\b\d{3}\.png", text)  # the originals: 000.png...


def test_the_uploaded_model_is_published_only_when_ticked(result):
    with_source, _ = publish(result, source=True)
    labels = [b.label for b in visit(with_source, "pages/report.py").get("download_button")]
    assert "Original model" in labels
    without, _ = publish(result)
    assert "Original model" not in [b.label for b in visit(without, "pages/report.py").get("download_button")]
    store = PublicationStore(Path(os.environ["QW_STORE_DIR"]))  # the bytes are the upload's, byte for byte
    assert store.blob(with_source.rsplit("=", 1)[1], "source/model.keras") == FILES[0].read_bytes()


def test_the_delete_link_deletes_and_other_tokens_do_not(result):
    share, delete = publish(result)
    _, other = publish(result)
    wrong = delete.rsplit("=", 1)[0] + "=" + other.rsplit("=", 1)[1]  # another publication's token
    at = visit(wrong)
    assert at.title[0].value == "Report & share"
    next(b for b in at.button if b.label == "Delete it now").click().run()
    assert "no such publication, or this delete link does not match it" in at.error[0].value
    assert visit(share).table  # still there
    at = visit(delete)
    next(b for b in at.button if b.label == "Delete it now").click().run()
    assert [s.value for s in at.success] == ["Deleted."]
    gone = visit(share)
    assert "no such publication" in gone.error[0].value and not gone.table


@pytest.mark.parametrize("link", ["http://x/?view=nope", "http://x/?view=" + "A" * 22, "http://x/?view=../../etc"])
def test_unknown_links_say_so_in_one_line(link):
    at = visit(link)
    assert len(at.error) == 1 and "no such publication" in at.error[0].value and not at.table

"""Reload-safe sessions and sample links that open on their results (AppTest, real engine and store)."""

from __future__ import annotations

import os
import tempfile

from conftest import REPO

os.environ.setdefault("QUANT_CACHE_DIR", tempfile.mkdtemp(prefix="qw-apptest-cache-"))
from streamlit.testing.v1 import AppTest

APP = str(REPO / "streamlit_app.py")
LINK = {"sample": "digits_cnn", "modes": "float32,int8", "cal": "20", "run": "1"}


def session(params: dict[str, str], page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=600)
    at.query_params.update(params)
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def value(at: AppTest, key: str):
    """A session-state value, or None."""
    return at.session_state[key] if key in at.session_state else None  # noqa: SIM401 - AppTest state has no get()


def finished(at: AppTest) -> AppTest:
    """Reruns until the session's run has been collected."""
    for _ in range(120):
        if value(at, "qw.result") is not None:
            return at
        at.run()
    raise AssertionError("the comparison did not finish")


def test_a_sample_link_opens_on_compare_with_its_results_and_a_reload_brings_them_back():
    at = finished(session(LINK))
    assert at.title[0].value == "Compare"
    assert list(at.table[0].value["variant"]) == ["float32", "int8"]
    saved = at.query_params["r"]
    assert isinstance(saved, str) and len(saved) == 22  # a private id in the address
    first = at.session_state["qw.result"]

    again = session({"r": saved}, "pages/compare.py")  # a reload: a new session with the same address
    assert again.session_state["qw.result"] == first
    assert value(again, "qw.run") is None  # nothing is computed
    assert list(again.table[0].value["variant"]) == ["float32", "int8"]
    assert again.slider(key="w.cmp.cal_count").value == 20  # the options it was run with, for further what-ifs
    assert again.query_params["r"] == saved


def test_a_new_result_replaces_the_saved_one():
    at = finished(session(LINK))
    saved = at.query_params["r"]
    at.toggle(key="w.cmp.mode.int8").set_value(False).run()
    for _ in range(120):
        if at.query_params.get("r") != saved:
            break
        at.run()
    newer = at.query_params["r"]
    assert newer != saved
    assert list(session({"r": newer}, "pages/compare.py").table[0].value["variant"]) == ["float32"]
    gone = session({"r": saved}, "pages/compare.py")  # the replaced record was deleted
    assert "No comparison yet" in gone.info[0].value and "r" not in gone.query_params


def test_an_unknown_saved_id_starts_clean():
    at = session({"r": "A" * 22}, "pages/compare.py")
    assert "No comparison yet" in at.info[0].value and not at.error


def test_an_uploads_result_comes_back_to_read_without_its_files(model_files, image_dir, labels_file, tmp_path):
    """The record a session keeps for an upload: the result, its thumbnails and options, not the files."""
    import json
    from pathlib import Path

    import numpy as np

    from quant_core import ArtifactCache, CompareOptions, CompareRequest, Mode, Recipe, run_compare
    from quant_core.store.publications import Kind, PublicationStore, thumbnail_name
    from ui.published import png_bytes

    request = CompareRequest(str(model_files["keras"]), (str(image_dir),), str(labels_file), CompareOptions(
        recipes=(Recipe(Mode.INT8),), measure_latency=False))
    result = run_compare(request, cache=ArtifactCache(tmp_path / "cache"))
    files = {thumbnail_name(k): png_bytes(np.full((8, 8, 3), 40 * k % 255, np.uint8)) for k in range(3)}
    files["session/context.json"] = json.dumps({"sample": None, "query": {"modes": "float32,int8"}}).encode()
    saved = PublicationStore(Path(os.environ["QW_STORE_DIR"])).publish(result, files, kind=Kind.SESSION)
    at = session({"r": saved.id}, "pages/compare.py")
    assert value(at, "qw.result") == result
    assert "Brought back after a reload" in at.info[0].value
    assert not any("What if" in e.label for e in at.expander)  # no files to build from
    at.run()  # Compare's follow-up run: the rest of the page, with the kept thumbnails
    grid = next(h.value for h in at.get("html") if "data-qw-grid" in h.value)  # the per-image grid, one block
    assert list(at.table[0].value["variant"]) == ["float32", "int8"]
    assert grid.count('<img src="data:image/png;base64,') == 3  # the kept thumbnails, inline as they were kept
    at.switch_page("pages/report.py").run()
    assert not at.exception and any(b.label == "Publish" for b in at.button)  # it can still be published
    # Its models download while the server's cache has them (another test may have built the same bytes),
    # and the page says they are gone when it does not; never an error.
    gone = any("no longer kept on the server" in c.value for c in at.caption)
    assert gone != any(b.label == "All models + recipes (.zip)" for b in at.get("download_button"))

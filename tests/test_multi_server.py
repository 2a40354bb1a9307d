"""Two app servers sharing one PostgreSQL database and one blob folder: a publication made through
one opens on the other, and a deletion through either is seen by both (real servers, real browser)."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest

from live_server import CHROMIUM, DONE, ERROR, IDLE, LAUNCH_ARGS, SUMMARY_JS, streamlit_server
from quant_core import CompareOptions, CompareRequest, Mode, Recipe, run_compare
from quant_core.cache import ArtifactCache
from quant_core.store.publications import PublicationStore, thumbnail_name
from ui.published import png_bytes

pytestmark = pytest.mark.browser


def test_a_publication_opens_on_every_server_of_a_deployment(model_files, image_dir, labels_file, tmp_path):
    from pg_server import postgres_server
    from playwright.sync_api import sync_playwright

    request = CompareRequest(str(model_files["keras"]), (str(image_dir),), str(labels_file), CompareOptions(
        recipes=(Recipe(Mode.INT8),), measure_latency=False))
    result = run_compare(request, cache=ArtifactCache(tmp_path / "cache"))
    folder = tmp_path / "shared-store"
    with postgres_server() as url:
        env = {"QW_DATABASE_URL": url, "QW_STORE_DIR": str(folder),
               "QUANT_CACHE_DIR": tempfile.mkdtemp(prefix="qw-multi-cache-")}
        store = PublicationStore(folder, url=url)  # the owner's server, as far as the store is concerned
        receipt = store.publish(result, {thumbnail_name(0): png_bytes(np.full((8, 8, 3), 200, np.uint8))})
        with streamlit_server(env) as first, streamlit_server(env) as second, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.set_default_timeout(120_000)
            tables = []
            for server in (first, second):
                page.goto(f"{server.url}/?view={receipt.id}")
                page.wait_for_selector(DONE)
                page.wait_for_selector('[data-testid="stTable"] table')
                assert "A published comparison, read-only" in page.inner_text("body")
                tables.append(page.evaluate(SUMMARY_JS))
            assert tables[0] == tables[1] and list(tables[0]) == ["float32", "int8"]
            page.goto(f"{second.url}/report?view={receipt.id}&delete={receipt.delete_token}")
            page.wait_for_selector(IDLE)
            page.get_by_role("button", name="Delete it now").click()
            page.wait_for_selector("text=Deleted.")
            page.goto(f"{first.url}/?view={receipt.id}")  # the other server sees the deletion
            page.wait_for_selector(IDLE)
            assert "no such publication" in page.locator(ERROR).all_inner_texts()[0]
            browser.close()
        assert not [p for p in (folder / "blobs").rglob("*") if p.is_file()]  # its blob went with it

"""Issue 12's promise, measured: a stakeholder opens a published link and sees the comparison.

The ImageNet sample's full comparison (seven variants, 22 photos with thumbnails) is published
into a private store, then a real `streamlit run` is opened on its link by Playwright driving
Debian's chromium, each time in a new browser context (a stakeholder's first visit). Each open
records, from navigation start, when the verdict, the summary table and the whole page (charts
and thumbnails, the script idle) appear (median and max of 5):
  - publish: `PublicationStore.publish` with the 22 thumbnails (median of 5);
  - the published link (`?view=<id>`);
  - for scale, in the same run: a bare Streamlit page (a title and a 7-row styled table, nothing
    else) on its own server, the floor any Streamlit page has on this machine; and the same
    comparison by a sample link answered from the results cache (`?sample=...&run=1`), which is
    what sharing was before publications.
Also with the store on PostgreSQL (a private server on loopback), when Debian's PostgreSQL is installed.

Usage: .venv/bin/python bench/bench_publish.py [--no-write]
Writes its section of bench/RESULTS.md (between the publish-bench markers).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, UTC
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
from live_server import CHROMIUM, DONE, LAUNCH_ARGS, streamlit_server  # noqa: E402  pylint: disable=wrong-import-position
from results_md import report  # noqa: E402  pylint: disable=wrong-import-position

from quant_core import ArtifactCache, CompareRequest, run_compare  # noqa: E402  pylint: disable=wrong-import-position
from quant_core.store.publications import PublicationStore, thumbnail_name  # noqa: E402  pylint: disable=wrong-import-position

SAMPLE = REPO / "sample_models"
REPEATS = 5


def comparison(cache_dir: Path):
    """The one-click comparison of the ImageNet sample (measured now, or from this cache)."""
    request = CompareRequest(str(SAMPLE / "mobilenet_v2_imagenet.keras"), (str(SAMPLE / "imagenet_images"),),
                             str(SAMPLE / "imagenet_labels.txt"))
    return run_compare(request, cache=ArtifactCache(cache_dir))


def thumbnails(result) -> dict[str, bytes]:
    from quant_core.inputs.images import load_images
    from ui.engine import _small
    from ui.published import png_bytes

    items = load_images([SAMPLE / "imagenet_images"]).items
    pixels = {item.name: _small(item.pixels, 96) for item in items}
    return {thumbnail_name(k): png_bytes(pixels[i.file]) for k, i in enumerate(result.images) if i.file in pixels}


# Records when each part first appears, in ms from navigation start (set before any page script runs).
_MARKS = """
window.__qw = {};
const parts = {verdict: '[data-testid="stHeading"] h3', table: '[data-testid="stTable"] table', all: 'DONE'};
const mark = () => { for (const [k, s] of Object.entries(parts))
  if (!(k in window.__qw) && document.querySelector(s)) window.__qw[k] = performance.now(); };
new MutationObserver(mark).observe(document, {subtree: true, childList: true, attributes: true});
""".replace("DONE", DONE)
_BARE_APP = """
import pandas as pd
import streamlit as st
st.title("Compare")
st.table(pd.DataFrame({"variant": list("abcdefg"), "size": range(7)}).style.highlight_max(subset="size"))
st.html('<div data-qw-result="bare" style="height:1px"></div>')
"""


def open_times(url: str, links: list[str]) -> list[dict[str, float]]:
    """Seconds from navigation start to the verdict, the table and the whole page, each in a new browser context."""
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        for link in links:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.add_init_script(_MARKS)
            page = context.new_page()
            page.set_default_timeout(300_000)
            page.goto(url + link)
            page.wait_for_selector(DONE)
            page.wait_for_selector('[data-testid="stTable"] table')
            times.append({k: v / 1000 for k, v in page.evaluate("() => window.__qw").items()})
            context.close()
        browser.close()
    return times


def bare_page_times() -> list[dict[str, float]]:
    """The floor: a bare Streamlit page (title and a small styled table) opened the same way."""
    folder = Path(tempfile.mkdtemp(prefix="qw-bench-bare-"))
    (folder / "streamlit_app.py").write_text(_BARE_APP)
    shutil.copytree(REPO / ".streamlit", folder / ".streamlit")  # the app's server and client settings
    with streamlit_server(cwd=folder) as server:
        return open_times(server.url, ["/"] * REPEATS)


def _median(times: list[dict[str, float]], part: str) -> float:
    return statistics.median(t[part] for t in times)


def measure(label: str, result, thumbs, store_dir: Path, cache_dir: Path, url: str | None, bare: float) -> list[str]:
    store = PublicationStore(store_dir, url=url)
    publish_s = []
    receipt = None
    for _ in range(REPEATS):
        start = time.perf_counter()
        receipt = store.publish(result, thumbs)
        publish_s.append(time.perf_counter() - start)
    env = {"QUANT_CACHE_DIR": str(cache_dir), "QW_STORE_DIR": str(store_dir), **({"QW_DATABASE_URL": url}
                                                                                  if url else {})}
    with streamlit_server(env) as server:
        opened = open_times(server.url, [f"/?view={receipt.id}"] * REPEATS)
        cached = open_times(server.url, ["/?sample=mobilenet_v2_imagenet&run=1"] * 3)
    table = _median(opened, "table")
    return [f"| {label} | {statistics.median(publish_s) * 1000:.0f} ms | {_median(opened, 'verdict'):.2f} s | "
            f"{table:.2f} s (max {max(t['table'] for t in opened):.2f}) | {table / bare:.2f}x | "
            f"{_median(opened, 'all'):.2f} s | {_median(cached, 'table'):.2f} s / {_median(cached, 'all'):.2f} s |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="qw-bench-publish-"))
    cache_dir = root / "cache"
    result = comparison(cache_dir)
    thumbs = thumbnails(result)
    floor = bare_page_times()
    bare = _median(floor, "table")
    rows = measure("SQLite", result, thumbs, root / "sqlite", cache_dir, None, bare)
    try:
        from pg_server import postgres_server

        with postgres_server() as url:
            rows += measure("PostgreSQL", result, thumbs, root / "pg", cache_dir, url, bare)
    except RuntimeError as err:
        rows.append(f"| PostgreSQL | not measured: {err} | | | | | |")
    body = "\n".join([
        f"Measured {datetime.now(UTC):%Y-%m-%d} by `bench/bench_publish.py`: the ImageNet sample's comparison "
        f"(7 variants, {len(result.images)} photos, {len(thumbs)} thumbnails). Times from navigation start, each "
        f"open in a new browser context, median of {REPEATS}. The floor, measured in the same run: a bare Streamlit "
        f"page (a title and a 7-row table) shows its table at {bare:.2f} s (max {max(t['table'] for t in floor):.2f}"
        ") on this machine.", "",
        "| store | publish | verdict | summary table | table / bare page | whole page | cached sample link "
        "(table / whole) |", "|---|---:|---:|---:|---:|---:|---:|", *rows, ""])
    report("publish-bench", "Opening a published comparison", body, write=not args.no_write)


if __name__ == "__main__":
    main()

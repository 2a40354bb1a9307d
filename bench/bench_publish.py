"""Issue 12's promise, measured: a stakeholder opens a published link and sees the comparison.

The ImageNet sample's full comparison (seven variants, 22 photos with thumbnails) is published
into a private store, then a real `streamlit run` is opened on its link by Playwright driving
Debian's chromium, each time in a new browser context (a stakeholder's first visit):
  - publish: `PublicationStore.publish` with the 22 thumbnails (median of 5);
  - open: from `goto(link)` to the summary table drawn (DONE and the table; median and max of 5);
  - for scale, the same on a sample link of the same comparison answered from the results cache
    (`?sample=...&run=1`), which is what sharing was before publications.
Also with the store on PostgreSQL (a private server on loopback), when Debian's PostgreSQL is installed.

Usage: .venv/bin/python bench/bench_publish.py [--no-write]
Writes its section of bench/RESULTS.md (between the publish-bench markers).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, UTC
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
from live_server import CHROMIUM, DONE, LAUNCH_ARGS, streamlit_server  # noqa: E402  pylint: disable=wrong-import-position
from results_md import write_section  # noqa: E402  pylint: disable=wrong-import-position

from quant_core import ArtifactCache, CompareRequest, run_compare  # noqa: E402  pylint: disable=wrong-import-position
from quant_core.publications import PublicationStore, thumbnail_name  # noqa: E402  pylint: disable=wrong-import-position

SAMPLE = REPO / "sample_models"
REPEATS = 5


def comparison(cache_dir: Path):
    """The one-click comparison of the ImageNet sample (measured now, or from this cache)."""
    request = CompareRequest(str(SAMPLE / "mobilenet_v2_imagenet.keras"), (str(SAMPLE / "imagenet_images"),),
                             str(SAMPLE / "imagenet_labels.txt"))
    return run_compare(request, cache=ArtifactCache(cache_dir))


def thumbnails(result) -> dict[str, bytes]:
    from quant_core.images import load_images
    from ui.engine import _small
    from ui.published import png_bytes

    items = load_images([SAMPLE / "imagenet_images"]).items
    pixels = {item.name: _small(item.pixels, 96) for item in items}
    return {thumbnail_name(k): png_bytes(pixels[i.file]) for k, i in enumerate(result.images) if i.file in pixels}


def open_times(url: str, links: list[str]) -> list[float]:
    """Seconds from goto(link) to the summary table drawn, each in a fresh browser context."""
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        for link in links:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(300_000)
            start = time.perf_counter()
            page.goto(url + link)
            page.wait_for_selector(DONE)
            page.wait_for_selector('[data-testid="stTable"] table')
            times.append(time.perf_counter() - start)
            context.close()
        browser.close()
    return times


def measure(label: str, result, thumbs, store_dir: Path, cache_dir: Path, url: str | None) -> list[str]:
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
    return [f"| {label} | {statistics.median(publish_s) * 1000:.0f} ms | {statistics.median(opened):.2f} s "
            f"(max {max(opened):.2f}) | {statistics.median(cached):.2f} s | "
            f"{statistics.median(opened) / statistics.median(cached):.2f}x |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="qw-bench-publish-"))
    cache_dir = root / "cache"
    result = comparison(cache_dir)
    thumbs = thumbnails(result)
    rows = measure("SQLite", result, thumbs, root / "sqlite", cache_dir, None)
    try:
        from pg_server import postgres_server

        with postgres_server() as url:
            rows += measure("PostgreSQL", result, thumbs, root / "pg", cache_dir, url)
    except RuntimeError as err:
        rows.append(f"| PostgreSQL | not measured: {err} | | | |")
    body = "\n".join([
        f"Measured {datetime.now(UTC):%Y-%m-%d} by `bench/bench_publish.py`: the ImageNet sample's comparison "
        f"(7 variants, {len(result.images)} photos, {len(thumbs)} thumbnails); each open is a new browser context "
        f"(median of {REPEATS}).", "",
        "| store | publish | open the published link (to the table) | the same via a cached sample link | ratio |",
        "|---|---:|---:|---:|---:|", *rows, ""])
    print(body)
    if not args.no_write:
        write_section("publish-bench", "## Opening a published comparison\n\n" + body)


if __name__ == "__main__":
    main()

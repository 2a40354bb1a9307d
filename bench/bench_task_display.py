"""Compare with masks and points drawn, in a real browser: page changes and display changes on a computed result.

One `streamlit run` with a fresh cache; for each bundled sample (the ImageNet classifier, the
selfie segmenter, the face landmark model) the one-click full comparison runs, then, with its
result computed and shown:
  - page change Compare -> Ops and Ops -> Compare (Compare redraws the verdict, the table, the
    charts and the per-image grid, or, for the segmenter and the landmark model, float32's and
    each variant's masks or points on every image of the first page of views, the tab open
    first), median of N, click to the script idle with the title drawn;
  - display change: the per-image views' next page (the segmenter and the landmark model;
    the classifier's display change is bench_whatif.py's), click to idle, median of N;
  - tab change: the other detail tab (the views <-> the error per output), median of 2N.
Targets (bench_whatif.py's figures for the classifier): page change <= 500 ms, display change
<= 300 ms. The classifier's figures in the same run say what the machine gives today.

Usage: .venv/bin/python bench/bench_task_display.py [--repeats N] [--no-write]
Writes its section of bench/RESULTS.md (between the task-display-bench markers).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
from live_server import CHROMIUM, DONE, IDLE, LAUNCH_ARGS, streamlit_server  # noqa: E402  pylint: disable=wrong-import-position
from results_md import report  # noqa: E402  pylint: disable=wrong-import-position

SAMPLES = ("mobilenet_v2_imagenet", "selfie_segmentation", "face_landmark")


def goto(page, title: str) -> float:
    """Milliseconds from a click on the sidebar link to the page's title drawn and the script idle."""
    link = page.locator('[data-testid="stSidebarNavLink"]', has_text=title)
    start = time.perf_counter()
    link.click()
    page.wait_for_selector(f'h1:has-text("{title}")')
    page.wait_for_selector(IDLE)
    return (time.perf_counter() - start) * 1000


def display_change(page, k: int) -> float:
    """Milliseconds from a click on the per-image views' next (or previous) page to the script idle."""
    box = page.locator('[data-testid="stNumberInput"]', has_text="Page")
    box.scroll_into_view_if_needed()
    button = box.locator("button").nth(1 if k % 2 == 0 else 0)  # step up, then down
    start = time.perf_counter()
    button.click()
    page.wait_for_timeout(50)  # the rerun starts
    page.wait_for_selector(IDLE)
    return (time.perf_counter() - start) * 1000


def tab_change(page, k: int) -> float:
    """Milliseconds from a click on the other detail tab (views <-> error per output) to the script idle."""
    name = "Error per output" if k % 2 == 0 else "Per image"
    tab = page.get_by_role("tab", name=name)
    tab.scroll_into_view_if_needed()
    start = time.perf_counter()
    tab.click()
    page.wait_for_timeout(50)  # the rerun starts
    page.wait_for_selector(IDLE)
    return (time.perf_counter() - start) * 1000


def measure(page, url: str, sample: str, repeats: int) -> dict[str, list[float]]:
    page.goto(f"{url}?sample={sample}")
    page.wait_for_selector(f"text=What we understood: {sample}")
    page.get_by_role("button", name="Run the full comparison").click()
    page.wait_for_selector('h1:has-text("Compare")')
    page.wait_for_selector(DONE, timeout=900_000)
    page.wait_for_timeout(1000)  # the follow-up run that draws charts and views
    page.wait_for_selector(IDLE)
    print(f"{sample}: compared", flush=True)
    times: dict[str, list[float]] = {"to_ops": [], "to_compare": [], "display": [], "tab": []}
    for _ in range(repeats):
        times["to_ops"].append(goto(page, "Ops"))
        times["to_compare"].append(goto(page, "Compare"))
    page.wait_for_timeout(500)
    if sample != SAMPLES[0]:  # the classifier's display change is bench_whatif.py's (the Mistakes variant)
        for k in range(repeats):
            times["display"].append(display_change(page, k))
        for k in range(2 * repeats):
            times["tab"].append(tab_change(page, k))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright  # pylint: disable=import-outside-toplevel

    found = {}
    with streamlit_server({"QUANT_CACHE_DIR": tempfile.mkdtemp(prefix="qw-bench-cache-")}) as server, \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        for sample in SAMPLES:
            found[sample] = measure(page, server.url, sample, args.repeats)
        browser.close()

    def cell(xs: list[float], limit: float) -> str:
        if not xs:
            return "–"
        med = statistics.median(xs)
        return f"{med:.0f} ms ({min(xs):.0f}–{max(xs):.0f}) {'PASS' if med <= limit else 'MISS'}"

    lines = ["| sample | Compare -> Ops (<= 500 ms) | Ops -> Compare (<= 500 ms) | display change (<= 300 ms) | "
             "tab change (<= 300 ms) |", "|---|---|---|---|---|"]
    for sample, times in found.items():
        lines.append(f"| {sample} | {cell(times['to_ops'], 500)} | {cell(times['to_compare'], 500)} | "
                     f"{cell(times['display'], 300)} | {cell(times['tab'], 300)} |")
    base = found[SAMPLES[0]]
    for sample in SAMPLES[1:]:
        ratio = statistics.median(found[sample]["to_compare"]) / statistics.median(base["to_compare"])
        lines.append(f"\n{sample}: Ops -> Compare takes {ratio:.2f}x the classifier's in this run.")
    lines.append(f"\nMedians (min–max) of {args.repeats}, click to the script idle with the title drawn, one "
                 "`streamlit run` with a fresh cache, Debian chromium via Playwright, 2 cores. Display change: "
                 "the next page of views (6 images, each with float32's and every variant's masks or points). Tab "
                 "change: Per image <-> Error per output (only the open tab is drawn), median of 2N.")
    report("task-display-bench", "Compare with masks and points: page and display changes", "\n".join(lines),
           write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())

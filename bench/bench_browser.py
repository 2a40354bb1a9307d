"""Browser-side timings of the web app, measured with Playwright on Debian's chromium.

1. Start-up: `streamlit run` to the health endpoint answering, and to a usable first page
   (the bundled sample described, which includes importing TensorFlow and loading the model).
2. Interaction: with the comparison already computed, the time from a click on a display
   control (the confusion-matrix variant) to the re-rendered chart. Target <= 300 ms.

Usage: .venv/bin/python bench/bench_browser.py [--repeats N]
Writes its section of bench/RESULTS.md (between the browser markers).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, UTC
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
from live_server import CHROMIUM, IDLE, LAUNCH_ARGS, streamlit_server  # noqa: E402  pylint: disable=wrong-import-position
from quant_core.modes import Mode  # noqa: E402  pylint: disable=wrong-import-position
from results_md import write_section  # noqa: E402  pylint: disable=wrong-import-position


def main() -> None:
    """Runs both measurements and writes the results section."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with streamlit_server({"QUANT_CACHE_DIR": tempfile.mkdtemp(prefix="qw-bench-cache-")}) as server, \
            sync_playwright() as p:
        healthy, ready_at = server.started_s, time.perf_counter()
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(600_000)
        page.goto(server.url + "?sample=digits_mobilenet")  # 10 classes: the confusion-matrix switch below
        page.wait_for_selector("text=What we understood: digits_mobilenet")
        first_page = healthy + time.perf_counter() - ready_at
        page.get_by_role("button", name="Run the full comparison").click()
        page.wait_for_selector('h1:has-text("Compare")')
        page.wait_for_selector("text=Confusion matrix")
        page.wait_for_selector(IDLE)
        clicks = []
        for k in range(args.repeats):
            target = (Mode.INT8 if k % 2 == 0 else Mode.FLOAT32).value  # the variants' names on Compare
            page.locator('[data-testid="stSelectbox"]', has_text="Variant").last.click()
            option = page.get_by_role("option", name=target, exact=True)
            option.wait_for()
            t0 = time.perf_counter()
            option.click()
            page.wait_for_selector(f"text=Confusion matrix: {target}")
            page.wait_for_selector(IDLE)
            clicks.append((time.perf_counter() - t0) * 1000)
        browser.close()
    median = statistics.median(clicks)
    p90 = sorted(clicks)[round(0.9 * (len(clicks) - 1))]
    rows = [
        ("`streamlit run` to /_stcore/health ok", f"{healthy:.2f} s", "-", "-"),
        ("`streamlit run` to a usable first page (sample model described)", f"{first_page:.2f} s", "-", "-"),
        (f"display change to re-rendered comparison, cached results (median of {len(clicks)})", f"{median:.0f} ms",
         "<= 300 ms", "PASS" if median <= 300 else "MISS"),
        ("same, p90", f"{p90:.0f} ms", "-", "-"),
    ]
    table = "\n".join(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows)
    section = write_section("browser-bench", (
        f"## Web app in a real browser\n\nCommand: `.venv/bin/python bench/bench_browser.py "
        f"--repeats {args.repeats}` ({datetime.now(UTC):%Y-%m-%d %H:%M UTC}, "
        f"{platform.processor() or platform.machine()}, Debian chromium via Playwright). The display change is "
        f"choosing another variant for the confusion matrix on Compare: a full Streamlit rerun with every number "
        f"already computed.\n\n| measurement | value | target | |\n|---|---:|---:|:---:|\n{table}"))
    print(section)


if __name__ == "__main__":
    main()

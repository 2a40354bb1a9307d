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
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "RESULTS.md"
BEGIN, END = "<!-- browser-bench:begin -->", "<!-- browser-bench:end -->"
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    """An unused loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, cache: str) -> tuple[subprocess.Popen, float, float]:
    """Starts streamlit; returns the process, its start time and seconds to a healthy endpoint."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1"], cwd=REPO, env=dict(os.environ, QUANT_CACHE_DIR=cache),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).read() == b"ok":
                return proc, start, time.perf_counter() - start
        except OSError:
            if time.perf_counter() - start > 120:
                proc.kill()
                raise SystemExit("streamlit did not start within 120 s")
            time.sleep(0.05)


def main() -> None:
    """Runs both measurements and writes the results section."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    port = free_port()
    proc, start, healthy = start_server(port, tempfile.mkdtemp(prefix="qw-bench-cache-"))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(600_000)
            page.goto(f"http://127.0.0.1:{port}")
            page.wait_for_selector("text=What we understood: digits_mobilenet")
            first_page = time.perf_counter() - start
            page.get_by_role("button", name="Run the full comparison").click()
            page.wait_for_selector('h1:has-text("Compare")')
            page.wait_for_selector("text=Confusion matrix")
            page.wait_for_selector(IDLE)
            clicks = []
            for k in range(args.repeats):
                target = "int8" if k % 2 == 0 else "float32"
                page.locator('[data-testid="stSelectbox"]', has_text="Variant").last.click()
                option = page.get_by_role("option", name=target, exact=True)
                option.wait_for()
                t0 = time.perf_counter()
                option.click()
                page.wait_for_selector(f"text=Confusion matrix: {target}")
                page.wait_for_selector(IDLE)
                clicks.append((time.perf_counter() - t0) * 1000)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    median = statistics.median(clicks)
    p90 = sorted(clicks)[int(round(0.9 * (len(clicks) - 1)))]
    rows = [
        ("`streamlit run` to /_stcore/health ok", f"{healthy:.2f} s", "-", "-"),
        ("`streamlit run` to a usable first page (sample model described)", f"{first_page:.2f} s", "-", "-"),
        (f"display change to re-rendered comparison, cached results (median of {len(clicks)})", f"{median:.0f} ms",
         "<= 300 ms", "PASS" if median <= 300 else "MISS"),
        ("same, p90", f"{p90:.0f} ms", "-", "-"),
    ]
    table = "\n".join(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows)
    section = (f"{BEGIN}\n## Web app in a real browser\n\nCommand: `.venv/bin/python bench/bench_browser.py "
               f"--repeats {args.repeats}` ({datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}, {platform.processor() or platform.machine()}, "
               f"Debian chromium via Playwright). The display change is choosing another variant for the "
               f"confusion matrix on Compare: a full Streamlit rerun with every number already computed.\n\n"
               f"| measurement | value | target | |\n|---|---:|---:|:---:|\n{table}\n{END}")
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(text)
    print(section)


if __name__ == "__main__":
    main()

"""Crash containment, timed as a user meets it: from the click to the one error line, and to the next answer.

On a live server (tests/crash_scenarios.py: `streamlit run`, cache folder on a 64 MB tmpfs, a
2000 MB job memory limit) a browser session: uploads a malformed .tflite that crashes the LiteRT
interpreter (SIGSEGV) and, in a new session, the tiny test model; runs the full comparison while
its worker allocates past the memory limit, then again with the cache disk full, then once more
with the space back. Each pass starts a fresh server with an empty cache. Needs root (mount).

Usage: .venv/bin/python bench/bench_crash.py [--passes N] [--write]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
from conftest import CLASSES, build_tiny_model, colour_images  # noqa: E402  pylint: disable=wrong-import-position
from crash_scenarios import (FACES, MEMORY_LIMIT_MB, crash_server, crashing_tflite, fill,  # noqa: E402
                             run_full, use_files)
from live_server import CHROMIUM, LAUNCH_ARGS, HealthProbe  # noqa: E402  pylint: disable=wrong-import-position
from results_md import report  # noqa: E402  pylint: disable=wrong-import-position

STEPS = ("segfault: error line", "segfault: next answer (another model described)", "memory limit: error line",
         "full disk: error line", "next answer once space is back (full comparison)")


def inputs(folder: Path) -> tuple[Path, Path, Path, Path]:
    """The crashing .tflite, the tiny model, its images as a class-folder .zip, and its labels file."""
    from PIL import Image  # pylint: disable=import-outside-toplevel

    crash = folder / "face_detector.tflite"
    crash.write_bytes(crashing_tflite())
    model = folder / "tiny.keras"
    build_tiny_model().save(model)
    archive = folder / "colours.zip"
    images, labels = colour_images(24, seed=7)
    with zipfile.ZipFile(archive, "w") as zf:
        for k, (image, label) in enumerate(zip(images, labels)):
            png = folder / f"{k:03d}.png"
            Image.fromarray(image).save(png)
            zf.write(png, f"colours/{CLASSES[label]}/{k:03d}.png")
    names = folder / "labels.txt"
    names.write_text("\n".join(CLASSES) + "\n")
    return crash, model, archive, names


def one_pass(browser, files) -> tuple[list[float], list[str], dict[str, float]]:
    """The five steps' seconds, the error lines seen, and the health probe's summary."""
    crash, model, archive, names = files
    with crash_server() as live, HealthProbe(live.server.url) as probe:
        seconds, lines = [], []
        uploads = (((crash, sorted(FACES.iterdir())[:3]), True), ((model, [archive], names), False))
        for files_in, expect_error in uploads:
            context = browser.new_context(viewport={"width": 1400, "height": 1200})
            page = context.new_page()
            page.set_default_timeout(300_000)
            page.goto(f"{live.server.url}/?sample=digits_cnn")
            page.wait_for_selector("text=What we understood:")
            seen = use_files(page, *files_in)
            assert bool(seen.errors) == expect_error, seen
            seconds.append(seen.seconds)
            lines += seen.errors
            if expect_error:
                context.close()
        live.fault.write_text("memory")
        seen = run_full(page)
        seconds.append(seen.seconds)
        lines += seen.errors
        ballast = fill(live.disk)
        seen = run_full(page)
        seconds.append(seen.seconds)
        lines += seen.errors
        ballast.unlink()
        seen = run_full(page)
        assert not seen.errors, seen
        seconds.append(seen.seconds)
        assert live.healthy()
        context.close()
    return seconds, lines, probe.summary()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="put the section in bench/RESULTS.md")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright  # pylint: disable=import-outside-toplevel

    files = inputs(Path(tempfile.mkdtemp(prefix="qw-bench-crash-")))
    runs, health = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        for _ in range(args.passes):
            seconds, lines, probe = one_pass(browser, files)
            runs.append(seconds)
            health.append(probe)
        browser.close()
    rows = "\n".join(f"| {step} | {statistics.median(r[k] for r in runs):.1f} s | "
                     f"{min(r[k] for r in runs):.1f} / {max(r[k] for r in runs):.1f} s |"
                     for k, step in enumerate(STEPS))
    worst = max(h["max"] for h in health)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = (f"Command: `.venv/bin/python bench/bench_crash.py --passes {args.passes} --write` ({when}, "
            f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs; browser on the same machine; "
            f"a fresh server and empty cache per pass). Seconds from the click (\"Use these files\", \"Run the full "
            f"comparison\") to the page's one error line, or to the drawn answer. Memory limit "
            f"{MEMORY_LIMIT_MB} MB; the cache on a 64 MB tmpfs filled to the last byte. The CI test "
            f"(tests/test_crash_containment.py) runs the same steps and checks the numbers against the engine.\n\n"
            f"| step | median | min / max |\n|---|---:|---:|\n{rows}\n\n"
            f"/_stcore/health while it ran: worst answer {1000 * worst:.0f} ms over "
            f"{sum(h['count'] for h in health):.0f} probes (every 250 ms). The lines the user saw (last pass):\n\n"
            + "\n".join(f"- {line}" for line in lines))
    report("crash-bench", "Crash containment (a segfault, a memory overrun, a full cache disk)", body,
           write=args.write)


if __name__ == "__main__":
    main()

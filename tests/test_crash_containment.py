"""Crashes and a full disk cost one request one line: the server stays up and the next request works.

The live test drives a real browser against `streamlit run` whose cache folder is on a small
tmpfs (tests/crash_scenarios.py): a malformed .tflite that crashes the LiteRT interpreter
(SIGSEGV), a comparison whose worker allocates until its memory limit kills it, and a cache
disk filled to the last byte. The unit tests below pin the words and the cache's behaviour.
"""

from __future__ import annotations

import os
import resource
import zipfile
from pathlib import Path

import pytest

from conftest import REPO
from crash_scenarios import (FACES, MEMORY_LIMIT_MB, Live, crash_server, crashing_tflite, fill, run_full,
                             small_disk, toggle_variant, use_files)
from live_server import CHROMIUM, LAUNCH_ARGS, SUMMARY_JS
from quant_core import ArtifactCache, CompareOptions, CompareRequest, run_compare
from quant_core.cache import CacheFullError
from quant_core.inputs.tflite_info import check_structure
from quant_core.serving.worker import WorkerError, run_job


def test_a_full_cache_disk_refuses_a_model_in_one_line_and_skips_json_entries():
    with small_disk(size_mb=1) as disk:
        cache = ArtifactCache(disk / "cache")
        small = cache.put_model(b"small model")
        ballast = fill(disk)
        with pytest.raises(CacheFullError, match="^no space left in the server's cache folder .* then run it "
                                                 "again$"):
            cache.put_model(os.urandom(64 << 10))
        assert cache.put_json("results", "k" * 64, {"big": "x" * (64 << 10)}) is None  # not stored, no error
        assert cache.get_json("results", "k" * 64) is None
        assert cache.model_bytes(small) == b"small model"  # what was stored stays readable
        assert not list((disk / "cache").rglob(".tmp-*"))  # no half-written entry left behind
        ballast.unlink()
        key = cache.put_model(os.urandom(64 << 10))  # space is back: the next write works
        assert len(cache.model_bytes(key)) == 64 << 10


def test_a_file_size_limit_is_a_full_disk_too(tmp_path):
    """RLIMIT_FSIZE (EFBIG) is the other way a write runs out of room; Python ignores SIGXFSZ, so it is an OSError."""
    cache = ArtifactCache(tmp_path / "cache")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (32 << 10, hard))
    try:
        with pytest.raises(CacheFullError):
            cache.put_model(os.urandom(64 << 10))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@pytest.fixture
def test_jobs(monkeypatch):
    monkeypatch.setenv("QW_JOB_MODULES", "tests.worker_jobs")
    monkeypatch.chdir(REPO)


@pytest.mark.parametrize("job, words", [
    ("test.segfault", r"^the worker process crashed \(signal SIGSEGV\) while working on this input: the model "
                      r"crashed the TensorFlow Lite runtime .* malformed"),
    ("test.killed", r"^the worker process was killed \(signal SIGKILL\) while working on this input: most likely "
                    r"the system stopped it because the machine ran out of memory"),
])
def test_a_dead_worker_is_said_in_words_and_the_next_job_works(test_jobs, job, words):
    with pytest.raises(WorkerError, match=words) as err:
        run_job(job, {})
    assert "\n" not in str(err.value)
    assert run_job("test.echo", {"ok": 1}) == {"ok": 1}


def test_the_crashing_model_passes_every_structural_check():
    """The live test's segfault comes from the interpreter, past the checks (once they refuse it, find another)."""
    check_structure(crashing_tflite(), name="face_detector.tflite")


@pytest.fixture(scope="module")
def live():
    with crash_server() as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium (done by .ci/run)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


def session(browser, live: Live):
    """A new browser session on the digits sample (the lightest to describe)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1200})
    page = context.new_page()
    page.set_default_timeout(300_000)
    page.goto(f"{live.server.url}/?sample=digits_cnn")
    page.wait_for_selector("text=What we understood:")
    return context, page


def one_line(seen, *fragments: str) -> str:
    """The page's only error line, holding every fragment, with no traceback."""
    assert len(seen.errors) == 1 and seen.exceptions == 0, seen
    line = seen.errors[0]
    assert "\n" not in line and all(f in line for f in fragments), line
    return line


def engine_rows(model: Path, image_dir: Path, labels: Path) -> dict[str, tuple[float, float]]:
    """(size in KB, accuracy in %) of every default variant, computed in this process."""
    from ui.settings import Settings

    settings = Settings()
    result = run_compare(CompareRequest(str(model), (str(image_dir),), str(labels),
                                        CompareOptions(recipes=settings.recipes(), threads=settings.threads,
                                                       measure_latency=False)),
                         cache=ArtifactCache(image_dir.parent / "engine-cache"))
    return {v.name: (v.size_bytes / 1024, 100 * v.accuracy) for v in result.variants}


def shown_rows(page) -> dict[str, tuple[float, float]]:
    rows = page.evaluate(SUMMARY_JS)
    assert all(r["status"] == "ok" for r in rows.values()), rows
    return {name: (float(r["size (KB)"].replace(",", "")), float(r["accuracy"].rstrip("%"))) for name, r in
            rows.items()}


def assert_same_numbers(shown: dict, engine: dict) -> None:
    assert list(shown) == list(engine)
    for name, (size, accuracy) in shown.items():
        assert abs(size - engine[name][0]) <= 0.051 and abs(accuracy - engine[name][1]) <= 0.0006, \
            (name, shown[name], engine[name])



@pytest.mark.browser
def test_crashes_and_a_full_disk_cost_one_line_and_the_next_request_works(live, browser, model_files, image_dir,
                                                                          labels_file, tmp_path):
    # A malformed model crashes the interpreter in its worker: one line on Model & data.
    crash = tmp_path / "face_detector.tflite"
    crash.write_bytes(crashing_tflite())
    context, page = session(browser, live)
    one_line(use_files(page, crash, sorted(FACES.iterdir())[:3]), "signal SIGSEGV", "malformed")
    assert live.healthy()
    context.close()

    # The next request, from another session, gets a fresh worker: the tiny model is described.
    archive = tmp_path / "colours.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for png in sorted(image_dir.rglob("*.png")):
            zf.write(png, png.relative_to(image_dir.parent))
    context, page = session(browser, live)
    seen = use_files(page, model_files["keras"], [archive], labels_file)
    assert seen.errors == () and seen.exceptions == 0, seen

    # Its comparison's worker allocates until the memory limit kills it: one line on Compare.
    live.fault.write_text("memory")
    one_line(run_full(page), f"more than {MEMORY_LIMIT_MB} MB of memory", "was stopped")
    assert not live.fault.exists() and live.healthy()

    # The cache's disk is full when the same comparison needs to store its models: one line.
    ballast = fill(live.disk)
    one_line(run_full(page), "no space left in the server's cache folder")
    assert live.healthy()

    # Space is back: the same request works, with the engine's own numbers.
    ballast.unlink()
    seen = run_full(page)
    assert seen.errors == () and seen.exceptions == 0, seen
    shown = shown_rows(page)
    assert_same_numbers(shown, engine_rows(model_files["keras"], image_dir, labels_file))

    # With the disk full again, a what-if whose models are all stored still works (its result is just not cached).
    ballast = fill(live.disk)
    seen = toggle_variant(page, "int16x8")
    assert seen.errors == () and seen.exceptions == 0, seen
    assert shown_rows(page) == {name: row for name, row in shown.items() if name != "int16x8"}
    ballast.unlink()
    assert live.healthy()
    context.close()

"""Crashes and a full disk on a live server, as a user meets them: shared by the crash-containment test and bench.

Each step drives a real browser session against `streamlit run` (tests/live_server.py) and
returns what the user saw: the error lines on the page and the seconds from the click to them.
The faults are real: a worker allocating until its memory limit kills it (tests/faulty_compare.py),
a malformed .tflite that crashes the LiteRT interpreter (SIGSEGV), and a cache folder on a small
tmpfs filled to the last byte.
"""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from hostile import edit_tflite
from live_server import DONE, ERROR, EXCEPTION, IDLE, Server, health_seconds, stage_files, streamlit_server

REPO = Path(__file__).resolve().parents[1]
FACE_DETECTOR = REPO / "sample_models" / "face_detection_short_range.tflite"
FACES = REPO / "sample_models" / "face_images"
MEMORY_LIMIT_MB = 2000  # a worker comparing the tiny model stays far below; the memory fault goes past it
DISK_MB = 64  # the cache folder's tmpfs
TALLER = 100_000  # the crashing model's kernel height: it reads megabytes past its buffer, into unmapped memory


def crashing_tflite() -> bytes:
    """MediaPipe's face detector with its first kernel's DEQUANTIZE output declared far too tall.

    Every index, size and buffer is valid (quant_core.inputs.tflite_info.check_structure
    accepts it): only the float32 tensor the fp16 weights are dequantized into claims a larger
    shape than the weights hold, and XNNPACK packs that kernel from it, reading past the
    buffer: the interpreter dies with SIGSEGV.
    """
    def taller(model) -> None:
        graph = model.subgraphs[0]
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            out = graph.tensors[op.outputs[0]]
            if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.DEQUANTIZE \
                    and len(out.shape) == 4:
                out.shape = np.array([out.shape[0], TALLER, *out.shape[2:]], np.int32)
                out.shapeSignature = None
                return
        raise AssertionError("the face detector has no DEQUANTIZE of a 4-d kernel")

    return edit_tflite(FACE_DETECTOR.read_bytes(), taller)


@contextmanager
def small_disk(size_mb: int = DISK_MB) -> Iterator[Path]:
    """A tmpfs of `size_mb` mounted on a fresh folder (needs root, as in CI's container); unmounted on exit."""
    folder = Path(tempfile.mkdtemp(prefix="qw-small-disk-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(folder)], check=True,
                   capture_output=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)
        folder.rmdir()


def fill(disk: Path) -> Path:
    """Writes a ballast file until the disk has no space left; returns it (remove it to give the space back)."""
    ballast = disk / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for chunk in (1 << 20, 4096, 1):  # down to the last byte
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    return ballast


@dataclass(frozen=True)
class Live:
    """A server whose cache is on a small disk and whose compare jobs take one fault on demand."""

    server: Server
    disk: Path  # the tmpfs the cache folder is on
    fault: Path  # write "memory" here: the next compare job allocates until its limit kills it

    def healthy(self) -> bool:
        """The server process runs and /_stcore/health answers within a second."""
        return self.server.process.poll() is None and health_seconds(self.server.url) <= 1.0


@contextmanager
def crash_server() -> Iterator[Live]:
    """`streamlit run` with its cache on a small tmpfs, the fault module loaded into its workers, a memory limit."""
    with small_disk() as disk:
        root = Path(tempfile.mkdtemp(prefix="qw-crash-"))
        fault = root / "fault"
        env = {"QUANT_CACHE_DIR": str(disk / "cache"), "QW_SESSION_ROOT": str(root / "sessions"),
               "QW_JOB_MODULES": "tests.faulty_compare", "QW_TEST_FAULT": str(fault),
               "QW_JOB_MEMORY_MB": str(MEMORY_LIMIT_MB)}
        with streamlit_server(env) as server:
            yield Live(server, disk, fault)


@dataclass(frozen=True)
class Seen:
    """What the page showed after a click: its error lines, whether a traceback showed, and when."""

    errors: tuple[str, ...]
    exceptions: int
    seconds: float  # from the click to the first error line or the drawn result


def _seen(page, start: float, selector: str) -> Seen:
    page.wait_for_selector(selector)
    seconds = time.perf_counter() - start
    page.wait_for_selector(IDLE)
    return Seen(tuple(t.strip() for t in page.locator(ERROR).all_inner_texts()), page.locator(EXCEPTION).count(),
                seconds)


def use_files(page, model: Path, images: list[Path], labels: Path | None = None) -> Seen:
    """The Upload form's real file inputs, then "Use these files": the model described, or its error line."""
    stage_files(page, model, images, labels)
    start = time.perf_counter()
    page.get_by_role("button", name="Use these files").click()
    return _seen(page, start, f'{ERROR}, h3:has-text("What we understood: {model.stem}")')


def run_full(page) -> Seen:
    """Model & data's one-click comparison: the result drawn on Compare, or its error line."""
    page.locator('[data-testid="stSidebarNavLink"]', has_text="Model & data").click()
    page.wait_for_selector('h1:has-text("Model & data")')
    page.wait_for_selector(IDLE)
    start = time.perf_counter()
    page.get_by_role("button", name="Run the full comparison").click()
    page.wait_for_selector('h1:has-text("Compare")')
    return _seen(page, start, f"{ERROR}, {DONE}")


def toggle_variant(page, mode: str) -> Seen:
    """A What if… on Compare: one variant's toggle flipped; the new result drawn, or its error line."""
    key = page.evaluate("() => document.querySelector('[data-qw-result]')?.dataset.qwResult ?? ''")
    start = time.perf_counter()
    page.locator('[data-testid="stCheckbox"]', has_text=mode).first.locator("label").click()
    return _seen(page, start, f'{ERROR}, [data-qw-result]:not([data-qw-result="{key}"])')

"""The compare job with one fault on demand, for the crash-containment tests (loaded through QW_JOB_MODULES).

The test writes a fault's name into the file that QW_TEST_FAULT names; the next compare job
takes it (removes the file) and misbehaves that once, in its worker process; every other
compare job runs as usual.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import quant_core.serving.jobs  # noqa: F401  pylint: disable=unused-import - registers the real compare job first
from quant_core.serving.protocol import CompareJob
from quant_core.serving.worker import JOBS

_REAL = JOBS[CompareJob.job]
_BLOCK = 64 << 20


def _take_fault() -> str:
    """The fault asked for, once (the file is removed), or ""."""
    path = os.environ.get("QW_TEST_FAULT")
    if not path:
        return ""
    try:
        fault = Path(path).read_text(encoding="utf-8").strip()
        Path(path).unlink()
    except FileNotFoundError:
        return ""
    return fault


def _allocate_until_stopped() -> None:
    """Really holds more and more memory (every page written) until the worker's memory limit kills it."""
    held = []
    for _ in range(1024):  # 64 GB: far past any limit a test sets
        block = bytearray(_BLOCK)
        block[::4096] = b"\1" * (_BLOCK // 4096)
        held.append(block)
        time.sleep(0.01)  # the parent samples RSS every 0.1 s
    raise AssertionError("the memory limit never stopped this job")


def faulty_compare(payload, progress):
    """The real compare job, after the fault asked for (if any)."""
    if _take_fault() == "memory":
        _allocate_until_stopped()
    return _REAL(payload, progress)


JOBS[CompareJob.job] = faulty_compare

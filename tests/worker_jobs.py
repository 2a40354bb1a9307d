"""Misbehaving jobs for the worker tests (loaded into workers through QW_JOB_MODULES)."""

from __future__ import annotations

import os
import signal
import time

from quant_core.serving.worker import job


@job("test.abort")
def abort_job(payload, progress):
    """Dies the way a C++ check failure in the converter does."""
    progress({"message": "about to abort"})
    os.kill(os.getpid(), signal.SIGABRT)


@job("test.sleep")
def sleep_job(payload, progress):
    """Never finishes in time."""
    time.sleep(payload["seconds"])
    return "woke up"


@job("test.allocate")
def allocate_job(payload, progress):
    """Holds more memory than allowed."""
    block = bytearray(payload["mb"] * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(5)
    return len(block)


@job("test.echo")
def echo_job(payload, progress):
    """Answers with its payload after a progress message."""
    progress({"fraction": 0.5})
    return payload


@job("test.scratch_then_die")
def scratch_then_die_job(payload, progress):
    """Writes a temporary file, reports where, then dies (abort) or hangs."""
    import tempfile

    fd, path = tempfile.mkstemp(suffix=".scratch")
    os.write(fd, b"x" * 1024)
    os.close(fd)
    progress({"path": path, "pid": os.getpid()})
    if payload["how"] == "abort":
        os.kill(os.getpid(), signal.SIGABRT)
    while True:
        time.sleep(0.1)
        progress({"path": path, "pid": os.getpid()})


@job("test.bug")
def bug_job(payload, progress):
    """A bug in our own code: a lookup that was never going to work."""
    import logging

    logging.getLogger("quant_core.test").warning("about to look up a missing setting")
    return {}["threshold"]


@job("test.image_error")
def image_error_job(payload, progress):
    """A user error of a specific class."""
    from quant_core.errors import ImageError

    raise ImageError("no usable images in the upload")


@job("test.segfault")
def segfault_job(payload, progress):
    """Reads address 0, as a native library does on a malformed file."""
    import ctypes

    progress({"message": "about to read address 0"})
    ctypes.string_at(0)


@job("test.killed")
def killed_job(payload, progress):
    """Ends the way the kernel's OOM killer ends a process: SIGKILL, no chance to answer."""
    os.kill(os.getpid(), signal.SIGKILL)

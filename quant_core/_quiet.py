"""Keeping the backends' chatter (converter prints, C++ logs) out of the tool's own stdout."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

_lock = threading.RLock()


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Redirects file descriptor 1 to descriptor 2 for the duration of the block.

    The TF converter and LiteRT print from C++ straight to fd 1, so `sys.stdout`
    redirection is not enough.
    """
    with _lock:
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            os.dup2(2, 1)
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def silence_tf_logging() -> None:
    """Lowers TensorFlow's and absl's log levels before TensorFlow is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")

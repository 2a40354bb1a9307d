"""Per-session private folders: created on first upload, removed when the session is gone.

Folders live under one root and are named after the Streamlit session id, so a sweep can
tell whose they are without storing anything: a folder whose session is no longer active
(after a grace period for reconnects) or that is older than the maximum age is removed.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from quant_core.config import config

GRACE_S = config().session_grace_s  # a disconnected browser may come back meanwhile
MAX_AGE_S = config().session_max_age_s
_SWEEP_EVERY_S = config().session_sweep_s
_last_sweep = 0.0


def session_root() -> Path:
    """The folder holding every session's folder."""
    root = config().session_root
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root


def new_session_dir(session_id: str) -> Path:
    """A fresh private folder for this session."""
    safe = "".join(c for c in session_id if c.isalnum() or c == "-")[:64] or "anonymous"
    return Path(tempfile.mkdtemp(prefix=f"{safe}.", dir=session_root()))


def current_session_id() -> str:
    """The running script's Streamlit session id ('' outside Streamlit)."""
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx(suppress_warning=True)
    return ctx.session_id if ctx else ""


def runtime_exists() -> bool:
    """Whether a Streamlit server runs in this process (not under AppTest or in a script)."""
    from streamlit.runtime import Runtime

    return Runtime.exists()


def is_active(session_id: str) -> bool:
    """Whether Streamlit still has this session."""
    from streamlit.runtime import Runtime

    return Runtime.exists() and Runtime.instance().is_active_session(session_id)


def sweep(*, active: Callable[[str], bool] = is_active, now: float | None = None, force: bool = False) -> list[Path]:
    """Removes folders of ended or expired sessions (at most every _SWEEP_EVERY_S seconds unless forced)."""
    global _last_sweep  # pylint: disable=global-statement
    now = time.time() if now is None else now
    if not force and now - _last_sweep < _SWEEP_EVERY_S:
        return []
    _last_sweep = now
    removed = []
    for folder in session_root().iterdir():
        try:
            age = now - folder.stat().st_mtime
        except OSError:
            continue
        owner = folder.name.split(".", 1)[0]
        if age > MAX_AGE_S or (age > GRACE_S and not active(owner)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed

"""Session folders: private, named by session, removed when the session ends or expires."""

from __future__ import annotations

import os
import time

import pytest

from ui import sessions


@pytest.fixture()
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("QW_SESSION_ROOT", str(tmp_path / "sessions"))
    return tmp_path / "sessions"


def _age(path, seconds):
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_folders_are_private_and_named_by_session(root):
    a, b = sessions.new_session_dir("abc-1"), sessions.new_session_dir("abc-1")
    assert a != b and a.parent == root and a.name.startswith("abc-1.")
    assert oct(root.stat().st_mode & 0o777) == "0o700"
    assert sessions.new_session_dir("../../etc").name.startswith("etc.")


def test_sweep_removes_ended_and_expired_sessions_only(root):
    live = sessions.new_session_dir("live")
    ended_recent = sessions.new_session_dir("gone1")
    ended_old = sessions.new_session_dir("gone2")
    ancient = sessions.new_session_dir("live")
    (ended_old / "upload.keras").write_bytes(b"x")
    _age(ended_old, sessions.GRACE_S + 60)
    _age(live, sessions.GRACE_S + 60)
    _age(ancient, sessions.MAX_AGE_S + 60)
    removed = sessions.sweep(active=lambda sid: sid == "live", force=True)
    assert set(removed) == {ended_old, ancient}
    assert live.exists() and ended_recent.exists() and not ended_old.exists()

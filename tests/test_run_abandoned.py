"""A run whose browser session left is stopped QW_ABANDON_S later, whether or not its job reports meanwhile."""

from __future__ import annotations

import time

import pytest

from quant_core import Progress
from quant_core.errors import Cancelled
from ui import run as runs
from ui import sessions
from ui.run import Run
from ui.settings import Settings


@pytest.fixture
def browser(monkeypatch):
    """A server runs; the session is there while `present` holds True."""
    present = {"yes": True}
    monkeypatch.setattr(sessions, "runtime_exists", lambda: True)
    monkeypatch.setattr(sessions, "is_active", lambda session_id: present["yes"])
    monkeypatch.setattr(runs, "ABANDON_S", 0.3)
    return present


def test_a_run_is_stopped_once_its_session_has_been_gone_for_the_grace_period(browser):
    run = Run(Settings(), ("float32",), session_id="s1")
    run.check_session()
    browser["yes"] = False
    run.check_session()  # just gone: it may come back
    time.sleep(0.4)
    with pytest.raises(Cancelled, match="browser session that asked for it is gone"):
        run.check_session()


def test_a_session_that_comes_back_within_the_grace_period_keeps_its_run(browser):
    run = Run(Settings(), ("float32",), session_id="s1")
    browser["yes"] = False
    run.check_session()
    browser["yes"] = True
    time.sleep(0.4)
    run.check_session()  # back: the clock starts again
    browser["yes"] = False
    run.update(Progress(0.5, "Evaluating float32"))
    assert run.progress.message == "Evaluating float32"


def test_reports_are_checked_too(browser):
    run = Run(Settings(), ("float32",), session_id="s1")
    browser["yes"] = False
    run.update(Progress(0.1, "Loading the model"))
    time.sleep(0.4)
    with pytest.raises(Cancelled):
        run.update(Progress(0.2, "Building float32"))


def test_outside_a_server_nothing_is_abandoned(monkeypatch):
    monkeypatch.setattr(sessions, "runtime_exists", lambda: False)
    monkeypatch.setattr(runs, "ABANDON_S", 0.0)
    run = Run(Settings(), ("float32",), session_id="s1")
    run.check_session()
    time.sleep(0.05)
    run.check_session()

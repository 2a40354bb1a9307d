"""While a comparison runs, the sidebar and the progress bar say the same thing: one count of variants measured."""

from __future__ import annotations

import os
import tempfile
from types import SimpleNamespace

import streamlit as st

os.environ.setdefault("QUANT_CACHE_DIR", tempfile.mkdtemp(prefix="qw-apptest-cache-"))
from streamlit.testing.v1 import AppTest

from ui.run import Run
from ui.settings import Settings

NAMES = ("float32", "weight_only", "dynamic_range", "float16", "int8", "int8_float_io", "int16x8", "int8+3float")


class SixOfEight(Run):
    """A run that has measured nothing when the sidebar is drawn, six variants when the page looks, then ends."""

    looks = 0

    @property
    def finished(self) -> bool:
        self.looks += 1
        if self.looks == 2:  # the page's first look: six variants measured since the sidebar was drawn
            self.partial = SimpleNamespace(variants=(None,) * 6)  # type: ignore[assignment]
            self.version += 1
        return self.looks > 3  # the sidebar, the page, the sidebar again: running; the page's next look: ended


def page() -> None:
    """The router's sidebar slot, then a page following the session's run (as Compare does)."""
    import streamlit as st

    from ui import run, state, widgets

    widgets.sidebar_status(st.sidebar.empty())
    run.follow(state.session.run, table=False)


def test_the_sidebar_counts_what_the_progress_bar_counts(monkeypatch):
    monkeypatch.setattr(st, "rerun", lambda: None)  # the page reruns once the run ended: keep what it drew
    monkeypatch.setattr(st, "page_link", lambda *a, **k: None)  # no page list in a one-page script
    at = AppTest.from_function(page, default_timeout=120)
    at.session_state["qw.run"] = SixOfEight(Settings(), NAMES)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    bar = at.get("progress")[0]
    assert "· 6 of 8 variants measured ·" in bar.proto.text
    sidebar = [c.value for c in at.sidebar.caption]
    assert "**Running:** 6 of 8 variants measured." in sidebar, sidebar
    assert "No comparison yet." not in sidebar

"""A request compiles its settings into recipes once: a what-if on Compare and a Run on Quantize."""

from __future__ import annotations

import pytest

from quant_core import CompareResult
from test_compare_page import compare_page, result  # noqa: F401 - the module's real comparison fixture
from ui.settings import Settings


@pytest.fixture()
def compiles(monkeypatch, result):  # noqa: F811 - the fixture imported above
    """Counts Settings.recipes calls; the comparison's worker is replaced by the result (the engine is not tested)."""
    from ui import engine

    calls: list[Settings] = []
    real = Settings.recipes

    def counted(self: Settings):
        calls.append(self)
        return real(self)

    def answer(request, jobs, **kwargs) -> CompareResult:
        assert request.options.recipes  # the compiled request reached the worker's side unchanged
        return result

    monkeypatch.setattr(Settings, "recipes", counted)
    monkeypatch.setattr(engine, "cached", lambda request, work_dir: None)
    monkeypatch.setattr(engine, "compare", answer)
    monkeypatch.setattr(engine, "keep_models", lambda result, work_dir, cache=None: None)
    return calls


def test_a_what_if_compiles_its_settings_once(result, compiles):  # noqa: F811
    at = compare_page(result)
    compiles.clear()
    toggle = at.toggle(key="w.cmp.mode.dynamic_range")
    toggle.set_value(not toggle.value).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["qw.run"] is not None  # the what-if ran
    assert len(compiles) == 1, compiles  # widgets.accept_settings compiled it; run.start and ui.engine reused that


def test_a_run_on_quantize_compiles_its_settings_once(result, compiles):  # noqa: F811
    at = compare_page(result)
    at.switch_page("pages/quantize.py").run()
    compiles.clear()
    next(b for b in at.button if b.key == "w.run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(compiles) == 1, compiles

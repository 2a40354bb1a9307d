"""Session state through typed attributes: unset choices read as their defaults, values live under the `qw.` keys,
and one function says which settings are current (AppTest scripts: nothing is computed)."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from quant_core import CalibrationSource, Mode, PreprocessingOverride, ResizeMethod
from quant_core.results.verdict import Floor
from ui.run import Run
from ui.settings import Settings


def _read_defaults() -> None:
    import streamlit as st

    from ui import state

    st.session_state["probe"] = (state.session.override, state.session.settings, state.session.floor,
                                 state.session.result, state.current_settings())


def _write_override() -> None:
    from quant_core import PreprocessingOverride, ResizeMethod
    from ui import state

    state.session.override = PreprocessingOverride(resize=ResizeMethod.AREA)


def _read_current_settings() -> None:
    import streamlit as st

    from ui import state

    st.session_state["probe"] = (state.current_settings(), state.current_settings(latest_run=True))


def _script(function) -> AppTest:
    at = AppTest.from_function(function, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_unset_choices_read_as_their_defaults():
    at = _script(_read_defaults)
    assert at.session_state["probe"] == (PreprocessingOverride(), Settings(), Floor(), None, Settings())
    assert "qw.override" not in at.session_state  # reading a default stores nothing


def test_a_written_value_lives_under_its_key():
    at = _script(_write_override)
    assert at.session_state["qw.override"] == PreprocessingOverride(resize=ResizeMethod.AREA)


def test_current_settings_are_the_results_else_the_sessions_and_for_what_ifs_the_latest_runs_first():
    chosen = Settings(calibration_count=7)
    of_result = Settings(modes=(Mode.FLOAT32, Mode.INT8))
    of_run = Settings(calibration_source=CalibrationSource.RANDOM)  # a failed what-if: no result of its own
    at = AppTest.from_function(_read_current_settings, default_timeout=60)
    at.session_state["qw.settings"] = chosen
    at.run()
    assert at.session_state["probe"] == (chosen, chosen)  # nothing run yet: the session's choice
    at.session_state["qw.result_settings"] = of_result
    at.run()
    assert at.session_state["probe"] == (of_result, of_result)
    at.session_state["qw.run"] = Run(of_run, ("float32",))
    at.run()
    assert at.session_state["probe"] == (of_result, of_run)

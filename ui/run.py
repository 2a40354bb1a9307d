"""Running a comparison from a page: progress bar, per-variant status, result into session state."""

from __future__ import annotations

import streamlit as st

from quant_core import MODE_INFO, InternalError, PreprocessingOverride, Progress, QuantError
from ui import engine, state
from ui.settings import Settings
from ui.widgets import ENGINE_ERRORS, current_inputs, show_error


def run_comparison() -> bool:
    """Runs the comparison for the current inputs and settings; True when a result was stored."""
    inputs = current_inputs()
    override = state.get(state.OVERRIDE) or PreprocessingOverride()
    settings = state.get(state.SETTINGS) or Settings()
    bar = st.progress(0.0, text="Starting…")

    def on_progress(p: Progress) -> None:
        bar.progress(min(max(p.fraction, 0.0), 1.0), text=p.message)

    failure: QuantError | InternalError | None = None
    with st.status("Building and measuring variants…", expanded=False) as status:
        try:
            result = engine.compare(inputs, override, settings, on_progress=on_progress, work_dir=state.workdir(),
                                    earlier=state.get(state.RESULT))
            models = engine.keep_models(result, state.workdir())
        except ENGINE_ERRORS as err:  # a bug in the engine shows its incident id, like a user error its line
            status.update(label="Stopped: nothing was built", state="error")
            failure = err
    if failure is not None:  # outside the (collapsed) status box, where it is seen
        bar.empty()
        show_error(failure)
        return False
    with status:
        for v in result.variants:
            icon = ":material/check_circle:" if v.ok else ":material/cancel:"
            st.write(f"{icon} **{MODE_INFO[v.mode].title}** — " + ("ok" if v.ok else f"failed: {v.error}"))
        failed = [v for v in result.variants if not v.ok]
        status.update(label=f"{len(result.variants) - len(failed)} of {len(result.variants)} variants built"
                      + (f", {len(failed)} failed" if failed else ""), state="error" if failed else "complete")
    bar.progress(1.0, text="Done")
    state.put(state.RESULT, result)
    state.put(state.RESULT_SETTINGS, settings)
    state.put(state.MODELS, models)
    return True

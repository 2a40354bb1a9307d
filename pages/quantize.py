"""Step 2: choose the variants and options, and run."""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from quant_core import MODE_INFO, CalibrationSource, Mode
from ui import run, state
from ui.widgets import accept_settings, current_inputs, float_layer_toggles, option_controls, will_build

st.title("Quantize")
st.caption(f"Working on {current_inputs().title}.")
settings = state.session.settings

st.subheader("Variants")
chosen = []
for mode in Mode:
    info = MODE_INFO[mode]
    if st.checkbox(info.title, value=mode in settings.modes, key=f"w.mode.{mode.value}", help=info.help,
                   disabled=mode is Mode.FLOAT32):
        chosen.append(mode)
    st.caption(f"`{mode.value}` · {info.help}")
if settings.float_layers:
    st.caption("Added on **Layers**: a calibrated mode with some layers kept in float.")
settings = float_layer_toggles(settings, prefix="w")

st.subheader("Options")
c1, c2 = st.columns(2)
sources: list[CalibrationSource] = list(CalibrationSource)
source = c1.radio("Calibration data", sources, key="w.cal_src", index=sources.index(settings.calibration_source),
                  format_func=lambda s: "Your images" if s is CalibrationSource.IMAGES else "Random noise (what-if)",
                  help="Calibration sets the int8/int16 activation ranges of int8, int8_float_io and int16x8.")
if source is CalibrationSource.RANDOM:
    c1.warning("Random noise does not look like your data, so the ranges it calibrates are wrong for real "
               "images: use it only to see how much representative calibration matters.", icon=":material/warning:")
threads = c2.select_slider("Interpreter threads for latency", [1, 2, 4], value=settings.threads, key="w.threads")
options = option_controls(settings, prefix="w")

new = replace(options, modes=(Mode.FLOAT32, *[m for m in chosen if m is not Mode.FLOAT32]),
              calibration_source=source, threads=threads)
recipes = accept_settings(new)

st.divider()
st.caption("Will build: " + will_build(new))
if st.button("Run", type="primary", icon=":material/play_arrow:", key="w.run"):
    run.start(new, recipes=recipes)
    st.switch_page("pages/compare.py")  # rows appear there as they are measured

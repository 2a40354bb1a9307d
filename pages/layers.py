"""Step 4: where a calibrated variant loses accuracy, and keeping its worst layers in float in one click."""

from __future__ import annotations

import streamlit as st

from ui import layers, run, state

st.title("Layers")
result = run.need_result()
candidates = layers.calibrated_variants(result)
if not candidates:
    st.info("Per-layer error is for the variants that quantize activations: int8, int8_float_io and int16x8. "
            "Add one on **Quantize** and run again.", icon=":material/info:")
    st.stop()
if state.session.restored is not None:
    st.info("Brought back after a reload: uploaded files are not kept across sessions. Upload them again on "
            "**Model & data** to look inside the layers.", icon=":material/history:")
    st.stop()

st.caption("Where a quantized variant loses accuracy: each layer's output compared with the float model's, on your "
           "images, in graph order.")
if result.shared_scale is not None:  # a detector's classic int8 failure: named here too, fixed in one click below
    found = result.shared_scale
    output = next((s.name for s in result.output_specs if s.index == found.output), "the output")
    st.warning(found.sentence(output) + f". The head's layers: {', '.join(found.head[-3:]) or 'none found'}"
               + (f" and {len(found.head) - 3} more" if len(found.head) > 3 else "") + " (**Compare** builds the fix "
               "in one click).", icon=":material/target:")
name = st.selectbox("Variant", [v.name for v in candidates], key="w.layers_variant",
                    help=f"Lowest {layers.measure(result)} with float32 first.")
variant = result.variant(name)
settings = state.current_settings()
report = layers.layer_report(variant, settings)  # None (the error said) when it cannot be measured
if report is not None:
    layers.report_section(report, variant, settings)
layers.search_section(result, settings)
layers.calibration_section(variant, settings)

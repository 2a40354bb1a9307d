"""Step 4: where a calibrated variant loses accuracy, and keeping its worst layers in float in one click."""

from __future__ import annotations

import streamlit as st

from quant_core import Mode
from ui import charts, engine, layers, run, state
from ui.widgets import ENGINE_ERRORS, accept_settings, current_inputs, show_error

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
name = st.selectbox("Variant", [v.name for v in candidates], key="w.layers_variant",
                    help="Lowest agreement with float32 first.")
variant = result.variant(name)
settings = state.current_settings()
with st.spinner(f"Comparing every layer of {name} with the float model…"):
    try:
        report = engine.layer_report(current_inputs(), state.session.override,
                                     settings, variant.recipe, name)
    except ENGINE_ERRORS as err:
        show_error(err)
        st.stop()

st.markdown(layers.summary(report))
quantized = report.worst(len(report.layers))  # worst first
left, right = st.columns([3, 1])
picked = left.multiselect(
    "Keep in float", [layer.tensor for layer in quantized], default=[layer.tensor for layer in quantized[:3]],
    format_func=lambda tensor: layers.label(report.layer(tensor)), key="w.layers_keep",
    help="Worst first. These layers then compute in float (weights and output), with QUANTIZE/DEQUANTIZE around "
         "them; the rest stays as it is.")
op_types = right.multiselect("…and every layer of these op types", sorted({layer.op for layer in quantized}),
                             key="w.layers_ops")
chosen = list(dict.fromkeys([*picked, *(layer.tensor for layer in quantized if layer.op in op_types)]))
total = len(set(variant.recipe.float_layers) | set(chosen))
submitted = st.button(f"Build {variant.mode.value} + {total} float layer{'s' * (total != 1)} beside the others",
                      type="primary", icon=":material/add_circle:", disabled=not chosen)
if variant.mode is Mode.INT8 or variant.recipe.float_layers:
    st.caption("A variant with float layers is no longer integer-only: NPUs, DSPs and microcontrollers cannot run "
               "it (the verdict's integer-only pick ignores it); CPUs and GPUs can.")
if submitted:
    wanted = settings.with_float_layers(variant.mode, (*variant.recipe.float_layers, *chosen))
    run.start(wanted, recipes=accept_settings(wanted))
    st.switch_page("pages/compare.py")

st.plotly_chart(charts.layer_error_chart(report, set(chosen)), key="layer_error")
st.caption(layers.EXPLANATION)
st.subheader("The layers that add the most error", anchor=False)
st.dataframe(layers.worst_table(report, 10), hide_index=True, width="stretch")
layers.search_section(result, settings)
layers.calibration_section(variant, settings)

"""Step 3: every variant side by side."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import streamlit as st

from quant_core import CompareResult
from quant_core.tasks import Task
from ui import box_fix, box_views, charts, engine, html_grid, published, run, state, task_views, verdict
from ui.widgets import accept_settings, current_inputs, details_now, option_controls, variant_toggles

st.title("Compare")
verdict_slot = st.container()  # the verdict goes first, once a result is known
publication = published.viewing()


def what_if_controls() -> CompareResult | None:
    """The owner's What if… controls and the run they start; the result to draw (None while a run streams)."""
    run.collect()  # again: a run may have ended since the router collected
    working = run.live()
    result = state.session.result if working is None else None
    if working is None and result is None:
        result = run.need_result()  # explains how to get one, and stops
    shown = state.current_settings(latest_run=True)  # also a failed what-if: it is not tried again at every click
    with st.expander("What if… change a variant or an option here: the table follows", expanded=True,
                     icon=":material/tune:"):
        wanted = option_controls(variant_toggles(shown, prefix="w.cmp"), prefix="w.cmp")
        st.caption("Variants this model has already measured with the same options come back at once; changed "
                   "ones are built now, and their rows appear as soon as their size and agreement are known. "
                   "More options (calibration data, threads) on **Quantize**.")
    if wanted != shown:
        run.start(wanted, recipes=accept_settings(wanted))  # stops the run it replaces
        st.rerun()
    if working is not None:
        run.follow(working)  # until it ends; then the page is drawn again with its result
    run.show_failure()
    return result


restored = state.session.restored  # an upload's result brought back by a reload: its files are gone
found: CompareResult | None  # None only while a run streams: `what_if_controls` follows it, then reruns the page
thumbs: Mapping[str, np.ndarray | bytes]
if publication is not None:
    found, thumbs = publication.result, published.thumbnails(publication)
elif restored is not None:
    found, thumbs = state.session.result, published.thumbnails(restored)
    st.info("Brought back after a reload. Uploaded files are not kept across sessions: upload them again on "
            "**Model & data** to change options or run again.", icon=":material/history:")
else:
    found = what_if_controls()
    inputs = current_inputs()
    paths = tuple(str(p) for p in inputs.images)
    thumbs = task_views.photos(paths, engine.inputs_key(inputs), found) if found is not None else {}
assert found is not None
result: CompareResult = found
with verdict_slot:
    setup = (f"{result.model.name}: {len(result.images)} images, preprocessing "
             f"{result.preprocessing.normalization.label}, calibration from {result.calibration.source}.")
    if publication is not None:
        st.info(f"A published comparison, read-only: {publication.summary}.", icon=":material/public:")
        st.caption(f"Smaller versions (variants) of the model {result.model.name}, each run on the same "
                   f"{result.fidelity_images} images as the original and compared with it.", help=setup)
    else:
        st.caption(setup)
    verdict.verdict_card(result, published=publication is not None)
    verdict.what_if_banner(result, published=publication is not None)
for v in result.variants:
    if not v.ok:
        st.error(f"{v.name} failed: {v.error}", icon=":material/cancel:")
    elif v.warning:
        st.warning(f"{v.name} {v.warning}", icon=":material/warning:")

st.subheader("Every variant, measured", anchor=False, help="\n".join(
    f"- **{title}**: {text}" for title, text in charts.summary_column_help(result).items()))
st.caption("Highlighted: the best value in each column (columns measured against float32: among the variants "
           "compared with it; variants with a warning are never highlighted). The (?) by the heading explains each "
           "column. "
           + (charts.coarseness_note(len(result.images)) if result.labelled and result.task is Task.CLASSIFICATION
              else ""))
st.table(charts.styled_summary(result).hide(axis="index"))
box_fix.shared_scale_fix(result, published=publication is not None or restored is not None)
if kernel_rows := charts.kernel_rows(result):
    with st.expander("On the kernels other targets run: no XNNPACK, and TFLite Micro", icon=":material/memory:"):
        st.caption("Every variant above ran on this machine's XNNPACK. NPUs, DSPs and microcontrollers run other "
                   "kernels: here the same images on LiteRT's builtin kernels without XNNPACK and, for an "
                   "integer-only variant, in TensorFlow Lite Micro (its tensor arena measured). Agreement with "
                   "float32 as in the table; the integer-only verdict uses TFLite Micro's.")
        st.dataframe(kernel_rows, hide_index=True, column_config={
            **{c: st.column_config.NumberColumn(format="percent") for c in ("XNNPACK", "builtin, no XNNPACK",
                                                                             "TFLite Micro")},
            "largest difference": st.column_config.NumberColumn(format="%.3g"),
            "TFLM arena (KB)": st.column_config.NumberColumn(format="%.1f")})



def charts_and_notes() -> None:
    """The four charts and where latency was measured."""
    left, right = st.columns(2)
    left.plotly_chart(charts.fidelity_chart(result), key="fidelity")
    right.plotly_chart(charts.latency_chart(result), key="latency")
    left.plotly_chart(charts.size_chart(result), key="size")
    right.plotly_chart(charts.memory_chart(result), key="memory")
    with st.expander("Why latency here may not match your phone"):
        for note in result.environment.notes:
            st.markdown(f"- {note}")
        st.caption(f"Measured on {result.environment.cpu} ({result.environment.machine}), "
                   f"{result.environment.threads} thread(s).")


@st.fragment
def per_image_grid() -> None:
    """Thumbnails with each variant's top-k; its controls rerun only this fragment."""
    st.subheader("Per image")
    ok = charts.ok_variants(result)
    shown = st.multiselect("Variants", [v.name for v in ok], default=charts.most_disagreeing(result, 3),
                           key="w.grid_variants", help="By default float32 and the three variants that change "
                           "its top-1 prediction most often.")
    only = st.toggle("Only images where variants disagree", key="w.only_disagree")
    flags = charts.disagreement(result)
    rows = sorted((k for k in range(len(result.images)) if flags[k] or not only), key=lambda k: not flags[k])
    st.caption(f"{sum(flags)} of {len(result.images)} images have at least one variant disagreeing with float32 "
               "(shown first). Each variant lists its top classes with their probabilities; ✓ marks the true class.")
    page_size = 12
    pages = max(1, (len(rows) + page_size - 1) // page_size)
    page = st.number_input("Page", 1, pages, 1, key="w.grid_page") if pages > 1 else 1
    st.html(html_grid.grid(result, rows[(page - 1) * page_size: page * page_size], shown, thumbs))


@st.fragment
def confusion_matrix() -> None:
    """One variant's confusion matrix (or, with many classes, its mistakes); choosing another reruns only this."""
    st.subheader("Mistakes" if len(result.class_names) > charts.MAX_CONFUSION_CLASSES else "Confusion matrix")
    name = st.selectbox("Variant", [v.name for v in charts.ok_variants(result)], key="w.cm_variant")
    if len(charts.confusion_classes(result, name)) <= charts.MAX_CONFUSION_CLASSES:
        st.caption(f"Confusion matrix: {name} · rows: true class, columns: predicted class; off-diagonal cells "
                   "(red) are mistakes.")
        st.table(charts.confusion_table(result, name))
        return
    mistakes = charts.mistakes_frame(result, name)
    st.caption(f"{name} gets {len(mistakes)} of {len(result.images)} images wrong (top-1). With "
               f"{len(result.class_names)} classes a confusion matrix is unreadable: these are its mistakes.")
    if len(mistakes):
        st.dataframe(mistakes, hide_index=True, width="stretch")


if details_now():  # a session's first draw paints the verdict and the table first; the rest follows by itself
    charts_and_notes()
    if result.task is Task.CLASSIFICATION:
        per_image_grid()
        if result.labelled:
            confusion_matrix()
    else:  # float32's masks or points beside each variant's, or every output's error: one drawn at a time
        task_views.details(result, thumbs, boxes=box_views.per_image_boxes)
    # Which result is on screen, all of it, for browser tests and benchmarks: a rerun's stale elements can look
    # finished.
    st.html(f'<div data-qw-result="{result.request_key[:16]}" style="height:1px"></div>')  # 1 px: "visible"

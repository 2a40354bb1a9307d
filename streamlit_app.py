"""Quantization Workbench: the router. Page config, shared sidebar, navigation."""

from __future__ import annotations

import streamlit as st
from streamlit.navigation.page import StreamlitPage

from quant_core import QuantError
from quant_core.errors import report_internal
from ui import charts, logs, published, resume, run, sessions, state  # noqa: F401  charts: Plotly and pandas' Styler load with the first page,
# not inside a later Compare render, where a first import held module locks other requests waited on
from ui.inputs import sample_inputs, samples
from ui.share import RUN_PARAM, override_from_query, reading_from_query, settings_from_query
from ui.widgets import show_error, sidebar_status

READ_ONLY = ("Compare", "Ops", "Report & share")  # what a published comparison shows: nothing is computed


def apply_query_params() -> bool:
    """A shared link (?sample=...&modes=...) selects a bundled sample and options, once per session.

    Returns True when the link asks for the results (run=1, as Report & share's links do): the comparison
    then runs on Compare (a cached answer comes back at once).
    """
    if state.session.params_applied:
        return False
    state.session.params_applied = True
    params = st.query_params.to_dict()
    if params.get("sample") not in {s.name for s in samples()} or state.session.result is not None:
        return False  # not a sample link (a reload's ?r= brought its own result and options back)
    try:
        settings, override = settings_from_query(params), override_from_query(params)
        reading = reading_from_query(params)
    except (QuantError, ValueError) as err:
        st.toast(f"Ignored the link's settings: {err}")
        return False
    state.session.inputs = sample_inputs(params["sample"])
    state.session.settings = settings
    state.session.reading = reading
    if override is not None:
        state.session.override = override
    return params.get(RUN_PARAM) == "1"


def bring_back() -> bool:
    """The session's own work, before any page: a reload's result (?r=<id>), a shared link's sample and options, a
    comparison that ended while another page was shown (its result is this session's now).

    Returns True when a bundled-sample link asks for its results.
    """
    resume.restore()
    linked = apply_query_params()
    run.collect()
    resume.keep_in_address()
    return linked


def all_pages(*, viewing: bool) -> list[StreamlitPage]:
    """Every step, in sidebar order; a published comparison opens on Compare, the workbench on Model & data."""
    return [
        st.Page("pages/model_data.py", title="Model & data", icon=":material/upload_file:", default=not viewing),
        st.Page("pages/quantize.py", title="Quantize", icon=":material/tune:"),
        st.Page("pages/compare.py", title="Compare", icon=":material/compare:", default=viewing),
        st.Page("pages/layers.py", title="Layers", icon=":material/stacked_bar_chart:"),
        st.Page("pages/ops.py", title="Ops", icon=":material/memory:"),
        st.Page("pages/evaluate.py", title="Full dataset", icon=":material/dataset:"),
        st.Page("pages/report.py", title="Report & share", icon=":material/ios_share:"),
    ]


def sidebar_heading(*, viewing: bool) -> None:
    """The workbench's name, and for a published comparison what the reader is looking at."""
    with st.sidebar:
        st.markdown("### Quantization Workbench")
        st.caption("Post-training quantization of TF/Keras image models (classifiers, detectors, segmenters, "
                   "landmark and embedding models), measured on the real converters and interpreter.")
        if viewing:
            st.caption("You are looking at a published comparison (read-only).")
            st.link_button("Open the workbench", published.root_url(), icon=":material/home:")


def run_page(page: StreamlitPage, *, viewing: bool) -> None:
    """Runs the chosen page between two draws of the session's status in the sidebar; a bug shows its incident id."""
    status_slot = st.sidebar.empty()  # the session's own status: nothing to say about a published comparison
    if not viewing:
        sidebar_status(status_slot)  # now, for pages that follow a run for a while; drawn again after the page
    try:
        page.run()
    except Exception as err:  # noqa: BLE001 - a bug in a page: logged with its traceback, shown by its incident id
        show_error(report_internal(err, context=f"the {page.title!r} page"))
    finally:  # after the page, so it reflects what the page just changed (also when the page stops early)
        if not viewing:
            sidebar_status(status_slot)


def main() -> None:
    """Page config, the session brought back, the navigation, the sidebar, then the page."""
    st.set_page_config(page_title="Quantization Workbench", page_icon=":material/compress:", layout="wide")
    logs.configure()
    viewing = published.is_viewing()  # a published comparison: read-only pages, nothing is computed
    linked = not viewing and bring_back()
    sessions.sweep()  # removes the folders of sessions that ended (at most every QW_SESSION_SWEEP_S, 60 s)
    pages = all_pages(viewing=viewing)
    page = st.navigation([p for p in pages if p.title in READ_ONLY] if viewing else pages)
    if linked:  # a bundled-sample link opens on its results
        run.start()
        st.switch_page(pages[2])
    sidebar_heading(viewing=viewing)
    run_page(page, viewing=viewing)


main()

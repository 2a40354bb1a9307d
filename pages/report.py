"""Step 7: download the models and a report, share a link."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import streamlit as st

from quant_core import MissingModelError
from ui import engine, published, share, state, task_views
from ui.verdict import current_floor
from ui.html_report import render_report
from ui.widgets import current_inputs

st.title("Report & share")
result, publication = published.result_shown()
name = result.model.name
if publication is None:
    inputs = current_inputs()
    restored = state.session.restored  # an upload's result after a reload: the thumbnails it was kept with
    thumbs: Mapping[str, np.ndarray | bytes] = published.thumbnails(restored) if restored is not None else \
        task_views.photos(tuple(str(p) for p in inputs.images), engine.inputs_key(inputs), result)
    models = state.session.models  # this session's copies: they outlive the shared cache's cleaning
else:
    thumbs, models = published.thumbnails(publication), published.models(publication)

st.subheader("Report")
floor = current_floor()  # the one set on Compare: the report says which variant to ship under it
if publication is None:
    st.caption("A single HTML file with the verdict (under the fidelity floor set on Compare: "
               f"{floor.label}), the table, charts and per-image results inline: it opens offline and reads "
               "on its own for someone who never saw the app.")
else:  # a reader of the link: everyday words, the term on hover
    st.caption(f"A single HTML file with the decision (required, as set on Compare: {floor.plain}), the table, "
               "charts and per-image results inline: it opens offline.", help=f"Fidelity floor: {floor.label}.")
c1, c2, c3 = st.columns(3)
c1.download_button("HTML report", render_report(result, thumbnails=thumbs, floor=floor),
                   f"{name}_quantization_report.html", "text/html", type="primary", icon=":material/description:",
                   on_click="ignore", key="dl.html")
c2.download_button("Numbers (JSON)", share.report_json(result, floor), f"{name}_report.json", "application/json",
                   icon=":material/data_object:", on_click="ignore", key="dl.json")
c3.download_button("Numbers (CSV)", share.report_csv(result), f"{name}_variants.csv", "text/csv",
                   icon=":material/table:", on_click="ignore", key="dl.csv")


def model_downloads(models) -> None:
    """The zip of every model with its recipe, then each variant's .tflite and recipe."""
    st.download_button("All models + recipes (.zip)", share.models_zip(result, models), f"{name}_variants.zip",
                       "application/zip", icon=":material/folder_zip:", on_click="ignore", key="dl.zip")
    for v in result.variants:
        if not v.ok:
            continue
        cols = st.columns([3, 2, 2, 2])
        size_kb = (v.size_bytes or 0) / 1024  # set for every built variant
        cols[0].markdown(f"**{v.name}** · {size_kb:,.1f} KB · {v.input_dtype} in / {v.output_dtype} out")
        files = result.variant_files(v, models)  # the .tflite, its recipe JSON and the script that rebuilds it
        model_name, recipe_name, script_name = (next(n for n in files if n.endswith(end))
                                                for end in (".tflite", ".recipe.json", ".recipe.py"))
        cols[1].download_button(".tflite", files[model_name], model_name, "application/octet-stream",
                                on_click="ignore", key=f"dl.tflite.{v.name}")
        cols[2].download_button("recipe .json", files[recipe_name], recipe_name, "application/json",
                                on_click="ignore", key=f"dl.recipe.{v.name}")
        cols[3].download_button("recipe .py", files[script_name], script_name, "text/x-python", on_click="ignore",
                                key=f"dl.script.{v.name}",
                                help="A standalone script (TensorFlow or the LiteRT Quantizer, no workbench) that "
                                     "rebuilds this exact .tflite from your model and the calibration images it lists.")


st.subheader("Models")
if models is None:
    st.caption("The owner published the numbers without the .tflite files.")
else:
    try:
        model_downloads(models)
    except MissingModelError:  # a result brought back by a reload, after the cache let its models go
        st.caption("These models are no longer kept on the server: run the comparison again to download them.")
original = published.source_file(publication) if publication is not None else None
if original is not None:
    st.download_button("Original model", original[1], original[0], "application/octet-stream", on_click="ignore",
                       icon=":material/download:", key="dl.source")

if publication is not None:
    published.delete_form(publication)
    st.stop()
st.subheader("Publish")
published.publish_form(result, thumbs, models, inputs)
st.subheader("Share the options")
if inputs.sample:
    query = share.share_query(inputs.sample, state.session.settings, state.session.override, state.session.reading)
    base = (st.context.url or "").split("?")[0]
    st.caption("This link opens the workbench on the same bundled sample with the same options, on Compare with "
               "the results (from the server's cache when it has them).")
    st.code(base + query, language=None)
else:
    st.caption("Option links reopen bundled samples only: publish to share a comparison of your upload.")

"""Step 6: the variants scored on every image of a dataset on the server (locally or on Ray)."""

from __future__ import annotations

import streamlit as st

from quant_core.tasks import Task
from ui import evaluate, run, state
from ui.widgets import current_inputs

st.title("Full dataset")
result = run.need_result()
if state.session.restored is not None:
    st.info("Brought back after a reload: uploaded files are not kept across sessions. Upload them again on "
            "**Model & data** to evaluate on a dataset.", icon=":material/history:")
    st.stop()
classifier = result.task is Task.CLASSIFICATION
measure = "accuracy" if classifier else evaluate.measure(result)
st.caption(f"Your {len(result.images)} images give a coarse {measure}. Before shipping, score the variants on a whole "
           "validation set kept on the server: every image is read once, in shards, and run through every variant.")
inputs = current_inputs()
offers = evaluate.offers(result, () if classifier else evaluate.compared_images(
    tuple(str(p) for p in inputs.images), str(inputs.folder) if inputs.folder else None, inputs.digest))
if not offers:
    kept = "folders of class folders" if classifier else "folders of images"
    st.info(f"No datasets on this server: an operator puts {kept} (or .zip/.tar archives of them) "
            f"in the folder named by QW_DATASETS_DIR ({evaluate.datasets_dir()}). The command line takes any folder: "
            "`python -m quant_core compare MODEL --images FOLDER --executor ray`.", icon=":material/info:")
    st.stop()
offer = st.selectbox("Dataset", offers, format_func=lambda o: o.label, key="w.evaluate_dataset",
                     help="Sets whose class folders are the model's classes come first." if classifier else
                     f"Any images: the model is not a classifier, so class folders are not read; each variant is "
                     f"scored by its {evaluate.measure(result)} with float32, image by image. Sets holding the images "
                     "you compared come first; sets of images under half the model's input size last.")
if offer.refusal:
    st.error(offer.refusal, icon=":material/block:")
built = [v.name for v in result.variants if v.ok]
variants = st.multiselect("Variants", built, default=built, key="w.evaluate_variants",
                          help=f"float32 always runs too: {evaluate.measure(result)} is measured against it.")
st.caption(f"Runs on {evaluate.executor_label()}.")
if evaluate.stopped():
    st.info("Stopped: the evaluation and its remaining work were cancelled.", icon=":material/stop_circle:")
if st.button(f"Evaluate on {offer.dataset.images:,} images", type="primary", icon=":material/playlist_play:",
             disabled=not variants or offer.refusal is not None, key="w.evaluate_go"):
    evaluate.run(result, state.current_settings(), offer.dataset, tuple(variants))
entry = state.session.evaluation
if entry is not None and entry[0] == result.request_key:
    evaluate.render(result, entry[1])

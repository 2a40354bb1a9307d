"""Step 1: choose a model and images, and see what the workbench understood."""

from __future__ import annotations

from contextlib import nullcontext

import streamlit as st

from quant_core import ChannelOrder, PreprocessingOverride, QuantError, ResizeMethod
from quant_core.tasks import Task, main_output
from ui import engine, run, state
from ui.inputs import (MAX_TOTAL_UPLOAD_MB, MAX_UPLOAD_MB, add_truth, drop_truth, refit_truth,
                       sample_inputs, samples, save_uploads, truth_format, truth_said, with_truth)
from ui.settings import Reading
from ui.widgets import (ENGINE_ERRORS, current_inputs, markdown_text, normalization_picker, reading_controls,
                        show_error, task_line)

st.title("Model & data")
st.markdown(
    "Compare every post-training quantization of a TensorFlow/Keras image classifier, side by side: "
    "size, measured latency, accuracy and agreement with the float model. Detectors, segmenters, landmark and "
    "embedding models too: each output is measured against the float model's, a detector's by its boxes. "
    "Start with a bundled sample in one click, or upload your own model and images."
)

source = st.radio("Source", ["Bundled sample", "Upload my own"], horizontal=True, key="w.source",
                  index=0 if current_inputs().sample else 1)
if source == "Bundled sample":
    names = [s.name for s in samples()]
    current = current_inputs().sample or names[0]
    name = st.selectbox("Sample", names, index=names.index(current) if current in names else 0, key="w.sample",
                        format_func=lambda n: f"{n} — {next(s.description for s in samples() if s.name == n)[:90]}…")
    if current_inputs().sample != name:
        run.reset()
        state.use_inputs(sample_inputs(name))
else:
    with st.form("upload"):
        # No `type=` filters: a wrong type gets a one-line message naming the accepted ones (check_types).
        model_file = st.file_uploader("Model: .keras, .h5/.hdf5, float .tflite or a .zip of a SavedModel",
                                      max_upload_size=MAX_UPLOAD_MB)
        image_files = st.file_uploader(
            "Images: several files, or a .zip with one subfolder per class (labels come from folder names)",
            accept_multiple_files=True, max_upload_size=MAX_UPLOAD_MB)
        labels_file = st.file_uploader("Optional class names: .txt (one per line) or .json")
        submitted = st.form_submit_button("Use these files", type="primary")
    st.caption(f"Each file may be up to {MAX_UPLOAD_MB} MB, {MAX_TOTAL_UPLOAD_MB} MB in all. Files stay in this "
               "session's private folder, which is deleted when the session ends.")
    if submitted:
        if model_file is None or not image_files:
            st.error("Choose a model file and at least one image (or a .zip of images).")
            st.stop()
        try:  # checked in a new folder: the inputs in use and their result stay until these are accepted
            with state.upload_folder() as folder:
                uploaded = save_uploads(folder, (model_file.name, model_file.getvalue()),
                                        [(f.name, f.getvalue()) for f in image_files],
                                        (labels_file.name, labels_file.getvalue()) if labels_file else None)
                engine.describe(uploaded, PreprocessingOverride())
        except ENGINE_ERRORS as err:
            show_error(err)
            st.stop()
        run.reset()  # first: the run of the previous inputs stops before their files go
        state.use_inputs(uploaded)
    elif current_inputs().sample:  # nothing accepted yet: no summary or run button that would use the sample
        st.caption(f"Until your files are accepted, the workbench keeps working on the {current_inputs().title}.")
        st.stop()

inputs = current_inputs()
override = state.session.override
try:
    description = engine.describe(inputs, override)
except ENGINE_ERRORS as err:
    show_error(err)
    st.stop()

try:
    specs, task = state.session.reading.applied(description.found.outputs) if description.found.outputs else \
        ((), description.found.task)
except QuantError as err:  # a link's roles that name outputs this model has not
    st.warning(f"The output roles chosen do not fit this model, so they are not used: {err}", icon=":material/warning:")
    state.session.reading = Reading()
    specs, task = description.found.outputs, description.found.task
classifier = task is Task.CLASSIFICATION

info = description.found.info
st.subheader(f"What we understood: {info.name}")
cols = st.columns(4)
cols[0].metric("Input", "×".join(str(d) for d in info.input_shape[1:]), help="height × width × channels")
if classifier:
    scores = main_output(specs)  # a model read as a classifier by your choice: its class-scores output
    cols[1].metric("Classes", info.num_classes or (scores.shape[-1] if scores else 0))
else:
    cols[1].metric("Task", task.value, help="What the model does: it decides how each variant is measured.")
cols[2].metric("Parameters", f"{info.param_count:,}")
cols[3].metric("Format", info.format.value)
if st.button("Run the full comparison", type="primary", icon=":material/play_arrow:"):
    run.start()
    st.switch_page("pages/compare.py")  # rows appear there as they are measured
st.caption("Builds and measures every variant chosen on **Quantize** (all of them by default) and opens **Compare**.")

ident = engine.inputs_key(inputs)[:12]  # fresh preprocessing and reading widgets for each new model
reading = state.session.reading
outputs = "\n".join(f"- {markdown_text(o.description)}" for o in specs)
if not classifier:  # a classifier's page looks as before: its task and outputs wait in the last expander
    st.markdown(task_line(specs, task, reading) + "\n" + outputs)

pre = description.found.preprocessing
# Open while the user has changed something: a new label re-creates the expander, which would hide the fields.
with st.expander(f"Preprocessing: {pre.normalization.label}, {pre.resize.value} resize",
                 expanded=override != PreprocessingOverride()):
    st.caption(("The model contains its own preprocessing: " + ", ".join(info.preprocessing_layers) + ". ")
               if info.has_preprocessing_layer else "No rescaling or normalization layer inside the model. ")
    st.caption(f"How this was chosen: {pre.source}")
    normalization = normalization_picker(pre.normalization, channels=info.channels, key=f"w.norm.{ident}")
    c1, c2, c3 = st.columns(3)
    resizes = list(ResizeMethod)
    resize = c1.selectbox("Resize", resizes, index=resizes.index(pre.resize), key=f"w.resize.{ident}")
    orders = list(ChannelOrder)
    order = c2.selectbox("Channels", orders, index=orders.index(pre.channel_order), disabled=info.channels != 3,
                         key=f"w.order.{ident}.{pre.normalization.preset}")  # a new preset brings its own order
    crop = c3.checkbox("Center crop", value=pre.center_crop, key=f"w.crop.{ident}")
    chosen = PreprocessingOverride(
        normalization=normalization if normalization != pre.normalization or override.normalization else None,
        resize=resize if resize is not pre.resize or override.resize else None,
        channel_order=order if order is not pre.channel_order or override.channel_order else None,
        center_crop=crop if crop != pre.center_crop or override.center_crop is not None else None)
    if chosen != override:
        state.session.override = chosen
        run.reset()
        st.rerun()

if specs:
    with st.expander(task_line(specs, task, reading) if classifier else "Task and output roles: change them if "
                     "they are wrong", expanded=not reading.inferred, icon=":material/category:"):
        if classifier:
            st.markdown(outputs)
        chosen_reading = reading_controls(description.found.outputs, reading, key=f"w.reading.{ident}")
    if chosen_reading != reading:
        state.session.reading = chosen_reading
        try:  # ground truth is scored against the main output: the new reading may leave it nothing to score
            refitted, dropped = refit_truth(inputs, *chosen_reading.applied(description.found.outputs),
                                            description.found.preprocessing)
        except QuantError:  # roles that do not fit: said (and undone) on the next draw
            refitted, dropped = inputs, None
        if dropped:
            state.session.inputs, state.session.truth_dropped = refitted, dropped
        run.reset()  # the result read the outputs otherwise
        engine.prepare(refitted, override)  # the new reading's worker opens the model while the page redraws
        st.rerun()

if state.session.truth_dropped:  # said once, where the reading was changed
    st.warning(state.session.truth_dropped, icon=":material/warning:")
    state.session.truth_dropped = None
if not classifier:  # ground truth scores each variant against annotations, beside float32's outputs
    st.subheader("Ground truth (optional)")
    boxed = task is Task.DETECTION
    st.caption(f"Score every variant against your own annotations too: {truth_format(task)}. In use: "
               f"{truth_said(inputs)}.")
    with st.form(f"truth.{ident}"):
        truth_files = st.file_uploader("Ground truth: YOLO .txt files, a .zip of them, or one COCO .json" if boxed
                                       else "Ground truth: PNG masks, a .zip of them, or one .json of points",
                                       accept_multiple_files=True, max_upload_size=MAX_UPLOAD_MB,
                                       key=f"w.truth.{ident}")
        use_truth = st.form_submit_button("Use this ground truth")
    if inputs.truth and st.button("Remove the ground truth", icon=":material/delete:"):
        drop_truth(inputs)
        state.session.inputs = with_truth(inputs, ())
        run.reset()
        st.rerun()
    if use_truth and not truth_files:
        st.error("Choose YOLO .txt files, a .zip of them or one COCO .json first." if boxed
                 else "Choose PNG masks, a .zip of them or one .json of points first.")
    elif use_truth:
        try:  # a sample gets a private folder of its own for it (removed with the inputs: state.use_inputs)
            with state.upload_folder() if inputs.folder is None else nullcontext(inputs.folder) as folder:
                truthful = add_truth(inputs, [(f.name, f.getvalue()) for f in truth_files], folder=folder,
                                     specs=specs, preprocessing=description.found.preprocessing, task=task)
        except ENGINE_ERRORS as err:
            show_error(err)
        else:
            drop_truth(inputs)
            state.session.inputs = truthful
            run.reset()  # the result was measured without it
            st.rerun()

st.subheader(f"Images: {description.found.image_count}")
if classifier:
    st.caption(f"Labels: {description.found.labels_source}.")
    st.dataframe({"class": [c for c, _ in description.found.class_counts],
                  "images": [n for _, n in description.found.class_counts]}, hide_index=True, width="content")
else:
    st.caption(f"These images are not labelled by class: the model is not a classifier ({task.value}). Every "
               "variant's outputs are compared with float32's on them.")
if description.found.skipped:
    st.warning(f"{len(description.found.skipped)} file(s) skipped: " +
               "; ".join(f"{s.name} ({s.reason})" for s in description.found.skipped[:8]), icon=":material/warning:")
grid = st.columns(8)
for k, (name, pixels) in enumerate(description.pictures):  # a few of every class, in class order
    grid[k % 8].image(pixels, caption=name.split("/")[-1], width="stretch")

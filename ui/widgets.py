"""Reusable widget groups shared by several pages."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import replace

import streamlit as st

from quant_core import MODE_INFO, Backend, InternalError, IOType, Mode, Normalization, Preset, QuantError, Recipe
from quant_core.boxes import choices
from quant_core.inputs.preprocess import format_numbers, parse_numbers
from quant_core.layers import layer_name
from quant_core.tasks import OutputSpec, Role, Task, fits, main_output
from ui import state
from ui.inputs import Inputs, sample_inputs
from ui.settings import Reading, Settings


def current_inputs() -> Inputs:
    """The inputs in use; the default bundled sample until the user picks something else."""
    inputs = state.session.inputs
    if inputs is None:
        inputs = state.session.inputs = sample_inputs()
    return inputs


ENGINE_ERRORS = (QuantError, InternalError)  # what an engine call raises that a page shows in one line


def show_error(err: QuantError | InternalError) -> None:
    """One line, no traceback: the user's error as is, or a bug's incident id and that it is not their doing."""
    if isinstance(err, InternalError):
        st.error(f"{err}. This is a bug in the workbench, not a problem with your files or settings; "
                 "the server log has the details under that id.", icon=":material/bug_report:")
    else:
        st.error(str(err), icon=":material/error:")


_SIDEBAR = threading.local()  # the status slot of the script run on this thread (each run has its own thread)


def sidebar_status(slot) -> None:
    """What is loaded and whether results exist, on every page (drawn into a sidebar slot; see `refresh_sidebar`)."""
    _SIDEBAR.slot = slot
    inputs = current_inputs()
    with slot.container():
        st.caption(f"**Working on:** {inputs.title}")
        result = state.session.result
        run = state.session.run
        running = run if run is not None and not run.finished else None
        if running is not None:
            st.caption(f"**Running:** {running.tally}.")  # the progress bar's own words (ui.run.Run.tally)
            st.page_link("pages/compare.py", label="Watch it on Compare", icon=":material/compare:")
        if result is not None:
            ok = sum(v.ok for v in result.variants)
            st.caption(f"**Last run:** {ok}/{len(result.variants)} variants on {len(result.images)} images.")
        elif running is None:
            st.caption("No comparison yet.")


def refresh_sidebar() -> None:
    """Draws the sidebar status again: a page that follows a run keeps it in step with its progress bar."""
    slot = getattr(_SIDEBAR, "slot", None)
    if slot is not None:
        sidebar_status(slot)


def normalization_picker(current: Normalization, *, channels: int, key: str) -> Normalization:
    """A preset selector with mean/std fields for a custom normalization; returns the choice.

    Invalid custom numbers show one error line and keep `current`.
    """
    presets = [p for p in Preset if p is Preset.CUSTOM or Normalization.of(p).fits(channels)]
    preset = st.selectbox("Normalization", presets, index=presets.index(current.preset), key=f"{key}.preset",
                          format_func=lambda p: p.description,
                          help="How 0..255 pixels become model input. Feeding the wrong one silently ruins accuracy.")
    if preset is not Preset.CUSTOM:
        return Normalization.of(preset)
    left, right = st.columns(2)
    mean = left.text_input("Mean (units of x/255, one value or one per channel)", format_numbers(current.mean),
                           key=f"{key}.mean")
    std = right.text_input("Std (units of x/255)", format_numbers(current.std), key=f"{key}.std")
    st.caption("Model input = (x/255 − mean) / std per channel. ImageNet: mean 0.485,0.456,0.406, "
               "std 0.229,0.224,0.225.")
    try:
        chosen = Normalization.custom(parse_numbers(mean, name="mean"), parse_numbers(std, name="std"))
        if not chosen.fits(channels):
            raise QuantError(f"the model takes {channels} channel(s): give one value or {channels}")
    except QuantError as err:
        show_error(err)
        return current
    return chosen


def markdown_text(text: str) -> str:
    """Text shown as is in Markdown: its emphasis, link, HTML and LaTeX characters escaped."""
    return "".join(f"\\{c}" if c in "\\`*_[]<>$~#|" else c for c in text)


def task_line(specs: tuple[OutputSpec, ...], task: Task, reading: Reading) -> str:
    """What the model does and why, in Markdown: "Task: **segmentation** (inferred from activation_10: ...)"."""
    main = main_output(specs)
    if reading.task is not None:
        why = "set by you"
    elif main is None:
        why = "the model has no outputs to read"
    else:
        why = f"{'set by you' if main.set_by_user else 'inferred'} from {main.name}: {main.evidence}"
    return f"Task: **{task.value}** ({markdown_text(why)})"


def reading_controls(inferred: tuple[OutputSpec, ...], reading: Reading, *, key: str) -> Reading:
    """A Task selectbox (Inferred, or a task) and a Role selectbox per output; the reading chosen.

    Each Role box offers the roles its output's shape can hold and shows the role the reading
    gives it. A task no output can hold is said in one line and not taken.
    """
    shown, task = reading.applied(inferred)
    tasks: list[Task | None] = [None, *Task]
    inferred_task = Reading().applied(inferred)[1]
    chosen_task = st.selectbox(
        "Task", tasks, index=tasks.index(reading.task), key=f"{key}.task",
        format_func=lambda t: f"Inferred: {inferred_task.value}" if t is None else t.value,
        help="What the model does: it decides the measure of agreement with float32 and the per-image views. "
             "Inferred from the outputs' roles; choose another when it is wrong.")
    chosen = Reading(chosen_task, reading.roles, reading.decoder)
    try:
        chosen.applied(inferred)
    except QuantError as err:
        show_error(err)
        chosen = Reading(reading.task, reading.roles, reading.decoder)
    for spec, now in zip(inferred, shown):
        roles = [r for r in Role if r is now.role or fits(r, spec.shape, layout=spec.layout)]
        role = st.selectbox(f"Role of {spec.name} {spec.shape_text}", roles, index=roles.index(now.role),
                            key=f"{key}.role.{spec.index}.{now.role.value}",  # a new task brings its own roles
                            format_func=_role_words(spec.role), help=f"Inferred: {spec.evidence}.")
        if role is not None and role is not now.role:
            chosen = chosen.with_role(spec, role, inferred=spec.role)
    st.caption(f"The comparison reads the model as **{task.value}**. A task needs one output of its kind: with a "
               "task chosen, the first output that can hold it takes its role.")
    if chosen.applied(inferred)[1] is Task.DETECTION:
        chosen = replace(chosen, decoder=_decoder_control(chosen.applied(inferred)[0], chosen.decoder, key=key))
    return chosen


_CUSTOM = "ssd:custom"


def _decoder_control(specs: tuple[OutputSpec, ...], current: str, *, key: str) -> str:
    """A detector's decoder: inferred, one its outputs fit, or custom SSD anchors typed as key=value words."""
    options = ["", *choices(specs), _CUSTOM]
    now = _CUSTOM if current.startswith(_CUSTOM) else current
    if now not in options:
        options.insert(1, now)
    picked = st.selectbox(
        "Decoder", options, index=options.index(now), key=f"{key}.decoder",
        format_func=lambda c: "Inferred from the outputs" if not c else "custom SSD anchors" if c == _CUSTOM else c,
        help="How the outputs become boxes: an SSD head's anchors (MediaPipe's presets), a YOLO-style output, or "
             "TFLite_Detection_PostProcess. Inferred when the outputs say; the comparison says which it used.")
    if picked != _CUSTOM:
        return picked
    typed = st.text_input("SSD anchor options (MediaPipe's SsdAnchorsCalculator names)",
                          value=current.partition(" ")[2] or "strides=8,16,16,16 keypoints=0", key=f"{key}.anchors",
                          help="Space-separated key=value: strides, min_scale, max_scale, anchor_offset_x/y, "
                               "fixed_anchor_size, interpolated_scale_aspect_ratio, keypoints, min_score, nms_iou; "
                               "the rest as MediaPipe's face detector.")
    return f"{_CUSTOM} {typed.strip()}"


def _role_words(inferred: Role) -> Callable[[Role], str]:
    """How a Role box names each role: the inferred one says so."""
    return lambda role: f"{role.value} (inferred)" if role is inferred else role.value


def accept_settings(settings: Settings, *, recipes: tuple[Recipe, ...] | None = None) -> tuple[Recipe, ...]:
    """Makes `settings` the session's choice and returns them compiled, or shows why they cannot be built and stops.

    `recipes`: the settings already compiled (they are not compiled twice); pass the result
    on to `run.start`, which then compiles nothing.
    """
    try:
        compiled = settings.recipes() if recipes is None else recipes
    except QuantError as err:
        show_error(err)
        st.stop()
        raise  # st.stop raises; this keeps `compiled` defined for the type checker
    state.session.settings = settings
    return compiled


def option_controls(settings: Settings, *, prefix: str) -> Settings:
    """Calibration count, int8 I/O type, per-channel weights and backend, in one row; `settings` with the choices."""
    c1, c2, c3, c4 = st.columns(4)
    count = c1.slider("Calibration images", 1, 500, settings.calibration_count, key=f"{prefix}.cal_count",
                      help="Up to this many of your images, evenly spread; more gives more robust ranges. "
                           "Used by int8, int8_float_io and int16x8 only.")
    io_types = [IOType.INT8, IOType.UINT8]
    int8_io = c2.selectbox("int8 input/output type", io_types, index=io_types.index(settings.int8_io),
                           key=f"{prefix}.io",
                           help="uint8 suits older accelerators and camera pipelines; the LiteRT Quantizer gives int8.")
    per_channel = c3.toggle("Per-channel weights", value=settings.per_channel, key=f"{prefix}.per_channel",
                            help="One scale per output channel (more accurate). Off: one per tensor, as some older "
                                 "accelerators require.")
    backends = [None, Backend.TF_CONVERTER, Backend.LITERT_QUANTIZER]
    backend = c4.selectbox("Backend", backends, index=backends.index(settings.backend), key=f"{prefix}.backend",
                           format_func=lambda b: "Best per mode" if b is None else str(b),
                           help="The converter backend, for the modes both the TF converter and the LiteRT Quantizer "
                                "can build. Best per mode: the preferred backend that builds each mode's options.")
    return replace(settings, calibration_count=count, int8_io=int8_io, per_channel=per_channel, backend=backend)


def variant_toggles(settings: Settings, *, prefix: str) -> Settings:
    """One toggle per mode, labelled with its id (float32 always on); `settings` with the chosen modes."""
    chosen = []
    columns = st.columns(4)  # two rows: every mode id fits its label
    for k, mode in enumerate(Mode):
        info = MODE_INFO[mode]
        if columns[k % 4].toggle(mode.value, value=mode in settings.modes, key=f"{prefix}.mode.{mode.value}",
                      help=f"{info.title}: {info.help}", disabled=mode is Mode.FLOAT32):
            chosen.append(mode)
    return float_layer_toggles(replace(settings, modes=(Mode.FLOAT32, *[m for m in chosen if m is not Mode.FLOAT32])),
                               prefix=prefix)


def float_layer_label(mode: Mode, names: tuple[str, ...]) -> str:
    """A float-layer variant in words: 'int8 + 3 float layers'."""
    return f"{mode.value} + {len(names)} float layer{'s' * (len(names) != 1)}"


def float_layer_toggles(settings: Settings, *, prefix: str) -> Settings:
    """A toggle per float-layer variant (added on Layers), on; one turned off leaves the settings."""
    kept = []
    for mode, names in settings.float_layers:
        digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
        shown = ", ".join(layer_name(n) for n in names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        if st.toggle(float_layer_label(mode, names), value=True, key=f"{prefix}.float.{mode.value}.{digest}",
                     help=f"Added on Layers: {mode.value} with these layers kept in float: {shown}. Turn it off to "
                          "remove this variant."):
            kept.append((mode, names))
    return replace(settings, float_layers=tuple(kept))


def will_build(settings: Settings) -> str:
    """Every variant the settings build, in table order, in words."""
    return ", ".join([*(MODE_INFO[m].title for m in settings.modes),
                      *(float_layer_label(m, names) for m, names in settings.float_layers)])


FOLLOW_UP_S = 0.25  # after the top's first paint, the rest of the page follows this much later


def details_now() -> bool:
    """False the first time a session draws a page's top: the page stops there, and the rest follows by itself.

    A session's first charts and images load the browser's biggest chunks (Plotly's is
    4.7 MB); arriving with the summary table they held its first paint by 1.3-1.8 s here.
    Drawn first alone, the verdict and table show at once; a timer fragment then reruns the
    page, which draws everything (every later run does so at once).
    """
    if state.session.details is not None:  # the follow-up run, or any run after it
        state.session.details = True
        return True
    _follow_up()
    state.session.details = False
    return False


@st.fragment(run_every=FOLLOW_UP_S)
def _follow_up() -> None:
    """Inline, a placeholder; from its timer, a rerun of the whole page (which no longer calls this)."""
    if state.session.details is False:
        st.rerun()
    st.caption("Charts and per-image results follow…")

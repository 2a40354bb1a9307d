"""The Layers page's parts: where a calibrated variant loses accuracy (its chart is `charts.layer_error_chart`)."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import streamlit as st

from quant_core import CompareResult, PreprocessingOverride
from quant_core.layers import LayerError, LayerReport, layer_name
from quant_core.results import VariantResult
from quant_core.tune import Objective, Step, best_step
from quant_core.verdict import Floor, FloorKind
from ui import charts, engine, run, state
from ui.settings import Settings
from ui.widgets import ENGINE_ERRORS, accept_settings, current_inputs, show_error

EXPLANATION = (
    "Both models ran on your images with every intermediate tensor kept. Each bar is the error a layer **adds** to "
    "its output: RMS of (quantized − float) over RMS of float, minus the same at its input. The line is the error "
    "**accumulated** from the input up to that layer; at the last layer it is what the predictions see. The tallest "
    "bars are the layers worth keeping in float."
)


def calibrated_variants(result: CompareResult) -> list[VariantResult]:
    """The built variants whose activations are quantized (per-layer error applies to them), lowest agreement first."""
    variants = [v for v in result.variants if v.ok and v.recipe.needs_calibration]
    return sorted(variants, key=lambda v: (v.top1_agreement if v.top1_agreement is not None else 1.0))


def label(layer: LayerError) -> str:
    """One line naming a layer in a list: position, op type, name and what it adds."""
    return f"#{layer.position} {layer.op} {layer_name(layer.tensor)} (adds {layer.added:.1%})"


def worst_table(report: LayerReport, n: int) -> pd.DataFrame:
    """The n layers that add the most error, worst first."""
    return pd.DataFrame([{
        "#": layer.position, "op": layer.op, "layer": layer_name(layer.tensor), "adds": f"{layer.added:.2%}",
        "accumulated": f"{layer.relative_error:.2%}",
        "RMS steps": f"{layer.rmse_steps:.2f}" if layer.rmse_steps is not None else "float",
        "max |error|": f"{layer.max_abs_error:.3g}", "output dtype": layer.dtype,
    } for layer in report.worst(n)])


def summary(report: LayerReport) -> str:
    """One sentence: where the error comes from."""
    worst = report.worst(3)
    if not worst:
        return "Every compared layer is kept in float: nothing of this variant is quantized to look at."
    total = sum(max(layer.added, 0.0) for layer in report.layers if layer.scale is not None)
    share = sum(max(layer.added, 0.0) for layer in worst) / total if total > 0 else 0.0
    names = ", ".join(f"{layer_name(layer.tensor)} ({layer.op})" for layer in worst)
    return (f"The output of {report.variant} is off by {report.output_error:.1%} of its signal; the {len(worst)} "
            f"layers adding the most, {names}, add {share:.0%} of all the error layers add.")


def search_section(result: CompareResult, settings: Settings) -> None:
    """The accuracy-budget search: its form, its steps as they come, the trail chart and the winner to add."""
    st.subheader("Search: the smallest variant within a budget", anchor=False)
    st.caption("Starts from full int8; if it misses the budget, tries int16x8, then keeps in float, one at a time, the "
               "layer adding the most error, until the budget holds or nothing helps. Each step builds and measures "
               "a real variant (seconds each on a large model).")
    what = "accuracy" if result.labelled else "top-1 agreement"
    left, middle, right = st.columns([2, 2, 1], vertical_alignment="bottom")
    points = left.number_input(f"Budget: points of {what} below float32", 0.0, 50.0, 1.0, 0.5, key="w.tune_points")
    objective = Objective(middle.radio("Smallest", [o.value for o in Objective], horizontal=True,
                                       key="w.tune_objective", format_func={"size": "file size",
                                                                            "latency": "latency"}.__getitem__))
    if right.button("Search", icon=":material/search:", key="w.tune_go"):
        budget = Floor(FloorKind.ACCURACY_DROP, points / 100) if result.labelled else \
            Floor(FloorKind.AGREEMENT, 1 - points / 100)
        steps: list[Step] = []
        finished: list[bool] = []
        state.put(state.TUNE, (result.request_key, objective, steps, finished))  # a stopped search keeps its steps
        stop = right.empty()  # shown while the search runs
        stop.button("Stop", icon=":material/stop_circle:", key="w.tune_stop",
                    help="Stops after the step being measured; the steps so far and their best are kept.")
        with st.status("Searching…", expanded=True) as status:
            def on_step(step: Step) -> None:
                steps.append(step)
                status.write(f"{len(steps)}. **{step.name}**: {_outcome(step)}")
            try:
                engine.tune(current_inputs(), state.get(state.OVERRIDE) or PreprocessingOverride(), settings, budget,
                            objective, on_progress=lambda p: status.update(label=p.message), on_step=on_step)
            except ENGINE_ERRORS as err:
                show_error(err)
            finished.append(True)
            stop.empty()
            status.update(label=f"Searched: {len(steps)} step{'s' * (len(steps) != 1)}", state="complete",
                          expanded=False)
    entry = state.get(state.TUNE)
    if entry is None or entry[0] != result.request_key or not entry[2]:
        return
    _, objective, steps, finished = entry
    if not finished:
        st.info(f"The search was stopped after {len(steps)} step{'s' * (len(steps) != 1)}: the best so far.",
                icon=":material/stop_circle:")
    winner = best_step(steps, objective)
    st.plotly_chart(charts.tune_chart(steps, winner, objective), key="tune_chart")
    if winner is None:
        st.warning("No step could be built.", icon=":material/warning:")
        return
    best = steps[winner]
    if best.within_budget:
        st.success(f"Winner: **{best.name}** (step {winner + 1}), {_outcome(best)}.", icon=":material/check_circle:")
    else:
        st.warning(f"No step met the budget; the most faithful is **{best.name}** (step {winner + 1}), "
                   f"{_outcome(best)}.", icon=":material/warning:")
    if best.name in {v.name for v in result.variants}:
        st.caption(f"{best.name} is already in the comparison.")
    elif st.button(f"Add {best.name} beside the others", type="primary", icon=":material/add_circle:"):
        recipe = best.recipe
        wanted = settings.with_float_layers(recipe.mode, recipe.float_layers) if recipe.float_layers else \
            replace(settings, modes=tuple(dict.fromkeys((*settings.modes, recipe.mode))))
        accept_settings(wanted)
        run.start(wanted)
        st.switch_page("pages/compare.py")


def _outcome(step: Step) -> str:
    """A step's numbers in a few words."""
    v = step.variant
    if not v.ok:
        return f"failed ({v.error})"
    fidelity = f"accuracy {v.accuracy:.1%}" if v.accuracy is not None else f"agreement {v.top1_agreement:.1%}"
    latency = f", {step.latency_ms:.2f} ms" if step.latency_ms is not None else ""
    size = v.size_bytes or 0
    size_text = f"{size / 2**20:.2f} MB" if size >= 2**20 else f"{size / 2**10:.1f} KB"
    return (f"{fidelity}, {size_text}{latency}, "
            + ("within the budget" if step.within_budget else "outside the budget"))


def calibration_section(variant: VariantResult, settings: Settings) -> None:
    """How many calibration images the variant's mode needs: a button, then the chart (cached by content)."""
    st.subheader("How many calibration images does it need?", anchor=False)
    st.caption(f"Builds {variant.mode} calibrated on 1, 5, 10, 20 and all your images, and on random data (what a "
               "tutorial's placeholder does), and measures each like any variant.")
    if st.button("Measure", icon=":material/science:", key="w.calibration_go"):
        state.put(state.SWEEP, variant.recipe)
    if state.get(state.SWEEP) != variant.recipe:
        return
    with st.spinner("Building and measuring each calibration…"):
        try:
            sweep = engine.calibration_sweep(current_inputs(), state.get(state.OVERRIDE) or PreprocessingOverride(),
                                             settings, replace(variant.recipe, float_layers=()))
        except ENGINE_ERRORS as err:
            show_error(err)
            return
    st.plotly_chart(charts.calibration_chart(sweep), key="calibration_chart")

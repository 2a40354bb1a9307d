"""The Layers page's parts: where a calibrated variant loses accuracy (its chart is `charts.layer_error_chart`)."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import streamlit as st

from quant_core import CompareResult, Mode
from quant_core.errors import QuantError
from quant_core.explorer import node_data_json
from quant_core.layers import LayerError, LayerReport, layer_name, percent
from quant_core.outputs import AGREEMENT
from quant_core.results.compare_result import VariantResult
from quant_core.results.verdict import truth_measure
from quant_core.tasks import Task
from quant_core.tune import (TARGETS, Objective, Step, TuneResult, best_step, budget_of, no_winner_advice,
                             speed_note)
from ui import charts, engine, run, state
from ui.settings import Settings
from ui.widgets import ENGINE_ERRORS, accept_settings, current_inputs, show_error

EXPLANATION = (
    "Both models ran on your images with every intermediate tensor kept. Every number is an error as a share of the "
    "signal at a layer's output: RMS of (quantized − float) over RMS of float. The line is that error **accumulated** "
    "from the input up to each layer; each bar is what the layer **adds** to it (its output's error minus its "
    "input's; where branches join, the worse input's), so along the way the bars sum to the line. Bars below zero are "
    "layers that even noise out (pooling, averaging, a softmax): that is why the line can fall. The tallest bars are "
    "the layers worth keeping in float."
)


def measure(result: CompareResult) -> str:
    """What a variant's agreement with float32 measures: a classifier's top-1 agreement, else its task's measure."""
    return "top-1 agreement" if result.task is Task.CLASSIFICATION else AGREEMENT[result.task][0]


def calibrated_variants(result: CompareResult) -> list[VariantResult]:
    """The built variants whose activations are quantized (per-layer error applies to them), lowest agreement first."""
    variants = [v for v in result.variants if v.ok and v.recipe.needs_calibration]
    return sorted(variants, key=lambda v: (v.top1_agreement if v.top1_agreement is not None else 1.0))


def label(layer: LayerError) -> str:
    """One line naming a layer in a list: position, op type, name and what it adds."""
    return f"#{layer.position} {layer.op} {layer_name(layer.tensor)} (adds {percent(layer.added, signed=True)})"


def worst_table(report: LayerReport, n: int) -> pd.DataFrame:
    """The n layers that add the most error, worst first."""
    return pd.DataFrame([{
        "#": layer.position, "op": layer.op, "layer": layer_name(layer.tensor),
        "adds": percent(layer.added, signed=True), "accumulated": percent(layer.relative_error),
        "RMS steps": f"{layer.rmse_steps:.2f}" if layer.rmse_steps is not None else "float",
        "max |error|": f"{layer.max_abs_error:.3g}", "output dtype": layer.dtype,
    } for layer in report.worst(n)])


def summary(report: LayerReport) -> str:
    """Where the error comes from, in numbers a reader can add up: the same ones the table and the chart show."""
    worst = [layer for layer in report.worst(3) if layer.added > 0]
    if not report.worst(1):
        return "Every compared layer is kept in float: nothing of this variant is quantized to look at."
    head = f"The output of {report.variant} is off by {percent(report.output_error)} of its signal (RMS)."
    if report.output_name is not None:  # several outputs: the one followed, then the others
        others = ", ".join(f"{name} {'–' if error is None else percent(error)}"
                           for name, error in report.output_errors() if name != report.output_name)
        head = (f"Output {report.output_name} of {report.variant} is off by {percent(report.output_error)} of its "
                f"signal (RMS); its other outputs: {others}. What follows traces {report.output_name}.")
    if worst:
        names = ", ".join(f"{layer_name(layer.tensor)} ({layer.op}) {percent(layer.added, signed=True)}"
                          for layer in worst)
        together = sum(_shown(layer.added) for layer in worst)  # the sum of the values as shown
        head += (f" The {len(worst)} layers adding the most: {names}, {together:.1f}% together." if len(worst) > 1
                 else f" The layer adding the most: {names}.")
    return f"{head}\n\n{_adds_up(report)}"


def _shown(value: float) -> float:
    """A relative error in points, exactly as `percent` shows it."""
    return float(percent(value).rstrip("%"))


def _adds_up(report: LayerReport) -> str:
    """The ledger as an equation of shown values that adds up: what the layers on the path add, as the table and the
    chart show each of them, and what others even out (which also takes the rounding of the shown values)."""
    ledger = report.ledger()
    start, output = _shown(ledger.start), _shown(ledger.output)
    added = round(sum(_shown(layer.added) for layer in report.path() if layer.added > 0), 1)
    removed = round(start + added - output, 1)
    if removed < 0:  # rounding only: nothing is shown as evened out
        removed, added = 0.0, round(output - start, 1)
    where = "" if ledger.path == ledger.layers else \
        f" (the {ledger.path} of {ledger.layers} layers it came through; where branches join, the worse one)"
    terms = [f"{start:.1f}% in the input (its rounding)"] if start else []
    terms.append(f"{added:.1f}% added by layers")
    equation = " + ".join(terms) + (f" − {removed:.1f}% evened out by others (pooling, averaging, a softmax)"
                                    if removed else "")
    return f"How that adds up along the way to the output{where}: {equation} = {output:.1f}%."


def layer_report(variant: VariantResult, settings: Settings) -> LayerReport | None:
    """The variant's error by layer; None, with its one-line error shown, when it cannot be measured (a custom op the
    builtin kernels lack): the search and the calibration sweep still work."""
    with st.spinner(f"Comparing every layer of {variant.name} with the float model…"):
        try:
            return engine.layer_report(current_inputs(), state.session.override, settings, variant.recipe,
                                       variant.name)
        except ENGINE_ERRORS as err:
            show_error(err)
            return None


def report_section(report: LayerReport, variant: VariantResult, settings: Settings) -> None:
    """Where the variant's error comes from, the layers to keep in float (one click builds it), the chart and table."""
    st.markdown(summary(report))
    quantized = report.worst(len(report.layers))  # worst first
    left, right = st.columns([3, 1])
    picked = left.multiselect(
        "Keep in float", [layer.tensor for layer in quantized], default=[layer.tensor for layer in quantized[:3]],
        format_func=lambda tensor: label(report.layer(tensor)), key="w.layers_keep",
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
    st.caption(EXPLANATION)
    _explorer_download(report, variant)
    st.subheader("The layers that add the most error", anchor=False)
    st.dataframe(worst_table(report, 10), hide_index=True, width="stretch")


def _explorer_download(report: LayerReport, variant: VariantResult) -> None:
    """The error by layer as node data for Google's Model Explorer: the variant's graph coloured by it."""
    models = state.session.models
    try:
        model = variant.tflite_bytes(models) if models is not None else None
    except QuantError:  # no longer kept: the overlay is keyed by tensor names all the same
        model = None
    try:
        overlay = node_data_json(report, model=model)
    except QuantError as err:
        show_error(err)
        return
    st.download_button("Model Explorer overlay (.json)", overlay, f"{variant.name}_layer_error.json",
                       "application/json", icon=":material/account_tree:", on_click="ignore",
                       key=f"dl.explorer.{variant.name}",
                       help="Open the variant's .tflite in Google's Model Explorer (pip install "
                            "ai-edge-model-explorer), then load this file as node data: every layer coloured by the "
                            "error it adds, green to red.")


def search_section(result: CompareResult, settings: Settings) -> None:
    """The accuracy-budget search: its form, its steps as they come, the trail chart and the winner to add."""
    st.subheader("Search: the smallest variant within a budget", anchor=False)
    st.caption("For the chosen target it tries every mode that runs there (integer-only: int8, then int16x8 with "
               "int16 I/O; GPU: float16; CPU: every mode), and on a CPU keeps int8's layers in float one at a time, "
               "the layer adding the most error first, until the budget holds or nothing helps. Each step builds and "
               "measures a real variant (seconds each on a large model).")
    what = truth_measure(result.task) if result.labelled else measure(result)
    target = TARGETS[st.radio("Runs on", list(TARGETS), horizontal=True, key="w.tune_target",
                              format_func=lambda name: TARGETS[name].heading,
                              help="The verdict's three targets: what the search may build depends on it.")]
    left, middle, right = st.columns([2, 2, 1], vertical_alignment="bottom")
    points = left.number_input(f"Budget: points of {what} below float32", 0.0, 50.0, 1.0, 0.5, key="w.tune_points")
    objective = Objective(middle.radio("Smallest", [o.value for o in Objective], horizontal=True,
                                       key="w.tune_objective", format_func={"size": "file size",
                                                                            "latency": "latency"}.__getitem__))
    if right.button("Search", icon=":material/search:", key="w.tune_go"):
        budget = budget_of(points, task=result.task, labelled=result.labelled)
        steps: list[Step] = []
        finished: list[TuneResult] = []  # the search's result once it ends
        state.session.tune = (result.request_key, objective, steps, finished)  # a stopped search keeps its steps
        stop = right.empty()  # shown while the search runs
        stop.button("Stop", icon=":material/stop_circle:", key="w.tune_stop",
                    help="Stops after the step being measured; the steps so far and their best are kept.")
        with st.status("Searching…", expanded=True) as status:
            def on_step(step: Step) -> None:
                steps.append(step)
                status.write(f"{len(steps)}. **{step.name}**: {_outcome(step)}")
            try:
                finished.append(engine.tune(current_inputs(), state.session.override,
                                            settings, budget, objective, target=target,
                                            on_progress=lambda p: status.update(label=p.message), on_step=on_step))
            except ENGINE_ERRORS as err:
                show_error(err)
            stop.empty()
            status.update(label=f"Searched: {len(steps)} step{'s' * (len(steps) != 1)}", state="complete",
                          expanded=False)
    entry = state.session.tune
    if entry is None or entry[0] != result.request_key or not entry[2]:
        return
    _show_search(result, settings, *entry[1:])


def _show_search(result: CompareResult, settings: Settings, objective: Objective, steps: list[Step],
                 finished: list[TuneResult]) -> None:
    """The search's trail chart, its winner (with its speed against float32) and the button that adds it."""
    done = finished[0] if finished else None
    if done is None:
        st.info(f"The search ended early, after {len(steps)} step{'s' * (len(steps) != 1)}: the best so far.",
                icon=":material/stop_circle:")
    else:
        steps = list(done.steps)  # the winner timed at the end
    winner = best_step(steps, objective)
    st.plotly_chart(charts.tune_chart(steps, winner, objective), key="tune_chart")
    if winner is None:
        st.warning("No step could be built.", icon=":material/warning:")
        return
    best = steps[winner]
    if best.within_budget:
        st.success(f"Winner: **{best.name}** (step {winner + 1}), {_outcome(best)}.", icon=":material/check_circle:")
    else:
        target = done.target if done is not None else TARGETS[st.session_state.get("w.tune_target", "cpu")]
        st.warning(f"No step met the budget; the most faithful is **{best.name}** (step {winner + 1}), "
                   f"{_outcome(best)}. {no_winner_advice(target)}", icon=":material/warning:")
    reference = result.baseline.latency.median_ms if result.baseline and result.baseline.latency else None
    slow = done.speed_note if done is not None else speed_note(best, reference)
    if slow:
        st.warning(slow, icon=":material/speed:")
    if done is not None and done.note:  # e.g. a custom op: no layer could be kept in float
        st.info(done.note, icon=":material/info:")
    _add_button(result, settings, best)


def _add_button(result: CompareResult, settings: Settings, best: Step) -> None:
    """Adds the winner beside the others when the Quantize settings describe its recipe; else says why not."""
    if best.name in {v.name for v in result.variants}:
        st.caption(f"{best.name} is already in the comparison.")
        return
    recipe = best.recipe
    wanted = settings.with_float_layers(recipe.mode, recipe.float_layers) if recipe.float_layers else \
        replace(settings, modes=tuple(dict.fromkeys((*settings.modes, recipe.mode))))
    tflite = result.model.format.value == "tflite"
    recipes = wanted.recipes()
    built = {r.resolve(source_is_tflite=tflite) for r in recipes if r.mode is recipe.mode}
    if recipe.resolve(source_is_tflite=tflite) not in built:
        st.caption(f"{best.name} as searched ({recipe.io or 'default'} input and output, {recipe.backend_used}) is "
                   "not a variant the Quantize settings describe; `python -m quant_core tune -o OUT.tflite` writes it "
                   "with its recipe.")
        return
    if st.button(f"Add {best.name} beside the others", type="primary", icon=":material/add_circle:"):
        run.start(wanted, recipes=accept_settings(wanted, recipes=recipes))
        st.switch_page("pages/compare.py")


def _outcome(step: Step) -> str:
    """A step's numbers in a few words."""
    v = step.variant
    if not v.ok:
        return f"failed ({v.error})"
    latency = f", {step.latency_ms:.2f} ms" if step.latency_ms is not None else ""
    size = v.size_bytes or 0
    size_text = f"{size / 2**20:.2f} MB" if size >= 2**20 else f"{size / 2**10:.1f} KB"
    return (f"{step.fidelity_text}, {size_text}{latency}, "
            + ("within the budget" if step.within_budget else "outside the budget"))


def calibration_section(variant: VariantResult, settings: Settings) -> None:
    """How many calibration images the variant's mode needs: a button, then the chart (cached by content)."""
    st.subheader("How many calibration images does it need?", anchor=False)
    st.caption(f"Builds {variant.mode} calibrated on 1, 5, 10, 20 and all your images, and on random data (what a "
               "tutorial's placeholder does), and measures each like any variant.")
    if st.button("Measure", icon=":material/science:", key="w.calibration_go"):
        state.session.sweep = variant.recipe
    if state.session.sweep != variant.recipe:
        return
    with st.spinner("Building and measuring each calibration…"):
        try:
            sweep = engine.calibration_sweep(current_inputs(), state.session.override,
                                             settings, replace(variant.recipe, float_layers=()))
        except ENGINE_ERRORS as err:
            show_error(err)
            return
    st.plotly_chart(charts.calibration_chart(sweep), key="calibration_chart")

"""The verdict card on Compare: which variant to ship per target, under a fidelity floor the user sets.

Each card leads with the decision in everyday words (`Pick.plain`); the workbench's terms
stay one hover away for a reader of a published link, and in a caption for the owner.
"""

from __future__ import annotations

import streamlit as st

from quant_core import CompareResult, Mode
from quant_core.micro import COMMON_BUDGETS, Budget
from quant_core.outputs import AGREEMENT
from quant_core.results.verdict import Floor, FloorKind, Pick, Target, Verdict, decide
from quant_core.tasks import Task
from ui import state

_KINDS = {FloorKind.AGREEMENT: "the original's answer (top-1 agreement with float32) on at least",
          FloorKind.ACCURACY_DROP: "at most this many more wrong answers per 100 images (accuracy drop)"}
# A model that is not a classifier: its floor is on its task's agreement with float32, as a share.
_TASK_KINDS = {Task.SEGMENTATION: "masks overlapping the original's (mask IoU with float32) by at least",
               Task.LANDMARKS: "points within 5% of the image size of the original's (PCK@5%) for at least",
               Task.EMBEDDING: "the original's nearest neighbour (NN agreement with float32) for at least",
               Task.DETECTION: "boxes matching the original's (box F1 against float32) of at least",
               Task.GENERIC: "a cosine similarity with the original's outputs (in %) of at least"}
_INPUTS = {FloorKind.AGREEMENT: "w.floor_agreement", FloorKind.ACCURACY_DROP: "w.floor_drop"}
_KIND_INPUT = "w.floor_kind"
_BUDGET_INPUT = "w.mcu_budget"
_DEFAULT_PERCENT = {FloorKind.AGREEMENT: 99.0, FloorKind.ACCURACY_DROP: 1.0}


def current_floor() -> Floor:
    """The floor the user chose in this session (the default until they change it)."""
    return state.session.floor


def _percent(floor: Floor, kind: FloorKind) -> float:
    """What the number input of `kind` starts at: the floor's value when it is of that kind."""
    return floor.value * 100 if floor.kind is kind else _DEFAULT_PERCENT[kind]


def _floor_changed() -> None:
    """A floor control changed: the floor in force follows before the page is drawn again.

    A callback runs before the script, so everything drawn above the controls (the
    popover's own label) already shows the new floor.
    """
    floor = current_floor()
    kind = FloorKind(st.session_state.get(_KIND_INPUT, floor.kind))
    percent = st.session_state.get(_INPUTS[kind])
    state.session.floor = Floor(kind, round((_percent(floor, kind) if percent is None else percent) / 100, 4))


def floor_picker(result: CompareResult) -> Floor:
    """A popover to set the fidelity floor; returns the floor in force (kept for the report)."""
    task = result.task
    kinds = list(FloorKind) if Floor(FloorKind.ACCURACY_DROP).applies(result) else [FloorKind.AGREEMENT]
    floor = current_floor()
    if floor.kind not in kinds:  # an accuracy floor, then a result without labels (or not a classifier)
        floor = Floor()
        state.session.floor = floor
    term = ("top-1 is the class a model ranks first" if task is Task.CLASSIFICATION else
            f"{AGREEMENT[task][0]}: {AGREEMENT[task][1]}")
    with st.popover(f"Required: {floor.plain_for(task)}", icon=":material/tune:",
                    help=f"The fidelity floor: {floor.label_for(task)}. A variant is picked only when it stays this "
                         f"close to the original model (float32); {term}."):
        kind = st.radio("A variant can be shipped when it gives", kinds,
                        format_func=lambda k: _TASK_KINDS.get(task, _KINDS[k]) if k is FloorKind.AGREEMENT
                        else _KINDS[k],
                        index=kinds.index(floor.kind), key=_KIND_INPUT, on_change=_floor_changed)
        if kind is FloorKind.AGREEMENT:
            st.number_input("% of the images" if task is Task.CLASSIFICATION else "%", 50.0, 100.0,
                            _percent(floor, kind), step=0.5, key=_INPUTS[kind], on_change=_floor_changed,
                            help="Share of images on which the variant's top-1 class is float32's."
                            if task is Task.CLASSIFICATION else f"{AGREEMENT[task][0]}: {AGREEMENT[task][1]}.")
        else:
            st.number_input("more wrong answers per 100 images, at most", 0.0, 50.0, _percent(floor, kind),
                            step=0.5, key=_INPUTS[kind], on_change=_floor_changed,
                            help="float32's accuracy minus the variant's, in points.")
    return floor


def verdict_card(result: CompareResult, *, published: bool = False) -> Verdict:
    """Draws the verdict: one bordered column per target with the variant to ship and why.

    Args:
        result: the comparison shown.
        published: a reader of a published link: plain words, the terms on hover.
    """
    head, control = st.columns([3, 2], vertical_alignment="bottom")
    head.subheader("Which variant to ship", anchor=False,
                   help="Picked from the numbers measured below. Variants with a warning or a failure are never "
                        "picked. " + " ".join(f"**{t.heading}**: {t.rule}." for t in Target))
    with control:
        floor = floor_picker(result)
    budget = _budget()
    verdict = decide(result, floor=floor, budget=budget)
    for column, pick in zip(st.columns(len(verdict.picks)), verdict.picks):
        with column.container(border=True, height="stretch"):
            st.caption(pick.target.heading, help=pick.target.rule)
            if pick.variant is None:
                st.markdown("#### :orange[Nothing to ship yet]",
                            help=f"None fits: no variant meets {verdict.floor_label}.")
            else:
                st.markdown(f"#### :green[{pick.variant}]")
            st.markdown(pick.plain or pick.reason, help=pick.reason if published else None)
            if not published and pick.plain:
                st.caption(pick.reason)
            if pick.target is Target.INTEGER:
                _on_device(result, pick, budget, published=published)
    if verdict.note:
        if published:
            st.caption(verdict.plain_note or verdict.note, help=verdict.note)
        else:
            st.caption(verdict.note)
    return verdict


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.1f} KB"


def _measure(result: CompareResult) -> str:
    return "top-1 agreement" if result.task is Task.CLASSIFICATION else AGREEMENT[result.task][0]


def _budget() -> Budget:
    """The microcontroller budget chosen under the integer-only card (512 KB RAM / 2 MB flash by default)."""
    label = st.session_state.get(_BUDGET_INPUT)
    return next((b for b in COMMON_BUDGETS if b.label == label), Budget())


def _on_device(result: CompareResult, pick: Pick, budget: Budget, *, published: bool) -> None:
    """The integer-only variant in TFLite Micro: arena, flash, missing ops, agreement there, and the budget."""
    shown = result.variant(pick.variant) if pick.variant else next(
        (v for v in result.variants if v.mode is Mode.INT8 and v.ok), None)
    micro = shown.kernels.micro if shown is not None and shown.kernels is not None else None
    if shown is None or micro is None:
        return
    if micro.ran:
        agreement = "–" if micro.agreement is None else f"{micro.agreement:.1%}"
        st.markdown(f"**{shown.name} in TFLite Micro**: tensor arena {_size(micro.arena_bytes or 0)} (measured), "
                    f"flash {_size(micro.flash_bytes)}, every op has a kernel there, {_measure(result)} with float32 "
                    f"{agreement}. {micro.fits(budget)[1]}")
    else:
        st.markdown(f"**{shown.name} in TFLite Micro**: {micro.error}.")
    if not published:
        st.selectbox("Microcontroller memory", [b.label for b in COMMON_BUDGETS],
                     index=[b.label for b in COMMON_BUDGETS].index(budget.label)
                     if budget.label in [b.label for b in COMMON_BUDGETS] else 1, key=_BUDGET_INPUT,
                     help="RAM for TFLite Micro's tensor arena and flash for the model: 256 KB / 1 MB (nRF52840), "
                          "512 KB / 2 MB (ESP32-S3, the default), 1 MB / 2 MB (STM32H743). The application's own "
                          "buffers need RAM too.")


def what_if_banner(result: CompareResult, *, published: bool = False) -> None:
    """Names each setting changed from the defaults and the variants it applies to (nothing when none).

    A reader of a published link has no Quantize page: the banner then says what the
    change means instead of where to undo it.
    """
    changed: dict[str, list[str]] = {}
    for v in result.variants:
        for setting in v.recipe.what_ifs():
            changed.setdefault(setting, []).append(v.name)
    if not changed:
        return
    parts = [f"**{setting}** ({', '.join(names)})" for setting, names in changed.items()]
    random = "random calibration data" in changed
    if published:
        st.warning("Some variants were made with settings changed from the defaults on purpose (a what-if): "
                   + "; ".join(parts) + ". Only the variants named are affected: their numbers show what the change "
                   "costs, not the best this model can do.", icon=":material/science:")
        return
    st.warning("What-if settings in this result: " + "; ".join(parts) + ". Only the variants named are affected"
               + (": their numbers show what bad calibration does, not what your model can reach." if random
                  else "; the defaults are on **Quantize**."), icon=":material/science:")

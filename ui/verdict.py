"""The verdict card on Compare: which variant to ship per target, under a fidelity floor the user sets."""

from __future__ import annotations

import streamlit as st

from quant_core import CompareResult
from quant_core.verdict import Floor, FloorKind, Target, Verdict, decide
from ui import state

_KINDS = {FloorKind.AGREEMENT: "Top-1 agreement with float32 at least",
          FloorKind.ACCURACY_DROP: "Accuracy drop at most"}


def current_floor() -> Floor:
    """The floor the user chose in this session (the default until they change it)."""
    return state.get(state.FLOOR) or Floor()


def floor_picker(result: CompareResult) -> Floor:
    """A popover to set the fidelity floor; returns the floor in force (kept for the report)."""
    floor = current_floor()
    with st.popover(f"Fidelity floor: {floor.label}", icon=":material/tune:"):
        kinds = list(FloorKind) if result.labelled else [FloorKind.AGREEMENT]
        kind = st.radio("A variant can be picked when its", kinds, format_func=_KINDS.__getitem__,
                        index=kinds.index(floor.kind) if floor.kind in kinds else 0, key="w.floor_kind")
        if kind is FloorKind.AGREEMENT:
            percent = st.number_input("agreement (%)", 50.0, 100.0, floor.value * 100 if floor.kind is kind else 99.0,
                                      step=0.5, key="w.floor_agreement",
                                      help="Share of images on which the variant's top-1 class is float32's.")
        else:
            percent = st.number_input("points of accuracy lost, at most", 0.0, 50.0,
                                      floor.value * 100 if floor.kind is kind else 1.0, step=0.5,
                                      key="w.floor_drop", help="float32's accuracy minus the variant's, in points.")
        chosen = Floor(kind, round(percent / 100, 4))
    if chosen != floor:
        state.put(state.FLOOR, chosen)
    return chosen


def verdict_card(result: CompareResult) -> Verdict:
    """Draws the verdict: one bordered column per target with the variant to ship and why."""
    head, control = st.columns([3, 2], vertical_alignment="bottom")
    head.subheader("Which variant to ship", anchor=False,
                   help="Picked from the numbers measured below. Variants with a warning or a failure are never "
                        "picked. " + " ".join(f"**{t.heading}**: {t.rule}." for t in Target))
    with control:
        floor = floor_picker(result)
    verdict = decide(result, floor=floor)
    for column, pick in zip(st.columns(len(verdict.picks)), verdict.picks):
        with column.container(border=True, height="stretch"):
            st.caption(pick.target.heading)
            if pick.variant is None:
                st.markdown("#### :orange[None fits]")
            else:
                st.markdown(f"#### :green[{pick.variant}]")
            st.markdown(pick.reason)
    if verdict.note:
        st.caption(verdict.note)
    return verdict


def what_if_banner(result: CompareResult) -> None:
    """Names each setting changed from the defaults and the variants it applies to (nothing when none)."""
    changed: dict[str, list[str]] = {}
    for v in result.variants:
        for setting in v.recipe.what_ifs():
            changed.setdefault(setting, []).append(v.name)
    if not changed:
        return
    parts = [f"**{setting}** ({', '.join(names)})" for setting, names in changed.items()]
    random = "random calibration data" in changed
    st.warning("What-if settings in this result: " + "; ".join(parts) + ". Only the variants named are affected"
               + (": their numbers show what bad calibration does, not what your model can reach." if random
                  else "; the defaults are on **Quantize**."), icon=":material/science:")

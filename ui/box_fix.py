"""Compare for a detector whose one output mixes pixel boxes and scores: the cause in one sentence and the fix in
one click (the head in float with float output, or int16 activations), then what the fix costs against int8."""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from quant_core import CompareResult, Mode
from quant_core.results.compare_result import VariantResult
from ui import run, state
from ui.widgets import accept_settings


def shared_scale_fix(result: CompareResult, *, published: bool) -> None:
    """A detector's decoder in one line; the finding, the two fixes as buttons (not on a published page) and, once
    built, before against after."""
    if result.decoder is not None:
        st.caption(f"Boxes: {result.decoder.description}; kept at score ≥ {result.decoder.threshold:g}, matched with "
                   "float32's at IoU ≥ 0.5 with the same class" + (" (decoder chosen on Model & data)."
                                                                  if result.decoder.set_by_user else "."))
    found = result.shared_scale
    if found is None:
        return
    name = next((s.name for s in result.output_specs if s.index == found.output), "the output")
    broken = _broken(result)
    lead = (f"**{broken.name} misses {_missed(broken)} of float32's boxes.** " if broken is not None else
            "**Full-integer int8 will collapse this detector's scores.** ")
    st.warning(lead + found.sentence(name) + ".", icon=":material/target:")
    fixed = _fixed(result)
    if fixed and broken is not None:
        st.markdown("**Before and after** (the boxes themselves: *Per image* below)  \n" +
                    "  \n".join(_before_after(broken, v) for v in fixed))
    if published:
        return
    settings = state.current_settings()
    head = settings.with_float_layers(Mode.INT8_FLOAT_IO, found.head) if found.head else None
    wide = settings if Mode.INT16X8 in settings.modes else replace(settings, modes=(*settings.modes, Mode.INT16X8))
    left, right = st.columns(2)
    if head is not None and left.button(f"Fix: int8 with the head's {len(found.head)} layers in float, float output",
                                        icon=":material/build:", disabled=head == settings, key="w.fix_head",
                                        help="Keeps the reshapes, concatenation and transpose between the last "
                                             "convolutions and the output in float: the boxes and the scores each "
                                             "keep their own scale. The rest stays int8."):
        _start(head)
    if right.button("Fix: int16x8 (int16 activations)", icon=":material/build:", disabled=wide == settings,
                    key="w.fix_int16", help="256 times finer activations: the scores keep about 250 steps. Runs on "
                                            "reference kernels on CPUs (slower), not on int8-only NPUs."):
        _start(wide)


def _start(wanted) -> None:
    run.start(wanted, recipes=accept_settings(wanted))
    st.rerun()


def _main_boxes(v: VariantResult):
    return next((f.boxes for f in v.outputs if f.boxes is not None), None)


def _missed(v: VariantResult) -> str:
    b = _main_boxes(v)
    return "some" if b is None else f"{b.missed} of {b.reference_boxes}"


def _broken(result: CompareResult) -> VariantResult | None:
    """The full-integer variant (no float layers) that misses the most boxes, if any misses one."""
    plain = [v for v in result.variants if v.ok and v.mode in (Mode.INT8, Mode.INT8_FLOAT_IO)
             and not v.recipe.float_layers and (b := _main_boxes(v)) is not None and b.missed]
    return max(plain, key=lambda v: _main_boxes(v).missed, default=None)


def _fixed(result: CompareResult) -> list[VariantResult]:
    """The fixes built: int16x8 and int8 with float layers."""
    return [v for v in result.variants if v.ok and (v.mode is Mode.INT16X8 or v.recipe.float_layers)]


def _before_after(broken: VariantResult, fixed: VariantResult) -> str:
    """One line: box F1 and missed boxes, size and median latency of the fix against the broken variant."""
    before, after = _main_boxes(broken), _main_boxes(fixed)
    quality = "" if before is None or after is None else (
        f"box F1 {before.f1:.1%} → {after.f1:.1%}, missed {before.missed} → {after.missed}")
    size = "" if not (broken.size_bytes and fixed.size_bytes) else (
        f"size {broken.size_bytes / 1024:,.0f} → {fixed.size_bytes / 1024:,.0f} KB "
        f"({fixed.size_bytes / broken.size_bytes - 1:+.1%})")
    speed = "" if broken.latency is None or fixed.latency is None else (
        f"median {broken.latency.median_ms:.2f} → {fixed.latency.median_ms:.2f} ms "
        f"({fixed.latency.median_ms / broken.latency.median_ms:.1f}x)")
    return f"- **{fixed.name}** against {broken.name}: " + " · ".join(p for p in (quality, size, speed) if p)

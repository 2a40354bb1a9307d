"""The published report: JSON (the CLI contract) and CSV, built from a CompareResult."""

from __future__ import annotations

import csv
import io
from typing import Any

from quant_core._serde import to_jsonable
from quant_core.boxes import kept
from quant_core.detection import box_fidelity
from quant_core.fidelity import OutputFidelity
from quant_core.micro import Budget
from quant_core.modes import MODE_INFO, Mode
from quant_core.ops import describe_ops
from quant_core.outputs import AGREEMENT
from quant_core.results.compare_result import CompareResult, VariantResult
from quant_core.results.summary import (X_SMALLER, agreement_column, axis_name, channel_name, channel_word, rounded,
                                        summarize, worst_words)
from quant_core.results.verdict import Floor, decide
from quant_core.tasks import OutputSpec, Task, main_output

# 2: a variant's "engine_settings" became "backend_settings"; 3: the task, the outputs and per-output fidelity
REPORT_VERSION = 3
_DIGITS = 4  # the JSON keeps more digits than the summary tables: it is data, not a view
_FINE_DIGITS = 6  # probability differences and divergences are small
_SIGNIFICANT = 6  # fidelity figures span decades (a max |Δ| of 1e-6, an SQNR of 90 dB): significant digits


def variant_title(v: VariantResult) -> str:
    """The variant's name in words: its mode's title, or what it is once layers are kept in float."""
    n = len(v.recipe.float_layers)
    if n:
        return f"{v.mode.value} with {n} layer{'s' if n > 1 else ''} kept in float"
    return MODE_INFO[v.mode].title


def variant_description(v: VariantResult) -> str:
    """What the variant is, from what was measured on it: its ops, its interface and its size.

    Never its mode's help text: that says what the mode aims for, and a variant can differ
    (layers kept in float are not integer-only whatever the mode).
    """
    if not v.ok or v.ops is None:
        return f"Failed, so nothing was measured: {v.error or 'no reason given'}."
    text = describe_ops(v.ops, input_dtype=v.input_dtype, output_dtype=v.output_dtype)
    if v.mode is Mode.FLOAT32:
        return f"{text} The reference every other variant is compared with."
    if v.size_ratio:
        text += (f" File {X_SMALLER.format_number(1 / v.size_ratio)} smaller than float32's." if v.size_ratio <= 1
                 else f" File {X_SMALLER.format_number(v.size_ratio)} the size of float32's: larger.")
    return text


def variant_dict(v: VariantResult, tflite: str | None) -> dict[str, Any]:
    """One variant as published in the report."""
    ops = to_jsonable(v.ops) if v.ops else None
    return {
        "mode": v.mode.value, "name": v.name, "title": variant_title(v),
        "description": variant_description(v), "status": v.status.value,
        "error": v.error, "warning": v.warning, "recipe": v.recipe.to_dict(), "backend_settings": v.backend_settings,
        "size_bytes": v.size_bytes, "size_ratio": rounded(v.size_ratio, _DIGITS),
        "latency_ms": None if v.latency is None else {
            "median": rounded(v.latency.median_ms, _DIGITS), "p90": rounded(v.latency.p90_ms, _DIGITS),
            "mean": rounded(v.latency.mean_ms, _DIGITS),
            "runs": v.latency.runs, "warmup": v.latency.warmup, "threads": v.latency.threads},
        "memory_bytes": None if v.memory is None else {"runtime": v.memory.runtime_bytes,
                                                       "model": v.memory.model_bytes},
        "top1_agreement": rounded(v.top1_agreement, _DIGITS),
        "top1_agreement_source": rounded(v.top1_agreement_source, _DIGITS),
        "top5_agreement": rounded(v.top5_agreement, _DIGITS), "accuracy": rounded(v.accuracy, _DIGITS),
        "top5_accuracy": rounded(v.top5_accuracy, _DIGITS),
        "mean_abs_prob_diff": rounded(v.mean_abs_diff, _FINE_DIGITS),
        "kl_divergence": rounded(v.kl_divergence, _FINE_DIGITS), "ops": ops,
        "integer_only": None if v.ops is None else v.ops.integer_only,
        "input_dtype": v.input_dtype, "output_dtype": v.output_dtype, "tflite": tflite,
        "tflite_sha256": v.tflite_sha256, "calibration_samples": v.calibration_samples,
        "build_seconds": rounded(v.build_seconds, 3),
        "agreement": rounded(v.top1_agreement, _DIGITS),
        "outputs": [output_fidelity_dict(f) for f in v.outputs],
        "kernels": None if v.kernels is None else _significant(to_jsonable(v.kernels)),
    }


def _budget_dict(budget: Budget) -> dict[str, Any]:
    return {"ram_bytes": budget.ram_bytes, "flash_bytes": budget.flash_bytes, "label": budget.label}


def kernel_lines(result: CompareResult) -> list[str]:
    """Each built variant on other kernels than XNNPACK's, one line each (none when they were not run)."""
    lines = []
    for v in result.variants:
        k = v.kernels
        if not v.ok or k is None:
            continue
        agreement = "–" if k.reference_agreement is None else f"{k.reference_agreement:.1%}"
        steps = "" if k.reference_max_steps is None else f" ({k.reference_max_steps:g} output steps)"
        line = (f"  {v.name}: builtin kernels without XNNPACK {agreement}, largest difference from XNNPACK "
                f"{k.reference_max_diff:.3g}{steps}" if not k.error else f"  {v.name}: {k.error}")
        if k.micro is not None:
            m = k.micro
            line += ("; TFLite Micro: " + (f"{'–' if m.agreement is None else f'{m.agreement:.1%}'}, arena "
                                           f"{m.arena_bytes or 0:,} B, flash {m.flash_bytes:,} B" if m.ran
                                           else m.error))
        lines.append(line)
    return lines


def _significant(value: Any) -> Any:
    """Floats kept to `_SIGNIFICANT` significant digits, through lists and dicts; the rest unchanged."""
    if isinstance(value, float):
        return float(f"{value:.{_SIGNIFICANT}g}")
    if isinstance(value, list):
        return [_significant(x) for x in value]
    if isinstance(value, dict):
        return {k: _significant(x) for k, x in value.items()}
    return value


def output_spec_dict(spec: OutputSpec) -> dict[str, Any]:
    """One output of the model as published: what it is and why the workbench thinks so."""
    return _significant({
        "index": spec.index, "name": spec.name, "shape": list(spec.shape), "role": spec.role.value,
        "description": spec.description, "evidence": spec.evidence, "set_by_user": spec.set_by_user,
        "value_range": None if spec.value_range is None else list(spec.value_range),
        "points": spec.points, "coords": spec.coords, "space": None if spec.space is None else spec.space.value})


def output_fidelity_dict(f: OutputFidelity) -> dict[str, Any]:
    """One output of a variant against float32's: whole tensor, per channel (per point and per axis for
    landmarks), the worst channel in words and the task's figures."""
    data = _significant(to_jsonable(f))
    data["channel"] = channel_word(f.role)
    data["worst"] = worst_words(f)
    if f.worst_channel is not None:
        data["worst_channel_name"] = channel_name(f.role, f.worst_channel, f.channel_names)
    if f.axes:
        data["axis_names"] = [axis_name(k) for k in range(len(f.axes))]
    if f.boxes is not None:
        data["boxes"] |= _significant(f.boxes.figures())
    return data


def per_image_boxes(result: CompareResult) -> dict[str, tuple[float, ...]]:
    """A detector's per-image box F1 against float32's by built variant, at the decoder's threshold."""
    base, decoder = result.baseline, result.decoder
    if base is None or decoder is None or not base.detections:
        return {}
    reference = kept(base.detections, decoder.keypoints)
    found = {}
    for v in result.variants:
        if v.ok and len(v.detections) == len(reference):
            matches = box_fidelity(reference, kept(v.detections, decoder.keypoints),
                                   score_threshold=decoder.threshold).images
            found[v.name] = tuple(_f1(len(m.pairs), len(m.missed), len(m.extra)) for m in matches)
    return found


def _f1(matched: int, missed: int, extra: int) -> float:
    """F1 from counts: 1 when there was nothing to find and nothing was found."""
    return 1.0 if not (missed or extra) else 2 * matched / (2 * matched + missed + extra)


def per_image_agreement(result: CompareResult) -> dict[str, tuple[float | None, ...]]:
    """A non-classifier's per-image agreement with float32 by built variant, from its main output: mask IoU,
    PCK at 5 %, cosine similarity of embeddings, or a detector's box F1 ({} for other tasks)."""
    if result.decoder is not None:
        return dict(per_image_boxes(result))
    main = main_output(result.output_specs)
    found: dict[str, tuple[float | None, ...]] = {}
    for v in result.variants:
        f = next((f for f in v.outputs if main is not None and f.index == main.index), None) if v.ok else None
        if f is not None and f.mask is not None:
            found[v.name] = f.mask.per_image_iou
        elif f is not None and f.landmarks is not None and result.task is Task.LANDMARKS:
            found[v.name] = f.landmarks.per_image_pck
        elif f is not None and f.embedding is not None:
            found[v.name] = f.embedding.per_image_cosine
    return found


def _images(result: CompareResult) -> list[dict[str, Any]]:
    """Per image: a classifier's top-k per variant; another model's per-image agreement with float32."""
    if result.task is not Task.CLASSIFICATION:
        per_image = per_image_agreement(result)
        return [{"file": img.file, "label": img.label, "predictions": {},
                 "agreement": {name: rounded(values[k], _DIGITS) if k < len(values) else None
                               for name, values in per_image.items()}}
                for k, img in enumerate(result.images)]
    ok = [v for v in result.variants if v.ok]
    return [{"file": img.file, "label": img.label,
             "predictions": {v.name: [{"label": p.label, "index": p.index, "prob": p.prob} for p in v.topk[k]]
                             for v in ok}}
            for k, img in enumerate(result.images)]


def report_dict(result: CompareResult, *, tflite_paths: dict[str, str] | None = None,
                floor: Floor | None = None, budget: Budget | None = None) -> dict[str, Any]:
    """The JSON report: model, environment, verdict (under `floor`), variants and per-image predictions."""
    paths = tflite_paths or {}
    verdict = decide(result, floor=floor, budget=budget)
    agreement = agreement_column(result.task)
    return {
        "report_version": REPORT_VERSION,
        "task": result.task.value,
        "agreement": {"key": agreement.key, "title": AGREEMENT[result.task][0],
                      "explanation": AGREEMENT[result.task][1]},
        "outputs": [output_spec_dict(s) for s in result.output_specs],
        "decoder": None if result.decoder is None else {
            "kind": result.decoder.kind.value, "choice": result.decoder.choice,
            "description": result.decoder.description, "score_threshold": result.decoder.threshold,
            "match_iou": 0.5, "set_by_user": result.decoder.set_by_user},
        "model": result.model.to_dict() | {"output_kind": result.output_kind.value},
        "environment": to_jsonable(result.environment),
        "preprocessing": result.preprocessing.to_dict(),
        "labels": {"source": result.labels_source, "class_names": list(result.class_names),
                   "labelled": result.labelled, "ground_truth": result.truth_source or None},
        "calibration": to_jsonable(result.calibration),
        "source_accuracy": rounded(result.source_accuracy, _DIGITS),
        "source_top5_accuracy": rounded(result.source_top5_accuracy, _DIGITS),
        "verdict": {"floor": {"kind": verdict.floor.kind.value, "value": verdict.floor.value,
                              "label": verdict.floor_label}, "note": verdict.note,
                    "mcu_budget": _budget_dict(budget or Budget()),
                    "picks": [{"target": p.target.value, "title": p.target.heading, "rule": p.target.rule,
                               "variant": p.variant, "reason": p.reason} for p in verdict.picks]},
        "variants": [variant_dict(v, paths.get(v.name)) for v in result.variants],
        "images": _images(result),
        "skipped": [to_jsonable(s) for s in result.skipped],
        "seconds": rounded(result.seconds, 2),
    }


def variants_csv(result: CompareResult) -> str:
    """One CSV row per variant: every summary column (quant_core.results.summary), rounded as the tables show it.

    The header is the same for every result of a task (the tables leave out columns that say
    nothing here; the CSV keeps them, empty where nothing was measured), so scripts can rely on
    it: a classifier's are `summary.COLUMNS`, another task's `summary.task_columns`.
    Sizes are exact bytes and fractions stay fractions: 0.958 where the tables show 95.8%.
    """
    summary = summarize(result, every_column=True)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([c.key for c in summary.columns])
    for row in summary.rows:
        writer.writerow(["" if value is None else value for value in row.values])
    return out.getvalue()

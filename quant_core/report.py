"""The published report: JSON (the CLI contract) and CSV, built from a CompareResult."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

from quant_core._serde import to_jsonable
from quant_core.models import ModelInfo
from quant_core.modes import MODE_INFO
from quant_core.preprocess import Preprocessing
from quant_core.results import CompareResult, VariantResult

REPORT_VERSION = 1


def _round(value: float | None, digits: int = 4) -> float | None:
    """Rounds for display; keeps None."""
    return None if value is None else round(float(value), digits)


def variant_dict(v: VariantResult, tflite: str | None) -> dict[str, Any]:
    """One variant as published in the report."""
    ops = to_jsonable(v.ops) if v.ops else None
    return {
        "mode": v.mode.value, "name": v.name, "title": MODE_INFO[v.mode].title, "status": v.status.value,
        "error": v.error, "warning": v.warning, "recipe": v.recipe.to_dict(), "engine_settings": v.engine_settings,
        "size_bytes": v.size_bytes, "size_ratio": _round(v.size_ratio),
        "latency_ms": None if v.latency is None else {
            "median": _round(v.latency.median_ms), "p90": _round(v.latency.p90_ms), "mean": _round(v.latency.mean_ms),
            "runs": v.latency.runs, "warmup": v.latency.warmup, "threads": v.latency.threads},
        "top1_agreement": _round(v.top1_agreement), "top1_agreement_source": _round(v.top1_agreement_source),
        "top5_agreement": _round(v.top5_agreement), "accuracy": _round(v.accuracy),
        "top5_accuracy": _round(v.top5_accuracy), "mean_abs_prob_diff": _round(v.mean_abs_diff, 6),
        "kl_divergence": _round(v.kl_divergence, 6), "ops": ops,
        "integer_only": None if v.ops is None else v.ops.integer_only,
        "input_dtype": v.input_dtype, "output_dtype": v.output_dtype, "tflite": tflite,
        "tflite_sha256": v.tflite_sha256, "calibration_samples": v.calibration_samples,
        "build_seconds": _round(v.build_seconds, 3),
    }


def report_dict(result: CompareResult, *, tflite_paths: dict[str, str] | None = None) -> dict[str, Any]:
    """The JSON report: model, environment, variants and per-image predictions."""
    paths = tflite_paths or {v.name: v.tflite_path for v in result.variants}
    ok = [v for v in result.variants if v.ok]
    return {
        "report_version": REPORT_VERSION,
        "model": result.model.to_dict() | {"output_kind": result.output_kind.value},
        "environment": to_jsonable(result.environment),
        "preprocessing": result.preprocessing.to_dict(),
        "labels": {"source": result.labels_source, "class_names": list(result.class_names),
                   "labelled": result.labelled},
        "calibration": to_jsonable(result.calibration),
        "source_accuracy": _round(result.source_accuracy),
        "source_top5_accuracy": _round(result.source_top5_accuracy),
        "variants": [variant_dict(v, paths.get(v.name)) for v in result.variants],
        "images": [
            {"file": img.file, "label": img.label,
             "predictions": {v.name: [{"label": p.label, "index": p.index, "prob": p.prob} for p in v.topk[k]]
                             for v in ok}}
            for k, img in enumerate(result.images)
        ],
        "skipped": [to_jsonable(s) for s in result.skipped],
        "seconds": _round(result.seconds, 2),
    }


def variants_csv(result: CompareResult) -> str:
    """One CSV row per variant with the headline numbers."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["mode", "status", "size_bytes", "size_ratio", "latency_median_ms", "latency_p90_ms",
                     "top1_agreement", "top5_agreement", "accuracy", "top5_accuracy", "mean_abs_prob_diff",
                     "integer_only", "error"])
    for v in result.variants:
        writer.writerow([v.name, v.status.value, v.size_bytes, _round(v.size_ratio),
                         _round(v.latency.median_ms) if v.latency else "", _round(v.latency.p90_ms) if v.latency else "",
                         _round(v.top1_agreement), _round(v.top5_agreement), _round(v.accuracy),
                         _round(v.top5_accuracy), _round(v.mean_abs_diff, 6),
                         "" if v.ops is None else v.ops.integer_only, v.error or ""])
    return out.getvalue()


def recipe_record(model: ModelInfo, variant: VariantResult, preprocessing: Preprocessing) -> dict[str, Any]:
    """What is written beside a variant's .tflite: enough to rebuild it exactly."""
    return {"model": model.name, "model_sha256": model.sha256, "variant": variant.name,
            "recipe": variant.recipe.to_dict(), "engine_settings": variant.engine_settings,
            "preprocessing": preprocessing.to_dict(), "calibration_samples": variant.calibration_samples,
            "tflite_sha256": variant.tflite_sha256}


def save_variants(result: CompareResult, out_dir: Path) -> dict[str, str]:
    """Writes each built variant's .tflite and its recipe JSON side by side; returns paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for v in result.variants:
        if not v.ok or not v.tflite_path:
            continue
        stem = f"{result.model.name}_{v.name}"
        target = out_dir / f"{stem}.tflite"
        shutil.copyfile(v.tflite_path, target)
        recipe = recipe_record(result.model, v, result.preprocessing)
        (out_dir / f"{stem}.recipe.json").write_text(json.dumps(recipe, indent=2, sort_keys=True) + "\n")
        paths[v.name] = str(target)
    return paths

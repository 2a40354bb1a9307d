"""Downloads and share links built from a CompareResult."""

from __future__ import annotations

import io
import json
import zipfile
from urllib.parse import urlencode

from quant_core import CompareResult, PreprocessingOverride, report_dict, variants_csv
from quant_core.report import recipe_record
from ui.settings import Settings


def models_zip(result: CompareResult) -> bytes:
    """Every built variant's .tflite with its recipe JSON beside it, plus the JSON report."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for v in result.variants:
            if v.ok:
                stem = f"{result.model.name}_{v.name}"
                zf.writestr(f"{stem}.tflite", v.tflite_bytes())
                zf.writestr(f"{stem}.recipe.json",
                            json.dumps(recipe_record(result.model, v, result.preprocessing), indent=2))
        zf.writestr("report.json", report_json(result))
    return buf.getvalue()


def report_json(result: CompareResult) -> str:
    """The JSON report (same format as the CLI's --report-json), without server paths."""
    paths = {v.name: f"{result.model.name}_{v.name}.tflite" for v in result.variants if v.ok}
    return json.dumps(report_dict(result, tflite_paths=paths), indent=2)


def report_csv(result: CompareResult) -> str:
    """One CSV row per variant."""
    return variants_csv(result)


def share_query(sample: str, settings: Settings, override: PreprocessingOverride) -> str:
    """Query string that reopens the app on a bundled sample with the same options."""
    params = {"sample": sample, **settings.to_query()}
    if override.value_range is not None:
        params["range"] = override.value_range.value
    return "?" + urlencode(params)

"""Downloads and share links built from a CompareResult."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from urllib.parse import urlencode

from quant_core import (CompareResult, ModelStore, Normalization, PreprocessingOverride, Preset, report_dict,
                        variants_csv)
from quant_core.errors import InputError
from quant_core.inputs.preprocess import parse_numbers
from quant_core.results.verdict import Floor
from ui import engine
from ui.inputs import sample_inputs, samples
from ui.settings import Reading, Settings


def models_zip(result: CompareResult, models: ModelStore) -> bytes:
    """Every built variant's .tflite with its recipe JSON beside it (as `CompareResult.save` writes them), plus
    the JSON report."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in result.files(models).items():
            zf.writestr(name, data)
        zf.writestr("report.json", report_json(result))
    return buf.getvalue()


def report_json(result: CompareResult, floor: Floor | None = None) -> str:
    """The JSON report (same format as the CLI's --report-json), without server paths; the verdict under `floor`."""
    paths = {v.name: f"{result.file_stem(v)}.tflite" for v in result.variants if v.ok}
    return json.dumps(report_dict(result, tflite_paths=paths, floor=floor), indent=2)


def report_csv(result: CompareResult) -> str:
    """One CSV row per variant."""
    return variants_csv(result)


RUN_PARAM = "run"  # "1": the link opens on Compare with the results (run, or answered from the cache)


def share_query(sample: str, settings: Settings, override: PreprocessingOverride, reading: Reading | None = None, *,
                by_place: bool = True) -> str:
    """Query string that reopens the app on a bundled sample with the same options (and reading of its outputs).

    Float layers go by their place in the sample's model (`Settings.to_query`): a few
    characters each, where their tensor names take hundreds. With `by_place` False (a
    record kept on the server, not a link) they go by name.
    """
    layers = sample_layers(sample) if settings.float_layers and by_place else None
    params = {"sample": sample, **settings.to_query(layers=layers), **(reading or Reading()).to_query(), RUN_PARAM: "1"}
    norm = override.normalization
    if norm is not None:
        params["norm"] = norm.preset.value
        if norm.preset is Preset.CUSTOM:
            params["mean"] = ",".join(repr(v) for v in norm.mean)
            params["std"] = ",".join(repr(v) for v in norm.std)
    return "?" + urlencode(params)


def sample_layers(sample: str | None) -> tuple[str, ...] | None:
    """The graph layers of a bundled sample's model (`ui.engine.graph_layers`); None for anything else."""
    return engine.graph_layers(sample_inputs(sample)) if sample in {s.name for s in samples()} else None


def settings_from_query(params: Mapping[str, str]) -> Settings:
    """The settings a link carries, its float layers read against its bundled sample's model (`Settings.from_query`).

    Raises:
        QuantError: invalid settings, or float layers that are not in the sample's model.
    """
    sample = params.get("sample")
    return Settings.from_query(params, layers=(lambda: sample_layers(sample) or ()) if sample else None)


def override_from_query(params: Mapping[str, str]) -> PreprocessingOverride | None:
    """The normalization a link carries (`norm`, with `mean`/`std` for custom; `range` in older links).

    Raises:
        InputError: an unknown preset or invalid numbers.
    """
    preset = params.get("norm") or params.get("range")
    if preset is None:
        return None
    if preset != Preset.CUSTOM.value:
        return PreprocessingOverride(normalization=Normalization.of(preset))  # InputError for unknown names
    if "mean" not in params or "std" not in params:
        raise InputError("the link's custom normalization needs both mean and std")
    return PreprocessingOverride(normalization=Normalization.custom(parse_numbers(params["mean"], name="mean"),
                                                                    parse_numbers(params["std"], name="std")))


def reading_from_query(params: Mapping[str, str]) -> Reading:
    """The task and output roles a link carries (`Reading.from_query`; the inferred reading when none).

    Raises:
        InputError: an unknown task or role, or malformed roles.
    """
    return Reading.from_query(params)

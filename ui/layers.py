"""The Layers page's parts: where a calibrated variant loses accuracy (its chart is `charts.layer_error_chart`)."""

from __future__ import annotations

import pandas as pd

from quant_core import CompareResult
from quant_core.layers import LayerError, LayerReport, layer_name
from quant_core.results import VariantResult

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

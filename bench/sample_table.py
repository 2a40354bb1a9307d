"""Prints the README's results table: every mode on every bundled sample, measured now.

The ImageNet sample comes first, with top-5 columns; the digits samples (10 classes,
where top-5 is 1.0 for every variant) get the same table without them.

Usage: .venv/bin/python bench/sample_table.py [--threads N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from quant_core import ArtifactCache, CompareOptions, CompareRequest, VariantResult, run_compare  # noqa: E402
from quant_core._quiet import stdout_to_stderr  # noqa: E402

TOP5_MIN_CLASSES = 100  # with 10 classes, top-5 agreement and accuracy are 1.0 for every variant

# (header, alignment, cell): the README table's columns, in order.
Column = tuple[str, str, Callable[[VariantResult], str]]
COLUMNS: list[Column] = [
    ("variant", "---", lambda v: v.name),
    ("size (bytes)", "---:", lambda v: f"{v.size_bytes:,}"),
    ("x float32", "---:", lambda v: f"{v.size_ratio:.3f}"),
    ("median ms", "---:", lambda v: f"{v.latency.median_ms:.3f}"),
    ("p90 ms", "---:", lambda v: f"{v.latency.p90_ms:.3f}"),
    ("top-1 agreement", "---:", lambda v: f"{v.top1_agreement:.3f}"),
    ("top-5 agreement", "---:", lambda v: f"{v.top5_agreement:.3f}"),
    ("accuracy", "---:", lambda v: f"{v.accuracy:.3f}"),
    ("top-5 accuracy", "---:", lambda v: f"{v.top5_accuracy:.3f}"),
    ("mean \\|Δp\\|", "---:", lambda v: f"{v.mean_abs_diff:.4f}"),
    ("integer-only", ":---:", lambda v: "yes" if v.ops.integer_only else "no"),
]


def main() -> None:
    """Runs the comparison for each sample and prints one markdown table per sample."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    args = parser.parse_args()
    samples = json.loads((REPO / "sample_models" / "samples.json").read_text())
    for sample in samples:
        root = REPO / "sample_models"
        request = CompareRequest(str(root / sample["file"]), (str(root / sample["images_dir"]),),
                                 str(root / sample["classes_file"]), CompareOptions(threads=args.threads))
        with stdout_to_stderr(), tempfile.TemporaryDirectory() as fresh:  # measured now, never cached
            result = run_compare(request, cache=ArtifactCache(Path(fresh)))
        columns = [c for c in COLUMNS
                   if "top-5" not in c[0] or len(result.class_names) >= TOP5_MIN_CLASSES]
        print(f"\n**{sample['name']}** ({sample['params']:,} params, {len(result.class_names)} classes, "
              f"{len(result.images)} images, preprocessing {result.preprocessing.normalization.label}, "
              f"{args.threads} thread(s))\n")
        print("| " + " | ".join(c[0] for c in columns) + " |")
        print("|" + "|".join(c[1] for c in columns) + "|")
        for v in result.variants:
            cells = [c[2](v) for c in columns] if v.ok else [v.name, f"failed: {v.error}"] + [""] * (len(columns) - 2)
            print("| " + " | ".join(cells) + " |")
    print(f"\nCPU: {result.environment.cpu}; " + ", ".join(f"{n} {v}" for n, v in result.environment.packages))


if __name__ == "__main__":
    main()

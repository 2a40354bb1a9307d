"""Prints the README's results table: every mode on every bundled sample, measured now.

Usage: .venv/bin/python bench/sample_table.py [--threads N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from quant_core import ArtifactCache, CompareOptions, CompareRequest, run_compare  # noqa: E402
from quant_core._quiet import stdout_to_stderr  # noqa: E402


def main() -> None:
    """Runs the comparison for each sample and prints one markdown table per sample."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    samples = json.loads((REPO / "sample_models" / "samples.json").read_text())
    for sample in samples:
        root = REPO / "sample_models"
        request = CompareRequest(str(root / sample["file"]), (str(root / sample["images_dir"]),),
                                 str(root / sample["classes_file"]), CompareOptions(threads=args.threads))
        with stdout_to_stderr(), tempfile.TemporaryDirectory() as fresh:  # measured now, never cached
            result = run_compare(request, cache=ArtifactCache(Path(fresh)))
        print(f"\n**{sample['name']}** ({sample['params']:,} params, {len(result.images)} images, "
              f"preprocessing {result.preprocessing.normalization.label}, {args.threads} thread(s))\n")
        print("| variant | size (bytes) | x float32 | median ms | p90 ms | agreement | accuracy | integer-only |")
        print("|---|---:|---:|---:|---:|---:|---:|:---:|")
        for v in result.variants:
            if not v.ok:
                print(f"| {v.name} | failed: {v.error} | | | | | | |")
                continue
            print(f"| {v.name} | {v.size_bytes:,} | {v.size_ratio:.2f} | {v.latency.median_ms:.3f} | "
                  f"{v.latency.p90_ms:.3f} | {v.top1_agreement:.3f} | {v.accuracy:.3f} | "
                  f"{'yes' if v.ops.integer_only else 'no'} |")
    print(f"\nCPU: {result.environment.cpu}; " + ", ".join(f"{n} {v}" for n, v in result.environment.packages))


if __name__ == "__main__":
    main()

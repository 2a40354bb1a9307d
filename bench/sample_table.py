"""Prints the README's results table: every mode on every bundled sample, measured now.

The table is the summary every view renders (quant_core.results.summary.markdown_table): the
same columns, rounding and best values as the app, the CLI and the HTML report; top-5
columns only where they say something (more than five classes).

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
from quant_core.results.summary import markdown_table  # noqa: E402


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
        print(f"\n**{sample['name']}** ({sample['params']:,} params, {len(result.class_names)} classes, "
              f"{len(result.images)} images, preprocessing {result.preprocessing.normalization.label}, "
              f"{args.threads} thread(s))\n")
        print(markdown_table(result), end="")
    print(f"\nCPU: {result.environment.cpu}; " + ", ".join(f"{n} {v}" for n, v in result.environment.packages))


if __name__ == "__main__":
    main()

"""Prepares the bundled samples once, before the server starts: `python -m ui.prewarm` (run by `make run`).

Describing a model and converting it to float cost ~15 s for the ImageNet MobileNetV2 on
2 cores; both depend only on the files and the package versions, and both are kept in the on-disk
cache the server reads. Done here once, the first page is served from the cache and the
first run starts from a converted model. Already prepared: returns at once.
"""

from __future__ import annotations

import sys
import time

from quant_core import ArtifactCache, CompareResult, PreprocessingOverride, QuantError
from quant_core.compare import cached_result
from quant_core.serving.client import JobClient
from ui.engine import baseline_job, stored_description
from ui.inputs import sample_inputs, samples


def main() -> int:
    cache = ArtifactCache()
    start, jobs = time.perf_counter(), JobClient.one_shot()
    for sample in samples():
        inputs, override = sample_inputs(sample.name), PreprocessingOverride()
        try:
            stored_description(inputs, override, cache, jobs)
            baseline = baseline_job(inputs, override, cache)
            if not isinstance(cached_result(baseline.request, cache), CompareResult):
                jobs.run(baseline)
        except QuantError as err:
            print(f"prewarm: {sample.name}: {err}", file=sys.stderr)
            return 2
    print(f"Bundled samples prepared in {time.perf_counter() - start:.1f} s (kept in {cache.root}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())

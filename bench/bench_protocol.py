"""What a comparison's progress costs on the way from the worker to the web server: whole partials or patches.

A comparison reports the comparison so far after every variant (`Progress.partial`), so a page
can draw rows as they come. Sent whole, message k repeats the k-1 variants before it (and
their per-image predictions): the bytes grow with the square of the variant count, and the
server, whose Python thread also serves every page, decodes all of it each time. Sent as a
patch (quant_core.serving.protocol.MessageWriter), a message carries the variants that changed.

The ImageNet sample's full comparison (the app's defaults: seven variants, 22 photos, latency
measured) is run once through `JobClient.in_process`, keeping its progress messages. Each is
then carried both ways exactly as the worker and the server do (the worker's encoding and
`json.dumps`, the server's `json.loads` and decoding into a `Progress` with its partial), and
the median of 9 passes compared. Both ways rebuild equal partials (checked).

Usage: .venv/bin/python bench/bench_protocol.py [--no-write]
Writes its section of bench/RESULTS.md (between the protocol-bench markers).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]
from results_md import report  # noqa: E402  pylint: disable=wrong-import-position

from quant_core import ArtifactCache, CompareRequest, Progress  # noqa: E402  pylint: disable=wrong-import-position
from quant_core.serving.client import JobClient  # noqa: E402  pylint: disable=wrong-import-position
from quant_core.serving.protocol import (CompareJob, MessageReader, MessageWriter,  # noqa: E402
                                         Place)  # pylint: disable=wrong-import-position

SAMPLE = REPO / "sample_models"
PASSES = 9


def record() -> list[Progress]:
    """The progress messages of the sample's full comparison, as the job reported them."""
    request = CompareRequest(str(SAMPLE / "mobilenet_v2_imagenet.keras"), (str(SAMPLE / "imagenet_images"),),
                             str(SAMPLE / "imagenet_labels.txt"))
    seen: list[Progress] = []
    with tempfile.TemporaryDirectory(prefix="qw-bench-protocol-") as folder:
        JobClient.in_process().run(CompareJob(request, Place.of(ArtifactCache(Path(folder)), None)),
                                   on_progress=seen.append)
    return seen


def carry(messages: list[Progress], *, patches: bool) -> tuple[float, int, list[Progress]]:
    """Seconds and bytes to carry every message from the job to the server; the messages as the server has them."""
    writer, reader, size, got = MessageWriter(patches=patches), MessageReader(), 0, []
    start = time.perf_counter()
    for message in messages:
        line = json.dumps(writer.encode(message))
        size += len(line)
        got.append(reader.decode(json.loads(line)))
    return time.perf_counter() - start, size, got


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args()
    messages = record()
    partials = sum(m.partial is not None for m in messages)
    runs: dict[bool, list[float]] = {False: [], True: []}
    sizes: dict[bool, int] = {}
    for _ in range(PASSES):
        for patches in (False, True):
            seconds, sizes[patches], got = carry(messages, patches=patches)
            runs[patches].append(seconds)
            assert got == messages, "a way of carrying changed a message"
    whole, patched = (statistics.median(runs[p]) for p in (False, True))
    variants = len(next(m.partial for m in reversed(messages) if m.partial is not None).variants)
    lines = [
        f"ImageNet sample, the app's default comparison ({variants} variants, latency measured): "
        f"{len(messages)} progress messages, {partials} of them with the comparison so far.",
        "",
        "| carried as | bytes on the pipe | worker + server seconds (median of 9) |",
        "|---|---|---|",
        f"| whole partials | {sizes[False]:,} | {whole:.3f} |",
        f"| patches | {sizes[True]:,} | {patched:.3f} |",
        f"| ratio | **{sizes[False] / sizes[True]:.1f}x** fewer bytes | **{whole / patched:.1f}x** faster |",
    ]
    report("protocol-bench", "A comparison's progress on the pipe: whole partials or patches", "\n".join(lines),
           write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Same model, images and options give byte-identical models and identical numbers, across processes."""

from __future__ import annotations

from conftest import REPO
from quant_core import ArtifactCache, CompareOptions, CompareRequest, run_compare
from quant_core.serving.client import JobClient
from quant_core.serving.protocol import CompareJob, Place

# Measured on the machine, not computed: timings, and the interpreter's heap (allocator noise of about 1 %).
_TIMINGS = {"latency", "build_seconds", "seconds", "request_key", "memory"}


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in _TIMINGS}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def test_two_processes_and_this_one_agree_exactly(model_files, image_dir, labels_file, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    request = CompareRequest(str(model_files["keras"]), (str(image_dir),), str(labels_file),
                             CompareOptions(measure_latency=False))
    results = [run_compare(request, cache=ArtifactCache(tmp_path / "here"))]
    for name in ("one", "two"):
        results.append(JobClient.one_shot().run(CompareJob(request, Place(str(tmp_path / name)))))
    assert all(v.ok for v in results[0].variants)
    shas = [[v.tflite_sha256 for v in r.variants] for r in results]
    assert shas[0] == shas[1] == shas[2] and len(set(shas[0])) == len(shas[0])
    caches = [ArtifactCache(tmp_path / name) for name in ("here", "two")]
    for a, b in zip(results[0].variants, results[2].variants):
        assert a.tflite_bytes(caches[0]) == b.tflite_bytes(caches[1])  # each process stored its own copy
    numbers = [_without_timings(r.to_dict()) for r in results]
    assert numbers[0] == numbers[1] == numbers[2]
    for variants in zip(*(r.variants for r in results)):
        heaps = [v.memory.runtime_bytes for v in variants]
        assert max(heaps) <= 1.1 * min(heaps), heaps
